"""The AIS/LIS ablation runner: train a ranker per variant, score the evaluation window, compare.

For each variant (baseline first): read its feature service through Feast for the training and
evaluation rows of :mod:`ranker_hooks.ablation.split` (one historical read per service, shared by
variants), refuse leaked views unless the variant is LIS, train one ranker per seed, and score
the evaluation window. A variant's scores are the mean of its seeds' probabilities; AUC, UAUC,
GAUC, logloss and WPAUC are computed on them, and the delta AUC against the baseline comes with
a paired cluster bootstrap over users (:func:`mspa_features.evaluation.metrics.paired_bootstrap`).
Per-seed AUCs are kept too (``auc_seeds``) to show the seed noise.

Everything is written to ``<workspace>/results/ablation/<run>/results.json`` with a
comparison table and a plot, then logged to MLflow from that folder (one parent run, one nested
run per variant; :mod:`ranker_hooks.ablation.tracking`): an unreachable store costs no training.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mspa_features.config import RunConfig, Workspace, load_yaml_model
from mspa_features.errors import AblationError, ConfigError
from mspa_features.names import experiment_name, feature_set_name, folder_name, sqlite_uri
from ranker_hooks.ablation.split import TemporalSplit, load_interactions, split_interactions
from ranker_hooks.ablation.variants import BUILTIN_VARIANTS, HookContext, Variant, builtin_variant
from ranker_hooks.aligned_id.adapter import cold_author_ids
from ranker_hooks.inject import (
    InjectionSpec,
    service_exists,
    service_features,
    take,
    to_ranker_data,
)

if TYPE_CHECKING:
    from feast import FeatureStore

    from ranker_hooks.rankers.base import Ranker, RankerData

Progress = Callable[[str, int, int], None]

# Short names of ranker backends; anything else is a dotted ``module:Class`` path.
RANKERS = {
    "torch": "ranker_hooks.rankers.torch_ranker:TorchRanker",
    "tfra": "ranker_hooks.rankers.tfra_ranker:TfraRanker",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RankerSection(_Strict):
    """The ranker backend and its hyper-parameters (the backend's own config validates them)."""

    type: str = Field("torch", description=f"one of {list(RANKERS)} or 'module:Class'")
    params: dict[str, Any] = Field(default_factory=dict, description="backend keyword arguments")


class InjectionSection(_Strict):
    """Settings of the hashed text-token features."""

    max_tokens: int = Field(32, ge=1, description="tokens kept per text feature")
    token_buckets: int = Field(4096, ge=2, description="hash space of text tokens")


class BootstrapSection(_Strict):
    n_boot: int = Field(1000, ge=10, description="bootstrap resamples of users")
    seed: int = 0


class MlflowSection(_Strict):
    tracking_uri: str | None = Field(
        None, description="default: sqlite:///<workspace>/mlflow.db; any MLflow URI"
    )
    experiment: str = "mspa-ablation"

    @field_validator("experiment")
    @classmethod
    def _experiment(cls, v: str) -> str:
        return experiment_name(v, "mlflow.experiment")


class AblationConfig(_Strict):
    """One ablation (``mspa ablate FILE``)."""

    name: str = Field("ais", description="ablation name; the run folder is <name>-<UTC time>")
    run_config: Path | None = Field(
        None, description="the run config YAML (dataset, workspace), relative to this file"
    )
    feature_set: str = Field("template", description="feature set of the AIS variants")
    llm_feature_set: str = Field("llm", description="feature set of the llm_text variant")
    variants: list[str] = Field(
        default_factory=lambda: list(BUILTIN_VARIANTS),
        description=f"built-in variants to run, from {list(BUILTIN_VARIANTS)}",
    )
    compare_feature_sets: list[str] = Field(
        default_factory=list,
        description=(
            "more feature sets whose AIS variants run beside feature_set's, named "
            "<variant>@<set> (the 'all' row of llm_feature_set is the llm_text variant)"
        ),
    )
    users: list[str] | None = Field(
        None,
        min_length=1,
        description="only these users' impressions, for training and evaluation (a user "
        "sample every compared feature set covers; null: every user)",
    )
    authors: list[str] | None = Field(
        None,
        min_length=1,
        description="only impressions of these authors (the sample's authors; null: all)",
    )
    split: TemporalSplit
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    threads: int = Field(1, ge=1, description="torch intra-op threads of the ranker")
    max_train_rows: int | None = Field(
        None, ge=10, description="keep only the latest N training rows (null: all)"
    )
    read_chunk_rows: int = Field(
        25_000, ge=1, description="entity rows per Feast historical read (bounds peak memory)"
    )
    ranker: RankerSection = Field(default_factory=RankerSection)
    injection: InjectionSection = Field(default_factory=InjectionSection)
    bootstrap: BootstrapSection = Field(default_factory=BootstrapSection)
    mlflow: MlflowSection = Field(default_factory=MlflowSection)
    repo_path: Path = Field(Path("feature_repo"), description="Feast repo folder (yaml files)")

    @field_validator("variants")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        unknown = [x for x in v if x not in BUILTIN_VARIANTS]
        if unknown:
            raise ValueError(f"unknown variant(s) {unknown}; built-in: {list(BUILTIN_VARIANTS)}")
        if len(set(v)) != len(v):
            raise ValueError(f"variants repeat a name: {v}")
        return v

    # Names reach folders, MLflow and Feast object names: a bad one fails at load, named.
    @field_validator("name")
    @classmethod
    def _folder(cls, v: str) -> str:
        return folder_name(v, "name")

    @field_validator("feature_set", "llm_feature_set")
    @classmethod
    def _feature_set(cls, v: str) -> str:
        return feature_set_name(v)

    @model_validator(mode="after")
    def _compared_sets(self) -> AblationConfig:
        for fs in getattr(self, "compare_feature_sets", None) or []:
            feature_set_name(fs, "compare_feature_sets entry")
        return self


def load_ablation_config(path: str | Path) -> AblationConfig:
    """Load and validate an ablation config; ``run_config`` is resolved against its folder.

    Raises:
        ConfigError: missing file, bad YAML, an invalid field (named), or a ranker backend
            that refuses its ``params``.
    """
    p = Path(path)
    cfg = load_yaml_model(p, AblationConfig)
    if cfg.run_config is not None and not cfg.run_config.is_absolute():
        cfg.run_config = (p.parent / cfg.run_config).resolve()
    try:
        make_ranker(cfg, seed=cfg.seeds[0])
    except (TypeError, ValueError, ImportError) as e:
        raise ConfigError(p, [f"ranker: {e}"]) from e
    return cfg


def ranker_class(type_: str) -> type[Ranker]:
    """The backend class for a short name or ``module:Class`` path.

    Raises:
        ValueError: unknown short name, or a path that does not name a Ranker subclass.
    """
    from ranker_hooks.rankers.base import Ranker

    target = RANKERS.get(type_, type_)
    if ":" not in target:
        raise ValueError(f"unknown ranker type {type_!r}; valid: {list(RANKERS)} or 'module:Class'")
    module, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module), attr, None)
    if not (isinstance(cls, type) and issubclass(cls, Ranker)):
        raise TypeError(f"ranker type {type_!r} does not name a Ranker subclass")
    return cls


