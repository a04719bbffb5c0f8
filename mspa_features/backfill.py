"""Spark backfills of the ``preferences`` and ``author_profiles`` features, one partition per day.

Output layout, under ``Workspace(cfg.workspace).features(cfg.name) / feature_set``::

    preferences/ds=YYYY-MM-DD/part-00000.parquet          PREFERENCES contract, sorted by user_id
    preferences/_manifest.json                            partitions with row counts
    author_profiles/ds=YYYY-MM-DD/part-00000.parquet      AUTHOR_PROFILES, sorted by author_id, ts
    author_profiles/_manifest.json
    _quarantine/preferences/ds=YYYY-MM-DD/part-00000.parquet      QUARANTINE_SCHEMA
    _quarantine/author_profiles/ds=YYYY-MM-DD/part-00000.parquet

``ds`` lives only in the path (hive partitioning); readers that ignore ``_``/``.`` prefixed names
(Spark, pyarrow datasets, DuckDB globs) see only published partitions. Every day of the run's
range gets a partition (cadence ``daily``; for ``weekly``, every Monday), with zero rows where
nothing was due, so a rerun replaces whatever an earlier run left there.

Preference semantics (the point-in-time rules a ranker's training join relies on):

* The snapshot instant of partition ``ds=D`` is ``s = D 00:00:00 UTC``. Cadence ``daily``:
  every day in ``[start, end]``; ``weekly``: only the Mondays in ``[start, end]``.
* A user's row at ``s`` is built ONLY from their positive interactions (``label == 1``) with
  ``event_timestamp < s`` (strictly), as :func:`mspa_features.compose.composer.build_histories` does:
  distinct authors at first engagement, oldest first (ties by author id), ``history_count`` =
  every positive before ``s`` (repeats included), ``history_last_ts`` = the newest of them,
  ``event_timestamp = s``. Author content is taken point-in-time too: each author's newest
  content snapshot with ``event_timestamp < s`` (an author with no snapshot yet is left out of
  the text; the count still includes the interaction). With one snapshot per author, as in
  MovieLens and the synthetic data, this is exactly ``build_histories(..., load_authors(...))``.
* A user gets a row at ``s`` only if they have at least one NEW positive in ``[prev, s)``, with
  ``prev = s - 1 day`` (daily) or ``s - 7 days`` (weekly). Users with nothing new are not
  recomputed: their previous row stays valid through the feature view's TTL. ``prev`` of the
  first partition is derived from the cadence (the previous cadence instant), never from what
  earlier runs wrote, so every partition is a function of the input data and its ``ds`` only:
  a rerun of any range, a range split into pieces, or a rerun after a kill all give the same
  rows.
* ``created_timestamp = s`` (for authors: the content snapshot's ``event_timestamp``), NOT the
  wall clock: a wall-clock value would make every rerun differ and break row-for-row
  reproducibility. Feast only uses it to break ties between rows with equal event timestamps,
  which cannot occur within one feature set.
* Users whose history has no usable author (no content as of ``s``) and authors with neither
  text nor frames go to quarantine with the reason; per partition and in total
  ``requested == written + quarantined`` (:class:`~mspa_features.errors.ReconciliationError`
  otherwise), checked before anything is published.

Author profiles: one row per author per content snapshot (the ``authors`` contract's
``event_timestamp``) whose UTC date falls in ``[start, end]``, in partition ``ds`` = that date,
``event_timestamp`` = the snapshot's. The content valid at the range start is never lost: an
author whose newest snapshot before ``start`` is not replaced exactly at ``start`` gets a row
in ``ds=start`` with ``event_timestamp = start`` (``created_timestamp`` = the snapshot's
time), so a range that begins after an author's content still serves it. Counts carry notes
saying why rows are missing (nothing in range, snapshots left to a later range).

Publishing. Spark writes the computed rows to a staging folder; then, partition by partition,
the driver sorts them, writes ``.ds=D.tmp-<run>/part-00000.parquet`` next to the partition and
swaps it in (``ds=D`` renamed to ``.ds=D.old-<run>``, the temp renamed to ``ds=D``, the old one
deleted). A killed job therefore leaves each partition either old or new, never a mix; the next
run first restores any ``.old`` partition whose new version never arrived and deletes temp and
staging leftovers. A rerun for the same range replaces the same partitions (no duplicates), and
a run over one new day touches only that day's partitions (and the manifests). One backfill per
entity and feature set at a time (a lock file enforces it). The swap relies on POSIX renames:
the workspace must be a local or POSIX file system.

Determinism. Rows and texts are exact functions of the inputs. Embeddings are exact for a rerun
of the same range (same partitioning, same encoder batches) and whenever the shared composer
cache (``Workspace.composer_cache``) serves them; a partition computed inside a different range
can differ in the last float32 bits (~1e-7), because the encoder pads each batch to its longest
text and batch mates change with the range.

Spark work: positives are read from the interactions contract parquet; the (user, ``s``) pairs
due are computed in Spark SQL (``date_trunc`` of each positive to its cadence bucket); the due
users' positives before the last instant are shuffled by user next to their requests, so one
user's rows arrive together, and ``mapInArrow`` builds all that user's snapshots in one pass
(history grown incrementally), then composes and encodes in batches. The composer, encoder,
cache connection and authors table are loaded once per Python worker (a module-level dict keyed
by the job's JSON). Timestamps are microseconds throughout (``TIMESTAMP_MICROS`` in Spark,
``coerce_timestamps="us"`` in pyarrow) and Spark SQL runs in UTC.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import itertools
import json
import os
import shutil
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, field_validator

from mspa_features.config import ComposerConfig, RunConfig, Workspace
from mspa_features.data.contracts import AUTHOR_PROFILES, AUTHORS, PREFERENCES, Contract
from mspa_features.data.validation import QUARANTINE_SCHEMA
from mspa_features.errors import MspaError, ReconciliationError, SchemaError
from mspa_features.names import feature_set_name

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from mspa_features.compose.composer import UserHistory
    from mspa_features.data.contracts import Author

Progress = Callable[[str, int, int], None]

#: CLI entity names -> contract names.
ENTITIES: dict[str, str] = {"users": PREFERENCES.name, "authors": AUTHOR_PROFILES.name}
PART_FILE = "part-00000.parquet"
MANIFEST = "_manifest.json"
QUARANTINE_DIR = "_quarantine"
STAGING_DIR = "_staging"
CADENCE_DAYS = {"daily": 1, "weekly": 7}

# Spark settings every backfill session gets (spark_conf overrides the non-semantic ones).
SPARK_DEFAULTS: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.ui.showConsoleProgress": "false",
}
# Settings the semantics depend on: forced on the job's session whatever spark_conf says.
_SPARK_REQUIRED: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
}
# Histories composed and encoded per call inside a worker: big enough to batch the encoder well
# (it sorts each call's texts by length), small enough to bound worker memory.
_FLUSH_ROWS = 2048
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A seam for tests that simulate a job killed between the two renames of a swap.
_rename = os.rename


# --------------------------------------------------------------------------- config


class BackfillConfig(BaseModel):
    """How a backfill runs: cadence, composer, output feature set and Spark settings."""

    model_config = ConfigDict(extra="forbid")

    cadence: Literal["daily", "weekly"] = Field(
        "daily", description="daily: a partition per day; weekly: one per Monday"
    )
    composer: Literal["template", "llm"] = Field(
        "template", description="template (no LLM) or llm (the run config's composer backend)"
    )
    feature_set: str | None = Field(
        None, description="output folder under features/<dataset>/ (default: composer name)"
    )
    master: str = Field("local[*]", description="Spark master when the job starts its session")
    spark_conf: dict[str, str] = Field(
        default_factory=dict, description="extra Spark settings (spark.driver.memory, ...)"
    )
    batch_size: int = Field(64, ge=1, description="histories/authors composed per call")
    partitions: int | None = Field(
        None, ge=1, description="Spark partitions of the compose stage (default: parallelism)"
    )
    users: list[str] | None = Field(
        None,
        min_length=1,
        description="only these users get preference snapshots (a user sample; null: all)",
    )
    authors: list[str] | None = Field(
        None,
        min_length=1,
        description="only these authors get profiles (the sample's authors; null: all)",
    )

    @field_validator("feature_set")
    @classmethod
    def _folder_name(cls, v: str | None) -> str | None:
        # The folder name becomes part of Feast object names at `mspa register`: checked now,
        # before Spark spends minutes on a set that could never be registered.
        return None if v is None else feature_set_name(v, "feature_set")

    @property
    def feature_set_name(self) -> str:
        return self.feature_set or self.composer


def feature_set_dir(cfg: RunConfig, bf: BackfillConfig) -> Path:
    """``features/<dataset>/<feature_set>`` in the run's workspace."""
    return Workspace(cfg.workspace).features(cfg.name) / bf.feature_set_name


