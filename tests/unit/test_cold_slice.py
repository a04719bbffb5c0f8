"""Cold-start slice metrics: computed on exactly the cold rows; no CI from too few users."""

from __future__ import annotations

import numpy as np
import pytest

from mspa_features.evaluation import metrics
from ranker_hooks.ablation.run import MIN_COLD_USERS, cold_note, cold_slice
from ranker_hooks.lis.ablation import cold_cell


def rows(n_users: int, seed: int = 0):
    """Warm rows scored backwards, cold rows scored well: any warm row in the slice shows."""
    rng = np.random.default_rng(seed)
    n = 8 * n_users
    users = np.repeat([f"u{i}" for i in range(n_users)], 8).astype(object)
    labels = np.tile([0, 1], n // 2).astype(np.int8)
    is_cold = np.zeros(n, dtype=bool)
    is_cold[rng.choice(n, size=n // 4, replace=False)] = True
    good = labels + rng.normal(0, 0.6, n)
    scores = np.where(is_cold, good, -good)
    base = rng.normal(size=n)
    return labels, scores, base, users, is_cold


def test_cold_metrics_use_exactly_the_cold_rows() -> None:
    labels, scores, base, users, is_cold = rows(40)
    out = cold_slice(labels, scores, users, is_cold, base_scores=base, n_boot=200, seed=0)
    assert out["cold_n_test"] == int(is_cold.sum())
    assert out["cold_auc"] == metrics.auc(labels[is_cold], scores[is_cold])
    assert out["cold_auc"] > 0.7 > metrics.auc(labels, scores)  # the warm rows are inverted
    expected = out["cold_auc"] - metrics.auc(labels[is_cold], base[is_cold])
    assert out["cold_delta_auc"] == pytest.approx(expected, abs=1e-12)
    b = metrics.paired_bootstrap(
        labels[is_cold], base[is_cold], scores[is_cold], users[is_cold], n_boot=200, seed=0
    )
    assert (out["cold_delta_auc_ci_low"], out["cold_delta_auc_ci_high"]) == (b.ci_low, b.ci_high)
    assert cold_note(labels, users, is_cold) is None


def test_baseline_row_is_the_reference() -> None:
    labels, scores, _, users, is_cold = rows(40)
    out = cold_slice(labels, scores, users, is_cold, base_scores=None, n_boot=50, seed=0)
    assert out["cold_auc"] == metrics.auc(labels[is_cold], scores[is_cold])
    assert (out["cold_delta_auc"], out["cold_delta_auc_ci_low"]) == (0.0, 0.0)


def test_too_few_users_gives_no_ci_and_a_note() -> None:
    labels, scores, base, users, is_cold = rows(MIN_COLD_USERS // 4)
    out = cold_slice(labels, scores, users, is_cold, base_scores=base, n_boot=50, seed=0)
    assert out["cold_auc"] is not None and out["cold_delta_auc"] is not None
    assert out["cold_delta_auc_ci_low"] is None and out["cold_delta_auc_ci_high"] is None
    note = cold_note(labels, users, is_cold)
    assert note is not None and "without a CI" in note
    row = {"kind": "ais", "cold_auc": out["cold_auc"], "cold_delta": out["cold_delta_auc"]}
    assert "[" not in cold_cell({**row, "cold_ci_low": None})


def test_empty_or_one_label_slice() -> None:
    labels, scores, base, users, _ = rows(30)
    none = np.zeros(len(labels), dtype=bool)
    out = cold_slice(labels, scores, users, none, base_scores=base, n_boot=50, seed=0)
    assert out["cold_n_test"] == 0 and out["cold_auc"] is None
    assert "no test row" in cold_note(labels, users, none)
    positives = labels == 1
    out = cold_slice(labels, scores, users, positives, base_scores=base, n_boot=50, seed=0)
    assert out["cold_n_test"] == int(positives.sum()) and out["cold_auc"] is None
    assert "one label" in cold_note(labels, users, positives)
    assert cold_cell({"kind": "ais", "cold_auc": None}) == "n/a"


def test_one_label_note_counts_rows_in_words_that_agree() -> None:
    labels = np.array([1, 0, 1, 1])
    users = np.array(["u1", "u2", "u3", "u3"])
    one = np.array([True, False, False, False])
    assert cold_note(labels, users, one).startswith(
        "cold slice: 1 test row with an author first seen at or after the split T; it holds "
        "one label, and an AUC needs both"
    )
    three = np.array([True, False, True, True])
    assert "3 test rows with an author first seen at or after the split T; all hold one label" in (
        cold_note(labels, users, three)
    )
