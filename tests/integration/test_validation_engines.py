"""One rule set, two engines (issue 13: 2): the pandas and the Spark validation of the same
contract files accept the same rows and quarantine the same rows with the same reasons and
records (order-insensitive), with every class of bad row in the input.

Users, authors and interactions go through ingest (column mapping, declared timestamp
formats, ids accepted upstream) once per engine: ``data.validation_engine: pandas`` and
``spark`` (Spark ``local[1]``).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mspa_features.data.ingest import ingest_files
from mspa_features.data.sources import SourceFile, TimestampFormat

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z in epoch milliseconds


def _write(folder: Path) -> list[SourceFile]:
    folder.mkdir(parents=True, exist_ok=True)
    users = pa.table(
        {
            "uid": ["u1", "u2", "u3", "u4", "u1", None, "  ", "u5", "u6", "u7"],
            "age": pa.array([30, 41, None, 25, 33, 20, 20, 2**40, -3, 19], pa.int64()),
            "gender": ["f", "m", None, "x", "f", "m", "m", "f", "m", "f"],
        }
    )
    ts_text = [
        "2025-12-01T10:00:00Z",
        "2025-12-01T11:00:00+02:00",
        "2025-12-02 09:30:00.123456Z",
        "2025-12-03T00:00:00",  # naive
        "not a time",  # unparseable
        "1500-01-01T00:00:00Z",  # outside the range
        "2025-12-01T10:00:00Z",  # duplicate key of the first row
        "",  # blank: missing
        "2025-12-05T00:00:00Z",
        "2025-12-06T00:00:00Z",
        "1764583200",  # a number as ISO text
        "2025-13-01T00:00:00Z",  # month 13
    ]
    authors = pa.table(
        {
            "author_id": ["a1", "a2", "a3", "a4", "a5", "a6", "a1", "a7", "a8", None, "a9", "b1"],
            "event_timestamp": ts_text,
            "profile_text": ["p"] * 8 + ["   ", "q", "r", "s"],
            "comments": [["hi"], [], None, ["a", "b"], None, None, None, None, None, None, [], []],
        }
    )
    good = [
        ("u1", "a1", T0 + 1, "tip", 1.0, 1),
        ("u2", "a2", T0 + 2, "view", 0.5, 0),
        ("u3", "a3", T0 + 3, "view", 2.0, 0),
        ("u4", "a1", T0 + 4, "tip", 5.0, 1),
        ("u1", "a2", T0 + 5, "like", 0.0, 0),
    ]
    bad = [
        ("u1", "a1", T0 + 1, "tip", 1.0, 1),  # duplicate of row 0
        ("u99", "a1", T0 + 6, "tip", 1.0, 1),  # unknown user
        ("u1", "a99", T0 + 7, "tip", 1.0, 1),  # unknown author
        ("u1", None, T0 + 8, "tip", 1.0, 1),  # missing author
        ("u2", "a2", T0 + 9, "tip", 1.0, 2),  # label outside {0, 1}
        ("u2", "a2", T0 + 10, "tip", math.nan, 1),  # NaN value
        ("u2", "a2", T0 + 11, "tip", math.inf, 1),  # infinite value
        ("u2", "a2", 10**18, "tip", 1.0, 1),  # out of range as epoch ms
        ("u2", "a2", T0 + 12, "   ", 1.0, 1),  # blank action
        ("u98", "a97", T0 + 13, "tip", -math.inf, 7),  # several reasons in one row
        ("u7", "a1", T0 + 14, "tip", 1.0, 300),  # int8 out of range
        ("u1", "a1", T0 + 1, "tip", 1.0, 2),  # same key as row 0 but bad for another reason
        ("u3", "a3", T0 + 3, "view", 2.0, 0),  # duplicate of row 2
        ("x" * 80, "a5", T0 + 15, "tip", 1.0, 0),  # unknown user, shown cut
    ]
    rows = good + bad + [("u4", "a4", T0 + 16, "tip", 3.0, 1)]
    inter = pa.table(
        {
            "listener": [r[0] for r in rows],
            "author_id": [r[1] for r in rows],
            "played_ms": pa.array([r[2] for r in rows], pa.int64()),
            "action": [r[3] for r in rows],
            "value": [r[4] for r in rows],
            "label": pa.array([r[5] for r in rows], pa.int64()),
            "extra": [f"e{i}" for i in range(len(rows))],  # a column no contract names
        }
    )
    files = []
    for name, table in (("users", users), ("authors", authors), ("interactions", inter)):
        p = folder / f"{name}.parquet"
        pq.write_table(table, p)
        files.append(SourceFile(name, p, str(p)))
    return files


def _ingest(files: list[SourceFile], engine: str, validator=None, staging=None):  # type: ignore[no-untyped-def]
    return ingest_files(
        files,
        columns={
            "users": {"user_id": "uid"},
            "interactions": {"user_id": "listener", "event_timestamp": "played_ms"},
        },
        timestamps={"authors": TimestampFormat(), "interactions": TimestampFormat(unit="ms")},
        engine=engine,  # type: ignore[arg-type]
        validate_spark=validator,
        staging=staging,
    )


def _rows(table: pa.Table) -> list[tuple]:
    return sorted((tuple(r.values()) for r in table.to_pylist()), key=lambda t: repr(t))


def test_pandas_and_spark_agree(tmp_path: Path) -> None:
    from spark_jobs.validate import SparkValidator

    files = _write(tmp_path / "in")
    by_pandas = _ingest(files, "pandas")
    validator = SparkValidator(master="local[1]")
    try:
        by_spark = _ingest(files, "spark", validator, tmp_path / "staging")
    finally:
        validator.stop()
    assert [r.contract for r in by_spark] == ["users", "authors", "interactions"]
    for p, s in zip(by_pandas, by_spark, strict=True):
        assert s.n_input == p.n_input
        assert s.n_input == s.n_accepted + s.n_quarantined
        assert s.accepted.schema == p.accepted.schema
        assert _rows(s.accepted) == _rows(p.accepted), p.contract
        assert _rows(s.quarantine) == _rows(p.quarantine), p.contract
        assert s.reason_counts() == p.reason_counts()
    # every class of bad row is there
    reasons = " | ".join(
        r for res in by_pandas for r in res.quarantine.column("reason").to_pylist()
    )
    for kind in (
        "duplicate key",
        "unknown user",
        "unknown author",
        "missing required value",
        "must be one of [0, 1]",
        "not finite (nan)",
        "not finite (inf)",
        "outside the supported range",
        "(read as epoch milliseconds)",
        "naive timestamp",
        "unparseable timestamp",
        "numeric timestamp is ambiguous",
        "out of range for int32",
        "out of range for int8",
        "x" * 60 + "...",
    ):
        assert kind in reasons, kind
    inter = by_spark[2]
    # u3 (no age: a null in an optional integer column) is kept, and so is its interaction
    assert inter.n_input == 20 and inter.n_accepted == 5
    users = by_spark[0]
    assert "u3" in users.accepted.column("user_id").to_pylist()
    first = inter.accepted.slice(0, 1).to_pylist()[0]
    assert first["event_timestamp"] == datetime(2026, 1, 1, 0, 0, 0, 1000, tzinfo=UTC)


def test_pandas_refuses_what_does_not_fit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mspa_features.data import rules
    from mspa_features.errors import IncompatibleSettingsError

    files = _write(tmp_path / "in")
    monkeypatch.setattr(rules, "available_memory", lambda: 10_000)
    with pytest.raises(IncompatibleSettingsError) as e:
        _ingest(files, "pandas")
    msg = str(e.value)
    assert "\n" not in msg
    assert "users" in msg and "10 rows" in msg and "data.validation_engine: spark" in msg
