"""Spark backfill: point-in-time rows, due users, kill-and-rerun, incremental days, counts, CLI.

Real data (the first two weeks of MovieLens-100K), the template composer and the real embedded
encoder; one SparkSession (local[2]) for the whole file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from mspa_features.config import DataConfig, RunConfig, Workspace
from mspa_features.data.contracts import AUTHOR_PROFILES, AUTHORS, INTERACTIONS, PREFERENCES
from mspa_features.data.validation import QUARANTINE_SCHEMA
from mspa_features.errors import ReconciliationError
from mspa_features.snapshots import backfill as B  # the library side: config, partitions, reads
from mspa_features.snapshots import partitions
from spark_jobs import backfill as jobs
from spark_jobs.session import build_spark_session

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
START, END = date(1997, 9, 20), date(1997, 10, 3)  # 14 daily partitions, ~150 user snapshots
AUTHORS_START = date(1997, 9, 28)  # ~100 author snapshots (most movies appear in week one)
D = [START + timedelta(days=i) for i in range(6)]  # d1..d6 of the incremental test


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def spark():
    """The one SparkSession of the test session (start-up costs ~20 s)."""
    bf = B.BackfillConfig(
        master="local[2]",
        spark_conf={"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "2"},
    )
    session = build_spark_session(bf, app_name="mspa-tests")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def ml_data(tmp_path_factory, movielens_raw) -> Path:
    """Accepted MovieLens contract parquet (data/movielens/), built once for the module."""
    from mspa_features.data import movielens
    from mspa_features.data.ingest import write_results

    root = tmp_path_factory.mktemp("ml_data")
    data = movielens.convert(movielens_raw).results()
    write_results(data, root / "movielens", root / "quarantine")
    return root / "movielens"


def _workspace(tmp_path_factory, ml_data: Path, name: str) -> RunConfig:
    ws = tmp_path_factory.mktemp(name)
    shutil.copytree(ml_data, Workspace(ws).data("movielens"))
    return RunConfig(name="movielens", workspace=ws, data=DataConfig(source="movielens"))


BF = B.BackfillConfig()


@pytest.fixture(scope="module")
def clean(spark, tmp_path_factory, ml_data):
    """A clean run over [START, END] of both entities: the reference every test compares to."""
    cfg = _workspace(tmp_path_factory, ml_data, "clean")
    counts = {
        "preferences": jobs.backfill_preferences(spark, cfg, BF, START, END),
        "author_profiles": jobs.backfill_authors(spark, cfg, BF, AUTHORS_START, END),
    }
    return cfg, counts


def _root(cfg: RunConfig) -> Path:
    return B.feature_set_dir(cfg, BF)


def _rows(cfg: RunConfig, entity: str = "preferences", dates=None) -> dict[str, list]:
    t = B.read_partitions(_root(cfg) / entity, dates)
    key = "user_id" if entity == "preferences" else "author_id"
    return t.sort_by([("ds", "ascending"), (key, "ascending")]).to_pydict()


def _quarantine(cfg: RunConfig, entity: str = "preferences") -> dict[str, list]:
    return B.read_partitions(_root(cfg) / B.QUARANTINE_DIR / entity).to_pydict()


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".ds="))


# --------------------------------------------------------------------------- (a) (b) (e)


def test_rows_are_point_in_time_correct_and_only_for_due_users(clean, ml_data):
    cfg, counts = clean
    rows = _rows(cfg)
    inter = pd.read_parquet(ml_data / "interactions.parquet")
    pos = inter[inter["label"] == 1]
    by_user = {
        u: np.sort(g["event_timestamp"].dt.tz_convert(None).to_numpy())
        for u, g in pos.groupby("user_id")
    }

    # (a) every row, checked against the raw interactions
    assert len(rows["user_id"]) > 100
    for u, s, n, last, created in zip(
        rows["user_id"],
        rows["event_timestamp"],
        rows["history_count"],
        rows["history_last_ts"],
        rows["created_timestamp"],
        strict=True,
    ):
        before = by_user[u][by_user[u] < np.datetime64(s.replace(tzinfo=None), "us")]
        assert n == len(before) > 0
        assert np.datetime64(last.replace(tzinfo=None), "us") == before.max()
        assert created == s  # deterministic: the snapshot instant, never the wall clock

    # (b) a row at s exactly for the users with a new positive in [s - 1 day, s)
    got: dict[str, set[str]] = {}
    for u, ds in zip(rows["user_id"], rows["ds"], strict=True):
        got.setdefault(ds, set()).add(u)
    for d in B.partition_dates(START, END, "daily"):
        s = pd.Timestamp(B.snapshot_instant(d))
        due = set(
            pos[
                (pos["event_timestamp"] >= s - pd.Timedelta(days=1)) & (pos["event_timestamp"] < s)
            ]["user_id"]
        )
        assert got.get(d.isoformat(), set()) == due, d
    assert d.isoformat() in got  # the range's last day has rows (the check above is not vacuous)
    # no duplicates on the feature view's key
    keys = list(zip(rows["user_id"], rows["event_timestamp"], strict=True))
    assert len(keys) == len(set(keys))

    # texts are exactly what composer.build_histories + the template composer give
    from mspa_features.compose.composer import TemplateComposer, build_histories
    from mspa_features.compose.jobs import load_authors

    histories = build_histories(
        inter,
        load_authors(Workspace(cfg.workspace), "movielens"),
        list(zip(rows["user_id"], rows["event_timestamp"], strict=True)),
    )
    expected = [c.text for c in TemplateComposer().compose_preferences(histories)]
    assert rows["pref_text"] == expected
    emb = np.array(rows["pref_emb"], dtype=np.float32)
    assert emb.shape == (len(keys), 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)

    # (e) counts reconcile, per partition and in total, and match the files and manifest
    c = counts["preferences"]
    assert c.requested == c.written + c.quarantined == len(keys)
    manifest = B.read_manifest(_root(cfg) / "preferences")
    assert sorted(manifest["partitions"]) == [
        d.isoformat() for d in B.partition_dates(START, END, "daily")
    ]
    for pc in c.partitions:
        entry = manifest["partitions"][pc.ds]
        assert (entry["rows"], entry["quarantined"], entry["requested"]) == (
            pc.written,
            pc.quarantined,
            pc.requested,
        )
        assert pc.written == len(got.get(pc.ds, ()))
        part = pq.read_table(_root(cfg) / "preferences" / entry["path"])
        assert part.schema == PREFERENCES.schema and part.num_rows == pc.written
        assert part.column("user_id").to_pylist() == sorted(part.column("user_id").to_pylist())


def test_author_profiles_one_row_per_snapshot_in_range(clean, ml_data):
    cfg, counts = clean
    rows = _rows(cfg, "author_profiles")
    authors = pd.read_parquet(ml_data / "authors.parquet", columns=["author_id", "event_timestamp"])
    lo = pd.Timestamp(B.snapshot_instant(AUTHORS_START))
    hi = pd.Timestamp(B.snapshot_instant(END))
    in_range = authors[
        (authors["event_timestamp"] >= lo)
        & (authors["event_timestamp"] < hi + pd.Timedelta(days=1))
    ]
    # authors whose (only) snapshot predates the range: their content, as of the range start
    before = authors[authors["event_timestamp"] < lo].groupby("author_id")["event_timestamp"].max()
    before = before[~before.index.isin(authors.loc[authors["event_timestamp"] == lo, "author_id"])]
    expected = [
        (a, t.to_pydatetime(), t.to_pydatetime())
        for a, t in zip(in_range["author_id"], in_range["event_timestamp"], strict=True)
    ] + [(a, lo.to_pydatetime(), t.to_pydatetime()) for a, t in before.items()]
    assert len(before) > 0 and len(in_range) > 0
    assert sorted(
        zip(rows["author_id"], rows["event_timestamp"], rows["created_timestamp"], strict=True)
    ) == sorted(expected)
    assert rows["ds"] == [t.strftime("%Y-%m-%d") for t in rows["event_timestamp"]]
    assert all(t.strip() for t in rows["author_text"])
    c = counts["author_profiles"]
    assert c.requested == len(expected) == c.written + c.quarantined
    assert c.notes[0].startswith(
        f"{len(before):,} author(s) whose content predates {AUTHORS_START}"
    )
    assert len(c.partitions) == (END - AUTHORS_START).days + 1
    part = pq.read_table(_root(cfg) / "author_profiles" / f"ds={END}" / B.PART_FILE)
    assert part.schema == AUTHOR_PROFILES.schema


# --------------------------------------------------------------------------- quarantine, weekly


def _tiny_workspace(tmp_path: Path) -> RunConfig:
    """Hand-made contract files exercising quarantine, weekly buckets and author snapshots."""

    def ts(s: str) -> datetime:
        return datetime.fromisoformat(s).replace(tzinfo=UTC)

    authors = [  # a1 has two content snapshots; a2's content appears only on 01-10
        ("a1", ts("2024-01-01"), "Singer A", [("category", "singing")]),
        ("a1", ts("2024-01-09"), "Singer A v2", [("category", "singing"), ("region", "north")]),
        ("a2", ts("2024-01-10"), "Dancer B", [("category", "dancing")]),
        ("a3", ts("2024-01-09 12:00"), "   ", []),  # no text, no frames: quarantined
    ]
    inter = [
        ("u1", "a1", ts("2024-01-03 10:00"), 1),
        ("u1", "a2", ts("2024-01-04 10:00"), 0),  # a negative: never part of a history
        ("u1", "a2", ts("2024-01-11 10:00"), 1),
        ("u2", "a2", ts("2024-01-05 10:00"), 1),  # no content for a2 yet at 01-08: quarantined
        ("u2", "a1", ts("2024-01-12 10:00"), 1),
        ("u3", "a1", ts("2024-01-08 00:00"), 1),  # exactly at an instant: belongs to the next
    ]
    ws = tmp_path / "ws"
    data = Workspace(ws).data("tiny")
    data.mkdir(parents=True)
    pq.write_table(
        pa.table(
            {
                "author_id": [a[0] for a in authors],
                "event_timestamp": [a[1] for a in authors],
                "profile_text": [a[2] for a in authors],
                "location": [None] * 4,
                "asr_text": [None] * 4,
                "comments": [[]] * 4,
                "frames": [[]] * 4,
                "attributes": [a[3] for a in authors],
            },
            schema=AUTHORS.schema,
        ),
        data / "authors.parquet",
        coerce_timestamps="us",
    )
    pq.write_table(
        pa.table(
            {
                "user_id": [r[0] for r in inter],
                "author_id": [r[1] for r in inter],
                "event_timestamp": [r[2] for r in inter],
                "action": ["tip"] * len(inter),
                "value": [1.0] * len(inter),
                "label": pa.array([r[3] for r in inter], pa.int8()),
            },
            schema=INTERACTIONS.schema,
        ),
        data / "interactions.parquet",
        coerce_timestamps="us",
    )
    return RunConfig(name="tiny", workspace=ws, data=DataConfig(source="movielens"))


def test_weekly_quarantine_and_point_in_time_author_content(spark, tmp_path):
    cfg = _tiny_workspace(tmp_path)
    bf = B.BackfillConfig(cadence="weekly")
    counts = jobs.run_backfill(cfg, bf, date(2024, 1, 6), date(2024, 1, 16), spark=spark)
    root = B.feature_set_dir(cfg, bf)

    prefs = counts["preferences"]
    assert [p.ds for p in prefs.partitions] == ["2024-01-08", "2024-01-15"]  # Mondays only
    assert [(p.requested, p.written, p.quarantined) for p in prefs.partitions] == [
        (2, 1, 1),
        (3, 3, 0),
    ]
    assert prefs.reasons == {"empty history": 1}
    # how the written rows were made, tallied while publishing (the template decodes nothing)
    assert (prefs.status, prefs.decoding) == ({"ok": 4}, {"none": 4})
    rows = B.read_partitions(root / "preferences").to_pydict()
    got = {
        (u, ds): (n, text)
        for u, ds, n, text in zip(
            rows["user_id"], rows["ds"], rows["history_count"], rows["pref_text"], strict=True
        )
    }
    assert sorted(got) == [
        ("u1", "2024-01-08"),
        ("u1", "2024-01-15"),
        ("u2", "2024-01-15"),
        ("u3", "2024-01-15"),
    ]
    # content as of s: a1's first snapshot at 01-08, its second (region north) at 01-15
    assert got[("u1", "2024-01-08")][0] == 1 and "north" not in got[("u1", "2024-01-08")][1]
    assert got[("u1", "2024-01-15")][0] == 2 and "north" in got[("u1", "2024-01-15")][1]
    assert got[("u2", "2024-01-15")][0] == 2 and got[("u3", "2024-01-15")][0] == 1
    q = pq.read_table(root / B.QUARANTINE_DIR / "preferences" / "ds=2024-01-08" / B.PART_FILE)
    assert q.schema == QUARANTINE_SCHEMA
    assert q.column("reason").to_pylist() == ["empty history"]
    assert json.loads(q.column("record")[0].as_py())["user_id"] == "u2"
    assert q.column("row_number").to_pylist() == [1]  # u2 ranks after u1 among the requests

    auth = counts["author_profiles"]
    # a1's first snapshot (01-01) is the content valid at the range start: written as of 01-06
    assert (auth.requested, auth.written, auth.quarantined) == (4, 3, 1)
    assert auth.reasons == {"author has no text or frames": 1}
    assert len(auth.partitions) == 11  # every day of the range, weekly or not
    a = B.read_partitions(root / "author_profiles").to_pydict()
    assert list(zip(a["author_id"], a["ds"], strict=True)) == [
        ("a1", "2024-01-06"),
        ("a1", "2024-01-09"),
        ("a2", "2024-01-10"),
    ]
    assert a["created_timestamp"][0] == datetime(2024, 1, 1, tzinfo=UTC)
    assert a["event_timestamp"][0] == datetime(2024, 1, 6, tzinfo=UTC)


def test_compose_step_reports_inputs_composed_not_spark_tasks(spark, tmp_path, monkeypatch):
    # The LLM set's compose step is one Spark task for up to an hour: a task count would sit at
    # 0/1. The display counts the inputs the tasks have composed, of all that were requested.
    from spark_jobs import udfs

    cfg = _tiny_workspace(tmp_path)
    calls: list[tuple[str, int, int]] = []
    reads: dict[str, int] = {}  # progress folder -> last count the driver read from the tasks

    def spy(folder):
        reads[Path(folder).name.split("-")[0]] = n = read(folder)
        return n

    read = udfs.read_row_progress
    monkeypatch.setattr(udfs, "read_row_progress", spy)
    bf = B.BackfillConfig(cadence="weekly")
    counts = jobs.run_backfill(
        cfg,
        bf,
        date(2024, 1, 6),
        date(2024, 1, 16),
        spark=spark,
        progress=lambda what, done, total: calls.append((what, done, total)),
    )
    for entity, requested in (("preferences", 5), ("author_profiles", 4)):
        assert counts[entity].requested == requested
        seen = [(d, t) for w, d, t in calls if w == f"{entity}: compose + encode"]
        assert seen and {t for _, t in seen} == {requested}, seen  # rows, never tasks
        assert seen[-1] == (requested, requested)
        done = [d for d, _ in seen]
        assert done == sorted(done)
        assert reads[entity] == requested  # what the tasks' tickers wrote, read by the driver
    # the tickers' folders go with the staging folders
    assert not list(B.feature_set_dir(cfg, bf).rglob("*.progress"))


def test_a_failed_compose_step_shows_how_far_it_got(spark, tmp_path):
    from spark_jobs.session import spark_progress

    folder = tmp_path / "preferences-r1.progress"
    folder.mkdir()
    calls: list[tuple[str, int, int]] = []
    with (
        pytest.raises(RuntimeError, match="task died"),
        spark_progress(spark, "compose", lambda *c: calls.append(c), rows=(folder, 10)),
    ):
        (folder / "0").write_text("4")  # one task reported 4 of its inputs, then the job failed
        raise RuntimeError("task died")
    assert calls[-1] == ("compose", 4, 10)  # never "10/10" for a step that did not finish


def test_a_range_after_all_content_writes_the_content_valid_at_its_start(spark, tmp_path):
    """Issue 14 item 9: a range that starts after every author's content still has profiles
    (as of its start), and the counts say why rows are or are not there."""
    cfg = _tiny_workspace(tmp_path)
    bf = B.BackfillConfig(cadence="daily")
    counts = jobs.run_backfill(cfg, bf, date(2024, 2, 1), date(2024, 2, 3), spark=spark)
    auth = counts["author_profiles"]
    # a1 (newest: 01-09 "Singer A v2"), a2 (01-10) and a3 (blank: quarantined), as of 02-01
    assert (auth.requested, auth.written, auth.quarantined) == (3, 2, 1)
    a = B.read_partitions(B.feature_set_dir(cfg, bf) / "author_profiles").to_pydict()
    assert a["author_id"] == ["a1", "a2"] and a["ds"] == ["2024-02-01", "2024-02-01"]
    assert a["event_timestamp"] == [datetime(2024, 2, 1, tzinfo=UTC)] * 2
    assert a["created_timestamp"] == [
        datetime(2024, 1, 9, tzinfo=UTC),
        datetime(2024, 1, 10, tzinfo=UTC),
    ]
    assert "v2" in a["author_text"][0]
    assert auth.notes == [
        (
            "3 author(s) whose content predates 2024-02-01 written as of 2024-02-01 (their newest "
            "snapshot before the range: the content valid at its start)"
        )
    ]
    prefs = counts["preferences"]
    assert prefs.requested == prefs.written == 0
    assert prefs.notes == [
        (
            "no user has a new positive before any snapshot instant of [2024-02-01, 2024-02-03] "
            "(each window is the daily period before it): nothing to recompute; snapshots written "
            "by earlier ranges stay valid within the TTL"
        )
    ]


def test_a_range_before_all_content_says_why_it_is_empty(spark, tmp_path):
    cfg = _tiny_workspace(tmp_path)
    bf = B.BackfillConfig(cadence="weekly")
    counts = jobs.run_backfill(
        cfg, bf, date(2023, 12, 1), date(2023, 12, 3), spark=spark, entities=("authors", "users")
    )
    auth = counts["author_profiles"]
    assert (auth.requested, auth.written, auth.quarantined) == (0, 0, 0)
    assert auth.notes == [
        (
            "no author content snapshot valid in [2023-12-01, 2023-12-03]: all 3 author(s) first "
            "appear after 2023-12-03"
        )
    ]
    # 2023-12-01..03 holds no Monday
    assert counts["preferences"].notes == [
        "no weekly snapshot instant in [2023-12-01, 2023-12-03] (weekly snapshots are on Mondays)"
    ]


def test_counts_that_do_not_reconcile_publish_nothing(tmp_path):
    """A partition whose staged rows + quarantine != requested: nothing is swapped in."""
    staging = tmp_path / "staging"
    row = {
        "user_id": ["u1"],
        "event_timestamp": [datetime(2024, 1, 8, tzinfo=UTC)],
        "created_timestamp": [datetime(2024, 1, 8, tzinfo=UTC)],
        "history_count": [1],
        "history_last_ts": [datetime(2024, 1, 3, tzinfo=UTC)],
        "pref_text": ["x"],
        "pref_emb": [[1.0, 0.0]],
        "model_version": ["m"],
        "prompt_hash": ["p"],
        "pref_status": ["ok"],
        "pref_decoding": ["none"],
    }
    for ds in ("2024-01-08", "2024-01-15"):
        (staging / "kind=row" / f"ds={ds}").mkdir(parents=True)
        pq.write_table(
            pa.table(row, schema=PREFERENCES.schema),
            staging / "kind=row" / f"ds={ds}" / "part-0.parquet",
        )
    root = tmp_path / "fs"
    with pytest.raises(ReconciliationError, match="ds=2024-01-15.*input=2 accepted=1"):
        partitions.publish(
            contract=PREFERENCES,
            root=root,
            dates=[date(2024, 1, 8), date(2024, 1, 15)],
            requested={"2024-01-08": 1, "2024-01-15": 2},
            staging=staging,
            sort_keys=["user_id"],
            run_id="r",
            meta={"feature_set": "t"},
            progress=None,
        )
    assert not (root / "preferences").exists() or not list((root / "preferences").iterdir())


# --------------------------------------------------------------------------- (c) kill + rerun


class _Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so nothing on the way up handles it."""


