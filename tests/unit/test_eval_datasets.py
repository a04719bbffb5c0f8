"""Unit tests for the U2A and A2A evaluation datasets (mspa_features.evaluation.datasets)."""

from __future__ import annotations

import itertools
import string
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mspa_features.data.contracts import TS
from mspa_features.errors import SchemaError
from mspa_features.evaluation.datasets import (
    U2A_FILE,
    U2ADataset,
    a2a_alignment,
    attribute_tokens,
    build_a2a,
    build_u2a,
    jaccard,
)

T0 = pd.Timestamp("2024-01-01", tz="UTC")
POOL = [f"p{i:02d}" for i in range(30)]  # extra never-interacted authors for tiny frames


def _frame(rows: list[tuple[str, str, int, int]]) -> pd.DataFrame:
    """(user_id, author_id, seconds after T0, label) -> interactions frame."""
    users, authors, secs, labels = zip(*rows, strict=True)
    return pd.DataFrame(
        {
            "user_id": list(users),
            "author_id": list(authors),
            "event_timestamp": [T0 + pd.Timedelta(seconds=s) for s in secs],
            "action": "tip",
            "value": 1.0,
            "label": np.array(labels, dtype=np.int8),
        }
    )


def _ts(seconds: int) -> pd.Timestamp:
    return T0 + pd.Timedelta(seconds=seconds)


