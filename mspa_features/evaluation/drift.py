"""Drift between two model versions of the same features: pure statistics over arrays.

What a ranking engineer asks when a new model version replaces the old one: how far did each
entity's embedding move (cosine between the two versions for the same entity at the same
instant), how many users see a different top-k of nearest authors, and how the U2A/A2A metrics
changed. Reading the embeddings (Feast's point-in-time join), the plot, the JSON and MLflow
live in :mod:`mspa_features.evaluation.drift_report`; here only maths, testable on known
answers.

Conventions: cosine is computed on the raw vectors (not assumed unit length); a row with a zero
vector has no direction, so its cosine is NaN and summaries skip it. Nearest authors are
exact (brute-force) cosine rankings, ties broken by the lower author index.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mspa_features.errors import InputMismatchError, InvalidValueError
from mspa_features.evaluation.metrics import bootstrap_mean_ci


def _matrix(x: ArrayLike, name: str) -> NDArray[np.float64]:
    m = np.asarray(x, dtype=np.float64)
    if m.ndim != 2:
        raise InvalidValueError(f"{name} shape", m.shape, "2-D (rows, dims)")
    return m


def _unit(m: NDArray[np.float64]) -> NDArray[np.float64]:
    norms = np.linalg.norm(m, axis=1, keepdims=True)  # (n, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norms > 0, m / np.where(norms > 0, norms, 1.0), np.nan)


def row_cosine(a: ArrayLike, b: ArrayLike) -> NDArray[np.float64]:
    """Cosine between row ``i`` of ``a`` and row ``i`` of ``b`` (the same entity, two versions).

    Args:
        a: (n, d) embeddings of version A.
        b: (n, d) embeddings of version B, rows in the same entity order.

    Returns:
        (n,) cosines in [-1, 1]; NaN where either row is the zero vector.

    Raises:
        ValueError: shapes differ (different encoders put embeddings in different spaces).
    """
    ma, mb = _matrix(a, "a"), _matrix(b, "b")
    if ma.shape != mb.shape:
        raise InputMismatchError(
            "embeddings must have one shape",
            {"version A": ma.shape, "version B": mb.shape},
            hint="a cosine between versions needs both in the same space (same encoder)",
        )
    return np.clip(np.sum(_unit(ma) * _unit(mb), axis=1), -1.0, 1.0)


def top_k(queries: ArrayLike, items: ArrayLike, k: int) -> NDArray[np.intp]:
    """Indices of the ``k`` items nearest (cosine) to each query, best first.

    Args:
        queries: (n, d) query embeddings (users' preferences).
        items: (m, d) item embeddings (authors).
        k: how many; ``min(k, m)`` columns come back.

    Returns:
        (n, min(k, m)) item indices; ties rank the lower index first.

    Raises:
        ValueError: ``k < 1`` or dimensions differ.
    """
    if k < 1:
        raise InvalidValueError("k", k, ">= 1")
    q, it = _matrix(queries, "queries"), _matrix(items, "items")
    if q.shape[1] != it.shape[1]:
        raise InputMismatchError(
            "must have the same number of dims", {"queries": q.shape[1], "items": it.shape[1]}
        )
    scores = np.nan_to_num(_unit(q) @ _unit(it).T, nan=-np.inf)  # (n, m)
    order = np.argsort(-scores, axis=1, kind="stable")
    return order[:, : min(k, it.shape[0])]


def topk_changed(top_a: ArrayLike, top_b: ArrayLike) -> NDArray[np.bool_]:
    """Per user: the two top-k lists hold a different set of authors (order ignored)."""
    a, b = np.asarray(top_a), np.asarray(top_b)
    if a.shape != b.shape:
        raise InputMismatchError("must have one shape", {"top_a": a.shape, "top_b": b.shape})
    return np.array([set(x) != set(y) for x, y in zip(a.tolist(), b.tolist(), strict=True)])


def topk_overlap(top_a: ArrayLike, top_b: ArrayLike) -> NDArray[np.float64]:
    """Per user: ``|top_a ∩ top_b| / k`` (1: the same authors, 0: none in common)."""
    a, b = np.asarray(top_a), np.asarray(top_b)
    if a.shape != b.shape:
        raise InputMismatchError("must have one shape", {"top_a": a.shape, "top_b": b.shape})
    k = a.shape[1] if a.ndim == 2 and a.shape[1] else 1
    return np.array(
        [len(set(x) & set(y)) / k for x, y in zip(a.tolist(), b.tolist(), strict=True)],
        dtype=np.float64,
    )


def summarize(values: ArrayLike) -> dict[str, float | int]:
    """``n`` (finite values), ``mean``, ``std`` (population), ``min``, ``p05``, ``median``,
    ``p95``, ``max`` of the finite values; NaN statistics when there are none."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if not len(v):
        nan = float("nan")
        return {"n": 0, "mean": nan, "std": nan, "min": nan, "p05": nan, "median": nan,
                "p95": nan, "max": nan}  # fmt: skip
    p05, median, p95 = np.percentile(v, [5, 50, 95])
    return {
        "n": len(v),
        "mean": float(v.mean()),
        "std": float(v.std()),
        "min": float(v.min()),
        "p05": float(p05),
        "median": float(median),
        "p95": float(p95),
        "max": float(v.max()),
    }


def histogram(
    values: ArrayLike, *, bins: int = 20, value_range: tuple[float, float] = (-1.0, 1.0)
) -> dict[str, list[float] | list[int]]:
    """Counts of the finite values in ``bins`` equal bins over ``value_range`` (the last bin
    closed): ``{"edges": [bins + 1], "counts": [bins]}``."""
    v = np.asarray(values, dtype=np.float64).ravel()
    counts, edges = np.histogram(v[np.isfinite(v)], bins=bins, range=value_range)
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def metric_deltas(
    a: Mapping[str, Any], b: Mapping[str, Any], *, n_boot: int = 1000, seed: int = 0
) -> dict[str, dict[str, Any]]:
    """``{metric: {"a", "b", "delta": b - a}}`` for the numeric metrics both sides report
    (booleans and non-finite values left out), sorted by name.

    Where both results rows carry ``per_unit`` values (``composer_eval.ComposerEval.row``), a
    delta also gets its paired 95 % bootstrap CI (``ci_low``, ``ci_high``, ``n`` units,
    ``trustworthy``; :func:`mspa_features.evaluation.metrics.bootstrap_mean_ci` over
    ``b - a`` per unit): per-user metrics on the users both evaluated (matched by id), A2A on
    the triples when both sides scored the same number of them. The CI is of the mean over
    those units, which equals the delta when both sides evaluated the same users."""

    def num(x: Any) -> bool:
        return isinstance(x, int | float) and not isinstance(x, bool) and np.isfinite(x)

    out: dict[str, dict[str, Any]] = {
        key: {"a": float(a[key]), "b": float(b[key]), "delta": float(b[key]) - float(a[key])}
        for key in sorted(set(a) & set(b))
        if num(a[key]) and num(b[key])
    }
    pa_, pb_ = a.get("per_unit"), b.get("per_unit")
    if isinstance(pa_, Mapping) and isinstance(pb_, Mapping):
        for key, diff in _paired_units(pa_, pb_, [k for k in out if k in pa_ and k in pb_]):
            ci = bootstrap_mean_ci({key: diff}, n_boot=n_boot, seed=seed)[key]
            out[key].update(
                ci_low=ci.ci_low, ci_high=ci.ci_high, n=ci.n, trustworthy=ci.trustworthy
            )
    return out


def _paired_units(
    a: Mapping[str, Any], b: Mapping[str, Any], keys: list[str]
) -> list[tuple[str, np.ndarray]]:
    """Per-unit ``b - a`` for each key: users matched by id, A2A triples by position."""
    ids_a, ids_b = list(a.get("user_id", [])), list(b.get("user_id", []))
    at_b = {u: i for i, u in enumerate(ids_b)}
    both = [(i, at_b[u]) for i, u in enumerate(ids_a) if u in at_b]
    out = []
    for key in keys:
        va, vb = np.asarray(a[key], float), np.asarray(b[key], float)
        if key == "a2a":
            if len(va) == len(vb) and len(va):
                out.append((key, vb - va))
        elif both and len(va) == len(ids_a) and len(vb) == len(ids_b):
            ia, ib = (np.array(x, dtype=np.intp) for x in zip(*both, strict=True))
            out.append((key, vb[ib] - va[ia]))
    return out


__all__ = [
    "histogram",
    "metric_deltas",
    "row_cosine",
    "summarize",
    "top_k",
    "topk_changed",
    "topk_overlap",
]
