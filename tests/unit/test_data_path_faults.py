"""Issue 14, data path: one bad value never aborts a load; valid timestamp text is accepted as
the instant it names; vectors of one table share one length; feature rows never carry future
information; a load that accepts nothing fails. Each class is tried with several members."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mspa_features.data import movielens
from mspa_features.data.contracts import AUTHORS, INTERACTIONS, PREFERENCES
from mspa_features.data.timestamps import SUPPORTED_RANGE
from mspa_features.data.validation import require_accepted, validate
from mspa_features.errors import NothingAcceptedError
from mspa_features.io import read_input

KNOWN = {"users": {"u1", "u2", "u3"}, "authors": {"a1", "a2", "a3"}}
RANGE = f"outside the supported range {SUPPORTED_RANGE}"
UNPARSE = "unparseable timestamp"


def _reasons(res) -> dict[int, str]:
    return dict(
        zip(
            res.quarantine.column("row_number").to_pylist(),
            res.quarantine.column("reason").to_pylist(),
            strict=True,
        )
    )


def _one_ts(value) -> tuple[list, dict[int, str]]:
    """Validate one interaction with ``value`` as its timestamp: (accepted ts, reasons)."""
    df = pd.DataFrame(
        {
            "user_id": ["u1"],
            "author_id": ["a1"],
            "event_timestamp": pd.Series([value], dtype=object),
            "action": ["tip"],
            "value": ["1"],
            "label": ["1"],
        }
    )
    res = validate(df, INTERACTIONS, source="x", known_ids=KNOWN)
    assert res.n_input == res.n_accepted + res.n_quarantined == 1
    return res.accepted.column("event_timestamp").to_pylist(), _reasons(res)


# --------------------------------------------------------------------------- item 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1998-01-01T10:00:00z", datetime(1998, 1, 1, 10, tzinfo=UTC)),
        ("1998-01-01t10:00:00Z", datetime(1998, 1, 1, 10, tzinfo=UTC)),
        ("1998-01-01t10:00:00z", datetime(1998, 1, 1, 10, tzinfo=UTC)),
        ("1998-01-01 10:00:00Z", datetime(1998, 1, 1, 10, tzinfo=UTC)),
        ("1998-01-01T15:30:00+05:30", datetime(1998, 1, 1, 10, tzinfo=UTC)),
        ("1998-01-01T15:30:00+0530", datetime(1998, 1, 1, 10, tzinfo=UTC)),
        ("1998-01-01T05:00:00-05", datetime(1998, 1, 1, 10, tzinfo=UTC)),
        ("1998-01-01T10:00:00-00:00", datetime(1998, 1, 1, 10, tzinfo=UTC)),
        ("1998-01-01T10:00:00.5Z", datetime(1998, 1, 1, 10, 0, 0, 500000, tzinfo=UTC)),
        ("1998-01-01T10:00:00,25Z", datetime(1998, 1, 1, 10, 0, 0, 250000, tzinfo=UTC)),
        # nanoseconds are truncated to the microsecond, as a nanosecond parquet column is
        ("1998-01-01T10:00:00.123456789Z", datetime(1998, 1, 1, 10, 0, 0, 123456, tzinfo=UTC)),
        ("1998-01-01T10:00Z", datetime(1998, 1, 1, 10, tzinfo=UTC)),
        ("19980101T100000Z", datetime(1998, 1, 1, 10, tzinfo=UTC)),
        ("1998-01-01 10:00:00 UTC", datetime(1998, 1, 1, 10, tzinfo=UTC)),
        ("  1998-01-01T10:00:00Z ", datetime(1998, 1, 1, 10, tzinfo=UTC)),
        ("1998-12-31T24:00:00Z", datetime(1999, 1, 1, tzinfo=UTC)),
        ("1998-12-31T23:59:60Z", datetime(1999, 1, 1, tzinfo=UTC)),  # leap second, as POSIX
        ("2024-02-29T00:00:00Z", datetime(2024, 2, 29, tzinfo=UTC)),
        ("1677-09-22T00:00:00Z", datetime(1677, 9, 22, tzinfo=UTC)),
        ("2262-04-10T23:59:59.999999Z", datetime(2262, 4, 10, 23, 59, 59, 999999, tzinfo=UTC)),
    ],
)
def test_valid_timestamp_text_is_that_utc_instant(text, expected):
    accepted, reasons = _one_ts(text)
    assert reasons == {}
    assert accepted == [expected]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("10000-01-01T00:00:00Z", f"event_timestamp: {RANGE} '10000-01-01T00:00:00Z'"),
        ("+12345-06-07T00:00:00Z", f"event_timestamp: {RANGE} '+12345-06-07T00:00:00Z'"),
        ("0001-01-01T00:00:00Z", f"event_timestamp: {RANGE} '0001-01-01T00:00:00Z'"),
        ("2262-04-11T00:00:00Z", f"event_timestamp: {RANGE} '2262-04-11T00:00:00Z'"),
        ("1677-09-21T23:59:59z", f"event_timestamp: {RANGE} '1677-09-21T23:59:59z'"),
        (
            "2026-02-30T00:00:00Z",
            "event_timestamp: unparseable timestamp '2026-02-30T00:00:00Z' (day 30 of month 2)",
        ),
        (
            "2026-13-01T00:00:00Z",
            "event_timestamp: unparseable timestamp '2026-13-01T00:00:00Z' (month 13)",
        ),
        (
            "1998-01-01T10:00:00+24:00",
            "event_timestamp: unparseable timestamp '1998-01-01T10:00:00+24:00' (offset +24:00)",
        ),
        ("yesterday", "event_timestamp: unparseable timestamp 'yesterday'"),
        (
            "1998-01-01T10:00:00",
            "event_timestamp: naive timestamp '1998-01-01T10:00:00' (no UTC offset)",
        ),
        ("1998-01-01", "event_timestamp: naive timestamp '1998-01-01' (no UTC offset)"),
    ],
)
def test_invalid_or_unholdable_timestamp_text_names_why(text, reason):
    accepted, reasons = _one_ts(text)
    assert accepted == []
    assert reasons == {0: reason}


def test_numeric_text_is_quarantined_as_ambiguous_not_unparseable():
    _, reasons = _one_ts("881251949")
    assert reasons[0].startswith("event_timestamp: numeric timestamp is ambiguous '881251949'")


@pytest.mark.parametrize(
    ("arrow_type", "raw", "expected"),
    [
        # the same instants as the text cases above, as typed parquet columns
        (pa.timestamp("s", tz="UTC"), 253402300800, RANGE),  # 10000-01-01
        (pa.timestamp("ms", tz="UTC"), -62135596800000, RANGE),  # 0001-01-01
        (pa.timestamp("us", tz="UTC"), 9223286400000000, RANGE),  # 2262-04-11
        (pa.timestamp("us", tz="UTC"), 883648800000000, datetime(1998, 1, 1, 10, tzinfo=UTC)),
        (
            pa.timestamp("ns", tz="UTC"),
            883648800123456789,
            datetime(1998, 1, 1, 10, 0, 0, 123456, tzinfo=UTC),
        ),
        (
            pa.timestamp("s", tz="+05:30"),
            883648800,
            datetime(1998, 1, 1, 10, tzinfo=UTC),
        ),
    ],
)
def test_parquet_and_csv_of_one_instant_get_one_verdict(tmp_path, arrow_type, raw, expected):
    iso = {
        253402300800: "10000-01-01T00:00:00Z",
        -62135596800000: "0001-01-01T00:00:00Z",
        9223286400000000: "2262-04-11T00:00:00Z",
    }
    table = pa.table(
        {
            "user_id": ["u1", "u2"],
            "author_id": ["a1", "a2"],
            "event_timestamp": pa.array([raw, 883648800 * _per_s(arrow_type)], arrow_type),
            "action": ["tip", "tip"],
            "value": [1.0, 2.0],
            "label": pa.array([1, 0], pa.int8()),
        }
    )
    pq.write_table(table, tmp_path / "i.parquet")
    res = validate(read_input(tmp_path / "i.parquet"), INTERACTIONS, source="p", known_ids=KNOWN)
    assert res.n_input == res.n_accepted + res.n_quarantined == 2
    got = res.accepted.column("event_timestamp").to_pylist()
    if isinstance(expected, datetime):
        assert got[0] == expected and _reasons(res) == {}
    else:
        assert got == [datetime(1998, 1, 1, 10, tzinfo=UTC)]  # the good row is kept
        (reason,) = _reasons(res).values()
        assert reason.startswith(f"event_timestamp: {RANGE} '")
        # the CSV text of the same instant gets the same verdict
        _, text_reasons = _one_ts(iso[raw])
        assert text_reasons[0].startswith(f"event_timestamp: {RANGE}")


def _per_s(t: pa.DataType) -> int:
    return {"s": 1, "ms": 1000, "us": 10**6, "ns": 10**9}[t.unit]


def test_python_datetimes_beyond_the_range_and_naive_are_named():
    accepted, reasons = _one_ts(datetime(9999, 12, 31, tzinfo=UTC))
    assert accepted == [] and reasons == {0: f"event_timestamp: {RANGE} '9999-12-31T00:00:00Z'"}
    _, reasons = _one_ts(datetime(2000, 1, 1))
    assert reasons == {0: "event_timestamp: naive timestamp '2000-01-01T00:00:00' (no UTC offset)"}


# --------------------------------------------------------------------------- item 1


def _write_ml(folder, ratings: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ml-100k.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + "\n".join(ratings) + "\n"
    )
    (folder / "ml-100k.item").write_text(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "10\tHeat\t1995\tAction Crime\n20\tAlien\t1979\tHorror Sci-Fi\n30\tOnly ms\t1990\tDrama\n"
    )
    (folder / "ml-100k.user").write_text(
        "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
        "1\t24\tM\ttechnician\t85711\n2\t53\tF\tother\t٣٤٥٦٧\n3\t23\tM\twriter\t  \n"
    )


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (
            "881251949000",
            f"event_timestamp: {RANGE} '881251949000' (read as unix seconds: in milliseconds?)",
        ),
        (
            "881251949000000",
            f"event_timestamp: {RANGE} '881251949000000' (read as unix seconds: in microseconds?)",
        ),
        ("1e400", f"event_timestamp: {RANGE} '1e400' (read as unix seconds)"),
        ("inf", f"event_timestamp: {UNPARSE} 'inf' (not a finite number of unix seconds)"),
        ("nan", f"event_timestamp: {UNPARSE} 'nan' (not a finite number of unix seconds)"),
        ("-inf", f"event_timestamp: {UNPARSE} '-inf' (not a finite number of unix seconds)"),
        ("12:00", f"event_timestamp: {UNPARSE} '12:00' (expected unix seconds)"),
    ],
)
def test_movielens_bad_timestamp_quarantines_one_row(tmp_path, bad, reason):
    ml = tmp_path / "ml-100k"
    # movie 30's only rating is the bad one: its first-seen instant must not abort the load
    _write_ml(ml, ["1\t10\t5\t881250949", "2\t20\t3\t881251000", f"1\t30\t5\t{bad}"])
    data = movielens.convert(ml)
    inter = data.interactions
    assert (inter.n_input, inter.n_accepted, inter.n_quarantined) == (3, 2, 1)
    assert _reasons(inter) == {2: reason}
    # the quarantine keeps the row as the file holds it
    (record,) = inter.quarantine.column("record").to_pylist()
    assert f'"timestamp": "{bad}"' in record and '"item_id": "30"' in record
    authors = data.authors
    assert authors.n_accepted == 3
    first = dict(
        zip(
            authors.accepted.column("author_id").to_pylist(),
            authors.accepted.column("event_timestamp").to_pylist(),
            strict=True,
        )
    )
    assert first["10"] == datetime(1997, 12, 4, 15, 55, 49, tzinfo=UTC)
    assert first["30"] == first["10"]  # no valid rating: enters with the data's first instant
    require_accepted(data.results())  # something of every contract accepted: no failure


def test_movielens_zip_codes_in_other_scripts_or_blank_do_not_abort(tmp_path):
    ml = tmp_path / "ml-100k"
    _write_ml(ml, ["1\t10\t5\t881250949"])
    users = movielens.convert(ml).users
    regions = dict(
        zip(
            users.accepted.column("user_id").to_pylist(),
            users.accepted.column("region").to_pylist(),
            strict=True,
        )
    )
    assert regions == {"1": "mountain", "2": "non-us", "3": None}


# --------------------------------------------------------------------------- item 3


def _prefs(embs, model_versions=None) -> pd.DataFrame:
    n = len(embs)
    return pd.DataFrame(
        {
            "user_id": [f"u{1 + i % 3}" for i in range(n)],
            "event_timestamp": [f"2026-01-{1 + i:02d}T00:00:00Z" for i in range(n)],
            "created_timestamp": ["2026-01-01T00:00:00Z"] * n,
            "history_count": [1] * n,
            "history_last_ts": ["2025-12-01T00:00:00Z"] * n,
            "pref_text": ["likes jazz"] * n,
            "pref_emb": embs,
            "model_version": model_versions or ["m"] * n,
            "prompt_hash": ["h"] * n,
        }
    )


def test_vectors_of_one_table_get_the_most_common_length_and_say_so():
    df = _prefs(["[1, 0, 0, 0]", "[0, 1, 0]", "[]", "[0, 0, 1, 0]"])
    res = validate(df, PREFERENCES, source="p.csv", known_ids=KNOWN)
    assert res.accepted.column("pref_emb").to_pylist() == [[1, 0, 0, 0], [0, 0, 1, 0]]
    assert _reasons(res) == {
        1: "pref_emb: wrong dimension (found length 3, expected length 4: the most common "
        "length for model_version=m)",
        2: "pref_emb: empty vector (found length 0, expected length 4: the most common length "
        "for model_version=m)",
    }
    assert res.notes == [
        (
            "pref_emb: length 4 for model_version=m (inferred: 2 of 3 vectors; give emb_dim to "
            "require one)"
        )
    ]


def test_vector_lengths_are_per_model_version_and_ties_go_to_the_first_row():
    df = _prefs(
        [[1.0, 0.0], [0.0, 1.0, 0.0], [1.0] * 8, [1.0] * 8], model_versions=["a", "a", "b", "b"]
    )
    res = validate(df, PREFERENCES, source="p", known_ids=KNOWN)
    assert res.accepted.column("model_version").to_pylist() == ["a", "b", "b"]
    assert _reasons(res) == {
        1: "pref_emb: wrong dimension (found length 3, expected length 2: the most common "
        "length for model_version=a)"
    }
    assert "a tie, the first row decides" in res.notes[0]


def test_configured_dimension_wins_and_empty_is_never_accepted():
    df = _prefs([[1.0, 0.0, 0.0], [], [1.0, 0.0], [[1.0, 0.0], [0.0, 1.0]]])
    res = validate(df, PREFERENCES, source="p", emb_dim=3, known_ids=KNOWN)
    assert res.accepted.column("pref_emb").to_pylist() == [[1.0, 0.0, 0.0]]
    assert _reasons(res) == {
        1: "pref_emb: empty vector (found length 0, expected length 3: configured emb_dim)",
        2: "pref_emb: wrong dimension (found length 2, expected length 3: configured emb_dim)",
        3: "pref_emb: nested vector (found shape (2, 2), expected a flat vector of length 3: "
        "configured emb_dim)",
    }


def test_nested_and_ragged_vectors_name_what_was_found():
    df = _prefs(["[[1, 2], [3, 4]]", "[[1], [2, 3]]", "[1, 2]", '["a", "b"]', "[]"])
    res = validate(df, PREFERENCES, source="p.csv", known_ids=KNOWN)
    reasons = _reasons(res)
    assert reasons[0] == (
        "pref_emb: nested vector (found shape (2, 2), expected a flat vector of length 2: the "
        "most common length for model_version=m)"
    )
    assert reasons[1] == (
        "pref_emb: not a vector of numbers (found [[1], [2, 3]], expected a flat list)"
    )
    assert (
        reasons[3] == "pref_emb: not a vector of numbers (found ['a', 'b'], expected a flat list)"
    )
    assert res.accepted.column("pref_emb").to_pylist() == [[1.0, 2.0]]


def test_only_empty_vectors_are_all_rejected():
    res = validate(_prefs(["[]", "[]"]), PREFERENCES, source="p.csv", known_ids=KNOWN)
    assert res.n_accepted == 0
    assert set(_reasons(res).values()) == {
        "pref_emb: empty vector (found length 0, expected numbers)"
    }


def test_the_length_a_parquet_file_declares_is_used(tmp_path):
    df = _prefs([[1.0, 0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    table = pa.Table.from_pandas(df, preserve_index=False)
    i = table.schema.get_field_index("pref_emb")
    field = table.schema.field(i).with_metadata({"vector_length": "3"})
    table = table.cast(table.schema.set(i, field))
    pq.write_table(table, tmp_path / "p.parquet")
    res = validate(read_input(tmp_path / "p.parquet"), PREFERENCES, source="p", known_ids=KNOWN)
    assert res.accepted.column("pref_emb").to_pylist() == [[1.0, 0.0, 0.0]]
    assert res.notes == ["pref_emb: length 3 (declared by the file's schema)"]
    # fixed_size_list<2> declares 2
    fixed = pa.table({**{c: table.column(c) for c in table.column_names if c != "pref_emb"}})
    fixed = fixed.append_column(
        "pref_emb", pa.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], pa.list_(pa.float32(), 2))
    )
    pq.write_table(fixed, tmp_path / "f.parquet")
    res = validate(read_input(tmp_path / "f.parquet"), PREFERENCES, source="f", known_ids=KNOWN)
    assert res.n_accepted == 3 and res.notes == [
        "pref_emb: length 2 (declared by the file's schema)"
    ]


# --------------------------------------------------------------------------- item 4


@pytest.mark.parametrize(
    ("count", "last", "as_of", "reason"),
    [
        (
            3,
            "2026-01-02T00:00:00Z",
            "2026-01-01T00:00:00Z",
            (
                "history_last_ts: point-in-time violation ('2026-01-02T00:00:00Z' is not before "
                "event_timestamp '2026-01-01T00:00:00Z': the row would carry information from its "
                "own future)"
            ),
        ),
        (  # equal is a violation too: the history is strictly before the as-of instant
            1,
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:00:00Z",
            (
                "history_last_ts: point-in-time violation ('2026-01-01T00:00:00Z' is not before "
                "event_timestamp '2026-01-01T00:00:00Z': the row would carry information from its "
                "own future)"
            ),
        ),
        (  # an offset does not hide it: 03:00+02:00 is 01:00 UTC, after the as-of instant
            1,
            "2026-01-01T03:00:00+02:00",
            "2026-01-01T00:00:00Z",
            (
                "history_last_ts: point-in-time violation ('2026-01-01T01:00:00Z' is not before "
                "event_timestamp '2026-01-01T00:00:00Z': the row would carry information from its "
                "own future)"
            ),
        ),
        (2, None, "2026-01-01T00:00:00Z", "history_last_ts: missing although history_count is 2"),
        (
            0,
            "2025-12-01T00:00:00Z",
            "2026-01-01T00:00:00Z",
            "history_last_ts: set ('2025-12-01T00:00:00Z') although history_count is 0",
        ),
        (-1, None, "2026-01-01T00:00:00Z", "history_count: must not be negative, got -1"),
    ],
)
def test_preference_rows_built_from_the_future_are_quarantined(count, last, as_of, reason):
    df = _prefs([[1.0, 0.0], [0.0, 1.0]])
    df["history_count"] = [1, count]
    df["history_last_ts"] = ["2025-12-31T23:59:59.999999Z", last]
    df["event_timestamp"] = ["2026-01-01T00:00:00Z", as_of]
    df["user_id"] = ["u1", "u2"]
    res = validate(df, PREFERENCES, source="p", known_ids=KNOWN)
    assert _reasons(res) == {1: reason}
    assert res.accepted.column("user_id").to_pylist() == ["u1"]


def test_a_user_without_history_is_fine():
    df = _prefs([[1.0, 0.0]])
    df["history_count"], df["history_last_ts"] = [0], [None]
    assert validate(df, PREFERENCES, source="p", known_ids=KNOWN).n_accepted == 1


# --------------------------------------------------------------------------- item 10


def test_a_load_that_accepts_nothing_fails_with_the_counts():
    df = pd.DataFrame(
        {
            "author_id": ["a1", "a2", "a3"],
            "event_timestamp": ["2026-01-01T00:00:00", "2026-01-01 00:00", "soon"],
            "profile_text": ["x", "y", "z"],
        }
    )
    res = validate(df, AUTHORS, source="authors.csv")
    assert (res.n_input, res.n_accepted, res.n_quarantined) == (3, 0, 3)
    with pytest.raises(NothingAcceptedError) as e:
        require_accepted([res], quarantine="q/")
    assert str(e.value) == (
        "no row of contract 'authors' accepted (input 3 = accepted 0 + quarantined 3; top "
        "reasons: event_timestamp: naive timestamp (2), event_timestamp: unparseable timestamp "
        "(1)); quarantine -> q/"
    )
    # one accepted row is enough; a contract not required is not checked
    ok = validate(df.assign(event_timestamp="2026-01-01T00:00:00Z"), AUTHORS, source="a")
    require_accepted([ok])
    require_accepted([res, ok], required=["interactions"])


def test_an_empty_file_accepts_nothing(tmp_path):
    (tmp_path / "i.csv").write_text("user_id,author_id,event_timestamp,action,value,label\n")
    res = validate(read_input(tmp_path / "i.csv"), INTERACTIONS, source="i.csv")
    assert res.n_input == 0
    with pytest.raises(NothingAcceptedError, match="'interactions' accepted \\(input 0 "):
        require_accepted([res])


def test_counts_reconcile_with_every_kind_of_bad_timestamp():
    values = ["1998-01-01T10:00:00z", "10000-01-01T00:00:00Z", "x", "1998-01-01", None, 5, np.nan]
    df = pd.DataFrame(
        {
            "user_id": ["u1"] * len(values),
            "author_id": ["a1"] * len(values),
            "event_timestamp": pd.Series(values, dtype=object),
            "action": [f"a{i}" for i in range(len(values))],
            "value": ["1"] * len(values),
            "label": ["1"] * len(values),
        }
    )
    res = validate(df, INTERACTIONS, source="x", known_ids=KNOWN)
    assert (res.n_input, res.n_accepted, res.n_quarantined) == (7, 1, 6)
    reasons = _reasons(res)
    assert reasons[4] == reasons[6] == "event_timestamp: missing required value"
    assert reasons[5] == "event_timestamp: unsupported timestamp value 5"


def test_the_data_stage_of_a_run_fails_when_a_contract_accepts_nothing(tmp_path, monkeypatch):
    """Item 10 in ``mspa run``: the data stage fails (counts in the message), files written."""
    from mspa_features.cli.main_job import prepare_data
    from mspa_features.config import DataConfig, RunConfig, Workspace

    ml = tmp_path / "raw" / "ml-100k"
    _write_ml(ml, ["1\t10\t5\t881251949000", "2\t20\t3\tsoon"])  # every rating is bad
    monkeypatch.setattr(movielens, "fetch", lambda raw_dir, **_: ml)
    cfg = RunConfig(name="ml", workspace=tmp_path / "ws", data=DataConfig(source="movielens"))
    ws = Workspace(cfg.workspace)
    with pytest.raises(NothingAcceptedError) as e:
        prepare_data(cfg, ws)
    msg = str(e.value)
    assert msg.startswith(
        "no row of contract 'interactions' accepted (input 2 = accepted 0 + quarantined 2; top "
        "reasons: event_timestamp: outside the supported range (1), event_timestamp: "
        "unparseable timestamp (1))"
    )
    assert msg.endswith(f"quarantine -> {ws.quarantine('ml')}")
    assert [r.n_accepted for r in e.value.results] == [3, 3, 0]
    assert (ws.quarantine("ml") / "interactions.parquet").is_file()


def test_a_line_with_too_many_fields_quarantines_only_its_row(tmp_path):
    """Item 1: a broken line in a CSV is one quarantined row, not a failed file."""
    (tmp_path / "i.csv").write_text(
        "user_id,author_id,event_timestamp,action,value,label\n"
        "u1,a1,2026-01-01T00:00:00Z,tip,1,1\n"
        "u2,a2,2026-01-01T00:00:00Z,tip,1,1,extra\n"
        "u3,a3,2026-01-02T00:00:00Z,tip,2,0\n"
    )
    res = validate(read_input(tmp_path / "i.csv"), INTERACTIONS, source="i.csv", known_ids=KNOWN)
    assert (res.n_input, res.n_accepted, res.n_quarantined) == (3, 2, 1)
    assert _reasons(res) == {
        1: "row: malformed line (7 fields, expected 6) 'u2,a2,2026-01-01T00:00:00Z,tip,1,1,extra'"
    }
    assert res.accepted.column("user_id").to_pylist() == ["u1", "u3"]


def test_movielens_line_with_an_extra_tab_quarantines_only_its_row(tmp_path):
    ml = tmp_path / "ml-100k"
    _write_ml(ml, ["1\t10\t5\t881250949", "2\t20\t3\t881251000\t9", "1\t20\t4\t881251100"])
    inter = movielens.convert(ml).interactions
    assert (inter.n_input, inter.n_accepted, inter.n_quarantined) == (3, 2, 1)
    assert _reasons(inter) == {
        1: "row: malformed line (5 fields, expected 4) '2\t20\t3\t881251000\t9'"
    }
