"""TorchRanker: seeded determinism, learning, save/load, warm start, ID-table swap, OOV."""

from __future__ import annotations

import numpy as np
import pytest

from mspa_features.evaluation.metrics import auc
from ranker_hooks.rankers.base import IdEmbeddings, RankerData
from ranker_hooks.rankers.torch_ranker import TorchRanker, TorchRankerConfig

N_USERS, N_AUTHORS = 30, 20


def make_data(n: int = 1500, seed: int = 0, users: int = N_USERS, prefix: str = "u") -> RankerData:
    """Labels from a dense signal plus a per-author bias, so both towers have something to learn."""
    rng = np.random.default_rng(seed)
    u = rng.integers(0, users, n)
    a = rng.integers(0, N_AUTHORS, n)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    author_bias = np.linspace(-2, 2, N_AUTHORS)[a]
    logit = 2.0 * x[:, 0] + author_bias
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    tokens = rng.integers(0, 50, size=(n, 4))
    return RankerData(
        user_ids=np.array([f"{prefix}{i}" for i in u], dtype=object),
        author_ids=np.array([f"a{i}" for i in a], dtype=object),
        dense=x,
        dense_names=["x0", "x1", "x2"],
        tokens=tokens,
        labels=y,
    )


def small(**kw) -> TorchRanker:
    return TorchRanker(TorchRankerConfig(epochs=4, batch_size=128, threads=1, **kw))


def test_same_seed_same_model_different_seed_different_model() -> None:
    data = make_data()
    p1 = small(seed=3)
    p1.fit(data)
    p2 = small(seed=3)
    p2.fit(data)
    p3 = small(seed=4)
    p3.fit(data)
    np.testing.assert_array_equal(p1.predict(data), p2.predict(data))
    assert not np.array_equal(p1.predict(data), p3.predict(data))


def test_learns_the_signal_on_held_out_rows() -> None:
    r = small()
    stats = r.fit(make_data(seed=0))
    test = make_data(seed=1)
    p = r.predict(test)
    assert p.shape == (len(test),) and ((p > 0) & (p < 1)).all()
    assert auc(test.labels, p) > 0.8
    assert stats["rows"] == 1500 and stats["train_loss"] < 0.6


def test_save_load_round_trip_is_exact(tmp_path) -> None:
    data = make_data()
    r = small()
    r.fit(data)
    r.save(tmp_path / "m")
    back = TorchRanker.load(tmp_path / "m")
    np.testing.assert_array_equal(back.predict(data), r.predict(data))
    for kind in ("user", "author"):
        a, b = r.export_id_embeddings(kind), back.export_id_embeddings(kind)
        assert list(a.ids) == list(b.ids)
        np.testing.assert_array_equal(a.matrix, b.matrix)


def test_warm_start_grows_vocab_and_keeps_unseen_rows() -> None:
    r = small()
    r.fit(make_data(users=10))
    before = r.export_id_embeddings("user")
    assert len(before.ids) == 10
    # New users only: old user rows get no gradient, so they must stay bit-identical.
    r.fit(make_data(seed=5, users=5, prefix="new"), warm_start=True)
    after = r.export_id_embeddings("user")
    assert len(after.ids) == 15
    assert list(after.ids[:10]) == list(before.ids)
    np.testing.assert_array_equal(after.matrix[:10], before.matrix)


def test_cold_fit_restarts_from_scratch() -> None:
    r = small()
    r.fit(make_data(users=10))
    r.fit(make_data(seed=2, users=5, prefix="new"))
    assert len(r.export_id_embeddings("user").ids) == 5


