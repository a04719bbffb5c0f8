"""Metrics: hand-computed tiny cases, agreement with sklearn, and the bootstrap's behaviour."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from mspa_features.evaluation.metrics import (
    BOOTSTRAP_METRICS,
    MIN_USERS_FOR_CI,
    BootstrapResult,
    MetricName,
    _WeightedWPAUC,
    a2a_alignment_rate,
    accuracy_at_m,
    auc,
    bootstrap_mean_ci,
    gauc,
    logloss,
    metric_key,
    ndcg_at_k,
    paired_bootstrap,
    paired_bootstrap_deltas,
    paired_bootstrap_per_user,
    recall_at_k,
    uauc,
    wpauc,
)

# Shared tiny case. Positives score 0.35 and 0.8, negatives 0.1 and 0.4.
# Pairs (pos, neg): (.35,.1) win, (.35,.4) loss, (.8,.1) win, (.8,.4) win -> AUC = 3/4.
# ROC vertices (threshold descending): (0,0) -> .8 pos -> (0,.5) -> .4 neg -> (.5,.5)
#   -> .35 pos -> (.5,1) -> .1 neg -> (1,1).
TINY_LABELS = np.array([0, 0, 1, 1])
TINY_SCORES = np.array([0.1, 0.4, 0.35, 0.8])


def _random_binary(n: int, seed: int, *, n_levels: int | None = None):
    """Random labels and scores; ``n_levels`` quantises scores so ties occur."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.35).astype(int)
    s = rng.normal(size=n) + 0.7 * y
    if n_levels is not None:
        s = np.round(s * n_levels / 4.0)
    return y, s


# --------------------------------------------------------------------------- names


def test_metric_names_are_strings():
    assert MetricName.AUC == "auc"
    assert MetricName.A2A_RATE == "a2a_rate"
    assert MetricName("recall@{k}") is MetricName.RECALL_AT_K


@pytest.mark.parametrize(
    ("name", "k", "expected"),
    [
        (MetricName.RECALL_AT_K, 10, "recall@10"),
        (MetricName.NDCG_AT_K, 5, "ndcg@5"),
        (MetricName.ACC_AT_M, 4, "acc@4"),
        ("recall@{k}", 20, "recall@20"),
        (MetricName.AUC, None, "auc"),
        ("gauc", None, "gauc"),
    ],
)
def test_metric_key(name, k, expected):
    assert metric_key(name, k) == expected


def test_metric_key_rejects_missing_or_spurious_cutoff():
    with pytest.raises(ValueError, match="must be a positive integer cut-off"):
        metric_key(MetricName.RECALL_AT_K)
    with pytest.raises(ValueError, match="must be a positive integer cut-off"):
        metric_key(MetricName.NDCG_AT_K, 0)
    with pytest.raises(ValueError, match="takes no cut-off"):
        metric_key(MetricName.AUC, 10)
    with pytest.raises(ValueError):
        metric_key("precision@{k}", 10)


# --------------------------------------------------------------------------- auc / logloss


def test_auc_hand_computed():
    assert auc(TINY_LABELS, TINY_SCORES) == pytest.approx(0.75)
    # One pos, one neg, same score: the tie counts one half.
    assert auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)


