"""Aligned ID-embedding sets: a content -> ID adapter's predicted author-ID embeddings, stored and
registered like a feature set (NOT leaked: the adapter and the ID table it imitates see only
interactions before the split T).

One set per composer feature set ``<fs>``, in ``<workspace>/features/<dataset>/aligned/<fs>/``:
``rows/part-00000.parquet`` (``author_id``, ``event_timestamp``, ``created_timestamp``,
``aligned_author_id_emb``, ``knowledge_ts``, ``model_version``; one row per composer author
snapshot, visible from that snapshot's ``event_timestamp``) and ``aligned.json`` (the manifest).

=================================  =================================================
``aligned_author_id__<fs>``        the author feature view
``aligned__<fs>``                  the feature service the ``aligned_id`` variant reads
=================================  =================================================

Both carry ``leaked="false"``, ``model_version`` (adapter + M_T), ``feature_set``, ``split_at``.
The ranker hooks build the rows (:mod:`ranker_hooks.aligned_id.build`); this module stores and
registers them, so the library never imports the hooks. The view takes the dataset's TTL policy
(``features.ttl_days``, as the composer's author view), and registering a set lists it in the
run's store file (``feature_sets.yaml``), so ``feast plan`` there declares it too.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from mspa_features.config import RunConfig, Workspace
from mspa_features.errors import FeatureRepoError, LeakBuildError
from mspa_features.names import row_model_version
from ranker_hooks.lis.feast_defs import utc_timestamp

FEATURE = "aligned_author_id_emb"
MANIFEST = "aligned.json"
ROWS = "rows"
_COLUMNS = ("author_id", "event_timestamp", "created_timestamp", FEATURE, "knowledge_ts")


def aligned_schema() -> Any:
    """The rows' ``pyarrow.Schema``: written with every set, so an empty one keeps string ids,
    UTC timestamps and a float32 list (pandas would type an empty frame's columns float64)."""
    import pyarrow as pa

    from mspa_features.data.contracts import EMB, TS

    return pa.schema(
        [
            pa.field("author_id", pa.string(), nullable=False),
            pa.field("event_timestamp", TS, nullable=False),
            pa.field("created_timestamp", TS, nullable=False),
            pa.field(FEATURE, EMB, nullable=False),
            pa.field("knowledge_ts", pa.int64(), nullable=False),  # UTC microseconds
            pa.field("model_version", pa.string(), nullable=False),
        ]
    )


def aligned_view_name(fs: str) -> str:
    return f"aligned_author_id__{fs}"


def aligned_service_name(fs: str) -> str:
    return f"aligned__{fs}"


def aligned_root(cfg: RunConfig) -> Path:
    """``<workspace>/features/<dataset>/aligned`` (no ``preferences`` folder: not a feature set)."""
    return Workspace(cfg.workspace).features(cfg.name) / "aligned"


@dataclass(frozen=True, kw_only=True)
class AlignedSet:
    """One written aligned set (the ``aligned.json`` manifest plus where it lives).

    Attributes:
        feature_set: the composer feature set whose author embeddings were the adapter input.
        model_version: names the adapter and the M_T whose ID space it predicts, as the rows
            carry it (:func:`~mspa_features.names.row_model_version`: a head and a digest when
            longer than 62 bytes); ``full_model_version`` spells it out.
        split_at: T; the adapter and M_T used only interactions before it (ISO 8601, UTC).
        knowledge_ts: the latest interaction the adapter depends on (ISO 8601, UTC; < T).
        dim: embedding width.
        rows: number of feature rows.
        path: the set's folder.
    """

    feature_set: str
    model_version: str
    split_at: str
    knowledge_ts: str
    dim: int
    rows: int
    path: Path
    full_model_version: str = ""  # "" in manifests written before it was recorded

    @property
    def tags(self) -> dict[str, str]:
        return {
            "leaked": "false",
            "model_version": self.model_version,
            "full_model_version": self.full_model_version or self.model_version,
            "feature_set": self.feature_set,
            "split_at": self.split_at,
            "knowledge_ts": self.knowledge_ts,
        }


def write_aligned_set(
    cfg: RunConfig,
    frame: pd.DataFrame,
    *,
    feature_set: str,
    model_version: str,
    split_at: Any,
    knowledge_ts: Any,
) -> AlignedSet:
    """Write ``frame`` as the aligned set of ``feature_set`` (replacing a previous one).

    The rows are written with :func:`aligned_schema` (an empty frame too); a frame without a
    ``model_version`` column gets ``model_version``.

    Raises:
        LeakBuildError: a missing or null column (row named), a column that does not fit the
            schema, or ``knowledge_ts`` not before ``split_at`` (the set would not be
            point-in-time clean for the evaluation window).
    """
    import pyarrow as pa

    from mspa_features.io import write_parquet_atomic

    where = f"write_aligned_set({feature_set})"
    for col in _COLUMNS:
        if col not in frame.columns:
            raise LeakBuildError(where, "is missing from the frame", field=col)
        nulls = frame[col].isna().to_numpy()
        if nulls.any():
            raise LeakBuildError(where, "is null", record=f"row {int(nulls.argmax())}", field=col)
    T, known = utc_timestamp(split_at), utc_timestamp(knowledge_ts)
    if known >= T:
        raise LeakBuildError(where, f"adapter knowledge {known} is not before T={T}")
    folder = aligned_root(cfg) / feature_set
    rows = frame.reset_index(drop=True)
    if "model_version" not in rows.columns:
        rows = rows.assign(model_version=model_version)
    if not rows.empty:  # the online value stays short enough for a Redis listpack hash
        rows = rows.assign(model_version=[row_model_version(str(v)) for v in rows["model_version"]])
    schema = aligned_schema()
    try:
        # An empty frame's columns carry no usable type (float64 from pandas): its schema does.
        table = (
            schema.empty_table()
            if rows.empty
            else pa.Table.from_pandas(rows[schema.names], schema=schema, preserve_index=False)
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError) as e:
        raise LeakBuildError(where, f"frame does not fit the aligned schema: {e}") from e
    write_parquet_atomic(table, folder / ROWS / "part-00000.parquet")
    out = AlignedSet(
        feature_set=feature_set,
        model_version=row_model_version(model_version),
        full_model_version=model_version,
        split_at=T.isoformat(),
        knowledge_ts=known.isoformat(),
        dim=len(frame[FEATURE].iloc[0]) if len(frame) else 0,
        rows=len(frame),
        path=folder.resolve(),
    )
    manifest = {k: v for k, v in asdict(out).items() if k != "path"}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def read_aligned_set(cfg: RunConfig, feature_set: str) -> AlignedSet:
    """The manifest of ``feature_set``'s aligned set.

    Raises:
        FeatureRepoError: no readable ``aligned.json``.
    """
    return read_aligned_folder(aligned_root(cfg) / feature_set)


def read_aligned_folder(folder: Path) -> AlignedSet:
    """The manifest of the aligned set in ``folder`` (``aligned.json``).

    Raises:
        FeatureRepoError: no readable ``aligned.json``.
    """
    folder = Path(folder)
    path = folder / MANIFEST
    try:
        return AlignedSet(**json.loads(path.read_text()), path=folder.resolve())
    except (OSError, json.JSONDecodeError, TypeError) as e:
        raise FeatureRepoError(f"{path}: not an aligned set manifest ({e})") from e


def build_aligned_definitions(
    aligned: AlignedSet,
    *,
    source_kind: Literal["file", "spark"] = "file",
    ttl: timedelta = timedelta(days=365),
) -> list[Any]:
    """The Feast objects of one aligned set: the author entity, source, view and service.

    Args:
        aligned: the set's manifest.
        source_kind: ``file`` (duckdb offline store) or ``spark``.
        ttl: the view's TTL: the dataset's policy, as the composer's author view.
    """
    from feast import FeatureService, FeatureView, Field
    from feast.types import Array, Float32, Int64, String

    from mspa_features.serving.definitions import _source, entities

    fs = aligned.feature_set
    # The entity of every MSPA author view: re-applying it changes nothing.
    _, author = entities()
    source = _source(
        f"aligned_rows__{fs}", aligned.path / ROWS, source_kind, f"aligned author-ID rows ({fs})"
    )
    view = FeatureView(
        name=aligned_view_name(fs),
        entities=[author],
        ttl=ttl,  # as the composer's author view: a snapshot stays valid
        schema=[
            Field(name=FEATURE, dtype=Array(Float32), vector_length=aligned.dim),
            Field(name="knowledge_ts", dtype=Int64, description="UTC us the value depends on"),
            Field(name="model_version", dtype=String),
        ],
        source=source,
        online=True,
        tags=aligned.tags,
        description=f"content -> ID adapter's author-ID embedding from {fs} (trained before T)",
    )
    service = FeatureService(
        name=aligned_service_name(fs),
        features=[view[[FEATURE]]],
        tags={**aligned.tags, "variant": "aligned_id"},
        description=f"ranker variant 'aligned_id' on feature set '{fs}'",
    )
    return [author, source, view, service]


def register_aligned(
    cfg: RunConfig,
    feature_set: str,
    *,
    repo_path: Path = Path("feature_repo"),
    store_yaml: Path | None = None,
) -> dict[str, Any]:
    """Apply ``feature_set``'s aligned view and service to the run's Feast store.

    Returns:
        ``{"view", "service", "tags", "seconds"}``.

    Raises:
        FeatureRepoError: the set is not built.
    """
    from mspa_features.serving.materialize import (
        open_store,
        record_infra,
        store_lock,
        write_run_repo,
    )
    from mspa_features.serving.repo import FolderEntry, load_feature_sets, update_feature_sets

    t0 = time.perf_counter()
    aligned = read_aligned_set(cfg, feature_set)
    with store_lock(cfg, "register aligned set"):
        store = open_store(cfg, repo_path=repo_path, store_yaml=store_yaml)
        source_kind = "spark" if store.config.offline_store.type == "spark" else "file"
        store_dir = write_run_repo(cfg, repo_path=repo_path, store_yaml=store_yaml)
        sets_file = store_dir / "feature_sets.yaml"
        # The store's TTL policy (what its feature sets were applied with), else the config's.
        ttl = (
            load_feature_sets(sets_file).ttl
            if sets_file.is_file()
            else timedelta(days=cfg.features.ttl_days)
        )
        store.apply(build_aligned_definitions(aligned, source_kind=source_kind, ttl=ttl))
        record_infra(store)

        def add(fsf: Any) -> None:
            fsf.aligned_sets[feature_set] = FolderEntry(path=aligned.path)

        update_feature_sets(store_dir, add, ttl=ttl)
    return {
        "view": aligned_view_name(feature_set),
        "service": aligned_service_name(feature_set),
        "tags": aligned.tags,
        "seconds": time.perf_counter() - t0,
    }


__all__ = [
    "FEATURE",
    "AlignedSet",
    "aligned_root",
    "aligned_schema",
    "aligned_service_name",
    "aligned_view_name",
    "build_aligned_definitions",
    "read_aligned_folder",
    "read_aligned_set",
    "register_aligned",
    "write_aligned_set",
]
