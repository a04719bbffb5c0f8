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


def parse_letter(result: ParseResult, n_candidates: int, key: str = "Answer") -> int:
    """The 0-based candidate index named by the answer letter, or -1 when there is none."""
    raw = result.get(key).strip().strip(".()[]\"' ").upper()
    m = re.match(r"^([A-Z])\b", raw)
    if not m:
        return -1
    idx = ord(m.group(1)) - ord("A")
    return idx if 0 <= idx < n_candidates else -1
