"""The Spark backfill drivers: point-in-time ``preferences`` and ``author_profiles`` partitions.

What the rows mean (point-in-time semantics, due users, quarantine, determinism) is the
library's :mod:`mspa_features.snapshots.backfill`; how they are published (staging, atomic swap,
manifest, recovery) is :mod:`mspa_features.snapshots.partitions`. This module runs the Spark
part: one driver per entity (:func:`backfill_preferences`, :func:`backfill_authors`) and
:func:`run_backfill`, which ``mspa backfill``, the main job and ``python -m spark_jobs`` call.

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
import time
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mspa_features.config import RunConfig, Workspace
from mspa_features.data.contracts import AUTHOR_PROFILES, PREFERENCES
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
        with spark_progress(spark, f"{entity}: due users", progress):
            requested = {r["ds"]: int(r["count"]) for r in req.groupBy("ds").count().collect()}
        rows = preference_rows(pos, req, snapshot_instant(dates[-1]), n_parts)
        out = rows.mapInArrow(
            functools.partial(preference_udf, spec_json), ddl(OUT_SCHEMAS[entity])
        )
        with spark_progress(spark, f"{entity}: compose + encode", progress):
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
    session, n_parts = job_session(spark, bf)
    with staging_area(root, entity) as (staging, run_id):
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
        counts = publish(
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
    session, n_parts = job_session(spark, bf)
    lo, hi = snapshot_instant(start), snapshot_instant(end + timedelta(days=1))
    with staging_area(root, entity) as (staging, run_id):
        every = session.read.parquet(str(_input_path(cfg, "authors"))).select(
            "author_id", "event_timestamp"
        )
        if bf.authors is not None:
            every = every.where(F.col("author_id").isin(list(bf.authors)))
        # in range, plus the content valid at the range start (carried over, as of it)
        snaps, carried = author_snapshots(every, lo, hi)
        snaps = snaps.persist()
        with spark_progress(spark, f"{entity}: snapshots in range", progress):
            requested = {
                r["ds"]: int(r["count"])
                for r in snaps.groupBy(F.date_format("valid_from", "yyyy-MM-dd").alias("ds"))
                .count()
                .collect()
            }
            n_carried = carried.count()
            n_after = every.where(F.col("event_timestamp") >= F.expr(sql_ts(hi))).count()
            n_authors = every.select("author_id").distinct().count()
        out = (
            snaps.select("author_id", "event_timestamp", "valid_from")
            .repartition(n_parts, "author_id")
            .sortWithinPartitions("author_id", "event_timestamp")
            .mapInArrow(
                functools.partial(author_udf, _spec(cfg, bf, entity, spark)),
                ddl(OUT_SCHEMAS[entity]),
            )
        )
        with spark_progress(spark, f"{entity}: compose + encode", progress):
            out.write.mode("overwrite").partitionBy("kind", "ds").parquet(str(staging))
        snaps.unpersist()
        counts = publish(
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
                job = backfill_preferences if e == "users" else backfill_authors
                counts = job(spark, cfg, bf, start, end, progress=progress)
                counts.check()
                out[counts.entity] = counts
            return out
        finally:
            if own:
                spark.stop()
