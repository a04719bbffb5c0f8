"""The SparkSession of a backfill job: its builder, the child session a job runs in, progress.

Every session gets :data:`SPARK_DEFAULTS` (UTC SQL time zone, ``TIMESTAMP_MICROS`` parquet
output, Arrow on, console progress off); a job forces the settings its semantics depend on
(:data:`SPARK_REQUIRED`) on a child session whatever ``spark_conf`` says. Start-up costs ~20 s on
a 2-core machine: one session per job, shared by its entities.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from mspa_features import logs
from mspa_features.snapshots.backfill import BackfillConfig
from mspa_features.snapshots.partitions import Progress

if TYPE_CHECKING:
    from pathlib import Path

    from pyspark.sql import SparkSession

_log = logging.getLogger(__name__)

__all__ = ["SPARK_DEFAULTS", "SPARK_REQUIRED", "build_spark_session", "job_session", "sql_ts"]

# Spark settings every backfill session gets (spark_conf overrides the non-semantic ones).
SPARK_DEFAULTS: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.ui.showConsoleProgress": "false",
}
# Settings the semantics depend on: forced on the job's session whatever spark_conf says.
SPARK_REQUIRED: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
}


def build_spark_session(
    bf: BackfillConfig, *, app_name: str = "mspa-backfill", master: str | None = None
) -> SparkSession:
    """One SparkSession for a backfill job (start-up costs ~20 s: reuse it).

    Sets ``PYSPARK_PYTHON`` to this interpreter and ``SPARK_LOCAL_IP=127.0.0.1`` unless already
    set, applies :data:`SPARK_DEFAULTS` then ``bf.spark_conf``. Under the ``mspa`` CLI the JVM
    starts with its stdout/stderr on the run's log file (its "Using incubator modules" line,
    anything log4j does not catch: :func:`mspa_features.logs.child_output_to_log`); its log
    level is ERROR once started.

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
    with logs.child_output_to_log():
        spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def job_session(spark: SparkSession, bf: BackfillConfig) -> tuple[SparkSession, int]:
    """A child session (own SQL conf, shared SparkContext) with the settings semantics need."""
    session = spark.newSession()
    for k, v in SPARK_REQUIRED.items():
        session.conf.set(k, v)
    sc = spark.sparkContext
    n = bf.partitions or max(1, sc.defaultParallelism)
    if not sc.getConf().contains("spark.sql.shuffle.partitions") and (
        "spark.sql.shuffle.partitions" not in bf.spark_conf
    ):
        session.conf.set("spark.sql.shuffle.partitions", str(n))
    return session, n


def torch_threads(spark: SparkSession) -> int | None:
    """Torch threads per Python worker (None: leave torch's default, on a cluster).

    Local masters: split the cores between concurrent tasks so workers don't oversubscribe."""
    master = spark.sparkContext.master
    if not master.startswith("local"):
        return None
    return max(1, (os.cpu_count() or 1) // max(1, spark.sparkContext.defaultParallelism))


def sql_ts(ts: datetime) -> str:
    """A Spark SQL timestamp literal of ``ts`` in UTC (the job sessions' time zone)."""
    return f"TIMESTAMP '{ts.astimezone(UTC):%Y-%m-%d %H:%M:%S}'"


@contextlib.contextmanager
def spark_progress(
    spark: SparkSession,
    label: str,
    progress: Progress | None,
    *,
    rows: tuple[Path, int] | None = None,
) -> Iterator[None]:
    """Report completed/total tasks of this block's Spark jobs to ``progress`` twice a second.

    ``rows=(folder, total)``: report inputs done of ``total`` instead, read from the tasks'
    :class:`~spark_jobs.udfs.RowTicker` files in ``folder`` (a long task then shows its rows
    moving, where a task count would sit at 0/1 until it ends)."""
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
            if rows is not None:
                if rows[1]:  # nothing requested: no count to show
                    progress(label, min(read_row_progress(rows[0]), rows[1]), rows[1])
                continue
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

    from spark_jobs.udfs import read_row_progress

    th = threading.Thread(target=poll, daemon=True)
    th.start()
    ok = False
    try:
        yield
        ok = True
    finally:
        stop.set()
        th.join()
        sc.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]
        if rows is None or not rows[1]:
            if ok:
                progress(label, 1, 1)
        else:
            # A failed step shows how far its tasks got, never "all composed".
            done = min(read_row_progress(rows[0]), rows[1])
            if ok and done < rows[1]:
                _log.info(
                    "%s: the tasks' progress files show %d of %d inputs (executors that do not "
                    "share the workspace cannot report rows)",
                    label,
                    done,
                    rows[1],
                )
            progress(label, rows[1] if ok else done, rows[1])
