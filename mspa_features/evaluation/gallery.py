"""Retrieval gallery: MSPA Figure 2 ("User/Author-Author Visualization") for a few users and authors.

For each of a few users (U2A) the gallery shows the user's history (the authors of their last
positives before the as-of instant, with their frames when the data has them, else their
title/description), the preference text, and the top-k authors retrieved for it with their
cosine and served description; the author the user engaged with next (their first positive at
or after the as-of instant) is marked, in the list when retrieved, else beside it with its
cosine. The same for a few authors (A2A): the author, its description, its top-k neighbours,
and marked those its audience (users with a positive on it before the instant) engaged with next.

Point-in-time correct, through Feast: the query embeddings (``pref_emb``, ``author_emb``) come
from the historical read at the as-of instant (:func:`~mspa_features.serving.reads.
historical_features`: only a snapshot valid then), never from the online store's latest value.
Candidates come from the online vector index (:func:`~mspa_features.serving.reads.
nearest_authors`, milvus-lite, as ``mspa features nearest`` uses), ``pool`` of them per query;
each is then read at the as-of instant too and rescored by cosine with that value, and authors
without a profile valid then are left out. The index holds each author's newest profile, so an
author whose profile changed after the instant ranks in the pool by its newer embedding (with
one content snapshot per author, as in MovieLens and the synthetic data, the two coincide).

Outputs (:func:`write_gallery`): ``index.html`` (one self-contained page: inline CSS, frames as
``data:`` URIs, every text escaped by Jinja2's autoescape, no script, nothing fetched),
``sheets/*.png`` (one matplotlib contact sheet per card) and ``gallery.json`` (the same content
without the images). :func:`log_gallery` logs the folder as MLflow artifacts.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from mspa_features.errors import DataError, InvalidTypeError, InvalidValueError
from mspa_features.serving.definitions import author_view_name, pref_view_name

if TYPE_CHECKING:
    from feast import FeatureStore

    from mspa_features.config import RunConfig

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


# --------------------------------------------------------------------------- content


@dataclass(frozen=True, kw_only=True)
class Image:
    """One frame: its MIME type and bytes."""

    mime: str
    data: bytes

    @property
    def uri(self) -> str:
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"


@dataclass(frozen=True, kw_only=True)
class Tile:
    """An author as the gallery shows it: its content valid at the as-of instant."""

    author_id: str
    title: str  # profile_text (MovieLens: the title, year and genres)
    frames: tuple[Image, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Hit:
    """A retrieved author. ``rank`` is None for a marked author outside the top k."""

    rank: int | None
    tile: Tile
    score: float  # cosine of the point-in-time embeddings, in [-1, 1]
    text: str | None  # the served description (author_text)
    next: int = 0  # U2A: 1 when the user engaged with it next; A2A: users of the audience who did


@dataclass(frozen=True, kw_only=True)
class Card:
    """One query of the gallery and its results."""

    kind: Literal["u2a", "a2a"]
    query_id: str
    query_text: str | None  # preference text (U2A) or the author's description (A2A)
    history: tuple[Tile, ...]  # U2A: last positives before the instant, oldest first; A2A: itself
    history_count: int | None  # U2A: positives the snapshot was built from
    hits: tuple[Hit, ...]
    missed: tuple[Hit, ...] = ()  # U2A: the next author when not in the top k (rank None)


@dataclass(kw_only=True)
class Gallery:
    dataset: str
    feature_set: str
    as_of: datetime
    k: int
    pool: int
    cards: list[Card]
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- data


def _utc(ts: datetime) -> pd.Timestamp:
    t = pd.Timestamp(ts)
    if t.tzinfo is None:
        raise InvalidTypeError("as_of", ts, "a timezone-aware datetime")
    return t.tz_convert("UTC")


def default_as_of(interactions: pd.DataFrame) -> datetime:
    """The instant by which 80% of the positives had happened (to the second): users then have
    a history and most of them engage again after it."""
    ts = interactions.loc[interactions["label"] == 1, "event_timestamp"]
    if ts.empty:
        raise DataError(
            "interactions", "no positive interaction: the gallery has no history to show"
        )
    return ts.quantile(0.8, interpolation="lower").floor("s").to_pydatetime()


def _image(frame: dict[str, Any], data_dir: Path) -> Image | None:
    """A frame of the ``authors`` contract as an image, or None when it is not one we can show."""
    raw = frame.get("bytes")
    path = frame.get("path")
    if raw is None and path:
        p = Path(path) if Path(path).is_absolute() else data_dir / path
        try:
            raw = p.read_bytes()
        except OSError:
            return None
    if not raw:
        return None
    for magic, mime in _MAGIC:
        if raw.startswith(magic):
            return Image(mime=mime, data=bytes(raw))
    if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        return Image(mime="image/webp", data=bytes(raw))
    return None  # unknown format: not shown (a broken <img> would be an error on the page)


def load_tiles(data_dir: Path, as_of: datetime, max_frames: int = 2) -> dict[str, Tile]:
    """Every author's content as of ``as_of`` (its newest snapshot at or before it)."""
    import pyarrow.parquet as pq

    table = pq.read_table(
        data_dir / "authors.parquet",
        columns=["author_id", "event_timestamp", "profile_text", "frames"],
    )
    t = _utc(as_of)
    df = table.to_pandas()
    df = df[df["event_timestamp"] <= t].sort_values(["author_id", "event_timestamp"])
    df = df.drop_duplicates("author_id", keep="last")
    tiles: dict[str, Tile] = {}
    for aid, title, frames in zip(df["author_id"], df["profile_text"], df["frames"], strict=True):
        imgs = [_image(f, data_dir) for f in (frames if frames is not None else [])]
        tiles[str(aid)] = Tile(
            author_id=str(aid),
            title=str(title),
            frames=tuple(i for i in imgs if i is not None)[:max_frames],
        )
    return tiles


