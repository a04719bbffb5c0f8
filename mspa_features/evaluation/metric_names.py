"""Metric names: one string enum and one key format for every table, JSON file and MLflow run.

Kept apart from the metric maths (:mod:`mspa_features.evaluation.metrics`, which imports
scikit-learn) so that reports and trackers can name metrics without computing any, as
torchrec's ``metrics_namespace.py`` sits beside its metric modules.
"""

from __future__ import annotations

import string
from enum import StrEnum

from mspa_features.errors import InvalidValueError

__all__ = ["MetricName", "metric_key", "slice_key", "task_key"]


class MetricName(StrEnum):
    """Every metric's name; templated members take their cut-off via :func:`metric_key`."""

    AUC = "auc"
    LOGLOSS = "logloss"
    UAUC = "uauc"
    GAUC = "gauc"
    WPAUC = "wpauc"
    ACC_AT_M = "acc@{m}"
    RECALL_AT_K = "recall@{k}"
    NDCG_AT_K = "ndcg@{k}"
    A2A_RATE = "a2a_rate"
    # A variant against its baseline (ablations): delta AUC with its 95 % paired bootstrap CI
    # over users and the two-sided p-value (``metrics.paired_bootstrap``).
    DELTA_AUC = "delta_auc"
    DELTA_AUC_CI_LOW = "delta_auc_ci_low"
    DELTA_AUC_CI_HIGH = "delta_auc_ci_high"
    P_VALUE = "p_value"
    # The same for UAUC and GAUC (every variant, and each task of a multi-task ablation): the paired
    # bootstrap resamples users, so their per-user AUC differences are averaged directly.
    DELTA_UAUC = "delta_uauc"
    DELTA_UAUC_CI_LOW = "delta_uauc_ci_low"
    DELTA_UAUC_CI_HIGH = "delta_uauc_ci_high"
    DELTA_GAUC = "delta_gauc"
    DELTA_GAUC_CI_LOW = "delta_gauc_ci_low"
    DELTA_GAUC_CI_HIGH = "delta_gauc_ci_high"
    # Logloss and wpAUC deltas, from the same resampled users as the others
    # (``metrics.paired_bootstrap_deltas``); a negative delta logloss is an improvement.
    DELTA_LOGLOSS = "delta_logloss"
    DELTA_LOGLOSS_CI_LOW = "delta_logloss_ci_low"
    DELTA_LOGLOSS_CI_HIGH = "delta_logloss_ci_high"
    DELTA_WPAUC = "delta_wpauc"
    DELTA_WPAUC_CI_LOW = "delta_wpauc_ci_low"
    DELTA_WPAUC_CI_HIGH = "delta_wpauc_ci_high"


def metric_key(name: MetricName | str, k: int | None = None) -> str:
    """The result-table key for ``name``: ``metric_key("recall@{k}", 10) == "recall@10"``.

    ``k`` fills the template's placeholder (``m`` for ``acc@{m}``); it is required for
    templated names and refused for plain ones, so a missing cut-off never goes unnoticed.
    """
    member = MetricName(name)
    fields = [f for _, f, _, _ in string.Formatter().parse(member.value) if f]
    if not fields:
        if k is not None:
            raise InvalidValueError(
                f"k of metric {member.value!r}", k, "None: the metric takes no cut-off"
            )
        return member.value
    if k is None or isinstance(k, bool) or int(k) != k or k < 1:
        raise InvalidValueError(f"k of metric {member.value!r}", k, "a positive integer cut-off")
    return member.value.format(**{fields[0]: int(k)})


def slice_key(slice_name: str, key: str) -> str:
    """The key of a metric computed on a slice of the rows: ``slice_key("cold", "auc") ==
    "cold_auc"``."""
    return f"{slice_name}_{key}"


def task_key(task: str, key: str) -> str:
    """The key of a metric of one task of a multi-task ranker: ``task_key("gift", "auc") ==
    "gift/auc"`` (a slash, not ``slice_key``'s underscore: a task named ``cold`` must not
    collide with the cold slice's ``cold_auc``)."""
    return f"{task}/{key}"
