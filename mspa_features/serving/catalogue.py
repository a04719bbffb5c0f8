"""The author catalogue as it was at past instants, read through Feast's point-in-time join.

Recall replay (``mspa recall``) scores every test impression against the whole catalogue valid
at its own instant. The online vector index (:mod:`mspa_features.serving.nearest`, milvus)
answers only for "now", so the replay reads the past through the training read instead
(:func:`mspa_features.serving.reads.historical_features`: a value is visible at ``t`` iff its
snapshot ``S`` has ``S <= t <= S + ttl``) and searches it exactly.

Reading every author at every query instant would cost ``authors x instants`` rows. The
catalogue only changes where a snapshot starts (``S``) or expires (just after ``S + ttl``), so
the instants are grouped into *epochs* between consecutive change points (every instant of an
epoch sees the same catalogue). Feast is asked once, in one call: every id at the first epoch's
instant, then at each later epoch's instant only the ids with a change point since the previous
one. The change points come from the view's own source table (its ``event_timestamp`` column);
the values, and whether each is valid, from Feast.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mspa_features.errors import DataError

if TYPE_CHECKING:
    from feast import FeatureStore

__all__ = ["CatalogueEpoch", "epochs_of", "iter_catalogue", "snapshot_starts"]

_US = np.int64(1)


@dataclass
class CatalogueEpoch:
    """The catalogue every instant of one epoch sees.

    Attributes:
        rows: indices (into the ``instants`` given) of the instants of this epoch.
        at: the instant the values were read at (the epoch's earliest instant).
        matrix: ``(len(ids), d)`` float32, one row per id in the order given; NaN rows: no
            value valid at ``at``. The SAME array is updated in place for the next epoch:
            copy it to keep it.
        valid: ``(len(ids),)`` bool, the rows holding a value.
    """

    rows: np.ndarray
    at: pd.Timestamp
    matrix: np.ndarray
    valid: np.ndarray


def _utc_us(values: object) -> np.ndarray:
    """Timestamps (tz-aware or UTC-naive) as int64 microseconds since the epoch."""
    ts = pd.to_datetime(pd.Series(values), utc=True)
    return ts.to_numpy("datetime64[us]").astype(np.int64)


def snapshot_starts(store: FeatureStore, view: str, key: str) -> pd.DataFrame:
    """``key`` and ``event_timestamp`` (UTC us) of every row of ``view``'s source table.

    Raises:
        DataError: the view's source is not a parquet path this process can read.
    """
    import pyarrow.dataset as ds

    source = store.get_feature_view(view).batch_source
    path = getattr(source, "path", None)
    if not path:
        raise DataError(
            f"feature view {view}",
            f"its source {type(source).__name__} has no path to read snapshot times from",
        )
    try:
        table = ds.dataset(path, format="parquet", partitioning="hive").to_table(
            columns=[key, "event_timestamp"]
        )
    except (OSError, ValueError) as e:  # pyarrow: missing folder, schema without a column
        raise DataError(f"feature view {view}", f"cannot read {path}: {e}") from e
    df = table.to_pandas()
    return pd.DataFrame(
        {key: df[key].astype(str).to_numpy(), "event_timestamp": _utc_us(df["event_timestamp"])}
    )


def epochs_of(
    instants_us: np.ndarray, starts_us: np.ndarray, ttl_us: int
) -> tuple[np.ndarray, np.ndarray]:
    """The epoch of every instant and the sorted change points.

    A snapshot starting at ``S`` changes the catalogue at ``S`` and, with a TTL, once more
    just after ``S + ttl`` (it is still visible at ``S + ttl`` itself). The epoch of ``t`` is
    the number of change points at or before ``t``: two instants with the same epoch see
    identical catalogues.
    """
    s = np.asarray(starts_us, dtype=np.int64)
    cps = np.unique(np.concatenate([s, s + ttl_us + _US]) if ttl_us > 0 else s)
    return np.searchsorted(cps, np.asarray(instants_us, dtype=np.int64), side="right"), cps


def iter_catalogue(
    store: FeatureStore,
    view: str,
    feature: str,
    key: str,
    ids: Sequence[str],
    instants: Sequence[object] | pd.Series,
) -> Iterator[CatalogueEpoch]:
    """Yield, epoch by epoch in time order, ``feature`` of every id as valid at the instants.

    Args:
        store: the run's FeatureStore.
        view: a feature view keyed by ``key`` (``author_profiles__template``).
        feature: an embedding feature of it (``author_emb``).
        key: the entity column (``author_id``).
        ids: the catalogue's ids, in the order of the yielded matrix rows.
        instants: the query instants (tz-aware or UTC-naive timestamps).

    Raises:
        DataError: the view's source table cannot be read.
    """
    from mspa_features.serving.reads import _ttl_us, historical_features

    ids = [str(i) for i in ids]
    t_us = _utc_us(instants)
    if not len(ids) or not len(t_us):
        return
    starts = snapshot_starts(store, view, key)
    starts = starts[starts[key].isin(set(ids))]
    ttl = _ttl_us(store.get_feature_view(view))
    epoch, _ = epochs_of(t_us, starts["event_timestamp"].to_numpy(), ttl)
    order = np.argsort(epoch, kind="stable")
    used, first = np.unique(epoch[order], return_index=True)
    groups = np.split(order, first[1:])
    reps = np.array([t_us[g].min() for g in groups], dtype=np.int64)  # (n_epochs,)

    # Change points per id, to know which ids to read again at each later epoch.
    pos = {a: i for i, a in enumerate(ids)}
    s_id = starts[key].map(pos).to_numpy(dtype=np.int64)
    s_t = starts["event_timestamp"].to_numpy(dtype=np.int64)
    cp_id = np.concatenate([s_id, s_id]) if ttl > 0 else s_id
    cp_t = np.concatenate([s_t, s_t + ttl + _US]) if ttl > 0 else s_t
    reads: list[tuple[int, np.ndarray]] = [(0, np.arange(len(ids)))]
    for e in range(1, len(used)):
        changed = (cp_t > reps[e - 1]) & (cp_t <= reps[e])
        reads.append((e, np.unique(cp_id[changed])))
    ent_epoch = np.concatenate([np.full(len(r), e) for e, r in reads])
    ent_ids = np.concatenate([r for _, r in reads])
    entity_df = pd.DataFrame(
        {
            key: [ids[i] for i in ent_ids],
            ("user_id" if key == "author_id" else "author_id"): "",
            "event_timestamp": pd.to_datetime(reps[ent_epoch], unit="us", utc=True),
        }
    )
    out = historical_features(store, [f"{view}:{feature}"], entity_df)
    values = out[feature].tolist()
    dim = next((len(v) for v in values if v is not None and len(v)), 0)
    matrix = np.full((len(ids), dim), np.nan, dtype=np.float32)
    bounds = np.searchsorted(ent_epoch, np.arange(len(used) + 1))
    for e, g in enumerate(groups):
        for j in range(bounds[e], bounds[e + 1]):
            v = values[j]
            matrix[ent_ids[j]] = np.nan if v is None or not len(v) else v
        yield CatalogueEpoch(
            rows=g,
            at=pd.Timestamp(int(reps[e]), unit="us", tz="UTC"),
            matrix=matrix,
            valid=~np.isnan(matrix).any(axis=1) if dim else np.zeros(len(ids), dtype=bool),
        )