def test_killed_run_leaves_old_or_new_and_rerun_is_identical(
    spark, clean, tmp_path_factory, ml_data, monkeypatch
):
    ref_cfg, _ = clean
    cfg = _workspace(tmp_path_factory, ml_data, "killed")
    # An earlier run's output, made distinguishable from what the rerun writes ("old" rows).
    shutil.copytree(_root(ref_cfg), _root(cfg))
    pref_dir = _root(cfg) / "preferences"
    for part in pref_dir.glob("ds=*/" + B.PART_FILE):
        t = pq.read_table(part)
        texts = pa.array(["OLD " + x for x in t.column("pref_text").to_pylist()], pa.string())
        pq.write_table(t.set_column(5, "pref_text", texts), part, coerce_timestamps="us")

    calls = {"n": 0}

    def rename(src, dst):
        calls["n"] += 1
        if calls["n"] == 10:  # partition 3: old renamed away, new not yet in place
            raise _Killed
        os.rename(src, dst)

    with monkeypatch.context() as m:
        m.setattr(partitions, "_rename", rename)
        with pytest.raises(_Killed):
            jobs.backfill_preferences(spark, cfg, BF, START, END)
    third = f"ds={START + timedelta(days=2)}"
    hidden = _hidden(pref_dir)
    assert not (pref_dir / third).exists()
    assert [h.rsplit("-", 1)[0] for h in hidden] == [f".{third}.old", f".{third}.tmp"]
    assert B.recover_partitions(pref_dir) == [f"restored {third}", f"deleted {hidden[1]}"]
    # every visible partition is entirely old or entirely new, never a mix
    kinds = []
    for part in sorted(pref_dir.glob("ds=*/" + B.PART_FILE)):
        texts = pq.read_table(part).column("pref_text").to_pylist()
        old = {x.startswith("OLD ") for x in texts}
        assert len(old) <= 1, part
        kinds.append(old.pop() if old else None)
    assert kinds[:3] == [None, False, True]  # ds1 empty, ds2 new, ds3 restored old

    # more debris from killed runs: a deleted partition, a stray temp dir, staging leftovers
    shutil.rmtree(pref_dir / f"ds={START + timedelta(days=4)}")
    (pref_dir / ".ds=1997-09-30.tmp-dead").mkdir()
    (pref_dir / ".ds=1997-09-30.tmp-dead" / B.PART_FILE).write_bytes(b"half a file")
    (_root(cfg) / B.STAGING_DIR / "preferences-dead").mkdir(parents=True)

    counts = jobs.backfill_preferences(spark, cfg, BF, START, END)
    counts.check()
    assert _rows(cfg) == _rows(ref_cfg)  # row for row, every column, embeddings included
    assert _quarantine(cfg) == _quarantine(ref_cfg)
    assert _hidden(pref_dir) == [] and not (_root(cfg) / B.STAGING_DIR).exists()
    rows = _rows(cfg)
    keys = list(zip(rows["user_id"], rows["event_timestamp"], strict=True))
    assert len(keys) == len(set(keys))


