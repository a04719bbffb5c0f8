"""``mspa features nearest``: the authors nearest to a user's preference (U2A) or an author (A2A)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mspa_features.cli.common import console
from mspa_features.cli.register import ConfigArg, Online, OnlineOpt, RepoOpt


def install(features_app: typer.Typer) -> None:
    """Add ``nearest`` to the ``features`` group."""
    features_app.command("nearest")(nearest)


def nearest(
    config: ConfigArg,
    user: Annotated[
        str | None, typer.Option("--user", "-u", help="user_id: authors nearest its preference")
    ] = None,
    author: Annotated[
        str | None, typer.Option("--author", "-a", help="author_id: authors nearest this one")
    ] = None,
    feature_set: Annotated[
        str, typer.Option("--feature-set", "-s", help="feature set (template, llm, ...)")
    ] = "template",
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="authors to return")] = 10,
    online: OnlineOpt = Online.milvus,
    repo: RepoOpt = Path("feature_repo"),
    as_of: Annotated[
        datetime | None,
        typer.Option(
            "--as-of",
            help="request instant, UTC (default now): values older than their view's TTL then "
            "are not served (historical data such as MovieLens needs one)",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Nearest authors through Feast vector search (milvus-lite; register with --online milvus).

    U2A with --user (the user's latest preference embedding online), A2A with --author (the
    author's own embedding; the author itself is left out). Scores are cosines.
    """
    if (user is None) == (author is None):
        raise typer.BadParameter("give exactly one of --user or --author", param_hint="--user")
    from mspa_features.config import load_config
    from mspa_features.errors import FeatureRepoError
    from mspa_features.serving.materialize import feast_dir, open_store
    from mspa_features.serving.nearest import nearest as do_nearest

    cfg = load_config(config)
    kind = Online(online).value
    if kind != "milvus":
        raise typer.BadParameter(
            f"vector search needs a vector-enabled online store; {kind!r} is not one "
            "(use --online milvus)",
            param_hint="--online",
        )
    if not (feast_dir(cfg, kind) / "registry.db").is_file():
        raise FeatureRepoError(
            f"run {cfg.name!r} has no {kind} online store yet: "
            f"`mspa register {config} --online {kind}` first"
        )
    store = open_store(cfg, repo_path=repo, online=kind)  # type: ignore[arg-type]
    when = None if as_of is None else (as_of.replace(tzinfo=UTC) if as_of.tzinfo is None else as_of)
    q, hits = do_nearest(store, feature_set, user=user, author=author, top_k=top_k, as_of=when)
    if as_json:
        doc = {
            "kind": q.kind,
            "query": q.entity_id,
            "feature_set": feature_set,
            "query_text": q.text,
            "hits": [
                {
                    "rank": int(r.rank),
                    "author_id": r.author_id,
                    "score": float(r.score),
                    "author_text": r.author_text,
                }
                for r in hits.itertuples(index=False)
            ],
        }
        typer.echo(json.dumps(doc, indent=2))
        return
    what = f"user {q.entity_id!r} (U2A)" if q.kind == "u2a" else f"author {q.entity_id!r} (A2A)"
    t = Table(title=f"nearest authors to {what}, feature set {feature_set}", title_justify="left")
    t.add_column("#", justify="right")
    t.add_column("author_id")
    t.add_column("cosine", justify="right")
    t.add_column("author_text", overflow="ellipsis", no_wrap=True, max_width=48)
    for r in hits.itertuples(index=False):
        t.add_row(str(r.rank), r.author_id, f"{r.score:.4f}", r.author_text or "")
    if q.text:
        console.print(f"query text: {q.text[:200]}", highlight=False, markup=False)
    console.print(t)
