"""Validation: bad rows go to quarantine with the field and the reason; counts reconcile."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mspa_features.data.contracts import AUTHORS, INTERACTIONS, PREFERENCES, USERS
from mspa_features.data.validation import validate
from mspa_features.errors import SchemaError
from mspa_features.io import read_input

KNOWN = {"users": {"u1", "u2"}, "authors": {"a1", "a2"}}


def _png(color=(200, 10, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, format="PNG")
    return buf.getvalue()


def _interactions(**override):
    base = {
        "user_id": ["u1", "u2"],
        "author_id": ["a1", "a2"],
        "event_timestamp": ["2026-01-01T00:00:00Z", "2026-01-02T03:04:05.123456+00:00"],
        "action": ["tip", "click"],
        "value": ["1.5", "1"],
        "label": ["1", "0"],
    }
    base.update(override)
    return pd.DataFrame(base)


def _reasons(res) -> dict[int, str]:
    return dict(
        zip(
            res.quarantine.column("row_number").to_pylist(),
            res.quarantine.column("reason").to_pylist(),
            strict=True,
        )
    )


def test_clean_rows_are_typed_to_the_contract():
    res = validate(_interactions(), INTERACTIONS, source="x.csv", known_ids=KNOWN)
    assert res.n_accepted == 2 and res.n_quarantined == 0
    assert res.accepted.schema == INTERACTIONS.schema
    ts = res.accepted.column("event_timestamp").to_pylist()[1]
    assert ts.microsecond == 123456 and ts.utcoffset().total_seconds() == 0


def test_offsets_are_converted_to_utc():
    res = validate(
        _interactions(event_timestamp=["2026-01-01T02:00:00+02:00", "2026-01-01T00:00:00Z"]),
        INTERACTIONS,
        source="x",
        known_ids=KNOWN,
    )
    a, b = res.accepted.column("event_timestamp").to_pylist()
    assert a == b  # 02:00+02:00 is midnight UTC


@pytest.mark.parametrize(
    ("override", "row", "expected"),
    [
        (
            {"event_timestamp": ["2026-01-01T00:00:00Z", "2026-01-02 00:00:00"]},
            1,
            "event_timestamp: naive timestamp",
        ),
        (
            {"event_timestamp": ["yesterday", "2026-01-01T00:00:00Z"]},
            0,
            "event_timestamp: unparseable timestamp 'yesterday'",
        ),
        ({"user_id": ["u1", "u9"]}, 1, "user_id: unknown user 'u9'"),
        ({"author_id": ["a7", "a2"]}, 0, "author_id: unknown author 'a7'"),
        ({"value": ["nan", "1"]}, 0, "value: not finite (nan)"),
        ({"value": ["1", "inf"]}, 1, "value: not finite (inf)"),
        ({"value": ["abc", "1"]}, 0, "value: not a number 'abc'"),
        ({"label": ["1", "2"]}, 1, "label: must be one of [0, 1], got 2"),
        ({"action": [None, "tip"]}, 0, "action: missing required value"),
    ],
)
def test_bad_rows_are_quarantined_with_field_and_reason(override, row, expected):
    res = validate(_interactions(**override), INTERACTIONS, source="x.csv", known_ids=KNOWN)
    reasons = _reasons(res)
    assert list(reasons) == [row]
    assert expected in reasons[row]
    assert res.n_input == res.n_accepted + res.n_quarantined == 2


def test_duplicate_keys_keep_first_and_name_it():
    df = _interactions(
        user_id=["u1", "u1"],
        author_id=["a1", "a1"],
        event_timestamp=["2026-01-01T00:00:00Z", "2026-01-01T01:00:00+01:00"],
        action=["tip", "tip"],
    )
    res = validate(df, INTERACTIONS, source="x", known_ids=KNOWN)
    assert res.n_accepted == 1
    assert "duplicate key" in _reasons(res)[1] and "first seen at row 0" in _reasons(res)[1]


def test_quarantine_keeps_the_raw_record_and_source():
    res = validate(
        _interactions(value=["oops", "1"]), INTERACTIONS, source="in/x.csv", known_ids=KNOWN
    )
    (q,) = res.quarantine.to_pylist()
    assert q["source"] == "in/x.csv" and q["contract"] == "interactions"
    assert json.loads(q["record"])["value"] == "oops"


def test_naive_datetime_column_quarantines_every_row():
    df = _interactions()
    df["event_timestamp"] = pd.to_datetime(
        df["event_timestamp"], utc=True, format="ISO8601"
    ).dt.tz_localize(None)
    res = validate(df, INTERACTIONS, source="x.parquet", known_ids=KNOWN)
    assert res.n_accepted == 0 and res.n_quarantined == 2
    assert all("naive timestamp" in r for r in _reasons(res).values())


def test_missing_column_fails_fast_naming_file_and_column():
    df = _interactions().drop(columns=["label"])
    with pytest.raises(SchemaError, match=r"x\.csv column 'label'"):
        validate(df, INTERACTIONS, source="x.csv")


def test_numeric_timestamps_fail_fast_as_ambiguous():
    df = _interactions(event_timestamp=[1700000000, 1700000001])
    with pytest.raises(SchemaError, match="event_timestamp.*ambiguous"):
        validate(df, INTERACTIONS, source="x.parquet")


def _authors(**override):
    base = {
        "author_id": ["a1", "a2", "a3"],
        "event_timestamp": ["2026-01-01T00:00:00Z"] * 3,
        "profile_text": ["singer from the north", "dancer", "gamer"],
        "frames": [
            [{"bytes": _png(), "path": None}],
            [{"bytes": _png(), "path": None}],
            [{"bytes": _png(), "path": None}],
        ],
        "comments": [["nice"], [], ["gg", "wow"]],
    }
    base.update(override)
    return pd.DataFrame(base)


def test_broken_images_and_missing_modalities_are_quarantined(tmp_path):
    (tmp_path / "ok.png").write_bytes(_png())
    df = _authors(
        frames=[[{"bytes": b"not an image", "path": None}], [{"bytes": None, "path": "ok.png"}], []]
    )
    res = validate(
        df,
        AUTHORS,
        source="authors.parquet",
        required_modalities=("profile_text", "frames"),
        image_root=tmp_path,
    )
    reasons = _reasons(res)
    assert "frames[0]: undecodable image" in reasons[0]
    assert reasons[2] == "frames: missing required modality"
    assert res.accepted.column("author_id").to_pylist() == ["a2"]


def test_missing_image_file_is_quarantined(tmp_path):
    df = _authors(frames=[["gone.png"], [], []])
    res = validate(df, AUTHORS, source="a", image_root=tmp_path)
    assert "frames[0]: image file not found 'gone.png'" in _reasons(res)[0]
    assert res.n_accepted == 2  # frames not required here: empty lists are fine


def test_non_utf8_text_is_quarantined():
    df = _authors(profile_text=[b"\xff\xfe bad", "ok", "ok"])
    res = validate(df, AUTHORS, source="a")
    assert _reasons(res) == {0: "profile_text: not valid UTF-8 text"}


def test_vectors_wrong_dimension_and_nan():
    ts = "2026-01-01T00:00:00Z"
    df = pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u1"],
            "event_timestamp": [ts, ts, "2026-01-02T00:00:00Z"],
            "created_timestamp": [ts] * 3,
            "history_count": [0, 2, 3],
            "history_last_ts": [None, "2025-12-31T00:00:00Z", ts],
            "pref_text": ["a", "b", "c"],
            "pref_emb": [np.ones(4), np.ones(3), np.array([1, np.nan, 0, 0])],
            "model_version": ["m"] * 3,
            "prompt_hash": ["h"] * 3,
        }
    )
    res = validate(df, PREFERENCES, source="p", emb_dim=4, known_ids=KNOWN)
    reasons = _reasons(res)
    assert reasons[1] == (
        "pref_emb: wrong dimension (found length 3, expected length 4: configured emb_dim)"
    )
    assert reasons[2] == "pref_emb: not finite (NaN/inf in vector)"
    assert res.accepted.column("pref_emb").to_pylist() == [[1.0] * 4]


def test_users_optional_columns_may_be_absent():
    res = validate(pd.DataFrame({"user_id": ["1", "2"]}), USERS, source="u")
    assert res.n_accepted == 2
    assert res.accepted.column("age").null_count == 2


def test_counts_reconcile_on_a_mixed_corrupted_file(tmp_path):
    rng = np.random.default_rng(0)
    n = 500
    df = pd.DataFrame(
        {
            "user_id": rng.choice(["u1", "u2", "zz"], n),
            "author_id": rng.choice(["a1", "a2"], n),
            "event_timestamp": [
                f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z" for i in range(n)
            ],
            "action": "tip",
            "value": rng.choice(["1", "nan", "2"], n),
            "label": "1",
        }
    )
    df.loc[::50, "event_timestamp"] = "not a time"
    df = pd.concat([df, df.iloc[:10]])  # exact duplicates
    path = tmp_path / "inter.csv"
    df.to_csv(path, index=False)
    res = validate(read_input(path), INTERACTIONS, source=str(path), known_ids=KNOWN)
    assert res.n_input == len(df) == res.n_accepted + res.n_quarantined
    kinds = res.reason_counts()
    assert kinds["user_id: unknown user"] > 0 and kinds["duplicate key"] > 0
    assert kinds["event_timestamp: unparseable timestamp"] >= 1


def test_read_input_fails_fast_on_wrong_format(tmp_path):
    bad = tmp_path / "data.parquet"
    bad.write_text("this is not parquet")
    with pytest.raises(SchemaError, match=r"data\.parquet: not a readable parquet file"):
        read_input(bad)
    with pytest.raises(SchemaError, match="unsupported format '.json'"):
        read_input(tmp_path / "x.json") if (tmp_path / "x.json").write_text("{}") else None


def test_a_null_in_an_optional_integer_column_is_missing_not_a_bad_number() -> None:
    # pandas reads an integer column holding a null as float64 with NaN; the user is kept,
    # with no age, rather than quarantined with "age: not finite (nan)" (and their interactions
    # with them as unknown users).
    import pandas as pd

    from mspa_features.data.contracts import USERS
    from mspa_features.data.validation import validate

    frame = pd.DataFrame({"user_id": ["u1", "u2"], "age": [31, None], "region": ["x", "y"]})
    assert frame["age"].dtype == "float64"
    res = validate(frame, USERS, source="users.parquet")
    assert res.quarantine.num_rows == 0
    assert res.accepted.column("age").to_pylist() == [31, None]
