"""TAWin: threshold-adjusted windowed reweighting of the GRPO advantage (pure maths, numpy).

Source: Shi et al., "Objective Shaping with Hard Negatives: Windowed Partial AUC Optimization for
RL-based LLM Recommenders" (arXiv 2604.22504; only its abstract is in ``seeds/``). Under a binary
reward GRPO maximises the AUC between a group's positive and negative completions; the Windowed
Partial AUC (WPAUC) keeps only the part of the ROC curve whose false-positive rate lies in
``[alpha, alpha + width]``, i.e. only the negatives the policy ranks between the top ``alpha``
and the top ``alpha + width`` share of its negatives. TAWin optimises it by reweighting the
negatives' advantages.

Our reading, stated because the seed holds only the abstract (see the README's TAWin section):

* within a group, a completion with advantage < 0 is a negative; the policy's score of a
  completion is its mean per-token log-probability (the trainer supplies it);
* the ``n`` negatives are ranked by score, best first; the one at rank ``k`` (0-based) covers
  the FPR cell ``[k/n, (k+1)/n)`` of the group's ROC curve;
* its weight is the share of its cell inside the window, scaled by ``n / width``:
  ``w = n * |[k/n, (k+1)/n) ∩ [alpha, alpha + width]| / width``. A negative straddling a
  threshold gets the fractional weight (the "threshold adjustment": the window's edges need
  not fall on a negative), the weights of a group's negatives sum to ``n`` (their mean stays
  1, so the step size matches plain GRPO), and ``alpha=0, width=1`` gives 1 everywhere;
* positives and zero advantages keep weight 1 (WPAUC bounds FPR, not TPR).

With a binary reward every negative of a group has the same advantage, so the reweighted
advantages still sum to zero per group.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mspa_features.errors import DataError, IncompatibleSettingsError, InputMismatchError


def check_window(alpha: float, width: float) -> None:
    """Raises ValueError unless ``0 <= alpha``, ``0 < width`` and ``alpha + width <= 1``."""
    if not (alpha >= 0.0 and width > 0.0 and alpha + width <= 1.0 + 1e-12):
        raise IncompatibleSettingsError(
            {"alpha": alpha, "width": width},
            "TAWin window needs 0 <= alpha, width > 0 and alpha + width <= 1",
        )


def tawin_weights(
    advantages: ArrayLike, scores: ArrayLike, *, alpha: float, width: float
) -> NDArray[np.float64]:
    """Per-completion TAWin weights for groups of GRPO completions.

    Args:
        advantages: (groups, G) GRPO advantages; < 0 marks a negative.
        scores: (groups, G) the policy's score of each completion (higher: ranked first).
            Ties rank the earlier completion first.
        alpha: the window's start on the FPR axis (share of the group's negatives ranked
            above it).
        width: the window's width on the FPR axis.

    Returns:
        (groups, G) weights: 1 for positives and zero advantages; for negatives, ``n`` times
        their FPR cell's overlap with ``[alpha, alpha + width]`` divided by ``width``.

    Raises:
        ValueError: shapes differ or are not 2-D, a score of a negative is not finite, or the
            window is invalid (:func:`check_window`).
    """
    check_window(alpha, width)
    adv = np.asarray(advantages, dtype=np.float64)
    sc = np.asarray(scores, dtype=np.float64)
    if adv.ndim != 2 or adv.shape != sc.shape:
        raise InputMismatchError(
            "must be (groups, G) arrays of one shape",
            {"advantages": adv.shape, "scores": sc.shape},
        )
    lo, hi = float(alpha), min(float(alpha) + float(width), 1.0)
    w = np.ones_like(adv)
    for g in range(adv.shape[0]):
        neg = np.flatnonzero(adv[g] < 0)
        n = len(neg)
        if n == 0:
            continue
        if not np.all(np.isfinite(sc[g, neg])):
            raise DataError(
                f"scores of group {g}", f"negatives must have finite scores, got {sc[g, neg]}"
            )
        order = neg[np.argsort(-sc[g, neg], kind="stable")]  # best-scored negative first
        k = np.arange(n, dtype=np.float64)
        overlap = np.clip(np.minimum((k + 1) / n, hi) - np.maximum(k / n, lo), 0.0, None)
        w[g, order] = overlap * n / (hi - lo)
    return w


__all__ = ["check_window", "tawin_weights"]
