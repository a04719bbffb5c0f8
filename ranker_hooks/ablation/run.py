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
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mspa_features.config import RunConfig, Workspace
from mspa_features.errors import AblationError
from mspa_features.evaluation import metrics
from mspa_features.evaluation.metric_names import MetricName
from ranker_hooks.ablation import report, tracking
from ranker_hooks.ablation.config import (
    RANKERS,
    AblationConfig,
    default_tracking_uri,
    load_ablation_config,
    make_ranker,
    ranker_class,
)
from ranker_hooks.ablation.results import (
    DELTA_CIS,
    DELTA_METRICS,
    PREDICTIONS_FILE,
    SCORE_METRICS,
    SCORE_PREFIX,
    TASK_METRICS,
    AblationResult,
    VariantResult,
)
from ranker_hooks.ablation.split import ENTITY_COLUMNS, load_interactions, split_interactions
from ranker_hooks.ablation.variants import HookContext, Variant, builtin_variant
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

    from ranker_hooks.rankers.base import RankerData

Progress = Callable[[str, int, int], None]


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


def score_metrics(labels: np.ndarray, scores: np.ndarray, users: np.ndarray) -> dict[str, float]:
    """The variant's :data:`~ranker_hooks.ablation.results.SCORE_METRICS` on the eval rows."""
    values = {
        MetricName.AUC: lambda: metrics.auc(labels, scores),
        MetricName.UAUC: lambda: metrics.uauc(labels, scores, users),
        MetricName.GAUC: lambda: metrics.gauc(labels, scores, users),
        MetricName.LOGLOSS: lambda: metrics.logloss(labels, scores),
        MetricName.WPAUC: lambda: metrics.wpauc(labels, scores),
    }
    return {name: float(values[MetricName(name)]()) for name in SCORE_METRICS}


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
        return "cold slice: no test row has an author first seen at or after the split T"
    rows = f"{n} test row" + ("" if n == 1 else "s")
    if np.unique(labels[is_cold]).size < 2:
        held = "it holds one label" if n == 1 else "all hold one label"
        return (
            f"cold slice: {rows} with an author first seen at or after the split T; {held}, "
            "and an AUC needs both: no cold AUC"
        )
    if n_users < MIN_COLD_USERS:
        users_ = f"{n_users} user" + ("" if n_users == 1 else "s")
        return (
            f"cold slice: {rows} from {users_} (< {MIN_COLD_USERS}); cold AUCs shown "
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


# --------------------------------------------------------------------------- steps


@dataclass
class AblationRows:
    """The rows every variant trains and is scored on (one split for all variants)."""

    interactions: pd.DataFrame  # the run's interactions after the users/authors filters
    train: pd.DataFrame
    test: pd.DataFrame
    entity_rows: pd.DataFrame  # train then test: what one Feast read per service covers
    is_train: np.ndarray  # (len(entity_rows),) bool
    cold_author_ids: np.ndarray  # authors first seen at or after T, over every user
    # (len(entity_rows), T) 0/1, one column per configured task; None: the label column only.
    task_labels: np.ndarray | None = None


def task_label_matrix(frame: pd.DataFrame, cfg: AblationConfig) -> np.ndarray:
    """``(len(frame), T)`` int8 labels of the configured tasks: a row is a positive of a task
    when its ``action`` is one of the task's ``positive`` actions (null: its ``label``)."""
    cols = [
        frame["label"].to_numpy(dtype=np.int8)
        if t.positive is None
        else frame["action"].isin(t.positive).to_numpy(dtype=np.int8)
        for t in cfg.tasks
    ]
    return np.stack(cols, axis=1)


def _check_task_labels(labels: np.ndarray, is_train: np.ndarray, cfg: AblationConfig) -> None:
    """Every task needs both classes in both windows (AUC is undefined otherwise)."""
    for j, t in enumerate(cfg.tasks):
        for window, part in (
            ("training", labels[is_train, j]),
            ("evaluation", labels[~is_train, j]),
        ):
            if np.unique(part).size < 2:
                raise AblationError(
                    f"task {t.name!r} (positive: {t.positive or 'the label column'}): the "
                    f"{window} window holds only label {int(part[0]) if part.size else '-'}; "
                    "check the task's actions against the data's action column"
                )


def load_rows(run_cfg: RunConfig, cfg: AblationConfig) -> AblationRows:
    """The run's interactions, the configured user/author sample, and the temporal split
    (the latest ``max_train_rows`` training rows when set).

    Raises:
        AblationError: an empty training or evaluation window.
    """
    interactions = load_interactions(
        Workspace(run_cfg.workspace).data(run_cfg.name) / "interactions.parquet",
        extra=("action",) if cfg.tasks else (),
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
    task_labels = None
    if cfg.tasks:
        task_labels = task_label_matrix(rows, cfg)
        _check_task_labels(task_labels, is_train, cfg)
        # Hooks and Feast reads see the entity columns only, as in a single-task run.
        interactions, train_rows, test_rows, rows = (
            f[ENTITY_COLUMNS] for f in (interactions, train_rows, test_rows, rows)
        )
    return AblationRows(
        interactions=interactions,
        train=train_rows,
        test=test_rows,
        entity_rows=rows,
        is_train=is_train,
        cold_author_ids=cold_ids,
        task_labels=task_labels,
    )


def refuse_leaked_variants(store: FeatureStore, variants: Sequence[Variant]) -> None:
    """:func:`check_not_leaked` for every variant, before any training: a leak must not cost
    a single epoch."""
    for v in variants:
        check_not_leaked(store, v)


def service_uses(variants: Sequence[Variant]) -> dict[str, int]:
    """How many variants read each feature service (a read frame is dropped after its last)."""
    uses: dict[str, int] = {}
    for v in variants:
        uses[v.service] = uses.get(v.service, 0) + 1
    return uses


def variant_data(
    store: FeatureStore, frames: _Frames, v: Variant, is_train: np.ndarray
) -> tuple[RankerData, RankerData, list[Any]]:
    """(train, test, the service's features): the variant's ranker rows from its service's
    shared read, split like the entity rows."""
    feats = service_features(store, v.service)
    data = to_ranker_data(frames.frame(v.service), feats, v.spec)
    frames.release(v.service)
    return take(data, is_train), take(data, ~is_train), feats


class _Ticker:
    """``progress("ablation", 0, total)`` when made (fitting starts: a display shows the row and
    its total from the first fit on), then ``progress("ablation", done, total)`` after each
    trained seed."""

    def __init__(self, progress: Progress | None, total: int) -> None:
        self.progress, self.total, self.done = progress, total, 0
        if progress:
            progress("ablation", 0, total)

    def tick(self) -> None:
        self.done += 1
        if self.progress:
            self.progress("ablation", self.done, self.total)


def train_and_score(
    cfg: AblationConfig,
    v: Variant,
    train: RankerData,
    test: RankerData,
    context: Callable[[int], HookContext],
    ticker: _Ticker,
) -> tuple[np.ndarray, list[float]]:
    """One ranker per seed (the variant's hook prepares the rows and may alter the fitted
    model); returns the mean of the seeds' test probabilities and each seed's AUC."""
    seed_scores, seed_aucs = [], []
    for seed in cfg.seeds:
        ctx = context(seed)
        tr, te = v.hook.prepare(train, test, ctx) if v.hook else (train, test)
        ranker = make_ranker(cfg, seed)
        ranker.fit(tr)
        if v.hook:
            ranker = v.hook.after_fit(ranker, ctx)
        s = ranker.predict(te)
        seed_scores.append(s)
        # Several tasks ((n, T) labels and scores): the seed AUC is the first task's.
        seed_aucs.append(
            float(metrics.auc(*(x if x.ndim == 1 else x[:, 0] for x in (te.labels, s))))
        )
        ticker.tick()
    return np.mean(seed_scores, axis=0), seed_aucs


def delta_vs_baseline(
    labels: np.ndarray,
    scores: np.ndarray,
    users: np.ndarray,
    base_scores: np.ndarray | None,
    cfg: AblationConfig,
) -> dict[str, float]:
    """:data:`~ranker_hooks.ablation.results.DELTA_METRICS` of ``scores`` against the baseline's:
    delta AUC, UAUC, GAUC, logloss and wpAUC with their 95 % CIs from one paired cluster
    bootstrap over users (the same resampled users for every metric), and delta AUC's
    p-value; zeros and p = 1 for the baseline itself (``base_scores`` None)."""
    if base_scores is None:
        return {**{m: 0.0 for m in DELTA_METRICS}, MetricName.P_VALUE.value: 1.0}
    boot = metrics.paired_bootstrap_deltas(
        labels,
        base_scores,
        scores,
        users,
        metrics=[m for m, *_ in DELTA_CIS],
        n_boot=cfg.bootstrap.n_boot,
        seed=cfg.bootstrap.seed,
    )
    out = {MetricName.P_VALUE.value: boot[MetricName.AUC].p_value}
    for m, delta, low, high in DELTA_CIS:
        out.update({delta: boot[m].delta, low: boot[m].ci_low, high: boot[m].ci_high})
    return {m: float(out[m]) for m in DELTA_METRICS}


def task_metrics(
    labels: np.ndarray,
    scores: np.ndarray,
    users: np.ndarray,
    base_scores: np.ndarray | None,
    cfg: AblationConfig,
) -> dict[str, float]:
    """One task's :data:`~ranker_hooks.ablation.results.TASK_METRICS`: AUC, UAUC and GAUC of
    ``scores`` and, against the baseline's (None: this is the baseline), each one's delta
    with its paired bootstrap CI over users (the same users drawn for AUC, UAUC and GAUC)."""
    out: dict[str, float] = {
        MetricName.AUC: metrics.auc(labels, scores),
        MetricName.UAUC: metrics.uauc(labels, scores, users),
        MetricName.GAUC: metrics.gauc(labels, scores, users),
        **delta_vs_baseline(labels, scores, users, base_scores, cfg),
    }
    return {str(k): float(out[MetricName(k)]) for k in TASK_METRICS}


def variant_result(
    store: FeatureStore,
    v: Variant,
    feats: Sequence[Any],
    *,
    n_train: int,
    n_test: int,
    scored: dict[str, Any],
    seed_aucs: Sequence[float],
    seconds: float,
) -> VariantResult:
    """The variant's row: its metrics (``scored``: score, delta and cold-slice metrics), what
    it read (service, feature references, model version) and its seed AUCs."""
    svc = store.get_feature_service(v.service)
    return VariantResult(
        name=v.name,
        kind=v.kind,
        leaked=v.leaked,
        n_train=n_train,
        n_test=n_test,
        service=v.service,
        feature_refs=[f.ref for f in feats if v.spec.columns is None or f.name in v.spec.columns],
        model_version=str(svc.tags.get("model_version", "")),
        feature_set="" if v.kind == "baseline" else variant_feature_set(v),
        description=v.description,
        leak_source=v.leak_source,
        auc_seeds=[float(x) for x in seed_aucs],
        seconds=seconds,
        **{str(k): x for k, x in scored.items()},
    )


def write_predictions(
    test_rows: pd.DataFrame,
    labels: np.ndarray,
    predictions: dict[str, np.ndarray],
    path: Path,
) -> Path:
    """The eval rows (entity columns, the label scored) and one score column per variant,
    as parquet: what ``mspa runs compare`` pairs two ablations on (an MLflow artifact of the
    parent run, like every file of the folder)."""
    frame = test_rows[["user_id", "author_id", "event_timestamp"]].reset_index(drop=True)
    frame = frame.assign(label=np.asarray(labels, dtype=np.int8))
    scores = pd.DataFrame({f"{SCORE_PREFIX}{k}": v for k, v in predictions.items()})
    pd.concat([frame, scores], axis=1).to_parquet(path, index=False)
    return path


def write_outputs(result: AblationResult, out_dir: Path) -> None:
    """The reports (comparison CSV/markdown, plot) and ``results.json`` under ``out_dir``."""
    result.artifacts = report.write_reports(result, out_dir)
    result.results_path.write_text(json.dumps(result.to_json(), indent=2), encoding="utf-8")


# --------------------------------------------------------------------------- runner


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
        store: a FeatureStore (default: ``serving.materialize.open_store`` on the run).
        run_name: run folder and MLflow parent run name (default ``<name>-<UTC time>``).

    Returns:
        The results (also written to ``results.json`` and logged to MLflow).

    Raises:
        AblationError: empty window, missing service, no baseline.
        LeakedFeatureError: a non-LIS variant reads a view tagged leaked.
    """
    t_start = time.perf_counter()
    cfg = ablation_cfg
    if store is None:
        from mspa_features.serving.materialize import open_store

        store = open_store(run_cfg, repo_path=cfg.repo_path)
    variants, notes = resolve_variants(store, cfg, extra_variants)
    refuse_leaked_variants(store, variants)
    rows = load_rows(run_cfg, cfg)
    frames = _Frames(store, rows.entity_rows, service_uses(variants), cfg.read_chunk_rows)

    run_name = run_name or f"{cfg.name}-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    out_dir = Workspace(run_cfg.workspace).results / "ablation" / run_name
    out_dir.mkdir(parents=True, exist_ok=True)
    uri = cfg.mlflow.tracking_uri or default_tracking_uri(run_cfg)
    window = cfg.split.describe()
    ticker = _Ticker(progress, total=len(variants) * len(cfg.seeds))

    def context(seed: int) -> HookContext:
        return HookContext(
            store=store,
            split=cfg.split,
            seed=seed,
            make_ranker=lambda: make_ranker(cfg, seed),
            read=frames.read,
            interactions=rows.interactions,
            train_rows=rows.train,
            test_rows=rows.test,
        )

    multi = rows.task_labels is not None
    if multi and (hooked := [v.name for v in variants if v.hook is not None]):
        raise AblationError(
            f"variants {hooked} alter the ranker through a hook, which trains on the label "
            f"column; a multi-task ablation (tasks {[t.name for t in cfg.tasks]}) runs the "
            "hook-free (AIS) variants only"
        )
    results: list[VariantResult] = []
    base_scores: np.ndarray | None = None
    # Each variant's eval-row scores (the first task's), stored for `mspa runs compare`.
    predictions: dict[str, np.ndarray] = {}
    with tracking.AblationTracker(
        uri, cfg.mlflow.experiment, run_name, cfg, run_cfg, window
    ) as tracker:
        for v in variants:
            t0 = time.perf_counter()
            train, test, feats = variant_data(store, frames, v, rows.is_train)
            if multi:  # (n, T) labels: one ranker head per task
                train = dataclasses.replace(train, labels=rows.task_labels[rows.is_train])
                test = dataclasses.replace(test, labels=rows.task_labels[~rows.is_train])
            scores, seed_aucs = train_and_score(cfg, v, train, test, context, ticker)
            all_labels, all_scores = test.labels, scores
            if multi:  # the top-level metrics, cold slice and plot are the first task's
                labels, scores = all_labels[:, 0], all_scores[:, 0]
            else:
                labels = all_labels
            users = test.user_ids
            is_cold = np.isin(test.author_ids.astype(str), rows.cold_author_ids)
            baseline = v.kind == "baseline"
            if baseline and (note := cold_note(labels, users, is_cold)):
                notes.append(note)
            reference = None if baseline else (base_scores[:, 0] if multi else base_scores)
            assert baseline or reference is not None  # the baseline sorts first
            scored = {
                **score_metrics(labels, scores, users),
                **delta_vs_baseline(labels, scores, users, reference, cfg),
                "n_users_both_labels": metrics.users_with_both_labels(labels, users),
                **cold_slice(
                    labels,
                    scores,
                    users,
                    is_cold,
                    base_scores=reference,
                    n_boot=cfg.bootstrap.n_boot,
                    seed=cfg.bootstrap.seed,
                ),
            }
            if multi:
                scored["tasks"] = {
                    t.name: task_metrics(
                        all_labels[:, j],
                        all_scores[:, j],
                        users,
                        None if baseline else base_scores[:, j],
                        cfg,
                    )
                    for j, t in enumerate(cfg.tasks)
                }
            if baseline:
                base_scores = all_scores
            predictions[v.name] = scores
            res = variant_result(
                store,
                v,
                feats,
                n_train=len(train),
                n_test=len(test),
                scored=scored,
                seed_aucs=seed_aucs,
                seconds=time.perf_counter() - t0,
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
        write_predictions(rows.test, labels, predictions, out_dir / PREDICTIONS_FILE)
        write_outputs(result, out_dir)
        tracker.log_summary(result, seconds=time.perf_counter() - t_start)
    return result


__all__ = [
    "RANKERS",
    "AblationConfig",
    "AblationResult",
    "AblationRows",
    "VariantResult",
    "check_not_leaked",
    "cold_slice",
    "default_tracking_uri",
    "delta_vs_baseline",
    "load_ablation_config",
    "load_rows",
    "make_ranker",
    "ranker_class",
    "resolve_variants",
    "run_ablation",
    "score_metrics",
    "task_label_matrix",
    "task_metrics",
    "train_and_score",
    "variant_feature_set",
]
