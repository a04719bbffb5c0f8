"""Recall replay maths: Hit Rate@K from ranks equals brute-force top-K retrieval (issue 18: 1)."""

from __future__ import annotations

import numpy as np
import pytest

from mspa_features.errors import InputMismatchError, InvalidValueError
from mspa_features.evaluation.recall import (
    bootstrap_hit_rates,
    brute_force_top_k,
    cosine_scores,
    cutoffs,
    hit_rate_at_k,
    hits_at,
    target_ranks,
)

# Five authors on the unit circle at 0, 30, 60, 90 and 180 degrees; three users.
_DEG = np.deg2rad([0.0, 30.0, 60.0, 90.0, 180.0])
AUTHORS = np.stack([np.cos(_DEG), np.sin(_DEG)], axis=1)  # (5, 2)
USERS = np.array([[1.0, 0.0], [0.0, 2.0], [np.nan, np.nan]])  # u0 at 0 deg, u1 at 90, u2 none


def test_hit_rate_known_answer() -> None:
    s = cosine_scores(USERS, AUTHORS)  # (3, 5)
    # By hand: u0 ranks authors 0, 1, 2, 3, 4; u1 ranks 3, 2, 1, then 0 and 4 (cos 0 each).
    assert brute_force_top_k(s, 3) == [[0, 1, 2], [3, 2, 1], []]
    target = np.array([2, 0, 1])  # u0's target ranks 3rd; u1's ties with author 4 at 4th
    ranks = target_ranks(s, target)
    assert ranks[0] == 3
    assert ranks[1] == 5  # tie broken against the target: 3, 2, 1, 4 before it
    assert np.isinf(ranks[2])  # no query vector: a miss everywhere
    assert hit_rate_at_k(ranks, 1) == 0.0
    assert hit_rate_at_k(ranks, 3) == pytest.approx(1 / 3)
    assert hit_rate_at_k(ranks, 5) == pytest.approx(2 / 3)
    assert hits_at(ranks, [2, 3, 5]).tolist() == [
        [False, True, True], [False, False, True], [False, False, False]
    ]


def test_non_candidates_and_unknown_targets() -> None:
    s = cosine_scores(USERS[:2], AUTHORS)
    s[0, 0] = np.nan  # author 0 is not in u0's catalogue (not valid yet, or already seen)
    ranks = target_ranks(s, np.array([1, -1]))
    assert ranks[0] == 1  # author 1 moves up to first
    assert np.isinf(ranks[1])  # target outside the index
    s[0, 1] = np.nan
    assert np.isinf(target_ranks(s, np.array([1, 3]))[0])  # target itself not a candidate


def test_hit_rate_matches_brute_force_on_random_scores() -> None:
    rng = np.random.default_rng(7)
    q, items = rng.normal(size=(40, 8)), rng.normal(size=(60, 8))
    s = cosine_scores(q, items)
    s[rng.random(s.shape) < 0.2] = np.nan  # per-query catalogues
    target = rng.integers(-1, 60, size=40)
    ranks = target_ranks(s, target)
    for k in (1, 5, 10, 60):
        top = brute_force_top_k(s, k)
        brute = np.mean([t in row for t, row in zip(target.tolist(), top, strict=True)])
        assert hit_rate_at_k(ranks, k) == pytest.approx(brute)


def test_cutoffs() -> None:
    assert cutoffs([10, 50, 100, 1000], 300) == [10, 50, 100, 300]
    assert cutoffs([1000, 10], 5000) == [10, 1000]
    assert cutoffs([10, 50], 20) == [10, 20]
    with pytest.raises(InvalidValueError, match="k must be a positive integer"):
        cutoffs([0], 10)


def test_bootstrap_hit_rates_paired() -> None:
    # Source 1 hits exactly where source 0 hits, plus every query of users c and d.
    users = np.array(["a", "a", "b", "c", "c", "d"])
    h0 = np.array([1, 0, 1, 0, 0, 0], dtype=bool)
    h1 = h0 | np.isin(users, ["c", "d"])
    hits = np.stack([h0, h1], axis=1)[:, :, None]  # (6, 2, 1)
    rates, deltas = bootstrap_hit_rates(hits, users, baseline=0, n_boot=500, seed=0)
    assert rates[0][0].value == pytest.approx(2 / 6)
    assert rates[1][0].value == pytest.approx(5 / 6)
    assert rates[0][0].ci_low <= rates[0][0].value <= rates[0][0].ci_high
    assert deltas is not None
    assert deltas[1][0].delta == pytest.approx(3 / 6)
    assert deltas[1][0].ci_low >= 0 and deltas[1][0].ci_high > 0  # never worse on a resample
    assert deltas[0][0].delta == 0 and deltas[0][0].ci_low == deltas[0][0].ci_high == 0
    again, _ = bootstrap_hit_rates(hits, users, baseline=0, n_boot=500, seed=0)
    assert again == rates  # seeded
    with pytest.raises(InputMismatchError):
        bootstrap_hit_rates(hits, users[:3])
    with pytest.raises(InvalidValueError):
        bootstrap_hit_rates(hits, users, baseline=2)


def test_catalogue_epochs() -> None:
    """Instants between the same change points (snapshot starts, just after start + TTL) see
    the same catalogue; a snapshot is still visible at start + TTL itself."""
    from mspa_features.serving.catalogue import epochs_of

    starts = np.array([10, 20])
    epoch, cps = epochs_of(np.array([5, 10, 15, 20, 25, 30, 31, 40, 41]), starts, ttl_us=20)
    assert cps.tolist() == [10, 20, 31, 41]
    assert epoch.tolist() == [0, 1, 1, 2, 2, 2, 3, 3, 4]
    epoch, _ = epochs_of(np.array([5, 10, 10_000]), starts, ttl_us=0)  # no TTL: never expires
    assert epoch.tolist() == [0, 1, 2]
