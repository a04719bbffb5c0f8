"""Read a run's ``data.tables`` through Spark into contract files (``data.source: spark``).

Each of ``users``, ``authors`` and ``interactions`` is a catalog table (``db.events``) or a path
Spark reads (``s3a://bucket/events/``, ``/data/users.csv``); it is written unchanged, as
``<out>/<contract>.parquet``, and then the same ingest + validation as every other source runs
on it (column mapping, declared timestamp units, quarantine). The CLI wires it in
(``mspa_features.cli.data.ensure_run_data``); the library never imports pyspark.

    python spark_jobs/sources.py --config my_run.yaml     # what `mspa data load` runs for spark

Tables are collected to the driver (as Arrow) for the pandas validation, so they must fit its
memory; validation at Spark scale is a separate path.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from mspa_features.data.sources import SparkRead, SparkTables

_SUFFIX_FORMATS = {
    ".parquet": "parquet",
    ".csv": "csv",
    ".tsv": "csv",
    ".orc": "orc",
    ".json": "json",
    ".jsonl": "json",
}


def build_session(read: SparkRead) -> SparkSession:
    """A session for reading (UTC, microsecond timestamps, this environment's Python)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.master(read.master)
        .appName("mspa-read-sources")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .config("spark.ui.enabled", "false")
    )
    for key, value in read.conf.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def read_table(spark: SparkSession, ref: str, fmt: str | None = None) -> DataFrame:
    """A catalog table, or a path read with ``fmt`` (else its suffix's format, else parquet).

    CSV/TSV are read with a header and every column as text, as the pandas reader does:
    validation, not the reader, decides what a value means.
    """
    from mspa_features.data.sources import is_table_path

    if not is_table_path(ref):
        return spark.table(ref)
    suffix = Path(ref.rstrip("/")).suffix.lower()
    fmt = fmt or _SUFFIX_FORMATS.get(suffix, "parquet")
    reader = spark.read.format(fmt)
    if fmt == "csv":
        # RFC 4180 quoting (a quote inside a quoted cell is doubled), as pandas writes it
        reader = (
            reader.option("header", "true")
            .option("inferSchema", "false")
            .option("escape", '"')
            .option("multiLine", "true")
        )
        if suffix == ".tsv":
            reader = reader.option("sep", "\t")
    return reader.load(ref)


def export_tables(tables: SparkTables, read: SparkRead, out_dir: Path) -> None:
    """Write each contract's table as ``out_dir/<contract>.parquet`` (the
    :data:`mspa_features.data.sources.SparkReader` the CLI passes to ingest).

    Raises:
        SchemaError: a table or path cannot be read (naming it and the contract).
    """
    from mspa_features.errors import SchemaError
    from mspa_features.io import write_parquet_atomic

    spark = build_session(read)
    try:
        for contract in ("users", "authors", "interactions"):
            ref = getattr(tables, contract)
            try:
                table = read_table(spark, ref, read.format).toArrow()
            except Exception as e:  # AnalysisException and friends: name what failed
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise SchemaError(ref, f"Spark cannot read data.tables.{contract}: {first}") from e
            write_parquet_atomic(table, Path(out_dir) / f"{contract}.parquet")
    finally:
        spark.stop()


def main(argv: list[str] | None = None) -> int:
    from mspa_features.config import Workspace, load_config
    from mspa_features.data.ingest import ingest_source

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="run config YAML with data.source: spark")
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    results = ingest_source(cfg, Workspace(cfg.workspace), read_spark=export_tables)
    for r in results:
        print(
            f"{r.contract}: input {r.n_input} = accepted {r.n_accepted} + quarantined "
            f"{r.n_quarantined}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
