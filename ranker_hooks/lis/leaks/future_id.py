"""Leak 1 of the LIS paper: ID embeddings from the future.

M_T is a ranker trained on rows before day T. M_{T+n} is the SAME model warm-started from M_T
and trained on through T+n (rows in ``[T, T+n)``), so both author tables live in one embedding
space; a model trained from scratch would not be a valid M_{T+n}. The leaked model is M_T with
exactly its author-ID table replaced by M_{T+n}'s; everything else (user table, dense tower)
stays M_T's. Only :class:`ranker_hooks.rankers.base.Ranker` is used, so every backend qualifies.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from mspa_features.data.contracts import TS
from mspa_features.errors import LeakBuildError
from ranker_hooks.lis.feast_defs import to_us, utc_timestamp
from ranker_hooks.rankers.base import IdEmbeddings, IdKind, Ranker, RankerData

LEAK_KIND = "future_id"
FEATURE = "future_author_id_emb"
#: The arrow schema of a future-id leak table, the same whether it has rows or not.
FRAME_SCHEMA = pa.schema(
    [
        pa.field("author_id", pa.string()),
        pa.field("event_timestamp", TS),
        pa.field("created_timestamp", TS),
        pa.field(FEATURE, pa.list_(pa.float32())),
        pa.field("knowledge_ts", pa.int64()),
    ]
)


@dataclass(frozen=True, kw_only=True)
class FutureIdSwap:
    """What :func:`future_id_swap` built.

    Attributes:
        swapped: M_T with its ``kind`` table replaced by M_{T+n}'s (the LIS variant).
        future: M_{T+n} itself (warm-started from M_T).
        table: the table swapped in (M_{T+n}'s, every id it has seen).
        horizon_days: n.
        fit_stats: what ``future.fit`` returned.
    """

    swapped: Ranker
    future: Ranker
    table: IdEmbeddings
    horizon_days: int
    fit_stats: dict[str, float]


def check_window(data: RankerData, start: datetime | None, end: datetime | None, what: str) -> None:
    """Raise unless every row of ``data`` has ``start <= event_ts < end`` (either bound optional).

    Raises:
        LeakBuildError: ``event_ts`` is missing, or names the first row outside the window.
    """
    if start is None and end is None:
        return
    if data.event_ts is None:
        raise LeakBuildError(
            what, "event_ts is required to check the time window", field="event_ts"
        )
    ts = np.asarray(data.event_ts, dtype=np.int64)
    bad = np.zeros(len(ts), dtype=bool)
    if start is not None:
        bad |= ts < to_us(start)
    if end is not None:
        bad |= ts >= to_us(end)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        when = pd.Timestamp(int(ts[i]), unit="us", tz="UTC")
        raise LeakBuildError(
            what,
            f"event_ts {when} is outside [{start}, {end}) ({int(bad.sum())} such rows)",
            record=f"row {i} (user {data.user_ids[i]}, author {data.author_ids[i]})",
            field="event_ts",
        )


def _copy(ranker: Ranker, folder: Path) -> Ranker:
    """A bit-for-bit copy of ``ranker`` through its own save/load."""
    ranker.save(folder)
    return type(ranker).load(folder)


def _same_table(a: IdEmbeddings, b: IdEmbeddings) -> bool:
    return bool(
        np.array_equal(np.asarray(a.ids), np.asarray(b.ids)) and np.array_equal(a.matrix, b.matrix)
    )


def future_id_swap(
    ranker_T: Ranker,
    train_through_T_plus_n: RankerData,
    n: int,
    *,
    T: datetime | None = None,
    kind: IdKind = "author",
    workdir: Path | None = None,
) -> FutureIdSwap:
    """Build M_{T+n} by warm-starting a copy of M_T, and M_T with M_{T+n}'s ``kind`` table.

    ``ranker_T`` itself is never modified.

    Args:
        ranker_T: the fitted M_T.
        train_through_T_plus_n: rows to continue training on (labels required); with ``T``
            set, every row must fall in ``[T, T + n days)``.
        n: horizon in days (the paper uses 7 and 30).
        T: the end of M_T's training window; enables the window check.
        kind: which table to swap; the paper swaps the item (author) table.
        workdir: where the save/load copies go (default a temporary folder, removed after).

    Returns:
        The swapped model, M_{T+n}, the swapped-in table and the fit statistics.

    Raises:
        LeakBuildError: ``n`` is not positive, a row lies outside ``[T, T+n)``, or the
            ranker's save/load does not reproduce M_T's table (warm start would be invalid).
    """
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise LeakBuildError("future_id_swap", f"horizon n must be a positive integer, got {n!r}")
    end = T + timedelta(days=int(n)) if T is not None else None
    check_window(train_through_T_plus_n, T, end, "future_id_swap")
    if train_through_T_plus_n.labels is None:
        raise LeakBuildError(
            "future_id_swap", "labels are required to train M_{T+n}", field="labels"
        )

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp_path = Path(tmp)
        future = _copy(ranker_T, tmp_path / "future")
        # Continuity: M_{T+n} must start from M_T's weights, or the spaces would not match.
        start_table = future.export_id_embeddings(kind)
        if not _same_table(start_table, ranker_T.export_id_embeddings(kind)):
            raise LeakBuildError(
                "future_id_swap",
                f"{type(ranker_T).__name__}.save/load did not reproduce the {kind} table; "
                "M_{T+n} would not continue M_T",
            )
        if len(train_through_T_plus_n.labels) == 0:
            # Nothing happened in [T, T+n): M_{T+n} is M_T and nothing leaks (said, not an error).
            stats: dict[str, float] = {"rows": 0.0}
        else:
            stats = future.fit(train_through_T_plus_n, warm_start=True)
        table = future.export_id_embeddings(kind)
        swapped = _copy(ranker_T, tmp_path / "swapped")
        swapped.load_id_embeddings(table)
    return FutureIdSwap(
        swapped=swapped,
        future=future,
        table=table,
        horizon_days=int(n),
        fit_stats=dict(stats),
    )


def future_id_frame(
    swap: FutureIdSwap, *, visible_from: datetime, knowledge_ts: datetime
) -> pd.DataFrame:
    """The swapped-in author table as leak feature rows (one per author), for Feast.

    Args:
        swap: the result of :func:`future_id_swap` (an author swap).
        visible_from: ``event_timestamp`` of every row: the leak is deliberately visible to
            every row from then on (use the start of the data so training rows see it too).
        knowledge_ts: the latest instant the table depends on (the end of ``[T, T+n)``).

    Returns:
        Columns ``author_id``, ``event_timestamp``, ``created_timestamp``,
        ``future_author_id_emb`` (list of float32), ``knowledge_ts`` (UTC microseconds).
    """
    if swap.table.kind != "author":
        raise LeakBuildError("future_id_frame", f"needs an author table, got {swap.table.kind!r}")
    ts = utc_timestamp(visible_from)
    n = len(swap.table.ids)
    return pd.DataFrame(
        {
            "author_id": pd.Series([str(a) for a in swap.table.ids], dtype=object),
            "event_timestamp": [ts] * n,
            "created_timestamp": [ts] * n,
            FEATURE: [row.astype(np.float32).tolist() for row in swap.table.matrix],
            "knowledge_ts": np.full(n, to_us(knowledge_ts), dtype=np.int64),
        }
    )


__all__ = [
    "FEATURE",
    "FRAME_SCHEMA",
    "LEAK_KIND",
    "FutureIdSwap",
    "check_window",
    "future_id_frame",
    "future_id_swap",
]
