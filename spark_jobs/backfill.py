"""The Spark backfill drivers: point-in-time ``preferences`` and ``author_profiles`` partitions.

What the rows mean (point-in-time semantics, due users, quarantine, determinism) is the
library's :mod:`mspa_features.snapshots.backfill`; how they are published (staging, atomic swap,
manifest, recovery) is :mod:`mspa_features.snapshots.partitions`. This module runs the Spark
part: one driver, ``_backfill``, dispatching on the entity (whose Spark part is
``_compute_preferences`` or ``_compute_authors``); ``backfill_preferences`` and
``backfill_authors`` are that driver bound to one entity; :func:`run_backfill`, which
``mspa backfill``, the main job and ``python -m spark_jobs`` call, runs the chosen entities.

Spark work: positives are read from the interactions contract parquet; the (user, ``s``) pairs
due are computed in Spark SQL (:func:`spark_jobs.plans.preference_requests`: ``date_trunc`` of
each positive to its cadence bucket); the due users' positives before the last instant are
shuffled by user next to their requests, so one user's rows arrive together, and ``mapInArrow``
(:func:`spark_jobs.udfs.preference_udf`) builds all that user's snapshots with the library's
history rule, then composes and encodes them in batches. Timestamps are microseconds throughout
(``TIMESTAMP_MICROS`` in Spark, ``coerce_timestamps="us"`` in pyarrow) and Spark SQL runs in UTC.
"""

from __future__ import annotations

