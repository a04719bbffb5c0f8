"""The temporal protocol of every ablation: train on ``[T0, T)``, evaluate on ``[T, T + w)``.

Rows are the interactions contract: every rated/tipped pair is an impression and ``label`` its
outcome (MovieLens: rating >= the configured threshold -> 1). A row's ``event_timestamp`` is
its prediction instant, so the point-in-time feature join gives it only snapshots published
at or before it. Evaluation never sees a row the model trained on, and training never sees a
row at or after ``T``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
from pydantic import Field, field_validator

from mspa_features.config_base import StrictModel
from mspa_features.errors import AblationError, SchemaError

ENTITY_COLUMNS = ["user_id", "author_id", "event_timestamp", "label"]


class TemporalSplit(StrictModel):
    """Train on ``[train_start, split_at)``, evaluate on ``[split_at, split_at + eval_days)``."""

    train_start: datetime | None = Field(None, description="T0 (UTC); null: the first interaction")
    split_at: datetime = Field(description="T (UTC): first instant of the evaluation window")
    eval_days: float = Field(60.0, gt=0, description="w: evaluation window length in days")

    @field_validator("train_start", "split_at")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        if v is None:
            return v
        return v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)

    @property
    def eval_end(self) -> datetime:
        return self.split_at + timedelta(days=self.eval_days)

    def describe(self) -> dict[str, str]:
        """The window as strings (MLflow params, results JSON)."""
        return {
            "train_start": self.train_start.isoformat() if self.train_start else "first",
            "split_at": self.split_at.isoformat(),
            "eval_end": self.eval_end.isoformat(),
        }


def load_interactions(path: Path, extra: Sequence[str] = ()) -> pd.DataFrame:
    """The interactions contract table, reduced to the entity columns (and ``extra`` ones,
    e.g. ``action`` for task labels), timestamps UTC.

    Raises:
        SchemaError: the file is missing or lacks a column.
    """
    path = Path(path)
    if not path.is_file():
        raise SchemaError(path, "interactions table not found (run `mspa data prepare` first)")
    df = pd.read_parquet(path)
    columns = [*ENTITY_COLUMNS, *extra]
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise SchemaError(path, f"lacks column(s) {missing}", column=missing[0])
    df = df[columns].copy()
    df["user_id"] = df["user_id"].astype(str)
    df["author_id"] = df["author_id"].astype(str)
    df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True)
    return df


def split_interactions(df: pd.DataFrame, split: TemporalSplit) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test) entity frames, each sorted by time, index reset.

    Raises:
        AblationError: a window is empty or holds a single label class (AUC undefined).
    """
    ts = df["event_timestamp"]
    start = split.train_start or ts.min().to_pydatetime()
    train = df[(ts >= start) & (ts < split.split_at)]
    test = df[(ts >= split.split_at) & (ts < split.eval_end)]
    out = []
    for name, part, lo, hi in (
        ("train", train, start, split.split_at),
        ("evaluation", test, split.split_at, split.eval_end),
    ):
        if part.empty:
            raise AblationError(
                f"the {name} window [{lo:%Y-%m-%d %H:%M}, {hi:%Y-%m-%d %H:%M}) holds no "
                f"interactions (data spans {ts.min():%Y-%m-%d} .. {ts.max():%Y-%m-%d})"
            )
        if part["label"].nunique() < 2:
            raise AblationError(f"the {name} window holds only label {part['label'].iloc[0]}")
        out.append(part.sort_values("event_timestamp", kind="stable").reset_index(drop=True))
    return out[0], out[1]


__all__ = ["TemporalSplit", "load_interactions", "split_interactions"]
