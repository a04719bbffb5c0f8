"""Leak 1 (future ID embeddings) over the Ranker interface, with a tiny honest ranker
(``_numpy_ranker.NumpyMF``, logistic matrix factorisation that really trains)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from _numpy_ranker import NumpyMF

from mspa_features.errors import LeakBuildError
from ranker_hooks.lis.leaks.future_id import future_id_frame, future_id_swap
from ranker_hooks.rankers.base import RankerData

T = datetime(2024, 3, 1, tzinfo=UTC)


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


def test_swap_with_the_torch_ranker(tmp_path: Path) -> None:
    """The real backend: M_{T+n} continues M_T, the swap changes only the author table."""
    from ranker_hooks.rankers.torch_ranker import TorchRanker

    m = TorchRanker(id_dim=4, dense_dim=4, hidden=(8,), epochs=2, batch_size=128, threads=1)
    m.fit(_data(0, T - timedelta(days=30), 30))
    before = {k: m.export_id_embeddings(k) for k in ("user", "author")}
    swap = future_id_swap(m, _data(1, T, 7, new_authors=2), 7, T=T, workdir=tmp_path)
    fut = swap.future.export_id_embeddings("author")
    assert len(fut.ids) == len(before["author"].ids) + 2
    old = [list(fut.ids).index(i) for i in before["author"].ids]
    # Warm start: one short fit moves the rows a little, a fresh model would be unrelated.
    assert not np.allclose(fut.matrix[old], before["author"].matrix)
    drift = np.linalg.norm(fut.matrix[old] - before["author"].matrix, axis=1).mean()
    assert drift < 0.5 * np.linalg.norm(before["author"].matrix, axis=1).mean()
    s = swap.swapped
    np.testing.assert_array_equal(s.export_id_embeddings("author").matrix, fut.matrix)
    np.testing.assert_array_equal(s.export_id_embeddings("user").matrix, before["user"].matrix)
    # Everything but the author table is M_T's: same parameters outside it.
    for (name, p), (_, q) in zip(
        s._module.state_dict().items(), m._module.state_dict().items(), strict=True
    ):
        if not name.startswith("author"):
            assert np.array_equal(p.numpy(), q.numpy()), name