import functools
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mspa_features.config import RunConfig, Workspace
from mspa_features.data.contracts import AUTHOR_PROFILES, PREFERENCES, Contract
from mspa_features.errors import SchemaError, UnknownNameError
from mspa_features.snapshots.backfill import ENTITIES, BackfillConfig, feature_set_dir
from mspa_features.snapshots.partitions import (
    BackfillCounts,
    Progress,
    partition_dates,
    publish,
    snapshot_instant,
    staging_area,
)
from spark_jobs.plans import author_snapshots, preference_requests, preference_rows
from spark_jobs.session import (
    build_spark_session,
    job_session,
    spark_progress,
    sql_ts,
    torch_threads,
)
from spark_jobs.udfs import OUT_SCHEMAS, WorkerSpec, author_udf, ddl, preference_udf

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["backfill_authors", "backfill_preferences", "run_backfill"]


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
    return WorkerSpec(
        entity=entity,
        composer=bf.composer,
        composer_cfg=cfg.composer,
        cache_path=str(Workspace(cfg.workspace).composer_cache),
        authors_path=str(authors),
        authors_stamp=f"{st.st_size}:{st.st_mtime_ns}",
        batch_size=bf.batch_size,
        torch_threads=torch_threads(spark),
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


@dataclass(frozen=True)
class _Job:
    """One entity's backfill in progress: what its Spark part reads, and where it writes.

    Built by :func:`_backfill` (the one driver both entities share) inside the staging area.
    """

    spark: SparkSession  # the caller's session: progress listeners, worker threads
    session: SparkSession  # the job's child session (its SQL settings), for plans and reads
    n_parts: int
    cfg: RunConfig
    bf: BackfillConfig
    entity: str
    start: date
    end: date
    dates: list[date]
    staging: Path
    progress: Progress | None

    def input(self, name: str) -> Path:
        return _input_path(self.cfg, name)

    def spec(self) -> str:
        """The workers' :class:`~spark_jobs.udfs.WorkerSpec`, as JSON."""
        return _spec(self.cfg, self.bf, self.entity, self.spark)

    @property
    def progress_dir(self) -> Path:
        """Where the compose tasks report their rows (beside the staging folder, which the
        write replaces; :func:`~mspa_features.snapshots.partitions.prepare_output` clears
        ``_staging`` of a killed run, this included)."""
        return self.staging.with_name(f"{self.staging.name}.progress")

    def udf(self, body: Callable[..., Any]) -> Callable[..., Any]:
        """``body`` (a ``mapInArrow`` body of :mod:`spark_jobs.udfs`) bound to this job."""
        folder = str(self.progress_dir) if self.progress else None
        return functools.partial(body, self.spec(), progress_dir=folder)

    def write(self, out: Any, total: int) -> None:
        """Runs the compose + encode plan ``out`` over ``total`` inputs, writing its rows to the
        staging folder; the display counts inputs composed (the tasks' row tickers)."""
        rows = (self.progress_dir, total)
        try:
            with spark_progress(
                self.spark, f"{self.entity}: compose + encode", self.progress, rows=rows
            ):
                out.write.mode("overwrite").partitionBy("kind", "ds").parquet(str(self.staging))
        finally:
            shutil.rmtree(self.progress_dir, ignore_errors=True)


# What an entity's Spark part hands back: requested rows per ds, and the notes that explain
# the counts (called with the total requested, once the partitions are published).
_Computed = tuple[dict[str, int], Callable[[int], list[str]]]


def _compute_preferences(job: _Job) -> _Computed:
    """Spark part of the preference backfill: writes staging; returns requests per ds."""
    from pyspark.sql import functions as F

    notes = functools.partial(_preference_notes, job.bf.cadence, job.start, job.end, job.dates)
    if not job.dates:
        return {}, notes
    pos, req = preference_requests(
        job.session, job.input("interactions"), job.dates, job.bf.cadence
    )
    if job.bf.users is not None:
        req = req.where(F.col("user_id").isin(list(job.bf.users)))
    req = req.persist()
    try:
        with spark_progress(job.spark, f"{job.entity}: due users", job.progress):
            requested = {r["ds"]: int(r["count"]) for r in req.groupBy("ds").count().collect()}
        rows = preference_rows(pos, req, snapshot_instant(job.dates[-1]), job.n_parts)
        job.write(
            rows.mapInArrow(job.udf(preference_udf), ddl(OUT_SCHEMAS[job.entity])),
            sum(requested.values()),
        )
    finally:
        req.unpersist()
    return requested, notes


def _compute_authors(job: _Job) -> _Computed:
    """Spark part of the author backfill: writes staging; returns snapshots per ds."""
    from pyspark.sql import functions as F

    lo, hi = snapshot_instant(job.start), snapshot_instant(job.end + timedelta(days=1))
    every = job.session.read.parquet(str(job.input("authors"))).select(
        "author_id", "event_timestamp"
    )
    if job.bf.authors is not None:
        every = every.where(F.col("author_id").isin(list(job.bf.authors)))
    # in range, plus the content valid at the range start (carried over, as of it)
    snaps, carried = author_snapshots(every, lo, hi)
    snaps = snaps.persist()
    try:
        with spark_progress(job.spark, f"{job.entity}: snapshots in range", job.progress):
            requested = {
                r["ds"]: int(r["count"])
                for r in snaps.groupBy(F.date_format("valid_from", "yyyy-MM-dd").alias("ds"))
                .count()
                .collect()
            }
            n_carried = carried.count()
            n_after = every.where(F.col("event_timestamp") >= F.expr(sql_ts(hi))).count()
            n_authors = every.select("author_id").distinct().count()
        job.write(
            snaps.select("author_id", "event_timestamp", "valid_from")
            .repartition(job.n_parts, "author_id")
            .sortWithinPartitions("author_id", "event_timestamp")
            .mapInArrow(job.udf(author_udf), ddl(OUT_SCHEMAS[job.entity])),
            sum(requested.values()),
        )
    finally:
        snaps.unpersist()
    notes = functools.partial(
        _author_notes, job.start, job.end, carried=n_carried, after=n_after, total=n_authors
    )
    return requested, notes


@dataclass(frozen=True)
class _Entity:
    """How one contract is backfilled: its partition cadence, row order and Spark part."""

    contract: Contract
    sort_keys: tuple[str, ...]
    compute: Callable[[_Job], _Computed]
    # author snapshots are events: every day of the range is a partition, whatever the cadence
    daily: bool = False

    def cadence(self, bf: BackfillConfig) -> str:
        return "daily" if self.daily else bf.cadence


_ENTITY_JOBS: dict[str, _Entity] = {
    PREFERENCES.name: _Entity(PREFERENCES, ("user_id",), _compute_preferences),
    AUTHOR_PROFILES.name: _Entity(
        AUTHOR_PROFILES, ("author_id", "event_timestamp"), _compute_authors, daily=True
    ),
}


def _backfill(
    entity: str,
    spark: SparkSession,
    cfg: RunConfig,
    bf: BackfillConfig,
    start: date,
    end: date,
    *,
    progress: Progress | None = None,
) -> BackfillCounts:
    """The one driver: stage ``entity``'s partitions in ``[start, end]``, then publish them.

    Args:
        entity: the contract written (``preferences`` or ``author_profiles``).
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
    how = _ENTITY_JOBS[entity]
    cadence = how.cadence(bf)
    root = feature_set_dir(cfg, bf)
    dates = partition_dates(start, end, cadence)
    session, n_parts = job_session(spark, bf)
    with staging_area(root, entity) as (staging, run_id):
        job = _Job(
            spark=spark,
            session=session,
            n_parts=n_parts,
            cfg=cfg,
            bf=bf,
            entity=entity,
            start=start,
            end=end,
            dates=dates,
            staging=staging,
            progress=progress,
        )
        requested, notes = how.compute(job)
        counts = publish(
            contract=how.contract,
            root=root,
            dates=dates,
            requested=requested,
            staging=staging,
            sort_keys=list(how.sort_keys),
            run_id=run_id,
            meta={**_meta(cfg, bf), "cadence": cadence},
            progress=progress,
        )
    counts.notes.extend(notes(counts.requested))
    counts.seconds = time.perf_counter() - t0
    return counts


# The public drivers: ``_backfill`` bound to one entity, called as
# ``backfill_preferences(spark, cfg, bf, start, end, progress=None)``.
backfill_preferences = functools.partial(_backfill, PREFERENCES.name)
backfill_preferences.__doc__ = """Point-in-time user preference snapshots for every partition
date in ``[start, end]``: ``(spark, cfg, bf, start, end, *, progress=None)``; arguments and errors
as ``_backfill``."""

backfill_authors = functools.partial(_backfill, AUTHOR_PROFILES.name)
backfill_authors.__doc__ = """Author profiles for every author content snapshot whose UTC date
is in ``[start, end]``, plus the content valid at ``start`` (carried over, as of ``start``).

Every day of the range is a partition (cadence does not apply: snapshots are events). Called as
:data:`backfill_preferences`."""


def _preference_notes(
    cadence: str, start: date, end: date, dates: list[date], requested: int
) -> list[str]:
    """Why preference rows are (or are not) in ``[start, end]``, in words for the output."""
    if not dates:
        return [
            f"no {cadence} snapshot instant in [{start}, {end}]"
            + (" (weekly snapshots are on Mondays)" if cadence == "weekly" else "")
        ]
    if requested == 0:
        why = (
            f"no user has a new positive before any snapshot instant of [{start}, {end}] (each "
            f"window is the {cadence} period before it): nothing to recompute; snapshots "
            "written by earlier ranges stay valid within the TTL"
        )
        return [why]
    return []


def _author_notes(
    start: date, end: date, requested: int, *, carried: int, after: int, total: int
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
        raise UnknownNameError("entity", unknown[0], ENTITIES)
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
                counts = _backfill(ENTITIES[e], spark, cfg, bf, start, end, progress=progress)
                counts.check()
                out[counts.entity] = counts
            return out
        finally:
            if own:
                spark.stop()
