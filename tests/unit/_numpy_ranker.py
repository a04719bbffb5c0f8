"""A tiny honest Ranker for leak tests: logistic matrix factorisation in numpy.

score = sigmoid(u . a + b_a), full-batch gradient descent, seeded. It really trains, so
warm-start and table-swap tests exercise real behaviour through the Ranker interface. It
records the weights and the row timestamps each ``fit`` started from / saw.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ranker_hooks.rankers.base import IdEmbeddings, IdKind, Ranker, RankerData

DIM = 4


class NumpyMF(Ranker):
    def __init__(self, epochs: int = 60, lr: float = 0.5, seed: int = 0) -> None:
        self.epochs, self.lr, self.seed = epochs, lr, seed
        self.vocab: dict[str, dict[str, int]] = {"user": {}, "author": {}}
        self.tables: dict[str, np.ndarray] = {
            "user": np.zeros((0, DIM), np.float32),
            "author": np.zeros((0, DIM), np.float32),
        }
        self.bias = np.zeros(0, np.float32)
        self.fit_starts: list[dict[str, np.ndarray]] = []  # weights at the start of each fit
        self.fit_event_ts: list[np.ndarray | None] = []  # row timestamps each fit saw

    def _grow(self, kind: str, ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        vocab = self.vocab[kind]
        for i in ids:
            if str(i) not in vocab:
                vocab[str(i)] = len(vocab)
                row = rng.normal(scale=0.1, size=(1, DIM)).astype(np.float32)
                self.tables[kind] = np.vstack([self.tables[kind], row])
                if kind == "author":
                    self.bias = np.append(self.bias, np.float32(0))
        return np.array([vocab[str(i)] for i in ids])

    def fit(self, data: RankerData, *, warm_start: bool = False) -> dict[str, float]:
        rng = np.random.default_rng(self.seed + len(self.fit_starts))
        if not warm_start:
            starts, seen = self.fit_starts, self.fit_event_ts
            self.__init__(self.epochs, self.lr, self.seed)
            self.fit_starts, self.fit_event_ts = starts, seen
        self.fit_starts.append({k: v.copy() for k, v in self.tables.items()})
        self.fit_event_ts.append(
            None if data.event_ts is None else np.asarray(data.event_ts).copy()
        )
        u = self._grow("user", data.user_ids, rng)
        a = self._grow("author", data.author_ids, rng)
        y = data.labels.astype(np.float32)
        U, A = self.tables["user"], self.tables["author"]
        for _ in range(self.epochs):
            p = 1 / (1 + np.exp(-((U[u] * A[a]).sum(1) + self.bias[a])))
            g = (p - y) / len(y)  # d loss / d logit
            gU = np.zeros_like(U)
            gA = np.zeros_like(A)
            np.add.at(gU, u, g[:, None] * A[a])
            np.add.at(gA, a, g[:, None] * U[u])
            U -= self.lr * gU * 50
            A -= self.lr * gA * 50
            self.bias -= self.lr * np.bincount(a, g, len(self.bias)).astype(np.float32) * 50
        p = 1 / (1 + np.exp(-((U[u] * A[a]).sum(1) + self.bias[a])))
        return {"loss": float(-np.mean(y * np.log(p + 1e-7) + (1 - y) * np.log(1 - p + 1e-7)))}

    def predict(self, data: RankerData) -> np.ndarray:
        def rows(kind: str, ids: np.ndarray) -> np.ndarray:
            idx = [self.vocab[kind].get(str(i), -1) for i in ids]
            t = np.vstack([self.tables[kind], np.zeros((1, DIM), np.float32)])  # OOV row
            return t[idx]

        b = np.append(self.bias, 0)[[self.vocab["author"].get(str(i), -1) for i in data.author_ids]]
        logit = (rows("user", data.user_ids) * rows("author", data.author_ids)).sum(1) + b
        return 1 / (1 + np.exp(-logit))

    def export_id_embeddings(self, kind: IdKind) -> IdEmbeddings:
        ids = np.array(list(self.vocab[kind]), dtype=object)
        return IdEmbeddings(kind=kind, ids=ids, matrix=self.tables[kind].copy())

    def load_id_embeddings(self, table: IdEmbeddings) -> None:
        self._grow(table.kind, table.ids, np.random.default_rng(0))
        idx = [self.vocab[table.kind][str(i)] for i in table.ids]
        self.tables[table.kind][idx] = table.matrix

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        np.savez(
            path / "w.npz", user=self.tables["user"], author=self.tables["author"], b=self.bias
        )
        (path / "meta.json").write_text(
            json.dumps(
                {"vocab": self.vocab, "epochs": self.epochs, "lr": self.lr, "seed": self.seed}
            )
        )

    @classmethod
    def load(cls, path: Path) -> NumpyMF:
        meta = json.loads((path / "meta.json").read_text())
        m = cls(meta["epochs"], meta["lr"], meta["seed"])
        w = np.load(path / "w.npz")
        m.vocab = meta["vocab"]
        m.tables = {"user": w["user"], "author": w["author"]}
        m.bias = w["b"]
        return m
