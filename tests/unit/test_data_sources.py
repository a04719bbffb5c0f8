"""Your own data: column mapping, declared timestamp units and zones, and the errors a config or
a file gets wrong (issue 13, items 1 and 6)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mspa_features.config import Workspace, load_config
from mspa_features.data.contracts import INTERACTIONS
from mspa_features.data.ingest import ensure_data, ingest_source
from mspa_features.data.sources import (
    STAMP_FILE,
    TimestampFormat,
    epoch_us,
    parse_instants,
    prepare_frame,
)
from mspa_features.errors import ConfigError, SchemaError

USERS = "uid,age,region\nu1,30,north\nu2,41,south\n"
AUTHORS = (
    "author_id\tevent_timestamp\tprofile_text\n"
    "s1\t2025-01-01 09:00\tA show about bread\n"
    "s2\t2025-01-01T00:00:00+02:00\tA show about boats\n"
)
# played_at is epoch milliseconds; row 3 is text, row 4 is seconds (out of range as ms? no:
# 1.7e9 ms is 1970-01-20, in range), row 5 is beyond the supported range.
INTER = (
    "listener,show,played_at,action,value,label\n"
    "u1,s1,1736931600000,play,1.0,1\n"
    "u2,s2,1736935200123,play,0.5,0\n"
    "u1,s2,yesterday,play,1.0,1\n"
    "u9,s1,1736938800000,play,1.0,1\n"
    "u2,s1,99999999999999999,play,1.0,1\n"
)
RUN = """name: mine
workspace: ws
data:
  source: files
  path: own
  columns:
    users: {{user_id: uid}}
    interactions: {{user_id: listener, author_id: show, event_timestamp: played_at}}
  timestamps:
    interactions: {{unit: ms}}
    authors: {{unit: iso, timezone: {zone}}}
