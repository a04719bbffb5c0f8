"""``mspa ablate --config FILE`` (AIS ablation) and ``mspa runs compare RUN_A RUN_B``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mspa_features.cli.common import console, progress_bar

runs_app = typer.Typer(help="Compare ablation runs tracked in MLflow.", no_args_is_help=True)


def install(app: typer.Typer) -> None:
    """Add ``ablate`` and the ``runs`` group to the top-level app."""
    app.command("ablate")(ablate)
    app.add_typer(runs_app, name="runs")


def _run_config(ablation_cfg, run_config: Path | None):
    from mspa_features.config import load_config
    from mspa_features.errors import ConfigError

    path = run_config or ablation_cfg.run_config
    if path is None:
        raise ConfigError("<ablation config>", ["run_config: required (or pass --run-config)"])
    return load_config(path)


def ablate(
    config: Annotated[Path, typer.Option("--config", "-c", help="ablation config YAML")],
    run_config: Annotated[
        Path | None, typer.Option(help="run config YAML (overrides the ablation's run_config)")
    ] = None,
    variant: Annotated[
        list[str] | None, typer.Option("--variant", "-v", help="run only these (repeatable)")
    ] = None,
    seeds: Annotated[
        str | None, typer.Option(help="comma-separated seeds, overriding the config")
    ] = None,
    tracking_uri: Annotated[
        str | None, typer.Option(help="MLflow tracking URI (default: the workspace's SQLite)")
    ] = None,
) -> None:
    """Train the ranker per variant, report AUC/UAUC/GAUC/logloss/WPAUC and delta AUC with CIs."""
    from ranker_hooks.ablation import load_ablation_config, run_ablation
    from ranker_hooks.report import ais_table

    cfg = load_ablation_config(config)
    updates: dict = {}
    if variant:
        updates["variants"] = list(variant)
    if seeds:
        try:
            updates["seeds"] = [int(s) for s in seeds.split(",") if s.strip()]
        except ValueError as e:
            raise typer.BadParameter(
                f"{seeds!r} is not a comma-separated list of integers", param_hint="--seeds"
            ) from e
    if tracking_uri:
        updates["mlflow"] = cfg.mlflow.model_copy(update={"tracking_uri": tracking_uri})
    if updates:
        cfg = cfg.model_validate(
            {
                **cfg.model_dump(),
                **{
                    k: (v.model_dump() if hasattr(v, "model_dump") else v)
                    for k, v in updates.items()
                },
            }
        )
    run_cfg = _run_config(cfg, run_config)
    with progress_bar() as step:
        result = run_ablation(run_cfg, cfg, progress=step)
    console.print(ais_table(result))
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}")
    console.print(f"results: {result.results_path}")
    console.print(f"MLflow parent run: {result.parent_run_id} ({result.tracking_uri})")


@runs_app.command("compare")
def compare(
    run_a: Annotated[str, typer.Argument(help="parent run id or name of ablation A")],
    run_b: Annotated[str, typer.Argument(help="parent run id or name of ablation B")],
    tracking_uri: Annotated[
        str | None, typer.Option(help="MLflow tracking URI (default: from --run-config)")
    ] = None,
    run_config: Annotated[
        Path | None, typer.Option(help="run config YAML whose workspace holds mlflow.db")
    ] = None,
) -> None:
    """Print two ablations side by side from MLflow."""
    from mspa_features.config import load_config
    from ranker_hooks.ablation import default_tracking_uri
    from ranker_hooks.report import compare_frames, compare_table
    from ranker_hooks.tracking import load_ablation

    if tracking_uri is None:
        if run_config is None:
            raise typer.BadParameter(
                "give --tracking-uri or --run-config", param_hint="--tracking-uri"
            )
        tracking_uri = default_tracking_uri(load_config(run_config))
    name_a, a = load_ablation(tracking_uri, run_a)
    name_b, b = load_ablation(tracking_uri, run_b)
    console.print(compare_table(name_a, name_b, compare_frames(a, b)))
