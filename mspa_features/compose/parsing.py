"""A tolerant parser for JSON answers from language models. It never raises.

Small models wrap JSON in code fences, add prose before or after, use single quotes, leave
trailing commas or stop before the closing brace. :func:`parse_answer` tries, in order: strict
JSON of the first ``{...}`` span; repairs (quotes, trailing commas, missing closers, Python
literals); and finally per-key extraction with a regex. The result says which path worked
(``ok``/``repaired``/``failed``) so callers can count them.
"""

from __future__ import annotations

import ast
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["ok", "repaired", "failed"]

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)(?:```|$)", re.DOTALL)


@dataclass(frozen=True)
class ParseResult:
    """Parsed fields (string values), how they were obtained, and what went wrong if anything."""

    data: dict[str, str]
    status: Status
    error: str | None = None

    def get(self, key: str, default: str = "") -> str:
        return self.data.get(key, default)


@dataclass
class ParseStats:
    """Counts of ok / repaired / failed parses (and missing keys) over a batch."""

    counts: Counter[str] = field(default_factory=Counter)

    def add(self, r: ParseResult) -> ParseResult:
        self.counts[r.status] += 1
        return r

    @property
    def total(self) -> int:
        return sum(self.counts[s] for s in ("ok", "repaired", "failed"))

    def as_dict(self) -> dict[str, int]:
        return {s: self.counts[s] for s in ("ok", "repaired", "failed")}


def _candidate_span(text: str) -> str:
    fenced = _FENCE.search(text)
    if fenced and "{" in fenced.group(1):
        text = fenced.group(1)
    start = text.find("{")
    if start < 0:
        return ""
    depth, in_str, esc, quote = 0, False, False, ""
    for i in range(start, len(text)):
        ch = text[i]
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == quote:
                in_str = False
        elif ch in "\"'":
            in_str, quote = True, ch
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
    return text[start:]  # unterminated: repairs may close it


def _stringify(obj: Any) -> dict[str, str] | None:
    if not isinstance(obj, dict):
        return None
    out = {}
    for k, v in obj.items():
        if isinstance(v, (list, tuple)):
            v = ", ".join(str(x) for x in v)
        elif isinstance(v, dict):
            v = "; ".join(f"{a}: {b}" for a, b in v.items())
        out[str(k).strip()] = "" if v is None else str(v).strip()
    return out


def _repairs(span: str) -> list[str]:
    s = span.strip()
    out = []
    no_trailing = re.sub(r",\s*([}\]])", r"\1", s)
    out.append(no_trailing)
    # Close an answer cut off by max_new_tokens: open string, then open braces.
    closed = no_trailing
    if closed.count('"') % 2 == 1:
        closed += '"'
    closed += "}" * max(0, closed.count("{") - closed.count("}"))
    out.append(re.sub(r",\s*([}\]])", r"\1", closed))
    # Single quotes -> double quotes (only as delimiters, not apostrophes inside words).
    out.append(re.sub(r"(?<![A-Za-z])'|'(?![A-Za-z])", '"', closed))
    return out


def _extract_keys(text: str, keys: Sequence[str]) -> dict[str, str]:
    found = {}
    for k in keys:
        m = re.search(
            rf"[\"']?{re.escape(k)}[\"']?\s*[:=]\s*[\"']?(.*?)(?:[\"']\s*[,}}\n]|$)",
            text,
            re.DOTALL | re.IGNORECASE,
        )
        if m and m.group(1).strip():
            found[k] = m.group(1).strip()
    return found


def parse_answer(text: Any, required: Sequence[str] = ()) -> ParseResult:
    """Parse a model's JSON answer, tolerating the usual damage. Never raises.

    Args:
        text: the model output (non-strings are reported as failed).
        required: keys the answer must have; if any is missing the status is ``failed`` but
            the keys that were found are still returned.
    """
    if not isinstance(text, str):
        return ParseResult({}, "failed", f"not text: {type(text).__name__}")
    span = _candidate_span(text)
    data: dict[str, str] | None = None
    status: Status = "failed"
    if span:
        try:
            data = _stringify(json.loads(span))
            status = "ok" if span.strip() == text.strip() else "repaired"
        except (json.JSONDecodeError, RecursionError):
            for attempt in _repairs(span):
                try:
                    data = _stringify(json.loads(attempt))
                except (json.JSONDecodeError, RecursionError):
                    try:
                        data = _stringify(ast.literal_eval(attempt))
                    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                        data = None
                if data is not None:
                    status = "repaired"
                    break
    if data is None and required:
        data = _extract_keys(text, required)
        status = "repaired" if data else "failed"
    data = data or {}
    missing = [k for k in required if not data.get(k)]
    if missing:
        return ParseResult(data, "failed", f"missing keys: {missing}")
    if not data:
        return ParseResult({}, "failed", "no JSON object found")
    return ParseResult(data, status)


# An unambiguous answer letter: the letter alone, optionally bracketed and/or followed by a dot
# ("B", "B.", "(B)", "[B]", "B)"); or a list marker (an uppercase letter in brackets or followed
# by ".", ")" or ":") followed by the candidate's text ("(C) Die Hard", "C. Die Hard"). Prose
# never counts: "I think B" and "A good fit is B" start with a word, not a marker.
_LETTER_ALONE = re.compile(r"^[\(\[]?\s*([A-Za-z])\s*[\)\]]?\s*\.?$")
_LETTER_MARKER = re.compile(r"^(?:[\(\[]([A-Z])[\)\]]|([A-Z])[.):])\s+\S")
# A label in front of the letter: "Answer: B", "answer = (B)"
_LABEL = re.compile(r"^(?:the\s+)?answer\s*[:=]\s*", re.IGNORECASE)
_QUOTES = "\"'`*"


def letter_index(value: Any, n_candidates: int) -> int:
    """The 0-based candidate index an answer value names unambiguously, or -1.

    Counts: ``B``, ``b``, ``B.``, ``(B)``, ``[B]``, ``B)``, ``"B"``, ``**B**``, ``Answer: B``,
    and a list marker followed by the candidate's text (``(C) Die Hard``, ``C. Die Hard``).
    Does not count: prose (``I think B``, ``A good fit is B``, ``Option B``), several letters
    (``A or B``), a letter outside the m candidates. The one rule behind Acc@m and the GRPO
    accuracy and similarity rewards.
    """
    if not isinstance(value, str):
        return -1
    v = value.strip().strip(_QUOTES).strip()
    v = _LABEL.sub("", v, count=1).strip().strip(_QUOTES).strip()
    m = _LETTER_ALONE.match(v)
    letter = m.group(1).upper() if m else None
    if letter is None:
        m = _LETTER_MARKER.match(v)
        letter = (m.group(1) or m.group(2)) if m else None
    if letter is None:
        return -1
    idx = ord(letter) - ord("A")
    return idx if 0 <= idx < n_candidates else -1


def answer_letter(
    text: Any, n_candidates: int, *, key: str = "Answer", parsed: ParseResult | None = None
) -> int:
    """The candidate index a whole answer names, or -1: from the ``key`` value when the text
    holds one (``{"Answer": "B"}``, or ``Answer: B`` found by the parser's key extraction),
    otherwise from the whole text when it holds no JSON object (``B``, ``(B)``); never from prose.

    Args:
        text: the model's output.
        n_candidates: m; letters past the m-th do not count.
        key: the answer field.
        parsed: ``parse_answer(text, ...)`` when the caller already has it (its ``key`` is used).
    """
    if not isinstance(text, str):
        return -1
    if parsed is None or key not in parsed.data:
        parsed = parse_answer(text, (key,))
    if key in parsed.data:
        return letter_index(parsed.data[key], n_candidates)
    if "{" in text:  # a JSON answer without the field names no letter
        return -1
    return letter_index(text, n_candidates)


def parse_letter(result: ParseResult, n_candidates: int, key: str = "Answer") -> int:
    """The 0-based candidate index named by ``result``'s answer field, or -1 (see
    :func:`letter_index`)."""
    return letter_index(result.get(key), n_candidates)