# --------------------------------------------------------------------------- instants


def partition_dates(start: date, end: date, cadence: str) -> list[date]:
    """The partition dates of ``[start, end]``: every day (daily) or every Monday (weekly).

    Raises:
        ValueError: ``end`` is before ``start``, or the cadence is unknown.
    """
    if cadence not in CADENCE_DAYS:
        raise ValueError(f"unknown cadence {cadence!r}; valid: {', '.join(CADENCE_DAYS)}")
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    return days if cadence == "daily" else [d for d in days if d.weekday() == 0]


def snapshot_instant(ds: date) -> datetime:
    """The as-of instant of partition ``ds``: its midnight UTC."""
    return datetime(ds.year, ds.month, ds.day, tzinfo=UTC)


def _us(ts: datetime) -> int:
    return (ts - _EPOCH) // timedelta(microseconds=1)


def _dt(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(us))


def _sql_ts(ts: datetime) -> str:
    return f"TIMESTAMP '{ts.astimezone(UTC):%Y-%m-%d %H:%M:%S}'"


# --------------------------------------------------------------------------- counts


@dataclass
class PartitionCounts:
    ds: str
    requested: int
    written: int
    quarantined: int


@dataclass
class BackfillCounts:
    """What one entity's backfill did; ``requested == written + quarantined`` always holds.

    Attributes:
        entity: ``preferences`` or ``author_profiles``.
        requested: users due for a snapshot (summed over partitions) / author snapshots in range.
        written: rows published.
        quarantined: requests that went to quarantine (reasons in ``reasons``).
        partitions: per-partition counts, in date order.
        path: the entity's output folder.
        seconds: wall time of the backfill (session start excluded).
        notes: why rows one might expect are not there (nothing in range, content carried
            over to the range start), for the output.
    """

    entity: str
    requested: int = 0
    written: int = 0
    quarantined: int = 0
    partitions: list[PartitionCounts] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)
    path: str = ""
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def check(self) -> None:
        """Raises ReconciliationError unless requested == written + quarantined."""
        if self.requested != self.written + self.quarantined:
            raise ReconciliationError(
                f"backfill {self.entity}", self.requested, self.written, self.quarantined
            )

    def as_dict(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "written": self.written,
            "quarantined": self.quarantined,
            "partitions": len(self.partitions),
            "reasons": dict(self.reasons),
            "path": self.path,
            "seconds": round(self.seconds, 3),
            "notes": list(self.notes),
        }


# --------------------------------------------------------------------------- Spark session


