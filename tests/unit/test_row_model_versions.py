"""Every ``model_version`` the product writes into a feature row fits one value of a Redis
listpack hash (``hash-max-listpack-value`` 64 by default; Feast stores the serialized
``ValueProto``, 2 bytes more than the string), long model paths and ids included, and the full
version stays findable: by its digest in the row, in a compact set's manifest, in an aligned
set's manifest (issue: every compact set's 74-byte ``model_version`` made its Redis hash a
hashtable)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from feast.protos.feast.types.Value_pb2 import Value

from mspa_features.compose.composer import TemplateComposer
from mspa_features.compose.feature_rows import feature_version
from mspa_features.config import DataConfig, RunConfig
from mspa_features.evaluation.compact import (
    FitRows,
    compact_model_version,
    fit_reducer,
    write_compact_set,
)
from mspa_features.generation.vllm_backend import VLLMBackend
from mspa_features.names import (
    MAX_MODEL_VERSION,
    model_version_digest,
    model_version_matches,
    row_model_version,
)
from mspa_features.serving.compact import MANIFEST, read_compact_folder
from ranker_hooks.aligned_id.adapter import AlignmentConfig
from ranker_hooks.aligned_id.build import aligned_model_version
from ranker_hooks.aligned_id.feast_defs import FEATURE, read_aligned_set, write_aligned_set
from ranker_hooks.rankers.torch_ranker import TorchRanker

#: Redis's default hash-max-listpack-value
LISTPACK_VALUE = 64
MINILM = "all-minilm-l6-v2:mean:17a7de5304b5"  # FlagTextEncoder's name:pooling:fingerprint
FIT = datetime(1998, 3, 1, tzinfo=UTC)


def _served_bytes(version: str) -> int:
    """What Feast's Redis store holds for the value: the serialized ValueProto."""
    return Value(string_val=version).ByteSize()


def _stub(version: str) -> SimpleNamespace:
    return SimpleNamespace(model_version=version)


def _vllm_version(model: str) -> str:
    """VLLMBackend's own version for a model id (no folder with config.json: the id itself)."""
    return VLLMBackend._fingerprint(
        SimpleNamespace(name="vllm", config=SimpleNamespace(model=model))
    )


class AVeryLongCustomRankerClassNameFromAUserPlugin:
    """A user's M_T ranker: its class name is part of the aligned set's version."""


# (what, composer version, encoder version): the composers and encoders the product builds
FULL_SETS = [
    ("template", TemplateComposer().model_version, MINILM),
    ("llm, llama.cpp", "llamacpp:0a1b2c3d4e5f", MINILM),
    ("llm, transformers (embedded SmolLM2)", "transformers:smollm2:0a1b2c3d4e5f", MINILM),
    (
        "llm, vLLM with a long hub id",
        _vllm_version("some-organisation/Qwen2.5-VL-72B-Instruct-AWQ-finetuned-on-our-catalogue"),
        MINILM,
    ),
    ("GRPO-aligned checkpoint", "transformers:smollm2-135m-grpo-0a1b2c3d4e:0a1b2c3d4e5f", MINILM),
    (
        "a user's encoder in a long local folder",
        "llamacpp:0a1b2c3d4e5f",
        "bge-large-en-v1.5-finetuned-on-the-2026-catalogue-with-hard-negatives:cls:0a1b2c3d4e5f",
    ),
    ("non-ASCII model folder", "transformers:" + "modèle-français-" * 5 + ":0a1b2c3d4e5f", MINILM),
]


@pytest.mark.parametrize(("what", "text", "encoder"), FULL_SETS, ids=[c[0] for c in FULL_SETS])
def test_full_and_compact_row_versions_fit_a_listpack_value(what, text, encoder) -> None:
    full = f"{text}|{encoder}"
    row = feature_version(_stub(text), _stub(encoder))
    assert len(row.encode()) <= MAX_MODEL_VERSION and _served_bytes(row) <= LISTPACK_VALUE
    if len(full.encode()) <= MAX_MODEL_VERSION:
        assert row == full  # a short version is written as it always was
    else:
        assert row.endswith("#" + model_version_digest(full))
        assert full.startswith(row[: row.index("#")])  # the readable head is the version's
    assert model_version_matches(full, row) and model_version_matches(text.split(":")[0], row)
    assert row_model_version(row) == row  # idempotent: a row version is never shortened again
    # Every compact set of this set, the widest reductions included.
    for method, dims, dtype in (
        ("pca", 16, "int8"),
        ("pca", 128, "float16"),
        ("truncate", 1024, "float16"),
    ):
        cv = compact_model_version(row, method, dims, dtype, FIT)
        assert len(cv.encode()) <= MAX_MODEL_VERSION and _served_bytes(cv) <= LISTPACK_VALUE
        assert model_version_matches(row, cv)


def test_the_template_set_and_its_compact_rows_read_as_before_with_a_digest() -> None:
    row = feature_version(TemplateComposer(), _stub(MINILM))
    assert row == "template-v2|all-minilm-l6-v2:mean:17a7de5304b5"  # 46 bytes, unchanged
    cv = compact_model_version(row, "pca", 16, "int8", FIT)
    assert cv == f"pca16-int8@fit<1998-03-01:{model_version_digest(row)}"
    # Feast's framing of a string (tag + length) is the 2 bytes MAX_MODEL_VERSION leaves.
    assert _served_bytes(cv) == len(cv) + 2 <= LISTPACK_VALUE
    assert _served_bytes(f"{row}|pca16-int8@fit<1998-03-01") > LISTPACK_VALUE  # the old form


