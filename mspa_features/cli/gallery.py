"""``mspa gallery``: MSPA Figure 2 as a page: users' and authors' retrieved authors, with frames."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from mspa_features.cli.common import ConfigArg, RepoOpt, console


def install(app: typer.Typer) -> None:
    """Add ``gallery`` to the top-level app."""
    app.command("gallery")(gallery)


def gallery(
    config: ConfigArg,
    users: Annotated[int, typer.Option("--users", min=0, help="U2A cards (users)")] = 4,
    authors: Annotated[int, typer.Option("--authors", min=0, help="A2A cards (authors)")] = 4,
    feature_set: Annotated[
        str, typer.Option("--feature-set", "-s", help="feature set (template, llm, ...)")
    ] = "template",
    k: Annotated[int, typer.Option("--k", "-k", min=1, help="authors shown per card")] = 5,
    as_of: Annotated[
        datetime | None,
        typer.Option(
            "--as-of",
            help="the instant, UTC: query and author snapshots valid then; 'next' is the first "
            "positive at or after it (default: when 80% of the positives had happened)",
        ),
    ] = None,
    history: Annotated[
        int, typer.Option("--history", min=0, help="a user's last positive authors shown")
    ] = 6,
    pool: Annotated[
        int, typer.Option("--pool", min=1, help="candidates per query from the vector index")
    ] = 100,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="output folder (default <workspace>/results/gallery/<run>/<feature set>)"
        ),
    ] = None,
    repo: RepoOpt = Path("feature_repo"),
    tracking_uri: Annotated[
        str | None,
        typer.Option("--tracking-uri", help="MLflow URI (default sqlite:///<workspace>/mlflow.db)"),
    ] = None,
    experiment: Annotated[
        str, typer.Option("--experiment", help="MLflow experiment")
    ] = "mspa-gallery",
    no_mlflow: Annotated[
        bool, typer.Option("--no-mlflow", help="write the files only, log nothing")
    ] = False,
) -> None:
    """Write a retrieval gallery: an HTML page (self-contained) and PNG contact sheets.

    For a few users: their history (frames when the data has them), preference text and top-k
    authors by cosine, the author they engaged with next marked; for a few authors: their
    nearest authors. Point-in-time correct at --as-of; needs the feature set registered with
    `mspa register CONFIG --online milvus`. Logged to MLflow as artifacts.
    """
    from mspa_features.config import Workspace, load_config
    from mspa_features.errors import FeatureRepoError
    from mspa_features.evaluation.gallery import build_gallery, log_gallery, write_gallery
    from mspa_features.mlflow_store import workspace_tracking_uri
    from mspa_features.serving.materialize import feast_dir, open_store

    cfg = load_config(config)
    if not (feast_dir(cfg, "milvus") / "registry.db").is_file():
        raise FeatureRepoError(
            f"run {cfg.name!r} has no milvus online store yet: "
            f"`mspa register {config} --online milvus` first"
        )
    store = open_store(cfg, repo_path=repo, online="milvus")
    when = None if as_of is None else (as_of.replace(tzinfo=UTC) if as_of.tzinfo is None else as_of)
    g = build_gallery(
        cfg,
        store,
        feature_set,
        users=users,
        authors=authors,
        k=k,
        as_of=when,
        history=history,
        pool=pool,
    )
    ws = Workspace(cfg.workspace)
    folder = out or ws.results / "gallery" / cfg.name / feature_set
    paths = write_gallery(g, folder)
    n_u = sum(c.kind == "u2a" for c in g.cards)
    n_a = len(g.cards) - n_u
    retrieved = sum(any(h.next and h.rank for h in c.hits) for c in g.cards if c.kind == "u2a")
    console.print(
        f"gallery: {n_u} users, {n_a} authors, top {k} as of {g.as_of:%Y-%m-%d %H:%M:%S} UTC; "
        f"next-engaged author in the top {k} for {retrieved} of {n_u} users",
        highlight=False,
        markup=False,
    )
    for n in g.notes:
        console.print(f"note: {n}", highlight=False, markup=False)
    console.print(f"page: {paths['html']}", highlight=False, markup=False, soft_wrap=True)
    console.print(
        f"contact sheets: {paths['sheets']}", highlight=False, markup=False, soft_wrap=True
    )
    if not no_mlflow:
        uri = tracking_uri or workspace_tracking_uri(ws.root)
        run_id = log_gallery(folder, g, tracking_uri=uri, experiment=experiment)
        console.print(
            f"MLflow run {run_id} ({uri}), artifacts under gallery/",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
