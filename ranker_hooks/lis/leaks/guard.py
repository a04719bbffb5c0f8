"""Leak guard helpers: which Feast views a request would read that are tagged ``leaked=true``,
and which rows of a frame hold information from after their own timestamp.

The ablation runner calls :func:`refuse_leaks` for every non-LIS variant before reading
features, and may run :func:`future_information` over any training frame as a last check.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mspa_features.errors import DataError, InvalidValueError, LeakedFeatureError

if TYPE_CHECKING:
    from feast import FeatureService, FeatureStore

# Columns that state the latest instant (UTC) a feature value depends on: leak sets write
# ``knowledge_ts``; MSPA preference snapshots carry ``history_last_ts``.
KNOWLEDGE_COLUMNS = ("knowledge_ts", "history_last_ts")


def _is_leaked(tags: dict[str, str]) -> bool:
    return str(tags.get("leaked", "false")).lower() == "true"


def _view_names(store: FeatureStore, features: Any) -> tuple[list[str], dict[str, str]]:
    """(view names the request reads, service tags if a service was given)."""
    if isinstance(features, str):
        features = store.get_feature_service(features)
    if hasattr(features, "feature_view_projections"):
        return [p.name for p in features.feature_view_projections], dict(features.tags)
    names = []
    for ref in features:
        if ":" not in ref:
            raise InvalidValueError("feature ref", ref, "'view:feature'")
        names.append(ref.split(":", 1)[0])
    return names, {}


def _lookup(store: FeatureStore, name: str) -> Any:
    from feast.errors import FeatureViewNotFoundException, OnDemandFeatureViewNotFoundException

    try:
        return store.get_feature_view(name)
    except FeatureViewNotFoundException:
        pass
    try:
        return store.get_on_demand_feature_view(name)
    except (OnDemandFeatureViewNotFoundException, FeatureViewNotFoundException):
        pass
    return store.get_stream_feature_view(name)


def leaked_views(
    store: FeatureStore, features: str | FeatureService | Sequence[str]
) -> dict[str, dict[str, str]]:
    """The views behind ``features`` tagged ``leaked=true``, with their tags.

    On-demand views count as leaked when they are tagged so or read a leaked view
    (followed transitively); a service tagged leaked is reported under its own name.

    Args:
        store: the Feast store.
        features: a feature service name or object, or ``view:feature`` refs.

    Returns:
        View (or service) name -> tags (``leak_kind``, ``horizon_days``, ...); empty if clean.
    """
    names, service_tags = _view_names(store, features)
    found: dict[str, dict[str, str]] = {}
    if _is_leaked(service_tags):
        svc_name = features if isinstance(features, str) else features.name
        found[svc_name] = service_tags
    seen: set[str] = set()
    todo = list(dict.fromkeys(names))
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        view = _lookup(store, name)
        tags = dict(view.tags)
        if _is_leaked(tags):
            found[name] = tags
        # On-demand views: follow their sources (feature view projections).
        for proj in getattr(view, "source_feature_view_projections", {}).values():
            todo.append(proj.name)
    return found


def refuse_leaks(
    store: FeatureStore,
    features: str | FeatureService | Sequence[str],
    variant: str,
    *,
    kind: str,
) -> dict[str, dict[str, str]]:
    """Raise unless ``kind`` is ``"lis"`` or ``features`` reads no leaked view.

    Args:
        store: the Feast store.
        features: what the variant reads (service name or object, or refs).
        variant: the variant's name (for the message).
        kind: the variant's kind (``baseline``, ``ais``, ``lis``); only ``lis`` may leak.

    Returns:
        The leaked views found (empty for a clean request; non-empty only for ``lis``).

    Raises:
        LeakedFeatureError: a non-LIS variant reads leaked views (all of them named).
    """
    found = leaked_views(store, features)
    if found and kind != "lis":
        service = features if isinstance(features, str) else getattr(features, "name", "<refs>")
        raise LeakedFeatureError(variant, kind, service, sorted(found))
    return found


def future_information(
    frame: pd.DataFrame,
    *,
    row_ts: str = "event_timestamp",
    knowledge_columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Rows of ``frame`` holding a feature value that depends on data after the row's time.

    Checks, row by row, ``knowledge > row_ts`` for every knowledge column present (default
    :data:`KNOWLEDGE_COLUMNS`; int64 UTC microseconds or timestamps; null values are skipped).

    Returns:
        The offending rows with a ``leaked_column`` column naming the first column that
        leaks; empty for a clean frame.

    Raises:
        ValueError: ``row_ts`` is missing, or none of the knowledge columns is present.
    """
    if row_ts not in frame.columns:
        raise DataError("frame", f"no row timestamp column {row_ts!r}", field=row_ts)
    cols = [c for c in (knowledge_columns or KNOWLEDGE_COLUMNS) if c in frame.columns]
    if not cols:
        raise DataError(
            "frame",
            f"holds none of the knowledge columns {list(knowledge_columns or KNOWLEDGE_COLUMNS)}",
        )
    row_us = _as_us(frame[row_ts])
    first = np.full(len(frame), "", dtype=object)  # "" = clean so far
    for col in cols:
        k = _as_us(frame[col])
        bad = ~np.isnan(k) & (k > row_us) & (first == "")
        first[bad] = col
    mask = first != ""
    out = frame.loc[mask].copy()
    out["leaked_column"] = first[mask]
    return out


def _as_us(col: pd.Series) -> np.ndarray:
    """Microseconds since the epoch as float64 (NaN for nulls)."""
    if pd.api.types.is_datetime64_any_dtype(col):
        ts = col.dt.tz_convert("UTC") if getattr(col.dt, "tz", None) else col.dt.tz_localize("UTC")
        us = ts.astype("datetime64[us, UTC]").astype("int64").astype(np.float64)
        return np.where(col.isna().to_numpy(), np.nan, us)
    return pd.to_numeric(col, errors="coerce").astype(np.float64).to_numpy()


__all__ = ["KNOWLEDGE_COLUMNS", "future_information", "leaked_views", "refuse_leaks"]