@pytest.mark.parametrize("n_levels", [None, 3])
def test_auc_matches_sklearn(n_levels):
    y, s = _random_binary(500, seed=1, n_levels=n_levels)
    assert auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_auc_validation():
    with pytest.raises(ValueError, match="only positives"):
        auc([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="only negatives"):
        auc([0, 0], [0.1, 0.2])
    with pytest.raises(ValueError, match="labels and scores must have the same length"):
        auc([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="labels must be 0/1"):
        auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="scores: contains NaN"):
        auc([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match="labels must be non-empty"):
        auc([], [])


def test_logloss_hand_computed():
    # -(ln 0.8 + ln(1 - 0.4)) / 2 = (0.223144 + 0.510826) / 2 = 0.366985
    assert logloss([1, 0], [0.8, 0.4]) == pytest.approx((-math.log(0.8) - math.log(0.6)) / 2)
    assert logloss([1, 0], [0.8, 0.4]) == pytest.approx(0.366985, abs=1e-6)


def test_logloss_clips_confident_mistakes():
    # Both predictions are certain and wrong; clipped to 1e-7 each: -ln(1e-7) = 16.118096.
    assert logloss([1, 0], [0.0, 1.0]) == pytest.approx(-math.log(1e-7), rel=1e-6)
    assert logloss([1, 0], [0.0, 1.0]) == pytest.approx(16.118096, abs=1e-5)
    # A looser eps caps the loss lower: -ln(0.01) = 4.60517.
    assert logloss([1, 0], [0.0, 1.0], eps=0.01) == pytest.approx(-math.log(0.01))


def test_logloss_matches_sklearn():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 300)
    p = rng.uniform(0.01, 0.99, 300)
    assert logloss(y, p) == pytest.approx(log_loss(y, p, labels=[0, 1]), abs=1e-12)
    # Single-class labels are fine for log loss (labels=[0, 1] is passed through).
    assert logloss([1, 1], [0.5, 0.5]) == pytest.approx(math.log(2))


def test_logloss_validation():
    with pytest.raises(ValueError, match=r"probs must be in \[0, 1\], got \[1.5\]"):
        logloss([0, 1], [0.5, 1.5])
    with pytest.raises(ValueError, match="labels and probs must have the same length"):
        logloss([0, 1], [0.5])
    with pytest.raises(ValueError, match="eps"):
        logloss([0, 1], [0.5, 0.5], eps=0.0)


# --------------------------------------------------------------------------- uauc / gauc

# User "a": 2 rows, positive above negative -> AUC 1.
# User "b": 4 rows, the positive scores lowest -> AUC 0.
# User "c": positives only -> excluded from both.
UNBALANCED_LABELS = np.array([1, 0, 1, 0, 0, 0, 1, 1])
UNBALANCED_SCORES = np.array([0.9, 0.1, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
UNBALANCED_GROUPS = np.array(["a", "a", "b", "b", "b", "b", "c", "c"])


def test_uauc_and_gauc_differ_on_unbalanced_groups():
    # uAUC: (1 + 0) / 2 = 0.5.
    assert uauc(UNBALANCED_LABELS, UNBALANCED_SCORES, UNBALANCED_GROUPS) == pytest.approx(0.5)
    # gAUC: (2 * 1 + 4 * 0) / (2 + 4) = 1/3.
    assert gauc(UNBALANCED_LABELS, UNBALANCED_SCORES, UNBALANCED_GROUPS) == pytest.approx(1 / 3)


def test_per_group_auc_handles_ties_within_group():
    # One user: labels [1, 0, 1, 0], scores [.5, .5, .7, .2].
    # Pairs: (.5,.5) tie 0.5, (.5,.2) win, (.7,.5) win, (.7,.2) win -> 3.5 / 4 = 0.875.
    y, s, g = [1, 0, 1, 0], [0.5, 0.5, 0.7, 0.2], [7, 7, 7, 7]
    assert uauc(y, s, g) == pytest.approx(0.875)
    assert gauc(y, s, g) == pytest.approx(0.875)


@pytest.mark.parametrize("n_levels", [None, 3])
def test_uauc_gauc_match_sklearn_per_group(n_levels):
    y, s = _random_binary(2000, seed=3, n_levels=n_levels)
    groups = np.random.default_rng(4).integers(0, 80, y.size)
    per_user, weights = [], []
    for user in np.unique(groups):
        mask = groups == user
        if len(np.unique(y[mask])) == 2:
            per_user.append(roc_auc_score(y[mask], s[mask]))
            weights.append(mask.sum())
    assert len(per_user) > 50  # most users qualify, some do not: both paths exercised
    assert uauc(y, s, groups) == pytest.approx(np.mean(per_user), abs=1e-12)
    assert gauc(y, s, groups) == pytest.approx(np.average(per_user, weights=weights), abs=1e-12)


def test_uauc_gauc_nan_when_no_group_qualifies():
    y, s, g = [1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4], [1, 1, 2, 2]
    assert math.isnan(uauc(y, s, g))
    assert math.isnan(gauc(y, s, g))


def test_group_metrics_validation():
    with pytest.raises(ValueError, match="labels and groups must have the same length"):
        uauc([0, 1], [0.1, 0.2], [1])
    with pytest.raises(ValueError, match="labels and scores must have the same length"):
        gauc([0, 1], [0.1], [1, 1])


# --------------------------------------------------------------------------- wpauc


@pytest.mark.parametrize(
    ("alpha", "width", "expected"),
    [
        # FPR in [0, .25]: TPR = .5 throughout -> .125 / .25 = 0.5.
        (0.0, 0.25, 0.5),
        # [0, .5]: TPR .5 -> .25 / .5 = 0.5 (right edge sits on the vertical jump at .5).
        (0.0, 0.5, 0.5),
        # [.5, 1]: TPR 1 -> .5 / .5 = 1.0 (left edge sits on the vertical jump at .5).
        (0.5, 0.5, 1.0),
        # [.25, .75]: .25 * .5 + .25 * 1 = .375 -> / .5 = 0.75.
        (0.25, 0.5, 0.75),
        # [.4, .6]: edges interpolated off-vertex: .1 * .5 + .1 * 1 = .15 -> / .2 = 0.75.
        (0.4, 0.2, 0.75),
        # Whole curve: the plain AUC.
        (0.0, 1.0, 0.75),
    ],
)
def test_wpauc_hand_computed(alpha, width, expected):
    assert wpauc(TINY_LABELS, TINY_SCORES, alpha=alpha, width=width) == pytest.approx(expected)


@pytest.mark.parametrize("n_levels", [None, 3])
def test_wpauc_full_window_equals_auc(n_levels):
    y, s = _random_binary(400, seed=5, n_levels=n_levels)
    full = wpauc(y, s, alpha=0.0, width=1.0)
    assert full == pytest.approx(auc(y, s), abs=1e-12)
    assert full == pytest.approx(roc_auc_score(y, s), abs=1e-12)


@pytest.mark.parametrize(("alpha", "width"), [(0.0, 0.1), (0.2, 0.1), (0.9, 0.1), (0.3, 0.45)])
def test_wpauc_perfect_worst_and_random(alpha, width):
    y = np.array([0, 0, 0, 1, 1])
    perfect = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    assert wpauc(y, perfect, alpha, width) == pytest.approx(1.0)
    # Reversed: TPR stays 0 until FPR = 1, so every window has zero area.
    assert wpauc(y, -perfect, alpha, width) == pytest.approx(0.0)
    # All tied: the ROC is the diagonal, area in window / width = alpha + width / 2.
    tied = np.zeros(5)
    assert wpauc(y, tied, alpha, width) == pytest.approx(alpha + width / 2)


def test_wpauc_validation():
    with pytest.raises(ValueError, match="alpha"):
        wpauc(TINY_LABELS, TINY_SCORES, alpha=-0.1, width=0.1)
    with pytest.raises(ValueError, match="width"):
        wpauc(TINY_LABELS, TINY_SCORES, alpha=0.1, width=0.0)
    with pytest.raises(ValueError, match="alpha \\+ width <= 1"):
        wpauc(TINY_LABELS, TINY_SCORES, alpha=0.95, width=0.1)
    with pytest.raises(ValueError, match="both classes"):
        wpauc([1, 1], [0.1, 0.2])


# --------------------------------------------------------------------------- choice / ranking


def test_accuracy_at_m_hand_computed():
    # Matches: 0==0 yes, 2==1 no, -1 (unparseable) no, 1==1 yes -> 2 / 4.
    assert accuracy_at_m([0, 2, -1, 1], [0, 1, 1, 1]) == pytest.approx(0.5)
    assert accuracy_at_m([-1, -1], [0, 3]) == pytest.approx(0.0)


def test_accuracy_at_m_validation():
    with pytest.raises(ValueError, match="pred_index and true_index must have the same length"):
        accuracy_at_m([0, 1], [0])
    with pytest.raises(ValueError, match="true_index must be >= 0"):
        accuracy_at_m([-1], [-1])


# q0: target .9 is the top -> rank 1.
# q1: target .5, one item above (.8) -> rank 2.
# q2: all tied; pessimistic ties put the two others ahead -> rank 1 + 0 + 2 = 3.
RANK_SCORES = np.array([[0.9, 0.5, 0.1], [0.2, 0.8, 0.5], [0.3, 0.3, 0.3]])
RANK_TARGETS = np.array([0, 2, 1])


@pytest.mark.parametrize(("k", "expected"), [(1, 1 / 3), (2, 2 / 3), (3, 1.0), (50, 1.0)])
def test_recall_at_k_hand_computed(k, expected):
    assert recall_at_k(RANK_SCORES, RANK_TARGETS, k) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("k", "expected"),
    [
        (1, 1 / 3),  # only q0 counts: 1 / 3
        (2, (1 + 1 / math.log2(3)) / 3),  # (1 + 0.630930) / 3 = 0.543643
        (3, (1 + 1 / math.log2(3) + 1 / math.log2(4)) / 3),  # (1 + .630930 + .5) / 3 = .710310
    ],
)
def test_ndcg_at_k_hand_computed(k, expected):
    assert ndcg_at_k(RANK_SCORES, RANK_TARGETS, k) == pytest.approx(expected)


def test_ranking_ties_break_against_target():
    # Target ties with one other item: rank 2, not 1.
    scores, target = np.array([[1.0, 1.0, 0.0]]), np.array([0])
    assert recall_at_k(scores, target, 1) == pytest.approx(0.0)
    assert recall_at_k(scores, target, 2) == pytest.approx(1.0)
    assert ndcg_at_k(scores, target, 1) == pytest.approx(0.0)
    assert ndcg_at_k(scores, target, 2) == pytest.approx(1 / math.log2(3))  # 0.630930
    # Same for a target tied at the bottom: rank = 1 + 1 (above) + 1 (tie) = 3.
    scores = np.array([[0.0, 2.0, 0.0]])
    assert ndcg_at_k(scores, target, 3) == pytest.approx(0.5)  # 1 / log2(4)


def test_ranking_validation():
    with pytest.raises(ValueError, match="scores and target_index must agree"):
        recall_at_k(RANK_SCORES, [0, 1], 1)
    with pytest.raises(ValueError, match="target_index must be item indices in"):
        ndcg_at_k(RANK_SCORES, [0, 1, 3], 1)
    with pytest.raises(ValueError, match="target_index must be integers"):
        ndcg_at_k(RANK_SCORES, [0.0, 1.0, 2.0], 1)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        recall_at_k(RANK_SCORES, RANK_TARGETS, 0)
    with pytest.raises(ValueError, match=r"\(n_queries, n_items\)"):
        recall_at_k(np.array([0.1, 0.2]), [0], 1)
    with pytest.raises(ValueError, match="scores: contains NaN"):
        recall_at_k(np.array([[np.nan, 0.2]]), [0], 1)


def test_a2a_alignment_rate_hand_computed():
    # .9 > .1 yes, .5 > .5 no (strict), .3 > .4 no, .7 > .2 yes -> 2 / 4.
    assert a2a_alignment_rate([0.9, 0.5, 0.3, 0.7], [0.1, 0.5, 0.4, 0.2]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="sim_12 and sim_13 must have the same length"):
        a2a_alignment_rate([0.9, 0.5], [0.1])


# --------------------------------------------------------------------------- bootstrap


@pytest.fixture(scope="module")
def clustered():
    """200 users x 20 rows; ``weak`` is near-random, ``strong`` separates the classes."""
    rng = np.random.default_rng(7)
    groups = np.repeat(np.arange(200), 20)
    y = (rng.random(groups.size) < 0.3).astype(int)
    weak = rng.normal(size=y.size) + 0.1 * y
    strong = rng.normal(size=y.size) + 1.5 * y
    return y, weak, strong, groups


def test_bootstrap_identical_scores(clustered):
    y, weak, _, groups = clustered
    res = paired_bootstrap(y, weak, weak, groups, n_boot=200)
    assert isinstance(res, BootstrapResult)
    assert res.delta == 0.0
    assert res.p_value == 1.0
    assert res.ci_low <= 0.0 <= res.ci_high
    assert res.n_boot == 200


def test_bootstrap_detects_better_scorer(clustered):
    y, weak, strong, groups = clustered
    res = paired_bootstrap(y, weak, strong, groups, n_boot=300)
    assert res.delta == pytest.approx(auc(y, strong) - auc(y, weak))
    assert res.delta > 0.2
    assert res.ci_low > 0.0
    assert res.ci_low < res.delta < res.ci_high
    assert res.p_value < 0.05
    # Swapping a and b mirrors the sign.
    rev = paired_bootstrap(y, strong, weak, groups, n_boot=300)
    assert rev.delta == pytest.approx(-res.delta)
    assert rev.ci_high < 0.0


def test_bootstrap_is_deterministic_per_seed(clustered):
    y, weak, strong, groups = clustered
    first = paired_bootstrap(y, weak, strong, groups, n_boot=100, seed=3)
    again = paired_bootstrap(y, weak, strong, groups, n_boot=100, seed=3)
    other = paired_bootstrap(y, weak, strong, groups, n_boot=100, seed=4)
    assert first == again
    assert (first.ci_low, first.ci_high) != (other.ci_low, other.ci_high)
    assert first.delta == other.delta  # the point estimate never depends on the seed


def test_bootstrap_resamples_groups_not_rows(clustered):
    y, weak, strong, _ = clustered
    # One group: every resample draws it once, so each resampled delta is the full delta.
    res = paired_bootstrap(y, weak, strong, np.zeros(y.size), n_boot=50)
    assert res.ci_low == pytest.approx(res.delta, abs=1e-12)
    assert res.ci_high == pytest.approx(res.delta, abs=1e-12)
    # Every delta* > 0: p = min(1, 2 * min(0, 1)) = 0.
    assert res.p_value == 0.0


def test_bootstrap_cluster_ci_wider_than_row_ci():
    # The b-vs-a advantage is a per-user effect (large for some users, negative for others),
    # so users, not rows, are the independent units: the cluster CI must be wider.
    rng = np.random.default_rng(11)
    n_users, per_user = 20, 100
    groups = np.repeat(np.arange(n_users), per_user)
    y = (rng.random(groups.size) < 0.4).astype(int)
    user_effect = rng.normal(0.0, 1.5, n_users)[groups]
    a = rng.normal(size=y.size) + 1.0 * y
    b = rng.normal(size=y.size) + (1.0 + user_effect) * y
    cluster = paired_bootstrap(y, a, b, groups, n_boot=300)
    rows = paired_bootstrap(y, a, b, None, n_boot=300)
    assert cluster.delta == rows.delta
    assert (cluster.ci_high - cluster.ci_low) > 1.5 * (rows.ci_high - rows.ci_low)


def test_bootstrap_none_groups_is_row_level(clustered):
    y, weak, strong, _ = clustered
    by_none = paired_bootstrap(y, weak, strong, None, n_boot=50)
    by_row = paired_bootstrap(y, weak, strong, np.arange(y.size), n_boot=50)
    assert by_none == by_row


@pytest.mark.parametrize("tied", [False, True])
def test_bootstrap_fast_path_matches_callable_path(clustered, tied):
    # Same seed -> same group draws; the weighted rank AUC must equal sklearn on the
    # materialised resample. Rounding to a few levels creates ties (which count one half).
    y, weak, strong, groups = clustered
    if tied:
        weak, strong = np.round(weak), np.round(strong)
        assert np.unique(strong).size < 15
    fast = paired_bootstrap(y, weak, strong, groups, metric="auc", n_boot=60, seed=5)
    slow = paired_bootstrap(y, weak, strong, groups, metric=auc, n_boot=60, seed=5)
    enum = paired_bootstrap(y, weak, strong, groups, metric=MetricName.AUC, n_boot=60, seed=5)
    assert fast == enum
    assert slow.n_boot == fast.n_boot == 60
    for field in ("delta", "ci_low", "ci_high", "p_value"):
        assert getattr(slow, field) == pytest.approx(getattr(fast, field), abs=1e-12)


def test_bootstrap_callable_metric(clustered):
    y, weak, strong, groups = clustered
    probs_a = 1 / (1 + np.exp(-weak))
    probs_b = 1 / (1 + np.exp(-strong))

    def neg_logloss(labels, probs):
        return -logloss(labels, probs)

    res = paired_bootstrap(y, probs_a, probs_b, groups, metric=neg_logloss, n_boot=50)
    assert res.delta == pytest.approx(logloss(y, probs_a) - logloss(y, probs_b))
    assert res.ci_low <= res.delta <= res.ci_high
    assert res.n_boot == 50


@pytest.mark.parametrize("metric", ["auc", auc])
def test_bootstrap_skips_undefined_resamples(metric):
    # Group 0 holds only positives, group 1 only negatives. A resample drawing the same
    # group twice (probability 1/2) has one class: AUC undefined, so it is skipped.
    y = np.array([1, 1, 0, 0])
    a = np.array([0.9, 0.8, 0.1, 0.2])
    b = np.array([0.1, 0.2, 0.9, 0.8])
    groups = np.array([0, 0, 1, 1])
    res = paired_bootstrap(y, a, b, groups, metric=metric, n_boot=100)
    assert 0 < res.n_boot < 100
    # Every valid resample holds both groups once: delta* = 0 - 1 = -1 = delta.
    assert res.delta == pytest.approx(-1.0)
    assert res.ci_low == pytest.approx(-1.0)
    assert res.ci_high == pytest.approx(-1.0)


def test_bootstrap_result_is_frozen():
    res = BootstrapResult(delta=0.0, ci_low=0.0, ci_high=0.0, p_value=1.0, n_boot=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.delta = 1.0  # type: ignore[misc]


def test_bootstrap_validation(clustered):
    y, weak, strong, groups = clustered
    with pytest.raises(
        ValueError, match="labels and scores_a and scores_b must have the same length"
    ):
        paired_bootstrap(y, weak, strong[:-1], groups)
    with pytest.raises(ValueError, match="labels and groups must have the same length"):
        paired_bootstrap(y, weak, strong, groups[:-1])
    with pytest.raises(ValueError, match="metric must be 'auc' or a callable"):
        paired_bootstrap(y, weak, strong, groups, metric="gauc")
    with pytest.raises(TypeError, match="metric must be 'auc' or a callable, got int"):
        paired_bootstrap(y, weak, strong, groups, metric=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_boot must be a positive integer"):
        paired_bootstrap(y, weak, strong, groups, n_boot=0)
    with pytest.raises(ValueError, match="both classes"):
        paired_bootstrap(np.ones(4, dtype=int), weak[:4], strong[:4], groups[:4])


# --------------------------------------------------------------------------- paired deltas


def test_bootstrap_deltas_identical_predictions_give_exact_zero_ci(clustered):
    y, weak, _, groups = clustered
    probs = 1.0 / (1.0 + np.exp(-weak))
    res = paired_bootstrap_deltas(y, probs, probs, groups, n_boot=200)
    assert list(res) == list(BOOTSTRAP_METRICS)
    for name, r in res.items():
        assert (r.delta, r.ci_low, r.ci_high, r.p_value, r.n_boot) == (0.0, 0.0, 0.0, 1.0, 200), (
            name
        )


def test_bootstrap_deltas_constant_logloss_shift_is_known():
    # Every row loses exactly ln 2 more under b: a positive goes 0.5 -> 0.25
    # (-ln .25 - -ln .5 = ln 2), a negative 0.5 -> 0.75 (the same). So every resample's
    # delta logloss is ln 2 and the CI collapses onto it.
    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(40), 5)
    y = (rng.random(groups.size) < 0.4).astype(int)
    a = np.full(y.size, 0.5)
    b = np.where(y == 1, 0.25, 0.75)
    r = paired_bootstrap_deltas(y, a, b, groups, metrics=("logloss",), n_boot=300)["logloss"]
    assert r.delta == pytest.approx(math.log(2.0))
    assert r.ci_low == pytest.approx(math.log(2.0))
    assert r.ci_high == pytest.approx(math.log(2.0))
    assert r.p_value == 0.0
    assert r.delta == pytest.approx(logloss(y, b) - logloss(y, a))


def test_bootstrap_deltas_two_users_hand_computed():
    # User 0: a ranks its pair wrong (AUC 0), b right (AUC 1): difference 1.
    # User 1: a and b both rank it right: difference 0. Point delta UAUC = (1 + 0) / 2.
    # A resample draws 2 users: {0,0} -> 1 (p 1/4), {0,1} -> 1/2 (p 1/2), {1,1} -> 0 (p 1/4),
    # so the 2.5/97.5 percentiles are 0 and 1 and P(delta* <= 0) = 1/4 -> p = 1/2.
    y = np.array([1, 0, 1, 0])
    groups = np.array(["u0", "u0", "u1", "u1"])
    a = np.array([0.2, 0.8, 0.6, 0.4])
    b = np.array([0.8, 0.2, 0.6, 0.4])
    res = paired_bootstrap_deltas(y, a, b, groups, metrics=("uauc", "gauc"), n_boot=4000)
    r = res["uauc"]
    assert r.delta == pytest.approx(0.5)
    assert (r.ci_low, r.ci_high) == (0.0, 1.0)
    assert r.p_value == pytest.approx(0.5, abs=0.05)
    # Equal row counts: GAUC weighs users alike, and the draws are shared (paired), so the
    # two metrics' results are identical resample by resample.
    assert res["gauc"] == r


def test_bootstrap_deltas_match_the_single_metric_bootstraps(clustered):
    y, weak, strong, groups = clustered
    res = paired_bootstrap_deltas(y, weak, strong, groups, metrics=("auc", "uauc", "gauc"))
    assert res["auc"] == paired_bootstrap(y, weak, strong, groups, n_boot=1000, seed=0)
    for m in ("uauc", "gauc"):
        assert res[m] == paired_bootstrap_per_user(y, weak, strong, groups, m, n_boot=1000)
        assert res[m].delta == pytest.approx(
            {"uauc": uauc, "gauc": gauc}[m](y, strong, groups)
            - {"uauc": uauc, "gauc": gauc}[m](y, weak, groups)
        )


def test_bootstrap_deltas_wpauc_matches_materialised_resample(clustered):
    y, weak, strong, groups = clustered
    r = paired_bootstrap_deltas(y, weak, strong, groups, metrics=("wpauc",), n_boot=50)["wpauc"]
    assert r.delta == pytest.approx(wpauc(y, strong) - wpauc(y, weak))
    assert r.ci_low < r.delta < r.ci_high
    # The weighted ROC of one resample equals wpAUC on the copied rows of that resample.
    rng = np.random.default_rng(11)
    weight = np.bincount(rng.integers(0, 200, 200), minlength=200).astype(float)
    rows = np.repeat(np.arange(y.size), weight[groups].astype(int))
    w_eval = _WeightedWPAUC(y.astype(np.int8), strong, groups, 0.0, 0.1)
    assert w_eval(weight) == pytest.approx(wpauc(y[rows], strong[rows]))


def test_bootstrap_deltas_undefined_metric_is_nan_not_an_error():
    # No user holds both labels: UAUC is undefined, AUC is not.
    y = np.array([1, 1, 0, 0])
    groups = np.array([0, 0, 1, 1])
    res = paired_bootstrap_deltas(y, [0.9, 0.8, 0.1, 0.2], [0.2, 0.1, 0.9, 0.8], groups, n_boot=20)
    assert math.isnan(res["uauc"].delta) and res["uauc"].n_boot == 0
    assert res["auc"].delta == pytest.approx(-1.0)
    # Scores that are not probabilities: no logloss delta.
    res = paired_bootstrap_deltas(y, [3, 2, 1, 0], [0, 1, 2, 3], None, ("logloss",), n_boot=5)
    assert math.isnan(res["logloss"].delta)
    with pytest.raises(ValueError, match="metrics must be some of"):
        paired_bootstrap_deltas(y, y, y, None, metrics=("ndcg",))


# --------------------------------------------------------------------------- level CIs


@pytest.mark.parametrize("v", [0.0, 0.1, 1 / 3, 1.0])
def test_bootstrap_mean_ci_all_equal_values_give_exactly_the_value(v):
    ci = bootstrap_mean_ci({"acc@4": np.full(50, v)}, n_boot=200, seed=3)["acc@4"]
    assert (ci.value, ci.ci_low, ci.ci_high) == (v, v, v)
    assert ci.n == 50 and ci.n_boot == 200 and ci.trustworthy


def test_bootstrap_mean_ci_two_users_hand_computed():
    # Users holding 0 and 1: a resample of 2 users has mean 0 (p 1/4), 0.5 (1/2) or 1 (1/4),
    # so the 2.5th and 97.5th percentiles of many resamples are 0 and 1.
    ci = bootstrap_mean_ci({"recall@5": [0.0, 1.0]}, n_boot=2000, seed=0)["recall@5"]
    assert (ci.value, ci.ci_low, ci.ci_high) == (0.5, 0.0, 1.0)
    assert not ci.trustworthy and ci.as_dict()["trustworthy"] is False
    # The resampled means are exactly the enumerated ones, with the enumerated frequencies.
    from mspa_features.evaluation.metrics import _group_weights

    means = np.array([w @ [0.0, 1.0] / 2 for w in _group_weights(2, 2000, 0)])
    assert set(np.unique(means)) == {0.0, 0.5, 1.0}
    assert np.mean(means == 0.5) == pytest.approx(0.5, abs=0.04)


def test_bootstrap_mean_ci_one_draw_for_all_metrics_and_seeded():
    rng = np.random.default_rng(1)
    a, b = rng.random(40), rng.random(40)
    both = bootstrap_mean_ci({"a": a, "b": b, "b-a": b - a}, n_boot=300, seed=5)
    alone = bootstrap_mean_ci({"a": a}, n_boot=300, seed=5)["a"]
    # the same draws whatever else is resampled beside
    assert dataclasses.astuple(both["a"]) == pytest.approx(dataclasses.astuple(alone))
    assert both["b-a"].value == pytest.approx(b.mean() - a.mean())
    for ci in both.values():
        assert ci.ci_low <= ci.value <= ci.ci_high and ci.n == 40 >= MIN_USERS_FOR_CI
    assert bootstrap_mean_ci({"a": a}, n_boot=300, seed=6)["a"] != alone
    with pytest.raises(ValueError, match="same length"):
        bootstrap_mean_ci({"a": a, "b": b[:3]})
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_mean_ci({"a": [0.1, math.nan]})
    with pytest.raises(ValueError):
        bootstrap_mean_ci({})
