"""Recall replay maths (MSPA "Offline Performance": Hit Rate@K): numpy in, numbers out.

A recall replay asks, for every test impression (a user at an as-of instant, with the author
the user then engaged with positively as the *target*), whether a recall source retrieves the
target among its top K authors of the whole catalogue valid at that instant.

Conventions (shared by every function here):

* ``scores`` is ``(n_queries, n_items)`` over one global author index; ``NaN`` marks an item
  that is *not a candidate* for that query (not in the catalogue at the instant, no vector,
  or excluded as already engaged). A query whose row is all NaN (no query vector) retrieves
  nothing;
* ``target`` holds each query's target item index, ``-1`` when the target is not in the
  global index at all;
* ranks break ties *against* the target, as :mod:`mspa_features.evaluation.metrics` does:
  ``rank = 1 + #(candidates scoring > t) + #(other candidates scoring == t)``; a target that
  is not a candidate (or a query without a vector) has rank ``inf``: a miss at every K;
* ``Hit Rate@K`` is the share of queries with ``rank <= K``: exactly "the target is in the
  brute-force top K" (:func:`brute_force_top_k`) whenever no candidate ties the target;
* bootstrap CIs resample *users* (the queries of a drawn user come together), the same draw
  for every source, so the deltas between sources are paired.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mspa_features.errors import InputMismatchError, InvalidValueError
from mspa_features.evaluation.metrics import BootstrapResult

__all__ = [
    "DEFAULT_KS",
    "HitRateCI",
    "bootstrap_hit_rates",
    "brute_force_top_k",
    "cosine_scores",
    "cutoffs",
    "hit_rate_at_k",
    "hits_at",
    "target_ranks",
]

#: The cut-offs of the replay; the largest becomes the catalogue size when that is smaller.
DEFAULT_KS: tuple[int, ...] = (10, 50, 100, 1000)


def _check_k(k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or int(k) < 1:
        raise InvalidValueError("k", k, "a positive integer")
    return int(k)


def cutoffs(ks: Sequence[int], catalogue_size: int) -> list[int]:
    """The cut-offs to report: each ``k`` below the catalogue size, and the catalogue size
    itself in place of every ``k`` at or above it (``[10, 50, 100, 1000]`` over 300 authors
    gives ``[10, 50, 100, 300]``)."""
    size = _check_k(catalogue_size) if catalogue_size else 0
    out = sorted({_check_k(k) for k in ks})
    if not out:
        raise InvalidValueError("ks", list(ks), "at least one positive integer")
    if size:
        out = sorted({min(k, size) for k in out})
    return out


def cosine_scores(queries: ArrayLike, items: ArrayLike) -> NDArray[np.float64]:
    """Cosine between every query and every item, ``(n, m)``.

    A query or item row holding a NaN, or of zero norm, gives NaN (no vector: not a
    candidate, or no retrieval for that query).

    Raises:
        InputMismatchError: the two matrices differ in their dimension.
    """
    q = np.atleast_2d(np.asarray(queries, dtype=np.float64))  # (n, d)
    it = np.atleast_2d(np.asarray(items, dtype=np.float64))  # (m, d)
    if q.shape[1] != it.shape[1]:
        raise InputMismatchError(
            "must have the same dimension", {"queries": q.shape, "items": it.shape}
        )

    def unit(m: NDArray[np.float64]) -> NDArray[np.float64]:
        norm = np.linalg.norm(m, axis=1, keepdims=True)  # (rows, 1); NaN rows stay NaN
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(norm > 0, m / norm, np.nan)

    return unit(q) @ unit(it).T  # (n, m)


def target_ranks(scores: ArrayLike, target: ArrayLike) -> NDArray[np.float64]:
    """1-based rank of each query's target among its candidates; ``inf`` when it is none.

    Args:
        scores: ``(n_queries, n_items)``; NaN = not a candidate (see the module docstring).
        target: ``(n_queries,)`` item indices, ``-1`` for a target outside the index.

    Returns:
        ``(n_queries,)`` float ranks (``inf``: a miss at every K).

    Raises:
        InputMismatchError: ``target`` does not have one entry per query.
        InvalidValueError: a target index outside ``[-1, n_items)``.
    """
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))  # (n, m)
    t = np.asarray(target).astype(np.int64, copy=False).ravel()  # (n,)
    if t.shape[0] != s.shape[0]:
        raise InputMismatchError(
            "must have one entry per query", {"scores": s.shape, "target": t.shape}
        )
    if ((t < -1) | (t >= s.shape[1])).any():
        raise InvalidValueError(
            "target", t.min() if (t < -1).any() else t.max(), f"an item index in [-1, {s.shape[1]})"
        )
    ranks = np.full(t.shape[0], np.inf)
    known = t >= 0
    if not known.any():
        return ranks
    rows = np.flatnonzero(known)
    ts = s[rows, t[rows]]  # (r,) the targets' own scores
    ok = ~np.isnan(ts)
    rows, ts = rows[ok], ts[ok]
    with np.errstate(invalid="ignore"):
        # NaN compares False: non-candidates never count; ">=" counts the target itself once.
        ranks[rows] = (s[rows] >= ts[:, None]).sum(axis=1)
    return ranks


def hits_at(ranks: ArrayLike, ks: Sequence[int]) -> NDArray[np.bool_]:
    """``(n_queries, len(ks))``: the target ranks within each cut-off."""
    r = np.asarray(ranks, dtype=np.float64).ravel()
    return r[:, None] <= np.asarray([_check_k(k) for k in ks], dtype=np.float64)[None, :]


def hit_rate_at_k(ranks: ArrayLike, k: int) -> float:
    """Share of queries whose target ranks within the top ``k`` (NaN for no query)."""
    r = np.asarray(ranks, dtype=np.float64).ravel()
    return float(np.mean(r <= _check_k(k))) if r.size else float("nan")


def brute_force_top_k(scores: ArrayLike, k: int) -> list[list[int]]:
    """Each query's top-``k`` candidate indices, best first (ties: lower index first; NaN
    items never retrieved; fewer than ``k`` when fewer are candidates). The reference the
    rank-based Hit Rate is checked against."""
    k = _check_k(k)
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    out: list[list[int]] = []
    for row in s:
        cand = np.flatnonzero(~np.isnan(row))
        order = cand[np.argsort(-row[cand], kind="stable")]
        out.append([int(i) for i in order[:k]])
    return out


@dataclass(frozen=True)
class HitRateCI:
    """Hit Rate@K of one source with its 95 % bootstrap CI over users."""

    value: float
    ci_low: float
    ci_high: float


def bootstrap_hit_rates(
    hits: ArrayLike,
    users: ArrayLike,
    *,
    baseline: int | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[list[list[HitRateCI]], list[list[BootstrapResult]] | None]:
    """Hit rates with 95 % percentile CIs from a cluster bootstrap over users, and the
    paired deltas to a baseline source.

    Each resample draws users with replacement (the same draw for every source); a query
    weighs as often as its user was drawn, so Hit Rate* = sum(w * hits) / sum(w).

    Args:
        hits: ``(n_queries, n_sources, n_ks)`` booleans (:func:`hits_at` per source).
        users: ``(n_queries,)`` the user of each query (the resampling unit).
        baseline: the source index the deltas are taken against (None: no deltas).
        n_boot: resamples.
        seed: the generator's seed.

    Returns:
        ``rates[s][k]`` and, with a baseline, ``deltas[s][k]`` (``metric(s) - metric(base)``,
        CI and the two-sided p-value of :func:`~mspa_features.evaluation.metrics.
        paired_bootstrap`; the baseline's own row is all zeros).

    Raises:
        InputMismatchError: ``users`` does not have one entry per query, or ``hits`` is not 3-D.
        InvalidValueError: no query, a bad ``n_boot`` or ``baseline``.
    """
    h = np.asarray(hits, dtype=np.float64)
    if h.ndim != 3:
        raise InputMismatchError("must be (n_queries, n_sources, n_ks)", {"hits": h.shape})
    _, codes = np.unique(np.asarray(users).astype(str), return_inverse=True)
    codes = codes.ravel()
    if codes.shape[0] != h.shape[0]:
        raise InputMismatchError(
            "must have one entry per query", {"hits": h.shape, "users": codes.shape}
        )
    if h.shape[0] == 0:
        raise InvalidValueError("hits", "no query", "at least one query")
    if isinstance(n_boot, bool) or int(n_boot) != n_boot or n_boot < 1:
        raise InvalidValueError("n_boot", n_boot, "a positive integer")
    n_src, n_k = h.shape[1], h.shape[2]
    if baseline is not None and not 0 <= baseline < n_src:
        raise InvalidValueError("baseline", baseline, f"a source index in [0, {n_src})")
    n_users = int(codes.max()) + 1
    # Per-user sums: (n_users, n_src * n_k) and per-user query counts (n_users,)
    sums = np.zeros((n_users, n_src * n_k))
    np.add.at(sums, codes, h.reshape(h.shape[0], -1))
    counts = np.bincount(codes, minlength=n_users).astype(np.float64)
    point = (sums.sum(axis=0) / counts.sum()).reshape(n_src, n_k)

    rng = np.random.default_rng(seed)
    boot = np.empty((int(n_boot), n_src, n_k))
    for i in range(int(n_boot)):
        w = np.bincount(rng.integers(0, n_users, size=n_users), minlength=n_users)
        w = w.astype(np.float64)  # (n_users,) times each user was drawn
        boot[i] = ((w @ sums) / (w @ counts)).reshape(n_src, n_k)
    lo, hi = np.percentile(boot, [2.5, 97.5], axis=0)
    rates = [
        [HitRateCI(float(point[s, k]), float(lo[s, k]), float(hi[s, k])) for k in range(n_k)]
        for s in range(n_src)
    ]
    if baseline is None:
        return rates, None
    d = boot - boot[:, baseline : baseline + 1, :]  # (n_boot, n_src, n_k)
    d_lo, d_hi = np.percentile(d, [2.5, 97.5], axis=0)
    p = np.minimum(1.0, 2.0 * np.minimum((d <= 0).mean(axis=0), (d >= 0).mean(axis=0)))
    deltas = [
        [
            BootstrapResult(
                delta=float(point[s, k] - point[baseline, k]),
                ci_low=float(d_lo[s, k]),
                ci_high=float(d_hi[s, k]),
                p_value=float(p[s, k]) if s != baseline else 1.0,
                n_boot=int(n_boot),
            )
            for k in range(n_k)
        ]
        for s in range(n_src)
    ]
    return rates, deltas
