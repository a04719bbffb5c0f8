"""Parse status counts of the composer evaluation and the lines the main job prints."""

from __future__ import annotations

import pytest

from mspa_features.cli.run import parse_lines
from mspa_features.composer import Composed
from mspa_features.evaluation import parse_rate, status_counts


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
        "template parse ok/repaired/failed (rate), none decoding: preferences 12/0/0 (100.0%), "
        "answers 71/0/1 (98.6%)"
    )
    assert parse_lines(res) == [line]
