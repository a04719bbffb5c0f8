"""Evaluation metrics: pure functions, numpy arrays in, a float (or a small record) out.

Conventions shared by every metric here:

* labels are binary ``0``/``1`` (bools accepted); anything else raises ``ValueError``;
* inputs are 1-D and the same length (ranking metrics: ``scores`` is
  ``(n_queries, n_items)``), otherwise ``ValueError`` naming the arguments; empty inputs
  raise too;
* higher score = more likely positive / more relevant;
* one enum, :class:`MetricName`, names every metric; :func:`metric_key` turns a name plus
  its cut-off into the key used in result tables (``"recall@10"``, ``"acc@4"``);
* per-group AUC (``uauc``, ``gauc``) only counts groups that hold both labels: a user with
  only positives or only negatives has no defined AUC. ``uauc`` averages those groups
  uniformly; ``gauc`` weights each by its number of impressions (rows), the FuxiCTR
  convention. Both return NaN when no group qualifies;
* ``wpauc`` is the *unnormalised-by-McClish* windowed partial AUC: the area under the ROC
  curve for FPR in ``[alpha, alpha + width]``, divided by ``width``. A perfect ranker scores
  1.0 and a random one ``alpha + width / 2`` (the diagonal's area in the window / width).
  It is *not* sklearn's ``roc_auc_score(max_fpr=...)``, which applies the McClish correction;
* ranking metrics use one relevant item per query and break ties *against* the target
  (pessimistic): ``rank = 1 + #(score > t) + #(score == t, other items)``. A model that
  scores everything equal therefore gets the worst rank, not the best;
* :func:`paired_bootstrap` is a cluster bootstrap: it resamples groups (users) with
  replacement, the same draw for both score vectors, and reports a 95 % percentile CI of
  ``metric(b) - metric(a)`` and a two-sided p-value
  ``min(1, 2 * min(P(delta* <= 0), P(delta* >= 0)))`` over the resampled deltas;
* :func:`bootstrap_mean_ci` gives levels that are means over units (the composer metrics:
  Acc@m, Recall/NDCG@K per user, A2A per triple) a 95 % percentile CI from the same draws.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.metrics import log_loss, roc_auc_score, roc_curve

# The names live beside, in a module without scikit-learn; re-exported here.
from mspa_features.errors import (
    DataError,
    IncompatibleSettingsError,
    InputMismatchError,
    InvalidTypeError,
    InvalidValueError,
)
from mspa_features.evaluation.metric_names import MetricName, metric_key

__all__ = [
    "BOOTSTRAP_METRICS",
    "MIN_USERS_FOR_CI",
    "BootstrapCI",
    "BootstrapResult",
    "MetricName",
    "a2a_alignment_rate",
    "accuracy_at_m",
    "auc",
    "bootstrap_mean_ci",
    "gauc",
    "logloss",
    "metric_key",
    "ndcg_at_k",
    "paired_bootstrap",
    "paired_bootstrap_deltas",
    "paired_bootstrap_per_user",
    "recall_at_k",
    "uauc",
    "wpauc",
]


# --------------------------------------------------------------------------- validation


def _as_1d(x: ArrayLike, name: str) -> NDArray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise InvalidValueError(f"{name} shape", arr.shape, "1-D")
    if arr.size == 0:
        raise InvalidValueError(name, arr.tolist(), "non-empty")
    return arr


def _same_length(**arrays: NDArray) -> None:
    lengths = {name: a.shape[0] for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise InputMismatchError("must have the same length", lengths)


def _binary_labels(labels: ArrayLike, name: str = "labels") -> NDArray[np.int8]:
    arr = _as_1d(labels, name)
    # Compare values rather than dtype so 0.0/1.0 floats and bools pass too.
    if not np.isin(arr, (0, 1)).all():
        bad = np.unique(arr[~np.isin(arr, (0, 1))])[:5]
        raise InvalidValueError(name, bad.tolist(), "0/1", hint="those values are not")
    return arr.astype(np.int8)


def _finite_scores(scores: ArrayLike, name: str) -> NDArray[np.float64]:
    arr = np.asarray(scores, dtype=np.float64)
    # NaN breaks every comparison-based metric silently (NaN > x is always False).
    if np.isnan(arr).any():
        first = int(np.flatnonzero(np.isnan(arr.reshape(-1)))[0])
        raise DataError(name, f"contains NaN (first at flat index {first})")
    return arr


def _binary_inputs(
    labels: ArrayLike, scores: ArrayLike, scores_name: str = "scores"
) -> tuple[NDArray[np.int8], NDArray[np.float64]]:
    y = _binary_labels(labels)
    s = _finite_scores(_as_1d(scores, scores_name), scores_name)
    _same_length(labels=y, **{scores_name: s})
    return y, s


def _require_both_classes(y: NDArray[np.int8], what: str) -> None:
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        only = "positives" if n_pos else "negatives"
        raise DataError(
            "labels", f"{what} is undefined: labels hold only {only} (need both classes)"
        )


# --------------------------------------------------------------------------- classification


def auc(labels: ArrayLike, scores: ArrayLike) -> float:
    """ROC AUC (sklearn ``roc_auc_score``); ties count one half."""
    y, s = _binary_inputs(labels, scores)
    _require_both_classes(y, "AUC")
    return float(roc_auc_score(y, s))


def logloss(labels: ArrayLike, probs: ArrayLike, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy, probabilities clipped to ``[eps, 1 - eps]``.

    Clipping keeps one confidently wrong prediction from making the loss infinite.
    """
    if not 0.0 < eps < 0.5:
        raise InvalidValueError("eps", eps, "in (0, 0.5)")
    y, p = _binary_inputs(labels, probs, "probs")
    if ((p < 0.0) | (p > 1.0)).any():
        raise InvalidValueError("probs", p[(p < 0.0) | (p > 1.0)][:5].tolist(), "in [0, 1]")
    return float(log_loss(y, np.clip(p, eps, 1.0 - eps), labels=[0, 1]))


