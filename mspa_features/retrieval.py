"""Nearest-author retrieval through Feast's vector search: U2A for a user, A2A for an author.

The query is what the online store serves now: the user's latest preference embedding
(``pref_emb``, MSPA "User-Author" retrieval) or the author's own ``author_emb`` ("Author-Author");
the ranking is Feast's ``retrieve_online_documents_v2`` over the feature set's author view
(milvus-lite by default, COSINE), then scored by :func:`~mspa_features.feature_reads.nearest_authors`.
Source: MSPA, "User/Author-Author Visualization" (retrieval by preference/author embedding).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from mspa_features.errors import EntityNotFoundError
from mspa_features.feast_defs import author_view_name, pref_view_name

if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore

_HINT = (
    "is it in the backfilled range, and was the set registered with `mspa register CONFIG "
    "--online milvus` (and materialized up to an instant within the view's TTL)?"
)


@dataclass(frozen=True)
class Query:
    """A retrieval query: ``kind`` is ``u2a`` (a user's preference) or ``a2a`` (an author)."""

    kind: Literal["u2a", "a2a"]
    entity_id: str
    vector: np.ndarray  # (d,) float32
    text: str | None


def query_vector(
    store: FeatureStore, feature_set: str, *, user: str | None = None, author: str | None = None
) -> Query:
    """The online embedding of ``user`` (``pref_emb``) or ``author`` (``author_emb``).

    Exactly one of ``user`` / ``author``.

    Raises:
        ValueError: neither or both given.
        EntityNotFoundError: the entity has no embedding online in ``feature_set``.
    """
    if (user is None) == (author is None):
        raise ValueError("give exactly one of user or author")
    if user is not None:
        view, key, entity, emb, text, kind = (
            pref_view_name(feature_set), "user_id", user, "pref_emb", "pref_text", "u2a"
        )
    else:
        view, key, entity, emb, text, kind = (
            author_view_name(feature_set), "author_id", author, "author_emb", "author_text", "a2a"
        )
    row = store.get_online_features(
        features=[f"{view}:{emb}", f"{view}:{text}"], entity_rows=[{key: str(entity)}]
    ).to_dict()
    value = row.get(emb, [None])[0]
    if value is None or len(value) == 0:
        raise EntityNotFoundError(key.removesuffix("_id"), str(entity), emb, feature_set, _HINT)
    return Query(
        kind=kind,  # type: ignore[arg-type]
        entity_id=str(entity),
        vector=np.asarray(value, dtype=np.float32),
        text=row.get(text, [None])[0],
    )


def nearest(
    store: FeatureStore,
    feature_set: str,
    *,
    user: str | None = None,
    author: str | None = None,
    top_k: int = 10,
) -> tuple[Query, pd.DataFrame]:
    """The ``top_k`` nearest authors to a user's preference or to an author.

    For an author query the author itself is left out (it is always its own nearest).

    Returns:
        The query, and a frame ``rank`` (1-based), ``author_id``, ``score`` (cosine, in
        [-1, 1]), ``author_text``, best first; fewer than ``top_k`` rows when the catalogue is
        smaller.

    Raises:
        ValueError: ``top_k`` < 1, or not exactly one of ``user`` / ``author``.
        EntityNotFoundError: the entity has no embedding online.
    """
    from mspa_features.feature_reads import nearest_authors

    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    q = query_vector(store, feature_set, user=user, author=author)
    hits = nearest_authors(store, feature_set, q.vector, top_k=top_k + (q.kind == "a2a"))
    if q.kind == "a2a":
        hits = hits[hits["author_id"] != q.entity_id].head(top_k)
    hits = hits.reset_index(drop=True)
    hits.insert(0, "rank", np.arange(1, len(hits) + 1))
    return q, hits
