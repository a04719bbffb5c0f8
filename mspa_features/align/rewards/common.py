"""What every MSPA reward shares: the completion's text and its parsed answer."""

from __future__ import annotations

from typing import Any

from mspa_features.compose.parsing import ParseResult, answer_letter, parse_answer
from mspa_features.compose.prompts import RECOMMEND


def completion_text(completion: Any) -> str:
    """The text of one TRL completion: a string (standard format) or a list of chat messages
    (conversational format, where the assistant turn's ``content`` is the text)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list | tuple) and completion:
        last = completion[-1]
        if isinstance(last, dict):
            content = last.get("content", "")
            if isinstance(content, list):  # multimodal content parts
                return "".join(p.get("text", "") for p in content if isinstance(p, dict))
            return content if isinstance(content, str) else ""
    return ""


def parse_completion(completion: Any) -> ParseResult:
    """The RECOMMEND answer parsed from one completion (never raises)."""
    return parse_answer(completion_text(completion), RECOMMEND.answer_keys)


def picked_index(completion: Any, n_candidates: int) -> int:
    """0-based index of the candidate one completion picks; -1 when it names no letter
    unambiguously (:func:`mspa_features.compose.parsing.answer_letter`, the rule Acc@m reads too).

    The letter is read even when another key is missing: accuracy does not depend on format.
    """
    text = completion_text(completion)
    return answer_letter(text, n_candidates, parsed=parse_completion(completion))
