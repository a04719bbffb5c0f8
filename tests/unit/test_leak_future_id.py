"""Leak 1 (future ID embeddings) over the Ranker interface, with a tiny honest ranker.

``NumpyMF`` really trains: logistic matrix factorisation, score = sigmoid(u . a + b_a), full
batch gradient descent in numpy, seeded. Its only purpose is to exercise ``future_id_swap``
through the same interface the torch ranker implements.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from mspa_features.errors import LeakBuildError
from ranker_hooks.base import IdEmbeddings, IdKind, Ranker, RankerData
from ranker_hooks.leaks.future_id import future_id_frame, future_id_swap

DIM = 4
T = datetime(2024, 3, 1, tzinfo=UTC)


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
            self.__init__(self.epochs, self.lr, self.seed)
        self.fit_starts.append({k: v.copy() for k, v in self.tables.items()})
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


def _data(seed: int, start: datetime, days: int, n: int = 400, new_authors: int = 0) -> RankerData:
    """Users like authors of their own parity; timestamps spread over ``days`` from ``start``."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 20, n)
    authors = rng.integers(0, 10 + new_authors, n)
    labels = ((users % 2) == (authors % 2)).astype(np.int8)
    flip = rng.random(n) < 0.1
    labels[flip] = 1 - labels[flip]
    t0 = int(start.timestamp() * 1e6)
    ts = t0 + rng.integers(0, days * 86_400 * 1_000_000, n)
    return RankerData(
        user_ids=np.array([f"u{u}" for u in users], dtype=object),
        author_ids=np.array([f"a{a}" for a in authors], dtype=object),
        dense=np.zeros((n, 0), np.float32),
        labels=labels,
        event_ts=ts.astype(np.int64),
    )


@pytest.fixture
def m_t() -> NumpyMF:
    m = NumpyMF()
    m.fit(_data(0, T - timedelta(days=30), 30))
    return m


def test_future_model_warm_starts_from_m_t(m_t: NumpyMF, tmp_path: Path) -> None:
    before = {k: m_t.export_id_embeddings(k).matrix.copy() for k in ("user", "author")}
    swap = future_id_swap(m_t, _data(1, T, 7, new_authors=2), 7, T=T, workdir=tmp_path)
    start = swap.future.fit_starts[-1]
    # M_{T+n} began its fit with exactly M_T's weights ...
    np.testing.assert_array_equal(start["author"], before["author"])
    np.testing.assert_array_equal(start["user"], before["user"])
    # ... and then really trained (its author table moved, and grew by the new authors).
    fut = swap.future.export_id_embeddings("author")
    assert len(fut.ids) == 12
    assert not np.allclose(fut.matrix[:10], before["author"])
    # M_T itself is untouched.
    np.testing.assert_array_equal(m_t.export_id_embeddings("author").matrix, before["author"])
    assert swap.horizon_days == 7 and "loss" in swap.fit_stats


def test_swap_replaces_exactly_the_author_table(m_t: NumpyMF, tmp_path: Path) -> None:
    swap = future_id_swap(m_t, _data(2, T, 30), 30, T=T, workdir=tmp_path)
    s, f = swap.swapped, swap.future
    np.testing.assert_array_equal(
        s.export_id_embeddings("author").matrix, f.export_id_embeddings("author").matrix
    )
    np.testing.assert_array_equal(
        s.export_id_embeddings("user").matrix, m_t.export_id_embeddings("user").matrix
    )
    np.testing.assert_array_equal(s.bias, m_t.bias)  # the rest of M_T stays M_T
    assert not np.array_equal(
        s.export_id_embeddings("user").matrix, f.export_id_embeddings("user").matrix
    )
    test = _data(3, T, 30)
    assert not np.allclose(s.predict(test), m_t.predict(test))


def test_rows_outside_the_horizon_are_refused(m_t: NumpyMF, tmp_path: Path) -> None:
    with pytest.raises(LeakBuildError, match=r"row \d+ .*event_ts.*outside"):
        future_id_swap(m_t, _data(4, T - timedelta(days=1), 3), 7, T=T, workdir=tmp_path)
    with pytest.raises(LeakBuildError, match="event_ts"):
        future_id_swap(m_t, _data(5, T, 10), 7, T=T, workdir=tmp_path)
    with pytest.raises(LeakBuildError, match="positive integer"):
        future_id_swap(m_t, _data(5, T, 3), 0, T=T, workdir=tmp_path)


def test_future_id_frame_rows(m_t: NumpyMF, tmp_path: Path) -> None:
    swap = future_id_swap(m_t, _data(6, T, 7), 7, T=T, workdir=tmp_path)
    frame = future_id_frame(
        swap, visible_from=T - timedelta(days=30), knowledge_ts=T + timedelta(days=7)
    )
    assert list(frame["author_id"]) == [str(i) for i in swap.table.ids]
    np.testing.assert_allclose(np.vstack(frame["future_author_id_emb"]), swap.table.matrix)
    assert (frame["knowledge_ts"] == int((T + timedelta(days=7)).timestamp() * 1e6)).all()
    assert (frame["event_timestamp"] == T - timedelta(days=30)).all()
