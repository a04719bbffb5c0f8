"""Apply backfilled feature sets to a run's Feast store and materialize them online
(``mspa register``; Feast docs: "feast apply" registers objects in the registry, ``registry.db``;
"materialize" loads the latest values into the online store).

The repo folder (``feature_repo/``) holds definitions and configuration. :func:`store_config`
reads one of its store files (``feature_store.yaml``, ``stores/<kind>.yaml``) and points the
registry and file-based online stores INTO the run's workspace, one folder per store::

    <workspace>/feast/<run name>/<online kind>[-<offline kind>]/registry.db
    <workspace>/feast/<run name>/sqlite/online_store.db
    <workspace>/feast/<run name>/milvus/milvus.db
    <workspace>/feast/<run name>/sqlite-spark/...    (stores/spark.yaml)

so several runs never write over each other, and the materialization intervals a registry
records always describe the online store beside it. :func:`apply_and_materialize` also makes
that folder a Feast repo (:mod:`mspa_features.serving.repo`): the ``feature_store.yaml`` it
used, a ``feature_sets.yaml`` listing every set applied there, and a copy of the repo's
definitions, so ``feast plan`` / ``feast apply`` / ``feast materialize-incremental`` run there
agree with mspa (one registry, the same objects). The views' TTL is the dataset's policy
(``features.ttl_days`` in the run config, written to ``feature_sets.yaml``).

Materialization: a view materialized for the first time starts at its earliest snapshot in the
data (Feast's own incremental default, now minus TTL, would silently skip a backfill of old
history such as MovieLens 1997-98); later runs continue from the previous end
(``materialize_incremental``). ``incremental=False`` re-materializes the whole window.

Writers take the run's lock (:func:`store_lock`, a ``flock`` on
``<workspace>/locks/<run>.lock``): a second ``mspa register`` or a backfill of the same run
waits for the first (up to ``$MSPA_LOCK_TIMEOUT`` seconds) or refuses, naming the holder, so
two ``feast apply`` never interleave their registry rewrites.
"""

from __future__ import annotations

import json
import os
import re
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypedDict, Unpack

import yaml

from mspa_features import logs
from mspa_features.config import RunConfig, Workspace
from mspa_features.errors import ConfigError, FeatureRepoError, UnknownNameError
from mspa_features.extras import require
from mspa_features.serving.definitions import (
    SERVICE_KINDS,
    author_view_name,
    pref_view_name,
    service_name,
)
from mspa_features.serving.redis_store import (
    check_redis,
    mask_password,
    redis_connection_string,
    redis_errors,
)
from mspa_features.serving.repo import (
    FEATURE_SETS_FILE,
    FeatureSetEntry,
    FeatureSetsFile,
    feature_set_objects,
    source_kind,
    update_feature_sets,
    write_store_repo,
)

if TYPE_CHECKING:
    from feast import FeatureStore, RepoConfig

OnlineKind = Literal["sqlite", "redis", "milvus"]
ONLINE_KINDS: tuple[str, ...] = ("sqlite", "redis", "milvus")
# store file per online store kind, inside the repo folder (Feast's default file, then variants)
STORE_YAMLS = {
    "sqlite": "feature_store.yaml",
    "redis": "stores/redis.yaml",
    "milvus": "stores/milvus.yaml",
}
# The folder's feature_store.yaml and the variants beside it (was feature_store.<kind>.yaml).
SPARK_YAML = "stores/spark.yaml"
# Defaults for ${VAR} placeholders in the yaml files when the variable is unset.
ENV_DEFAULTS = {"REDIS_CONNECTION_STRING": "localhost:6379"}
_ENV = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")

DEFAULT_REPO = Path("feature_repo")


class StoreTarget(TypedDict, total=False):
    """Which of a run's Feast stores a call opens: the keyword arguments that
    :func:`store_config`, :func:`open_store`, :func:`check_online_store`,
    :func:`write_run_repo` and :func:`apply_and_materialize` share (all optional).

    Keys:
        repo_path: the Feast repo folder holding the yaml files (default ``feature_repo``).
        store_yaml: a yaml file to use; default ``repo_path/feature_store.yaml``, or
            ``repo_path/stores/<online>.yaml``. A yaml whose offline store is ``spark``
            registers SparkSources.
        online: ``sqlite``, ``redis`` or ``milvus``: picks the yaml variant, and replaces the
            yaml's online store by that kind's defaults when ``store_yaml`` names a file with
            another one. Default: the run config's ``serving.online_store`` (with a
            ``store_yaml`` and no store named in the config: the yaml's).
        redis_url: Redis ``host:port[,db=N,...]`` (Feast connection string); overrides
            ``serving.redis``, the yaml and ``$REDIS_CONNECTION_STRING``.
    """

    repo_path: Path
    store_yaml: Path | None
    online: OnlineKind | None
    redis_url: str | None


