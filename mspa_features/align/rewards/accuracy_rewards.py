"""R_accuracy: 1 when the answer's letter is the ground-truth candidate, else 0."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mspa_features.align.rewards.common import picked_index


class AccuracyReward:
    """Reads the dataset columns ``answer`` (truth letter) and ``candidate_ids`` (lettered
    candidates, for the number of valid letters).

    A callable class rather than a closure so the reward pickles (multi-process launchers
    pickle the trainer's reward functions); ``__name__`` names its TRL metric
    (``rewards/accuracy/mean``).
    """

    __name__ = "accuracy"

    def __call__(
        self,
        completions: Sequence[Any],
        answer: Sequence[str],
        candidate_ids: Sequence[Sequence[str]],
        **kwargs: Any,
    ) -> list[float]:
        out = []
        for c, truth, cands in zip(completions, answer, candidate_ids, strict=True):
            idx = picked_index(c, len(cands))
            truth_idx = ord(str(truth).strip().upper()[:1] or "?") - ord("A")
            out.append(1.0 if idx >= 0 and idx == truth_idx else 0.0)
        return out
