"""The injection API: (entity rows, feature service) -> the matrix a ranker consumes.

A ranking engineer calls one of two functions from their own training or serving code:

* :func:`offline_matrix` for training and offline evaluation: Feast
  ``get_historical_features``, so each row sees only feature values valid at its own
  ``event_timestamp``;
* :func:`online_matrix` at request time: Feast ``get_online_features`` (latest materialized
  values).

Both return a :class:`~ranker_hooks.rankers.base.RankerData` built by the same conversion
(:func:`to_ranker_data`), so a model trained offline reads identical columns online, and the same
entity at the same instant gets the same values. The conversion, per service feature in service
order:

* ``Array(Float*)`` (``pref_emb``, ``author_emb``): ``name[0..d-1]`` columns plus
  ``name__missing``; a missing vector is zeros with the indicator at 1, never silent zeros;
* numeric scalars (``history_count``, ``pref_author_cosine``): the value (counts as
  ``log1p``) plus ``name__missing``;
* strings (``pref_text``, ``author_text``): hashed word tokens when ``spec.text_tokens`` is
  set (the "captions as categorical features" variant), otherwise left out of the matrix;
* status columns (``pref_status``, ``author_status``: ok | repaired | failed, and the
  ``*_decoding`` columns) never enter the matrix themselves; they decide what happens to the
  features they vouch for when a generated text failed (``spec.on_failed``): ``mask`` (the
  default: those features become missing, zeros + indicator 1, as if no snapshot existed),
  ``flag`` (values kept, plus a ``<status>__failed`` column), ``drop`` (the row is removed) or
  ``keep`` (served as is). A failed text is therefore never served as if it were good.

Example::

    store = open_store(run_cfg)
    train = offline_matrix(store, "all__template", entity_df)        # labels from entity_df
    ranker.fit(train)
    scores = ranker.predict(online_matrix(store, "all__template", [("196", "242")]))
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from mspa_features.errors import DataError, InvalidValueError, UnknownNameError
from mspa_features.serving.definitions import STATUS_COLUMNS
from ranker_hooks.rankers.base import RankerData

if TYPE_CHECKING:
    from feast import FeatureService, FeatureStore

MISSING_SUFFIX = "__missing"
FAILED_SUFFIX = "__failed"
FAILED = "failed"
#: Metadata columns of the feature views: never features of the matrix.
META_COLUMNS = frozenset(
    {*STATUS_COLUMNS, *(c.replace("_status", "_decoding") for c in STATUS_COLUMNS)}
)
OnFailed = Literal["mask", "flag", "drop", "keep"]
_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class FeatureRef:
    """One feature of a service: ``view:name`` with its Feast dtype (``Array(Float32)``, ...)."""

    view: str
    name: str
    dtype: str
    vector_length: int = 0

    @property
    def ref(self) -> str:
        return f"{self.view}:{self.name}"

    @property
    def kind(self) -> str:
        """``vector``, ``text`` or ``number``."""
        if self.dtype.startswith("Array("):
            return "vector"
        if self.dtype in ("String", "Bytes"):
            return "text"
        return "number"


@dataclass(frozen=True)
class InjectionSpec:
    """Which service features enter the matrix, and how.

    Attributes:
        columns: feature names to inject (default: every feature of the service).
        dense: put vectors and numbers into ``RankerData.dense``.
        text_tokens: hash the words of text features into ``RankerData.tokens``.
        max_tokens: tokens kept per text feature (first distinct words).
        token_buckets: hash space; token ids are ``1..token_buckets-1`` (0 is padding).
        log_counts: ``log1p`` integer features (counts are heavy-tailed).
        on_failed: what a row whose generated text failed gets for the features that text
            produced: ``mask`` (missing: zeros + indicator), ``flag`` (kept, plus a
            ``<status>__failed`` column), ``drop`` (row removed) or ``keep``.
    """

    columns: tuple[str, ...] | None = None
    dense: bool = True
    text_tokens: bool = False
    max_tokens: int = 32
    token_buckets: int = 4096
    log_counts: bool = True
    on_failed: OnFailed = "mask"

    def __post_init__(self) -> None:
        if self.on_failed not in ("mask", "flag", "drop", "keep"):
            raise UnknownNameError(
                "InjectionSpec on_failed", self.on_failed, ("mask", "flag", "drop", "keep")
            )
        if self.max_tokens < 1 or self.token_buckets < 2:
            raise InvalidValueError(
                "max_tokens and token_buckets",
                {"max_tokens": self.max_tokens, "token_buckets": self.token_buckets},
                "max_tokens >= 1 and token_buckets >= 2",
                record="InjectionSpec",
            )


def service_exists(store: FeatureStore, service: str) -> bool:
    """Whether feature service ``service`` is registered in ``store``."""
    from feast.errors import FeatureServiceNotFoundException

    try:
        store.get_feature_service(service)
    except FeatureServiceNotFoundException:
        return False
    return True


def service_features(store: FeatureStore, service: str | FeatureService) -> list[FeatureRef]:
    """The features of ``service`` in service order, each with its view and dtype."""
    svc = store.get_feature_service(service) if isinstance(service, str) else service
    return [
        FeatureRef(
            view=p.name_to_use(),
            name=f.name,
            dtype=str(f.dtype),
            vector_length=int(getattr(f, "vector_length", 0) or 0),
        )
        for p in svc.feature_view_projections
        for f in p.features
    ]


def _selected(features: Sequence[FeatureRef], spec: InjectionSpec) -> list[FeatureRef]:
    if spec.columns is None:
        return [f for f in features if f.name not in META_COLUMNS]
    known = {f.name for f in features}
    unknown = [c for c in spec.columns if c not in known]
    if unknown:
        raise UnknownNameError("InjectionSpec.columns feature", unknown, sorted(known))
    return [f for f in features if f.name in spec.columns]


def _is_missing(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float):
        return math.isnan(v)
    return v is pd.NA or v is pd.NaT


def _vector_block(
    values: Sequence[Any], ref: FeatureRef, row_ids: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(n, d) float32 values with zeros where missing, and the (n,) missing indicator."""
    n = len(values)
    missing = np.fromiter((_is_missing(v) for v in values), dtype=bool, count=n)
    dim = ref.vector_length
    if not dim:
        present = next((v for v, m in zip(values, missing, strict=True) if not m), None)
        if present is None:
            raise DataError(
                f"feature {ref.ref}",
                "every value is missing and the view declares no vector_length, so its width "
                "is unknown",
            )
        dim = len(present)
    out = np.zeros((n, dim), dtype=np.float32)
    for i in np.flatnonzero(~missing):
        v = np.asarray(values[i], dtype=np.float32)
        if v.shape != (dim,):
            raise InvalidValueError(
                f"feature {ref.ref} shape", v.shape, f"({dim},)", record=f"row {i} ({row_ids[i]})"
            )
        out[i] = v
    return out, missing


