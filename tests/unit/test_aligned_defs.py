"""The aligned-set writer: refuses an adapter that knows T or later, and null rows; tags it clean."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from mspa_features.aligned_defs import FEATURE, read_aligned_set, write_aligned_set
from mspa_features.config import DataConfig, RunConfig
from mspa_features.errors import LeakBuildError

T = datetime(2024, 2, 1, tzinfo=UTC)


def frame() -> pd.DataFrame:
    ts = pd.Timestamp("2024-01-05", tz="UTC")
    return pd.DataFrame(
        {
            "author_id": ["a0", "a1"],
            "event_timestamp": [ts, ts],
            "created_timestamp": [ts, ts],
            FEATURE: [[0.1, 0.2], [0.3, 0.4]],
            "knowledge_ts": [0, 0],
            "model_version": ["m", "m"],
        }
    )


def cfg(tmp_path) -> RunConfig:
    return RunConfig(name="toy", workspace=tmp_path / "ws", data=DataConfig(source="movielens"))


def test_writes_a_non_leaked_manifest(tmp_path) -> None:
    known = T - timedelta(seconds=1)
    out = write_aligned_set(
        cfg(tmp_path), frame(), feature_set="template", model_version="m", split_at=T,
        knowledge_ts=known,
    )  # fmt: skip
    assert (out.rows, out.dim, out.tags["leaked"]) == (2, 2, "false")
    again = read_aligned_set(cfg(tmp_path), "template")
    assert again == out and again.knowledge_ts == known.isoformat()


@pytest.mark.parametrize("known", [T, T + timedelta(days=1)])
def test_refuses_an_adapter_that_knows_T_or_later(tmp_path, known) -> None:
    with pytest.raises(LeakBuildError, match="not before T"):
        write_aligned_set(
            cfg(tmp_path), frame(), feature_set="template", model_version="m", split_at=T,
            knowledge_ts=known,
        )  # fmt: skip


def test_names_a_null_row(tmp_path) -> None:
    bad = frame()
    bad.loc[1, FEATURE] = None
    with pytest.raises(LeakBuildError, match=f"record row 1 field '{FEATURE}'"):
        write_aligned_set(
            cfg(tmp_path), bad, feature_set="template", model_version="m", split_at=T,
            knowledge_ts=T - timedelta(days=1),
        )  # fmt: skip