def make_ranker(cfg: AblationConfig, seed: int) -> Ranker:
    """A fresh ranker of the configured backend, seeded; torch gets ``threads`` by default."""
    cls = ranker_class(cfg.ranker.type)
    params = dict(cfg.ranker.params)
    if cfg.ranker.type == "torch":
        params.setdefault("threads", cfg.threads)
    return cls(**params, seed=seed)


# --------------------------------------------------------------------------- results


@dataclass
class VariantResult:
    """One variant's row of the results JSON (the first 15 fields are the contract)."""

    name: str
    kind: str
    leaked: bool
    auc: float
    uauc: float
    gauc: float
    logloss: float
    wpauc: float
    delta_auc: float
    delta_auc_ci_low: float
    delta_auc_ci_high: float
    p_value: float
    n_train: int
    n_test: int
    mlflow_run_id: str | None = None
    service: str = ""
    feature_refs: list[str] = field(default_factory=list)
    model_version: str = ""
    feature_set: str = ""
    description: str = ""
    auc_seeds: list[float] = field(default_factory=list)
    seconds: float = 0.0
    # Cold slice: test rows whose author was first seen at or after T (no M_T ID row).
    cold_n_test: int = 0
    cold_auc: float | None = None
    cold_delta_auc: float | None = None
    cold_delta_auc_ci_low: float | None = None
    cold_delta_auc_ci_high: float | None = None
    leak_source: str = ""  # lis variants: the leak view or future window read (Variant)
    # Users of the eval window with both labels: the clusters behind the CI (and UAUC).
    n_users_both_labels: int = 0


