"""``mspa backfill``: point-in-time preference and author-profile partitions, with Spark.

The CLI wires the packages: the rules come from :mod:`mspa_features.snapshots`, the Spark job
from :mod:`spark_jobs.backfill` (the same drivers ``spark-submit spark_jobs/submit.py`` runs).
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from mspa_features.cli.common import console


class Cadence(StrEnum):
    daily = "daily"
    weekly = "weekly"


class Kind(StrEnum):
    template = "template"
    llm = "llm"


def backfill(
    config: Annotated[Path, typer.Argument(help="run config YAML (its data must be fetched)")],
    start: Annotated[str, typer.Option(help="first partition date, YYYY-MM-DD (UTC)")],
    end: Annotated[str, typer.Option(help="last partition date, YYYY-MM-DD (inclusive)")],
    entities: Annotated[
        str, typer.Option(help="comma-separated: users (preferences), authors (author_profiles)")
    ] = "users,authors",
    composer: Annotated[Kind, typer.Option("--composer", "-c", help="template or llm")] = (
        Kind.template
    ),
    cadence: Annotated[
        Cadence | None,
        typer.Option(
            help="daily: a snapshot per day; weekly: per Monday (default: the config's "
            "features.cadence)"
        ),
    ] = None,
    master: Annotated[str, typer.Option(help="Spark master")] = "local[*]",
    feature_set: Annotated[
        str | None, typer.Option(help="output folder under features/<dataset>/ (default: composer)")
    ] = None,
    conf: Annotated[
        list[str] | None, typer.Option(help="extra Spark setting KEY=VALUE (repeatable)")
    ] = None,
) -> None:
    """Backfill daily (or weekly) feature partitions for [START, END], rerunnable at will.

    Partition ds=D holds the snapshot as of D 00:00 UTC of every user with a new positive since
    the previous snapshot, built only from earlier interactions; partitions are swapped in
    atomically, so a rerun, also after a killed job, gives identical rows.
    """
    import time

    from pydantic import ValidationError

    from mspa_features.cli.common import progress_bar
    from mspa_features.cli.data import ensure_run_data
    from mspa_features.config import load_config
    from mspa_features.snapshots.backfill import (
        ENTITIES,
        BackfillConfig,
        feature_set_dir,
        parse_date,
        partition_dates,
    )
    from spark_jobs.backfill import run_backfill
    from spark_jobs.session import build_spark_session

    cfg = load_config(config)
    ensure_run_data(cfg)  # ingests the config's data source unless already there
    # One source of truth: the run config's cadence unless the command line overrides it.
    cadence = Cadence(cadence.value if cadence is not None else cfg.features.cadence)
    try:
        first, last = parse_date(start), parse_date(end)
        partition_dates(first, last, cadence.value)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    wanted = [e.strip() for e in entities.split(",") if e.strip()]
    bad = [e for e in wanted if e not in ENTITIES]
    if bad or not wanted:
        raise typer.BadParameter(f"--entities: unknown {bad}; valid: {', '.join(ENTITIES)}")
    spark_conf = {}
    for item in conf or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"--conf expects KEY=VALUE, got {item!r}")
        spark_conf[key.strip()] = value
    try:
        bf = BackfillConfig(
            cadence=cadence.value,
            composer=composer.value,
            feature_set=feature_set,
            master=master,
            spark_conf=spark_conf,
        )
    except ValidationError as e:
        err = e.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else ""
        hint = {"feature_set": "--feature-set", "master": "--master"}.get(field, field or None)
        raise typer.BadParameter(err["msg"].removeprefix("Value error, "), param_hint=hint) from e

    t0 = time.perf_counter()
    with console.status(f"starting Spark ({master}) ..."):
        spark = build_spark_session(bf)
    started = time.perf_counter() - t0
    try:
        with progress_bar() as step:
            counts = run_backfill(cfg, bf, first, last, entities=wanted, spark=spark, progress=step)
    finally:
        spark.stop()
    console.print(_counts_table(counts, f"backfill {cfg.name} [{first} .. {last}] ({cadence})"))
    for name, c in counts.items():  # why rows one might expect are not there
        for note in c.notes:
            console.print(f"  note ({name}): {note}", highlight=False)
    console.print(
        f"Spark session start: {started:.1f}s; output -> {feature_set_dir(cfg, bf)}",
        highlight=False,
    )


def _counts_table(counts: dict, title: str):  # type: ignore[no-untyped-def]
    from rich.table import Table

    t = Table(title=f"{title}: requested = written + quarantined", title_justify="left")
    for col in ("entity", "partitions", "requested", "written", "quarantined", "top reasons", "s"):
        t.add_column(col, justify="left" if col in ("entity", "top reasons") else "right")
    for name, c in counts.items():
        top = sorted(c.reasons.items(), key=lambda kv: -kv[1])[:3]
        t.add_row(
            name,
            f"{len(c.partitions):,}",
            f"{c.requested:,}",
            f"{c.written:,}",
            f"{c.quarantined:,}",
            ", ".join(f"{k} ({v})" for k, v in top) or "-",
            f"{c.seconds:.1f}",
        )
    return t