def _synthetic(n_users: int, n_authors: int, per_user: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_users * per_user
    return pd.DataFrame(
        {
            "user_id": np.repeat([f"u{i}" for i in range(n_users)], per_user),
            "author_id": [f"a{i}" for i in rng.integers(0, n_authors, n)],
            "event_timestamp": T0 + pd.to_timedelta(rng.integers(0, 10**6, n), unit="s"),
            "label": (rng.random(n) < 0.6).astype(np.int8),
        }
    )


def _row(ds: U2ADataset, user: str) -> pd.Series:
    rows = ds.table[ds.table["user_id"] == user]
    assert len(rows) == 1
    return rows.iloc[0]


def _assert_reconciles(report: dict[str, int]) -> None:
    assert report["n_users_in"] == (
        report["n_dropped_few_positives"]
        + report["n_dropped_few_negatives"]
        + report["n_users_out"]
    )
    assert report["n_users_out"] == report["n_train"] + report["n_val"] + report["n_test"]


# =========================================================================== U2A


def test_user_with_two_positives_is_dropped() -> None:
    df = _frame(
        [
            ("u1", "a1", 1, 1),
            ("u1", "a2", 2, 1),
            ("u1", "a3", 3, 0),  # a negative does not count as a positive
            ("u2", "a1", 1, 1),
            ("u2", "a2", 2, 1),
            ("u2", "a3", 3, 1),
            ("u3", "a1", 1, 0),  # no positive at all
        ]
    )
    ds = build_u2a(df, all_author_ids=POOL + ["a1", "a2", "a3"])
    assert ds.table["user_id"].tolist() == ["u2"]
    assert ds.report["n_users_in"] == 3
    assert ds.report["n_dropped_few_positives"] == 2
    assert ds.report["n_dropped_few_negatives"] == 0
    assert ds.report["n_users_out"] == 1
    _assert_reconciles(ds.report)


def test_target_is_last_positive_and_history_is_strictly_before_it() -> None:
    df = _frame(
        [
            ("u", "a3", 3, 1),  # rows deliberately out of time order
            ("u", "a1", 1, 1),
            ("u", "a2", 2, 1),
            ("u", "n1", 4, 0),  # negative: never in history
            ("u", "a0", 5, 1),  # tie at target_ts: sorts before a4, so not the target...
            ("u", "a4", 5, 1),  # ...a4 is the last positive by (ts, author_id)
            ("u", "n2", 6, 0),  # later negative: ignored
        ]
    )
    r = _row(build_u2a(df, all_author_ids=POOL), "u")
    assert r["target_author_id"] == "a4"
    assert r["target_ts"] == _ts(5)
    assert r["as_of"] == r["target_ts"]
    # a0 shares target_ts, so it is excluded from the history (strictly before as_of).
    assert r["history_author_ids"] == ["a1", "a2", "a3"]
    assert r["history_ts"] == [_ts(1), _ts(2), _ts(3)]
    assert all(ts < r["target_ts"] for ts in r["history_ts"])
    assert "a4" not in r["history_author_ids"]
    assert "a0" not in r["history_author_ids"]


def test_history_duplicates_collapse_to_first_occurrence_and_target_is_removed() -> None:
    df = _frame(
        [
            ("u", "a1", 1, 1),
            ("u", "a2", 2, 1),
            ("u", "t", 3, 1),  # earlier positive on the target author: removed from history
            ("u", "a1", 4, 1),  # repeat: collapses onto its first occurrence (ts=1)
            ("u", "a3", 5, 1),
            ("u", "a2", 6, 1),
            ("u", "t", 7, 1),  # target
        ]
    )
    r = _row(build_u2a(df, all_author_ids=POOL), "u")
    assert r["target_author_id"] == "t"
    assert r["target_ts"] == _ts(7)
    assert r["history_author_ids"] == ["a1", "a2", "a3"]
    assert r["history_ts"] == [_ts(1), _ts(2), _ts(5)]
    assert len(set(r["history_author_ids"])) == len(r["history_author_ids"])


def test_min_positives_counts_distinct_authors_of_the_built_sequence() -> None:
    # 4 positives but only 2 distinct authors (a, t) -> below min_positives=3.
    df = _frame([("u", "a", 1, 1), ("u", "a", 2, 1), ("u", "t", 3, 1), ("u", "t", 4, 1)])
    ds = build_u2a(df, all_author_ids=POOL)
    assert len(ds.table) == 0
    assert ds.report["n_dropped_few_positives"] == 1
    ds2 = build_u2a(df, all_author_ids=POOL, min_positives=2)
    assert _row(ds2, "u")["history_author_ids"] == ["a"]


def test_negatives_are_never_interacted_and_answer_points_at_target() -> None:
    df = _synthetic(n_users=60, n_authors=40, per_user=15, seed=1)
    ds = build_u2a(df, num_candidates=(4, 10), min_positives=2)
    assert len(ds.table) > 30
    touched = df.groupby("user_id")["author_id"].agg(set)  # any label, any time
    for _, r in ds.table.iterrows():
        for m in (4, 10):
            cands = r[f"candidates_m{m}"]
            idx = r[f"answer_index_m{m}"]
            assert len(cands) == m
            assert len(set(cands)) == m
            assert cands[idx] == r["target_author_id"]
            assert r[f"answer_m{m}"] == string.ascii_uppercase[idx]
            negatives = set(cands) - {r["target_author_id"]}
            assert len(negatives) == m - 1
            assert negatives.isdisjoint(touched[r["user_id"]])
            assert negatives <= set(df["author_id"])  # pool defaults to interaction authors
        # the m=4 negatives are a subset of the m=10 negatives (nested tasks)
        assert set(r["candidates_m4"]) <= set(r["candidates_m10"])
    # the target is not always in the same slot (candidates are shuffled)
    assert ds.table["answer_index_m10"].nunique() > 1


def test_user_without_enough_never_interacted_authors_is_dropped_for_all_m() -> None:
    authors = [f"a{i}" for i in range(12)]
    rows = [("rich", a, i, 1) for i, a in enumerate(authors[:5])]  # 7 left: < 9 needed
    rows += [("poor", a, i, 1) for i, a in enumerate(authors[:3])]  # 9 left: exactly enough
    rows += [("poor", "a11", 10, 0)]  # ... but a negative also excludes a11 -> 8 left
    rows += [("ok", a, i, 1) for i, a in enumerate(authors[:3])]  # 9 left
    df = _frame(rows)
    ds = build_u2a(df, all_author_ids=authors)
    assert ds.table["user_id"].tolist() == ["ok"]
    assert ds.report["n_dropped_few_negatives"] == 2
    assert ds.report["n_dropped_few_positives"] == 0
    _assert_reconciles(ds.report)
    r = _row(ds, "ok")
    assert sorted(set(r["candidates_m10"]) - {"a2"}) == sorted(authors[3:])
    # with only m=4 requested the same users survive
    ds4 = build_u2a(df, all_author_ids=authors, num_candidates=(4,))
    assert ds4.table["user_id"].tolist() == ["ok", "poor", "rich"]
    assert ds4.num_candidates == (4,)
    assert "candidates_m10" not in ds4.table.columns


def test_split_proportions_are_close_to_7_2_1() -> None:
    n = 1000
    rows = [(f"u{i:04d}", f"a{j}", j, 1) for i in range(n) for j in range(3)]
    ds = build_u2a(_frame(rows), all_author_ids=[f"a{j}" for j in range(20)])
    assert len(ds.table) == n
    counts = ds.table["split"].value_counts()
    assert set(counts.index) == {"train", "val", "test"}
    for name, share in (("train", 0.7), ("val", 0.2), ("test", 0.1)):
        assert abs(counts[name] / n - share) <= 0.02
        assert ds.report[f"n_{name}"] == counts[name]
    _assert_reconciles(ds.report)


def test_build_is_deterministic_and_row_order_independent() -> None:
    df = _synthetic(n_users=80, n_authors=50, per_user=12, seed=2)
    a = build_u2a(df, seed=7)
    b = build_u2a(df, seed=7)
    shuffled = df.sample(frac=1.0, random_state=3).reset_index(drop=True)
    c = build_u2a(shuffled, seed=7)
    pd.testing.assert_frame_equal(a.table, b.table)
    pd.testing.assert_frame_equal(a.table, c.table)
    assert a.report == b.report == c.report
    # the num_candidates order does not matter either
    d = build_u2a(df, seed=7, num_candidates=(10, 4))
    pd.testing.assert_frame_equal(a.table, d.table)
    other = build_u2a(df, seed=8)
    assert other.table["candidates_m10"].tolist() != a.table["candidates_m10"].tolist()
    assert other.table["user_id"].tolist() == a.table["user_id"].tolist()


def test_report_counts_reconcile_on_mixed_input() -> None:
    df = _synthetic(n_users=200, n_authors=15, per_user=8, seed=4)
    ds = build_u2a(df, num_candidates=(4, 10))
    _assert_reconciles(ds.report)
    assert ds.report["n_users_in"] == df["user_id"].nunique()
    assert ds.report["n_users_out"] == len(ds.table)
    assert ds.report["n_dropped_few_positives"] > 0
    assert ds.report["n_dropped_few_negatives"] > 0


def test_save_load_roundtrip(tmp_path) -> None:
    df = _synthetic(n_users=30, n_authors=40, per_user=10, seed=5)
    ds = build_u2a(df)
    path = ds.save(tmp_path)
    assert path == tmp_path / U2A_FILE
    schema = pq.read_schema(path)
    assert schema.field("target_ts").type == TS
    assert schema.field("as_of").type == TS
    assert schema.field("history_ts").type == pa.list_(TS)
    assert schema.field("candidates_m4").type == pa.list_(pa.string())
    back = U2ADataset.load(tmp_path)
    pd.testing.assert_frame_equal(back.table, ds.table)
    assert back.report == ds.report


def test_empty_input_builds_empty_dataset(tmp_path) -> None:
    ds = build_u2a(_synthetic(1, 1, 1, seed=0).iloc[:0])
    assert len(ds.table) == 0
    assert ds.report["n_users_in"] == 0
    _assert_reconciles(ds.report)
    ds.save(tmp_path)
    assert len(U2ADataset.load(tmp_path).table) == 0


def test_invalid_arguments_raise() -> None:
    df = _frame([("u", "a", 1, 1)])
    with pytest.raises(ValueError):
        build_u2a(df, num_candidates=(1,))
    with pytest.raises(ValueError):
        build_u2a(df, split=(0.5, 0.2, 0.1))
    with pytest.raises(ValueError):
        build_u2a(df, min_positives=0)
    with pytest.raises(SchemaError):
        build_u2a(df.drop(columns=["label"]))


def test_movielens_sized_input_builds_fast() -> None:
    # ML-100K shape: 943 users, 1682 movies, 100k ratings.
    rng = np.random.default_rng(0)
    n = 100_000
    df = pd.DataFrame(
        {
            "user_id": rng.integers(1, 944, n).astype(str),
            "author_id": rng.integers(1, 1683, n).astype(str),
            "event_timestamp": pd.to_datetime(rng.integers(874_000_000, 893_000_000, n), unit="s"),
            "label": (rng.random(n) < 0.55).astype(np.int8),
        }
    )
    start = time.perf_counter()
    ds = build_u2a(df)
    assert time.perf_counter() - start < 5.0
    assert ds.report["n_users_out"] == 943
    assert str(ds.table["target_ts"].dtype) == "datetime64[us, UTC]"  # naive input read as UTC


# =========================================================================== A2A

GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi"]


def _authors(n: int = 40, seed: int = 0) -> pd.DataFrame:
    """Authors with exactly two genres each (equal-size token sets: see the alignment test)."""
    rng = np.random.default_rng(seed)
    pairs = list(itertools.combinations(GENRES, 2))
    attrs: list = []
    for i in range(n):
        g = pairs[rng.integers(len(pairs))]
        d = {"genres": "|".join(g), "release_year": str(1990 + i % 5)}
        attrs.append(d if i % 2 else list(d.items()))  # dict and arrow-map (pairs) forms
    return pd.DataFrame(
        {
            "author_id": [f"m{i:03d}" for i in range(n)],
            "event_timestamp": T0,
            "attributes": attrs,
        }
    )


def _tokens(authors: pd.DataFrame) -> dict[str, set[str]]:
    return {a: attribute_tokens(v) for a, v in zip(authors["author_id"], authors["attributes"])}


def test_attribute_tokens_default() -> None:
    assert attribute_tokens({"genres": "Action|Adventure", "release_year": "1995"}) == {
        "genre:Action",
        "genre:Adventure",
    }
    assert attribute_tokens([("genres", "Drama"), ("release_year", "1995")]) == {"genre:Drama"}
    assert attribute_tokens({"location": "Paris", "category": "music"}) == {
        "location:Paris",
        "category:music",
    }
    assert attribute_tokens(None) == set()
    assert jaccard({"a", "b"}, {"b", "c"}) == pytest.approx(1 / 3)
    assert jaccard(set(), set()) == 0.0


def test_a2a_triples_satisfy_margin_and_are_distinct() -> None:
    authors = _authors()
    tok = _tokens(authors)
    margin = 0.25
    triples = build_a2a(authors, num_triples=300, seed=1, min_margin=margin)
    assert list(triples.columns) == ["a1", "a2", "a3", "sim_12", "sim_13"]
    assert len(triples) == 300
    assert not triples.duplicated(["a1", "a2", "a3"]).any()
    for r in triples.itertuples(index=False):
        assert len({r.a1, r.a2, r.a3}) == 3
        j12, j13 = jaccard(tok[r.a1], tok[r.a2]), jaccard(tok[r.a1], tok[r.a3])
        assert r.sim_12 == j12
        assert r.sim_13 == j13
        assert j12 > 0
        assert j12 - j13 >= margin


def test_a2a_is_deterministic_and_row_order_independent() -> None:
    authors = _authors()
    a = build_a2a(authors, num_triples=100, seed=3)
    b = build_a2a(authors, num_triples=100, seed=3)
    c = build_a2a(authors.iloc[::-1].reset_index(drop=True), num_triples=100, seed=3)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(a, c)
    d = build_a2a(authors, num_triples=100, seed=4)
    assert not a.equals(d)


def test_a2a_returns_what_it_found_when_too_few_triples_exist() -> None:
    # 4 authors: few valid triples exist; asking for 100 must terminate with fewer, unique.
    authors = pd.DataFrame(
        {
            "author_id": ["w", "x", "y", "z"],
            "attributes": [
                {"genres": "Action|Comedy"},
                {"genres": "Action|Drama"},
                {"genres": "Horror|Romance"},
                {"genres": "Horror|Sci-Fi"},
            ],
        }
    )
    triples = build_a2a(authors, num_triples=100, seed=0)
    assert 0 < len(triples) < 100
    assert not triples.duplicated(["a1", "a2", "a3"]).any()
    # identical attributes everywhere: no author is closer than another -> empty, not a hang
    same = authors.assign(attributes=[{"genres": "Action"}] * 4)
    empty = build_a2a(same, num_triples=50, seed=0)
    assert len(empty) == 0
    assert list(empty.columns) == ["a1", "a2", "a3", "sim_12", "sim_13"]


def test_a2a_uses_latest_author_version() -> None:
    authors = pd.DataFrame(
        {
            "author_id": ["x", "x", "y", "z"],
            "event_timestamp": [_ts(2), _ts(1), _ts(1), _ts(1)],
            "attributes": [
                {"genres": "Action"},  # latest version of x
                {"genres": "Drama"},
                {"genres": "Action|Comedy"},
                {"genres": "Drama"},
            ],
        }
    )
    triples = build_a2a(authors, num_triples=10, seed=0)
    assert set(zip(triples["a1"], triples["a2"], triples["a3"])) == {
        ("x", "y", "z"),
        ("y", "x", "z"),
    }


def test_a2a_alignment_on_attribute_one_hot_embeddings() -> None:
    authors = _authors()
    tok = _tokens(authors)
    triples = build_a2a(authors, num_triples=200, seed=5)
    vocab = sorted(set().union(*tok.values()))
    # With equal-size token sets, one-hot cosine is monotone in Jaccard: perfect alignment.
    emb = {a: np.array([t in s for t in vocab], dtype=np.float32) for a, s in tok.items()}
    assert a2a_alignment(triples, emb) == 1.0
    assert a2a_alignment(triples, lambda ids: np.stack([emb[i] for i in ids])) == 1.0
    # Reversed triples (a2 and a3 swapped): every one is now mis-ordered.
    swapped = triples.rename(columns={"a2": "a3", "a3": "a2"})
    assert a2a_alignment(swapped, emb) == 0.0
    # Constant embeddings tie every pair: ties are not "closer", so the rate is 0.
    assert a2a_alignment(triples, {a: np.ones(3) for a in tok}) == 0.0
    with pytest.raises(ValueError):
        a2a_alignment(triples.iloc[:0], emb)


def test_an_empty_a2a_set_is_written_with_its_schema(tmp_path):
    """Issue 14 item 9: fewer than three authors give no triple; the file keeps its types."""
    import pyarrow.parquet as pq

    from mspa_features.evaluation.datasets import A2A_SCHEMA, build_a2a, save_a2a

    authors = pd.DataFrame({"author_id": ["a1", "a2"], "attributes": [{}, {}]})
    triples = build_a2a(authors, num_triples=5, seed=0)
    assert triples.empty
    path = save_a2a(triples, tmp_path)
    assert pq.read_schema(path).remove_metadata() == A2A_SCHEMA
    assert pq.read_table(path).num_rows == 0
