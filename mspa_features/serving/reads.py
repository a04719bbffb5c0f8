"""The ranking engineer's read path: one call for serving, one for training, one for retrieval.

* :func:`online_features`: the latest materialized values for (user, author) pairs, in the
  order asked, unknown ids and values older than the view's TTL as nulls (what a ranker
  receives at request time);
* :func:`historical_features`: point-in-time correct values for an entity frame (each row sees
  only snapshots with ``event_timestamp <= its own``; none found, or older than the TTL: nulls;
  rows are never dropped and come back in input order), for training and offline AUC;
* :func:`nearest_authors`: U2A retrieval, the top-k authors for a query embedding from a
  vector-enabled online store (Milvus).

A ``service`` is a feature service name such as ``all__template`` (see
:mod:`mspa_features.serving.definitions`) or a ``FeatureService`` object.
One TTL rule for training and serving. A snapshot taken at ``S`` of a view with TTL ``ttl``
(365 days by default) is visible at instant ``t`` iff ``S <= t <= S + ttl``. The historical
read gets it from Feast's point-in-time join (``event_timestamp <= t`` and
``event_timestamp + ttl >= t``). Feast's online read applies no TTL: the online store
serves whatever was materialized last, however old. :func:`online_features` therefore applies
the same rule itself at ``as_of`` (default now): a value whose snapshot is older than
``as_of - ttl`` comes back null, as does every on-demand feature computed from it (the
preference-author cosine), exactly as the historical read at ``t = as_of`` nulls it. A ranker
thus never receives online a value it only ever saw as null in training. Replaying old data
online (MovieLens is from 1998) means passing ``as_of``; a view with ``ttl=0`` never expires.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np
import pandas as pd

from mspa_features.errors import DataError, InvalidTypeError
from mspa_features.serving.definitions import author_view_name
from mspa_features.serving.redis_store import redis_errors

if TYPE_CHECKING:
    from feast import FeatureService, FeatureStore

ENTITY_COLUMNS = ("user_id", "author_id")
_ROW = "__mspa_row__"


def _features(store: FeatureStore, service: Any) -> Any:
    """A service name -> the FeatureService; a service or a list of ``view:feature`` refs as is."""
    if isinstance(service, str):
        return store.get_feature_service(service)
    return service if hasattr(service, "feature_view_projections") else list(service)


def _feature_types(store: FeatureStore, features: Any) -> dict[str, str]:
    """Output column (short name) -> Feast dtype string (``Int64``, ``Array(Float32)``, ...)."""
    if hasattr(features, "feature_view_projections"):
        return {f.name: str(f.dtype) for p in features.feature_view_projections for f in p.features}
    from feast.errors import FeatureViewNotFoundException

    types: dict[str, str] = {}
    for ref in features:
        view, name = ref.split(":", 1)
        try:
            fields = store.get_feature_view(view).features
        except FeatureViewNotFoundException:  # on-demand: float outputs, nothing to convert
            fields = []
        types.update({f.name: str(f.dtype) for f in fields if f.name == name})
    return types


def online_features(
    store: FeatureStore,
    service: str | FeatureService | Sequence[str],
    pairs: Sequence[tuple[str, str]],
    *,
    full_feature_names: bool = False,
    as_of: datetime | pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Latest online values of ``service`` for (user_id, author_id) ``pairs``, as of ``as_of``.

    Args:
        store: a FeatureStore (``mspa_features.serving.materialize.open_store``).
        service: feature service name (``all__template``) or object, or a list of
            ``view:feature`` refs.
        pairs: (user_id, author_id) per row; ids are strings. Repeats are fine.
        full_feature_names: prefix columns with ``<view>__``.
        as_of: the request instant (timezone-aware; default now, UTC). Values whose snapshot
            is older than ``as_of`` minus their view's TTL are served as null, as the
            historical read at that instant gives them (see the module docstring).

    Returns:
        One row per pair, in order: ``user_id``, ``author_id``, then the service's features
        (embeddings as lists of floats; ids never materialized and expired values give
        nulls, on-demand features of an expired input too).

    Raises:
        TypeError: ``as_of`` is not timezone-aware.
        OnlineStoreUnavailableError: the Redis online store cannot be reached.
    """
    svc = _features(store, service)
    users = [str(u) for u, _ in pairs]
    authors = [str(a) for _, a in pairs]
    if not pairs:
        return pd.DataFrame({"user_id": [], "author_id": []})
    now_us = _as_of_us(as_of)
    entity_rows = {"user_id": users, "author_id": authors}  # columnar: no per-row dicts
    with redis_errors(store.config.online_store, writing=False):  # Redis down: one clear error
        resp = store.get_online_features(
            features=svc, entity_rows=entity_rows, full_feature_names=full_feature_names
        )
        data, stamps = _response_columns(resp, with_timestamps=True)
        _drop_expired(store, svc, data, stamps, entity_rows, now_us, full_feature_names)
    data["user_id"], data["author_id"] = users, authors
    cols = list(ENTITY_COLUMNS) + [c for c in data if c not in ENTITY_COLUMNS]
    return pd.DataFrame({c: data[c] for c in cols})