# --------------------------------------------------------------------------- (d) incremental


def _stamps(root: Path, dates) -> dict[str, tuple[int, int, int, int]]:
    out = {}
    for base in (root / "preferences", root / B.QUARANTINE_DIR / "preferences"):
        for d in dates:
            p = base / f"ds={d}"
            f = p / B.PART_FILE
            out[str(p)] = (
                p.stat().st_ino,
                p.stat().st_mtime_ns,
                f.stat().st_ino,
                f.stat().st_mtime_ns,
            )
    return out


def test_one_new_day_touches_only_its_partition(spark, clean, tmp_path_factory, ml_data):
    ref_cfg, _ = clean
    cfg = _workspace(tmp_path_factory, ml_data, "incremental")
    jobs.backfill_preferences(spark, cfg, BF, D[0], D[4])
    before = _stamps(_root(cfg), D[:5])
    assert not (_root(cfg) / "preferences" / f"ds={D[5]}").exists()
    counts = jobs.backfill_preferences(spark, cfg, BF, D[5], D[5])
    assert [p.ds for p in counts.partitions] == [D[5].isoformat()]
    assert _stamps(_root(cfg), D[:5]) == before  # untouched: same inode, same mtime
    manifest = B.read_manifest(_root(cfg) / "preferences")
    assert sorted(manifest["partitions"]) == [d.isoformat() for d in D]

    # The new day equals that day of a full run over a range containing [d1, d6]; so do the
    # five earlier days. Embeddings: equal up to float32 round-off (batch mates differ between
    # the two runs, and the encoder pads each batch to its longest text).
    for days in ([D[5]], D[:5]):
        got, ref = _rows(cfg, dates=days), _rows(ref_cfg, dates=days)
        assert len(got["user_id"]) > 0
        for col in got:
            if col == "pref_emb":
                np.testing.assert_allclose(np.array(got[col]), np.array(ref[col]), atol=1e-6)
            else:
                assert got[col] == ref[col], col