def _number_block(
    values: Sequence[Any], ref: FeatureRef, log_counts: bool
) -> tuple[np.ndarray, np.ndarray]:
    x = pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan
    )
    missing = np.isnan(x)
    x = np.where(missing, 0.0, x)
    if log_counts and ref.dtype.startswith("Int"):
        x = np.log1p(np.maximum(x, 0.0))
    return x.astype(np.float32), missing


def _tokens(text: str, name: str, spec: InjectionSpec) -> list[int]:
    from sklearn.utils import murmurhash3_32

    words = list(dict.fromkeys(_WORD.findall(text.lower())))[: spec.max_tokens]
    # The feature name salts the hash: the same word in pref_text and author_text differs.
    return [
        murmurhash3_32(f"{name}:{w}", seed=0, positive=True) % (spec.token_buckets - 1) + 1
        for w in words
    ]


def _token_block(values: Sequence[Any], ref: FeatureRef, spec: InjectionSpec) -> np.ndarray:
    n = len(values)
    out = np.zeros((n, spec.max_tokens), dtype=np.int64)
    cache: dict[str, list[int]] = {}  # texts repeat across rows (one per snapshot)
    for i, v in enumerate(values):
        if _is_missing(v) or not isinstance(v, str):
            continue
        toks = cache.get(v)
        if toks is None:
            toks = cache[v] = _tokens(v, ref.name, spec)
        out[i, : len(toks)] = toks
    return out


