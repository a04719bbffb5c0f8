"""THE point-in-time history rule (mspa_features.snapshots.history), once, on a hand-checked table.

The raw interactions below hold what the rule must get right: ties on the timestamp (ordered by
author id), a repeat (counted, position kept), a negative (never in a history), positives exactly
at the instant (not before it), a later one, a user without positives. Each of the three callers
(the composer's build_histories, the Spark worker's user_snapshots, the U2A eval set) is then
checked to give the same history on the same rows.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa

from mspa_features.data.contracts import Author
from mspa_features.evaluation.datasets import build_u2a
from mspa_features.snapshots.history import (
    AuthorSnapshots,
    build_histories,
    epoch_us,
    positive_histories,
    user_snapshots,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def h(n: float) -> datetime:
    return T0 + timedelta(hours=n)


# user, author, hour, label             what the rule must do with the row
RAW = [
    ("u1", "b", 1, 1),  # tie at 1h with a: a first (author id)
    ("u1", "a", 1, 1),
    ("u1", "c", 2, 0),  # negative: never in a history
    ("u1", "b", 3, 1),  # repeat: counted, b keeps its first position (1h)
    ("u1", "d", 4, 1),  # exactly at s = 4h: not before s
    ("u1", "a", 4, 1),  # exactly at s = 4h, and a repeat
    ("u1", "e", 5, 1),
    ("u2", "x", 1, 1),
    ("u3", "y", 1, 0),  # u3 has no positive at all
]
INTER = pd.DataFrame(
    {
        "user_id": [r[0] for r in RAW],
        "author_id": [r[1] for r in RAW],
        "event_timestamp": pd.to_datetime([h(r[2]) for r in RAW], utc=True),
        "label": [r[3] for r in RAW],
    }
).iloc[::-1]  # input row order must not matter
# request -> (distinct authors oldest first, their first hours, count, last hour)
EXPECTED = {
    ("u1", 0): ([], [], 0, None),
    ("u1", 4): (["a", "b"], [1, 1], 3, 3),
    ("u1", 4.5): (["a", "b", "d"], [1, 1, 4], 5, 4),
    ("u1", 6): (["a", "b", "d", "e"], [1, 1, 4, 5], 6, 5),
    ("u2", 4): (["x"], [1], 1, 1),
    ("u3", 4): ([], [], 0, None),
    ("nobody", 4): ([], [], 0, None),
}


def test_the_rule_on_the_raw_table():
    requests = list(EXPECTED)[::-1]  # output follows the requests' order
    got = positive_histories(
        INTER["user_id"],
        INTER["author_id"],
        [epoch_us(t) for t in INTER["event_timestamp"]],
        [u for u, _ in requests],
        [epoch_us(h(s)) for _, s in requests],
        labels=INTER["label"],
    )
    assert len(got.count) == len(requests) and len(got.offsets) == len(requests) + 1
    for r, key in enumerate(requests):
        authors, first, count, last = EXPECTED[key]
        assert got.authors_of(r).tolist() == authors, key
        lo, hi = got.offsets[r], got.offsets[r + 1]
        assert got.first_us[lo:hi].tolist() == [epoch_us(h(x)) for x in first], key
        assert got.count[r] == count, key
        assert got.last_us[r] == (-1 if last is None else epoch_us(h(last))), key


def test_without_labels_every_row_is_a_positive():
    pos = INTER[INTER["label"] == 1]
    got = positive_histories(
        pos["user_id"],
        pos["author_id"],
        [epoch_us(t) for t in pos["event_timestamp"]],
        ["u1"],
        [epoch_us(h(6))],
    )
    assert got.authors_of(0).tolist() == ["a", "b", "d", "e"] and got.count.tolist() == [6]


def _author(aid: str, hour: float) -> Author:
    return Author(author_id=aid, event_timestamp=h(hour), profile_text=f"author {aid}")


# e's content appears at 7h: a history as of 6h counts e's positive but cannot show its content.
AUTHORS = [_author(a, 0) for a in "abcdxy"] + [_author("e", 7)]


def _summary(hist) -> tuple:
    return (
        hist.user_id,
        hist.as_of,
        [a.author_id for a in hist.authors],
        hist.history_count,
        hist.history_last_ts,
    )


def test_composer_and_spark_worker_apply_the_same_rule():
    requests = [("u1", h(0)), ("u1", h(4)), ("u1", h(4.5)), ("u1", h(6))]
    composer = build_histories(INTER, {a.author_id: a for a in AUTHORS}, requests)
    assert [_summary(x) for x in composer] == [
        ("u1", h(0), [], 0, None),
        ("u1", h(4), ["a", "b"], 3, h(3)),
        ("u1", h(4.5), ["a", "b", "d"], 5, h(4)),
        ("u1", h(6), ["a", "b", "d"], 6, h(5)),  # e: counted, no content as of 6h
    ]
    # The rows a Spark partition hands the worker: u1's positives and requested instants.
    pos = INTER[(INTER["label"] == 1) & (INTER["user_id"] == "u1")]
    ts = np.array(
        [epoch_us(t) for t in pos["event_timestamp"]] + [epoch_us(s) for _, s in requests]
    )
    aids = np.array(list(pos["author_id"]) + [None] * len(requests), dtype=object)
    kinds = np.array([1] * len(pos) + [0] * len(requests), dtype=np.int8)
    spark = user_snapshots("u1", ts, aids, kinds, AuthorSnapshots(AUTHORS))
    assert [_summary(x) for x in spark] == [_summary(x) for x in composer]


def test_u2a_history_is_the_rule_as_of_the_target_without_the_target():
    table = build_u2a(INTER, num_candidates=(2,), min_positives=1, all_author_ids=list("abcdexyz"))
    row = table.table.set_index("user_id").loc["u1"]
    # target: the last positive (5h, e); history as of 5h: a, b, d (e removed if it were there)
    assert row["target_author_id"] == "e" and row["as_of"] == pd.Timestamp(h(5))
    assert row["history_author_ids"] == ["a", "b", "d"]
    assert row["history_ts"] == [pd.Timestamp(h(1)), pd.Timestamp(h(1)), pd.Timestamp(h(4))]
    # u2's only positive is its target: an empty history
    assert table.table.set_index("user_id").loc["u2"]["history_author_ids"] == []


def test_u2a_drops_an_earlier_positive_on_the_target_author():
    inter = pd.DataFrame(
        {
            "user_id": ["u"] * 3,
            "author_id": ["t", "a", "t"],
            "event_timestamp": pd.to_datetime([h(1), h(2), h(3)], utc=True),
            "label": [1, 1, 1],
        }
    )
    row = build_u2a(inter, num_candidates=(2,), min_positives=1, all_author_ids="atz").table
    assert row["target_author_id"].tolist() == ["t"]
    assert row["history_author_ids"].tolist() == [["a"]]


def test_arrow_microseconds_round_trip():
    # the Spark rows carry timestamps as arrow us; the rule's int64 us must be the same numbers
    arr = pa.array([h(1.5)], pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_pylist()
    assert arr == [epoch_us(h(1.5))]
