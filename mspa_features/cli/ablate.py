"""``mspa ablate CONFIG`` (AIS ablation), ``mspa runs compare RUN_A RUN_B`` and
``mspa runs log FOLDER`` (results written while MLflow was unreachable, logged later)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from mspa_features.cli.common import (
    AblationConfigArg,
    DeprecatedConfigOpt,
    RunConfigOpt,
    config_file,
    console,
    fail,
    override,
    parse_seeds,
    progress_bar,
)

runs_app = typer.Typer(
    help="Compare ablation runs tracked in MLflow; log results written while it was down.",
    no_args_is_help=True,
)


def install(app: typer.Typer) -> None:
    """Add ``ablate`` and the ``runs`` group to the top-level app."""
    app.command("ablate")(ablate)
    app.add_typer(runs_app, name="runs")


def _run_config(ablation_cfg, run_config: Path | None, config: Path):
    from mspa_features.config import load_config
    from mspa_features.errors import ConfigError

    path = run_config or ablation_cfg.run_config
    if path is None:
        raise ConfigError(config, ["run_config: required (or pass --run-config)"])
    return load_config(path)


def ablate(
    config: AblationConfigArg = None,
    config_option: DeprecatedConfigOpt = None,
    run_config: RunConfigOpt = None,
    variant: Annotated[
        list[str] | None, typer.Option("--variant", "-v", help="run only these (repeatable)")
    ] = None,
    seeds: Annotated[
        str | None, typer.Option(help="comma-separated seeds, overriding the config")
    ] = None,
    tracking_uri: Annotated[
        str | None, typer.Option(help="MLflow tracking URI (default: the workspace's SQLite)")
    ] = None,
    retrain: Annotated[
        bool,
        typer.Option(
            "--retrain",
            help="train again even when results of this same ablation are waiting to be logged",
        ),
    ] = False,
) -> None:
    """Train the ranker per variant, report AUC/UAUC/GAUC/logloss/WPAUC and delta AUC with CIs.

    Results are written before anything is logged to MLflow; when the tracking store was
    unreachable, rerunning the same command logs those results without training again.
    """
    from mspa_features.cli.data import ensure_run_data
    from mspa_features.config import Workspace
    from ranker_hooks.ablation.report import ais_table, delta_table, task_tables
    from ranker_hooks.ablation.run import load_ablation_config, run_ablation
    from ranker_hooks.ablation.tracking import pending_results, request_key

    config = config_file(config, config_option, "ablate")
    seed_list = None if seeds is None else parse_seeds(seeds)  # usage errors before any file
    cfg = load_ablation_config(config)
    updates: dict = {}
    if variant:
        updates["variants"] = list(variant)
    if seed_list is not None:
        updates["seeds"] = seed_list
    if tracking_uri:
        updates["mlflow"] = {**cfg.mlflow.model_dump(), "tracking_uri": tracking_uri}
    cfg = override(cfg, updates, {"variants": "--variant", "seeds": "--seeds"})
    run_cfg = _run_config(cfg, run_config, config)
    ensure_run_data(run_cfg)  # ingests the run config's data source unless already there
    uri = cfg.mlflow.tracking_uri or _default_uri(run_cfg)
    root = Workspace(run_cfg.workspace).results / "ablation"
    pending = [] if retrain else pending_results(root, request_key(cfg, run_cfg, extra_variants=[]))
    if pending:
        folder, _ = pending[0]
        console.print(
            f"[yellow]note:[/] {escape(str(folder))} holds this ablation's results, not yet in "
            "MLflow: logging them without training (--retrain trains again)",
            highlight=False,
        )
        _log_folder(folder, uri)
        return
    with progress_bar() as step:
        result = run_ablation(run_cfg, cfg, progress=step)
    console.print(ais_table(result))
    console.print(delta_table(result))  # every delta with its CI
    for table in task_tables(result):  # multi-task: one table per task
        console.print(table)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    console.print(f"results: {result.results_path}", highlight=False)
    if result.tracking_error:
        fail(result.tracking_error)
    console.print(f"MLflow parent run: {result.parent_run_id} ({result.tracking_uri})")


def _default_uri(run_cfg) -> str:  # type: ignore[no-untyped-def]
    from ranker_hooks.ablation.run import default_tracking_uri

    return default_tracking_uri(run_cfg)


def _log_folder(folder: Path, tracking_uri: str | None) -> None:
    """Log one results folder (no training) and print the ablation table and parent run."""
    from ranker_hooks.ablation.report import ais_table, delta_table, task_tables
    from ranker_hooks.ablation.tracking import load_result, log_results

    doc = log_results(folder, tracking_uri=tracking_uri)
    result = load_result(folder)
    console.print(ais_table(result))
    console.print(delta_table(result))
    for table in task_tables(result):
        console.print(table)
    console.print(
        f"logged {escape(str(folder))} -> MLflow parent run {doc['parent_run_id']} "
        f"({escape(str(doc['tracking_uri']))})",
        highlight=False,
    )


@runs_app.command("log")
def log(
    folders: Annotated[
        list[Path],
        typer.Argument(help="ablation results folders (results/ablation/<run>) to log"),
    ],
    tracking_uri: Annotated[
        str | None,
        typer.Option(help="MLflow tracking URI (default: the one recorded in results.json)"),
    ] = None,
) -> None:
    """Log ablation results already on disk to MLflow, without training (after a failed log)."""
    for folder in folders:
        _log_folder(folder, tracking_uri)


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
    from ranker_hooks.ablation.report import (
        compare_frames,
        compare_table,
        paired_compare,
        paired_compare_table,
    )
    from ranker_hooks.ablation.run import default_tracking_uri
    from ranker_hooks.ablation.tracking import load_ablation, load_predictions

    if tracking_uri is None:
        if run_config is None:
            raise typer.BadParameter(
                "give --tracking-uri or --run-config (whose workspace holds mlflow.db)",
                param_hint="--tracking-uri",
            )
        tracking_uri = default_tracking_uri(load_config(run_config))
    name_a, a = load_ablation(tracking_uri, run_a)
    name_b, b = load_ablation(tracking_uri, run_b)
    console.print(compare_table(name_a, name_b, compare_frames(a, b)))
    pred_a, pred_b = (load_predictions(tracking_uri, r) for r in (run_a, run_b))
    if pred_a is None or pred_b is None:
        console.print(
            "[yellow]note:[/] no paired CI for B - A: "
            f"{'A' if pred_a is None else 'B'} stored no predictions (logged before they were)"
        )
        return
    deltas, reason = paired_compare(pred_a, pred_b)
    if reason:
        console.print(f"[yellow]note:[/] {escape(reason)}")
    else:
        console.print(paired_compare_table(name_a, name_b, deltas))
