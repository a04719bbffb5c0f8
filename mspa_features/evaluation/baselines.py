"""Non-LLM reference scorers for the U2A and A2A tasks.

They anchor every later table: an LLM composer that cannot beat time-aware popularity on U2A
has learned nothing useful about the user.

* popularity: an author's number of positives strictly before the question's as-of instant
  (leak-free: nothing from the future is counted);
* random: seeded uniform scores (expected Acc@m = 1/m, Recall@K = K/n);
* co-occurrence (A2A): an author is represented by the users who engaged with it;
  authors are compared by cosine of those vectors.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def popularity_at(positives: pd.DataFrame, author_ids: list[str], as_of: pd.Series) -> np.ndarray:
    """Scores (n_questions, n_authors): positives per author strictly before each as-of.

    Args:
        positives: rows with ``author_id`` and ``event_timestamp`` (positives only).
        author_ids: the authors to score, in column order.
        as_of: one UTC timestamp per question.
    """
    index = {a: j for j, a in enumerate(author_ids)}
    col = positives["author_id"].map(index)
    keep = col.notna().to_numpy()
    cols = col[keep].astype(np.int64).to_numpy()
    ts = positives["event_timestamp"][keep].to_numpy(dtype="datetime64[us]").astype(np.int64)
    order = np.lexsort((ts, cols))
    cols, ts = cols[order], ts[order]
    starts = np.searchsorted(cols, np.arange(len(author_ids)), side="left")
    ends = np.searchsorted(cols, np.arange(len(author_ids)), side="right")
    q = pd.to_datetime(as_of, utc=True).to_numpy(dtype="datetime64[us]").astype(np.int64)
    out = np.zeros((len(q), len(author_ids)), dtype=np.float64)
    for j in range(len(author_ids)):
        seg = ts[starts[j] : ends[j]]
        if len(seg):
            # side="left": an event exactly at as-of is not strictly before it
            out[:, j] = np.searchsorted(seg, q, side="left")
    return out


def cooccurrence_embeddings(
    interactions: pd.DataFrame, author_ids: list[str]
) -> dict[str, np.ndarray]:
    """Author -> L2-normalised binary vector of the users in ``interactions`` with it (dense)."""
    positives = interactions
    users = {u: i for i, u in enumerate(sorted(positives["user_id"].unique()))}
    index = {a: j for j, a in enumerate(author_ids)}
    mat = np.zeros((len(author_ids), len(users)), dtype=np.float32)
    pairs = positives[["author_id", "user_id"]].drop_duplicates()
    rows = pairs["author_id"].map(index)
    ok = rows.notna().to_numpy()
    mat[rows[ok].astype(int).to_numpy(), pairs["user_id"][ok].map(users).to_numpy()] = 1.0
    norms = np.linalg.norm(mat, axis=1, keepdims=True)
    mat = mat / np.maximum(norms, 1e-12)
    return {a: mat[j] for a, j in index.items()}
