"""``mspa drift CONFIG SET_A SET_B``: how far features moved from one model version to another."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mspa_features.cli.common import ConfigArg, JsonOpt, MlflowUriOpt, NoMlflowOpt, RepoOpt, console

if TYPE_CHECKING:
    from mspa_features.config import RunConfig
    from mspa_features.evaluation.drift_report import DriftReport


def install(app: typer.Typer) -> None:
    """Add ``drift`` to the top-level app."""
    app.command("drift")(drift)


def drift(
    config: ConfigArg,
    set_a: Annotated[
        str, typer.Argument(help="version A: SET or SET@MODEL_VERSION", show_default=False)
    ],
    set_b: Annotated[
        str, typer.Argument(help="version B: SET or SET@MODEL_VERSION", show_default=False)
    ],
    as_of: Annotated[
        datetime | None,
        typer.Option("--as-of", help="instant both are read at, UTC (default: the data's end)"),
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="nearest authors")] = 10,
    repo: RepoOpt = Path("feature_repo"),
    mlflow_uri: MlflowUriOpt = None,
    no_mlflow: NoMlflowOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Drift between two feature sets (or two model versions of one) at one as-of instant.

    Per-entity cosine between the versions, the share of users whose top-k nearest authors
    change, U2A/A2A metric deltas where both were evaluated; JSON + histogram plot under
    results/drift/, logged to MLflow (experiment mspa-drift). Both sets must be registered.
    """
    from mspa_features.config import load_config
    from mspa_features.evaluation.drift_report import VersionSpec
    from mspa_features.evaluation.drift_report import drift as run_drift

    specs = []
    for hint, text in (("SET_A", set_a), ("SET_B", set_b)):
        try:
            specs.append(VersionSpec.parse(text))
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint=hint) from e
    cfg = load_config(config)
    when = None if as_of is None else (as_of.replace(tzinfo=UTC) if as_of.tzinfo is None else as_of)
    rep = run_drift(
        cfg,
        specs[0],
        specs[1],
        as_of=when,
        k=top_k,
        repo_path=repo,
        tracking_uri="" if no_mlflow else mlflow_uri,
    )
    if as_json:
        typer.echo(json.dumps(rep.to_json(), indent=2, default=str))
        return
    console.print(drift_lines(rep.to_json()), highlight=False, markup=False)


def aligned_version(config: Path) -> str | None:
    """The model_version of an aligned checkpoint whose hand-off config ``config`` is
    (``<checkpoint>/run_config.yaml`` beside ``mspa_align.json``, as ``mspa align`` writes it);
    None for any other run config."""
    from mspa_features.align.trainer import CHECKPOINT_META, COMPOSE_CONFIG

    meta = config.parent / CHECKPOINT_META
    if config.name != COMPOSE_CONFIG or not meta.is_file():
        return None
    try:
        version = json.loads(meta.read_text()).get("model_version")
    except (OSError, json.JSONDecodeError):
        return None
    return str(version) if version else None


def handoff_drift(
    cfg: RunConfig,
    config: Path,
    registered: list[str] | None,
    *,
    base: str = "llm",
    repo: Path = Path("feature_repo"),
    store_yaml: Path | None = None,
    tracking_uri: str | None = None,
) -> DriftReport | None:
    """The alignment hand-off's drift report: base set -> the aligned checkpoint's set.

    Runs when ``config`` is an aligned checkpoint's run config, its model_version set is among
    ``registered`` (None: all), and both sets are registered in the run's Feast store; prints
    the summary (or why it did not run) and returns the report (JSON, plot, MLflow run as
    ``mspa drift``), else None.
    """
    from mspa_features.evaluation.drift_report import drift as run_drift
    from mspa_features.serving.definitions import pref_view_name
    from mspa_features.serving.materialize import open_store

    version = aligned_version(config)
    if version is None or (registered is not None and version not in registered):
        return None
    store = open_store(cfg, repo_path=repo, store_yaml=store_yaml)
    views = {v.name for v in store.list_feature_views()}
    missing = [s for s in (base, version) if pref_view_name(s) not in views]
    if missing:
        console.print(
            f"drift {base} -> {version} skipped: {', '.join(missing)} not registered (register "
            f"it, or run `mspa drift CONFIG {base} {version}` later)",
            highlight=False,
            markup=False,
        )
        return None
    console.print(f"alignment hand-off: drift {base} -> {version}", highlight=False, markup=False)
    rep = run_drift(cfg, base, version, store=store, repo_path=repo, tracking_uri=tracking_uri)
    console.print(drift_lines(rep.to_json()), highlight=False, markup=False)
    return rep


def drift_lines(doc: dict) -> str:
    """The report in a few lines (also printed by the main job)."""
    lines = [f"drift {doc['set_a']} -> {doc['set_b']} at {doc['as_of']}"]
    for what in ("users", "authors"):
        s = doc[what]
        c = s["cosine"]
        if s["n_both"]:
            lines.append(
                f"  {what}: {s['n_both']} in both ({s['n_a']} / {s['n_b']}); cosine mean "
                f"{c['mean']:.4f}, median {c['median']:.4f}, p05 {c['p05']:.4f}, min {c['min']:.4f}"
            )
        else:
            lines.append(f"  {what}: none in both ({s['n_a']} / {s['n_b']})")
    t = doc["topk"]
    if t.get("changed_share") is not None:
        lines.append(
            f"  top-{t['k']} nearest authors (over {t['n_authors']} in both) changed for "
            f"{t['n_changed']}/{t['n_users']} users ({t['changed_share']:.1%}); mean overlap "
            f"{t['mean_overlap']:.3f}"
        )
    for name in ("acc@4", "acc@10", "recall@10", "ndcg@10", "a2a"):
        d = (doc.get("metrics") or {}).get(name)
        if d:
            ci = ""
            if d.get("ci_low") is not None:
                ci = f" [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}] paired over {d['n']}"
                ci += "" if d.get("trustworthy", True) else " (too few: not trustworthy)"
            lines.append(f"  {name}: {d['a']:.4f} -> {d['b']:.4f} ({d['delta']:+.4f}){ci}")
    lines.append(f"  report: {doc['json_path']}  plot: {doc['plot_path']}")
    if doc.get("mlflow_run_id"):
        lines.append(f"  mlflow run: {doc['mlflow_run_id']}")
    return "\n".join(lines)
