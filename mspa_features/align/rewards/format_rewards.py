"""R_format: the answer is a JSON object holding the required keys."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mspa_features.align.rewards.common import completion_text
from mspa_features.compose.parsing import parse_answer
from mspa_features.compose.prompts import RECOMMEND
from mspa_features.errors import InvalidValueError


class FormatReward:
    """1.0 when the completion parses (strictly or after the parser's repairs) with every key
    of ``keys`` non-empty.

    With ``partial`` (default), an answer that fails gets the share of required keys it does
    hold, times ``partial_scale``: small models rarely write the whole object in their first
    steps, and a graded reward gives GRPO a signal inside the group where a 0/1 reward would
    give none (all-equal rewards mean zero advantage). ``partial=False`` is the paper's 0/1.
    """

    __name__ = "format"

    def __init__(
        self,
        keys: Sequence[str] = RECOMMEND.answer_keys,
        *,
        partial: bool = True,
        partial_scale: float = 0.5,
    ):
        if not keys:
            raise InvalidValueError("FormatReward keys", keys, "at least one required key")
        if not 0.0 <= partial_scale <= 1.0:
            raise InvalidValueError("partial_scale", partial_scale, "in [0, 1]")
        self.keys = tuple(keys)
        self.partial = partial
        self.partial_scale = partial_scale

    def __call__(self, completions: Sequence[Any], **kwargs: Any) -> list[float]:
        out = []
        for c in completions:
            r = parse_answer(completion_text(c), self.keys)
            if r.status != "failed":
                out.append(1.0)
            elif self.partial:
                # A value that is only JSON punctuation is the parser's leftovers, not content.
                found = sum(1 for k in self.keys if r.get(k).strip(" \"'{}[],:"))
                out.append(self.partial_scale * found / len(self.keys))
            else:
                out.append(0.0)
        return out
