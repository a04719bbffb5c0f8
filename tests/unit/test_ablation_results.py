"""The ablation's result types and metric names: one source (MetricName), derived everywhere."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

from mspa_features.evaluation.metric_names import MetricName
from ranker_hooks.ablation import report, results, tracking
from ranker_hooks.ablation.results import COLD_METRICS, COLUMNS, METRICS, VariantResult


def test_every_metric_name_is_a_metric_name_and_a_variant_result_field() -> None:
    fields = {f.name for f in dataclasses.fields(VariantResult)}
    assert set(METRICS) <= {m.value for m in MetricName}
    assert METRICS == (
        "auc", "uauc", "gauc", "logloss", "wpauc",
        "delta_auc", "delta_auc_ci_low", "delta_auc_ci_high", "p_value",
        "delta_uauc", "delta_uauc_ci_low", "delta_uauc_ci_high",
        "delta_gauc", "delta_gauc_ci_low", "delta_gauc_ci_high",
        "delta_logloss", "delta_logloss_ci_low", "delta_logloss_ci_high",
        "delta_wpauc", "delta_wpauc_ci_low", "delta_wpauc_ci_high",
    )  # the results.json / MLflow contract: order and spelling (older keys first)
    missing = [c for c in (*METRICS, *COLD_METRICS, *COLUMNS) if c != "variant" and c not in fields]
    assert missing == []
    assert COLD_METRICS == (
        "cold_n_test", "cold_auc", "cold_delta_auc", "cold_delta_auc_ci_low",
        "cold_delta_auc_ci_high",
    )
    assert all(type(n) is str for n in (*METRICS, *COLD_METRICS, *COLUMNS))  # plain keys


def test_report_and_tracking_use_the_one_list() -> None:
    assert tracking.METRICS is results.METRICS and tracking.COLD_METRICS is results.COLD_METRICS
    assert report.COLUMNS is results.COLUMNS


def test_report_and_tracking_import_types_not_the_runner() -> None:
    code = (
        "import sys, ranker_hooks.ablation.report, ranker_hooks.ablation.tracking, "
        "ranker_hooks.ablation.results, ranker_hooks.ablation.config\n"
        "print('ranker_hooks.ablation.run' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False", "False"]


def test_public_names_resolve_from_the_package() -> None:
    from ranker_hooks import ablation
    from ranker_hooks.ablation import config, run

    assert ablation.AblationConfig is config.AblationConfig
    assert ablation.VariantResult is VariantResult
    assert ablation.run_ablation is run.run_ablation
    # the runner keeps re-exporting what callers imported from it before the split
    assert run.AblationConfig is config.AblationConfig and run.make_ranker is config.make_ranker
