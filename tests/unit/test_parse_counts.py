"""Parse status counts of the composer evaluation and the lines the main job prints."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mspa_features.cli.run import parse_lines
from mspa_features.compose.composer import Composed
from mspa_features.evaluation.composer_eval import parse_rate, status_counts
from mspa_features.generation.base import (
    BackendConfig,
    Generation,
    GenerationBackend,
    GenerationConfig,
)


def test_status_counts_leave_out_empty_inputs_and_count_no_text_as_failed():
    composed = [
        Composed("a", "ok"),
        Composed("b", "ok"),
        Composed("c", "repaired"),
        Composed("d", "failed"),
        Composed("", "skipped", "model returned no text"),
        Composed("", "skipped", "empty history"),
        Composed("", "skipped", "author has no text or frames"),
    ]
    assert status_counts(composed) == {"ok": 2, "repaired": 1, "failed": 2}


def test_parse_rate_is_ok_plus_repaired_over_all():
    assert parse_rate({"ok": 70, "repaired": 1, "failed": 1}) == pytest.approx(71 / 72)
    assert parse_rate({"ok": 0, "repaired": 0, "failed": 0}) is None


def test_parse_lines_one_per_composer_with_each_kind():
    res = {
        "composers": {
            "template": {
                "decoding": "none",
                "parse": {
                    "preferences": {"ok": 12, "repaired": 0, "failed": 0},
                    "authors": {"ok": 0, "repaired": 0, "failed": 0},
                    "recommend": {"ok": 71, "repaired": 0, "failed": 1},
                },
            },
            "llm": {"decoding": "constrained", "parse": {}},
        }
    }
    line = (
        "template (composed without an LLM): preferences 12/0/0 (100.0%); LLM answers 71/0/1 "
        "(98.6%)"
    )
    assert parse_lines(res) == [line]
    # The recommender's decoding, when the results name it, beside the answers it decoded.
    res["composers"]["template"]["answer_decoding"] = "constrained"
    res["composers"]["llm"]["parse"] = {"recommend": {"ok": 72, "repaired": 0, "failed": 0}}
    res["composers"]["llm"]["answer_decoding"] = "free"
    assert parse_lines(res) == [
        line.replace("LLM answers", "LLM answers (constrained decoding)"),
        "llm (constrained decoding): LLM answers (free decoding) 72/0/0 (100.0%)",
    ]


class _Recorder(GenerationBackend):
    """Answers every conversation with one canned answer; records the schemas and caps."""

    name = "recorder"
    supports_schema = True

    def __init__(self, answer: str):
        super().__init__(BackendConfig())
        self.answer = answer
        self.calls: list[tuple[Any, int]] = []

    @property
    def model_version(self) -> str:
        return "recorder"

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def generate(self, conversations, cfg, *, schema=None) -> list[Generation]:  # type: ignore[override]
        self.calls.append((schema, cfg.max_new_tokens))
        return [Generation(self.answer, 5, 5, "stop", schema is not None) for _ in conversations]


def test_constrained_answers_get_twice_the_tokens_their_strings_are_bounded_for():
    from mspa_features.compose.parsing import ParseStats
    from mspa_features.compose.prompts import RECOMMEND
    from mspa_features.evaluation.composer_eval import recommend_letters
    from mspa_features.generation.structured import bound_strings, letter_schema

    answer = json.dumps({"User Preference": "x", "Recommendation Reason": "y", "Answer": "B"})
    backend = _Recorder(answer)
    gen = GenerationConfig(max_new_tokens=48, temperature=0.7)
    picks = recommend_letters(backend, ["p"], [["a", "b"]], gen, ParseStats(), constrained=True)
    assert picks == [1]
    ((schemas, cap),) = backend.calls
    assert cap == 96
    assert schemas == [letter_schema(bound_strings(RECOMMEND.answer_schema, 48), 2)]
    free = _Recorder(answer)
    recommend_letters(free, ["p"], [["a", "b"]], gen, ParseStats())
    assert free.calls == [(None, 48)]