def failed_rows(
    frame: pd.DataFrame, features: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """Status column -> (n,) bool mask of rows whose generated text ``failed``.

    Only status columns present in ``frame`` and vouching for one of ``features`` (default:
    any) are returned; a null status (rows written before statuses existed) is not failed.
    """
    out: dict[str, np.ndarray] = {}
    for status, covered in STATUS_COLUMNS.items():
        if status not in frame.columns:
            continue
        if features is not None and not set(covered) & set(features):
            continue
        out[status] = frame[status].astype(object).eq(FAILED).to_numpy(dtype=bool)
    return out


def to_ranker_data(
    frame: pd.DataFrame,
    features: Sequence[FeatureRef],
    spec: InjectionSpec = InjectionSpec(),
    *,
    label_column: str | None = "label",
) -> RankerData:
    """Convert a feature frame (historical or online read) to ranker-ready rows.

    Args:
        frame: ``user_id``, ``author_id``, optional ``event_timestamp`` and label, and one column
            per feature (short names).
        features: the service's features (:func:`service_features`).
        spec: what to inject.
        label_column: labels to carry (None or absent: no labels).

    Raises:
        ValueError: a feature column is absent, a vector has the wrong width, or a label is not
            0/1 (the message names the row).
    """
    for col in ("user_id", "author_id"):
        if col not in frame.columns:
            raise DataError(
                "feature frame", f"lacks column {col!r}; has {list(frame.columns)}", field=col
            )
    chosen = _selected(features, spec)
    absent = [f.name for f in chosen if f.name not in frame.columns]
    if absent:
        raise DataError("feature frame", f"lacks feature column(s) {absent}")
    failed = failed_rows(frame, [f.name for f in chosen])
    if spec.on_failed == "drop" and failed:
        keep = ~np.logical_or.reduce(list(failed.values()))
        frame = frame.loc[keep].reset_index(drop=True)
        failed = {k: v[keep] for k, v in failed.items()}
    # feature -> rows whose value a failed text produced (masked to missing)
    masked: dict[str, np.ndarray] = {}
    if spec.on_failed == "mask":
        for status, rows in failed.items():
            for name in STATUS_COLUMNS[status]:
                masked[name] = masked.get(name, np.zeros(len(frame), bool)) | rows
    n = len(frame)
    users = frame["user_id"].astype(str).to_numpy(dtype=object)
    authors = frame["author_id"].astype(str).to_numpy(dtype=object)
    row_ids = [f"user_id={u} author_id={a}" for u, a in zip(users, authors, strict=True)]
    blocks: list[np.ndarray] = []
    names: list[str] = []
    token_blocks: list[np.ndarray] = []
    for f in chosen:
        values = frame[f.name].tolist()
        if f.name in masked:
            values = [None if m else v for v, m in zip(values, masked[f.name], strict=True)]
        if f.kind == "text":
            if spec.text_tokens:
                token_blocks.append(_token_block(values, f, spec))
            continue
        if not spec.dense:
            continue
        if f.kind == "vector":
            x, missing = _vector_block(values, f, row_ids)
            names += [f"{f.name}[{j}]" for j in range(x.shape[1])]
        else:
            x1, missing = _number_block(values, f, spec.log_counts)
            x = x1[:, None]
            names.append(f.name)
        blocks += [x, missing.astype(np.float32)[:, None]]
        names.append(f.name + MISSING_SUFFIX)
    if spec.on_failed == "flag" and (spec.dense or spec.text_tokens):
        for status, rows in failed.items():
            blocks.append(rows.astype(np.float32)[:, None])
            names.append(status + FAILED_SUFFIX)
    dense = np.concatenate(blocks, axis=1) if blocks else np.zeros((n, 0), dtype=np.float32)
    labels = None
    if label_column is not None and label_column in frame.columns:
        lab = frame[label_column].to_numpy()
        bad = ~np.isin(lab, (0, 1))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"row {i} ({row_ids[i]})", f"{label_column}={lab[i]} is not 0/1")
        labels = lab.astype(np.int8)
    ts = None
    if "event_timestamp" in frame.columns:
        stamps = pd.to_datetime(frame["event_timestamp"], utc=True)
        ts = stamps.to_numpy(dtype="datetime64[us]").astype(np.int64)
    return RankerData(
        user_ids=users,
        author_ids=authors,
        dense=dense,
        dense_names=names,
        tokens=np.concatenate(token_blocks, axis=1) if token_blocks else None,
        labels=labels,
        event_ts=ts,
    )


def offline_matrix(
    store: FeatureStore,
    service: str | FeatureService,
    entity_df: pd.DataFrame,
    spec: InjectionSpec = InjectionSpec(),
    *,
    label_column: str | None = "label",
) -> RankerData:
    """Point-in-time ranker rows for ``entity_df`` (``user_id``, ``author_id``, tz-aware
    ``event_timestamp``, optional label) through ``service``, rows in input order."""
    from mspa_features.serving.reads import historical_features

    frame = historical_features(store, service, entity_df)
    return to_ranker_data(frame, service_features(store, service), spec, label_column=label_column)


def online_matrix(
    store: FeatureStore,
    service: str | FeatureService,
    pairs: Sequence[tuple[str, str]],
    spec: InjectionSpec = InjectionSpec(),
    *,
    as_of: Any = None,
) -> RankerData:
    """Serving-time ranker rows for (user_id, author_id) ``pairs`` through ``service``.

    ``as_of`` (default now, UTC) is the request instant: values older than their view's TTL
    are missing, as the training read at that instant has them
    (:func:`mspa_features.serving.reads.online_features`).
    """
    from mspa_features.serving.reads import online_features

    frame = online_features(store, service, pairs, as_of=as_of)
    return to_ranker_data(frame, service_features(store, service), spec, label_column=None)


def take(data: RankerData, rows: np.ndarray) -> RankerData:
    """The subset ``rows`` (indices or a boolean mask) of ``data``."""
    return RankerData(
        user_ids=data.user_ids[rows],
        author_ids=data.author_ids[rows],
        dense=data.dense[rows],
        dense_names=list(data.dense_names),
        tokens=None if data.tokens is None else data.tokens[rows],
        labels=None if data.labels is None else data.labels[rows],
        event_ts=None if data.event_ts is None else data.event_ts[rows],
    )


__all__ = [
    "FeatureRef",
    "InjectionSpec",
    "failed_rows",
    "offline_matrix",
    "online_matrix",
    "service_exists",
    "service_features",
    "take",
    "to_ranker_data",
]
