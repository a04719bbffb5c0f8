"""spark-submit job: point-in-time user preference partitions (``preferences/ds=...``).

    spark-submit spark_jobs/backfill_preferences.py --config configs/movielens.yaml \\
        --start 1997-09-20 --end 1997-10-20

Semantics, layout and determinism: see :mod:`mspa_features.backfill`. Prints the counts as JSON.
Run it with the project's environment active (spark-submit starts ``python3`` from PATH, or
``PYSPARK_PYTHON``), or without spark-submit: ``python spark_jobs/backfill_preferences.py ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="run config YAML, e.g. configs/movielens.yaml")
    p.add_argument("--start", required=True, help="first partition date YYYY-MM-DD (UTC)")
    p.add_argument("--end", required=True, help="last partition date YYYY-MM-DD (inclusive)")
    p.add_argument("--cadence", choices=("daily", "weekly"), default="daily")
    p.add_argument("--composer", choices=("template", "llm"), default="template")
    p.add_argument("--feature-set", default=None, help="output folder (default: composer)")
    p.add_argument(
        "--master", default=None, help="Spark master (default: spark-submit's, else local[*])"
    )
    p.add_argument("--partitions", type=int, default=None, help="compose-stage partitions")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument(
        "--conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra Spark setting (repeatable)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from mspa_features.backfill import (
        BackfillConfig,
        backfill_preferences,
        build_spark_session,
        parse_date,
    )
    from mspa_features.config import load_config

    cfg = load_config(args.config)
    bf = BackfillConfig(
        cadence=args.cadence,
        composer=args.composer,
        feature_set=args.feature_set,
        partitions=args.partitions,
        batch_size=args.batch_size,
        spark_conf=dict(kv.split("=", 1) for kv in args.conf),
    )
    # Under spark-submit the master is spark-submit's unless --master says otherwise.
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ
    master = args.master if args.master else ("" if submitted else None)
    spark = build_spark_session(bf, app_name="mspa-backfill-preferences", master=master)
    try:
        counts = backfill_preferences(spark, cfg, bf, parse_date(args.start), parse_date(args.end))
        counts.check()
    finally:
        spark.stop()
    print(json.dumps({counts.entity: counts.as_dict()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
