"""Build every leak set of a run in one pass: M_T once, then per horizon n the three leaks.

M_T is an ID-only ranker trained on ``[T0, T)``. Per horizon n:

* ``future_id_n<n>``: M_{T+n}'s author table (M_T warm-started on ``[T, T+n)``);
* ``similar_items_n<n>``: top-k authors by co-occurrence in ``[T, T+n)``, with the mean of
  their M_T author embeddings (the neighbours are leaked, the embedding space is M_T's);
* ``next_positive_n<n>``: the user's next positive within n days, with its M_T embedding.

Sets are written under ``<workspace>/features/<dataset>/leaks/`` and registered with
:func:`ranker_hooks.lis.feast_defs.register_leaks`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from mspa_features.config import RunConfig, Workspace
from mspa_features.errors import LeakBuildError
from ranker_hooks.lis.feast_defs import (
    LEAK_KINDS,
    LeakSet,
    leaks_root,
    utc_timestamp,
    write_leak_set,
)
from ranker_hooks.lis.leaks.future_id import FRAME_SCHEMA as FUTURE_SCHEMA
from ranker_hooks.lis.leaks.future_id import future_id_frame, future_id_swap
from ranker_hooks.lis.leaks.next_positive import frame_schema as next_schema
from ranker_hooks.lis.leaks.next_positive import next_positive
from ranker_hooks.lis.leaks.similar_items import empty_frame as empty_similar
from ranker_hooks.lis.leaks.similar_items import frame_schema as similar_schema
from ranker_hooks.lis.leaks.similar_items import similar_items
from ranker_hooks.lis.leaks.windows import checked_interactions, in_window
from ranker_hooks.rankers.base import Ranker, RankerData

DEFAULT_HORIZONS = (7, 30)


def ids_only(rows: pd.DataFrame) -> RankerData:
    """Ranker rows with IDs, labels and timestamps only (the baseline's inputs)."""
    return RankerData(
        user_ids=rows["user_id"].astype(str).to_numpy(dtype=object),
        author_ids=rows["author_id"].astype(str).to_numpy(dtype=object),
        dense=np.zeros((len(rows), 0), dtype=np.float32),
        labels=rows["label"].to_numpy(dtype=np.int8),
        event_ts=rows["event_timestamp"].to_numpy("datetime64[us]").astype(np.int64),
    )


def _default_ranker() -> Ranker:
    from ranker_hooks.rankers.torch_ranker import TorchRanker

    return TorchRanker()


def train_m_t(
    df: pd.DataFrame,
    train_start: datetime | None,
    T: pd.Timestamp,
    make_ranker: Callable[[], Ranker] | None,
    builder: str,
) -> tuple[Ranker, pd.DataFrame, dict[str, float]]:
    """M_T: a fresh ranker (default the torch ranker) fitted on the IDs of ``[train_start, T)``.

    The model the leak sets (:func:`build_leak_sets`) and the aligned ID set
    (``ranker_hooks.aligned_id.build``) both start from.

    Returns:
        (M_T, its training rows, its fit statistics).

    Raises:
        LeakBuildError: the window lacks a positive or a negative (named after ``builder``).
    """
    train = in_window(df, train_start, T)
    if train.empty or train["label"].nunique() < 2:
        raise LeakBuildError(builder, f"M_T's window [{train_start}, {T}) needs both labels")
    m_t = (make_ranker or _default_ranker)()
    stats = m_t.fit(ids_only(train))
    return m_t, train, dict(stats)


@dataclass(kw_only=True)
class LeakBuildReport:
    """What :func:`build_leak_sets` wrote, with M_T's training statistics."""

    split_at: datetime
    train_rows: int
    m_t_stats: dict[str, float]
    leak_sets: dict[str, LeakSet] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def build_leak_sets(
    run_cfg: RunConfig,
    *,
    split_at: datetime,
    train_start: datetime | None = None,
    horizons: Sequence[int] = DEFAULT_HORIZONS,
    kinds: Sequence[str] = LEAK_KINDS,
    make_ranker: Callable[[], Ranker] | None = None,
    k: int = 5,
    interactions: pd.DataFrame | None = None,
    workdir: Path | None = None,
) -> LeakBuildReport:
    """Train M_T on ``[train_start, split_at)`` and write the leak sets for every horizon.

    Args:
        run_cfg: the run (dataset name, workspace).
        split_at: T, the end of M_T's training window.
        train_start: T0 (default the first interaction).
        horizons: n values in days.
        kinds: which leaks to build (default all three).
        make_ranker: a fresh unfitted ranker (default the torch ranker).
        k: neighbours per author for the similar-items leak.
        interactions: the interactions contract frame (default the run's accepted table).
        workdir: where save/load copies go during the swap.

    A horizon whose window holds nothing is not an error: its sets are written empty (with
    their schemas) or, for future IDs, with M_T's own table, and :attr:`LeakBuildReport.notes`
    says so.

    Raises:
        LeakBuildError: bad interactions, an unknown kind, or M_T's window lacks a label.
    """
    t0 = time.perf_counter()
    unknown = [x for x in kinds if x not in LEAK_KINDS]
    if unknown:
        raise LeakBuildError(
            "build_leak_sets", f"unknown kinds {unknown}; valid: {list(LEAK_KINDS)}"
        )
    if interactions is None:
        from mspa_features.data.ingest import load_accepted

        interactions = load_accepted(
            Workspace(run_cfg.workspace).data(run_cfg.name), "interactions"
        )
    df = checked_interactions(interactions, "build_leak_sets")
    T = utc_timestamp(split_at)
    first = df["event_timestamp"].min()
    m_t, train, stats = train_m_t(df, train_start, T, make_ranker, "build_leak_sets")
    table_t = m_t.export_id_embeddings("author")
    root = leaks_root(run_cfg)
    report = LeakBuildReport(
        split_at=T.to_pydatetime(), train_rows=len(train), m_t_stats=dict(stats)
    )
    for n in horizons:
        end = T + timedelta(days=int(n))
        window = {"horizon_days": int(n), "window_start": T, "window_end": end}
        future = in_window(df, T, end)
        if "future_id" in kinds:
            if future.empty:
                report.notes.append(
                    f"future_id_n{n}: no interaction in [{T}, {end}): M_T+{n}d is M_T, "
                    "nothing leaks"
                )
            swap = future_id_swap(
                m_t, ids_only(future), int(n), T=T.to_pydatetime(), workdir=workdir
            )
            frame = future_id_frame(
                swap,
                visible_from=first,
                knowledge_ts=future["event_timestamp"].max() if len(future) else T,
            )
            leak = write_leak_set(
                root, frame, kind="future_id", key="author_id", schema=FUTURE_SCHEMA, **window
            )
            report.leak_sets[leak.name] = leak
        if "similar_items" in kinds:
            if (future["label"] == 1).any():
                frame = similar_items(df, start=T, end=end, k=k, embeddings=table_t)
            else:
                frame = empty_similar(embeddings=True)
            if frame.empty:
                report.notes.append(
                    f"similar_items_n{n}: no author has a co-engaged neighbour in [{T}, {end}) "
                    "(written empty, with its schema)"
                )
            leak = write_leak_set(
                root,
                frame,
                kind="similar_items",
                key="author_id",
                schema=similar_schema(embeddings=True),
                **window,
            )
            report.leak_sets[leak.name] = leak
        if "next_positive" in kinds:
            frame = next_positive(df, horizon_days=int(n), embeddings=table_t)
            leak = write_leak_set(
                root,
                frame,
                kind="next_positive",
                horizon_days=int(n),
                key="user_id",
                window_start=first,
                window_end=df["event_timestamp"].max() + pd.Timedelta(microseconds=1),
                schema=next_schema(embeddings=True),
            )
            report.leak_sets[leak.name] = leak
    report.seconds = time.perf_counter() - t0
    return report


__all__ = ["DEFAULT_HORIZONS", "LeakBuildReport", "build_leak_sets", "ids_only", "train_m_t"]
