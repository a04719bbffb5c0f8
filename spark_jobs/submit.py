"""The one ``spark-submit`` entry of the backfill jobs: ``preferences`` or ``authors``.

    spark-submit spark_jobs/submit.py preferences --config configs/movielens.yaml \\
        --start 1997-09-20 --end 1997-10-20 [--cadence weekly]
    spark-submit spark_jobs/submit.py authors --config configs/movielens.yaml \\
        --start 1997-09-20 --end 1997-10-20

or, without spark-submit, ``python -m spark_jobs preferences ...``. ``preferences`` writes
point-in-time user preference partitions (``preferences/ds=...``); ``authors`` writes one author
profile row per content snapshot whose UTC date is in [start, end], plus the content valid at
``start`` (``author_profiles/ds=...``). Semantics, layout and determinism:
:mod:`mspa_features.snapshots.backfill`. Prints the counts as JSON (``{entity: counts}``); exits
2 on a usage error. Run it with the project's environment active (spark-submit starts ``python3``
from PATH, or ``PYSPARK_PYTHON``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

#: subcommand -> the entity of :data:`mspa_features.snapshots.backfill.ENTITIES` it backfills.
JOBS = {"preferences": "users", "authors": "authors"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line: ``JOB --config --start --end`` and optional settings."""
    p = argparse.ArgumentParser(
        prog="spark_jobs", description=__doc__.splitlines()[0] if __doc__ else None
    )
    p.add_argument("job", choices=sorted(JOBS), help="preferences or authors")
    p.add_argument("--config", required=True, help="run config YAML, e.g. configs/movielens.yaml")
    p.add_argument("--start", required=True, help="first partition date YYYY-MM-DD (UTC)")
    p.add_argument("--end", required=True, help="last partition date YYYY-MM-DD (inclusive)")
    p.add_argument(
        "--cadence",
        choices=("daily", "weekly"),
        default="daily",
        help="preferences: a snapshot per day or per Monday (authors: always daily)",
    )
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
    """Run one job; print ``{entity: counts}`` as JSON; return the exit code."""
    args = parse_args(argv)
    from mspa_features.config import load_config
    from mspa_features.snapshots.backfill import BackfillConfig, parse_date
    from spark_jobs.backfill import run_backfill
    from spark_jobs.session import build_spark_session

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
    spark = build_spark_session(bf, app_name=f"mspa-backfill-{args.job}", master=master)
    try:
        counts = run_backfill(
            cfg,
            bf,
            parse_date(args.start),
            parse_date(args.end),
            entities=[JOBS[args.job]],
            spark=spark,
        )
    finally:
        spark.stop()
    print(json.dumps({name: c.as_dict() for name, c in counts.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