def build_spark_session(
    bf: BackfillConfig, *, app_name: str = "mspa-backfill", master: str | None = None
) -> SparkSession:
    """One SparkSession for a backfill job (start-up costs ~20 s: reuse it).

    Sets ``PYSPARK_PYTHON`` to this interpreter and ``SPARK_LOCAL_IP=127.0.0.1`` unless already
    set, applies :data:`SPARK_DEFAULTS` then ``bf.spark_conf``.

    Args:
        bf: the backfill settings (``spark_conf``, ``master``).
        master: overrides ``bf.master``; pass ``""`` to keep the master spark-submit chose.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    chosen = bf.master if master is None else master
    if chosen:
        builder = builder.master(chosen)
    for k, v in {**SPARK_DEFAULTS, **bf.spark_conf}.items():
        builder = builder.config(k, v)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _job_session(spark: SparkSession, bf: BackfillConfig) -> tuple[SparkSession, int]:
    """A child session (own SQL conf, shared SparkContext) with the settings semantics need."""
    session = spark.newSession()
    for k, v in _SPARK_REQUIRED.items():
        session.conf.set(k, v)
    sc = spark.sparkContext
    n = bf.partitions or max(1, sc.defaultParallelism)
    if not sc.getConf().contains("spark.sql.shuffle.partitions") and (
        "spark.sql.shuffle.partitions" not in bf.spark_conf
    ):
        session.conf.set("spark.sql.shuffle.partitions", str(n))
    return session, n


def _torch_threads(spark: SparkSession) -> int | None:
    """Local masters: split the cores between concurrent tasks so workers don't oversubscribe."""
    master = spark.sparkContext.master
    if not master.startswith("local"):
        return None
    return max(1, (os.cpu_count() or 1) // max(1, spark.sparkContext.defaultParallelism))


@contextlib.contextmanager
def _spark_progress(spark: SparkSession, label: str, progress: Progress | None) -> Iterator[None]:
    """Report completed/total tasks of this block's Spark jobs to ``progress`` twice a second."""
    if progress is None:
        yield
        return
    sc = spark.sparkContext
    group = f"mspa-backfill-{uuid.uuid4().hex[:8]}"
    sc.setJobGroup(group, label)
    stop = threading.Event()

    def poll() -> None:
        tracker = sc.statusTracker()
        while not stop.wait(0.5):
            done = total = 0
            for jid in tracker.getJobIdsForGroup(group):
                job = tracker.getJobInfo(jid)
                for sid in job.stageIds if job else ():
                    st = tracker.getStageInfo(sid)
                    if st:
                        done += st.numCompletedTasks
                        total += st.numTasks
            if total:
                progress(label, done, total)

    th = threading.Thread(target=poll, daemon=True)
    th.start()
    try:
        yield
    finally:
        stop.set()
        th.join()
        sc.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]
        progress(label, 1, 1)


# --------------------------------------------------------------------------- worker side


class _WorkerSpec(BaseModel):
    """Everything a Python worker needs; its JSON keys the per-worker cache."""

    model_config = ConfigDict(extra="forbid")

    entity: str
    composer: Literal["template", "llm"]
    composer_cfg: ComposerConfig
    cache_path: str
    authors_path: str
    authors_stamp: str  # size + mtime: a changed authors file is reloaded
    batch_size: int
    torch_threads: int | None


class _AuthorIndex:
    """Author content snapshots by id, for point-in-time and exact-key lookups."""

    def __init__(self, records: Sequence[Author]):
        by_id: dict[str, list[Author]] = {}
        for a in sorted(records, key=lambda a: (a.author_id, a.event_timestamp)):
            by_id.setdefault(a.author_id, []).append(a)
        self._snaps = {
            aid: ([_us(a.event_timestamp) for a in lst], lst) for aid, lst in by_id.items()
        }
        self._by_key = {(a.author_id, _us(a.event_timestamp)): a for a in records}

    def as_of(self, author_id: str, s_us: int) -> Author | None:
        """The newest snapshot with ``event_timestamp < s`` (None: no content yet)."""
        snap = self._snaps.get(author_id)
        if snap is None:
            return None
        ts, lst = snap
        i = bisect.bisect_left(ts, s_us)
        return lst[i - 1] if i else None

    def get(self, author_id: str, ts_us: int) -> Author | None:
        return self._by_key.get((author_id, ts_us))


class _Worker:
    """Composer, encoder, cache and authors, loaded once per Python worker and job spec."""

    def __init__(self, spec: _WorkerSpec):
        from mspa_features.compose.cache import ComposerCache
        from mspa_features.compose.jobs import get_encoder, make_composer
        from mspa_features.io import read_parquet

        if spec.torch_threads:
            import torch

            torch.set_num_threads(spec.torch_threads)
        self.spec = spec
        self.cache = ComposerCache(spec.cache_path)
        comp_cfg = spec.composer_cfg
        if spec.entity == AUTHOR_PROFILES.name:  # shorter outputs for descriptions
            comp_cfg = comp_cfg.model_copy(
                update={"max_new_tokens": comp_cfg.author_max_new_tokens}
            )
        self.composer = make_composer(spec.composer, comp_cfg, self.cache)
        self.encoder = get_encoder(spec.composer_cfg)
        self.authors = _AuthorIndex(
            AUTHORS.to_records(read_parquet(spec.authors_path, AUTHORS.schema))
        )


_WORKERS: dict[str, _Worker] = {}
_MAX_WORKERS = 4


def _worker(spec_json: str) -> _Worker:
    w = _WORKERS.get(spec_json)
    if w is None:
        while len(_WORKERS) >= _MAX_WORKERS:  # long-lived workers serve many jobs
            _WORKERS.pop(next(iter(_WORKERS)))
        w = _WORKERS[spec_json] = _Worker(_WorkerSpec.model_validate_json(spec_json))
    return w


def _nullable(schema: pa.Schema) -> list[pa.Field]:
    return [pa.field(f.name, f.type) for f in schema]


# mapInArrow outputs: the contract's columns plus kind (row | quarantine), ds, reason, record.
_EXTRA_HEAD = [pa.field("kind", pa.string()), pa.field("ds", pa.string())]
_EXTRA_TAIL = [pa.field("reason", pa.string()), pa.field("record", pa.string())]
_OUT_SCHEMAS = {
    c.name: pa.schema([*_EXTRA_HEAD, *_nullable(c.schema), *_EXTRA_TAIL])
    for c in (PREFERENCES, AUTHOR_PROFILES)
}


def _ddl(schema: pa.Schema) -> str:
    """The Spark DDL of an arrow schema made of the types the contracts use."""

    def typ(t: pa.DataType) -> str:
        if pa.types.is_string(t):
            return "string"
        if pa.types.is_timestamp(t):
            return "timestamp"
        if pa.types.is_int64(t):
            return "long"
        if pa.types.is_float32(t):
            return "float"
        if pa.types.is_list(t):
            return f"array<{typ(t.value_type)}>"
        raise TypeError(f"no Spark type for {t}")

    return ", ".join(f"{f.name} {typ(f.type)}" for f in schema)


