"""Leak 2 of the LIS paper: each author's top-k similar authors from posterior behaviour.

Similarity is item-item cosine over the binary user x author matrix of positives inside a
window (scikit-learn ``cosine_similarity`` on a sparse matrix). With the window ``[T, T+n)``,
the future relative to a ranker trained before T, it is the leaked side information the paper
measures; with ``[T0, T)`` and ``visible_from=T`` it is an honest, point-in-time feature (the
leak-free control used by the tests).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from mspa_features.data.contracts import TS
from mspa_features.errors import LeakBuildError
from ranker_hooks.lis.feast_defs import to_us, utc_timestamp
from ranker_hooks.lis.leaks.windows import checked_interactions, in_window
from ranker_hooks.rankers.base import IdEmbeddings

LEAK_KIND = "similar_items"
IDS, SCORES, MEAN_EMB = "similar_author_ids", "similar_author_scores", "similar_author_mean_emb"


def frame_schema(*, embeddings: bool) -> pa.Schema:
    """The arrow schema of a similar-items leak table, the same whether it has rows or not."""
    fields = [
        pa.field("author_id", pa.string()),
        pa.field("event_timestamp", TS),
        pa.field("created_timestamp", TS),
        pa.field(IDS, pa.list_(pa.string())),
        pa.field(SCORES, pa.list_(pa.float32())),
    ]
    if embeddings:
        fields.append(pa.field(MEAN_EMB, pa.list_(pa.float32())))
    return pa.schema([*fields, pa.field("knowledge_ts", pa.int64())])


def empty_frame(*, embeddings: bool) -> pd.DataFrame:
    """No rows, the leak table's columns (write it with :func:`frame_schema`)."""
    return frame_schema(embeddings=embeddings).empty_table().to_pandas()


def similar_items(
    interactions: pd.DataFrame,
    *,
    start: Any,
    end: Any,
    k: int = 5,
    embeddings: IdEmbeddings | None = None,
    visible_from: Any | None = None,
    chunk: int = 2048,
) -> pd.DataFrame:
    """Top-``k`` most similar authors per author, from positives in ``[start, end)``.

    Args:
        interactions: the interactions contract (``user_id``, ``author_id``,
            ``event_timestamp`` tz-aware UTC, ``label``).
        start, end: the window whose positives define similarity.
        k: neighbours per author (the paper uses 5); ties broken by author id.
        embeddings: an author table (e.g. M_T's ID embeddings, or composer author embeddings);
            when given, adds the mean embedding of each author's neighbours found in it.
        visible_from: ``event_timestamp`` of every row; default the earliest interaction, so
            every training and evaluation row sees the leak.
        chunk: authors per similarity block (bounds memory at ``chunk x n_authors``).

    Returns:
        One row per author with at least one neighbour of positive similarity: ``author_id``,
        ``event_timestamp``, ``created_timestamp``, ``similar_author_ids`` (list of str),
        ``similar_author_scores`` (list of float32), optionally ``similar_author_mean_emb``,
        and ``knowledge_ts`` (UTC microseconds of the latest positive used).

    Raises:
        LeakBuildError: bad interactions (row and field named), ``k < 1``, or an empty window.
    """
    import scipy.sparse as sp
    from sklearn.metrics.pairwise import cosine_similarity

    if isinstance(k, bool) or int(k) != k or k < 1:
        raise LeakBuildError("similar_items", f"k must be a positive integer, got {k!r}")
    df = checked_interactions(interactions, "similar_items")
    visible = (
        utc_timestamp(visible_from) if visible_from is not None else df["event_timestamp"].min()
    )
    pos = in_window(df, start, end)
    pos = pos.loc[pos["label"] == 1]
    if pos.empty:
        raise LeakBuildError("similar_items", f"no positive interaction in [{start}, {end})")
    knowledge = to_us(pos["event_timestamp"].max())

    users, u_idx = np.unique(pos["user_id"].to_numpy(), return_inverse=True)
    authors, a_idx = np.unique(pos["author_id"].to_numpy(), return_inverse=True)
    # (n_authors, n_users) binary incidence; repeats collapse to 1.
    m = sp.csr_matrix(
        (np.ones(len(pos), dtype=np.float32), (a_idx, u_idx)), shape=(len(authors), len(users))
    )
    m.sum_duplicates()
    m.data[:] = 1.0

    emb_rows: dict[str, np.ndarray] = {}
    if embeddings is not None:
        emb_rows = {str(i): row for i, row in zip(embeddings.ids, embeddings.matrix, strict=True)}

    out_ids: list[list[str]] = []
    out_scores: list[list[float]] = []
    out_authors: list[str] = []
    out_mean: list[list[float] | None] = []
    for lo in range(0, len(authors), chunk):
        sims = cosine_similarity(m[lo : lo + chunk], m, dense_output=True)  # (c, n_authors)
        for r in range(sims.shape[0]):
            sims[r, lo + r] = -np.inf  # never one's own neighbour
        for r, row in enumerate(sims):
            cand = np.flatnonzero(row > 0)
            if cand.size == 0:
                continue
            # Highest similarity first; ties by author id (authors are sorted), deterministic.
            order = cand[np.lexsort((cand, -row[cand]))][:k]
            ids = [str(authors[j]) for j in order]
            out_authors.append(str(authors[lo + r]))
            out_ids.append(ids)
            out_scores.append(row[order].astype(np.float32).tolist())
            if embeddings is not None:
                found = [emb_rows[i] for i in ids if i in emb_rows]
                out_mean.append(
                    np.mean(found, axis=0).astype(np.float32).tolist() if found else None
                )
    n = len(out_authors)
    if n == 0:
        # Positives, but no two authors share a user: typed columns, not pandas' float64.
        return empty_frame(embeddings=embeddings is not None)
    frame = pd.DataFrame(
        {
            "author_id": pd.Series(out_authors, dtype=object),
            "event_timestamp": pd.Series([visible] * n, dtype="datetime64[us, UTC]"),
            "created_timestamp": pd.Series([visible] * n, dtype="datetime64[us, UTC]"),
            IDS: out_ids,
            SCORES: out_scores,
        }
    )
    if embeddings is not None:
        frame[MEAN_EMB] = out_mean
    frame["knowledge_ts"] = np.full(n, knowledge, dtype=np.int64)
    return frame


__all__ = [
    "IDS",
    "LEAK_KIND",
    "MEAN_EMB",
    "SCORES",
    "empty_frame",
    "frame_schema",
    "similar_items",
]
