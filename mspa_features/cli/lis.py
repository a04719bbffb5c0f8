"""``mspa lis --config FILE``: leak sets -> LIS ablation -> plain-language verdicts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mspa_features.cli.common import console, progress_bar


def install(app: typer.Typer) -> None:
    """Add ``lis`` to the top-level app."""
    app.command("lis")(lis)


def lis(
    config: Annotated[Path, typer.Option("--config", "-c", help="ablation config YAML")],
    run_config: Annotated[
        Path | None, typer.Option(help="run config YAML (overrides the ablation's run_config)")
    ] = None,
    horizon: Annotated[
        list[int] | None, typer.Option("--horizon", "-n", help="leak horizon in days (repeatable)")
    ] = None,
    kind: Annotated[
        list[str] | None,
        typer.Option("--kind", "-k", help="future_id | similar_items | next_positive (repeatable)"),
    ] = None,
    seeds: Annotated[str | None, typer.Option(help="comma-separated seeds")] = None,
    build: Annotated[
        bool, typer.Option("--build/--no-build", help="(re)build and register the leak sets")
    ] = True,
    ais: Annotated[
        bool, typer.Option("--ais/--no-ais", help="also run the config's AIS variants")
    ] = True,
    aligned: Annotated[
        bool,
        typer.Option(
            "--aligned/--no-aligned",
            help="also build (with --build) and run the aligned_id variant (content -> M_T ID)",
        ),
    ] = True,
) -> None:
    """Measure LIS = AUC(with leak) - AUC(baseline) per leak and horizon, with verdicts."""
    from mspa_features.config import load_config
    from mspa_features.errors import ConfigError
    from ranker_hooks.ablation import load_ablation_config
    from ranker_hooks.lis_ablation import run_lis, verdict_table
    from ranker_hooks.lis_variants import DEFAULT_HORIZONS, LIS_KINDS

    kinds = list(kind or LIS_KINDS)
    bad = [k for k in kinds if k not in LIS_KINDS]
    if bad:
        raise typer.BadParameter(f"{bad} not in {list(LIS_KINDS)}", param_hint="--kind")
    cfg = load_ablation_config(config)
    updates: dict = {}
    if not ais:
        updates["variants"] = ["baseline"]
    if seeds:
        try:
            updates["seeds"] = [int(s) for s in seeds.split(",") if s.strip()]
        except ValueError as e:
            raise typer.BadParameter(f"{seeds!r}: not integers", param_hint="--seeds") from e
    if updates:
        cfg = cfg.model_validate({**cfg.model_dump(), **updates})
    path = run_config or cfg.run_config
    if path is None:
        raise ConfigError(str(config), ["run_config: required (or pass --run-config)"])
    run_cfg = load_config(path)
    with progress_bar() as step:
        out = run_lis(
            run_cfg,
            cfg,
            horizons=horizon or DEFAULT_HORIZONS,
            kinds=kinds,
            build=build,
            aligned=aligned,
            progress=step,
        )
    console.print(verdict_table(out))
    for note in out.notes:
        console.print(f"[yellow]note:[/] {note}")
    console.print(f"verdicts: {out.paths['markdown']}")
    console.print(f"MLflow parent run: {out.result.parent_run_id} ({out.result.tracking_uri})")
