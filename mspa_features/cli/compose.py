"""``mspa compose``: preference texts + embeddings for users, descriptions for authors."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from mspa_features.cli.common import console, progress_bar

app = typer.Typer(help="Compose preference and author features.", no_args_is_help=True)


class Kind(StrEnum):
    llm = "llm"
    template = "template"


ConfigArg = Annotated[Path, typer.Argument(help="run config YAML (its data must be fetched)")]
KindOpt = Annotated[Kind, typer.Option("--composer", "-c", help="llm or template (no LLM)")]


def _summary(out, what: str, path: Path) -> None:
    from collections import Counter

    from mspa_features.cli.common import counts_table
    from mspa_features.cli.main_job import StageCounts

    row = StageCounts(
        what,
        out.n_in,
        out.table.num_rows,
        out.quarantine.num_rows,
        dict(Counter(out.quarantine.column("reason").to_pylist())),
    )
    console.print(counts_table(f"compose {what}: input = written + quarantined", [row]))
    status = {}
    for c in out.composed:
        status[c.status] = status.get(c.status, 0) + 1
    cached = sum(1 for c in out.composed if c.cached)
    console.print(
        f"parse status: {status}; cache hits: {cached}; written -> {path}", highlight=False
    )


@app.command("users")
def users(
    config: ConfigArg,
    composer: KindOpt = Kind.llm,
    as_of: Annotated[
        datetime | None,
        typer.Option(
            help="UTC instant the preferences are valid from "
            "(default: just after the last interaction)"
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="first N users (sorted by id); default all")
    ] = None,
) -> None:
    """Compose preference texts and embeddings for users as of one instant."""
    from datetime import UTC

    from mspa_features.cli.data import ensure_run_data
    from mspa_features.compose.jobs import compose_users
    from mspa_features.config import Workspace, load_config

    cfg = load_config(config)
    ensure_run_data(cfg)  # ingests the config's data source unless already there
    if as_of is not None and as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=UTC)  # CLI datetimes are read as UTC
    with progress_bar() as step:
        out = compose_users(cfg, composer.value, as_of=as_of, limit=limit, progress=step)
    _summary(out, "preferences", Workspace(cfg.workspace).features(cfg.name) / composer.value)


@app.command("authors")
def authors(
    config: ConfigArg,
    composer: KindOpt = Kind.llm,
    limit: Annotated[int | None, typer.Option(help="first N authors; default all")] = None,
) -> None:
    """Compose author descriptions and embeddings (same space as preferences)."""
    from mspa_features.cli.data import ensure_run_data
    from mspa_features.compose.jobs import compose_authors
    from mspa_features.config import Workspace, load_config

    cfg = load_config(config)
    ensure_run_data(cfg)
    with progress_bar() as step:
        out = compose_authors(cfg, composer.value, limit=limit, progress=step)
    _summary(out, "author_profiles", Workspace(cfg.workspace).features(cfg.name) / composer.value)