@dataclass
class AblationResult:
    """What :func:`run_ablation` returns."""

    run_name: str
    variants: list[VariantResult]
    results_path: Path
    parent_run_id: str | None
    tracking_uri: str
    window: dict[str, str]
    seeds: list[int]
    notes: list[str] = field(default_factory=list)
    artifacts: dict[str, Path] = field(default_factory=dict)
    # One line when the MLflow store could not be written (results.json and the reports are
    # on disk all the same; ``mspa runs log <folder>`` logs them later without training).
    tracking_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run_name,
            "parent_run_id": self.parent_run_id,
            "tracking_uri": self.tracking_uri,
            "window": self.window,
            "seeds": self.seeds,
            "notes": self.notes,
            "variants": [asdict(v) for v in self.variants],
        }


# --------------------------------------------------------------------------- guards


def check_not_leaked(store: FeatureStore, variant: Variant) -> None:
    """Refuse a non-LIS variant whose service reads a view tagged ``leaked=true``.

    Delegates to :func:`ranker_hooks.lis.leaks.guard.refuse_leaks` (on-demand views are followed
    to their sources).

    Raises:
        LeakedFeatureError: naming the variant, its service and the leaked views.
    """
    from ranker_hooks.lis.leaks.guard import refuse_leaks

    refuse_leaks(store, variant.service, variant.name, kind=variant.kind)


# --------------------------------------------------------------------------- runner


class _Frames:
    """One Feast historical read per service over train + test rows, shared by variants.

    Reads go in chunks of ``chunk_rows`` entity rows: the point-in-time join is per row, so
    chunking changes no value, and it bounds the memory of Feast's on-demand (cosine)
    transform, which turns every embedding into Python lists. A frame is dropped once the
    last variant reading its service is done.
    """

    def __init__(
        self, store: FeatureStore, rows: pd.DataFrame, uses: dict[str, int], chunk_rows: int
    ):
        self.store = store
        self.rows = rows
        self.uses = dict(uses)
        self.chunk_rows = chunk_rows
        self._cache: dict[str, pd.DataFrame] = {}

    def frame(self, service: str) -> pd.DataFrame:
        if service not in self._cache:
            self._cache[service] = self._read(service, self.rows)
        return self._cache[service]

    def release(self, service: str) -> None:
        self.uses[service] = self.uses.get(service, 1) - 1
        if self.uses[service] <= 0:
            self._cache.pop(service, None)

    def _read(self, service: str, entity_df: pd.DataFrame) -> pd.DataFrame:
        from mspa_features.serving.reads import historical_features

        parts = [
            historical_features(self.store, service, entity_df.iloc[s : s + self.chunk_rows])
            for s in range(0, len(entity_df), self.chunk_rows)
        ]
        return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]

    def read(self, service: str, entity_df: pd.DataFrame, spec: InjectionSpec) -> RankerData:
        """Ranker rows for any entity frame (what hooks call), read in chunks too."""
        frame = self._read(service, entity_df.reset_index(drop=True))
        return to_ranker_data(frame, service_features(self.store, service), spec)


def _metrics(labels: np.ndarray, scores: np.ndarray, users: np.ndarray) -> dict[str, float]:
    from mspa_features.evaluation import metrics as m

    return {
        "auc": m.auc(labels, scores),
        "uauc": m.uauc(labels, scores, users),
        "gauc": m.gauc(labels, scores, users),
        "logloss": m.logloss(labels, scores),
        "wpauc": m.wpauc(labels, scores),
    }


# Fewer users than this on the cold slice: no bootstrap CI (a few clusters give noise, not a CI).
MIN_COLD_USERS = 20


