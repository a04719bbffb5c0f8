"""The ranker interface every backend implements (torch in-process, TFRA through files).

A ranker scores (user, author) rows: ID embeddings for both ids plus a dense tower for injected
features (MSPA embeddings, cosine, missing indicators, hashed caption tokens, or leaked features
for LIS). The interface carries what AIS/LIS ablations need:

* ``fit(data, warm_start=True)`` continues training from the current weights: M_{T+n} is M_T
  trained on through T+n (the LIS paper's requirement that embedding spaces match);
* ``export_id_embeddings`` / ``load_id_embeddings`` read and overwrite one ID table (the LIS swap
  replaces exactly the author table of M_T by M_{T+n}'s);
* ``save`` / ``load`` round-trip a fitted model bit for bit.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from mspa_features.errors import InputMismatchError

IdKind = Literal["user", "author"]


@dataclass
class RankerData:
    """Ranker-ready rows; what :mod:`ranker_hooks` returns and every backend consumes.

    Attributes:
        user_ids, author_ids: string ids, shape ``(n,)``.
        dense: float32 ``(n, d)`` injected features (``d`` may be 0); never NaN: a missing
            feature is zeros plus a 1 in its indicator column.
        dense_names: the ``d`` column names (``pref_emb[0..]``, ``pref_emb__missing``, ...).
        tokens: int64 ``(n, t)`` hashed categorical tokens (0 = padding), or None.
        labels: 0/1 ``(n,)``, None at serving time.
        event_ts: int64 microseconds since the epoch (UTC), ``(n,)``; for slicing and checks.
    """

    user_ids: np.ndarray
    author_ids: np.ndarray
    dense: np.ndarray
    dense_names: list[str] = field(default_factory=list)
    tokens: np.ndarray | None = None
    labels: np.ndarray | None = None
    event_ts: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.user_ids)
        if len(self.author_ids) != n or self.dense.shape[0] != n:
            raise InputMismatchError(
                "must have the same length",
                {"user_ids": n, "author_ids": len(self.author_ids), "dense": self.dense.shape[0]},
                record="RankerData",
            )
        if self.dense.ndim != 2 or self.dense.shape[1] != len(self.dense_names):
            raise InputMismatchError(
                "must agree (one name per dense column)",
                {"dense": self.dense.shape, "dense_names": len(self.dense_names)},
                record="RankerData",
            )
        for name, arr in (("labels", self.labels), ("event_ts", self.event_ts)):
            if arr is not None and len(arr) != n:
                raise InputMismatchError(
                    "must have the same length",
                    {"user_ids": n, name: len(arr)},
                    record="RankerData",
                )
        if self.tokens is not None and self.tokens.shape[0] != n:
            raise InputMismatchError(
                "must have the same length",
                {"user_ids": n, "tokens": self.tokens.shape[0]},
                record="RankerData",
            )

    def __len__(self) -> int:
        return len(self.user_ids)


@dataclass
class IdEmbeddings:
    """One ID table: ``ids[i]`` has row ``matrix[i]`` (float32 ``(len(ids), dim)``)."""

    kind: IdKind
    ids: np.ndarray
    matrix: np.ndarray

    def __post_init__(self) -> None:
        if self.matrix.ndim != 2 or self.matrix.shape[0] != len(self.ids):
            raise InputMismatchError(
                "must agree (one matrix row per id)",
                {"ids": len(self.ids), "matrix": self.matrix.shape},
                record=f"IdEmbeddings({self.kind})",
            )


class Ranker(ABC):
    """A CTR ranker: ID embeddings + dense tower, seeded, deterministic on CPU."""

    @abstractmethod
    def fit(self, data: RankerData, *, warm_start: bool = False) -> dict[str, float]:
        """Train on ``data`` (labels required); ``warm_start`` continues from current weights.

        Returns training statistics (final loss, epochs, seconds, ...).
        """

    @abstractmethod
    def predict(self, data: RankerData) -> np.ndarray:
        """Probabilities in (0, 1), shape ``(len(data),)``; unseen ids use the OOV row."""

    @abstractmethod
    def export_id_embeddings(self, kind: IdKind) -> IdEmbeddings:
        """The current ``kind`` ID table (ids the model has seen)."""

    @abstractmethod
    def load_id_embeddings(self, table: IdEmbeddings) -> None:
        """Overwrite the rows of ``table.ids`` in the ``table.kind`` table (adding new ids);
        nothing else in the model changes."""

    @abstractmethod
    def save(self, path: Path) -> None:
        """Write the fitted model (weights, vocabularies, config) under folder ``path``."""

    @classmethod
    @abstractmethod
    def load(cls, path: Path) -> Ranker:
        """Read a model written by :meth:`save`."""


__all__ = ["IdEmbeddings", "IdKind", "Ranker", "RankerData"]
