"""The aligned-set writer: refuses an adapter that knows T or later, and null rows; tags it clean."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from mspa_features.config import DataConfig, RunConfig
from mspa_features.errors import LeakBuildError
from ranker_hooks.aligned_id.feast_defs import FEATURE, read_aligned_set, write_aligned_set

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


@pytest.mark.parametrize("empty", ["float64 columns", "no rows of frame()"])
def test_an_empty_set_keeps_its_schema(tmp_path, empty) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # pandas types every column of an empty frame float64 when built from column names only.
    rows = (
        pd.DataFrame({c: pd.Series(dtype="float64") for c in frame().columns})
        if empty == "float64 columns"
        else frame().iloc[:0]
    )
    out = write_aligned_set(
        cfg(tmp_path), rows, feature_set="template", model_version="m", split_at=T,
        knowledge_ts=T - timedelta(days=1),
    )  # fmt: skip
    assert (out.rows, out.dim) == (0, 0)
    back = pq.read_table(out.path / "rows" / "part-00000.parquet")
    assert back.num_rows == 0
    assert back.schema.field("author_id").type == pa.string()
    assert back.schema.field("event_timestamp").type == pa.timestamp("us", tz="UTC")
    assert back.schema.field("created_timestamp").type == pa.timestamp("us", tz="UTC")
    assert back.schema.field(FEATURE).type == pa.list_(pa.float32())
    assert back.schema.field("knowledge_ts").type == pa.int64()
    assert back.schema.field("model_version").type == pa.string()


def test_a_frame_that_does_not_fit_the_schema_is_named(tmp_path) -> None:
    bad = frame().assign(knowledge_ts=["soon", "later"])
    with pytest.raises(LeakBuildError, match="does not fit the aligned schema"):
        write_aligned_set(
            cfg(tmp_path), bad, feature_set="template", model_version="m", split_at=T,
            knowledge_ts=T - timedelta(days=1),
        )  # fmt: skip


def test_definitions_take_the_dataset_ttl_and_the_shared_entity(tmp_path) -> None:
    from mspa_features.serving.definitions import entities
    from ranker_hooks.aligned_id.feast_defs import (
        aligned_root,
        build_aligned_definitions,
        read_aligned_folder,
    )

    c = cfg(tmp_path)
    out = write_aligned_set(
        c, frame(), feature_set="template", model_version="m", split_at=T, knowledge_ts=T0
    )
    # feature_sets.yaml names the folder: the same manifest as by run config and set name.
    assert read_aligned_folder(aligned_root(c) / "template") == out
    author, _, view, service = build_aligned_definitions(out, ttl=timedelta(days=36500))
    assert author == entities()[1]
    assert view.ttl == timedelta(days=36500)
    assert view.tags["leaked"] == "false"
    assert service.name == "aligned__template"


T0 = datetime(2024, 1, 1, tzinfo=UTC)
