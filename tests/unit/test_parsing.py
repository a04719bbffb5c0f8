"""The answer parser tolerates model damage, reports how it parsed, and never raises."""

from __future__ import annotations

import pytest

from mspa_features.compose.parsing import ParseStats, parse_answer, parse_letter

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


# ----------------------------------------------------------------------------- the letter class

# (whole model output, m, expected index): only an unambiguous letter counts, never prose.
LETTER_CLASS = [
    # counted: the letter alone, bracketed, dotted, labelled, or as a JSON field
    ("B", 4, 1),
    ("B.", 4, 1),
    ("(B)", 4, 1),
    ("[B]", 4, 1),
    ("B)", 4, 1),
    ("b", 4, 1),
    (" B \n", 4, 1),
    ('"B"', 4, 1),
    ("**B**", 4, 1),
    ("Answer: B", 4, 1),
    ("answer = (B)", 4, 1),
    ("Answer: B.", 4, 1),
    ('{"Answer": "B"}', 4, 1),
    ('{"Answer": "(B)"}', 4, 1),
    ('{"Answer": "Answer: B"}', 4, 1),
    ('{"User Preference": "x", "Recommendation Reason": "y", "Answer": "D"}', 4, 3),
    ('Sure! {"Answer": "C"}', 4, 2),  # a JSON answer inside chatter still names its field
    ('```json\n{"Answer": "A"}\n```', 4, 0),
    ('{"Answer": "(C) Die Hard"}', 4, 2),  # a list marker, then the candidate's text
    ('{"Answer": "C. Die Hard"}', 4, 2),
    ("J", 10, 9),
    # not counted: prose, several letters, other fields, out of range, nothing
    ("I think B", 4, -1),
    ("A good fit is B", 4, -1),
    ('{"Answer": "I think B"}', 4, -1),
    ('"Answer": "I think B"', 4, -1),
    ("Answer: I think B", 4, -1),
    ('{"Answer": "A good fit is B"}', 4, -1),
    ("The answer is B", 4, -1),
    ("Option B", 4, -1),
    ("A or B", 4, -1),
    ("A, B", 4, -1),
    ('{"Answer": "B or C"}', 4, -1),
    ('{"Answer": "Because B fits"}', 4, -1),
    ('{"Recommendation Reason": "B"}', 4, -1),  # a letter in another field is not the answer
    ("E", 4, -1),  # past the m candidates
    ('{"Answer": "J"}', 4, -1),
    ("", 4, -1),
    ("{}", 4, -1),
    ('{"Answer": ""}', 4, -1),
    ("Answer:", 4, -1),
    ("42", 4, -1),
]


@pytest.mark.parametrize(("text", "m", "expected"), LETTER_CLASS)
def test_letter_class(text, m, expected):
    from mspa_features.compose.parsing import answer_letter

    assert answer_letter(text, m) == expected


@pytest.mark.parametrize(("text", "m", "expected"), LETTER_CLASS)
def test_rewards_and_acc_at_m_read_the_same_letter(text, m, expected):
    """The GRPO accuracy reward and Acc@m's reader agree on every member of the class."""
    from mspa_features.align.rewards import AccuracyReward
    from mspa_features.compose.composer import close_json
    from mspa_features.evaluation.composer_eval import recommend_letters
    from mspa_features.generation.base import (
        BackendConfig,
        Generation,
        GenerationBackend,
        GenerationConfig,
    )

    class Canned(GenerationBackend):
        name = "canned"

        @property
        def model_version(self):
            return "canned"

        def count_tokens(self, t):
            return 1

        def generate(self, conversations, cfg, *, schema=None):
            return [Generation(text, 1, 1, "length") for _ in conversations]

    cands = [f"author {i}" for i in range(m)]
    (pick,) = recommend_letters(
        Canned(BackendConfig()), ["p"], [cands], GenerationConfig(), ParseStats()
    )
    assert pick == expected
    truth = "ABCDEFGHIJ"[expected] if expected >= 0 else "A"
    reward = AccuracyReward()([text], answer=[truth], candidate_ids=[cands])
    assert reward == [1.0 if expected >= 0 else 0.0]
    assert close_json(text, "length") == text  # the reader saw the text as the reward did


def test_parse_letter_reads_the_field_with_the_same_rule():
    for value, idx in [("B", 1), ("(C) Die Hard", 2), ("I think B", -1), ("A good fit", -1)]:
        r = parse_answer(f'{{"Answer": "{value}"}}', ("Answer",))
        assert parse_letter(r, 4) == idx
