"""Nearest-author retrieval through Feast's vector search: U2A for a user, A2A for an author.

The query is what the online store serves now: the user's latest preference embedding
(``pref_emb``, MSPA "User-Author" retrieval) or the author's own ``author_emb`` ("Author-Author");
the ranking is Feast's ``retrieve_online_documents_v2`` over the feature set's author view
(milvus-lite by default, COSINE), then scored by :func:`~mspa_features.serving.reads.nearest_authors`.
The TTL rule of :mod:`mspa_features.serving.reads` holds here too: at the request instant
``as_of`` (default now) a query or author embedding older than its view's TTL is not served, so
retrieval sees what the ranker sees online and in training.
Source: MSPA, "User/Author-Author Visualization" (retrieval by preference/author embedding).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from mspa_features.errors import EntityNotFoundError, IncompatibleSettingsError, InvalidValueError
from mspa_features.serving.definitions import author_view_name, pref_view_name

if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore

_HINT = (
    "is it in the backfilled range, and was the set registered with `mspa register CONFIG "
    "--online milvus` (and materialized up to an instant within the view's TTL)?"
)


def _read(
    store: FeatureStore, view: str, key: str, ids: list[str], features: list[str], now_us: int
) -> dict[str, list[Any]]:
    """Online values of ``view``'s ``features`` for ``ids``, None where expired at ``now_us``."""
    from mspa_features.serving.reads import _expired, _response_columns, _ttl_us

    resp = store.get_online_features(
        features=[f"{view}:{f}" for f in features], entity_rows={key: ids}
    )
    data, stamps = _response_columns(resp, with_timestamps=True)
    ttl = _ttl_us(store.get_feature_view(view))
    for f in features:
        data[f] = [
            None if gone else v
            for v, gone in zip(data[f], _expired(stamps[f], ttl, now_us), strict=True)
        ]
    return data


@dataclass(frozen=True)
class Query:
    """A retrieval query: ``kind`` is ``u2a`` (a user's preference) or ``a2a`` (an author)."""

    kind: Literal["u2a", "a2a"]
    entity_id: str
    vector: np.ndarray  # (d,) float32
    text: str | None


def query_vector(
    store: FeatureStore,
    feature_set: str,
    *,
    user: str | None = None,
    author: str | None = None,
    as_of: datetime | None = None,
) -> Query:
    """The online embedding of ``user`` (``pref_emb``) or ``author`` (``author_emb``).

    Exactly one of ``user`` / ``author``. ``as_of``: the request instant (timezone-aware;
    default now); a value older than its view's TTL at that instant is not served.

    Raises:
        ValueError: neither or both given.
        TypeError: ``as_of`` is not timezone-aware.
        EntityNotFoundError: the entity has no embedding online in ``feature_set`` at ``as_of``.
    """
    from mspa_features.serving.reads import _as_of_us

    if (user is None) == (author is None):
        raise IncompatibleSettingsError(
            {"user": user, "author": author}, "give exactly one of user or author"
        )
    if user is not None:
        view, key, entity, emb, text, kind = (
            pref_view_name(feature_set),
            "user_id",
            user,
            "pref_emb",
            "pref_text",
            "u2a",
        )
    else:
        view, key, entity, emb, text, kind = (
            author_view_name(feature_set),
            "author_id",
            author,
            "author_emb",
            "author_text",
            "a2a",
        )
    row = _read(store, view, key, [str(entity)], [emb, text], _as_of_us(as_of))
    value = row[emb][0]
    if value is None or len(value) == 0:
        raise EntityNotFoundError(key.removesuffix("_id"), str(entity), emb, feature_set, _HINT)
    return Query(
        kind=kind,  # type: ignore[arg-type]
        entity_id=str(entity),
        vector=np.asarray(value, dtype=np.float32),
        text=row[text][0],
    )


def nearest(
    store: FeatureStore,
    feature_set: str,
    *,
    user: str | None = None,
    author: str | None = None,
    top_k: int = 10,
    as_of: datetime | None = None,
) -> tuple[Query, pd.DataFrame]:
    """The ``top_k`` nearest authors to a user's preference or to an author, at ``as_of``.

    For an author query the author itself is left out (it is always its own nearest). Authors
    whose embedding is past its TTL at ``as_of`` are left out too (twice ``top_k`` candidates
    are asked of the vector index to make room for them).

    Returns:
        The query, and a frame ``rank`` (1-based), ``author_id``, ``score`` (cosine, in
        [-1, 1]), ``author_text``, best first; fewer than ``top_k`` rows when the catalogue
        (of authors valid at ``as_of``) is smaller.

    Raises:
        ValueError: ``top_k`` < 1, or not exactly one of ``user`` / ``author``.
        TypeError: ``as_of`` is not timezone-aware.
        EntityNotFoundError: the entity has no embedding online at ``as_of``.
    """
    from mspa_features.serving.reads import _as_of_us, nearest_authors

    if top_k < 1:
        raise InvalidValueError("top_k", top_k, ">= 1")
    now_us = _as_of_us(as_of)
    q = query_vector(store, feature_set, user=user, author=author, as_of=as_of)
    hits = nearest_authors(store, feature_set, q.vector, top_k=2 * top_k + 1)
    if len(hits):
        live = _read(
            store,
            author_view_name(feature_set),
            "author_id",
            list(hits["author_id"]),
            ["author_emb"],
            now_us,
        )["author_emb"]
        hits = hits[[v is not None for v in live]]
    if q.kind == "a2a":
        hits = hits[hits["author_id"] != q.entity_id]
    hits = hits.head(top_k).reset_index(drop=True)
    hits.insert(0, "rank", np.arange(1, len(hits) + 1))
    return q, hits
