"""``mspa register`` (apply + materialize) and ``mspa features online`` (one ranker read)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from mspa_features.cli.common import ConfigArg, RepoOpt, console

features_app = typer.Typer(help="Read registered features.", no_args_is_help=True)


class Online(StrEnum):
    """Online store kinds (``mspa_features.serving.materialize.ONLINE_KINDS``; a test keeps them equal)."""

    sqlite = "sqlite"
    redis = "redis"
    milvus = "milvus"


OnlineOpt = Annotated[Online, typer.Option("--online", help="online store kind")]
# register and `features online`: without --online, the run config's serving.online_store.
RunOnlineOpt = Annotated[
    Online | None,
    typer.Option(
        "--online",
        help="online store kind (default: the run config's serving.online_store, sqlite "
        "unless set)",
        show_default=False,
    ),
]
RedisOpt = Annotated[
    str | None,
    typer.Option(
        "--redis",
        help="Redis connection string host:port[,db=N] (implies --online redis; overrides the "
        "config's serving.redis)",
    ),
]


def install(app: typer.Typer) -> None:
    """Add ``register`` and the ``features`` group to the top-level app."""
    app.command("register")(register)
    app.add_typer(features_app, name="features")


def _online(online: Online | str | None, redis: str | None) -> str | None:
    """The ``--online`` kind (``--redis`` implies redis); None: the run config decides."""
    if online is None:
        return "redis" if redis else None
    online = Online(online).value
    if redis and online != "redis":
        raise typer.BadParameter("--redis needs --online redis", param_hint="--redis")
    return online


def _ts(x: datetime | None) -> str:
    return x.strftime("%Y-%m-%d %H:%M:%S") if x else "-"


def register(
    config: ConfigArg,
    feature_set: Annotated[
        list[str] | None,
        typer.Option(
            "--feature-set", "-s", help="feature set to register (repeatable; default all)"
        ),
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", help="materialize the whole window, not incrementally")
    ] = False,
    online: RunOnlineOpt = None,
    redis: RedisOpt = None,
    end: Annotated[
        datetime | None, typer.Option(help="materialize up to this UTC instant (default now)")
    ] = None,
    repo: RepoOpt = Path("feature_repo"),
    store_yaml: Annotated[
        Path | None,
        typer.Option(help="feature_store yaml (e.g. feature_repo/stores/spark.yaml)"),
    ] = None,
    drift_base: Annotated[
        str,
        typer.Option(
            "--drift-base",
            help="alignment hand-off: the base model's feature set the aligned one is compared to",
        ),
    ] = "llm",
    no_drift: Annotated[
        bool,
        typer.Option("--no-drift", help="alignment hand-off: skip the drift report"),
    ] = False,
) -> None:
    """Register backfilled feature sets with Feast and materialize them to the online store.

    With an aligned checkpoint's run config (``<checkpoint>/run_config.yaml``, the alignment
    hand-off) and its model_version set registered, the drift report from ``--drift-base`` to
    that set follows (as ``mspa drift``: JSON, plot, MLflow), unless ``--no-drift``.
    """
    from mspa_features.config import load_config
    from mspa_features.serving.materialize import apply_and_materialize, check_online_store

    kind = _online(online, redis)  # usage errors before any file is read
    cfg = load_config(config)
    # Redis down: one error line before anything is read or written.
    check_online_store(cfg, repo_path=repo, store_yaml=store_yaml, online=kind, redis_url=redis)  # type: ignore[arg-type]
    # No ingest here: register reads the backfilled partitions only (the backfill ingested).
    # No live spinner: Feast prints its own materialization progress to stdout.
    rep = apply_and_materialize(
        cfg,
        feature_set,
        repo_path=repo,
        store_yaml=store_yaml,
        incremental=not full,
        end=end,
        online=kind,  # type: ignore[arg-type]
        redis_url=redis,
    )
    console.print(
        f"project [bold]{rep.project}[/]  registry {escape(rep.registry)}\n"
        f"offline {rep.offline_store}  online {escape(rep.online_store)}\n"
        f"store folder (a Feast repo: feast plan/apply there) {escape(str(rep.store_dir))}",
        highlight=False,
    )
    views = Table(title="feature views", title_justify="left")
    for col in ("view", "kind", "features", "model_version", "leaked"):
        views.add_column(col)
    for v in rep.views:
        views.add_row(
            v.name,
            v.kind,
            ", ".join(v.features),
            v.tags.get("model_version", "-"),
            v.tags.get("leaked", "-"),
        )
    console.print(views)
    services = Table(title="feature services", title_justify="left")
    services.add_column("service")
    services.add_column("features")
    for s in rep.services:
        services.add_row(s.name, "\n".join(s.feature_refs) or "(none: entity ids only)")
    console.print(services)
    mat = Table(title="materialized", title_justify="left")
    for col in ("view", "mode", "from", "to", "rows", "entities", "latest snapshot"):
        mat.add_column(col, justify="right" if col in ("rows", "entities") else "left")
    for m in rep.materialized:
        mat.add_row(
            m.view,
            m.mode,
            _ts(m.start),
            _ts(m.end),
            f"{m.rows:,}",
            f"{m.entities:,}",
            _ts(m.latest_snapshot),
        )
    console.print(mat)
    console.print(f"done in {rep.seconds:.1f} s", highlight=False)
    if not no_drift:
        from mspa_features.cli.drift import handoff_drift

        handoff_drift(cfg, config, feature_set, base=drift_base, repo=repo, store_yaml=store_yaml)


def _show(value: Any) -> str:
    if isinstance(value, list | tuple):
        import numpy as np

        v = np.asarray(value, dtype=np.float64)
        head = ", ".join(f"{x:+.4f}" for x in v[:4])
        return f"{len(v)}-d [{head}, ...] |v|={np.linalg.norm(v):.4f}"
    if isinstance(value, float):
        return f"{value:.6f}"
    return "null" if value is None else str(value)


@features_app.command("online")
def online_cmd(
    config: ConfigArg,
    user: Annotated[str, typer.Option("--user", "-u", help="user_id")],
    author: Annotated[str, typer.Option("--author", "-a", help="author_id")],
    service: Annotated[
        str, typer.Option("--service", help="feature service, e.g. all__template")
    ] = "all__template",
    online: RunOnlineOpt = None,
    redis: RedisOpt = None,
    repo: RepoOpt = Path("feature_repo"),
    as_of: Annotated[
        datetime | None,
        typer.Option(
            "--as-of",
            help="request instant, UTC (default now): values older than the view's TTL are "
            "null, as in training (replaying old data: pass its date)",
        ),
    ] = None,
) -> None:
    """Print what a ranker receives online for one (user, author) pair."""
    from feast.errors import FeatureServiceNotFoundException

    from mspa_features.config import load_config
    from mspa_features.errors import FeatureRepoError
    from mspa_features.serving.materialize import open_store
    from mspa_features.serving.reads import online_features

    kind = _online(online, redis)  # usage errors before any file is read
    cfg = load_config(config)
    store = open_store(cfg, repo_path=repo, online=kind, redis_url=redis)  # type: ignore[arg-type]
    try:
        svc = store.get_feature_service(service)
    except FeatureServiceNotFoundException as e:
        known = sorted(x.name for x in store.list_feature_services())
        raise FeatureRepoError(
            f"feature service {service!r} is not registered; registered: {known or 'none'}"
        ) from e
    when = None if as_of is None else _utc(as_of)
    row = online_features(store, svc, [(user, author)], as_of=when).iloc[0]
    title = f"{service}: user {user!r}, author {author!r}" + (f", as of {when}" if when else "")
    t = Table(title=escape(title), title_justify="left")
    t.add_column("feature")
    t.add_column("value")
    for col, value in row.items():
        t.add_row(escape(str(col)), escape(_show(value)))
    console.print(t)
    if not svc.feature_view_projections:
        console.print("(baseline service: no MSPA feature; the ranker uses its own ids only)")
    console.print(f"service tags: {dict(svc.tags)}", highlight=False, markup=False)


def _utc(x: datetime) -> datetime:
    """A command-line instant: naive means UTC."""
    from datetime import UTC

    return x.replace(tzinfo=UTC) if x.tzinfo is None else x.astimezone(UTC)
