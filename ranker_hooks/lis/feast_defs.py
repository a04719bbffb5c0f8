"""Leak sets for LIS: deliberately leaked (future) features, written and registered like the
MSPA feature sets but tagged so no ordinary ranker variant can read them by accident.

A *leak set* is one folder ``<workspace>/features/<dataset>/leaks/<name>/`` holding
``rows/part-00000.parquet`` (one feature table keyed by ``user_id`` or ``author_id``, with
``event_timestamp`` / ``created_timestamp`` and ``knowledge_ts``: the latest instant, in UTC
microseconds, each row's value depends on) and ``leak.json`` (kind, horizon, window). Feast
objects, for leak set ``<name>`` (default ``<kind>_n<horizon>``):

==========================  ==========================================================
``leak__<name>``            the feature view; every column but keys and timestamps
``lis__<name>``             the feature service an LIS variant reads
==========================  ==========================================================

Both carry tags ``leaked="true"``, ``leak_kind``, ``horizon_days``, ``window_start``,
``window_end`` and ``feature_set``. Leak views never expire (:data:`LEAK_TTL`, 100 years): a leak
is meant to be seen by every row from its ``event_timestamp`` on. The ranker hooks build the
tables (:mod:`ranker_hooks.lis.leaks`); this module only stores and registers them, so the
library never imports the hooks (data flows one way). Registering a leak set also lists it in the
run's store file (``feature_sets.yaml``, :mod:`mspa_features.serving.repo`), so ``feast plan`` /
``feast apply`` in that folder declare it too and never delete it.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from mspa_features.config import RunConfig, Workspace
from mspa_features.errors import FeatureRepoError, LeakBuildError

if TYPE_CHECKING:
    from feast import FeatureStore

LEAK_KINDS = ("future_id", "similar_items", "next_positive")
LeakKind = Literal["future_id", "similar_items", "next_positive"]
KEYS = {"user_id": "user", "author_id": "author"}  # join key -> Feast entity
MANIFEST = "leak.json"
ROWS = "rows"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
#: TTL of every leak view: never expires within any data. Feast's ttl 0 would as well in joins,
#: but then Feast starts a view's first ``materialize-incremental`` at now - 52 weeks, which loads
#: nothing of a historical dataset (Feast docs, FeatureStore.materialize_incremental).
LEAK_TTL = timedelta(days=36500)


def leak_view_name(name: str) -> str:
    return f"leak__{name}"


def lis_service_name(name: str) -> str:
    return f"lis__{name}"


def leak_set_name(kind: str, horizon_days: int) -> str:
    return f"{kind}_n{int(horizon_days)}"


def leaks_root(cfg: RunConfig) -> Path:
    """``<workspace>/features/<dataset>/leaks``: beside the feature sets, never mistaken for one."""
    return Workspace(cfg.workspace).features(cfg.name) / "leaks"


def utc_timestamp(value: Any) -> pd.Timestamp:
    """``value`` as a tz-aware UTC timestamp (naive values are taken as UTC)."""
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def to_us(value: Any) -> int:
    """Microseconds since the epoch (UTC) of a datetime-like."""
    return int(utc_timestamp(value).value // 1000)


@dataclass(frozen=True, kw_only=True)
class LeakSet:
    """One written leak set (the ``leak.json`` manifest plus where it lives).

    Attributes:
        name: leak set name (``future_id_n7``); view ``leak__<name>``.
        kind: one of :data:`LEAK_KINDS`.
        horizon_days: n, how far into the future the leak looks.
        key: join key, ``user_id`` or ``author_id``.
        window_start, window_end: the interactions ``[start, end)`` the values come from
            (ISO 8601, UTC).
        rows: number of feature rows.
        path: the leak set folder.
    """

    name: str
    kind: str
    horizon_days: int
    key: str
    window_start: str
    window_end: str
    rows: int
    path: Path

    @property
    def tags(self) -> dict[str, str]:
        return {
            "leaked": "true",
            "leak_kind": self.kind,
            "horizon_days": str(self.horizon_days),
            "window_start": self.window_start,
            "window_end": self.window_end,
            "feature_set": self.name,
        }


def write_leak_set(
    root: Path,
    frame: pd.DataFrame,
    *,
    kind: str,
    horizon_days: int,
    key: str,
    window_start: Any,
    window_end: Any,
    name: str | None = None,
    schema: Any = None,
) -> LeakSet:
    """Write ``frame`` as leak set ``name`` under ``root`` (replacing a previous one).

    Args:
        schema: the table's ``pyarrow.Schema``; an empty frame keeps its column types only with
            it. Without it every column must have a type pandas can tell (not all-null).

    Raises:
        LeakBuildError: unknown kind or key, a bad name, a missing column, a row whose key or
            timestamp is null (named by row number), or a column whose type cannot be told.
    """
    import pyarrow as pa

    from mspa_features.io import write_parquet_atomic

    name = name or leak_set_name(kind, horizon_days)
    where = f"write_leak_set({name})"
    if kind not in LEAK_KINDS:
        raise LeakBuildError(where, f"unknown leak kind {kind!r}; valid: {list(LEAK_KINDS)}")
    if key not in KEYS:
        raise LeakBuildError(where, f"unknown key {key!r}; valid: {list(KEYS)}")
    if not _NAME.match(name) or "__" in name:
        raise LeakBuildError(where, "name must be [A-Za-z0-9_-] without '__'", field="name")
    if isinstance(horizon_days, bool) or int(horizon_days) != horizon_days or horizon_days < 1:
        raise LeakBuildError(where, f"horizon_days must be >= 1, got {horizon_days!r}")
    for col in (key, "event_timestamp", "created_timestamp", "knowledge_ts"):
        if col not in frame.columns:
            raise LeakBuildError(where, "is missing from the frame", field=col)
        nulls = frame[col].isna().to_numpy()
        if nulls.any():
            raise LeakBuildError(where, "is null", record=f"row {int(nulls.argmax())}", field=col)
    if len(frame.columns) <= 4:
        raise LeakBuildError(where, "frame holds no feature column")

    if schema is None and frame.empty:
        # pandas types the columns of an empty frame as float64: the key would be written as a
        # float, which Feast cannot join with the string ids of every other table.
        raise LeakBuildError(where, "frame is empty: pass its schema to keep the column types")
    folder = Path(root) / name
    if schema is not None and frame.empty:
        # pandas types an empty frame's columns float64 (a list or timestamp column too), which
        # arrow cannot cast to the schema's types: the schema alone says what the table holds.
        missing = [n for n in schema.names if n not in frame.columns]
        if missing:
            raise LeakBuildError(where, "is missing from the frame", field=missing[0])
    try:
        table = (
            schema.empty_table()
            if schema is not None and frame.empty
            else pa.Table.from_pandas(
                frame.reset_index(drop=True), schema=schema, preserve_index=False
            )
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, KeyError) as e:
        raise LeakBuildError(where, f"frame does not fit the schema: {e}") from e
    untyped = [f.name for f in table.schema if pa.types.is_null(f.type)]
    if untyped:
        # An empty or all-null column would be written as type null, and read back as float
        # by Feast's offline store: not comparable with the string keys it joins on.
        raise LeakBuildError(
            where, "has no type (empty or all null): pass the schema", field=untyped[0]
        )
    key_type = table.schema.field(key).type
    if not (pa.types.is_string(key_type) or pa.types.is_large_string(key_type)):
        raise LeakBuildError(where, f"must hold string ids, got {key_type}", field=key)
    write_parquet_atomic(table, folder / ROWS / "part-00000.parquet")
    leak = LeakSet(
        name=name,
        kind=kind,
        horizon_days=int(horizon_days),
        key=key,
        window_start=utc_timestamp(window_start).isoformat(),
        window_end=utc_timestamp(window_end).isoformat(),
        rows=len(frame),
        path=folder.resolve(),
    )
    manifest = {k: v for k, v in asdict(leak).items() if k != "path"}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return leak


def read_leak_set(folder: Path) -> LeakSet:
    """Read the manifest of one leak set folder.

    Raises:
        FeatureRepoError: the folder has no readable ``leak.json``.
    """
    path = Path(folder) / MANIFEST
    try:
        raw = json.loads(path.read_text())
        return LeakSet(**raw, path=Path(folder).resolve())
    except (OSError, json.JSONDecodeError, TypeError) as e:
        raise FeatureRepoError(f"{path}: not a leak set manifest ({e})") from e


def discover_leak_sets(cfg: RunConfig) -> dict[str, LeakSet]:
    """Leak set name -> manifest, for every leak set under :func:`leaks_root`."""
    root = leaks_root(cfg)
    if not root.is_dir():
        return {}
    return {d.name: read_leak_set(d) for d in sorted(root.iterdir()) if (d / MANIFEST).is_file()}


def _feast_dtype(arrow_type: Any) -> Any:
    import pyarrow as pa
    from feast.types import Array, Bool, Float32, Float64, Int32, Int64, String

    scalar = {
        pa.float32(): Float32,
        pa.float64(): Float64,
        pa.int32(): Int32,
        pa.int64(): Int64,
        pa.string(): String,
        pa.large_string(): String,
        pa.bool_(): Bool,
    }
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        inner = scalar.get(arrow_type.value_type)
        return Array(inner) if inner is not None else None
    return scalar.get(arrow_type)


def _float_width(table: Any, col: Any) -> int:
    """Width of a float-array column (first non-null row), 0 for anything else.

    Declared on the field so a reader knows the width even when every value it got is null.
    """
    import pyarrow as pa

    if not (pa.types.is_list(col.type) and pa.types.is_floating(col.type.value_type)):
        return 0
    for value in table.column(col.name).to_pylist():
        if value is not None:
            return len(value)
    return 0


def build_leak_definitions(
    leak_sets: Mapping[str, LeakSet],
    *,
    source_kind: Literal["file", "spark"] = "file",
    ttl: timedelta = LEAK_TTL,
) -> list[Any]:
    """The Feast objects for ``leak_sets``: entities, then per set a source, view and service.

    The view's schema is read from the written parquet (every column but the key and the
    timestamps), so the builders decide the columns.

    Args:
        leak_sets: leak set name -> its manifest.
        source_kind: ``file`` (duckdb offline store) or ``spark``.
        ttl: the views' TTL; default :data:`LEAK_TTL` (never expires).

    Raises:
        FeatureRepoError: a leak set has no rows file or a column Feast cannot type.
    """
    import pyarrow.parquet as pq
    from feast import FeatureService, FeatureView, Field

    from mspa_features.serving.definitions import _source, entities

    # The entities of every MSPA view: re-applying them changes nothing.
    user, author = entities()
    by_key = {"user_id": user, "author_id": author}
    objects: list[Any] = [user, author]
    for name, leak in leak_sets.items():
        rows = leak.path / ROWS
        files = sorted(rows.glob("*.parquet"))
        if not files:
            raise FeatureRepoError(f"leak set {name!r}: no parquet under {rows}")
        table = pq.read_table(files[0])
        fields = []
        for col in table.schema:
            if col.name in (leak.key, "event_timestamp", "created_timestamp"):
                continue
            dtype = _feast_dtype(col.type)
            if dtype is None:
                raise FeatureRepoError(
                    f"leak set {name!r}: column {col.name!r} has type {col.type}"
                )
            width = _float_width(table, col)
            fields.append(Field(name=col.name, dtype=dtype, vector_length=width))
        source = _source(f"leak_rows__{name}", rows, source_kind, f"leaked rows ({name})")
        view = FeatureView(
            name=leak_view_name(name),
            entities=[by_key[leak.key]],
            ttl=ttl,  # never expires: the leak is visible to every later row
            schema=fields,
            source=source,
            online=True,
            tags=leak.tags,
            description=f"LEAKED ({leak.kind}, {leak.horizon_days} days ahead): LIS only",
        )
        service = FeatureService(
            name=lis_service_name(name),
            features=[view],
            tags={**leak.tags, "variant": "lis"},
            description=f"LIS variant reading leak set {name!r}",
        )
        objects += [source, view, service]
    return objects


@dataclass(frozen=True, kw_only=True)
class LeakRegisterReport:
    """What :func:`register_leaks` applied (view name -> tags) and how long it took."""

    leak_sets: dict[str, LeakSet]
    views: dict[str, dict[str, str]]
    services: list[str]
    materialized: list[str]
    seconds: float


def register_leaks(
    cfg: RunConfig,
    leak_sets: list[str] | None = None,
    *,
    repo_path: Path = Path("feature_repo"),
    store_yaml: Path | None = None,
    materialize: bool = False,
    end: datetime | None = None,
) -> LeakRegisterReport:
    """Apply the leak sets' views and services to the run's Feast store (beside the MSPA sets).

    Args:
        cfg: the run config; leak sets are read from :func:`leaks_root`.
        leak_sets: names to register; default every leak set found.
        repo_path, store_yaml: as :func:`mspa_features.serving.materialize.register`.
        materialize: also load the views into the online store (offline reads, all an
            ablation needs, work without it).
        end: materialization end (default now, UTC).

    Raises:
        FeatureRepoError: no leak set found, or a named one is missing.
    """
    from mspa_features.serving.materialize import store_lock

    t0 = time.perf_counter()
    found = discover_leak_sets(cfg)
    if leak_sets is None:
        sets = found
    else:
        missing = [n for n in leak_sets if n not in found]
        if missing:
            raise FeatureRepoError(
                f"leak set(s) {missing} not built under {leaks_root(cfg)}",
                feature_sets={k: v.path for k, v in found.items()},
            )
        sets = {n: found[n] for n in leak_sets}
    if not sets:
        raise FeatureRepoError(f"no leak set under {leaks_root(cfg)}", feature_sets={})
    with store_lock(cfg, "register leak sets"):
        return _apply_leaks(cfg, sets, repo_path, store_yaml, materialize, end, t0)


def _apply_leaks(
    cfg: RunConfig,
    sets: dict[str, LeakSet],
    repo_path: Path,
    store_yaml: Path | None,
    materialize: bool,
    end: datetime | None,
    t0: float,
) -> LeakRegisterReport:
    from mspa_features.serving.materialize import open_store, record_infra, write_run_repo
    from mspa_features.serving.repo import FolderEntry, update_feature_sets

    store: FeatureStore = open_store(cfg, repo_path=repo_path, store_yaml=store_yaml)
    source_kind = "spark" if store.config.offline_store.type == "spark" else "file"
    store.apply(build_leak_definitions(sets, source_kind=source_kind))
    record_infra(store)
    # Listed in the store's feature_sets.yaml: `feast plan` there declares them too.
    store_dir = write_run_repo(cfg, repo_path=repo_path, store_yaml=store_yaml)

    def add(fsf: Any) -> None:
        fsf.leak_sets.update({n: FolderEntry(path=leak.path) for n, leak in sets.items()})

    update_feature_sets(store_dir, add, default_ttl=timedelta(days=cfg.features.ttl_days))
    materialized = []
    if materialize:
        end = end or datetime.now(UTC)
        for name, leak in sets.items():
            if leak.rows == 0:
                continue  # nothing to load; the view is registered with its schema all the same
            start = utc_timestamp(pd.read_parquet(leak.path / ROWS)["event_timestamp"].min())
            store.materialize(
                start_date=start.to_pydatetime(), end_date=end, feature_views=[leak_view_name(name)]
            )
            materialized.append(leak_view_name(name))
    return LeakRegisterReport(
        leak_sets=sets,
        views={leak_view_name(n): s.tags for n, s in sets.items()},
        services=[lis_service_name(n) for n in sets],
        materialized=materialized,
        seconds=time.perf_counter() - t0,
    )


__all__ = [
    "LEAK_KINDS",
    "LEAK_TTL",
    "LeakRegisterReport",
    "LeakSet",
    "build_leak_definitions",
    "discover_leak_sets",
    "leak_set_name",
    "leak_view_name",
    "leaks_root",
    "lis_service_name",
    "read_leak_set",
    "register_leaks",
    "to_us",
    "utc_timestamp",
    "write_leak_set",
]
