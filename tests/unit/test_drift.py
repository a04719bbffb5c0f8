"""Drift statistics on cases with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mspa_features.evaluation.drift import (
    histogram,
    metric_deltas,
    row_cosine,
    summarize,
    top_k,
    topk_changed,
    topk_overlap,
)


def test_row_cosine_known_angles_and_zero_rows() -> None:
    # Same direction (scaled), orthogonal, opposite, 60 degrees, a zero row.
    a = [[1, 0], [1, 0], [0, 2], [1, 0], [0, 0]]
    b = [[3, 0], [0, 5], [0, -1], [0.5, math.sqrt(3) / 2], [1, 1]]
    c = row_cosine(a, b)
    np.testing.assert_allclose(c[:4], [1.0, 0.0, -1.0, 0.5], rtol=0, atol=1e-12)
    assert math.isnan(c[4])


def test_row_cosine_refuses_different_spaces() -> None:
    with pytest.raises(ValueError, match="same space"):
        row_cosine(np.ones((2, 3)), np.ones((2, 4)))


def test_top_k_exact_order_and_ties() -> None:
    items = np.array([[1, 0], [0, 1], [1, 1], [-1, 0], [1, 0]], dtype=float)
    # Query along x: cosines 1, 0, 0.707, -1, 1 -> items 0 and 4 tie (lower index first), 2, 1.
    # Query along y: 0, 1, 0.707, 0, 0 -> 1, 2, then the zeros in index order 0, 3, 4.
    got = top_k([[2, 0], [0, 3]], items, k=3)
    assert got.tolist() == [[0, 4, 2], [1, 2, 0]]
    assert top_k([[1, 0]], items, k=10).shape == (1, 5)  # k past the catalogue


def test_topk_changed_and_overlap() -> None:
    a = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    b = [[3, 2, 1], [4, 5, 0], [0, 10, 11]]  # same set reordered; 2 of 3; 0 of 3
    assert topk_changed(a, b).tolist() == [False, True, True]
    np.testing.assert_allclose(topk_overlap(a, b), [1.0, 2 / 3, 0.0], rtol=0, atol=1e-12)


def test_summarize_and_histogram() -> None:
    v = [0.0, 0.25, 0.5, 0.75, 1.0, float("nan")]
    s = summarize(v)
    assert s["n"] == 5 and s["mean"] == pytest.approx(0.5) and s["median"] == pytest.approx(0.5)
    assert s["min"] == 0.0 and s["max"] == 1.0
    assert s["std"] == pytest.approx(math.sqrt(0.125))  # population std of 0, .25, .5, .75, 1
    assert s["p05"] == pytest.approx(0.05) and s["p95"] == pytest.approx(0.95)
    assert summarize([float("nan")])["n"] == 0
    h = histogram(v, bins=4, value_range=(0.0, 1.0))
    assert h["edges"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert h["counts"] == [1, 1, 1, 2]  # the last bin is closed: 1.0 falls in it


def test_metric_deltas_shared_numeric_only() -> None:
    a = {"acc@4": 0.25, "recall@10": 0.1, "decoding": "free", "ok": True, "only_a": 1.0}
    b = {"acc@4": 0.5, "recall@10": 0.1, "decoding": "constrained", "ok": False}
    assert metric_deltas(a, b) == {
        "acc@4": {"a": 0.25, "b": 0.5, "delta": 0.25},
        "recall@10": {"a": 0.1, "b": 0.1, "delta": 0.0},
    }


def test_handoff_config_is_recognised_by_its_checkpoint_meta(tmp_path) -> None:
    from mspa_features.cli.drift import aligned_version, handoff_drift

    ckpt = tmp_path / "tiny-grpo-abc"
    ckpt.mkdir()
    config = ckpt / "run_config.yaml"
    config.write_text("name: x\n")
    assert aligned_version(config) is None  # no mspa_align.json beside it
    (ckpt / "mspa_align.json").write_text('{"model_version": "tiny-grpo-abc"}')
    assert aligned_version(config) == "tiny-grpo-abc"
    other = ckpt / "other.yaml"
    other.write_text("name: x\n")
    assert aligned_version(other) is None
    # Another set registered alone: no report, and nothing is opened (cfg is never read).
    assert handoff_drift(None, config, ["template"]) is None  # type: ignore[arg-type]


def test_metric_deltas_carry_a_paired_ci_over_the_users_both_sides_evaluated() -> None:
    from mspa_features.evaluation.drift import metric_deltas

    # u1..u4 in different orders; u9 only on side a. Per user, b - a is +1 for u1 and u2 and 0
    # for u3 and u4, so the mean delta over the 4 shared users is 0.5; the bootstrap interval
    # of a mean of {0, 1} values lies in [0, 1].
    a = {
        "acc@4": 0.25,
        "per_unit": {"user_id": ["u1", "u2", "u3", "u4", "u9"], "acc@4": [0, 0, 1, 0, 1]},
    }
    b = {
        "acc@4": 0.75,
        "per_unit": {"user_id": ["u4", "u3", "u2", "u1"], "acc@4": [0, 1, 1, 1]},
    }
    d = metric_deltas(a, b, n_boot=500, seed=1)["acc@4"]
    assert d["delta"] == 0.5 and d["n"] == 4 and d["trustworthy"] is False
    assert 0.0 <= d["ci_low"] <= 0.5 <= d["ci_high"] <= 1.0

    # identical per-user values: the paired interval is exactly [0, 0]
    same = metric_deltas(a, a)["acc@4"]
    assert (same["delta"], same["ci_low"], same["ci_high"]) == (0.0, 0.0, 0.0)
    # rows without per-unit values (older results) keep the plain delta
    plain = metric_deltas({"acc@4": 0.25}, {"acc@4": 0.5})["acc@4"]
    assert plain == {"a": 0.25, "b": 0.5, "delta": 0.25}