_SCALARS = frozenset(
    {"string_val", "int64_val", "int32_val", "double_val", "float_val", "bool_val", "bytes_val"}
)
_LISTS = frozenset(
    {
        "float_list_val",
        "double_list_val",
        "int64_list_val",
        "int32_list_val",
        "string_list_val",
        "bool_list_val",
    }
)


@overload
def _response_columns(resp: Any) -> dict[str, list[Any]]: ...
@overload
def _response_columns(
    resp: Any, with_timestamps: Literal[True]
) -> tuple[dict[str, list[Any]], dict[str, list[int]]]: ...
def _response_columns(resp: Any, with_timestamps: bool = False) -> Any:
    """``OnlineResponse.to_dict()`` with fast paths for scalars and numeric lists.

    Same values as Feast's generic converter (which it falls back to for every other type),
    at about a third of its cost on 384-d embeddings: it dominates a 1,000-entity read.
    With ``with_timestamps``, also each value's snapshot time in UTC microseconds (0: none,
    as for unknown ids and on-demand features).
    """
    from feast.type_map import feast_value_type_to_python_type

    out: dict[str, list[Any]] = {}
    stamps: dict[str, list[int]] = {}
    for name, vector in zip(resp.proto.metadata.feature_names.val, resp.proto.results, strict=True):
        if with_timestamps:
            stamps[name] = [
                t.seconds * 1_000_000 + t.nanos // 1000 for t in vector.event_timestamps
            ]
        col: list[Any] = []
        append = col.append
        for v in vector.values:
            kind = v.WhichOneof("val")
            if kind is None:
                append(None)
            elif kind in _LISTS:
                append(list(getattr(v, kind).val))
            elif kind in _SCALARS:
                append(getattr(v, kind))
            else:
                append(feast_value_type_to_python_type(v))
        out[name] = col
    return (out, stamps) if with_timestamps else out