def _user_groups(
    batches: Iterator[pa.RecordBatch],
) -> Iterator[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """(user_id, ts_us, author_ids, kinds) per user from batches sorted by user_id.

    A user's rows may straddle batch boundaries: the last user of a batch is carried over.
    """
    carry: tuple[np.ndarray, ...] | None = None
    for b in batches:
        if b.num_rows == 0:
            continue
        cols = (
            b.column("user_id").to_numpy(zero_copy_only=False),
            b.column("event_timestamp").cast(pa.int64()).to_numpy(),
            b.column("author_id").to_numpy(zero_copy_only=False),
            b.column("kind").to_numpy(),
        )
        if carry is not None:
            cols = tuple(np.concatenate([c, x]) for c, x in zip(carry, cols, strict=True))
        users = cols[0]
        bounds = [0, *(np.flatnonzero(users[1:] != users[:-1]) + 1).tolist(), len(users)]
        for lo, hi in itertools.pairwise(bounds[:-1]):  # all but the last user: complete
            yield users[lo], cols[1][lo:hi], cols[2][lo:hi], cols[3][lo:hi]
        lo = bounds[-2]
        carry = tuple(c[lo:] for c in cols)
    if carry is not None and len(carry[0]):
        yield carry[0][0], carry[1], carry[2], carry[3]


def user_histories(
    user_id: str,
    ts_us: np.ndarray,
    author_ids: np.ndarray,
    kinds: np.ndarray,
    authors: _AuthorIndex,
) -> list[UserHistory]:
    """All requested snapshots of one user, the history grown incrementally.

    Args:
        ts_us: microseconds since the epoch: positives' timestamps and requested instants.
        author_ids: the positive's author (ignored for requests).
        kinds: 1 for a positive, 0 for a requested snapshot instant.
    """
    from mspa_features.compose.composer import UserHistory

    pos = kinds == 1
    p_ts, p_aid = ts_us[pos], author_ids[pos].astype(str)
    order = np.lexsort((p_aid, p_ts))  # by time, ties by author id (as build_histories)
    p_ts, p_aid = p_ts[order], p_aid[order]
    instants = np.unique(ts_us[~pos])
    cuts = np.searchsorted(p_ts, instants, side="left")  # positives strictly before s
    seen: dict[str, None] = {}
    i = 0
    out = []
    for s, cut in zip(instants.tolist(), cuts.tolist(), strict=True):
        while i < cut:
            seen.setdefault(str(p_aid[i]), None)
            i += 1
        hist = tuple(a for a in (authors.as_of(aid, s) for aid in seen) if a is not None)
        last = _dt(p_ts[cut - 1]) if cut else None
        out.append(UserHistory(str(user_id), _dt(s), hist, int(cut), last))
    return out


def _with_extras(
    table: pa.Table,
    ds: list[str],
    schema: pa.Schema,
    *,
    kind: str,
    reasons: list[str] | None,
    records: list[str] | None,
) -> pa.Table:
    n = table.num_rows
    cols: dict[str, Any] = {"kind": pa.array([kind] * n, pa.string()), "ds": pa.array(ds)}
    for f in schema:
        if f.name in cols:
            continue
        if f.name in table.column_names:
            cols[f.name] = table.column(f.name).cast(f.type)
        elif f.name == "reason" and reasons is not None:
            cols[f.name] = pa.array(reasons, pa.string())
        elif f.name == "record" and records is not None:
            cols[f.name] = pa.array(records, pa.string())
        else:
            cols[f.name] = pa.nulls(n, f.type)
    return pa.table(cols, schema=schema)


def _compose_preference_batch(w: _Worker, histories: list[UserHistory]) -> pa.Table:
    from mspa_features.compose.feature_rows import compose_preference_rows

    out = compose_preference_rows(
        w.composer,
        w.encoder,
        histories,
        cache=w.cache,
        batch_size=w.spec.batch_size,
        created=_EPOCH,
    )
    ok = [i for i, c in enumerate(out.composed) if c.status != "skipped"]
    bad = [i for i, c in enumerate(out.composed) if c.status == "skipped"]
    table = out.table.set_column(
        out.table.schema.get_field_index("created_timestamp"),
        "created_timestamp",
        out.table.column("event_timestamp"),
    )
    schema = _OUT_SCHEMAS[PREFERENCES.name]
    rows = _with_extras(
        table,
        [histories[i].as_of.strftime("%Y-%m-%d") for i in ok],
        schema,
        kind="row",
        reasons=None,
        records=None,
    )
    q_keys = pa.table(
        {
            "user_id": pa.array([histories[i].user_id for i in bad], pa.string()),
            "event_timestamp": pa.array(
                [histories[i].as_of for i in bad], PREFERENCES.schema.field("event_timestamp").type
            ),
            "history_count": pa.array([histories[i].history_count for i in bad], pa.int64()),
        }
    )
    q = _with_extras(
        q_keys,
        [histories[i].as_of.strftime("%Y-%m-%d") for i in bad],
        schema,
        kind="quarantine",
        reasons=[out.composed[i].reason or "skipped" for i in bad],
        records=[
            json.dumps(
                {
                    "user_id": histories[i].user_id,
                    "event_timestamp": histories[i].as_of.isoformat(),
                    "history_count": histories[i].history_count,
                }
            )
            for i in bad
        ],
    )
    return pa.concat_tables([rows, q])


def _preference_udf(spec_json: str, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: rows sorted by user -> preference rows and quarantine rows."""
    w = _worker(spec_json)
    pending: list[UserHistory] = []
    for user_id, ts, aids, kinds in _user_groups(batches):
        pending += user_histories(user_id, ts, aids, kinds, w.authors)
        if len(pending) >= _FLUSH_ROWS:
            yield from _compose_preference_batch(w, pending).to_batches()
            pending = []
    if pending:
        yield from _compose_preference_batch(w, pending).to_batches()


def _compose_author_batch(w: _Worker, keys: list[tuple[str, int, int]]) -> pa.Table:
    """Profiles for (author_id, content snapshot us, valid-from us) keys.

    A row is valid from its valid-from instant: the snapshot's own time, or the range start
    for content carried over from before it; ``created_timestamp`` is the snapshot's time.
    """
    from mspa_features.compose.feature_rows import compose_author_rows

    valid_from = [v for _, _, v in keys]
    keys2 = [(aid, ts) for aid, ts, _ in keys]
    authors = [w.authors.get(aid, ts) for aid, ts in keys2]
    missing = [k for k, a in zip(keys2, authors, strict=True) if a is None]
    if missing:  # Spark and the worker read the same file: a mismatch is a bug
        raise ReconciliationError(
            f"author snapshots not found in worker: {missing[:3]}",
            len(keys),
            len(keys) - len(missing),
            0,
        )
    recs: list[Author] = [a for a in authors if a is not None]
    out = compose_author_rows(
        w.composer, w.encoder, recs, cache=w.cache, batch_size=w.spec.batch_size, created=_EPOCH
    )
    ok = [i for i, c in enumerate(out.composed) if c.status != "skipped"]
    bad = [i for i, c in enumerate(out.composed) if c.status == "skipped"]
    table = out.table.set_column(
        out.table.schema.get_field_index("created_timestamp"),
        "created_timestamp",
        out.table.column("event_timestamp"),
    )
    ts_type = AUTHORS.schema.field("event_timestamp").type
    table = table.set_column(
        table.schema.get_field_index("event_timestamp"),
        "event_timestamp",
        pa.array([valid_from[i] for i in ok], pa.int64()).cast(ts_type),
    )
    schema = _OUT_SCHEMAS[AUTHOR_PROFILES.name]
    day = [_dt(v).strftime("%Y-%m-%d") for v in valid_from]
    rows = _with_extras(table, [day[i] for i in ok], schema, kind="row", reasons=None, records=None)
    q_keys = pa.table(
        {
            "author_id": pa.array([recs[i].author_id for i in bad], pa.string()),
            "event_timestamp": pa.array([valid_from[i] for i in bad], pa.int64()).cast(ts_type),
        }
    )
    q = _with_extras(
        q_keys,
        [day[i] for i in bad],
        schema,
        kind="quarantine",
        reasons=[out.composed[i].reason or "skipped" for i in bad],
        records=[
            json.dumps(
                {
                    "author_id": recs[i].author_id,
                    "event_timestamp": recs[i].event_timestamp.isoformat(),
                    "profile_text": recs[i].profile_text,
                    "n_frames": len(recs[i].frames),
                }
            )
            for i in bad
        ],
    )
    return pa.concat_tables([rows, q])


def _author_udf(spec_json: str, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: (author_id, event_timestamp) keys -> author profile rows + quarantine."""
    w = _worker(spec_json)
    pending: list[tuple[str, int, int]] = []
    for b in batches:
        aids = b.column("author_id").to_pylist()
        ts = b.column("event_timestamp").cast(pa.int64()).to_pylist()
        valid = b.column("valid_from").cast(pa.int64()).to_pylist()
        pending += list(zip(aids, ts, valid, strict=True))
        while len(pending) >= _FLUSH_ROWS:
            yield from _compose_author_batch(w, pending[:_FLUSH_ROWS]).to_batches()
            pending = pending[_FLUSH_ROWS:]
    if pending:
        yield from _compose_author_batch(w, pending).to_batches()


# --------------------------------------------------------------------------- publishing


@contextlib.contextmanager
def _entity_lock(root: Path, entity: str) -> Iterator[None]:
    import fcntl

    root.mkdir(parents=True, exist_ok=True)
    path = root / f".{entity}.lock"
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise MspaError(
                f"another backfill of {entity} is writing {root} (lock {path}); wait for it"
            ) from e
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def recover_partitions(folder: Path) -> list[str]:
    """Undo what a killed publish left in ``folder``; returns what was done.

    ``.ds=D.old-*`` is renamed back to ``ds=D`` when the new partition never arrived (else
    deleted); ``.ds=D.tmp-*`` (a new partition not swapped in) is deleted.
    """
    done: list[str] = []
    if not folder.is_dir():
        return done
    for p in sorted(folder.iterdir()):
        name = p.name
        if name.startswith(".ds=") and ".old-" in name:
            final = folder / name[1:].split(".old-")[0]
            if final.exists():
                shutil.rmtree(p)
                done.append(f"deleted {name}")
            else:
                _rename(p, final)
                done.append(f"restored {final.name}")
        elif name.startswith(".ds=") and ".tmp-" in name:
            shutil.rmtree(p)
            done.append(f"deleted {name}")
    return done


def _swap_in(folder: Path, ds: str, table: pa.Table, run_id: str) -> Path:
    """Publish ``table`` as ``folder/ds=<ds>/part-00000.parquet``; old or new, never a mix."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"ds={ds}"
    tmp = folder / f".ds={ds}.tmp-{run_id}"
    old = folder / f".ds={ds}.old-{run_id}"
    tmp.mkdir()
    pq.write_table(table, tmp / PART_FILE, coerce_timestamps="us")
    had_old = final.exists()
    if had_old:
        _rename(final, old)
    _rename(tmp, final)
    if had_old:
        shutil.rmtree(old)
    return final / PART_FILE


def _staged_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.parquet")) if folder.is_dir() else []


def _staged_count(folder: Path) -> int:
    return sum(pq.read_metadata(f).num_rows for f in _staged_files(folder))


def _read_staged(folder: Path, columns: list[str]) -> pa.Table | None:
    files = _staged_files(folder)
    if not files:
        return None
    return pa.concat_tables([pq.read_table(f, columns=columns) for f in files])


def read_manifest(entity_dir: Path) -> dict[str, Any]:
    """The entity's manifest (``{}``-shaped skeleton when none was written yet)."""
    p = Path(entity_dir) / MANIFEST
    if p.is_file():
        try:
            return json.loads(p.read_text())
        except json.JSONDecodeError:
            pass  # a manifest is an index: rebuilt partition by partition as runs publish
    return {"partitions": {}}


def _write_manifest(entity_dir: Path, manifest: dict[str, Any]) -> None:
    p = entity_dir / MANIFEST
    tmp = entity_dir / f".{MANIFEST}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    os.replace(tmp, p)


def read_partitions(entity_dir: Path, dates: Sequence[date | str] | None = None) -> pa.Table:
    """Published partitions of one entity as one table with a ``ds`` string column."""
    parts = []
    wanted = None if dates is None else {str(d) for d in dates}
    for d in sorted(Path(entity_dir).glob("ds=*")):
        ds = d.name.removeprefix("ds=")
        if wanted is not None and ds not in wanted:
            continue
        t = pq.read_table(d / PART_FILE)
        parts.append(t.append_column("ds", pa.array([ds] * t.num_rows, pa.string())))
    if not parts:
        raise SchemaError(entity_dir, "no published partitions")
    return pa.concat_tables(parts)


def _publish(
    *,
    contract: Contract,
    root: Path,
    dates: list[date],
    requested: dict[str, int],
    staging: Path,
    sort_keys: list[str],
    run_id: str,
    meta: dict[str, Any],
    progress: Progress | None,
) -> BackfillCounts:
    """Reconcile the staged output, then swap each partition in and update the manifest."""
    entity = contract.name
    key_cols = [c for c in contract.key if c != "model_version"]
    rows_dir, q_dir = staging / "kind=row", staging / "kind=quarantine"
    names = [d.isoformat() for d in dates]
    staged = {
        p.name.removeprefix("ds=")
        for base in (rows_dir, q_dir)
        if base.is_dir()
        for p in base.glob("ds=*")
    }
    counts = BackfillCounts(entity=entity, path=str(root / entity))
    for ds in sorted(staged - set(names)):  # rows outside the range: a bug, never published
        raise ReconciliationError(
            f"backfill {entity} ds={ds} (outside the range)",
            requested.get(ds, 0),
            _staged_count(rows_dir / f"ds={ds}"),
            _staged_count(q_dir / f"ds={ds}"),
        )
    for ds in names:
        pc = PartitionCounts(
            ds,
            requested.get(ds, 0),
            _staged_count(rows_dir / f"ds={ds}"),
            _staged_count(q_dir / f"ds={ds}"),
        )
        if pc.requested != pc.written + pc.quarantined:
            raise ReconciliationError(
                f"backfill {entity} ds={ds}", pc.requested, pc.written, pc.quarantined
            )
        counts.partitions.append(pc)
    counts.requested = sum(p.requested for p in counts.partitions)
    counts.written = sum(p.written for p in counts.partitions)
    counts.quarantined = sum(p.quarantined for p in counts.partitions)
    counts.check()

    entity_dir, q_root = root / entity, root / QUARANTINE_DIR / entity
    entity_dir.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(entity_dir)
    manifest.update({"entity": entity, "contract": entity, **meta})
    reasons: Counter[str] = Counter()
    for i, pc in enumerate(counts.partitions):
        ds = pc.ds
        rows = _read_staged(rows_dir / f"ds={ds}", contract.columns)
        rows = (contract.empty() if rows is None else rows.cast(contract.schema)).sort_by(
            [(k, "ascending") for k in sort_keys]
        )
        q = _read_staged(q_dir / f"ds={ds}", [*key_cols, "reason", "record"])
        q_table = _quarantine_table(entity, ds, meta["feature_set"], rows, q, key_cols)
        reasons.update(q_table.column("reason").to_pylist())
        if len(set(zip(*(rows.column(k).to_pylist() for k in key_cols), strict=True))) != len(rows):
            raise ReconciliationError(
                f"backfill {entity} ds={ds}: duplicate keys",
                pc.requested,
                rows.num_rows,
                q_table.num_rows,
            )
        _swap_in(entity_dir, ds, rows, run_id)
        _swap_in(q_root, ds, q_table, run_id)
        versions = sorted(set(rows.column("model_version").to_pylist()))
        manifest["partitions"][ds] = {
            "path": f"ds={ds}/{PART_FILE}",
            "quarantine_path": f"../{QUARANTINE_DIR}/{entity}/ds={ds}/{PART_FILE}",
            "rows": pc.written,
            "quarantined": pc.quarantined,
            "requested": pc.requested,
            "model_versions": versions,
            "cadence": meta.get("cadence"),
            "run_id": run_id,
            "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        manifest["partitions"] = dict(sorted(manifest["partitions"].items()))
        _write_manifest(entity_dir, manifest)
        if progress:
            progress(f"{entity}: publish partitions", i + 1, len(counts.partitions))
    counts.reasons = dict(reasons)
    return counts


def _quarantine_table(
    entity: str, ds: str, feature_set: str, rows: pa.Table, q: pa.Table | None, key_cols: list[str]
) -> pa.Table:
    """QUARANTINE_SCHEMA rows; row_number = the request's rank within the partition by key."""
    if q is None or q.num_rows == 0:
        return QUARANTINE_SCHEMA.empty_table()
    q = q.sort_by([(k, "ascending") for k in key_cols])

    def keys(t: pa.Table) -> list[tuple]:
        return list(zip(*(t.column(k).to_pylist() for k in key_cols), strict=True))

    rank = {k: i for i, k in enumerate(sorted(keys(rows) + keys(q)))}
    return pa.table(
        {
            "contract": [entity] * q.num_rows,
            "source": [f"backfill {feature_set}/{entity} ds={ds}"] * q.num_rows,
            "row_number": [rank[k] for k in keys(q)],
            "reason": q.column("reason").to_pylist(),
            "record": q.column("record").to_pylist(),
        },
        schema=QUARANTINE_SCHEMA,
    )


def _prepare_output(root: Path, entity: str) -> list[str]:
    """Recover partitions a killed run left half-swapped; delete stale staging."""
    done = recover_partitions(root / entity) + recover_partitions(root / QUARANTINE_DIR / entity)
    for p in sorted((root / STAGING_DIR).glob(f"{entity}-*")):
        shutil.rmtree(p, ignore_errors=True)
        done.append(f"deleted staging {p.name}")
    return done


def _drop_staging(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)
    with contextlib.suppress(OSError):  # still in use by the other entity's run
        staging.parent.rmdir()


def _input_path(cfg: RunConfig, name: str) -> Path:
    p = Workspace(cfg.workspace).data(cfg.name) / f"{name}.parquet"
    if not p.is_file():
        raise SchemaError(p, f"file not found (run `mspa data fetch` for {cfg.name!r} first)")
    return p


def _spec(cfg: RunConfig, bf: BackfillConfig, entity: str, spark: SparkSession) -> str:
    from mspa_features.compose.cache import ComposerCache

    authors = _input_path(cfg, "authors")
    st = authors.stat()
    # Create the shared cache here, once: two workers creating a new SQLite file at the same
    # moment can fail with "database is locked" (the switch to WAL does not wait on the busy
    # timeout); opening an existing WAL database concurrently is safe.
    ComposerCache(Workspace(cfg.workspace).composer_cache).close()
    return _WorkerSpec(
        entity=entity,
        composer=bf.composer,
        composer_cfg=cfg.composer,
        cache_path=str(Workspace(cfg.workspace).composer_cache),
        authors_path=str(authors),
        authors_stamp=f"{st.st_size}:{st.st_mtime_ns}",
        batch_size=bf.batch_size,
        torch_threads=_torch_threads(spark),
    ).model_dump_json()


def _meta(cfg: RunConfig, bf: BackfillConfig) -> dict[str, Any]:
    return {
        "dataset": cfg.name,
        "feature_set": bf.feature_set_name,
        "composer": bf.composer,
        "cadence": bf.cadence,
        "encoder": cfg.composer.encoder.model,
        "prompts": cfg.composer.prompts if bf.composer == "llm" else None,
        "sampled_users": None if bf.users is None else len(bf.users),
        "sampled_authors": None if bf.authors is None else len(bf.authors),
    }


# --------------------------------------------------------------------------- jobs


def preference_requests(
    spark: SparkSession, interactions: str | Path, dates: Sequence[date], cadence: str
) -> tuple[DataFrame, DataFrame]:
    """(positives, requests): the positive interactions, and the (user_id, event_timestamp = s,
    ds) snapshots due: users with a positive in ``[s - cadence, s)`` for each partition date.
    ``dates`` must not be empty.

    The bucket of a positive at ``t`` is the first cadence instant after it:
    ``date_trunc('DAY'|'WEEK', t) + 1|7 days`` (UTC; Spark weeks start on Monday).
    """
    from pyspark.sql import functions as F

    pos = (
        spark.read.parquet(str(interactions))
        .where(F.col("label") == 1)
        .select("user_id", "author_id", "event_timestamp")
    )
    unit, step = ("DAY", 1) if cadence == "daily" else ("WEEK", 7)
    first, last = snapshot_instant(dates[0]), snapshot_instant(dates[-1])
    bucket = F.expr(f"date_trunc('{unit}', event_timestamp) + INTERVAL {step} DAYS")
    req = (
        pos.select("user_id", bucket.alias("event_timestamp"))
        .where(F.col("event_timestamp").between(F.expr(_sql_ts(first)), F.expr(_sql_ts(last))))
        .distinct()
        .withColumn("ds", F.date_format("event_timestamp", "yyyy-MM-dd"))
    )
    return pos, req


def _compute_preferences(
    session: SparkSession,
    cfg: RunConfig,
    bf: BackfillConfig,
    dates: list[date],
    n_parts: int,
    staging: Path,
    spec_json: str,
    *,
    spark: SparkSession,
    progress: Progress | None,
) -> dict[str, int]:
    """Spark part of the preference backfill: writes staging; returns requests per ds."""
    from pyspark.sql import functions as F

    entity = PREFERENCES.name
    pos, req = preference_requests(session, _input_path(cfg, "interactions"), dates, bf.cadence)
    if bf.users is not None:
        req = req.where(F.col("user_id").isin(list(bf.users)))
    req = req.persist()
    try:
        with _spark_progress(spark, f"{entity}: due users", progress):
            requested = {r["ds"]: int(r["count"]) for r in req.groupBy("ds").count().collect()}
        last = snapshot_instant(dates[-1])
        due_users = req.select("user_id").distinct()
        history = pos.where(F.col("event_timestamp") < F.expr(_sql_ts(last))).join(
            due_users, "user_id", "left_semi"
        )
        rows = (
            req.select(
                "user_id",
                "event_timestamp",
                F.lit(None).cast("string").alias("author_id"),
                F.lit(0).cast("byte").alias("kind"),
            )
            .unionByName(
                history.select(
                    "user_id", "event_timestamp", "author_id", F.lit(1).cast("byte").alias("kind")
                )
            )
            # one user's requests and positives land together, contiguous, in one partition
            .repartition(n_parts, "user_id")
            .sortWithinPartitions("user_id", "event_timestamp", "kind")
        )
        out = rows.mapInArrow(
            functools.partial(_preference_udf, spec_json), _ddl(_OUT_SCHEMAS[entity])
        )
        with _spark_progress(spark, f"{entity}: compose + encode", progress):
            out.write.mode("overwrite").partitionBy("kind", "ds").parquet(str(staging))
    finally:
        req.unpersist()
    return requested


def backfill_preferences(
    spark: SparkSession,
    cfg: RunConfig,
    bf: BackfillConfig,
    start: date,
    end: date,
    *,
    progress: Progress | None = None,
) -> BackfillCounts:
    """Point-in-time user preference snapshots for every partition date in ``[start, end]``.

    Args:
        spark: the job's session (its SQL settings are not changed: a child session is used).
        cfg: the run config (workspace, dataset, composer and encoder settings).
        bf: backfill settings.
        start, end: first and last partition date (inclusive).
        progress: ``progress(stage, done, total)`` callback.

    Raises:
        SchemaError: the dataset's contract files are missing.
        ReconciliationError: requested != written + quarantined (nothing is published then).
        MspaError: another backfill holds this entity's lock.
    """
    t0 = time.perf_counter()
    entity = PREFERENCES.name
    root = feature_set_dir(cfg, bf)
    dates = partition_dates(start, end, bf.cadence)
    session, n_parts = _job_session(spark, bf)
    run_id = uuid.uuid4().hex[:12]
    with _entity_lock(root, entity):
        _prepare_output(root, entity)
        staging = root / STAGING_DIR / f"{entity}-{run_id}"
        try:
            requested: dict[str, int] = {}
            if dates:
                requested = _compute_preferences(
                    session,
                    cfg,
                    bf,
                    dates,
                    n_parts,
                    staging,
                    _spec(cfg, bf, entity, spark),
                    spark=spark,
                    progress=progress,
                )
            counts = _publish(
                contract=PREFERENCES,
                root=root,
                dates=dates,
                requested=requested,
                staging=staging,
                sort_keys=["user_id"],
                run_id=run_id,
                meta=_meta(cfg, bf),
                progress=progress,
            )
        finally:
            _drop_staging(staging)
    if not dates:
        counts.notes.append(
            f"no {bf.cadence} snapshot instant in [{start}, {end}]"
            + (" (weekly snapshots are on Mondays)" if bf.cadence == "weekly" else "")
        )
    elif counts.requested == 0:
        counts.notes.append(
            f"no user has a new positive before any snapshot instant of [{start}, {end}] (each "
            f"window is the {bf.cadence} period before it): nothing to recompute; snapshots "
            "written by earlier ranges stay valid within the TTL"
        )
    counts.seconds = time.perf_counter() - t0
    return counts


def backfill_authors(
    spark: SparkSession,
    cfg: RunConfig,
    bf: BackfillConfig,
    start: date,
    end: date,
    *,
    progress: Progress | None = None,
) -> BackfillCounts:
    """Author profiles for every author content snapshot whose UTC date is in ``[start, end]``,
    plus the content valid at ``start`` (carried over, as of ``start``).

    Every day of the range is a partition (cadence does not apply: snapshots are events).
    Arguments and errors as :func:`backfill_preferences`.
    """
    from pyspark.sql import functions as F

    t0 = time.perf_counter()
    entity = AUTHOR_PROFILES.name
    root = feature_set_dir(cfg, bf)
    dates = partition_dates(start, end, "daily")
    session, n_parts = _job_session(spark, bf)
    run_id = uuid.uuid4().hex[:12]
    lo, hi = snapshot_instant(start), snapshot_instant(end + timedelta(days=1))
    with _entity_lock(root, entity):
        _prepare_output(root, entity)
        staging = root / STAGING_DIR / f"{entity}-{run_id}"
        try:
            every = session.read.parquet(str(_input_path(cfg, "authors"))).select(
                "author_id", "event_timestamp"
            )
            if bf.authors is not None:
                every = every.where(F.col("author_id").isin(list(bf.authors)))
            ts_col, lo_sql = F.col("event_timestamp"), F.expr(_sql_ts(lo))
            in_range = every.where((ts_col >= lo_sql) & (ts_col < F.expr(_sql_ts(hi))))
            # The content valid at the range start: each author's newest snapshot before it
            # (unless one starts exactly then), written as of the start, so a range that
            # begins after an author's content still serves that content from its first day.
            carried = (
                every.where(ts_col < lo_sql)
                .groupBy("author_id")
                .agg(F.max("event_timestamp").alias("event_timestamp"))
                .join(every.where(ts_col == lo_sql).select("author_id"), "author_id", "left_anti")
            )
            snaps = (
                in_range.withColumn("valid_from", F.col("event_timestamp"))
                .unionByName(carried.withColumn("valid_from", lo_sql))
                .persist()
            )
            with _spark_progress(spark, f"{entity}: snapshots in range", progress):
                requested = {
                    r["ds"]: int(r["count"])
                    for r in snaps.groupBy(F.date_format("valid_from", "yyyy-MM-dd").alias("ds"))
                    .count()
                    .collect()
                }
                n_carried = carried.count()
                n_after = every.where(ts_col >= F.expr(_sql_ts(hi))).count()
                n_authors = every.select("author_id").distinct().count()
            out = (
                snaps.select("author_id", "event_timestamp", "valid_from")
                .repartition(n_parts, "author_id")
                .sortWithinPartitions("author_id", "event_timestamp")
                .mapInArrow(
                    functools.partial(_author_udf, _spec(cfg, bf, entity, spark)),
                    _ddl(_OUT_SCHEMAS[entity]),
                )
            )
            with _spark_progress(spark, f"{entity}: compose + encode", progress):
                out.write.mode("overwrite").partitionBy("kind", "ds").parquet(str(staging))
            snaps.unpersist()
            counts = _publish(
                contract=AUTHOR_PROFILES,
                root=root,
                dates=dates,
                requested=requested,
                staging=staging,
                sort_keys=["author_id", "event_timestamp"],
                run_id=run_id,
                meta={**_meta(cfg, bf), "cadence": "daily"},
                progress=progress,
            )
        finally:
            _drop_staging(staging)
    counts.notes = _author_notes(
        start, end, requested=counts.requested, carried=n_carried, after=n_after, total=n_authors
    )
    counts.seconds = time.perf_counter() - t0
    return counts


def _author_notes(
    start: date, end: date, *, requested: int, carried: int, after: int, total: int
) -> list[str]:
    """Why author profiles are (or are not) in ``[start, end]``, in words for the output."""
    notes = []
    if carried:
        notes.append(
            f"{carried:,} author(s) whose content predates {start} written as of {start} "
            "(their newest snapshot before the range: the content valid at its start)"
        )
    if total == 0:
        notes.append("no author in the authors table (after any sample): nothing to write")
    elif requested == 0:
        notes.append(
            f"no author content snapshot valid in [{start}, {end}]: all {total:,} author(s) "
            f"first appear after {end}"
        )
    elif after:
        notes.append(f"{after:,} author snapshot(s) after {end} are left to a later range")
    return notes


def run_backfill(
    cfg: RunConfig,
    bf: BackfillConfig,
    start: date,
    end: date,
    *,
    entities: Sequence[str] = ("users", "authors"),
    spark: SparkSession | None = None,
    progress: Progress | None = None,
) -> dict[str, BackfillCounts]:
    """Backfill the chosen entities (``users`` -> preferences, ``authors`` -> author_profiles).

    Starts (and stops) a SparkSession from ``bf`` unless one is given. Holds the run's write
    lock (:func:`mspa_features.serving.materialize.store_lock`) throughout: a register of the same run
    waits for it.

    Returns:
        contract name -> counts, each reconciled (requested == written + quarantined).
    """
    unknown = [e for e in entities if e not in ENTITIES]
    if unknown:
        raise ValueError(f"unknown entities {unknown}; valid: {', '.join(ENTITIES)}")
    partition_dates(start, end, bf.cadence)  # validate before paying for a session
    from mspa_features.serving.materialize import store_lock

    # One writer per run: a `mspa register` of the same run waits while partitions are swapped.
    with store_lock(cfg, f"backfill {bf.feature_set_name}"):
        own = spark is None
        if spark is None:
            spark = build_spark_session(bf)
        try:
            out: dict[str, BackfillCounts] = {}
            for e in entities:
                job = backfill_preferences if e == "users" else backfill_authors
                counts = job(spark, cfg, bf, start, end, progress=progress)
                counts.check()
                out[counts.entity] = counts
            return out
        finally:
            if own:
                spark.stop()


def parse_date(value: str) -> date:
    """``YYYY-MM-DD`` -> date (a clear error for anything else)."""
    try:
        return date.fromisoformat(value)
    except ValueError as e:
        raise ValueError(f"expected a date YYYY-MM-DD, got {value!r}") from e


__all__ = [
    "ENTITIES",
    "BackfillConfig",
    "BackfillCounts",
    "PartitionCounts",
    "backfill_authors",
    "backfill_preferences",
    "build_spark_session",
    "feature_set_dir",
    "parse_date",
    "partition_dates",
    "preference_requests",
    "read_manifest",
    "read_partitions",
    "recover_partitions",
    "run_backfill",
    "snapshot_instant",
    "user_histories",
]