def _pit(
    store: FeatureStore, view: str, key: str, ids: list[str], features: list[str], as_of: datetime
) -> pd.DataFrame:
    """``features`` of ``view`` for ``ids`` as the historical read gives them at ``as_of``
    (null where no snapshot is valid then), indexed by id."""
    from mspa_features.serving.reads import historical_features

    if not ids:
        return pd.DataFrame(columns=features)
    other = "author_id" if key == "user_id" else "user_id"
    entity = pd.DataFrame(
        {key: ids, other: [""] * len(ids), "event_timestamp": [_utc(as_of)] * len(ids)}
    )
    out = historical_features(store, [f"{view}:{f}" for f in features], entity)
    return out.set_index(key)[features]


def _unit(v: Any) -> np.ndarray | None:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    a = np.asarray(v, dtype=np.float32).ravel()  # (d,)
    n = float(np.linalg.norm(a))
    return a / n if n > 0 else None


# --------------------------------------------------------------------------- building


def build_gallery(
    cfg: RunConfig,
    store: FeatureStore,
    feature_set: str = "template",
    *,
    users: int = 4,
    authors: int = 4,
    k: int = 5,
    as_of: datetime | None = None,
    history: int = 6,
    pool: int = 100,
    max_frames: int = 2,
) -> Gallery:
    """Retrieve the gallery's cards through ``store`` (a vector-enabled store: milvus).

    Users: the first ``users`` by id among those with a positive before ``as_of``, one at or
    after it, and a preference snapshot valid at ``as_of``. Authors: the ``authors`` with the
    most positives before ``as_of`` (ties by id) among those with a profile valid then.

    Args:
        cfg: the run config (its workspace holds the data and the feature set).
        store: a FeatureStore with a vector-enabled online store (``open_store(..., "milvus")``).
        feature_set: the backfilled feature set (``template``, ``llm``, ...).
        users, authors: how many U2A and A2A cards.
        k: authors shown per card.
        as_of: the instant (timezone-aware; default :func:`default_as_of`).
        history: a user's last positives shown (distinct authors).
        pool: candidates asked of the vector index per query before the point-in-time rescoring.
        max_frames: frames shown per author.

    Raises:
        ValueError: a count below 0, ``k`` or ``pool`` below 1, or no positive in the data.
        TypeError: ``as_of`` is not timezone-aware.
    """
    from mspa_features.config import Workspace
    from mspa_features.serving.reads import nearest_authors

    for name, value, least in (
        ("users", users, 0),
        ("authors", authors, 0),
        ("history", history, 0),
        ("k", k, 1),
        ("pool", pool, 1),
    ):
        if value < least:
            raise InvalidValueError(name, value, f">= {least}")
    data_dir = Workspace(cfg.workspace).data(cfg.name)
    inter = pd.read_parquet(
        data_dir / "interactions.parquet",
        columns=["user_id", "author_id", "event_timestamp", "label"],
    )
    inter["user_id"] = inter["user_id"].astype(str)
    inter["author_id"] = inter["author_id"].astype(str)
    when = default_as_of(inter) if as_of is None else _utc(as_of).to_pydatetime()
    t = _utc(when)
    pos = inter[inter["label"] == 1].sort_values(["event_timestamp", "author_id"], kind="stable")
    before, after = pos[pos["event_timestamp"] < t], pos[pos["event_timestamp"] >= t]
    nxt = after.drop_duplicates("user_id", keep="first").set_index("user_id")["author_id"]
    tiles = load_tiles(data_dir, when, max_frames)
    pref_view, author_view = pref_view_name(feature_set), author_view_name(feature_set)
    notes: list[str] = []

    # U2A queries: preference snapshots valid at the instant (historical read)
    eligible = sorted(set(before["user_id"]) & set(nxt.index))
    prefs = _pit(
        store, pref_view, "user_id", eligible, ["pref_emb", "pref_text", "history_count"], when
    )
    chosen_users = [u for u in eligible if _unit(prefs.at[u, "pref_emb"]) is not None][:users]
    if len(chosen_users) < users:
        notes.append(
            f"{len(chosen_users)} of {users} users asked for have a positive before "
            f"and after {when:%Y-%m-%d %H:%M:%S} UTC and a snapshot valid then"
        )

    # A2A queries: the most engaged authors with a profile valid at the instant
    counts = before.groupby("author_id").size()
    ranked = sorted(counts.index, key=lambda a: (-int(counts[a]), a))
    prof = _pit(
        store,
        author_view,
        "author_id",
        ranked[: max(4 * authors, authors + 20)],
        ["author_emb", "author_text"],
        when,
    )
    chosen_authors = [a for a in prof.index if _unit(prof.at[a, "author_emb"]) is not None]
    chosen_authors = chosen_authors[:authors]

    # Candidates from the online vector index, then every candidate read at the instant
    queries: list[tuple[str, str, np.ndarray]] = [
        ("u2a", u, _unit(prefs.at[u, "pref_emb"]))
        for u in chosen_users  # type: ignore[misc]
    ] + [("a2a", a, _unit(prof.at[a, "author_emb"])) for a in chosen_authors]  # type: ignore[misc]
    pools = {
        (kind, q): [
            str(x) for x in nearest_authors(store, feature_set, vec, top_k=pool + 1)["author_id"]
        ]
        for kind, q, vec in queries
    }
    audience_next: dict[str, pd.Series] = {}
    for a in chosen_authors:
        fans = set(before.loc[before["author_id"] == a, "user_id"])
        later = after[after["user_id"].isin(fans) & (after["author_id"] != a)]
        audience_next[a] = later.drop_duplicates("user_id").groupby("author_id").size()
    want = sorted({x for ids in pools.values() for x in ids} | {str(nxt[u]) for u in chosen_users})
    cand = _pit(store, author_view, "author_id", want, ["author_emb", "author_text"], when)
    vecs = {a: _unit(v) for a, v in cand["author_emb"].items()}
    vecs = {a: v for a, v in vecs.items() if v is not None}

    def tile(a: str) -> Tile:
        return tiles.get(a) or Tile(author_id=a, title="(no content at the instant)")

    cards: list[Card] = []
    for kind, q, vec in queries:
        scored = sorted(
            (
                (float(vecs[a] @ vec), a)
                for a in dict.fromkeys(pools[(kind, q)])
                if a in vecs and not (kind == "a2a" and a == q)
            ),
            key=lambda sa: (-sa[0], sa[1]),
        )[:k]
        if kind == "u2a":
            target = str(nxt[q])
            marks = {target: 1}
        else:
            marks = {str(a): int(n) for a, n in audience_next[q].items()}
        hits = tuple(
            Hit(rank=i, tile=tile(a), score=s, text=cand.at[a, "author_text"], next=marks.get(a, 0))
            for i, (s, a) in enumerate(scored, start=1)
        )
        if len(hits) < k:
            notes.append(
                f"{kind} {q}: {len(hits)} of {k} authors (pool {pool}: the rest have "
                "no profile valid at the instant)"
            )
        missed: tuple[Hit, ...] = ()
        if kind == "u2a":
            p = prefs.loc[q]
            hist_ids = list(dict.fromkeys(before.loc[before["user_id"] == q, "author_id"][::-1]))[
                :history
            ][::-1]
            if target not in {h.tile.author_id for h in hits}:
                score = float(vecs[target] @ vec) if target in vecs else float("nan")
                missed = (
                    Hit(
                        rank=None,
                        tile=tile(target),
                        score=score,
                        text=cand.at[target, "author_text"] if target in vecs else None,
                        next=1,
                    ),
                )
            cards.append(
                Card(
                    kind="u2a",
                    query_id=q,
                    query_text=p["pref_text"],
                    history=tuple(tile(a) for a in hist_ids),
                    history_count=None if pd.isna(p["history_count"]) else int(p["history_count"]),
                    hits=hits,
                    missed=missed,
                )
            )
        else:
            cards.append(
                Card(
                    kind="a2a",
                    query_id=q,
                    query_text=prof.at[q, "author_text"],
                    history=(tile(q),),
                    history_count=None,
                    hits=hits,
                )
            )
    return Gallery(
        dataset=cfg.name,
        feature_set=feature_set,
        as_of=when,
        k=k,
        pool=pool,
        cards=cards,
        notes=notes,
    )