def test_two_long_versions_with_one_head_stay_apart() -> None:
    a = "vllm:" + "x" * 60 + "-a"
    b = "vllm:" + "x" * 60 + "-b"
    ra, rb = row_model_version(a), row_model_version(b)
    assert ra != rb and ra[:49] == rb[:49]
    assert model_version_matches(a, ra) and not model_version_matches(a, rb)
    assert not model_version_matches(b, ra) and model_version_matches(b, rb)


def _source(versions: list[str], d: int = 8) -> dict[str, pd.DataFrame]:
    """A feature set's backfill as read_source returns it: 6 users, 6 authors, two ds."""
    rng = np.random.default_rng(0)
    ts = [pd.Timestamp("1998-02-01", tz="UTC") + pd.Timedelta(days=20 * i) for i in range(6)]

    def table(key: str, emb: str, extra: dict[str, list]) -> pd.DataFrame:
        return pd.DataFrame(
            {
                key: [f"{key[0]}{i}" for i in range(6)],
                "event_timestamp": ts,
                "created_timestamp": ts,
                emb: list(rng.normal(size=(6, d))),
                **extra,
                "model_version": [versions[i % len(versions)] for i in range(6)],
                "ds": [t.date().isoformat() for t in ts],
            }
        )

    return {
        "preferences": table(
            "user_id",
            "pref_emb",
            {"history_count": [3] * 6, "pref_status": ["ok"] * 6, "pref_decoding": ["none"] * 6},
        ),
        "author_profiles": table(
            "author_id",
            "author_emb",
            {"author_status": ["ok"] * 6, "author_decoding": ["none"] * 6},
        ),
    }


def test_compact_rows_carry_a_short_version_and_the_manifest_the_lineage(tmp_path) -> None:
    import pyarrow.dataset as ds

    old = "template-v1|all-minilm-l6-v2:mean:0a1b2c3d4e5f"
    new = feature_version(TemplateComposer(), _stub(MINILM))
    source = _source([old, new])
    x = np.concatenate([np.stack(source[t].iloc[:, 3].tolist()) for t in source])
    reducer = fit_reducer(x, "pca", 4)
    fit = FitRows(counts={"preferences": 6, "author_profiles": 6}, max_event_timestamp=None, x=x)
    m = write_compact_set(
        source,
        tmp_path / "template_pca4_int8",
        reducer,
        "int8",
        name="template_pca4_int8",
        source_set="template",
        source_dir=tmp_path,
        fit_before=FIT,
        fit=fit,
    )
    lineage = {compact_model_version(v, "pca", 4, "int8", FIT): v for v in (old, new)}
    assert m.source_model_versions == lineage and len(lineage) == 2  # one per source version
    assert m.model_version == "+".join(sorted(lineage))
    for table, key in (("preferences", "user_id"), ("author_profiles", "author_id")):
        rows = ds.dataset(tmp_path / "template_pca4_int8" / table, partitioning="hive").to_table()
        got = rows.to_pandas().sort_values(key)
        for served, want in zip(got["model_version"], source[table]["model_version"], strict=True):
            assert _served_bytes(served) <= LISTPACK_VALUE
            assert m.source_model_versions[served] == want  # each row names its own source
            assert model_version_matches(want, served)
    assert read_compact_folder(tmp_path / "template_pca4_int8") == m

    # A manifest written before the lineage was recorded still reads.
    doc = json.loads((tmp_path / "template_pca4_int8" / MANIFEST).read_text())
    del doc["source_model_versions"]
    (tmp_path / "template_pca4_int8" / MANIFEST).write_text(json.dumps(doc))
    assert read_compact_folder(tmp_path / "template_pca4_int8").source_model_versions == {}


def test_an_aligned_id_set_serves_a_short_version_and_keeps_the_full_one(tmp_path) -> None:
    import pyarrow.parquet as pq

    T = datetime(2024, 2, 1, tzinfo=UTC)
    default = aligned_model_version(AlignmentConfig(), TorchRanker(), T)
    assert len(default.encode()) <= MAX_MODEL_VERSION  # the usual one is written as is
    full = aligned_model_version(
        AlignmentConfig(loss="contrastive", hidden=1024, seed=12),
        AVeryLongCustomRankerClassNameFromAUserPlugin(),
        T,
    )
    assert len(full.encode()) > MAX_MODEL_VERSION
    ts = pd.Timestamp("2024-01-05", tz="UTC")
    frame = pd.DataFrame(
        {
            "author_id": ["a0", "a1"],
            "event_timestamp": [ts, ts],
            "created_timestamp": [ts, ts],
            FEATURE: [[0.1, 0.2], [0.3, 0.4]],
            "knowledge_ts": [0, 0],
            "model_version": [full, full],
        }
    )
    cfg = RunConfig(name="toy", workspace=tmp_path / "ws", data=DataConfig(source="movielens"))
    out = write_aligned_set(
        cfg, frame, feature_set="template", model_version=full, split_at=T,
        knowledge_ts=T - timedelta(days=1),
    )  # fmt: skip
    served = pq.read_table(out.path / "rows" / "part-00000.parquet").column("model_version")
    assert set(served.to_pylist()) == {out.model_version} == {row_model_version(full)}
    assert _served_bytes(out.model_version) <= LISTPACK_VALUE
    assert out.full_model_version == full and out.tags["full_model_version"] == full
    assert read_aligned_set(cfg, "template") == out
