"""build_leak_sets: M_T sees only [T0, T), M_{T+n} only [T, T+n); every set is written with
its manifest under the workspace."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _numpy_ranker import NumpyMF

from mspa_features.config import DataConfig, RunConfig, Workspace
from mspa_features.errors import LeakBuildError
from mspa_features.leak_defs import discover_leak_sets
from ranker_hooks.leaks.build import build_leak_sets

T0 = datetime(2024, 1, 1, tzinfo=UTC)
T = T0 + timedelta(days=30)


def interactions(n: int = 600) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    users = rng.integers(0, 15, n)
    authors = rng.integers(0, 8, n)
    df = pd.DataFrame(
        {
            "user_id": [f"u{u}" for u in users],
            "author_id": [f"a{a}" for a in authors],
            "event_timestamp": pd.to_datetime(
                [T0 + timedelta(seconds=int(s)) for s in rng.integers(0, 70 * 86_400, n)], utc=True
            ),
            "label": ((users + authors) % 2 == 0).astype(np.int8),
        }
    )
    return df


def test_build_writes_every_set_and_keeps_windows_apart(tmp_path: Path) -> None:
    cfg = RunConfig(name="toy", workspace=tmp_path / "ws", data=DataConfig(source="movielens"))
    rankers: list[NumpyMF] = []

    def make() -> NumpyMF:
        rankers.append(NumpyMF(epochs=5))
        return rankers[-1]

    rep = build_leak_sets(
        cfg, split_at=T, horizons=(7, 30), make_ranker=make, interactions=interactions()
    )
    assert sorted(rep.leak_sets) == sorted(
        f"{k}_n{n}" for k in ("future_id", "similar_items", "next_positive") for n in (7, 30)
    )
    assert set(discover_leak_sets(cfg)) == set(rep.leak_sets)
    root = Workspace(cfg.workspace).features("toy") / "leaks"
    manifest = json.loads((root / "future_id_n30" / "leak.json").read_text())
    assert manifest["kind"] == "future_id" and manifest["horizon_days"] == 30
    assert manifest["window_start"] == T.isoformat()

    # M_T (the one ranker made) was fitted once, on rows before T only; M_{T+n} are copies
    # (future_id_swap refuses rows outside [T, T+n)), so M_T never saw the future.
    (m_t,) = rankers
    t_us = int(T.timestamp() * 1e6)
    assert len(m_t.fit_event_ts) == 1
    assert (m_t.fit_event_ts[0] < t_us).all() and rep.train_rows == len(m_t.fit_event_ts[0])
    fut = pd.read_parquet(root / "future_id_n7" / "rows")
    assert (fut["knowledge_ts"] < int((T + timedelta(days=7)).timestamp() * 1e6)).all()
    assert (fut["knowledge_ts"] >= t_us).all()


def test_build_refuses_unknown_kinds_and_empty_windows(tmp_path: Path) -> None:
    cfg = RunConfig(name="toy", workspace=tmp_path / "ws", data=DataConfig(source="movielens"))
    with pytest.raises(LeakBuildError, match="unknown kinds"):
        build_leak_sets(cfg, split_at=T, kinds=("nope",), interactions=interactions())
    with pytest.raises(LeakBuildError, match="needs both labels"):
        build_leak_sets(cfg, split_at=T0, make_ranker=NumpyMF, interactions=interactions())