# --------------------------------------------------------------------------- rendering

_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>Retrieval gallery: {{ g.dataset }} / {{ g.feature_set }}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #222; background: #fafafa; }
h1 { font-size: 1.3rem; } h2 { font-size: 1.1rem; margin-top: 2rem; }
.meta, .note { color: #555; }
.card { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 1rem;
        margin: 1rem 0; }
.card h3 { margin: 0 0 .5rem; font-size: 1rem; }
.query { white-space: pre-wrap; background: #f3f3f3; padding: .5rem; border-radius: 4px;
         max-height: 12rem; overflow: auto; }
.row { display: flex; flex-wrap: wrap; gap: .6rem; margin: .5rem 0; }
.tile { width: 11rem; border: 2px solid #e3e3e3; border-radius: 4px; padding: .3rem;
        background: #fff; font-size: 12px; }
.tile img { width: 5rem; height: 5rem; object-fit: cover; image-rendering: pixelated;
            margin-right: .2rem; }
.tile .title { max-height: 4.2em; overflow: hidden; }
.tile .desc { color: #666; max-height: 5.6em; overflow: hidden; }
.hit.next { border-color: #d9480f; background: #fff4e6; }
.badge { display: inline-block; background: #d9480f; color: #fff; border-radius: 3px;
         padding: 0 .3rem; font-size: 11px; }
.score { font-variant-numeric: tabular-nums; }
</style>
</head>
<body>
<h1>Retrieval gallery ({{ g.dataset }}, feature set {{ g.feature_set }})</h1>
<p class="meta">As of {{ g.as_of.strftime('%Y-%m-%d %H:%M:%S') }} UTC: query embeddings and
author profiles are the snapshots valid then (Feast point-in-time read); candidates from the
vector index ({{ g.pool }} per query), top {{ g.k }} by cosine. Marked: the author the user
engaged with next (U2A); authors the query author's audience engaged with next (A2A).</p>
{% for n in g.notes %}<p class="note">{{ n }}</p>{% endfor %}
{% for kind, title in (("u2a", "User to author (U2A)"), ("a2a", "Author to author (A2A)")) %}
<h2>{{ title }}</h2>
{% for c in g.cards if c.kind == kind %}
<section class="card {{ c.kind }}" data-kind="{{ c.kind }}" data-query="{{ c.query_id }}">
<h3>{% if c.kind == "u2a" %}User {{ c.query_id }}{% else %}Author {{ c.query_id }}{% endif %}</h3>
{% if c.kind == "u2a" %}<div class="label">History (last {{ c.history|length }} positive
authors before the instant{% if c.history_count is not none %}; snapshot built from
{{ c.history_count }} positives{% endif %})</div>{% endif %}
<div class="row history">
{% for t in c.history %}{{ tile(t, None) }}{% endfor %}
</div>
<div class="label">{% if c.kind == "u2a" %}Preference text{% else %}Description{% endif %}</div>
<div class="query">{{ c.query_text or "" }}</div>
<div class="label">Top {{ c.hits|length }} retrieved</div>
<div class="row hits">
{% for h in c.hits %}{{ tile(h.tile, h) }}{% endfor %}
</div>
{% if c.missed %}<div class="label">Engaged next, not in the top {{ g.k }}</div>
<div class="row missed">{% for h in c.missed %}{{ tile(h.tile, h) }}{% endfor %}</div>{% endif %}
</section>
{% endfor %}
{% endfor %}
</body>
</html>
"""

_TILE = """{% macro tile(t, h) -%}
<div class="tile{% if h is not none %} hit{% if h.next %} next{% endif %}{% endif %}"
 data-author="{{ t.author_id }}"{% if h is not none %} data-rank="{{ h.rank or '' }}"
 data-score="{{ '%.6f'|format(h.score) }}"{% if h.next %} data-next="{{ h.next }}"{% endif %}{% endif %}>
<div>{% if h is not none %}{% if h.rank %}#{{ h.rank }} {% endif %}<span class="score">cos
{{ '%.3f'|format(h.score) }}</span>{% if h.next %} <span class="badge">engaged next{% if h.next > 1 %}
x{{ h.next }}{% endif %}</span>{% endif %}<br>{% endif %}<b>{{ t.author_id }}</b></div>
{% for f in t.frames %}<img src="{{ f.uri }}" alt="frame {{ loop.index }} of {{ t.author_id }}">{% endfor %}
<div class="title">{{ t.title }}</div>
{% if h is not none and h.text %}<div class="desc">{{ h.text }}</div>{% endif %}
</div>
{%- endmacro %}"""


def render_html(g: Gallery) -> str:
    """The gallery as one self-contained HTML page (autoescaped: ids and texts are data)."""
    from jinja2 import Environment

    env = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
    macro = env.from_string(_TILE).module.tile  # type: ignore[attr-defined]
    return env.from_string(_TEMPLATE).render(g=g, tile=macro)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:40] or "_"


def contact_sheet(card: Card, g: Gallery, path: Path) -> Path:
    """One PNG per card: the history (or the query author) on top, the hits below; the
    engaged-next author framed in orange."""
    import io
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image as PILImage

    top = list(card.history) or [Tile(author_id="-", title="(no history)")]
    bottom: list[tuple[Tile, Hit | None]] = [(h.tile, h) for h in (*card.hits, *card.missed)]
    cols = max(len(top), len(bottom), 1)
    fig, axes = plt.subplots(2, cols, figsize=(1.9 * cols, 5.2), squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        ax.axis("off")
    for row, items in ((0, [(t, None) for t in top]), (1, bottom)):
        for j, (t, h) in enumerate(items):
            ax = axes[row, j]
            ax.axis("on")
            if t.frames:
                ax.imshow(PILImage.open(io.BytesIO(t.frames[0].data)).convert("RGB"))
            else:
                ax.text(
                    0.5,
                    0.5,
                    textwrap.fill(t.title[:90], 18),
                    ha="center",
                    va="center",
                    fontsize=6,
                    transform=ax.transAxes,
                )
            label = t.author_id
            if h is not None:
                label = (
                    f"{'#' + str(h.rank) if h.rank else 'next'} {t.author_id}\ncos {h.score:.3f}"
                )
            ax.set_title(label, fontsize=7)
            color = "#d9480f" if h is not None and h.next else "#cccccc"
            for s in ax.spines.values():
                s.set_edgecolor(color)
                s.set_linewidth(3 if h is not None and h.next else 1)
    who = f"user {card.query_id}" if card.kind == "u2a" else f"author {card.query_id}"
    text = textwrap.shorten(card.query_text or "", 240)
    fig.suptitle(
        f"{card.kind.upper()} {who}, {g.feature_set}, as of {g.as_of:%Y-%m-%d %H:%M}"
        f"\n{textwrap.fill(text, 30 * cols)}",
        fontsize=8,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _doc(g: Gallery, sheets: list[str]) -> dict[str, Any]:
    def strip(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items() if k != "frames"}
        if isinstance(obj, list | tuple):
            return [strip(v) for v in obj]
        if isinstance(obj, float) and np.isnan(obj):
            return None
        return obj

    cards = []
    for c, sheet in zip(g.cards, sheets, strict=True):
        d = strip(asdict(c))
        d["frames_shown"] = sum(
            len(t.frames) for t in (*c.history, *(h.tile for h in (*c.hits, *c.missed)))
        )
        d["sheet"] = sheet
        cards.append(d)
    return {
        "dataset": g.dataset,
        "feature_set": g.feature_set,
        "as_of": g.as_of.astimezone(UTC).isoformat(),
        "k": g.k,
        "pool": g.pool,
        "notes": g.notes,
        "cards": cards,
    }


def write_gallery(g: Gallery, out: Path) -> dict[str, Path]:
    """Write ``index.html``, ``sheets/<n>_<kind>_<id>.png`` and ``gallery.json`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    sheets: list[str] = []
    for i, c in enumerate(g.cards):
        rel = f"sheets/{i:02d}_{c.kind}_{_safe(c.query_id)}.png"
        contact_sheet(c, g, out / rel)
        sheets.append(rel)
    html = out / "index.html"
    html.write_text(render_html(g), encoding="utf-8")
    doc = out / "gallery.json"
    doc.write_text(json.dumps(_doc(g, sheets), indent=2), encoding="utf-8")
    return {"html": html, "json": doc, "sheets": out / "sheets"}


def log_gallery(
    out: Path, g: Gallery, *, tracking_uri: str, experiment: str = "mspa-gallery"
) -> str:
    """Log the folder ``out`` (page, sheets, json) as artifacts of a new MLflow run.

    Returns:
        The run id.

    Raises:
        TrackingError: the tracking store cannot be reached or written (one line: URI, cause).
    """
    from mspa_features.errors import TrackingError
    from mspa_features.mlflow_store import start_run

    try:
        import mlflow

        client, run_id = start_run(
            tracking_uri,
            experiment,
            run_name=f"gallery {g.dataset} {g.feature_set} {g.as_of:%Y-%m-%d}",
            tags={"mspa.kind": "gallery", "mspa.dataset": g.dataset},
        )
        params = {
            "dataset": g.dataset,
            "feature_set": g.feature_set,
            "as_of": g.as_of.isoformat(),
            "k": g.k,
            "pool": g.pool,
            "users": sum(c.kind == "u2a" for c in g.cards),
            "authors": sum(c.kind == "a2a" for c in g.cards),
        }
        client.log_batch(
            run_id, params=[mlflow.entities.Param(k, str(v)) for k, v in params.items()]
        )
        client.log_artifacts(run_id, str(out), artifact_path="gallery")
        client.set_terminated(run_id, "FINISHED")
        return run_id
    except Exception as e:  # any failure to reach or write the store: the files stay on disk
        text = " ".join(str(e).split())
        raise TrackingError(tracking_uri, f"{type(e).__name__}: {text[:300]}") from e


__all__ = [
    "Card",
    "Gallery",
    "Hit",
    "Image",
    "Tile",
    "build_gallery",
    "contact_sheet",
    "default_as_of",
    "load_tiles",
    "log_gallery",
    "render_html",
    "write_gallery",
]