# --------------------------------------------------------------------------- (f) entry points


def test_spark_submit_entry_point_parses_arguments():
    """One entry, two jobs: ``spark_jobs/submit.py`` (spark-submit's form) and ``-m spark_jobs``."""
    for cmd in (
        [sys.executable, str(REPO / "spark_jobs" / "submit.py")],
        [sys.executable, "-m", "spark_jobs"],
    ):
        for job in ("preferences", "authors"):
            proc = subprocess.run(
                [*cmd, job, "--help"], capture_output=True, text=True, timeout=120, check=False
            )
            assert proc.returncode == 0, proc.stderr
            out = proc.stdout
            assert "--config" in out and "--start" in out and "--end" in out
        bad = subprocess.run(
            [*cmd, "all", "--config", "x.yaml", "--start", "2024-01-01", "--end", "2024-01-02"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert bad.returncode == 2 and "invalid choice: 'all'" in bad.stderr


def test_cli_backfill_runs_and_prints_counts(clean, tmp_path_factory, ml_data):
    ref_cfg, _ = clean
    cfg = _workspace(tmp_path_factory, ml_data, "cli")
    path = Path(cfg.workspace) / "movielens.yaml"
    raw = yaml.safe_load((REPO / "configs" / "movielens.yaml").read_text())
    path.write_text(yaml.safe_dump({**raw, "workspace": str(cfg.workspace)}))
    day1, day2 = END - timedelta(days=1), END  # few author snapshots on these days
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mspa_features.cli",
            "backfill",
            str(path),
            "--start",
            str(day1),
            "--end",
            str(day2),
            "--master",
            "local[1]",
            "--cadence",  # the config says weekly; the command line overrides it
            "daily",
            "--conf",
            "spark.ui.enabled=false",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "COLUMNS": "160"},
        cwd=cfg.workspace,
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    out = proc.stdout
    assert "requested = written + quarantined" in out
    assert "preferences" in out and "author_profiles" in out
    got, ref = _rows(cfg), _rows(ref_cfg, dates=[day1, day2])
    assert got["user_id"] == ref["user_id"] and len(got["user_id"]) > 0
    # Authors: the range's first partition holds every author's content valid at its start
    # (the reference, which started earlier, wrote those on earlier days); later days hold
    # what changed on them, as in the reference.
    got = _rows(cfg, "author_profiles")
    ref_all = _rows(ref_cfg, "author_profiles")
    by_day = lambda rows, keep: sorted(
        a for a, ds in zip(rows["author_id"], rows["ds"], strict=True) if keep(str(ds))
    )
    valid_at_day1 = sorted(set(by_day(ref_all, lambda ds: ds <= str(day1))))
    assert by_day(got, lambda ds: ds == str(day1)) == valid_at_day1 and valid_at_day1
    assert by_day(got, lambda ds: ds == str(day2)) == by_day(ref_all, lambda ds: ds == str(day2))
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "mspa_features.cli",
            "backfill",
            str(path),
            "--start",
            str(day2),
            "--end",
            str(day1),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode != 0 and "before start" in bad.stdout + bad.stderr


# --------------------------------------------------------------------------- worker logic, no Spark


def test_worker_history_building_matches_build_histories():
    """The worker's batch-streamed histories equal composer.build_histories, ties included."""
    from mspa_features.compose.composer import build_histories
    from mspa_features.data.contracts import Author
    from mspa_features.snapshots.history import AuthorSnapshots, user_snapshots
    from spark_jobs.udfs import user_groups

    rng = np.random.default_rng(0)
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    authors = {
        f"a{i}": Author(author_id=f"a{i}", event_timestamp=t0, profile_text=f"author {i}")
        for i in range(8)
    }
    n = 400
    inter = pd.DataFrame(
        {
            "user_id": rng.choice(["u1", "u2", "u3", "u4"], n),
            "author_id": rng.choice(sorted(authors), n),
            # whole hours over 10 days: many equal timestamps, some exactly at midnight
            "event_timestamp": [t0 + timedelta(hours=int(h)) for h in rng.integers(0, 240, n)],
            "label": rng.choice([0, 1], n, p=[0.3, 0.7]),
        }
    )
    instants = [t0 + timedelta(days=k) for k in range(1, 11)]
    requests = [(u, s) for u in ["u1", "u2", "u3", "u4"] for s in instants[::3]]
    pos = inter[inter["label"] == 1]
    rows = pd.concat(
        [
            pd.DataFrame(
                {
                    "user_id": [u for u, _ in requests],
                    "author_id": None,
                    "event_timestamp": [s for _, s in requests],
                    "kind": 0,
                }
            ),
            pd.DataFrame(
                {
                    "user_id": pos["user_id"],
                    "author_id": pos["author_id"],
                    "event_timestamp": pos["event_timestamp"],
                    "kind": 1,
                }
            ),
        ]
    ).sort_values("user_id", kind="stable")
    table = pa.Table.from_pandas(rows, preserve_index=False).cast(
        pa.schema(
            [
                ("user_id", pa.string()),
                ("author_id", pa.string()),
                ("event_timestamp", pa.timestamp("us", tz="UTC")),
                ("kind", pa.int8()),
            ]
        )
    )
    index = AuthorSnapshots(authors.values())
    got = []
    for user, ts, aids, kinds in user_groups(iter(table.to_batches(max_chunksize=37))):
        got += user_snapshots(user, ts, aids, kinds, index)
    assert len({h.user_id for h in got}) == 4  # each user seen once despite straddling batches
    expected = build_histories(inter, authors, requests)
    key = lambda h: (h.user_id, h.as_of)
    assert sorted(got, key=key) == sorted(expected, key=key)


def test_backfill_config_is_strict():
    from pydantic import ValidationError

    assert B.BackfillConfig().feature_set_name == "template"
    assert B.BackfillConfig(composer="llm").feature_set_name == "llm"
    for bad in (
        {"cadence": "hourly"},
        {"feature_set": "../x"},
        {"batchsize": 8},
        {"partitions": 0},
    ):
        with pytest.raises(ValidationError):
            B.BackfillConfig(**bad)
    with pytest.raises(ValueError, match="before start"):
        B.partition_dates(date(2024, 1, 2), date(2024, 1, 1), "daily")
    assert B.partition_dates(date(2024, 1, 1), date(2024, 1, 20), "weekly") == [
        date(2024, 1, 1),
        date(2024, 1, 8),
        date(2024, 1, 15),
    ]


# --------------------------------------------------------------------------- nearest authors


def test_nearest_authors_from_the_cli_match_brute_force(clean, tmp_path_factory):
    """`mspa features nearest` over a real backfilled set in milvus-lite: U2A and A2A ranks
    equal brute-force cosine over every author embedding the online store serves."""
    pytest.importorskip("pymilvus", reason="the 'vector' extra (feast[milvus]) is not installed")
    from mspa_features.cli import run_cli
    from mspa_features.serving.definitions import author_view_name, pref_view_name
    from mspa_features.serving.materialize import open_store, register

    cfg, _ = clean
    end = datetime.combine(END + timedelta(days=1), datetime.min.time(), UTC)
    register(cfg, ["template"], repo_path=REPO / "feature_repo", end=end, online="milvus")
    store = open_store(cfg, repo_path=REPO / "feature_repo", online="milvus")

    authors = sorted(set(_rows(cfg, "author_profiles")["author_id"]))
    assert len(authors) > 50
    served = store.get_online_features(
        features=[f"{author_view_name('template')}:author_emb"],
        entity_rows=[{"author_id": a} for a in authors],
    ).to_dict()
    ids = [a for a, e in zip(authors, served["author_emb"], strict=True) if e is not None]
    catalogue = np.asarray([e for e in served["author_emb"] if e is not None], np.float32)
    catalogue /= np.linalg.norm(catalogue, axis=1, keepdims=True)  # (n_authors, 384)

    config = tmp_path_factory.mktemp("nearest") / "run.yaml"
    config.write_text(yaml.safe_dump({
        "name": cfg.name, "workspace": str(cfg.workspace), "data": {"source": "movielens"},
    }))
    users = sorted(set(_rows(cfg)["user_id"]))[:3]
    k = 10
    as_of = end.strftime("%Y-%m-%d %H:%M:%S")  # MovieLens is from 1997: within the TTL then

    def cli(*args: str) -> dict:
        import contextlib
        import io

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = run_cli(["features", "nearest", str(config), *args, "--top-k", str(k),
                          "--as-of", as_of, "--repo", str(REPO / "feature_repo"), "--json"])
        assert rc == 0, out.getvalue()
        return json.loads(out.getvalue())

    def brute(q: np.ndarray, exclude: str | None = None) -> list[str]:
        scores = catalogue @ (q / np.linalg.norm(q))
        order = [ids[i] for i in np.argsort(-scores, kind="stable") if ids[i] != exclude]
        return order[:k], {ids[i]: float(scores[i]) for i in range(len(ids))}

    for u in users:
        got = cli("--user", u)
        pref = store.get_online_features(
            features=[f"{pref_view_name('template')}:pref_emb"], entity_rows=[{"user_id": u}]
        ).to_dict()["pref_emb"][0]
        want, score = brute(np.asarray(pref, np.float32))
        assert got["kind"] == "u2a" and [h["rank"] for h in got["hits"]] == list(range(1, k + 1))
        assert [h["author_id"] for h in got["hits"]] == want, u
        for h in got["hits"]:
            assert h["score"] == pytest.approx(score[h["author_id"]], abs=1e-5)
    for a in ids[:3]:
        got = cli("--author", a)
        want, _ = brute(catalogue[ids.index(a)], exclude=a)
        assert got["kind"] == "a2a" and a not in [h["author_id"] for h in got["hits"]]
        assert [h["author_id"] for h in got["hits"]] == want, a

    # An unknown user, and a known one whose snapshot is past the view's TTL at --as-of (the
    # online read's TTL rule), are one clear error each (exit 2), not a traceback.
    import contextlib
    import io

    for user, when in (("no-such-user", as_of), (users[0], "2026-01-01 00:00:00")):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = run_cli(["features", "nearest", str(config), "--user", user, "--as-of", when,
                          "--repo", str(REPO / "feature_repo")])
        assert rc == 2 and f"user '{user}' has no pref_emb online" in out.getvalue(), user
