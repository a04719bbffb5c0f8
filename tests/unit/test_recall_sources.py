"""Recall replay sources without Feast: queries, histories, popularity and ID-table retrieval
on a hand-made log with known answers (issue 18: 1)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ranker_hooks.recall import build_queries, rank_popularity, rank_static_table

T = pd.Timestamp("2026-01-10", tz="UTC")


def _log() -> pd.DataFrame:
    rows = [  # user, author, day, label
        ("u1", "a", 1, 1), ("u1", "b", 2, 1), ("u1", "c", 3, 0), ("u2", "b", 4, 1),
        ("u3", "b", 5, 1),
        ("u1", "c", 11, 1),  # test: u1 engages c; history {a, b}
        ("u2", "b", 12, 1),  # test: u2 engages b again (already seen)
        ("u2", "a", 12, 1),  # same instant (sorted before b by id): not in b's history
        ("u3", "a", 13, 0),  # negative: not a query
    ]
    return pd.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "author_id": [r[1] for r in rows],
            "event_timestamp": [pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(days=r[2])
                                for r in rows],
            "label": [r[3] for r in rows],
        }
    )


def test_queries_and_histories() -> None:
    q = build_queries(_log(), ["c", "a", "b"], T, T + pd.Timedelta(days=9))
    assert q.authors == ["a", "b", "c"]
    assert list(q.users) == ["u1", "u2", "u2"]
    assert [q.authors[t] for t in q.target] == ["c", "a", "b"]
    assert [[q.authors[i] for i in h] for h in q.history] == [["a", "b"], ["b"], ["b"]]
    sample = build_queries(_log(), ["a", "b", "c"], T, T + pd.Timedelta(days=9),
                           users=["u2"], sample_authors=["a"])
    assert len(sample) == 1 and sample.allowed.tolist() == [True, False, False]


def test_popularity_counts_strictly_before() -> None:
    q = build_queries(_log(), ["a", "b", "c"], T, T + pd.Timedelta(days=9))
    valid = np.zeros(3, dtype=np.int64)  # every author valid from the epoch
    # Before day 11: a 1, b 3, c 0; u1 (seen a, b): c is the only candidate, rank 1.
    # Before day 12: a 1, b 3, c 1 (u1's day-11 positive counts; u2's day-12 ones do not).
    # u2 (seen b) -> a ties c, broken against the target: rank 2; u2's b is seen: a miss.
    r = rank_popularity(_log(), valid, q, exclude_seen=True)
    assert r.ranks.tolist() == [1.0, 2.0, np.inf]
    kept = rank_popularity(_log(), valid, q, exclude_seen=False)
    assert kept.ranks.tolist() == [3.0, 3.0, 1.0]  # b (3 positives) first


def test_static_table_uses_history_mean() -> None:
    q = build_queries(_log(), ["a", "b", "c"], T, T + pd.Timedelta(days=9))
    table = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=np.float32)  # a, b, c
    r = rank_static_table("id@test", "", table, q, exclude_seen=False)
    # u1: mean(a, b) = (.5, .5) -> c first; u2: mean(b) -> b first, then c, then a
    assert r.ranks.tolist() == [1.0, 3.0, 1.0]
    table[2] = np.nan  # c unknown to the table: not a candidate
    r = rank_static_table("id@test", "", table, q, exclude_seen=False)
    assert np.isinf(r.ranks[0]) and r.target_candidate == 2
    assert r.with_query == 3
    assert r.catalogue_median == pytest.approx(2.0)
