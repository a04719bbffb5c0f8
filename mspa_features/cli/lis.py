"""``mspa lis CONFIG``: leak sets -> LIS ablation -> plain-language verdicts."""

from __future__ import annotations

from enum import StrEnum
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


class LeakKind(StrEnum):
    """Leak builders (``ranker_hooks.lis.variants.LIS_KINDS``; a test keeps them equal)."""

    future_id = "future_id"
    similar_items = "similar_items"
    next_positive = "next_positive"


def install(app: typer.Typer) -> None:
    """Add ``lis`` to the top-level app."""
    app.command("lis")(lis)


def lis(
    config: AblationConfigArg = None,
    config_option: DeprecatedConfigOpt = None,
    run_config: RunConfigOpt = None,
    horizon: Annotated[
        list[int] | None, typer.Option("--horizon", "-n", help="leak horizon in days (repeatable)")
    ] = None,
    kind: Annotated[
        list[LeakKind] | None, typer.Option("--kind", "-k", help="leak kind (repeatable)")
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
    retrain: Annotated[
        bool,
        typer.Option(
            "--retrain",
            help="train again even when results of this same run are waiting to be logged",
        ),
    ] = False,
) -> None:
    """Measure LIS = AUC(with leak) - AUC(baseline) per leak and horizon, with verdicts.

    Results and verdicts are written before anything is logged to MLflow; when the tracking
    store was unreachable, rerunning the same command logs them without training again.
    """
    from mspa_features.cli.data import ensure_run_data
    from mspa_features.config import Workspace, load_config
    from mspa_features.errors import ConfigError
    from ranker_hooks.ablation.run import default_tracking_uri, load_ablation_config
    from ranker_hooks.ablation.tracking import (
        log_results,
        pending_results,
        request_key,
        set_request,
    )
    from ranker_hooks.lis.ablation import run_lis, verdict_table
    from ranker_hooks.lis.variants import DEFAULT_HORIZONS, LIS_KINDS

    config = config_file(config, config_option, "lis")
    kinds = [LeakKind(k).value for k in kind] if kind else list(LIS_KINDS)
    if horizon and any(n < 1 for n in horizon):
        raise typer.BadParameter(f"{horizon}: horizons are days >= 1", param_hint="--horizon")
    seed_list = None if seeds is None else parse_seeds(seeds)  # usage errors before any file
    cfg = load_ablation_config(config)
    updates: dict = {}
    if not ais:
        updates["variants"] = ["baseline"]
    if seed_list is not None:
        updates["seeds"] = seed_list
    cfg = override(cfg, updates, {"seeds": "--seeds"})
    path = run_config or cfg.run_config
    if path is None:
        raise ConfigError(str(config), ["run_config: required (or pass --run-config)"])
    run_cfg = load_config(path)
    ensure_run_data(run_cfg)  # ingests the run config's data source unless already there
    horizons = list(horizon or DEFAULT_HORIZONS)
    key = request_key(
        cfg, run_cfg, command="lis", horizons=horizons, kinds=kinds, build=build, aligned=aligned
    )
    uri = cfg.mlflow.tracking_uri or default_tracking_uri(run_cfg)
    root = Workspace(run_cfg.workspace).results / "ablation"
    pending = [] if retrain else pending_results(root, key)
    if pending:
        folder, _ = pending[0]
        console.print(
            f"[yellow]note:[/] {escape(str(folder))} holds this run's results and verdicts, not "
            "yet in MLflow: logging them without training (--retrain trains again)",
            highlight=False,
        )
        doc = log_results(folder, tracking_uri=uri)
        console.print(f"verdicts: {folder / 'lis_verdicts.md'}", highlight=False)
        console.print(f"MLflow parent run: {doc['parent_run_id']} ({uri})", highlight=False)
        return
    with progress_bar() as step:
        out = run_lis(
            run_cfg,
            cfg,
            horizons=horizons,
            kinds=kinds,
            build=build,
            aligned=aligned,
            progress=step,
        )
    set_request(out.result.results_path.parent, key)
    console.print(verdict_table(out))
    for note in out.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    console.print(f"verdicts: {out.paths['markdown']}", highlight=False)
    if out.result.tracking_error:
        fail(out.result.tracking_error)
    console.print(f"MLflow parent run: {out.result.parent_run_id} ({out.result.tracking_uri})")
