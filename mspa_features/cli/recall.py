"""``mspa recall CONFIG``: recall replay, Hit Rate@K of every recall source (MSPA "Offline
Performance"; the orchestration is :mod:`ranker_hooks.recall`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from mspa_features.cli.common import JsonOpt, MlflowUriOpt, NoMlflowOpt, console, fail
from mspa_features.cli.register import ConfigArg, Online, RepoOpt, RunOnlineOpt


def install(app: typer.Typer) -> None:
    """Add ``recall`` to the top-level app."""
    app.command("recall")(recall)


def recall(
    config: ConfigArg,
    ablation: Annotated[
        Path | None,
        typer.Option(
            "--ablation",
            help="ablation config YAML whose split and ranker are used (default: the run "
            "config's ablation.config)",
        ),
    ] = None,
    k: Annotated[
        list[int] | None,
        typer.Option("--k", "-k", min=1, help="cut-off (repeatable; default 10 50 100 1000)"),
    ] = None,
    feature_set: Annotated[
        list[str] | None,
        typer.Option(
            "--feature-set", "-s", help="preference source (repeatable; default all registered)"
        ),
    ] = None,
    horizon: Annotated[
        list[int] | None,
        typer.Option(
            "--horizon",
            "-n",
            min=1,
            help="LIS future-ID horizon in days "
            "(repeatable; default the run config's ablation.horizons)",
        ),
    ] = None,
    no_lis: Annotated[bool, typer.Option("--no-lis", help="no leaked future-ID source")] = False,
    keep_seen: Annotated[
        bool,
        typer.Option(
            "--keep-seen",
            help="keep authors the user already engaged with as candidates (default: excluded)",
        ),
    ] = False,
    sample: Annotated[
        bool,
        typer.Option(
            "--sample",
            help="replay the run config's features.sample only: its users' "
            "impressions of its authors, its authors as candidates",
        ),
    ] = False,
    n_boot: Annotated[int, typer.Option("--n-boot", min=1, help="bootstrap resamples")] = 1000,
    online: RunOnlineOpt = None,
    repo: RepoOpt = Path("feature_repo"),
    mlflow_uri: MlflowUriOpt = None,
    no_mlflow: NoMlflowOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Replay the positive test impressions of the ablation's split against the whole author
    catalogue valid at each instant, and report Hit Rate@K with 95% CIs over users.

    Sources: each registered feature set's preference -> author embeddings (and its aligned-ID
    set if registered), the IDs-only ranker M_T's author-ID embeddings (the baseline),
    popularity, and M_T+n's future-ID embeddings (leaked upper bound). JSON + Hit-Rate-vs-K
    plot under results/recall/<run>/, logged to MLflow (experiment mspa-recall).
    """
    from mspa_features.config import load_config
    from mspa_features.evaluation.recall import DEFAULT_KS
    from mspa_features.serving.materialize import open_store
    from ranker_hooks.ablation import load_ablation_config, make_ranker
    from ranker_hooks.recall import recall_replay

    cfg = load_config(config)
    path = ablation or cfg.ablation.config
    if path is None:
        fail(f"{config} names no ablation.config: give --ablation FILE (its split is replayed)")
    abl = load_ablation_config(path)
    horizons = [] if no_lis else (horizon or list(cfg.ablation.horizons))
    kind = None if online is None else Online(online).value  # None: the run config's store
    # M_T learns the label column only (the replay's positives), whatever tasks the ablation's
    # multi-task ranker has: one head, the IDs-only baseline of the paper.
    m_t_cfg = abl.model_copy(update={"tasks": []}) if getattr(abl, "tasks", None) else abl
    users, authors = abl.users, abl.authors
    if sample:
        from mspa_features.cli.main_job import draw_sample
        from mspa_features.config import Workspace
        from mspa_features.data.ingest import load_accepted

        inter = load_accepted(Workspace(cfg.workspace).data(cfg.name), "interactions")
        drawn = draw_sample(cfg, inter)
        if drawn is None:
            fail(f"{config} has no features.sample to replay (--sample)")
        users, authors = drawn["users"], drawn["authors"]
    report = recall_replay(
        cfg,
        abl.split,
        make_ranker=lambda: make_ranker(m_t_cfg, abl.seeds[0]),
        store=open_store(cfg, repo_path=repo, online=kind),  # type: ignore[arg-type]
        feature_sets=feature_set or None,
        horizons=horizons,
        ks=k or DEFAULT_KS,
        exclude_seen=not keep_seen,
        users=users,
        authors=authors,
        n_boot=n_boot,
        seed=abl.bootstrap.seed,
        tracking_uri="" if no_mlflow else mlflow_uri,
    )
    doc = report.to_json()
    if as_json:
        typer.echo(json.dumps(doc, indent=2, default=str))
        return
    console.print(recall_lines(doc), highlight=False, markup=False, soft_wrap=True)


def recall_lines(doc: dict) -> str:
    """The report in a few lines and its table."""
    from ranker_hooks.recall import table_lines

    sp = doc["split"]
    head = (
        f"recall replay {doc['run']}: {doc['n_queries']} positive impressions of "
        f"{doc['n_users']} users in [{sp['split_at']}, {sp['eval_end']}), catalogue of "
        f"{doc['n_authors']} authors{' (sample)' if doc.get('sample') else ''}; seen authors "
        f"{'excluded' if doc['exclude_seen'] else 'kept'}; 95% CI over users"
    )
    lines = [
        head,
        *table_lines(doc),
        *(f"  note: {n}" for n in doc["notes"]),
        f"  report: {doc['json_path']}  plot: {doc['plot_path']}",
    ]
    if doc.get("mlflow_run_id"):
        lines.append(f"  mlflow run: {doc['mlflow_run_id']}")
    return "\n".join(lines)
