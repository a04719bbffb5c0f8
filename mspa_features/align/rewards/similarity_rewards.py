"""R_similarity: cosine between the picked author's and the true author's embeddings.

The embeddings come from the ``author_profiles`` contract (``author_id``, ``author_emb``), the
same vectors the composer serves. The paper adds this reward because negatives are scarce: a
wrong pick that is close to the truth still earns part of the reward, which steadies training.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mspa_features.align.rewards.common import picked_index
from mspa_features.errors import SchemaError


class SimilarityReward:
    """``clip(cos(emb[picked], emb[truth]), 0, 1)``; 0 when no valid letter was given or
    either author has no embedding (an unknown author earns nothing, never a crash).

    Reads the dataset columns ``candidate_ids`` and ``target_author_id``. Holds the
    embeddings as a plain dict of L2-normalised float32 arrays so it pickles.
    """

    __name__ = "similarity"

    def __init__(self, embeddings: Mapping[str, Sequence[float] | np.ndarray]):
        self.embeddings: dict[str, np.ndarray] = {}
        for k, v in embeddings.items():
            vec = np.asarray(v, dtype=np.float32).reshape(-1)
            norm = float(np.linalg.norm(vec))
            # A zero vector has cosine 0 with everything (kept out, so lookups return None).
            if norm > 0 and np.isfinite(norm):
                self.embeddings[str(k)] = vec / norm

    def cosine(self, a: str, b: str) -> float:
        """Clipped cosine of two authors; 0 when either is unknown."""
        ea, eb = self.embeddings.get(str(a)), self.embeddings.get(str(b))
        if ea is None or eb is None or ea.shape != eb.shape:
            return 0.0
        return float(np.clip(float(ea @ eb), 0.0, 1.0))

    def __call__(
        self,
        completions: Sequence[Any],
        candidate_ids: Sequence[Sequence[str]],
        target_author_id: Sequence[str],
        **kwargs: Any,
    ) -> list[float]:
        out = []
        for c, cands, target in zip(completions, candidate_ids, target_author_id, strict=True):
            idx = picked_index(c, len(cands))
            out.append(self.cosine(cands[idx], target) if idx >= 0 else 0.0)
        return out


def load_author_embeddings(path: str | Path) -> dict[str, np.ndarray]:
    """``author_id -> author_emb`` from ``author_profiles``: a parquet file (``mspa compose``) or
    a partitioned folder (the backfill). The newest row of each author wins.

    Raises:
        SchemaError: the file is missing or lacks ``author_id``/``author_emb``.
    """
    import pyarrow.parquet as pq

    p = Path(path)
    if not p.exists():
        raise SchemaError(p, "author_profiles not found (compose or backfill authors first)")
    cols = pq.read_table(p).schema.names if p.is_dir() else pq.read_schema(p).names
    for col in ("author_id", "author_emb"):
        if col not in cols:
            raise SchemaError(p, "missing required column", column=col)
    read = ["author_id", "author_emb"] + (["event_timestamp"] if "event_timestamp" in cols else [])
    table = pq.read_table(p, columns=read)
    if "event_timestamp" in cols:
        table = table.sort_by("event_timestamp")
    ids = table.column("author_id").to_pylist()
    embs = table.column("author_emb").to_pylist()
    return {a: np.asarray(e, dtype=np.float32) for a, e in zip(ids, embs, strict=True) if e}
