"""TAWin weights on hand-computed groups, and the ``rewards.tawin`` config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from mspa_features.align.config import load_align_config
from mspa_features.align.rewards.tawin import tawin_weights
from mspa_features.errors import ConfigError


def test_weights_of_a_hand_computed_group() -> None:
    # Group of G=6 (binary reward 1,0,0,0,0,1 -> advantages +1 / -0.5): negatives are
    # completions 1..4, n = 4. Scores (mean log-prob): ranked best first the negatives are
    # 2 (-0.5), 4 (-1.5), 1 (-2.0), 3 (-3.0), covering FPR cells [0, .25), [.25, .5),
    # [.5, .75), [.75, 1). Window [alpha, alpha + width] = [0.1, 0.4]:
    #   2: overlap [0.1, 0.25] = 0.15 -> w = 4 * 0.15 / 0.3 = 2
    #   4: overlap [0.25, 0.4] = 0.15 -> w = 2
    #   1, 3: no overlap -> w = 0
    # Positives 0 and 5 keep 1. The negatives' weights sum to n = 4.
    adv = [[1.0, -0.5, -0.5, -0.5, -0.5, 1.0]]
    scores = [[-1.0, -2.0, -0.5, -3.0, -1.5, -0.2]]
    w = tawin_weights(adv, scores, alpha=0.1, width=0.3)
    np.testing.assert_allclose(w, [[1.0, 0.0, 2.0, 0.0, 2.0, 1.0]], rtol=0, atol=1e-12)
    # Binary reward: the reweighted advantages still sum to zero over the group.
    assert float((np.asarray(adv) * w).sum()) == pytest.approx(0.0, abs=1e-12)


def test_window_edges_inside_a_cell_and_several_groups() -> None:
    # Group 0: 3 negatives (0, 1, 3) ranked 3 (-0.1), 0 (-0.2), 1 (-0.9): cells [0, 1/3),
    # [1/3, 2/3), [2/3, 1). Window [0.5, 1.0], width 0.5:
    #   3: 0; 0: overlap [0.5, 2/3] = 1/6 -> 3 * (1/6) / 0.5 = 1; 1: overlap 1/3 -> 2.
    # Group 1: no negative (all advantages 0) -> all ones.
    # Group 2: one negative (2), cell [0, 1): overlap 0.5 -> 1 * 0.5 / 0.5 = 1.
    adv = [[-1.0, -1.0, 2.0, -0.5], [0.0, 0.0, 0.0, 0.0], [1.0, 0.5, -1.5, 0.0]]
    scores = [[-0.2, -0.9, -5.0, -0.1], [0.0, 0.0, 0.0, 0.0], [-1.0, -1.0, -1.0, -1.0]]
    w = tawin_weights(adv, scores, alpha=0.5, width=0.5)
    np.testing.assert_allclose(
        w, [[1.0, 2.0, 1.0, 0.0], [1.0] * 4, [1.0, 1.0, 1.0, 1.0]], rtol=0, atol=1e-12
    )


def test_full_window_is_plain_grpo_and_ties_rank_the_earlier_first() -> None:
    adv = np.array([[-1.0, -1.0, 1.0, 1.0]])
    assert np.array_equal(
        tawin_weights(adv, np.zeros((1, 4)), alpha=0.0, width=1.0), np.ones((1, 4))
    )
    # Tied scores: completion 0 ranks first ([0, .5)); window [0, 0.5] keeps only it: w = 2.
    w = tawin_weights(adv, np.zeros((1, 4)), alpha=0.0, width=0.5)
    np.testing.assert_allclose(w, [[2.0, 0.0, 1.0, 1.0]], rtol=0, atol=1e-12)


@pytest.mark.parametrize(("alpha", "width"), [(-0.1, 0.2), (0.0, 0.0), (0.8, 0.3)])
def test_bad_windows_are_refused(alpha: float, width: float) -> None:
    with pytest.raises(ValueError, match="alpha"):
        tawin_weights([[-1.0, 1.0]], [[0.0, 0.0]], alpha=alpha, width=width)


def test_shapes_must_match() -> None:
    with pytest.raises(ValueError, match="one shape"):
        tawin_weights([[-1.0, 1.0]], [[0.0, 0.0, 0.0]], alpha=0.0, width=0.5)


def _write(tmp_path: Path, rewards: dict) -> Path:
    (tmp_path / "run.yaml").write_text("name: x\ndata: {source: movielens}\n")
    p = tmp_path / "align.yaml"
    p.write_text(yaml.safe_dump({"run_config": "run.yaml", "rewards": rewards}))
    return p


def test_config_off_by_default_and_parsed(tmp_path: Path) -> None:
    assert load_align_config(_write(tmp_path, {})).rewards.tawin is None
    cfg = load_align_config(_write(tmp_path, {"tawin": {"alpha": 0.1, "width": 0.3}}))
    assert (cfg.rewards.tawin.alpha, cfg.rewards.tawin.width) == (0.1, 0.3)


def test_config_window_past_one_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_align_config(_write(tmp_path, {"tawin": {"alpha": 0.8, "width": 0.3}}))
    msg = str(e.value)
    assert "align.yaml" in msg and "rewards.tawin" in msg and "alpha + width <= 1" in msg