def _group_codes(groups: ArrayLike, n: int) -> tuple[NDArray[np.intp], int]:
    g = _as_1d(groups, "groups")
    if g.shape[0] != n:
        raise InputMismatchError("must have the same length", {"labels": n, "groups": g.shape[0]})
    _, codes = np.unique(g, return_inverse=True)
    codes = codes.reshape(-1)
    return codes, int(codes.max()) + 1


def _per_group_auc(
    y: NDArray[np.int8], s: NDArray[np.float64], codes: NDArray[np.intp], n_groups: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per-group AUC (NaN where a group lacks a class) and per-group row counts.

    Vectorised Mann-Whitney: one lexsort by (group, score) gives every row its mid-rank
    within its group, so thousands of users cost one sort instead of thousands of sklearn
    calls.
    """
    order = np.lexsort((s, codes))
    g_sorted, s_sorted, y_sorted = codes[order], s[order], y[order]
    n = y.size
    size = np.bincount(codes, minlength=n_groups).astype(np.float64)
    group_start = np.concatenate(([0], np.cumsum(size)[:-1])).astype(np.intp)
    local_pos = np.arange(n) - group_start[g_sorted]  # 0-based position within the group
    # A tie block is a run of equal scores inside one group; all its rows share a mid-rank.
    new_block = np.ones(n, dtype=bool)
    new_block[1:] = (g_sorted[1:] != g_sorted[:-1]) | (s_sorted[1:] != s_sorted[:-1])
    block_id = np.cumsum(new_block) - 1
    block_size = np.bincount(block_id)
    block_mid_rank = local_pos[new_block] + (block_size + 1) / 2.0  # 1-based ranks
    rank = block_mid_rank[block_id]
    n_pos = np.bincount(g_sorted, weights=y_sorted, minlength=n_groups)
    n_neg = size - n_pos
    rank_sum_pos = np.bincount(g_sorted, weights=rank * y_sorted, minlength=n_groups)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_group = (rank_sum_pos - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    per_group[(n_pos == 0) | (n_neg == 0)] = np.nan
    return per_group, size


# Below this many users with both labels a user-level bootstrap interval rests on too few
# clusters to be read as a 95 % interval (percentile intervals need a few dozen clusters).
MIN_USERS_FOR_CI = 30


def users_with_both_labels(labels: ArrayLike, groups: ArrayLike) -> int:
    """How many groups (users) hold at least one positive and one negative row.

    Args:
        labels: 0/1 per row, shape ``(n,)``.
        groups: group id per row, shape ``(n,)``.

    Returns:
        The count; the users UAUC averages over and the clusters a paired bootstrap of AUC
        can tell apart.
    """
    if np.asarray(labels).size == 0:
        return 0
    y = _binary_labels(labels)
    codes, n_groups = _group_codes(groups, y.shape[0])
    pos = np.bincount(codes, weights=y, minlength=n_groups)
    size = np.bincount(codes, minlength=n_groups)
    return int(((pos > 0) & (pos < size)).sum())


def uauc(labels: ArrayLike, scores: ArrayLike, groups: ArrayLike) -> float:
    """Uniform mean of per-group (user) AUC over groups holding both labels; NaN if none."""
    y, s = _binary_inputs(labels, scores)
    codes, n_groups = _group_codes(groups, y.size)
    per_group, _ = _per_group_auc(y, s, codes, n_groups)
    valid = ~np.isnan(per_group)
    return float(per_group[valid].mean()) if valid.any() else math.nan


def gauc(labels: ArrayLike, scores: ArrayLike, groups: ArrayLike) -> float:
    """Impression-weighted mean of per-user AUC (weight = the user's row count).

    Only users holding both labels count (FuxiCTR convention); NaN if none does.
    """
    y, s = _binary_inputs(labels, scores)
    codes, n_groups = _group_codes(groups, y.size)
    per_group, size = _per_group_auc(y, s, codes, n_groups)
    valid = ~np.isnan(per_group)
    if not valid.any():
        return math.nan
    return float(np.average(per_group[valid], weights=size[valid]))


def wpauc(labels: ArrayLike, scores: ArrayLike, alpha: float = 0.0, width: float = 0.1) -> float:
    """Windowed partial AUC: ROC area for FPR in ``[alpha, alpha + width]``, divided by ``width``.

    Perfect ranker -> 1.0; random ranker -> ``alpha + width / 2``. ``alpha=0, width=1`` is
    the plain AUC. No McClish correction (unlike ``roc_auc_score(max_fpr=...)``).
    """
    _check_window(alpha, width)
    y, s = _binary_inputs(labels, scores)
    _require_both_classes(y, "wpAUC")
    # Keep every vertex so the curve stays exact (ties give sloped segments, as in AUC).
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    return _window_area(fpr, tpr, alpha, width)


def _check_window(alpha: float, width: float) -> None:
    if not (alpha >= 0.0 and width > 0.0 and alpha + width <= 1.0 + 1e-12):
        raise IncompatibleSettingsError(
            {"alpha": alpha, "width": width}, "need 0 <= alpha, width > 0 and alpha + width <= 1"
        )


def _window_area(fpr: NDArray, tpr: NDArray, alpha: float, width: float) -> float:
    """ROC area for FPR in ``[alpha, alpha + width]`` divided by the window's width."""
    lo, hi = float(alpha), min(float(alpha) + float(width), 1.0)
    inside = (fpr >= lo) & (fpr <= hi)
    # Edge points by linear interpolation. If an edge sits on a vertical ROC segment the
    # interpolated height is ambiguous, but it then pairs with a point at the same FPR, so
    # that trapezoid has zero width and the area is unaffected.
    xs = np.concatenate(([lo], fpr[inside], [hi]))
    ys = np.concatenate(([np.interp(lo, fpr, tpr)], tpr[inside], [np.interp(hi, fpr, tpr)]))
    return float(np.trapezoid(ys, xs) / (hi - lo))


# --------------------------------------------------------------------------- choice / ranking


def accuracy_at_m(pred_index: ArrayLike, true_index: ArrayLike) -> float:
    """Share of predictions equal to the truth (U2A: pick the right one of m candidates).

    ``pred_index`` may be -1 for an unparseable answer; it never matches, so counts as wrong.
    """
    pred = _as_1d(pred_index, "pred_index")
    true = _as_1d(true_index, "true_index")
    _same_length(pred_index=pred, true_index=true)
    if (true < 0).any():
        # A negative truth could "match" a -1 (unparseable) prediction.
        raise InvalidValueError("true_index", int(true.min()), ">= 0")
    return float(np.mean(pred == true))


def _target_ranks(scores: ArrayLike, target_index: ArrayLike) -> NDArray[np.int64]:
    """1-based rank of each query's target, ties broken against the target (pessimistic)."""
    s = _finite_scores(scores, "scores")
    if s.ndim != 2 or s.shape[0] == 0 or s.shape[1] == 0:
        raise InvalidValueError("scores shape", s.shape, "a non-empty (n_queries, n_items)")
    t_idx = _as_1d(target_index, "target_index")
    if t_idx.shape[0] != s.shape[0]:
        raise InputMismatchError(
            "must agree on n_queries", {"scores": s.shape, "target_index": t_idx.shape}
        )
    if not np.issubdtype(t_idx.dtype, np.integer):
        raise InvalidValueError("target_index", t_idx.dtype, "integers")
    if ((t_idx < 0) | (t_idx >= s.shape[1])).any():
        bad = t_idx[(t_idx < 0) | (t_idx >= s.shape[1])][:5].tolist()
        raise InvalidValueError("target_index", bad, f"item indices in [0, {s.shape[1]})")
    t = s[np.arange(s.shape[0]), t_idx][:, None]
    # ">=" counts the target itself once; it is rank 1 when nothing else ties or beats it.
    return (s >= t).sum(axis=1)


def _check_k(k: int) -> int:
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise InvalidValueError("k", k, "a positive integer")
    return int(k)


def recall_at_k(scores: ArrayLike, target_index: ArrayLike, k: int) -> float:
    """Share of queries whose single relevant item ranks in the top ``k`` (ties pessimistic)."""
    k = _check_k(k)
    return float(np.mean(_target_ranks(scores, target_index) <= k))


def ndcg_at_k(scores: ArrayLike, target_index: ArrayLike, k: int) -> float:
    """NDCG@k with one relevant item per query: ``mean(1/log2(rank+1) if rank <= k else 0)``.

    With one relevant item the ideal DCG is 1, so no further normalisation.
    """
    k = _check_k(k)
    rank = _target_ranks(scores, target_index)
    gain = np.where(rank <= k, 1.0 / np.log2(rank + 1.0), 0.0)
    return float(gain.mean())


def a2a_alignment_rate(sim_12: ArrayLike, sim_13: ArrayLike) -> float:
    """Share of triples (a1, a2, a3) with ``sim(a1, a2) > sim(a1, a3)`` (strict: ties fail)."""
    a = _finite_scores(_as_1d(sim_12, "sim_12"), "sim_12")
    b = _finite_scores(_as_1d(sim_13, "sim_13"), "sim_13")
    _same_length(sim_12=a, sim_13=b)
    return float(np.mean(a > b))


# --------------------------------------------------------------------------- bootstrap


@dataclass(frozen=True)
class BootstrapResult:
    """Paired cluster-bootstrap summary of ``metric(b) - metric(a)``.

    ``n_boot`` counts only the valid resamples (those where the metric was defined).
    """

    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    n_boot: int


class _WeightedAUC:
    """AUC of one score vector under per-group weights, via weighted Mann-Whitney.

    Everything that does not depend on the weights is done once, so each resample costs
    one gather, one bincount and one cumsum:

    * rows are bucketed by score into *runs*: maximal stretches of tie blocks that hold
      only positives or only negatives (a block holding both stays alone). Inside such a
      run no positive-negative pair is tied or ordered differently, so merging is exact and
      the arrays shrink to roughly ``2 * n * p * (1 - p)`` runs;
    * positive rows index runs ``[0, n_runs)``, negative rows ``[n_runs, 2 * n_runs)``, so
      a single bincount yields both weight profiles;
    * rows are pre-sorted by that index so the bincount writes sequentially.
    """

    def __init__(self, y: NDArray[np.int8], s: NDArray[np.float64], codes: NDArray[np.intp]):
        _, block = np.unique(s, return_inverse=True)  # block ids ascend with score
        block = block.reshape(-1)
        n_blocks = int(block.max()) + 1
        pos = y == 1
        has_pos = np.bincount(block[pos], minlength=n_blocks) > 0
        has_neg = np.bincount(block[~pos], minlength=n_blocks) > 0
        kind = np.where(has_pos & has_neg, 2, has_neg.astype(np.int8))  # 0 pos, 1 neg, 2 both
        new_run = np.ones(n_blocks, dtype=bool)
        new_run[1:] = (kind[1:] != kind[:-1]) | (kind[1:] == 2)
        run_of_block = np.cumsum(new_run) - 1
        self.n_runs = int(run_of_block[-1]) + 1
        slot = np.where(pos, run_of_block[block], run_of_block[block] + self.n_runs)
        order = np.argsort(slot, kind="stable")
        self.slot, self.codes = slot[order], codes[order]

    def __call__(self, group_weight: NDArray[np.float64]) -> float:
        w = np.bincount(self.slot, weights=group_weight[self.codes], minlength=2 * self.n_runs)
        w_pos, w_neg = w[: self.n_runs], w[self.n_runs :]
        total_pos, total_neg = w_pos.sum(), w_neg.sum()
        if total_pos == 0 or total_neg == 0:
            return math.nan
        neg_below = np.cumsum(w_neg)
        neg_below -= w_neg
        # Each positive beats the negatives in runs below it and ties half of its own run.
        return float(np.dot(w_pos, neg_below + 0.5 * w_neg) / (total_pos * total_neg))


def paired_bootstrap(
    labels: ArrayLike,
    scores_a: ArrayLike,
    scores_b: ArrayLike,
    groups: ArrayLike | None,
    metric: str | Callable[[NDArray, NDArray], float] = "auc",
    n_boot: int = 1000,
    seed: int = 0,
) -> BootstrapResult:
    """Paired cluster bootstrap of ``metric(labels, scores_b) - metric(labels, scores_a)``.

    Groups (users) are drawn with replacement, the same draw for both score vectors, so the
    comparison is paired and within-user correlation is respected. ``groups=None`` treats
    each row as its own group. The CI is the 2.5/97.5 percentile of the resampled deltas;
    ``p_value = min(1, 2 * min(share(delta* <= 0), share(delta* >= 0)))``. Resamples where
    the metric is undefined (one class; a callable raising ``ValueError`` or returning NaN)
    are skipped.

    ``metric="auc"`` takes a fast rank-based path (rows weighted by how often their group
    was drawn); any callable ``(labels, scores) -> float`` takes the general path, called
    on the concatenated rows of each resample.
    """
    y = _binary_labels(labels)
    a = _finite_scores(_as_1d(scores_a, "scores_a"), "scores_a")
    b = _finite_scores(_as_1d(scores_b, "scores_b"), "scores_b")
    _same_length(labels=y, scores_a=a, scores_b=b)
    if isinstance(n_boot, bool) or int(n_boot) != n_boot or n_boot < 1:
        raise InvalidValueError("n_boot", n_boot, "a positive integer")
    if groups is None:
        codes, n_groups = np.arange(y.size), y.size
    else:
        codes, n_groups = _group_codes(groups, y.size)

    if isinstance(metric, str):
        if metric != MetricName.AUC:
            raise InvalidValueError("metric", metric, "'auc' or a callable")
        metric_fn: Callable[[NDArray, NDArray], float] = auc
    elif callable(metric):
        metric_fn = metric
    else:
        raise InvalidTypeError("metric", metric, "'auc' or a callable")
    # The point estimate is always the plain metric on all rows; undefined here is an error.
    delta = float(metric_fn(y, b)) - float(metric_fn(y, a))

    rng = np.random.default_rng(seed)
    deltas = np.full(int(n_boot), np.nan)
    if isinstance(metric, str):
        auc_a, auc_b = _WeightedAUC(y, a, codes), _WeightedAUC(y, b, codes)
        for i in range(int(n_boot)):
            # A row's weight is how many times its group was drawn: the same AUC as
            # materialising the resample, without copying any rows.
            draw = rng.integers(0, n_groups, size=n_groups)
            weight = np.bincount(draw, minlength=n_groups).astype(np.float64)
            deltas[i] = auc_b(weight) - auc_a(weight)
    else:
        # Row indices grouped by group, so a resample is a concatenation of slices.
        order = np.argsort(codes, kind="stable")
        size = np.bincount(codes, minlength=n_groups)
        start = np.concatenate(([0], np.cumsum(size)[:-1]))
        for i in range(int(n_boot)):
            draw = rng.integers(0, n_groups, size=n_groups)
            lengths = size[draw]
            # Offset of each output slot inside its drawn group, then shift to the group start.
            out_start = np.cumsum(lengths) - lengths
            pos = np.arange(lengths.sum()) - np.repeat(out_start - start[draw], lengths)
            rows = order[pos]
            try:
                deltas[i] = float(metric_fn(y[rows], b[rows])) - float(metric_fn(y[rows], a[rows]))
            except ValueError:
                continue  # undefined on this resample (e.g. one class): skip it

    valid = deltas[~np.isnan(deltas)]
    if valid.size == 0:
        raise DataError(
            "paired bootstrap", f"the metric was undefined on every one of {n_boot} resamples"
        )
    ci_low, ci_high = np.percentile(valid, [2.5, 97.5])
    p_value = min(1.0, 2.0 * min(np.mean(valid <= 0.0), np.mean(valid >= 0.0)))
    return BootstrapResult(
        delta=delta,
        ci_low=float(ci_low),
        ci_high=float(ci_high),
        p_value=float(p_value),
        n_boot=int(valid.size),
    )


def paired_bootstrap_per_user(
    labels: ArrayLike,
    scores_a: ArrayLike,
    scores_b: ArrayLike,
    groups: ArrayLike,
    metric: str = "uauc",
    n_boot: int = 1000,
    seed: int = 0,
) -> BootstrapResult:
    """Paired cluster bootstrap of ``uauc(b) - uauc(a)`` (or ``gauc``) over users.

    UAUC and GAUC are means of per-user AUCs, so a resample of users is a weighted mean of
    the per-user differences ``auc_b(u) - auc_a(u)`` (weight: how often ``u`` was drawn,
    times ``u``'s row count for GAUC); users without both labels carry no weight, as in
    :func:`uauc`/:func:`gauc`. Same CI and p-value conventions as :func:`paired_bootstrap`.

    Raises:
        InvalidValueError: an unknown ``metric`` or a non-positive ``n_boot``.
        DataError: no user holds both labels.
    """
    if metric not in (MetricName.UAUC, MetricName.GAUC):
        raise InvalidValueError("metric", metric, "'uauc' or 'gauc'")
    if isinstance(n_boot, bool) or int(n_boot) != n_boot or n_boot < 1:
        raise InvalidValueError("n_boot", n_boot, "a positive integer")
    if groups is None:
        raise InvalidValueError("groups", None, "a user id per row")
    result = paired_bootstrap_deltas(
        labels, scores_a, scores_b, groups, metrics=(metric,), n_boot=n_boot, seed=seed
    )[metric]
    if math.isnan(result.delta):
        raise DataError("paired bootstrap", f"no user holds both labels ({metric} undefined)")
    return result


class _WeightedWPAUC:
    """wpAUC of one score vector under per-group weights: the rows are sorted by score once,
    so each resample costs two weighted cumsums (the ROC vertices of ``roc_curve`` with
    ``drop_intermediate=False``, zero-weight rows adding repeated vertices that change no
    area)."""

    def __init__(
        self,
        y: NDArray[np.int8],
        s: NDArray[np.float64],
        codes: NDArray[np.intp],
        alpha: float,
        width: float,
    ):
        order = np.argsort(-s, kind="stable")
        s_sorted = s[order]
        # The last row of each tie block: one ROC vertex per distinct score.
        self.ends = np.flatnonzero(np.r_[s_sorted[1:] != s_sorted[:-1], True])
        self.pos = y[order].astype(np.float64)
        self.codes = codes[order]
        self.alpha, self.width = alpha, width

    def __call__(self, group_weight: NDArray[np.float64]) -> float:
        w = group_weight[self.codes]
        tps = np.cumsum(w * self.pos)[self.ends]
        fps = np.cumsum(w * (1.0 - self.pos))[self.ends]
        if tps[-1] == 0 or fps[-1] == 0:
            return math.nan
        fpr = np.r_[0.0, fps / fps[-1]]
        tpr = np.r_[0.0, tps / tps[-1]]
        return _window_area(fpr, tpr, self.alpha, self.width)


#: The metrics :func:`paired_bootstrap_deltas` resamples, in the order it returns them.
BOOTSTRAP_METRICS: tuple[str, ...] = (
    MetricName.AUC.value,
    MetricName.UAUC.value,
    MetricName.GAUC.value,
    MetricName.LOGLOSS.value,
    MetricName.WPAUC.value,
)


def _summarise(delta: float, deltas: NDArray[np.float64]) -> BootstrapResult:
    kept = deltas[~np.isnan(deltas)]
    if math.isnan(delta) or kept.size == 0:
        return BootstrapResult(math.nan, math.nan, math.nan, math.nan, int(kept.size))
    ci_low, ci_high = np.percentile(kept, [2.5, 97.5])
    p_value = min(1.0, 2.0 * min(np.mean(kept <= 0.0), np.mean(kept >= 0.0)))
    return BootstrapResult(
        delta=float(delta),
        ci_low=float(ci_low),
        ci_high=float(ci_high),
        p_value=float(p_value),
        n_boot=int(kept.size),
    )


def paired_bootstrap_deltas(
    labels: ArrayLike,
    scores_a: ArrayLike,
    scores_b: ArrayLike,
    groups: ArrayLike | None,
    metrics: Sequence[str] = BOOTSTRAP_METRICS,
    n_boot: int = 1000,
    seed: int = 0,
    *,
    wpauc_alpha: float = 0.0,
    wpauc_width: float = 0.1,
) -> dict[str, BootstrapResult]:
    """Paired cluster bootstrap of ``metric(b) - metric(a)`` for several metrics at once.

    One draw of groups (users, with replacement) per resample serves every metric, so the
    deltas of one comparison are paired with each other as well as between ``a`` and ``b``.
    A resample is a weight per group (how often it was drawn), never a copy of the rows:

    * ``auc``: weighted Mann-Whitney (the same as :func:`paired_bootstrap`);
    * ``uauc`` / ``gauc``: weighted mean of the per-user AUC differences (users without
      both labels weigh nothing; GAUC also weighs by the user's rows);
    * ``logloss``: weighted mean of the per-row loss differences (clipped as in
      :func:`logloss`; NaN when a score is not a probability);
    * ``wpauc``: the window area of the weighted ROC (``wpauc_alpha``, ``wpauc_width``).

    ``groups=None`` makes each row its own group. The point estimate is the metric on all
    rows; a metric undefined there (e.g. UAUC with no user holding both labels) comes back
    as all-NaN with ``n_boot=0`` instead of raising, so one undefined metric does not cost
    the others. CI and p-value as in :func:`paired_bootstrap`; with the same ``seed``, the
    AUC entry equals ``paired_bootstrap(..., "auc")`` and the UAUC/GAUC entries equal
    :func:`paired_bootstrap_per_user`.

    Args:
        labels: 0/1 per row, shape ``(n,)``.
        scores_a: the reference's scores (the baseline), shape ``(n,)``.
        scores_b: the compared scores, shape ``(n,)``.
        groups: user id per row, shape ``(n,)``, or None.
        metrics: names from :data:`BOOTSTRAP_METRICS`.
        n_boot: number of resamples.
        seed: the generator's seed (results are reproducible).

    Returns:
        metric name -> :class:`BootstrapResult`, in the order of ``metrics``.

    Raises:
        InvalidValueError: an unknown metric, a non-positive ``n_boot``, bad labels.
        InputMismatchError: arrays of different lengths.
    """
    unknown = [m for m in metrics if m not in BOOTSTRAP_METRICS]
    if unknown or not metrics:
        raise InvalidValueError("metrics", list(metrics), f"some of {list(BOOTSTRAP_METRICS)}")
    if isinstance(n_boot, bool) or int(n_boot) != n_boot or n_boot < 1:
        raise InvalidValueError("n_boot", n_boot, "a positive integer")
    _check_window(wpauc_alpha, wpauc_width)
    y = _binary_labels(labels)
    a = _finite_scores(_as_1d(scores_a, "scores_a"), "scores_a")
    b = _finite_scores(_as_1d(scores_b, "scores_b"), "scores_b")
    _same_length(labels=y, scores_a=a, scores_b=b)
    if groups is None:
        codes, n_groups = np.arange(y.size), y.size
    else:
        codes, n_groups = _group_codes(groups, y.size)
    both = 0 < int(y.sum()) < y.size

    # One evaluator per metric: group weights (n_groups,) -> delta (NaN: undefined there).
    evaluators: dict[str, Callable[[NDArray[np.float64]], float]] = {}
    point: dict[str, float] = {}
    for m in metrics:
        if m == MetricName.AUC:
            if both:
                wa, wb = _WeightedAUC(y, a, codes), _WeightedAUC(y, b, codes)
                evaluators[m] = lambda w, wa=wa, wb=wb: wb(w) - wa(w)
                point[m] = auc(y, b) - auc(y, a)
        elif m == MetricName.WPAUC:
            if both:
                pa, pb = (_WeightedWPAUC(y, x, codes, wpauc_alpha, wpauc_width) for x in (a, b))
                evaluators[m] = lambda w, pa=pa, pb=pb: pb(w) - pa(w)
                ones = np.ones(n_groups)
                point[m] = pb(ones) - pa(ones)
        elif m in (MetricName.UAUC, MetricName.GAUC):
            per_a, size = _per_group_auc(y, a, codes, n_groups)
            per_b, _ = _per_group_auc(y, b, codes, n_groups)
            valid = ~np.isnan(per_a)  # defined by the labels: the same for a and b
            if valid.any():
                diff = np.where(valid, per_b - per_a, 0.0)  # (n_groups,)
                base = np.where(valid, size if m == MetricName.GAUC else 1.0, 0.0)
                point[m] = float(np.dot(base, diff) / base.sum())
                evaluators[m] = lambda w, base=base, diff=diff: (
                    float(np.dot(w * base, diff) / t)
                    if (t := float(np.dot(w, base))) > 0
                    else math.nan
                )
        elif m == MetricName.LOGLOSS and ((a >= 0) & (a <= 1) & (b >= 0) & (b <= 1)).all():
            eps = 1e-7  # the clip of :func:`logloss`
            pa, pb = np.clip(a, eps, 1 - eps), np.clip(b, eps, 1 - eps)
            row_a = -(y * np.log(pa) + (1 - y) * np.log(1 - pa))
            row_b = -(y * np.log(pb) + (1 - y) * np.log(1 - pb))
            # Per-group sums of the row differences and the group sizes.
            diff = np.bincount(codes, weights=row_b - row_a, minlength=n_groups)
            size = np.bincount(codes, minlength=n_groups).astype(np.float64)
            point[m] = logloss(y, b) - logloss(y, a)
            evaluators[m] = lambda w, diff=diff, size=size: float(np.dot(w, diff) / np.dot(w, size))

    deltas = {m: np.full(int(n_boot), np.nan) for m in evaluators}
    # The same draw as paired_bootstrap / paired_bootstrap_per_user: same seed, same CIs.
    for i, weight in enumerate(_group_weights(n_groups, int(n_boot), seed)):
        for m, fn in evaluators.items():
            deltas[m][i] = fn(weight)
    return {m: _summarise(point.get(m, math.nan), deltas.get(m, np.array([]))) for m in metrics}


def _group_weights(n_groups: int, n_boot: int, seed: int) -> Iterator[NDArray[np.float64]]:
    """The cluster bootstrap's resamples: ``n_boot`` draws of ``n_groups`` groups with
    replacement, each as a weight per group (how often it was drawn), shape ``(n_groups,)``."""
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        draw = rng.integers(0, n_groups, size=n_groups)
        yield np.bincount(draw, minlength=n_groups).astype(np.float64)


@dataclass(frozen=True)
class BootstrapCI:
    """A metric that is a mean over units (users, triples) with its 95 % bootstrap interval.

    ``n`` is the number of units resampled; below :data:`MIN_USERS_FOR_CI` the interval rests
    on too few clusters to be read as a 95 % interval (``trustworthy`` is False).
    """

    value: float
    ci_low: float
    ci_high: float
    n: int
    n_boot: int

    @property
    def trustworthy(self) -> bool:
        return self.n >= MIN_USERS_FOR_CI

    def as_dict(self) -> dict[str, float | int | bool]:
        """JSON-ready: ``value``, ``ci_low``, ``ci_high``, ``n``, ``n_boot``, ``trustworthy``."""
        return {**dataclasses.asdict(self), "trustworthy": self.trustworthy}


def bootstrap_mean_ci(
    values: Mapping[str, ArrayLike], n_boot: int = 1000, seed: int = 0
) -> dict[str, BootstrapCI]:
    """Percentile 95 % CIs of metrics that are means of one value per unit (user or triple).

    Every entry of ``values`` holds one value per unit, the units in the same order (Acc@m,
    Recall@K, NDCG@K per user: hit 0/1, the NDCG gain; A2A per triple: aligned 0/1). One draw of
    units with replacement per resample (the draws of :func:`paired_bootstrap_deltas`) serves
    every entry, so the intervals are paired with each other. A resample's metric is the mean
    over the drawn units. A paired delta between two systems scored on the same units is the
    entry ``values_b - values_a``. The interval is clipped to the values' range (a mean never
    leaves it), so units that all hold ``v`` give exactly ``[v, v]``.

    Args:
        values: metric name -> per-unit values, shape ``(n_units,)`` each, finite.
        n_boot: number of resamples.
        seed: the generator's seed (results are reproducible).

    Returns:
        metric name -> :class:`BootstrapCI` (``value`` is the plain mean), in input order.

    Raises:
        InvalidValueError: no metric, an empty or non-1-D array, a non-positive ``n_boot``.
        InputMismatchError: arrays of different lengths.
        DataError: a NaN value.
    """
    if not values:
        raise InvalidValueError("values", {}, "at least one metric")
    if isinstance(n_boot, bool) or int(n_boot) != n_boot or n_boot < 1:
        raise InvalidValueError("n_boot", n_boot, "a positive integer")
    arrays = {k: _finite_scores(_as_1d(v, k), k) for k, v in values.items()}
    _same_length(**arrays)
    names = list(arrays)
    table = np.stack([arrays[k] for k in names], axis=1)  # (n_units, n_metrics)
    n = table.shape[0]
    means = np.array([w @ table / n for w in _group_weights(n, int(n_boot), seed)])
    # A mean never leaves the values' range; clipping removes the rounding that would.
    vmin, vmax = table.min(axis=0), table.max(axis=0)
    value = np.clip(table.mean(axis=0), vmin, vmax)
    lo, hi = np.clip(np.percentile(means, [2.5, 97.5], axis=0), vmin, vmax)
    return {
        k: BootstrapCI(float(value[j]), float(lo[j]), float(hi[j]), n, int(n_boot))
        for j, k in enumerate(names)
    }