def _as_of_us(as_of: datetime | pd.Timestamp | None) -> int:
    """``as_of`` (default now) in UTC microseconds since the epoch."""
    if as_of is None:
        return int(datetime.now(UTC).timestamp() * 1_000_000)
    ts = pd.Timestamp(as_of)
    if ts.tzinfo is None:
        raise InvalidTypeError(
            "as_of",
            as_of,
            "a timezone-aware instant",
            hint="use a UTC instant such as pd.Timestamp('1998-04-01', tz='UTC')",
        )
    return int(ts.tz_convert("UTC").value // 1000)


def _ttl_us(view: Any) -> int:
    """The view's TTL in microseconds; 0 means it never expires (Feast's convention)."""
    ttl = getattr(view, "ttl", None)
    return int(ttl / timedelta(microseconds=1)) if ttl else 0


def _column(view: str, feature: str, full: bool) -> str:
    return f"{view}__{feature}" if full else feature


def _drop_expired(
    store: FeatureStore,
    features: Any,
    data: dict[str, list[Any]],
    stamps: dict[str, list[int]],
    entity_rows: dict[str, list[str]],
    now_us: int,
    full: bool,
) -> None:
    """Null, in place, every value older than its view's TTL at ``now_us`` and every on-demand
    output computed from such a value (the historical read's rule; module docstring).

    An on-demand view whose source features were not requested (the ``cosine`` service asks
    for the cosine only) costs one more online read of those sources' timestamps.
    """
    from feast.errors import FeatureViewNotFoundException

    # (view name, feature) pairs requested, split into feature views and on-demand views
    if hasattr(features, "feature_view_projections"):
        pairs = [
            (p.name_to_use(), p.name, f.name)
            for p in features.feature_view_projections
            for f in p.features
        ]
    else:
        pairs = [(v, v, f) for v, f in (ref.split(":", 1) for ref in features)]
    n = len(entity_rows["user_id"])
    expired: dict[str, list[bool]] = {}  # feature view -> per-row expiry
    odfv_cols: list[tuple[str, list[str]]] = []  # (output column, its source views)
    plain: dict[str, list[str]] = {}  # feature view -> its output columns
    views: dict[str, Any] = {}  # name -> FeatureView, or the list of an on-demand view's sources
    for alias, view, feature in pairs:
        if view not in views:
            try:
                views[view] = store.get_feature_view(view)
            except FeatureViewNotFoundException:
                odfv = store.get_on_demand_feature_view(view)
                views[view] = [p.name for p in odfv.source_feature_view_projections.values()]
        fv = views[view]
        if isinstance(fv, list):
            odfv_cols.append((_column(alias, feature, full), fv))
            continue
        plain.setdefault(view, []).append(_column(alias, feature, full))
        if view not in expired:
            expired[view] = _expired(stamps[_column(alias, feature, full)], _ttl_us(fv), now_us)
    missing = sorted({s for _, sources in odfv_cols for s in sources} - set(expired))
    if missing:
        refs = [f"{v}:{store.get_feature_view(v).features[0].name}" for v in missing]
        resp = store.get_online_features(
            features=refs, entity_rows=entity_rows, full_feature_names=True
        )
        _, more = _response_columns(resp, with_timestamps=True)
        for v, ref in zip(missing, refs, strict=True):
            ttl = _ttl_us(store.get_feature_view(v))
            expired[v] = _expired(more[ref.replace(":", "__", 1)], ttl, now_us)
    for view, cols in plain.items():
        for i in (i for i, e in enumerate(expired[view]) if e):
            for c in cols:
                data[c][i] = None
    for col, sources in odfv_cols:
        for i in range(n):
            if any(expired[s][i] for s in sources):
                data[col][i] = None


def _expired(stamps_us: list[int], ttl_us: int, now_us: int) -> list[bool]:
    """Per row: a snapshot exists (timestamp > 0) and ``snapshot + ttl < now``."""
    if ttl_us <= 0:
        return [False] * len(stamps_us)
    limit = now_us - ttl_us
    return [0 < t < limit for t in stamps_us]


def historical_features(
    store: FeatureStore,
    service: str | FeatureService | Sequence[str],
    entity_df: pd.DataFrame,
    *,
    full_feature_names: bool = False,
) -> pd.DataFrame:
    """Point-in-time correct values of ``service`` for every row of ``entity_df``.

    Args:
        store: a FeatureStore.
        service: feature service name or object, or a list of ``view:feature`` refs.
        entity_df: ``user_id``, ``author_id`` and a timezone-aware ``event_timestamp`` (the
            prediction instant); other columns (labels) are passed through.
        full_feature_names: prefix feature columns with ``<view>__``.

    Returns:
        ``entity_df``'s rows in their order with the service's features added: integer
        features as nullable ``Int64``, embeddings as float32 arrays or None, timestamps UTC.

    Raises:
        ValueError: a required column is missing.
        TypeError: ``event_timestamp`` is not timezone-aware.
    """
    missing = [c for c in (*ENTITY_COLUMNS, "event_timestamp") if c not in entity_df.columns]
    if missing:
        raise DataError("entity_df", f"lacks column(s) {missing}; has {list(entity_df.columns)}")
    ts = entity_df["event_timestamp"]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        raise InvalidTypeError(
            "entity_df.event_timestamp",
            ts.dtype,
            "timezone-aware UTC timestamps",
            hint="use .dt.tz_localize('UTC') if the values are UTC",
        )
    svc = _features(store, service)
    frame = entity_df.copy()
    frame["event_timestamp"] = ts.dt.tz_convert("UTC")
    frame[_ROW] = np.arange(len(frame), dtype=np.int64)
    for c in ENTITY_COLUMNS:
        frame[c] = frame[c].astype(str)

    out = store.get_historical_features(
        entity_df=frame, features=svc, full_feature_names=full_feature_names
    ).to_df()
    # Offline stores (Spark) reorder rows and may return naive timestamps: restore both.
    out = out.sort_values(_ROW, kind="stable").drop(columns=[_ROW]).reset_index(drop=True)
    if not isinstance(out["event_timestamp"].dtype, pd.DatetimeTZDtype):
        out["event_timestamp"] = pd.to_datetime(out["event_timestamp"]).dt.tz_localize("UTC")
    else:
        out["event_timestamp"] = out["event_timestamp"].dt.tz_convert("UTC")
    types = _feature_types(store, svc)
    for col in out.columns:
        short = col.split("__")[-1] if full_feature_names else col
        dtype = types.get(short)
        if dtype in ("Int64", "Int32"):
            out[col] = out[col].astype("Int64")
        elif dtype is not None and dtype.startswith("Array(Float"):
            out[col] = [_as_vector(v) for v in out[col]]
    return out


def _as_vector(v: Any) -> np.ndarray | None:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    return np.asarray(v, dtype=np.float32)


def nearest_authors(
    store: FeatureStore,
    feature_set: str,
    query: Sequence[float] | np.ndarray,
    *,
    top_k: int = 10,
) -> pd.DataFrame:
    """U2A retrieval: the ``top_k`` authors whose ``author_emb`` is closest (cosine) to ``query``.

    Needs a vector-enabled online store (``feature_store.milvus.yaml``). Milvus ranks; scores
    are then recomputed from the stored vectors read back online, because Feast 0.67's
    ``retrieve_online_documents_v2`` returns the ids in rank order but the other columns
    (distance, text) permuted by id when the hits are not already id-sorted.

    Returns:
        ``author_id``, ``score`` (cosine), ``author_text``, best first.
    """
    view = author_view_name(feature_set)
    q = np.asarray(query, dtype=np.float32).ravel()  # (d,)
    hits = store.retrieve_online_documents_v2(
        features=[f"{view}:author_emb"], query=q.tolist(), top_k=top_k, distance_metric="COSINE"
    ).to_dict()
    ids = [str(a) for a in hits.get("author_id", [])]
    if not ids:
        return pd.DataFrame({"author_id": [], "score": [], "author_text": []})
    rows = store.get_online_features(
        features=[f"{view}:author_emb", f"{view}:author_text"], entity_rows={"author_id": ids}
    ).to_dict()
    embs = np.asarray(rows["author_emb"], dtype=np.float32)  # (k, d)
    scores = embs @ q / (np.linalg.norm(embs, axis=1) * np.linalg.norm(q) + 1e-12)  # (k,)
    out = pd.DataFrame({"author_id": ids, "score": scores, "author_text": rows["author_text"]})
    return out.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
