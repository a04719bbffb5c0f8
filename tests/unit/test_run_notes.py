"""``mspa run`` prints the backfill's notes (why rows are missing), as ``mspa backfill`` does."""

from __future__ import annotations

from mspa_features.cli.run import backfill_notes


def test_backfill_notes_name_the_feature_set_and_entity() -> None:
    features = {
        "backfill": {
            "template": {
                "preferences": {"requested": 3, "notes": []},
                "author_profiles": {
                    "requested": 0,
                    "notes": ["no author content in [2024-02-01, 2024-03-01)"],
                },
            },
            "llm": {"preferences": {"requested": 0, "notes": ["no Monday in range", "second"]}},
        }
    }
    assert backfill_notes(features) == [
        "note (template author_profiles): no author content in [2024-02-01, 2024-03-01)",
        "note (llm preferences): no Monday in range",
        "note (llm preferences): second",
    ]


def test_counts_without_notes_print_nothing() -> None:
    # summary.json written before counts carried notes: no key, no line.
    assert backfill_notes({"backfill": {"template": {"preferences": {"requested": 2}}}}) == []
    assert backfill_notes({}) == []
