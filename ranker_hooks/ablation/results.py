"""What an ablation produces: one :class:`VariantResult` per variant in an :class:`AblationResult`,
and the metric names every table, ``results.json`` and MLflow run uses.

Types only: the runner (:mod:`ranker_hooks.ablation.run`) fills them, the reports
(:mod:`~ranker_hooks.ablation.report`) and the tracker (:mod:`~ranker_hooks.ablation.tracking`)
read them, and neither of those imports the runner.

Metric names come from :class:`mspa_features.evaluation.metric_names.MetricName`; the tuples
below are derived from it, and :class:`VariantResult` has a field for each (a unit test
checks it).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mspa_features.evaluation.metric_names import MetricName, slice_key

__all__ = [
    "COLD_METRICS",
    "COLUMNS",
    "DELTA_CIS",
    "DELTA_METRICS",
    "METRICS",
    "PREDICTIONS_FILE",
    "SCORE_METRICS",
    "SCORE_PREFIX",
    "TASK_METRICS",
    "AblationResult",
    "VariantResult",
]

#: Metrics of a variant's scores on the evaluation window, in table order.
SCORE_METRICS: tuple[str, ...] = tuple(
    m.value
    for m in (
        MetricName.AUC,
        MetricName.UAUC,
        MetricName.GAUC,
        MetricName.LOGLOSS,
        MetricName.WPAUC,
    )
)
#: The variant against the baseline: delta AUC, its paired bootstrap CI over users, p-value;
#: then delta UAUC, GAUC, logloss and wpAUC, each with its CI from the same resampled users.
DELTA_METRICS: tuple[str, ...] = tuple(
    m.value
    for m in (
        MetricName.DELTA_AUC,
        MetricName.DELTA_AUC_CI_LOW,
        MetricName.DELTA_AUC_CI_HIGH,
        MetricName.P_VALUE,
        MetricName.DELTA_UAUC,
        MetricName.DELTA_UAUC_CI_LOW,
        MetricName.DELTA_UAUC_CI_HIGH,
        MetricName.DELTA_GAUC,
        MetricName.DELTA_GAUC_CI_LOW,
        MetricName.DELTA_GAUC_CI_HIGH,
        MetricName.DELTA_LOGLOSS,
        MetricName.DELTA_LOGLOSS_CI_LOW,
        MetricName.DELTA_LOGLOSS_CI_HIGH,
        MetricName.DELTA_WPAUC,
        MetricName.DELTA_WPAUC_CI_LOW,
        MetricName.DELTA_WPAUC_CI_HIGH,
    )
)
#: Each delta of :data:`DELTA_METRICS` with its CI bounds: (metric, delta, low, high).
DELTA_CIS: tuple[tuple[str, str, str, str], ...] = tuple(
    (m, f"delta_{m}", f"delta_{m}_ci_low", f"delta_{m}_ci_high")
    for m in ("auc", "uauc", "gauc", "logloss", "wpauc")
)
#: Every metric of a variant: the MLflow metrics of its run, what ``mspa runs compare`` reads.
METRICS: tuple[str, ...] = (*SCORE_METRICS, *DELTA_METRICS)
#: The cold-start slice (test rows whose author was first seen at or after T): its row count,
#: its AUC and its delta AUC with CI (None where the slice is too small for them).
COLD_METRICS: tuple[str, ...] = (
    slice_key("cold", "n_test"),
    *(
        slice_key("cold", m.value)
        for m in (
            MetricName.AUC,
            MetricName.DELTA_AUC,
            MetricName.DELTA_AUC_CI_LOW,
            MetricName.DELTA_AUC_CI_HIGH,
        )
    ),
)
#: Each task's metrics (multi-task rankers, ``VariantResult.tasks[name]``; MLflow keys
#: ``task_key(name, metric)``): AUC, UAUC, GAUC and each one's delta against the baseline
#: with its 95 % paired bootstrap CI over users, then the delta AUC's p-value.
TASK_METRICS: tuple[str, ...] = tuple(
    m.value
    for m in (
        MetricName.AUC,
        MetricName.UAUC,
        MetricName.GAUC,
        MetricName.DELTA_AUC,
        MetricName.DELTA_AUC_CI_LOW,
        MetricName.DELTA_AUC_CI_HIGH,
        MetricName.DELTA_UAUC,
        MetricName.DELTA_UAUC_CI_LOW,
        MetricName.DELTA_UAUC_CI_HIGH,
        MetricName.DELTA_GAUC,
        MetricName.DELTA_GAUC_CI_LOW,
        MetricName.DELTA_GAUC_CI_HIGH,
        MetricName.P_VALUE,
    )
)
#: The eval rows with each variant's scores (``score:<variant>`` columns), beside results.json.
PREDICTIONS_FILE = "predictions.parquet"
SCORE_PREFIX = "score:"
#: The comparison table (``comparison.csv`` / ``.md``): the variant, its kind, the metrics, rows.
COLUMNS: tuple[str, ...] = ("variant", "kind", "leaked", *METRICS, "n_train", "n_test")


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
    # Delta UAUC, GAUC, logloss and wpAUC vs the baseline with their 95 % CIs (the same
    # resampled users as delta AUC). NaN in results written before they existed.
    delta_uauc: float = math.nan
    delta_uauc_ci_low: float = math.nan
    delta_uauc_ci_high: float = math.nan
    delta_gauc: float = math.nan
    delta_gauc_ci_low: float = math.nan
    delta_gauc_ci_high: float = math.nan
    delta_logloss: float = math.nan
    delta_logloss_ci_low: float = math.nan
    delta_logloss_ci_high: float = math.nan
    delta_wpauc: float = math.nan
    delta_wpauc_ci_low: float = math.nan
    delta_wpauc_ci_high: float = math.nan
    # Multi-task ablations (``tasks:`` in the config): task name -> its TASK_METRICS, in the
    # configured order; the top-level metrics above are then the first task's. Empty for the
    # single-task default (the contract's ``label`` column), whose results are unchanged.
    tasks: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class AblationResult:
    """What :func:`~ranker_hooks.ablation.run.run_ablation` returns."""

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
