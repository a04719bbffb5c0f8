"""``mspa eval``: U2A (Acc@m, Recall/NDCG@K) and A2A alignment for template vs LLM composers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mspa_features.cli.common import console, progress_bar, u2a_table

app = typer.Typer(help="Evaluate composers on U2A and A2A.", no_args_is_help=True)

ConfigArg = Annotated[Path, typer.Argument(help="run config YAML (data and eval sets built)")]
ComposersOpt = Annotated[
    list[str] | None, typer.Option("--composer", "-c", help="template and/or llm (repeatable)")
]


@app.command("u2a")
def u2a(
    config: ConfigArg,
    composer: ComposersOpt = None,
    cohort: Annotated[
        int | None, typer.Option(help="test users evaluated (default: config; 0 = all)")
    ] = None,
    authors: Annotated[
        str | None,
        typer.Option(
            help="authors described and ranked: all, or cohort (the cohort's targets, "
            "candidates and A2A triple members); default: config"
        ),
    ] = None,
) -> None:
    """U2A: Acc@m over generations (mean ± std), Recall/NDCG@5/10, plus A2A."""
    from mspa_features.cli.data import ensure_run_data
    from mspa_features.compose.jobs import evaluate
    from mspa_features.config import Workspace, load_config

    cfg = load_config(config)
    ensure_run_data(cfg, eval_sets=True)  # data and U2A/A2A sets, unless already there
    if authors not in (None, "all", "cohort"):
        raise typer.BadParameter(f"--authors is all or cohort, got {authors!r}")
    n = -1 if cohort is None else (None if cohort == 0 else cohort)
    with progress_bar() as step:
        res = evaluate(cfg, composers=composer, cohort=n, authors_pool=authors, progress=step)
    console.print(u2a_table(res, cfg.u2a.num_candidates))
    console.print(
        f"results -> {Workspace(cfg.workspace).results / 'u2a' / f'{cfg.name}.json'}",
        highlight=False,
    )


@app.command("a2a")
def a2a(config: ConfigArg, composer: ComposersOpt = None) -> None:
    """A2A alignment rate of author description embeddings (no user composition)."""
    from mspa_features.cli.data import ensure_run_data
    from mspa_features.compose.jobs import evaluate
    from mspa_features.config import load_config

    cfg = load_config(config)
    ensure_run_data(cfg, eval_sets=True)
    with progress_bar() as step:
        res = evaluate(cfg, composers=composer, with_u2a=False, progress=step)
    for name, row in res["composers"].items():
        console.print(
            f"{name}: A2A alignment rate {row.get('a2a', float('nan')):.4f} "
            f"({row['n_authors']} authors)",
            highlight=False,
        )