# --------------------------------------------------------------------------- reports


@dataclass(frozen=True, kw_only=True)
class ViewReport:
    """One registered (on-demand) feature view."""

    name: str
    kind: Literal["feature_view", "on_demand"]
    feature_set: str
    features: list[str]
    tags: dict[str, str]


@dataclass(frozen=True, kw_only=True)
class ServiceReport:
    """One registered feature service and the ``view:feature`` refs it serves.

    ``kind`` is one of :data:`~mspa_features.serving.definitions.SERVICE_KINDS`.
    """

    name: str
    feature_set: str
    kind: str
    feature_refs: list[str]
    tags: dict[str, str]

    @property
    def variant(self) -> str:
        """Deprecated name of :attr:`kind` ("variant" is the ablation's word)."""
        warnings.warn(
            "ServiceReport.variant is deprecated: use ServiceReport.kind",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.kind


@dataclass(frozen=True, kw_only=True)
class MaterializationReport:
    """What one materialization wrote for one view.

    ``rows`` counts the snapshot rows in ``[start, end]``; ``entities`` the distinct ids among
    them (Feast writes each id's latest snapshot in the window: one online row per entity).
    ``mode`` is ``first`` (from the earliest snapshot), ``incremental`` or ``full``, or
    ``skipped`` (no data yet, or nothing new: ``start >= end``).
    """

    view: str
    mode: Literal["first", "incremental", "full", "skipped"]
    start: datetime | None
    end: datetime
    rows: int
    entities: int
    latest_snapshot: datetime | None


@dataclass(frozen=True, kw_only=True)
class ApplyReport:
    """Everything :func:`apply_and_materialize` applied and materialized.

    ``registry`` is the path of the Feast registry (``registry.db``) the objects went into;
    ``store_dir`` the Feast repo folder holding it (``feature_store.yaml``, ``feature_sets.yaml``).
    """

    project: str
    registry: str
    online_store: str
    offline_store: str
    feature_sets: dict[str, Path]
    views: list[ViewReport]
    services: list[ServiceReport]
    materialized: list[MaterializationReport] = field(default_factory=list)
    seconds: float = 0.0
    store_dir: Path | None = None


# --------------------------------------------------------------------------- configuration


def _expand_env(text: str) -> str:
    """``${VAR}`` / ``${VAR:-default}`` from the environment (``ENV_DEFAULTS`` for unset)."""

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        value = os.environ.get(name)
        if value:
            return value
        if default is not None:
            return default
        return ENV_DEFAULTS.get(name, m.group(0))

    return _ENV.sub(sub, text)


def feast_dir(cfg: RunConfig, online_kind: str, offline_kind: str = "duckdb") -> Path:
    """Where the registry and file-based online store live for this run and store pair.

    One folder per online store kind (``sqlite``, ``redis``, ``milvus``), suffixed with the
    offline store kind when it is not the default duckdb (``sqlite-spark``): a registry
    records sources of one offline kind and the materializations of one online store.
    """
    leaf = online_kind if offline_kind == "duckdb" else f"{online_kind}-{offline_kind}"
    return Workspace(cfg.workspace).root / "feast" / cfg.name / leaf


def _resolve_yaml(repo_path: Path, store_yaml: Path | None, online: str | None) -> Path:
    if store_yaml is not None:
        return Path(store_yaml)
    kind = online or "sqlite"
    if kind not in STORE_YAMLS:
        raise UnknownNameError("online store", kind, STORE_YAMLS)
    return Path(repo_path) / STORE_YAMLS[kind]


def configured_online(cfg: RunConfig, store_yaml: Path | None = None) -> OnlineKind | None:
    """The online store kind the run config chooses (``serving.online_store``), or None when a
    ``store_yaml`` is given and the config does not name a store (the yaml then decides)."""
    serving = cfg.serving
    if store_yaml is not None and "online_store" not in serving.model_fields_set:
        return None
    return serving.online_store


def resolve_repo_path(repo_path: Path) -> Path:
    """``repo_path`` as given when it exists; a relative path missing from the working directory
    falls back to this checkout's folder of that name (the main job run from another folder)."""
    p = Path(repo_path)
    if p.exists() or p.is_absolute():
        return p
    checkout = Path(__file__).resolve().parents[2] / p
    return checkout if checkout.exists() else p


def store_config(
    cfg: RunConfig, *, emb_dim: int | None = None, **target: Unpack[StoreTarget]
) -> RepoConfig:
    """The Feast ``RepoConfig`` for this run: a repo yaml with paths moved into the workspace.

    Args:
        cfg: the run config (its workspace and name place the registry and online store).
        emb_dim: embedding length for vector stores (Milvus ``embedding_dim``).
        **target: which store (:class:`StoreTarget`: ``repo_path``, ``store_yaml``,
            ``online``, ``redis_url``).

    Raises:
        ConfigError: the yaml is missing, invalid, or fails Feast's validation (each field named).
        MissingExtraError: the online store's client library is not installed.
    """
    from feast import RepoConfig
    from pydantic import ValidationError

    raw, path, where = _store_settings(cfg, target, emb_dim=emb_dim)
    try:
        rc = RepoConfig(repo_path=where, **raw)
        # Online/offline configs are validated lazily by Feast: touch them now so a bad
        # field fails here, with the file named, not halfway through a materialization.
        _ = rc.online_store, rc.offline_store
    except ValidationError as e:
        problems = [f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors()]
        raise ConfigError(path, problems) from e
    return rc


def _store_settings(
    cfg: RunConfig,
    target: StoreTarget,
    *,
    emb_dim: int | None = None,
    create: bool = True,
    placeholders: bool = False,
) -> tuple[dict[str, Any], Path, Path]:
    """(the store's settings as ``feature_store.yaml`` holds them, the yaml read, the run's
    store folder); see :func:`store_config`. ``create=False`` leaves the folder uncreated;
    ``placeholders`` writes a configured Redis password as ``${VAR}``."""
    store_yaml, redis_url = target.get("store_yaml"), target.get("redis_url")
    online = target.get("online") or configured_online(cfg, store_yaml)
    repo_path = resolve_repo_path(target.get("repo_path", DEFAULT_REPO))
    path = _resolve_yaml(repo_path, store_yaml, online)
    if not path.is_file():
        raise ConfigError(path, ["file not found"])
    try:
        raw = yaml.safe_load(_expand_env(path.read_text(encoding="utf-8")))
    except yaml.YAMLError as e:
        raise ConfigError(path, [f"not valid YAML: {e}"]) from e
    if not isinstance(raw, dict):
        raise ConfigError(path, ["top level must be a mapping"])

    online_cfg = raw.get("online_store") or {"type": "sqlite"}
    if isinstance(online_cfg, str):
        online_cfg = {"type": online_cfg}
    online_cfg = dict(online_cfg)
    if online is not None and online_cfg.get("type") != online:
        online_cfg = {"type": online}
    kind = online_cfg.get("type", "sqlite")
    if kind not in ONLINE_KINDS:
        raise ConfigError(path, [f"online_store.type: {kind!r} is not one of {list(ONLINE_KINDS)}"])
    offline_cfg = raw.setdefault("offline_store", {"type": "duckdb"})
    offline_kind = offline_cfg if isinstance(offline_cfg, str) else offline_cfg.get("type", "")
    where = feast_dir(cfg, kind, str(offline_kind))
    if create:
        where.mkdir(parents=True, exist_ok=True)
    if kind == "sqlite":
        online_cfg["path"] = str(where / "online_store.db")
    elif kind == "milvus":
        require("pymilvus")
        online_cfg.setdefault("vector_enabled", True)
        online_cfg.setdefault("metric_type", "COSINE")
        if not (online_cfg.get("host") or online_cfg.get("uri")) or online_cfg.get("path"):
            online_cfg["path"] = str(where / "milvus.db")  # milvus-lite: an embedded file
        if emb_dim:
            online_cfg["embedding_dim"] = emb_dim
    elif kind == "redis":
        require("redis")
        online_cfg.setdefault("connection_string", ENV_DEFAULTS["REDIS_CONNECTION_STRING"])
        if redis_url:
            online_cfg["connection_string"] = redis_url
        elif cfg.serving.redis is not None:
            # The config's explicit settings win over $REDIS_CONNECTION_STRING and the yaml.
            online_cfg["connection_string"] = redis_connection_string(
                cfg.serving.redis, placeholder=placeholders
            )
    raw["online_store"] = online_cfg
    raw["registry"] = str(where / "registry.db")
    return raw, path, where.resolve()


def open_store(cfg: RunConfig, **target: Unpack[StoreTarget]) -> FeatureStore:
    """A ``FeatureStore`` on this run's registry and online store (see :func:`store_config`;
    ``target``: :class:`StoreTarget`)."""
    from feast import FeatureStore

    return FeatureStore(config=store_config(cfg, **target))


def check_online_store(cfg: RunConfig, **target: Unpack[StoreTarget]) -> str:
    """Make sure the run's online store can be reached before anything is written to it: a
    Redis server answers PING (file-based stores always can). Creates no file or folder.
    ``target``: :class:`StoreTarget`.

    Returns:
        The online store, described as :class:`ApplyReport` ``online_store`` does.

    Raises:
        OnlineStoreUnavailableError: Redis is down, unreachable or refuses the password
            (one line naming host:port and what to do).
        ConfigError: the store yaml is invalid.
    """
    raw, _, _ = _store_settings(cfg, target, create=False)
    online_cfg = raw["online_store"]
    if online_cfg.get("type") == "redis":
        timeout = cfg.serving.redis.connect_timeout_s if cfg.serving.redis else 5.0
        check_redis(online_cfg, timeout_s=timeout)
    where_ = online_cfg.get("path") or online_cfg.get("connection_string") or ""
    return f"{online_cfg.get('type')} {mask_password(str(where_))}".strip()


# --------------------------------------------------------------------------- data helpers


def discover_feature_sets(cfg: RunConfig) -> dict[str, Path]:
    """Feature set name -> folder, for every backfill output under the run's features folder."""
    root = Workspace(cfg.workspace).features(cfg.name)
    if not root.is_dir():
        return {}
    return {
        d.name: d
        for d in sorted(root.iterdir())
        if d.is_dir() and ((d / "preferences").is_dir() or (d / "author_profiles").is_dir())
    }


def _dataset(table_dir: Path) -> Any | None:
    import pyarrow.dataset as ds

    if not table_dir.is_dir() or not any(table_dir.rglob("*.parquet")):
        return None
    return ds.dataset(table_dir, format="parquet", partitioning="hive")


def _snapshot_range(table_dir: Path) -> tuple[datetime, datetime] | None:
    """(earliest, latest) ``event_timestamp`` in a contract folder; None when it holds no rows."""
    import pyarrow.compute as pc

    dataset = _dataset(table_dir)
    if dataset is None:
        return None
    col = dataset.to_table(columns=["event_timestamp"]).column("event_timestamp")
    if len(col) == 0:
        return None
    mm = pc.min_max(col).as_py()
    return _utc(mm["min"]), _utc(mm["max"])


def _window_counts(table_dir: Path, key: str, start: datetime, end: datetime) -> tuple[int, int]:
    """(snapshot rows, distinct ids) with ``start <= event_timestamp <= end``."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    dataset = _dataset(table_dir)
    if dataset is None:
        return 0, 0
    ts = ds.field("event_timestamp")
    t = dataset.to_table(columns=[key], filter=(ts >= start) & (ts <= end))
    return t.num_rows, len(pc.unique(t.column(key)))


def _embedding_dim(table_dir: Path, column: str) -> int | None:
    dataset = _dataset(table_dir)
    if dataset is None:
        return None
    for batch in dataset.to_batches(columns=[column], batch_size=1):
        if batch.num_rows:
            value = batch.column(0)[0].as_py()
            return len(value) if value is not None else None
    return None


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


# --------------------------------------------------------------------------- register


def _views_and_services(store: FeatureStore, sets: Mapping[str, Path]) -> tuple[list, list]:
    views: list[ViewReport] = []
    services: list[ServiceReport] = []
    for fs in sets:
        for name in (pref_view_name(fs), author_view_name(fs)):
            fv = store.get_feature_view(name)
            views.append(
                ViewReport(
                    name=name,
                    kind="feature_view",
                    feature_set=fs,
                    features=[f.name for f in fv.features],
                    tags=dict(fv.tags),
                )
            )
        odfv = store.get_on_demand_feature_view(f"user_author_cosine__{fs}")
        views.append(
            ViewReport(
                name=odfv.name,
                kind="on_demand",
                feature_set=fs,
                features=[f.name for f in odfv.features],
                tags=dict(odfv.tags),
            )
        )
        for kind in SERVICE_KINDS:
            svc = store.get_feature_service(service_name(kind, fs))
            refs = [
                f"{p.name_to_use()}:{f.name}"
                for p in svc.feature_view_projections
                for f in p.features
            ]
            services.append(
                ServiceReport(
                    name=svc.name,
                    feature_set=fs,
                    kind=kind,
                    feature_refs=refs,
                    tags=dict(svc.tags),
                )
            )
    return views, services


def apply_and_materialize(
    cfg: RunConfig,
    feature_sets: list[str] | None = None,
    *,
    incremental: bool = True,
    end: datetime | None = None,
    start: datetime | None = None,
    ttl: timedelta | None = None,
    leaked: Mapping[str, bool] | None = None,
    model_versions: Mapping[str, str] | None = None,
    materialize: bool = True,
    **target: Unpack[StoreTarget],
) -> ApplyReport:
    """Apply the definitions of ``feature_sets`` (``feast apply``) and materialize them online.

    The run's store folder becomes a Feast repo listing them (``feature_sets.yaml``, the
    ``feature_store.yaml`` used, the repo's definitions), and every feature set it lists is
    (re)applied with the same definitions, so the plain ``feast plan`` there shows no change.

    Args:
        cfg: the run config; feature sets are read from
            ``Workspace(cfg.workspace).features(cfg.name) / <feature set>``.
        feature_sets: names to register; default every backfilled set found there.
        incremental: True: continue from each view's previous end (first run: from its
            earliest snapshot); False: materialize ``[start, end]`` in full.
        end: materialize up to this instant (default now, UTC).
        start: full mode only: window start (default each view's earliest snapshot).
        ttl: every view's TTL (point-in-time lookback; Feast's first
            ``materialize-incremental`` starts at now - TTL); default the dataset's policy,
            ``cfg.features.ttl_days``.
        leaked: feature set -> built from leaked data (tag ``leaked``).
        model_versions: feature set -> model version tag (default: read from the data).
        materialize: False registers only.
        **target: which store (:class:`StoreTarget`: ``repo_path``, ``store_yaml``,
            ``online``, ``redis_url``).

    Returns:
        What was registered (views with tags, services with feature refs) and materialized.

    Raises:
        FeatureRepoError: no feature set found, a named one has no folder, or a name cannot
            be used in Feast object names (with the Spark offline store or Milvus: not a plain
            SQL identifier).
        ConfigError: the store yaml is invalid.
        MissingExtraError: the online store's client library is missing.
        WorkspaceBusyError: another command kept this run's store locked past the timeout
            (``$MSPA_LOCK_TIMEOUT``); nothing was written.
    """
    with store_lock(cfg, "register"):
        t0 = time.perf_counter()
        sets = _chosen_sets(cfg, feature_sets)
        emb_dim = next(
            (d for fs in sets.values() if (d := _embedding_dim(fs / "preferences", "pref_emb"))),
            384,
        )
        check_online_store(cfg, **target)
        rc = store_config(cfg, emb_dim=emb_dim, **target)
        _check_names(sets, rc)
        from feast import FeatureStore

        store = FeatureStore(config=rc)
        store_dir = write_run_repo(cfg, emb_dim=emb_dim, **target)
        fsf = _list_sets(
            store,
            store_dir,
            sets,
            emb_dim=emb_dim,
            ttl=ttl if ttl is not None else timedelta(days=cfg.features.ttl_days),
            leaked=dict(leaked or {}),
            model_versions=dict(model_versions or {}),
        )
        # Every set the store's file lists, with the definitions the plain Feast CLI builds there.
        objects = feature_set_objects(fsf, source=source_kind(str(rc.offline_store.type)))
        with redis_errors(rc.online_store, writing=True):
            store.apply(objects)
        record_infra(store)
        views, services = _views_and_services(store, sets)

        materialized: list[MaterializationReport] = []
        if materialize:
            end = _utc(end) if end is not None else datetime.now(UTC)
            reg = str(rc.registry.path)
            # Beside a local registry file; a remote registry (sql://, s3://) keeps no state.
            state = None if "://" in reg else Path(reg).parent / MATERIALIZED_STATE
            with redis_errors(rc.online_store, writing=True):
                materialized = _materialize(
                    store, sets, incremental=incremental, start=start, end=end, state_path=state
                )
        return ApplyReport(
            project=rc.project,
            registry=str(rc.registry.path),
            online_store=describe_online(rc),
            offline_store=rc.offline_store.type,
            feature_sets=dict(sets),
            views=views,
            services=services,
            materialized=materialized,
            seconds=time.perf_counter() - t0,
            store_dir=store_dir,
        )


def store_lock(cfg: RunConfig, purpose: str) -> Any:
    """The run's write lock (:func:`mspa_features.locking.run_lock`): held by every command
    that writes its backfill partitions, Feast registry or online store."""
    import sys

    from mspa_features.locking import run_lock

    argv = " ".join(sys.argv[1:])[:160]
    return run_lock(cfg.workspace, cfg.name, purpose=f"{purpose} ({argv})" if argv else purpose)


def _check_names(sets: Mapping[str, Path], rc: RepoConfig | None = None) -> None:
    """Every feature set name must be usable in Feast object names (and, for the Spark
    offline store or Milvus, as a plain SQL identifier).

    Raises:
        FeatureRepoError: naming the set and the rule, before anything is applied.
    """
    from mspa_features.names import check_feature_set_for_store, feature_set_name

    for fs in sets:
        try:
            feature_set_name(fs)
        except ValueError as e:
            raise FeatureRepoError(str(e)) from None
        if rc is not None:
            why = check_feature_set_for_store(
                fs, offline=str(rc.offline_store.type), online=str(rc.online_store.type)
            )
            if why:
                raise FeatureRepoError(why)


def _chosen_sets(cfg: RunConfig, feature_sets: list[str] | None) -> dict[str, Path]:
    """Feature set -> folder of the sets to register: ``feature_sets``, or every backfilled one.

    Raises:
        FeatureRepoError: none found, a named one not backfilled, or a name Feast cannot use.
    """
    found = discover_feature_sets(cfg)
    if feature_sets is None:
        sets = found
        if not sets:
            raise FeatureRepoError(
                f"no backfilled feature set under {Workspace(cfg.workspace).features(cfg.name)}",
                feature_sets=found,
            )
    else:
        _check_names(dict.fromkeys(feature_sets, Path()))
        missing = [fs for fs in feature_sets if fs not in found]
        if missing:
            raise FeatureRepoError(f"feature set(s) {missing} not backfilled", feature_sets=found)
        sets = {fs: found[fs] for fs in feature_sets}
    _check_names(sets)
    return sets


def _list_sets(
    store: FeatureStore,
    store_dir: Path,
    sets: Mapping[str, Path],
    *,
    emb_dim: int,
    ttl: timedelta,
    leaked: Mapping[str, bool],
    model_versions: Mapping[str, str],
) -> FeatureSetsFile:
    """Add ``sets`` to the store folder's ``feature_sets.yaml`` (what the plain CLI declares).

    Raises:
        FeatureRepoError: ``leaked`` names a set not being registered.
    """
    unknown = set(leaked) - set(sets)
    if unknown:
        raise FeatureRepoError(f"'leaked' names unknown feature sets {sorted(unknown)}")

    def add_sets(fsf: FeatureSetsFile) -> None:
        fsf.emb_dim = emb_dim
        for fs, root in sets.items():
            fsf.feature_sets[fs] = FeatureSetEntry(
                path=Path(root).resolve(),
                model_version=model_versions.get(fs),
                leaked=bool(leaked.get(fs, False)),
            )

    if not (store_dir / FEATURE_SETS_FILE).is_file():
        # A store registered before the file existed: list what its registry already holds,
        # so the plain CLI there does not delete it.
        _adopt_registered(store, store_dir, ttl)
    return update_feature_sets(store_dir, add_sets, ttl=ttl)


def write_run_repo(
    cfg: RunConfig, *, emb_dim: int | None = None, **target: Unpack[StoreTarget]
) -> Path:
    """Make the run's store folder (:func:`feast_dir`) a Feast repo for the plain CLI: the
    ``feature_store.yaml`` mspa opens (absolute paths into that folder) and copies of the
    repo's ``feature_definitions.py`` and ``.feastignore``. Writers call it under the run's
    lock (:func:`store_lock`). Arguments as :func:`store_config`.

    Returns:
        The store folder.
    """
    raw, path, where = _store_settings(
        cfg,
        target,
        emb_dim=emb_dim,
        placeholders=True,  # serving.redis's password as ${VAR}, expanded by Feast on read
    )
    online_cfg = raw["online_store"]
    if (
        online_cfg.get("type") == "redis"
        and not target.get("redis_url")
        and cfg.serving.redis is None
        and os.environ.get(_REDIS_ENV)
    ):
        # Never copy a connection string (it may hold a password) out of the environment.
        raw = {**raw, "online_store": {**online_cfg, "connection_string": f"${{{_REDIS_ENV}}}"}}
    repo_path = resolve_repo_path(target.get("repo_path", DEFAULT_REPO))
    write_store_repo(where, raw, repo_path=repo_path, source_yaml=path)
    return where


_REDIS_ENV = "REDIS_CONNECTION_STRING"


def _adopt_registered(store: FeatureStore, store_dir: Path, ttl: timedelta) -> None:
    """Write ``feature_sets.yaml`` for a store registered before it existed: every feature
    set, leak set and aligned set its registry holds whose folder is still there.

    Leak and aligned views are recognised by name (``leak__<name>``,
    ``aligned_author_id__<fs>``) and their folder is their source's parent (``<folder>/rows``).
    """
    from mspa_features.serving.repo import FolderEntry

    found: dict[str, dict[str, Path]] = {"feature_sets": {}, "leak_sets": {}, "aligned_sets": {}}
    for fv in store.list_feature_views():
        path = getattr(fv.batch_source, "path", None)
        if not path or "://" in str(path):
            continue
        folder = Path(path).parent
        name = fv.name
        if name.startswith("user_preferences__"):
            found["feature_sets"][name.removeprefix("user_preferences__")] = folder
        elif name.startswith("leak__") and (folder / "leak.json").is_file():
            found["leak_sets"][name.removeprefix("leak__")] = folder
        elif name.startswith("aligned_author_id__") and (folder / "aligned.json").is_file():
            found["aligned_sets"][name.removeprefix("aligned_author_id__")] = folder

    def adopt(fsf: FeatureSetsFile) -> None:
        for fs, folder in found["feature_sets"].items():
            if folder.is_dir():
                fsf.feature_sets[fs] = FeatureSetEntry(path=folder)
        fsf.leak_sets.update({n: FolderEntry(path=p) for n, p in found["leak_sets"].items()})
        fsf.aligned_sets.update({n: FolderEntry(path=p) for n, p in found["aligned_sets"].items()})

    update_feature_sets(store_dir, adopt, ttl=ttl)


def record_infra(store: FeatureStore) -> None:
    """Record in the registry the online tables its views need, as ``feast apply`` does.

    ``FeatureStore.apply`` (a partial apply: it never deletes) creates the tables but leaves the
    registry's infra record as it was, so ``feast plan`` would list them as to be created. This
    writes what Feast's own apply writes (``provider.plan_infra`` over the registry, then
    ``registry.update_infra``; Feast ``FeatureStore._apply_diffs``).
    """
    infra = store.provider.plan_infra(store.config, store.registry.proto())
    store.registry.update_infra(infra, store.project, commit=True)


def describe_online(rc: RepoConfig) -> str:
    """``<kind> <path or connection string>``, a password masked (for printing)."""
    o = rc.online_store
    where = getattr(o, "path", None) or getattr(o, "connection_string", None) or ""
    return f"{o.type} {mask_password(str(where))}".strip()


MATERIALIZED_STATE = "materialized_at.json"


def _rewritten_since(table_dir: Path, since: datetime | None) -> datetime | None:
    """Start (UTC midnight) of the earliest ``ds=`` partition whose files changed after
    ``since`` (wall clock); None when none did or ``since`` is unknown.

    Feast's incremental materialization continues from the previous end by *event* time, so a
    partition a backfill (re)wrote in the past, e.g. a rerun of last month or a late historical
    range, would never reach the online store without this.
    """
    if since is None:
        return None
    changed = []
    for part in Path(table_dir).glob("ds=*"):
        files = list(part.glob("*.parquet"))
        if files and max(f.stat().st_mtime for f in files) > since.timestamp():
            try:
                day = date.fromisoformat(part.name.removeprefix("ds="))
            except ValueError:
                continue
            changed.append(datetime(day.year, day.month, day.day, tzinfo=UTC))
    return min(changed) if changed else None


def _materialize(
    store: FeatureStore,
    sets: Mapping[str, Path],
    *,
    incremental: bool,
    start: datetime | None,
    end: datetime,
    state_path: Path | None = None,
) -> list[MaterializationReport]:
    # (view name, contract folder, join key) for every view to materialize
    targets = [
        (v, root / sub, key)
        for fs, root in sets.items()
        for v, sub, key in (
            (pref_view_name(fs), "preferences", "user_id"),
            (author_view_name(fs), "author_profiles", "author_id"),
        )
    ]
    reports: list[MaterializationReport] = []
    # When each view was last materialized (wall clock): partitions written after it are new.
    state: dict[str, str] = {}
    if state_path is not None and state_path.is_file():
        try:
            state = json.loads(state_path.read_text())
        except json.JSONDecodeError:
            state = {}  # an index only: without it, rewritten partitions are not looked for
    for view, table_dir, key in targets:
        rng = _snapshot_range(table_dir)
        fv = store.get_feature_view(view)
        previous_end = fv.most_recent_end_time
        if rng is None:
            reports.append(_skipped(view, None, end, None))
            continue
        started = datetime.now(UTC)
        last = datetime.fromisoformat(state[view]) if view in state else None
        rewritten = _rewritten_since(table_dir, last) if incremental else None
        if incremental and previous_end is not None and rewritten and rewritten < previous_end:
            mode, window_start = "incremental+rewritten", rewritten
        elif incremental and previous_end is not None:
            mode, window_start = "incremental", _utc(previous_end)
        elif incremental:
            mode, window_start = "first", rng[0]
        else:
            mode, window_start = "full", _utc(start) if start is not None else rng[0]
        if window_start >= end:
            reports.append(_skipped(view, window_start, end, rng[1]))
            continue
        with warnings.catch_warnings(), logs.library_prints_to_log():
            # ibis (Feast's duckdb offline store) warns on every read about an API of its own.
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ibis\.")
            if mode == "incremental":
                store.materialize_incremental(end_date=end, feature_views=[view])
            else:
                # The window runs to ``end``: each entity gets its latest row overall, so a
                # rewritten old partition never overwrites a newer online value.
                store.materialize(start_date=window_start, end_date=end, feature_views=[view])
        state[view] = started.isoformat()
        rows, entities = _window_counts(table_dir, key, window_start, end)
        reports.append(
            MaterializationReport(
                view=view,
                mode=mode,
                start=window_start,
                end=end,
                rows=rows,
                entities=entities,
                latest_snapshot=rng[1],
            )
        )
    if state_path is not None:
        state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
        os.replace(tmp, state_path)
    return reports


def _skipped(
    view: str, start: datetime | None, end: datetime, latest: datetime | None
) -> MaterializationReport:
    return MaterializationReport(
        view=view, mode="skipped", start=start, end=end, rows=0, entities=0, latest_snapshot=latest
    )


# --------------------------------------------------------------------------- deprecated names


def register(*args: Any, **kwargs: Any) -> ApplyReport:
    """Deprecated name of :func:`apply_and_materialize` (in Feast the registry is
    ``registry.db``; this function applies the definitions and materializes them)."""
    warnings.warn(
        "mspa_features.serving.materialize.register is deprecated: use apply_and_materialize",
        DeprecationWarning,
        stacklevel=2,
    )
    return apply_and_materialize(*args, **kwargs)


#: Deprecated name of :class:`ApplyReport`.
RegisterReport = ApplyReport
