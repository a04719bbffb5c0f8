"""``mspa run CONFIG``: the main job on one config, ending with a results summary."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mspa_features.cli.common import console, counts_table, metric_table, u2a_table


def run(
    config: Annotated[Path, typer.Argument(help="run config YAML, e.g. configs/movielens.yaml")],
) -> None:
    """Run every stage for CONFIG and print the results table."""
    import time

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    from mspa_features.config import load_config
    from mspa_features.pipeline import run as run_pipeline

    cfg = load_config(config)
    t0 = time.perf_counter()
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as prog:
        current: dict[str, int] = {}

        def stage(name: str) -> None:
            for tid in current.values():
                prog.update(tid, completed=1, total=1)
            current[name] = prog.add_task(name, total=None)

        steps: dict[str, int] = {}

        def step(what: str, done: int, total: int) -> None:
            if what not in steps:
                steps[what] = prog.add_task(f"  {what}", total=total)
            prog.update(steps[what], completed=done, total=total)

        summary = run_pipeline(cfg, progress=stage, step_progress=step)
        for tid in current.values():
            prog.update(tid, completed=1, total=1)

    console.rule(f"[bold]mspa run: {summary.name}[/] ({summary.dataset})")
    console.print(counts_table("Data contracts: input = accepted + quarantined", summary.counts))
    r = summary.u2a_report
    console.print(
        f"interactions span {summary.data_span[0]} .. {summary.data_span[1]}; "
        f"{summary.n_positives:,} positives\n"
        f"U2A: {r['n_users_in']:,} users in, {r['n_dropped_few_positives']:,} dropped (< "
        f"{cfg.u2a.min_positives} positives), {r['n_dropped_few_negatives']:,} dropped (too few "
        f"negatives), {r['n_users_out']:,} questions (train {r['n_train']:,} / val "
        f"{r['n_val']:,} / test {r['n_test']:,}); A2A: {summary.n_a2a_triples:,} triples",
        highlight=False,
    )
    cols = [f"acc@{m}" for m in cfg.u2a.num_candidates] + [
        "recall@5",
        "ndcg@5",
        "recall@10",
        "ndcg@10",
    ]
    console.print(
        metric_table(
            f"U2A on {r['n_test']:,} test users (non-LLM reference scorers)",
            summary.u2a_metrics,
            cols,
        )
    )
    console.print(
        metric_table(
            "A2A alignment rate", {k: {"a2a": v} for k, v in summary.a2a_metrics.items()}, ["a2a"]
        )
    )
    if summary.composer_eval:
        console.print(u2a_table(summary.composer_eval, cfg.u2a.num_candidates))
    console.print(
        f"results -> {Path(cfg.workspace).resolve() / 'results' / summary.name / 'summary.json'}"
        f"   ({time.perf_counter() - t0:.1f} s)",
        highlight=False,
    )