def cold_slice(
    labels: np.ndarray,
    scores: np.ndarray,
    users: np.ndarray,
    is_cold: np.ndarray,
    *,
    base_scores: np.ndarray | None,
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    """AUC on the cold rows and, against ``base_scores`` (None: this is the baseline), the
    delta with a paired user bootstrap CI.

    AUC is None when the slice lacks a label; the CI is None below :data:`MIN_COLD_USERS`.
    """
    from mspa_features.evaluation import metrics

    n = int(is_cold.sum())
    out: dict[str, Any] = {
        "cold_n_test": n,
        "cold_auc": None,
        "cold_delta_auc": None,
        "cold_delta_auc_ci_low": None,
        "cold_delta_auc_ci_high": None,
    }
    y = labels[is_cold]
    if n == 0 or np.unique(y).size < 2:
        return out
    out["cold_auc"] = metrics.auc(y, scores[is_cold])
    if base_scores is None:
        out.update(cold_delta_auc=0.0, cold_delta_auc_ci_low=0.0, cold_delta_auc_ci_high=0.0)
        return out
    out["cold_delta_auc"] = out["cold_auc"] - metrics.auc(y, base_scores[is_cold])
    if np.unique(users[is_cold]).size >= MIN_COLD_USERS:
        b = metrics.paired_bootstrap(
            y, base_scores[is_cold], scores[is_cold], users[is_cold], n_boot=n_boot, seed=seed
        )
        out.update(cold_delta_auc_ci_low=b.ci_low, cold_delta_auc_ci_high=b.ci_high)
    return out


def cold_note(labels: np.ndarray, users: np.ndarray, is_cold: np.ndarray) -> str | None:
    """A note when the cold slice is too small for an AUC or a CI, else None."""
    n, n_users = int(is_cold.sum()), int(np.unique(users[is_cold]).size)
    if n == 0:
        return "cold slice: no test row has an author first seen at or after T"
    if np.unique(labels[is_cold]).size < 2:
        return f"cold slice: {n} rows hold one label only; no cold AUC"
    if n_users < MIN_COLD_USERS:
        return (
            f"cold slice: {n} rows from {n_users} users (< {MIN_COLD_USERS}); cold AUCs shown "
            "without a CI (too few users for a bootstrap)"
        )
    return None


def resolve_variants(
    store: FeatureStore, cfg: AblationConfig, extra: Sequence[Variant] = ()
) -> tuple[list[Variant], list[str]]:
    """The configured built-ins plus ``extra`` (LIS) variants, baseline first; and skip notes.

    A built-in whose service is not registered (``llm_text`` without an ``llm`` backfill) is
    skipped with a note; a missing baseline is an error.

    Raises:
        AblationError: no baseline, a missing service, or a repeated variant name.
    """
    spec = InjectionSpec(
        max_tokens=cfg.injection.max_tokens, token_buckets=cfg.injection.token_buckets
    )
    names = list(cfg.variants)
    if "baseline" not in names:
        names.insert(0, "baseline")
    out: list[Variant] = []
    notes: list[str] = []
    for name, fs in _variant_names(cfg, names):
        v = builtin_variant(name, fs, cfg.llm_feature_set, spec)
        if fs != cfg.feature_set:
            v = dataclasses.replace(v, name=f"{name}@{fs}", description=f"{v.description} ({fs})")
        if not service_exists(store, v.service):
            if name == "llm_text":
                notes.append(
                    f"variant llm_text skipped: feature service {v.service!r} is not registered "
                    f"(no '{cfg.llm_feature_set}' feature set backfilled)"
                )
                continue
            raise AblationError(
                f"variant {v.name!r}: feature service {v.service!r} is not registered; run "
                f"`mspa backfill` and `mspa register` for feature set {fs!r}"
            )
        out.append(v)
    out += list(extra)
    seen: set[str] = set()
    for v in out:
        if v.name in seen:
            raise AblationError(f"variant name {v.name!r} appears twice")
        seen.add(v.name)
    out.sort(key=lambda v: v.kind != "baseline")
    return out, notes


def _variant_names(cfg: AblationConfig, names: Sequence[str]) -> list[tuple[str, str]]:
    """(built-in name, feature set) pairs: the configured variants on ``feature_set``, then
    each AIS variant again on every ``compare_feature_sets`` entry. ``all`` on
    ``llm_feature_set`` is not repeated when ``llm_text`` (the same service and columns) runs."""
    pairs = [(n, cfg.feature_set) for n in names]
    for fs in cfg.compare_feature_sets:
        if fs == cfg.feature_set:
            continue
        for n in names:
            if n in ("baseline", "llm_text"):
                continue
            if n == "all" and fs == cfg.llm_feature_set and "llm_text" in names:
                continue
            pairs.append((n, fs))
    return pairs


def variant_feature_set(v: Variant) -> str:
    """The feature set a variant reads (the ``__<set>`` suffix of its service)."""
    return v.service.rsplit("__", 1)[-1] if "__" in v.service else ""


def default_tracking_uri(run_cfg: RunConfig) -> str:
    """``sqlite:///<workspace>/mlflow.db`` (a path holding ``?`` or ``%`` escaped)."""
    return sqlite_uri(Workspace(run_cfg.workspace).root / "mlflow.db")


def run_ablation(
    run_cfg: RunConfig,
    ablation_cfg: AblationConfig,
    progress: Progress | None = None,
    *,
    extra_variants: Sequence[Variant] = (),
    store: FeatureStore | None = None,
    run_name: str | None = None,
) -> AblationResult:
    """Run every variant of ``ablation_cfg`` on ``run_cfg``'s data and registered features.

    Args:
        run_cfg: the run config (dataset name, workspace).
        ablation_cfg: variants, window, seeds, ranker, MLflow.
        progress: ``progress(stage, done, total)`` after each variant and seed.
        extra_variants: more variants (LIS) appended after the built-ins.
        store: a FeatureStore (default: ``registry.open_store`` on the run).
        run_name: run folder and MLflow parent run name (default ``<name>-<UTC time>``).

    Returns:
        The results (also written to ``results.json`` and logged to MLflow).

    Raises:
        AblationError: empty window, missing service, no baseline.
        LeakedFeatureError: a non-LIS variant reads a view tagged leaked.
    """
    from mspa_features.evaluation import metrics
    from ranker_hooks.ablation import report, tracking

    t_start = time.perf_counter()
    cfg = ablation_cfg
    if store is None:
        from mspa_features.serving.materialize import open_store

        store = open_store(run_cfg, repo_path=cfg.repo_path)
    variants, notes = resolve_variants(store, cfg, extra_variants)
    for v in variants:  # before any training: a leak must not cost a single epoch
        check_not_leaked(store, v)

    interactions = load_interactions(
        Workspace(run_cfg.workspace).data(run_cfg.name) / "interactions.parquet"
    )
    # Cold authors (first seen at or after T) are defined on every user's interactions.
    cold_ids = cold_author_ids(interactions, cfg.split.split_at)
    if cfg.users is not None:
        interactions = interactions[interactions["user_id"].isin(set(cfg.users))]
        interactions = interactions.reset_index(drop=True)
    if cfg.authors is not None:
        interactions = interactions[interactions["author_id"].isin(set(cfg.authors))]
        interactions = interactions.reset_index(drop=True)
    train_rows, test_rows = split_interactions(interactions, cfg.split)
    if cfg.max_train_rows is not None and len(train_rows) > cfg.max_train_rows:
        train_rows = train_rows.iloc[-cfg.max_train_rows :].reset_index(drop=True)
    rows = pd.concat([train_rows, test_rows], ignore_index=True)
    is_train = np.arange(len(rows)) < len(train_rows)
    uses: dict[str, int] = {}
    for v in variants:
        uses[v.service] = uses.get(v.service, 0) + 1
    frames = _Frames(store, rows, uses, cfg.read_chunk_rows)

    run_name = run_name or f"{cfg.name}-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    out_dir = Workspace(run_cfg.workspace).results / "ablation" / run_name
    out_dir.mkdir(parents=True, exist_ok=True)
    uri = cfg.mlflow.tracking_uri or default_tracking_uri(run_cfg)
    window = cfg.split.describe()
    total = len(variants) * len(cfg.seeds)
    done = 0

    results: list[VariantResult] = []
    base_scores: np.ndarray | None = None
    with tracking.AblationTracker(
        uri, cfg.mlflow.experiment, run_name, cfg, run_cfg, window
    ) as tracker:
        for v in variants:
            t0 = time.perf_counter()
            feats = service_features(store, v.service)
            data = to_ranker_data(frames.frame(v.service), feats, v.spec)
            frames.release(v.service)
            train, test = take(data, is_train), take(data, ~is_train)
            del data  # the split copies are what training needs
            seed_scores, seed_aucs = [], []
            for seed in cfg.seeds:
                ctx = HookContext(
                    store=store,
                    split=cfg.split,
                    seed=seed,
                    make_ranker=lambda seed=seed: make_ranker(cfg, seed),
                    read=frames.read,
                    interactions=interactions,
                    train_rows=train_rows,
                    test_rows=test_rows,
                )
                tr, te = v.hook.prepare(train, test, ctx) if v.hook else (train, test)
                ranker = make_ranker(cfg, seed)
                ranker.fit(tr)
                if v.hook:
                    ranker = v.hook.after_fit(ranker, ctx)
                s = ranker.predict(te)
                seed_scores.append(s)
                seed_aucs.append(metrics.auc(te.labels, s))
                done += 1
                if progress:
                    progress("ablation", done, total)
            scores = np.mean(seed_scores, axis=0)
            labels, users = test.labels, test.user_ids
            mets = _metrics(labels, scores, users)
            is_cold = np.isin(test.author_ids.astype(str), cold_ids)
            cold = cold_slice(
                labels,
                scores,
                users,
                is_cold,
                base_scores=None if v.kind == "baseline" else base_scores,
                n_boot=cfg.bootstrap.n_boot,
                seed=cfg.bootstrap.seed,
            )
            if v.kind == "baseline" and (note := cold_note(labels, users, is_cold)):
                notes.append(note)
            if v.kind == "baseline":
                base_scores = scores
                delta = {"delta_auc": 0.0, "ci_low": 0.0, "ci_high": 0.0, "p_value": 1.0}
            else:
                assert base_scores is not None  # baseline sorts first
                b = metrics.paired_bootstrap(
                    labels,
                    base_scores,
                    scores,
                    users,
                    n_boot=cfg.bootstrap.n_boot,
                    seed=cfg.bootstrap.seed,
                )
                delta = {
                    "delta_auc": b.delta,
                    "ci_low": b.ci_low,
                    "ci_high": b.ci_high,
                    "p_value": b.p_value,
                }
            svc = store.get_feature_service(v.service)
            refs = [f.ref for f in feats if v.spec.columns is None or f.name in v.spec.columns]
            res = VariantResult(
                name=v.name,
                kind=v.kind,
                leaked=v.leaked,
                **mets,
                delta_auc=delta["delta_auc"],
                delta_auc_ci_low=delta["ci_low"],
                delta_auc_ci_high=delta["ci_high"],
                p_value=delta["p_value"],
                n_train=len(train),
                n_test=len(test),
                service=v.service,
                feature_refs=refs,
                model_version=str(svc.tags.get("model_version", "")),
                feature_set="" if v.kind == "baseline" else variant_feature_set(v),
                description=v.description,
                leak_source=v.leak_source,
                n_users_both_labels=metrics.users_with_both_labels(labels, users),
                auc_seeds=[float(x) for x in seed_aucs],
                seconds=time.perf_counter() - t0,
                **cold,
            )
            res.mlflow_run_id = tracker.log_variant(res, cfg.seeds)
            results.append(res)

        result = AblationResult(
            run_name=run_name,
            variants=results,
            results_path=out_dir / "results.json",
            parent_run_id=tracker.parent_run_id,
            tracking_uri=uri,
            window=window,
            seeds=list(cfg.seeds),
            notes=notes,
        )
        result.artifacts = report.write_reports(result, out_dir)
        result.results_path.write_text(json.dumps(result.to_json(), indent=2), encoding="utf-8")
        tracker.log_summary(result, seconds=time.perf_counter() - t_start)
    return result


__all__ = [
    "AblationConfig",
    "AblationResult",
    "VariantResult",
    "check_not_leaked",
    "cold_slice",
    "default_tracking_uri",
    "load_ablation_config",
    "make_ranker",
    "ranker_class",
    "resolve_variants",
    "run_ablation",
    "variant_feature_set",
]