eval: {{composers: []}}
"""


def _folder(root: Path, zone: str = "Europe/Paris") -> Path:
    own = root / "own"
    own.mkdir(parents=True, exist_ok=True)
    (own / "users.csv").write_text(USERS)
    (own / "authors.tsv").write_text(AUTHORS)
    (own / "interactions.csv").write_text(INTER)
    (root / "run.yaml").write_text(RUN.format(zone=zone))
    return root / "run.yaml"


def _config_error(tmp_path: Path, data: str) -> str:
    p = tmp_path / "bad.yaml"
    p.write_text(f"name: x\ndata:\n{data}")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    return str(e.value)


def test_own_folder_is_mapped_parsed_and_reconciled(tmp_path: Path) -> None:
    cfg = load_config(_folder(tmp_path))
    assert cfg.data.path == str((tmp_path / "own").resolve())  # relative to the config
    ws = Workspace(tmp_path / "ws")
    results = {r.contract: r for r in ingest_source(cfg, ws)}
    for r in results.values():
        assert r.n_input == r.n_accepted + r.n_quarantined
    assert [(r.n_accepted, r.n_quarantined) for r in results.values()] == [(2, 0), (2, 0), (2, 3)]

    authors = results["authors"].accepted.to_pandas().set_index("author_id")
    # naive text in the declared zone (Paris is UTC+1 in January); an explicit offset is kept
    assert authors.loc["s1", "event_timestamp"] == pd.Timestamp("2025-01-01T08:00:00Z")
    assert authors.loc["s2", "event_timestamp"] == pd.Timestamp("2024-12-31T22:00:00Z")

    inter = results["interactions"].accepted.to_pandas()
    assert inter["event_timestamp"].tolist() == [
        pd.Timestamp("2025-01-15T09:00:00Z"),
        pd.Timestamp("2025-01-15T10:00:00.123Z"),
    ]
    assert list(inter.columns) == INTERACTIONS.schema.names

    q = results["interactions"].quarantine.to_pylist()
    assert [r["row_number"] for r in q] == [2, 3, 4]
    assert q[0]["reason"] == (
        "event_timestamp: unparseable timestamp 'yesterday' (expected epoch milliseconds)"
    )
    assert q[1]["reason"] == "user_id: unknown user 'u9'"
    assert q[2]["reason"] == (
        "event_timestamp: outside the supported range [1677-09-22T00:00:00Z, "
        "2262-04-11T00:00:00Z) '99999999999999999' (read as epoch milliseconds)"
    )
    # the quarantine keeps the record as your file holds it, under your column names
    assert json.loads(q[1]["record"])["listener"] == "u9"
    assert q[0]["source"].endswith("own/interactions.csv")

    written = pq.read_table(ws.quarantine("mine") / "interactions.parquet")
    assert written.num_rows == 3
    stamp = json.loads((ws.data("mine") / STAMP_FILE).read_text())
    assert stamp["counts"]["interactions"] == {"input": 5, "accepted": 2, "quarantined": 3}


def test_ensure_data_ingests_once_then_again_when_a_file_changes(tmp_path: Path) -> None:
    cfg = load_config(_folder(tmp_path))
    ws = Workspace(tmp_path / "ws")
    assert ensure_data(cfg, ws) is not None
    assert ensure_data(cfg, ws) is None  # nothing changed
    inter = tmp_path / "own" / "interactions.csv"
    inter.write_text(inter.read_text() + "u2,s2,1736942400000,play,1.0,1\n")
    again = ensure_data(cfg, ws)
    assert again is not None and again[2].n_accepted == 3
    # a different declared zone is a different source: ingested again
    cfg2 = load_config(_folder(tmp_path, zone="UTC"))
    assert ensure_data(cfg2, ws) is not None


def test_a_uri_goes_through_the_filesystem_layer(tmp_path: Path) -> None:
    """``file://`` through pyarrow.fs and ``memory://`` through fsspec: what s3:// or hdfs://
    take, without a cloud (a remote folder is copied into raw/ and named by its URI)."""
    fsspec = pytest.importorskip("fsspec")
    run = _folder(tmp_path)
    text = run.read_text().replace("path: own", f"path: {(tmp_path / 'own').as_uri()}")
    run.write_text(text)
    res = ingest_source(load_config(run), Workspace(tmp_path / "ws"))
    assert [r.n_accepted for r in res] == [2, 2, 2]

    mem = fsspec.filesystem("memory")
    for name in ("users.csv", "authors.tsv", "interactions.csv"):
        mem.pipe(f"/mspa-test/own/{name}", (tmp_path / "own" / name).read_bytes())
    run.write_text(text.replace((tmp_path / "own").as_uri(), "memory://mspa-test/own"))
    res = ingest_source(load_config(run), Workspace(tmp_path / "ws2"))
    assert [r.n_accepted for r in res] == [2, 2, 2]
    assert res[2].quarantine.column("source")[0].as_py() == (
        "memory://mspa-test/own/interactions.csv"
    )


@pytest.mark.parametrize(
    ("unit", "value", "expected"),
    [
        ("s", 1736931600, "2025-01-15T09:00:00Z"),
        ("s", "1736931600.5", "2025-01-15T09:00:00.5Z"),
        ("ms", 1736931600123, "2025-01-15T09:00:00.123Z"),
        ("us", 1736931600123456, "2025-01-15T09:00:00.123456Z"),
        ("us", -1_000_000, "1969-12-31T23:59:59Z"),
    ],
)
def test_epoch_units(unit: str, value: object, expected: str) -> None:
    us, problem = epoch_us(value, unit)
    assert problem is None
    assert pd.Timestamp(us, unit="us", tz="UTC") == pd.Timestamp(expected)


def test_integer_columns_take_the_vectorised_path_with_the_same_verdicts() -> None:
    s = pd.Series([1736931600000, 10**17, -(10**16)], dtype="int64")
    out, reasons = parse_instants(
        s, "event_timestamp", TimestampFormat(unit="ms"), source="f", contract="interactions"
    )
    assert out.iloc[0] == pd.Timestamp("2025-01-15T09:00:00Z")
    assert out.iloc[1:].isna().all()
    assert sorted(reasons) == [1, 2]
    assert "read as epoch milliseconds" in reasons[1][0]


def test_local_times_a_dst_change_skips_or_repeats_are_quarantined() -> None:
    s = pd.Series(["2025-03-30 02:30", "2025-10-26 02:30", "2025-07-01"])
    out, reasons = parse_instants(
        s,
        "event_timestamp",
        TimestampFormat(timezone="Europe/Paris"),
        source="f",
        contract="authors",
    )
    assert reasons[0] == [
        (
            "event_timestamp: nonexistent local time '2025-03-30 02:30' in Europe/Paris "
            "(a daylight-saving change): give an offset"
        )
    ]
    assert reasons[1][0].startswith("event_timestamp: ambiguous local time '2025-10-26 02:30'")
    assert out.iloc[2] == pd.Timestamp("2025-06-30T22:00:00Z")  # a date: local midnight


def test_numbers_without_a_declared_unit_fail_naming_the_config_key() -> None:
    raw = pd.DataFrame(
        {
            "user_id": ["u"],
            "author_id": ["a"],
            "ts": [1736931600000],
            "action": ["play"],
            "value": ["1"],
            "label": ["1"],
        }
    )
    with pytest.raises(SchemaError) as e:
        prepare_frame(raw, INTERACTIONS, columns={"event_timestamp": "ts"}, source="plays.parquet")
    assert str(e.value) == (
        "plays.parquet column 'event_timestamp': numeric timestamps are ambiguous (seconds? "
        "milliseconds?): declare their unit in the run config (data.timestamps.interactions."
        "unit: s, ms or us)"
    )


def test_a_mapped_or_required_column_missing_from_the_file_is_named() -> None:
    raw = pd.DataFrame({"listener": ["u"], "show": ["a"], "when": ["x"]})
    with pytest.raises(SchemaError) as e:
        prepare_frame(raw, INTERACTIONS, columns={"user_id": "uid"}, source="plays.csv")
    assert str(e.value) == (
        "plays.csv column 'uid': not in the file (data.columns.interactions.user_id maps it to "
        "user_id; file has: listener, show, when)"
    )
    with pytest.raises(SchemaError) as e:
        prepare_frame(raw, INTERACTIONS, columns={"user_id": "listener"}, source="plays.csv")
    assert "column 'author_id': missing required column for contract 'interactions'" in str(e.value)
    assert "map yours with data.columns.interactions.author_id" in str(e.value)


def test_a_missing_contract_file_is_named_with_what_the_folder_holds(tmp_path: Path) -> None:
    run = _folder(tmp_path)
    (tmp_path / "own" / "authors.tsv").rename(tmp_path / "own" / "shows.tsv")
    with pytest.raises(SchemaError) as e:
        ingest_source(load_config(run), Workspace(tmp_path / "ws"))
    assert "no file for contract 'authors' (looked for authors.parquet, authors.csv, " in str(
        e.value
    )
    assert "the folder has: interactions.csv, shows.tsv, users.csv" in str(e.value)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            "  source: files\n",
            "data: Value error, source='files', path=None: source 'files' needs path",
        ),
        (
            "  source: files\n  path: x\n  columns: {interactions: {uid: user}}\n",
            (
                "data.columns.interactions: Value error, a mapped column must be a column of "
                "contract 'interactions' (user_id, author_id, event_timestamp, action, value, "
                "label), got 'uid'; map contract column: your column"
            ),
        ),
        (
            "  source: files\n  path: x\n  timestamps: {interactions: {unit: sec}}\n",
            "data.timestamps.interactions.unit: Input should be 'iso', 's', 'ms' or 'us'",
        ),
        (
            "  source: files\n  path: x\n  timestamps: {users: {unit: s}}\n",
            "data.timestamps.users: Extra inputs are not permitted",
        ),
        (
            "  source: files\n  path: x\n  timestamps: {authors: {timezone: Mars/Olympus}}\n",
            (
                "data.timestamps.authors.timezone: Value error, timezone must be an IANA time "
                "zone name such as 'UTC' or 'Europe/Paris', got 'Mars/Olympus'"
            ),
        ),
        (
            (
                "  source: files\n  path: x\n  timestamps: {interactions: {unit: ms, timezone: "
                "Europe/Paris}}\n"
            ),
            (
                "unit='ms', timezone='Europe/Paris': epoch numbers are UTC instants by "
                "definition; a time zone applies only to unit 'iso'"
            ),
        ),
        (
            "  source: movielens\n  columns: {users: {user_id: uid}}\n",
            "'columns' applies to sources 'files' and 'spark', not to the 'movielens' preset",
        ),
        ("  source: spark\n", "source 'spark' needs tables"),
        (
            "  source: spark\n  tables: {users: u, authors: a}\n",
            "data.tables.interactions: Field required",
        ),
        ("  source: files\n  path: x\n  colums: {}\n", "(did you mean 'columns'?)"),
    ],
)
def test_config_errors_name_the_field(tmp_path: Path, data: str, expected: str) -> None:
    assert expected in _config_error(tmp_path, data)


def test_typed_parquet_timestamps_need_no_unit(tmp_path: Path) -> None:
    """A tz-aware timestamp column is an instant whatever the declared unit."""
    table = pa.table(
        {
            "user_id": ["u1"],
            "author_id": ["s1"],
            "event_timestamp": pa.array(
                [pd.Timestamp("2025-01-15T09:00:00Z")], pa.timestamp("ms", tz="UTC")
            ),
            "action": ["play"],
            "value": [1.0],
            "label": [1],
        }
    )
    df = prepare_frame(
        table.to_pandas(), INTERACTIONS, timestamps=TimestampFormat(unit="ms"), source="p"
    )
    assert df["event_timestamp"].iloc[0] == pd.Timestamp("2025-01-15T09:00:00Z")
    assert df.attrs["row_reasons"] == {}
