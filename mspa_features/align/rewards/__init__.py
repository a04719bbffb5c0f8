"""MSPA rewards for GRPO (MSPA section 3.2), in TRL's shape ``(completions, **kwargs) -> list[float]``.

Grouped by concern, as TRL's own rewards are: :mod:`.accuracy_rewards` (the picked letter is the
truth), :mod:`.format_rewards` (the answer is JSON with the required keys) and
:mod:`.similarity_rewards` (cosine between the picked and the true author). The weighted sum
``R = l1*acc + l2*fmt + (1 - l1 - l2)*sim`` is TRL's own ``GRPOConfig.reward_weights``; see
:func:`reward_weights`.
"""

from __future__ import annotations

from mspa_features.align.rewards.accuracy_rewards import AccuracyReward
from mspa_features.align.rewards.common import completion_text
from mspa_features.align.rewards.format_rewards import FormatReward
from mspa_features.align.rewards.similarity_rewards import SimilarityReward, load_author_embeddings
from mspa_features.errors import IncompatibleSettingsError, InvalidValueError


def reward_weights(lambda_accuracy: float, lambda_format: float) -> tuple[float, float, float]:
    """``(l1, l2, 1 - l1 - l2)``: the weights of accuracy, format and similarity.

    Raises:
        ValueError: a weight is outside [0, 1] or ``l1 + l2 > 1``.
    """
    for name, weight in (("lambda_accuracy", lambda_accuracy), ("lambda_format", lambda_format)):
        if not 0.0 <= weight <= 1.0:
            raise InvalidValueError(name, weight, "a reward weight in [0, 1]")
    total = lambda_accuracy + lambda_format
    if total > 1.0 + 1e-9:
        raise IncompatibleSettingsError(
            {"lambda_accuracy": lambda_accuracy, "lambda_format": lambda_format},
            f"lambda_accuracy + lambda_format must be <= 1 (the rest weighs similarity), got "
            f"{total}",
        )
    # Rounded so 1 - 0.6 - 0.2 reads 0.2, not 0.19999999999999996, in logs and params.
    return lambda_accuracy, lambda_format, max(0.0, round(1.0 - total, 12))


__all__ = [
    "AccuracyReward",
    "FormatReward",
    "SimilarityReward",
    "completion_text",
    "load_author_embeddings",
    "reward_weights",
]
