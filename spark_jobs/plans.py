"""The Spark plans of the backfill: which snapshots are due, and the rows each UDF receives.

Everything here builds DataFrames lazily (no action runs); the drivers in
:mod:`spark_jobs.backfill` persist, count and write them. The point-in-time rule itself is
applied inside the UDFs (:mod:`spark_jobs.udfs`), by the library's one implementation
(:mod:`mspa_features.snapshots.history`); the plans only bound what reaches it: positives
before the range's last instant, for the users due.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from mspa_features.snapshots.history import POSITIVE
from mspa_features.snapshots.partitions import snapshot_instant
from spark_jobs.session import sql_ts

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["author_snapshots", "preference_requests", "preference_rows"]


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
        .where(F.col("label") == POSITIVE)  # filtered before the shuffle: only positives count
        .select("user_id", "author_id", "event_timestamp")
    )
    unit, step = ("DAY", 1) if cadence == "daily" else ("WEEK", 7)
    first, last = snapshot_instant(dates[0]), snapshot_instant(dates[-1])
    bucket = F.expr(f"date_trunc('{unit}', event_timestamp) + INTERVAL {step} DAYS")
    req = (
        pos.select("user_id", bucket.alias("event_timestamp"))
        .where(F.col("event_timestamp").between(F.expr(sql_ts(first)), F.expr(sql_ts(last))))
        .distinct()
        .withColumn("ds", F.date_format("event_timestamp", "yyyy-MM-dd"))
    )
    return pos, req


def preference_rows(pos: DataFrame, req: DataFrame, last: datetime, n_parts: int) -> DataFrame:
    """What :func:`spark_jobs.udfs.preference_udf` receives: the due users' requests (``kind``
    0, ``author_id`` null) and their positives before ``last`` (``kind`` 1), one user's rows
    together and contiguous in one partition, sorted by ``(user_id, event_timestamp, kind)``.

    Args:
        pos, req: from :func:`preference_requests` (``req`` possibly narrowed to a sample).
        last: the range's last snapshot instant (no later positive can be in a history).
        n_parts: partitions of the shuffle (the compose stage's parallelism).
    """
    from pyspark.sql import functions as F

    due_users = req.select("user_id").distinct()
    history = pos.where(F.col("event_timestamp") < F.expr(sql_ts(last))).join(
        due_users, "user_id", "left_semi"
    )
    return (
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
        .repartition(n_parts, "user_id")
        .sortWithinPartitions("user_id", "event_timestamp", "kind")
    )


def author_snapshots(every: DataFrame, lo: datetime, hi: datetime) -> tuple[DataFrame, DataFrame]:
    """(snaps, carried): the author content snapshots a range ``[lo, hi)`` publishes.

    ``snaps`` has ``author_id``, ``event_timestamp`` (the snapshot's) and ``valid_from``: the
    snapshots taken in the range (valid from their own time) plus ``carried``, each author's
    newest snapshot before ``lo`` unless one starts exactly at ``lo`` (valid from ``lo``), so a
    range that begins after an author's content still serves that content from its first day.

    Args:
        every: the authors contract's ``author_id``, ``event_timestamp`` (after any sample).
        lo, hi: the range's first instant and the instant after its last day.
    """
    from pyspark.sql import functions as F

    ts_col, lo_sql = F.col("event_timestamp"), F.expr(sql_ts(lo))
    in_range = every.where((ts_col >= lo_sql) & (ts_col < F.expr(sql_ts(hi))))
    carried = (
        every.where(ts_col < lo_sql)
        .groupBy("author_id")
        .agg(F.max("event_timestamp").alias("event_timestamp"))
        .join(every.where(ts_col == lo_sql).select("author_id"), "author_id", "left_anti")
    )
    snaps = in_range.withColumn("valid_from", F.col("event_timestamp")).unionByName(
        carried.withColumn("valid_from", lo_sql)
    )
    return snaps, carried
