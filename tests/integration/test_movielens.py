"""MovieLens-100K from the recbole wheel: every row accounted for, converted to the contracts."""

from __future__ import annotations

import shutil

import pandas as pd
import pyarrow.compute as pc
import pytest

from mspa_features.data import movielens
from mspa_features.data.contracts import AUTHORS, INTERACTIONS, USERS
from mspa_features.errors import SchemaError

pytestmark = pytest.mark.integration


def test_fetch_is_idempotent(movielens_raw):
    before = {f: (movielens_raw / f).stat().st_mtime_ns for f in movielens.FILES}
    assert movielens.fetch(movielens_raw.parent) == movielens_raw
    assert before == {f: (movielens_raw / f).stat().st_mtime_ns for f in movielens.FILES}


def test_convert_accounts_for_every_row(movielens_raw):
    data = movielens.convert(movielens_raw)
    assert (data.users.n_input, data.authors.n_input, data.interactions.n_input) == (
        943,
        1682,
        100_000,
    )
    for res in data.results():
        assert res.n_input == res.n_accepted + res.n_quarantined
    assert data.users.n_accepted == 943 and data.authors.n_accepted == 1682
    assert data.interactions.n_accepted == 100_000
    assert data.users.accepted.schema == USERS.schema
    assert data.authors.accepted.schema == AUTHORS.schema
    assert data.interactions.accepted.schema == INTERACTIONS.schema


def test_positives_follow_the_threshold(movielens_raw):
    inter = movielens.convert(movielens_raw, positive_threshold=5).interactions.accepted
    df = inter.select(["value", "label"]).to_pandas()
    assert ((df["value"] >= 5) == (df["label"] == 1)).all()
    assert 0 < df["label"].mean() < 1


def test_authors_profile_and_first_seen(movielens_raw):
    data = movielens.convert(movielens_raw)
    authors = data.authors.accepted.to_pandas().set_index("author_id")
    assert authors.loc["1", "profile_text"].startswith("Toy Story (1995). Genres: Animation")
    assert dict(authors.loc["1", "attributes"])["genres"] == "Animation|Children's|Comedy"
    inter = data.interactions.accepted.to_pandas()
    first = inter.groupby("author_id")["event_timestamp"].min()
    assert (authors.loc[first.index, "event_timestamp"] == first).all()


def test_users_get_regions(movielens_raw):
    users = movielens.convert(movielens_raw).users.accepted
    regions = set(users.column("region").to_pylist())
    assert "pacific" in regions and "non-us" in regions and None not in regions


def test_corrupted_files_are_quarantined_and_reconcile(movielens_raw, tmp_path):
    for f in movielens.FILES:
        shutil.copy(movielens_raw / f, tmp_path / f)
    lines = (tmp_path / "ml-100k.inter").read_text().splitlines()
    lines[1] = "196\t242\t3\tnot-a-time"  # unparseable timestamp
    lines[2] = "186\t99999\t3\t891717742"  # unknown author
    lines[3] = "99999\t377\t1\t878887116"  # unknown user
    lines[4] = "244\t51\tNaN\t880606923"  # NaN rating
    lines.append(lines[10])  # exact duplicate
    (tmp_path / "ml-100k.inter").write_text("\n".join(lines) + "\n")
    res = movielens.convert(tmp_path).interactions
    assert res.n_input == 100_001 == res.n_accepted + res.n_quarantined
    assert res.n_quarantined == 5
    reasons = " | ".join(res.quarantine.column("reason").to_pylist())
    for expected in (
        "unparseable timestamp 'not-a-time'",
        "unknown author '99999'",
        "unknown user '99999'",
        "value: not finite (nan)",
        "duplicate key",
    ):
        assert expected in reasons
    assert pc.max(res.quarantine.column("row_number")).as_py() == 100_000


def test_wrong_columns_fail_naming_file_and_column(movielens_raw, tmp_path):
    for f in movielens.FILES:
        shutil.copy(movielens_raw / f, tmp_path / f)
    df = pd.read_csv(tmp_path / "ml-100k.item", sep="\t", dtype=str)
    df.drop(columns=["class:token_seq"]).to_csv(tmp_path / "ml-100k.item", sep="\t", index=False)
    with pytest.raises(SchemaError, match=r"ml-100k\.item column 'class'"):
        movielens.convert(tmp_path)
