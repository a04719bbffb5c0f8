"""Interaction frames for the leak builders: checked columns and half-open time windows."""

from __future__ import annotations

from typing import Any

import pandas as pd

from mspa_features.errors import LeakBuildError
from ranker_hooks.lis.feast_defs import utc_timestamp

COLUMNS = ("user_id", "author_id", "event_timestamp", "label")


def checked_interactions(interactions: pd.DataFrame, builder: str) -> pd.DataFrame:
    """The interactions contract columns, ids as strings, UTC timestamps, sorted by time.

    Raises:
        LeakBuildError: a column is missing, or names the first row with a null value, a
            naive or unreadable timestamp, or a label outside {0, 1}.
    """
    for col in COLUMNS:
        if col not in interactions.columns:
            raise LeakBuildError(builder, "is missing from the interactions", field=col)
    df = interactions.loc[:, list(COLUMNS)].reset_index(drop=True)
    for col in COLUMNS:
        nulls = df[col].isna().to_numpy()
        if nulls.any():
            raise LeakBuildError(builder, "is null", record=f"row {int(nulls.argmax())}", field=col)
    ts = df["event_timestamp"]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        # A naive timestamp is ambiguous (local or UTC?): refuse it rather than guess.
        raise LeakBuildError(
            builder,
            f"must be a tz-aware UTC timestamp, got dtype {ts.dtype}",
            record="row 0",
            field="event_timestamp",
        )
    bad = ~df["label"].isin([0, 1]).to_numpy()
    if bad.any():
        i = int(bad.argmax())
        raise LeakBuildError(
            builder,
            f"must be 0 or 1, got {df['label'].iloc[i]!r}",
            record=f"row {i}",
            field="label",
        )
    df["user_id"] = df["user_id"].astype(str)
    df["author_id"] = df["author_id"].astype(str)
    df["event_timestamp"] = ts.dt.tz_convert("UTC")
    df["label"] = df["label"].astype("int8")
    return df.sort_values(["event_timestamp", "user_id", "author_id"], kind="stable").reset_index(
        drop=True
    )


def in_window(df: pd.DataFrame, start: Any | None, end: Any | None) -> pd.DataFrame:
    """Rows with ``start <= event_timestamp < end`` (either bound optional)."""
    keep = pd.Series(True, index=df.index)
    if start is not None:
        keep &= df["event_timestamp"] >= utc_timestamp(start)
    if end is not None:
        keep &= df["event_timestamp"] < utc_timestamp(end)
    return df.loc[keep]


__all__ = ["COLUMNS", "checked_interactions", "in_window"]
