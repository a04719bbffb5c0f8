"""Content -> ID alignment: beats the mean baseline on a known linear map; errors; cold ids."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from ranker_hooks.aligned_id.adapter import AlignmentConfig, cold_author_ids, fit_id_adapter
from ranker_hooks.rankers.base import IdEmbeddings


def synthetic(n: int = 240, d_in: int = 16, d_out: int = 8, noise: float = 0.1, seed: int = 0):
    """ID = content @ W + offset + noise: a known linear map with a shared offset, so the
    mean-embedding baseline is far from trivial (cosine ~0.5)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d_in)).astype(np.float32)
    w = rng.normal(size=(d_in, d_out)).astype(np.float32) / np.sqrt(d_in)
    offset = rng.normal(size=d_out).astype(np.float32)
    y = x @ w + offset + noise * rng.normal(size=(n, d_out)).astype(np.float32)
    ids = np.array([f"a{i}" for i in range(n)], dtype=object)
    # The content table holds extra (cold) authors and a different order than the ID table.
    extra = rng.normal(size=(20, d_in)).astype(np.float32)
    content = IdEmbeddings(
        kind="author",
        ids=np.concatenate([ids[::-1], [f"cold{i}" for i in range(20)]]).astype(object),
        matrix=np.vstack([x[::-1], extra]),
    )
    return content, IdEmbeddings(kind="author", ids=ids, matrix=y), (w, offset, extra)


@pytest.mark.parametrize("loss", ["regression", "contrastive", "both"])
def test_adapter_beats_mean_baseline_on_known_linear_map(loss: str) -> None:
    content, table, _ = synthetic()
    cfg = AlignmentConfig(loss=loss, epochs=150, batch_size=64, seed=0)
    _, rep = fit_id_adapter(content, table, cfg)
    assert (rep.n_holdout, rep.n_val, rep.n_train) == (48, 19, 173)
    assert rep.cosine_adapter > rep.cosine_mean_baseline + 0.1, rep
    if loss != "contrastive":  # InfoNCE is scale-free: only regression pins the direction well
        assert rep.cosine_adapter > 0.9, rep


def test_predicts_cold_ids_close_to_the_true_map() -> None:
    content, table, (w, offset, extra) = synthetic(noise=0.0)
    adapter, _ = fit_id_adapter(content, table, AlignmentConfig(loss="regression", epochs=200))
    cold = adapter.predict(content, ids=[f"cold{i}" for i in range(20)])
    assert cold.kind == "author" and list(cold.ids) == [f"cold{i}" for i in range(20)]
    truth = extra @ w + offset
    cos = (cold.matrix * truth).sum(1) / (
        np.linalg.norm(cold.matrix, axis=1) * np.linalg.norm(truth, axis=1)
    )
    assert cos.mean() > 0.95


def test_errors_name_the_problem() -> None:
    content, table, _ = synthetic(n=40)
    with pytest.raises(ValueError, match="loss 'nope'; valid: regression"):
        AlignmentConfig(loss="nope")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="holdout"):
        AlignmentConfig(holdout=1.0)
    few = IdEmbeddings(
        kind="author", ids=np.array(["a0", "a1"], dtype=object), matrix=np.ones((2, 8))
    )
    with pytest.raises(ValueError, match=r"warm ids \(in both tables\) must be >= 4, got 2"):
        fit_id_adapter(content, few)
    bad = content.matrix.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="content record 3: holds a non-finite value"):
        fit_id_adapter(IdEmbeddings(kind="author", ids=content.ids, matrix=bad), table)
    adapter, _ = fit_id_adapter(content, table, AlignmentConfig(epochs=2))
    with pytest.raises(ValueError, match="no content row"):
        adapter.predict(content, ids=["missing"])


def test_cold_author_ids() -> None:
    T = datetime(2024, 1, 10, tzinfo=UTC)
    df = pd.DataFrame(
        {
            "author_id": ["a", "a", "b", "c"],
            "event_timestamp": pd.to_datetime(
                ["2024-01-01", "2024-01-12", "2024-01-10", "2024-01-11"], utc=True
            ),
        }
    )
    assert list(cold_author_ids(df, T)) == ["b", "c"]


def test_author_content_takes_the_latest_snapshot_as_of(tmp_path) -> None:
    from ranker_hooks.aligned_id.adapter import author_content

    for day, values in ((1, {"a": 1.0, "b": 2.0}), (5, {"a": 3.0, "c": None})):
        d = tmp_path / "author_profiles" / f"ds=2024-01-0{day}"
        d.mkdir(parents=True)
        pd.DataFrame(
            {
                "author_id": list(values),
                "event_timestamp": pd.to_datetime([f"2024-01-0{day}"] * len(values), utc=True),
                "author_emb": [None if v is None else [v, v] for v in values.values()],
            }
        ).to_parquet(d / "p.parquet")
    latest = author_content(tmp_path / "author_profiles")
    assert list(latest.ids) == ["a", "b"]  # c has no embedding
    np.testing.assert_array_equal(latest.matrix, [[3, 3], [2, 2]])
    early = author_content(tmp_path / "author_profiles", as_of=datetime(2024, 1, 3, tzinfo=UTC))
    np.testing.assert_array_equal(early.matrix, [[1, 1], [2, 2]])
    with pytest.raises(ValueError, match="no parquet"):
        author_content(tmp_path / "nothing")
