"""The aligned-ID AIS variant: content -> ID-embedding alignment as a ranker feature.

M_T (IDs only, trained on ``[T0, T)``) gives the author-ID table; :func:`fit_id_adapter` learns
composer author embedding -> M_T row on warm authors (a content snapshot before T and an M_T
row); the adapter then predicts an ID-space embedding for every composer author snapshot,
warm or cold. The rows are visible from their snapshot's ``event_timestamp``, so a cold
author gets its embedding from the moment the composer describes it. Nothing at or after T
enters the adapter: not leaked, an AIS variant (``aligned_id``, service ``aligned__<fs>``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mspa_features.config import RunConfig, Workspace
from mspa_features.errors import LeakBuildError
from ranker_hooks.ablation.variants import Variant
from ranker_hooks.aligned_id.adapter import (
    AlignmentConfig,
    AlignmentReport,
    IdAdapter,
    fit_id_adapter,
)
from ranker_hooks.aligned_id.feast_defs import (
    FEATURE,
    AlignedSet,
    aligned_service_name,
    write_aligned_set,
)
from ranker_hooks.inject import InjectionSpec, service_exists
from ranker_hooks.lis.feast_defs import to_us, utc_timestamp
from ranker_hooks.lis.leaks.build import train_m_t
from ranker_hooks.lis.leaks.windows import checked_interactions
from ranker_hooks.rankers.base import IdEmbeddings, Ranker

if TYPE_CHECKING:
    from feast import FeatureStore

VARIANT = "aligned_id"


def content_snapshots(author_profiles: Path) -> pd.DataFrame:
    """Every author snapshot with an embedding: ``author_id``, timestamps, ``author_emb``.

    Raises:
        LeakBuildError: the folder holds no parquet or no embedding.
    """
    import pyarrow.dataset as ds

    folder = Path(author_profiles)
    if not folder.is_dir() or not any(folder.rglob("*.parquet")):
        raise LeakBuildError("content_snapshots", f"no parquet under {folder}")
    df = (
        ds.dataset(folder, format="parquet", partitioning="hive")
        .to_table(columns=["author_id", "event_timestamp", "created_timestamp", "author_emb"])
        .to_pandas()
    )
    df = df[df["author_emb"].notna()].reset_index(drop=True)
    if df.empty:
        raise LeakBuildError("content_snapshots", f"no author embedding under {folder}")
    df["author_id"] = df["author_id"].astype(str)
    for col in ("event_timestamp", "created_timestamp"):
        df[col] = pd.to_datetime(df[col], utc=True)
    return df


def latest_before(snapshots: pd.DataFrame, T: Any) -> IdEmbeddings:
    """Per author, the latest snapshot strictly before ``T`` (the adapter's training input)."""
    df = snapshots[snapshots["event_timestamp"] < utc_timestamp(T)]
    df = df.sort_values(["author_id", "event_timestamp"]).drop_duplicates("author_id", keep="last")
    return IdEmbeddings(
        kind="author",
        ids=df["author_id"].to_numpy(dtype=object),
        matrix=np.vstack(df["author_emb"].to_numpy()).astype(np.float32)
        if len(df)
        else np.zeros((0, 0), np.float32),
    )


def aligned_frame(
    adapter: IdAdapter, snapshots: pd.DataFrame, *, knowledge_ts: Any, model_version: str
) -> pd.DataFrame:
    """One feature row per snapshot: the adapter's ID-space prediction from its embedding.

    ``knowledge_ts`` of a row is the later of the adapter's knowledge (before T) and the
    snapshot's own time: the value depends on both, and neither is after the row's visibility
    once the adapter is known.
    """
    n = len(snapshots)
    # Positional ids: one author may have several snapshots, and predict() keys rows by id.
    content = IdEmbeddings(
        kind="author",
        ids=np.arange(n).astype(str).astype(object),
        matrix=np.vstack(snapshots["author_emb"].to_numpy()).astype(np.float32),
    )
    pred = adapter.predict(content).matrix  # (n, id_dim)
    snap_us = snapshots["event_timestamp"].to_numpy("datetime64[us]").astype(np.int64)
    return pd.DataFrame(
        {
            "author_id": snapshots["author_id"].to_numpy(dtype=object),
            "event_timestamp": snapshots["event_timestamp"].to_numpy(),
            "created_timestamp": snapshots["created_timestamp"].to_numpy(),
            FEATURE: [row.tolist() for row in pred],
            "knowledge_ts": np.maximum(snap_us, to_us(knowledge_ts)),
            "model_version": [model_version] * n,
        }
    )


@dataclass(kw_only=True)
class AlignedBuildReport:
    """What :func:`build_aligned_set` wrote, with the adapter's held-out quality."""

    aligned: AlignedSet
    alignment: AlignmentReport
    n_warm: int
    n_snapshots: int
    m_t_stats: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def aligned_model_version(cfg: AlignmentConfig, m_t: object, split_at: datetime) -> str:
    """``adapter[<loss>,h<hidden>,seed<seed>]+M_T[<ranker class>,<<T>]``: the adapter and the
    M_T whose ID space it predicts (61 bytes with the defaults and the torch ranker; another
    loss, a wider MLP or a longer ranker class name passes 62, and the rows then carry it
    shortened by :func:`~mspa_features.names.row_model_version`: the manifest and the view's
    ``full_model_version`` tag spell it out)."""
    return (
        f"adapter[{cfg.loss},h{cfg.hidden},seed{cfg.seed}]"
        f"+M_T[{type(m_t).__name__},<{split_at:%Y-%m-%dT%H:%M:%SZ}]"
    )


def build_aligned_set(
    run_cfg: RunConfig,
    *,
    split_at: datetime,
    train_start: datetime | None = None,
    feature_set: str = "template",
    make_ranker: Callable[[], Ranker] | None = None,
    interactions: pd.DataFrame | None = None,
    config: AlignmentConfig | None = None,
) -> AlignedBuildReport:
    """Train M_T on ``[train_start, split_at)``, fit the adapter on warm authors, write the set.

    Args:
        run_cfg: the run (dataset, workspace).
        split_at: T.
        train_start: T0 (default the first interaction).
        feature_set: the composer feature set whose ``author_profiles`` feed the adapter.
        make_ranker: a fresh unfitted ranker (default the torch ranker); seed it like the
            ablation's first seed and M_T is the same model the leak sets use.
        interactions: the interactions contract frame (default the run's accepted table).
        config: adapter hyper-parameters.

    Raises:
        LeakBuildError: bad interactions, an empty window, or no composer embedding.
    """
    t0 = time.perf_counter()
    if interactions is None:
        from mspa_features.data.ingest import load_accepted

        interactions = load_accepted(
            Workspace(run_cfg.workspace).data(run_cfg.name), "interactions"
        )
    df = checked_interactions(interactions, "build_aligned_set")
    T = utc_timestamp(split_at)
    m_t, train, stats = train_m_t(df, train_start, T, make_ranker, "build_aligned_set")
    table = m_t.export_id_embeddings("author")
    snaps = content_snapshots(
        Workspace(run_cfg.workspace).features(run_cfg.name) / feature_set / "author_profiles"
    )
    warm_content = latest_before(snaps, T)
    cfg = config or AlignmentConfig()
    try:
        adapter, report = fit_id_adapter(warm_content, table, cfg)
    except ValueError as e:
        raise LeakBuildError("build_aligned_set", str(e)) from e
    knowledge = train["event_timestamp"].max()
    version = aligned_model_version(cfg, m_t, T)
    frame = aligned_frame(adapter, snaps, knowledge_ts=knowledge, model_version=version)
    aligned = write_aligned_set(
        run_cfg,
        frame,
        feature_set=feature_set,
        model_version=version,
        split_at=T,
        knowledge_ts=knowledge,
    )
    warm = set(map(str, table.ids)) & set(map(str, warm_content.ids))
    return AlignedBuildReport(
        aligned=aligned,
        alignment=report,
        n_warm=len(warm),
        n_snapshots=len(frame),
        m_t_stats=dict(stats),
        seconds=time.perf_counter() - t0,
    )


def aligned_variants(store: FeatureStore, feature_set: str) -> tuple[list[Variant], list[str]]:
    """The ``aligned_id`` AIS variant if ``aligned__<fs>`` is registered, else a skip note."""

    service = aligned_service_name(feature_set)
    if not service_exists(store, service):
        note = (
            f"variant {VARIANT} skipped: service {service!r} is not registered "
            "(build and register the aligned set first)"
        )
        return [], [note]
    variant = Variant(
        name=VARIANT,
        kind="ais",
        service=service,
        spec=InjectionSpec(columns=(FEATURE,)),
        description="+ author content -> M_T ID-embedding (adapter)",
    )
    return [variant], []


__all__ = [
    "VARIANT",
    "AlignedBuildReport",
    "aligned_frame",
    "aligned_model_version",
    "aligned_variants",
    "build_aligned_set",
    "content_snapshots",
    "latest_before",
]
