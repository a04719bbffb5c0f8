"""The answer parser tolerates model damage, reports how it parsed, and never raises."""

from __future__ import annotations

import pytest

from mspa_features.parsing import ParseStats, parse_answer, parse_letter

KEYS = ("User Preference", "Recommendation Reason", "Answer")
GOOD = '{"User Preference": "action", "Recommendation Reason": "fits", "Answer": "B"}'


def test_clean_json_is_ok():
    r = parse_answer(GOOD, KEYS)
    assert r.status == "ok" and r.get("Answer") == "B" and parse_letter(r, 4) == 1


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("```json\n" + GOOD + "\n```", 1),  # code fence
        (GOOD + "\nI hope this helps!", 1),  # trailing prose
        ("Sure! " + GOOD, 1),  # leading prose
        ("{'User Preference': 'rock', 'Recommendation Reason': \"it's loud\", 'Answer': 'C'}", 2),
        ('{"User Preference": "x", "Recommendation Reason": "y", "Answer": "D",}', 3),
        ('{"User Preference": "x", "Recommendation Reason": "y", "Answer": "A', 0),  # cut off
    ],
)
def test_damaged_answers_are_repaired(text, letter):
    r = parse_answer(text, KEYS)
    assert r.status == "repaired", r
    assert parse_letter(r, 4) == letter


@pytest.mark.parametrize("text", ["", "garbage", "{", "{" * 10_000, '{"a": 1}', None, 42, "}{"])
def test_garbage_fails_without_raising(text):
    r = parse_answer(text, KEYS)
    assert r.status == "failed" and r.error
    assert parse_letter(r, 4) == -1


def test_letter_out_of_range_or_wordy():
    r = parse_answer('{"User Preference": "x", "Recommendation Reason": "y", "Answer": "Z"}', KEYS)
    assert parse_letter(r, 4) == -1
    r = parse_answer(
        '{"User Preference": "x", "Recommendation Reason": "y", "Answer": "(C) Die Hard"}', KEYS
    )
    assert parse_letter(r, 4) == 2


def test_lists_and_nested_values_become_text():
    r = parse_answer('{"Author Types": ["singer", "dancer"], "Style": {"tone": "calm"}}')
    assert r.data == {"Author Types": "singer, dancer", "Style": "tone: calm"}


def test_stats_count_each_status():
    stats = ParseStats()
    for t in (GOOD, "```" + GOOD + "```", "nope"):
        stats.add(parse_answer(t, KEYS))
    assert stats.as_dict() == {"ok": 1, "repaired": 1, "failed": 1} and stats.total == 3