def test_load_id_embeddings_overwrites_exactly_the_given_rows() -> None:
    data = make_data()
    r = small()
    r.fit(data)
    users_before = r.export_id_embeddings("user")
    authors = r.export_id_embeddings("author")
    p_before = r.predict(data)
    new_rows = np.full((2, r.config.id_dim), 0.5, dtype=np.float32)
    r.load_id_embeddings(
        IdEmbeddings(
            kind="author", ids=np.array(["a3", "brand-new"], dtype=object), matrix=new_rows
        )
    )
    after = r.export_id_embeddings("author")
    assert list(after.ids) == [*authors.ids, "brand-new"]
    index = {a: i for i, a in enumerate(after.ids)}
    np.testing.assert_array_equal(after.matrix[index["a3"]], new_rows[0])
    np.testing.assert_array_equal(after.matrix[index["brand-new"]], new_rows[1])
    untouched = [i for i, a in enumerate(authors.ids) if a != "a3"]
    np.testing.assert_array_equal(after.matrix[untouched], authors.matrix[untouched])
    np.testing.assert_array_equal(r.export_id_embeddings("user").matrix, users_before.matrix)
    changed = data.author_ids == "a3"
    p_after = r.predict(data)
    assert not np.allclose(p_after[changed], p_before[changed])
    np.testing.assert_array_equal(p_after[~changed], p_before[~changed])


def test_load_id_embeddings_refuses_wrong_dim() -> None:
    r = small()
    r.fit(make_data(n=200))
    bad = IdEmbeddings(kind="user", ids=np.array(["u1"], dtype=object), matrix=np.zeros((1, 3)))
    with pytest.raises(ValueError, match="id_dim"):
        r.load_id_embeddings(bad)


def test_unseen_ids_share_the_oov_row() -> None:
    data = make_data(n=300)
    r = small()
    r.fit(data)
    one = RankerData(
        user_ids=np.array(["ghost1", "ghost2"], dtype=object),
        author_ids=np.array(["nobody1", "nobody2"], dtype=object),
        dense=np.zeros((2, 3), np.float32),
        dense_names=["x0", "x1", "x2"],
        tokens=np.zeros((2, 4), np.int64),
    )
    p = r.predict(one)
    assert np.isfinite(p).all()
    # Two positions of one batch: the GEMM kernels may take a different path per row (seen on
    # an AVX2-only CPU: 0.4984849178968785 vs 0.4984849160342505), so equal only to float32
    # rounding. 1e-6 relative is ~8 float32 ulps; a distinct id row moves p by far more.
    np.testing.assert_allclose(p[0], p[1], rtol=1e-6, atol=0)
    # Computed the same way (each alone, batch of one, position 0) they are bit-identical.
    alone = [
        r.predict(
            RankerData(
                user_ids=one.user_ids[i : i + 1], author_ids=one.author_ids[i : i + 1],
                dense=one.dense[i : i + 1], dense_names=one.dense_names,
                tokens=one.tokens[i : i + 1],
            )
        )[0]
        for i in range(2)
    ]
    assert alone[0] == alone[1]


def test_schema_mismatch_and_missing_labels_fail_clearly() -> None:
    data = make_data(n=200)
    r = small()
    with pytest.raises(ValueError, match="no labels"):
        r.fit(RankerData(data.user_ids, data.author_ids, data.dense, data.dense_names, data.tokens))
    r.fit(data)
    other = RankerData(
        data.user_ids, data.author_ids, data.dense[:, :2], ["x0", "x1"], data.tokens, data.labels
    )
    with pytest.raises(ValueError, match="dense columns differ"):
        r.predict(other)


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="epochs"):
        TorchRankerConfig(epochs=0)
    with pytest.raises(ValueError, match="lr"):
        TorchRankerConfig(lr=0.0)


def test_training_leaves_the_callers_torch_settings_alone() -> None:
    import torch

    threads = torch.get_num_threads()
    state = torch.random.get_rng_state()
    small().fit(make_data(n=200))
    assert torch.get_num_threads() == threads
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.equal(torch.random.get_rng_state(), state)


def test_column_stats_match_numpy_and_guard_constant_columns() -> None:
    from ranker_hooks.rankers.torch_ranker import _column_stats

    x = np.random.default_rng(0).normal(3.0, 2.0, size=(1000, 4)).astype(np.float32)
    x[:, 2] = 7.0  # constant: std must not be ~0 (it divides)
    mean, std = _column_stats(x, chunk=128)
    np.testing.assert_allclose(mean, x.mean(axis=0, dtype=np.float64), rtol=1e-6)
    np.testing.assert_allclose(
        std[[0, 1, 3]], x.std(axis=0, dtype=np.float64)[[0, 1, 3]], rtol=1e-5
    )
    assert std[2] == 1.0
