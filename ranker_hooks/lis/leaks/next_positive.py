"""Leak 3 of the LIS paper (its worked example): the user's next positive author.

One snapshot row per (user, interaction instant) in the window: from time t on, the feature
holds the user's first positive strictly after t (within ``horizon_days``), or nulls when there
is none. A point-in-time join of any row at t therefore reads the next positive after t (the
row's own label is never the value: "strictly after"). Deliberately leaked: ``knowledge_ts``
(the instant of that next positive) is always later than ``event_timestamp``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from mspa_features.data.contracts import TS
from mspa_features.errors import LeakBuildError
from ranker_hooks.lis.leaks.windows import checked_interactions, in_window
from ranker_hooks.rankers.base import IdEmbeddings

LEAK_KIND = "next_positive"
NEXT_ID, NEXT_IN_S, NEXT_EMB = "next_positive_author_id", "next_positive_in_s", "next_positive_emb"


def frame_schema(*, embeddings: bool) -> pa.Schema:
    """The arrow schema of a next-positive leak table, the same whether it has rows or not."""
    fields = [
        pa.field("user_id", pa.string()),
        pa.field("event_timestamp", TS),
        pa.field("created_timestamp", TS),
        pa.field(NEXT_ID, pa.string()),
        pa.field(NEXT_IN_S, pa.int64()),
    ]
    if embeddings:
        fields.append(pa.field(NEXT_EMB, pa.list_(pa.float32())))
    return pa.schema([*fields, pa.field("knowledge_ts", pa.int64())])


def next_positive(
    interactions: pd.DataFrame,
    *,
    horizon_days: int,
    start: Any | None = None,
    end: Any | None = None,
    embeddings: IdEmbeddings | None = None,
) -> pd.DataFrame:
    """Per user and interaction instant in ``[start, end)``: the next positive within the horizon.

    The next positive may lie after ``end`` (that is the leak); it is looked up in all of
    ``interactions``.

    Args:
        interactions: the interactions contract (tz-aware UTC ``event_timestamp``).
        horizon_days: only positives at most this many days ahead count.
        start, end: which snapshot instants to write (default all).
        embeddings: an author table; when given, adds the next positive's embedding.

    Returns:
        ``user_id``, ``event_timestamp`` (= created_timestamp, the snapshot instant),
        ``next_positive_author_id`` (null when none), ``next_positive_in_s``,
        optionally ``next_positive_emb``, and ``knowledge_ts`` (UTC microseconds: the next
        positive's instant, or the snapshot instant when there is none).

    Raises:
        LeakBuildError: bad interactions (row and field named) or ``horizon_days < 1``.
    """
    if isinstance(horizon_days, bool) or int(horizon_days) != horizon_days or horizon_days < 1:
        raise LeakBuildError(
            "next_positive", f"horizon_days must be a positive integer, got {horizon_days!r}"
        )
    df = checked_interactions(interactions, "next_positive")
    horizon_us = int(horizon_days) * 86_400 * 1_000_000
    snaps = in_window(df, start, end)[["user_id", "event_timestamp"]].drop_duplicates()
    snaps = snaps.sort_values(["user_id", "event_timestamp"], kind="stable").reset_index(drop=True)
    pos = df.loc[df["label"] == 1, ["user_id", "author_id", "event_timestamp"]]
    # Several positives at one instant: keep one (the smallest author id), deterministic.
    pos = pos.sort_values(["user_id", "event_timestamp", "author_id"], kind="stable")
    pos = pos.drop_duplicates(["user_id", "event_timestamp"]).reset_index(drop=True)

    snap_us = snaps["event_timestamp"].to_numpy("datetime64[us]").astype(np.int64)
    pos_us = pos["event_timestamp"].to_numpy("datetime64[us]").astype(np.int64)
    next_id = np.full(len(snaps), None, dtype=object)
    next_us = np.full(len(snaps), -1, dtype=np.int64)
    pos_groups = pos.groupby("user_id", sort=False).indices
    for user, rows in snaps.groupby("user_id", sort=False).indices.items():
        prow = pos_groups.get(user)
        if prow is None:
            continue
        p_us = pos_us[prow]  # ascending within the user
        j = np.searchsorted(p_us, snap_us[rows], side="right")  # first positive strictly after
        ok = j < len(p_us)
        jj = np.where(ok, j, 0)
        ok &= p_us[jj] - snap_us[rows] <= horizon_us
        next_id[rows[ok]] = pos["author_id"].to_numpy()[prow][jj[ok]]
        next_us[rows[ok]] = p_us[jj[ok]]
    has = next_us >= 0
    frame = pd.DataFrame(
        {
            "user_id": snaps["user_id"],
            "event_timestamp": snaps["event_timestamp"].astype("datetime64[us, UTC]"),
            "created_timestamp": snaps["event_timestamp"].astype("datetime64[us, UTC]"),
            NEXT_ID: next_id,
            NEXT_IN_S: pd.Series((next_us - snap_us) // 1_000_000, dtype="Int64").where(has),
        }
    )
    if embeddings is not None:
        rows = {str(i): r for i, r in zip(embeddings.ids, embeddings.matrix, strict=True)}
        frame[NEXT_EMB] = [
            rows[a].astype(np.float32).tolist() if a is not None and a in rows else None
            for a in next_id
        ]
    frame["knowledge_ts"] = np.where(has, next_us, snap_us).astype(np.int64)
    return frame


__all__ = ["LEAK_KIND", "NEXT_EMB", "NEXT_ID", "NEXT_IN_S", "frame_schema", "next_positive"]
