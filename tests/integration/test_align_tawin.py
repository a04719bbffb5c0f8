"""TAWin on the tiny CPU GRPO run: the weights reach the loss and training finishes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

# The tiny synthetic workspace, the align YAML and the warm start of the trainer's own tests.
from test_align_trainer import _align_yaml, _warm_start, tiny_workspace  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_tawin_reweights_the_advantages_the_loss_sees(
    tiny_workspace: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mlflow
    import torch
    from trl import GRPOTrainer

    from mspa_features.align.config import load_align_config
    from mspa_features.align.rewards import tawin
    from mspa_features.align.tawin_trainer import TAWinGRPOTrainer
    from mspa_features.align.trainer import prepare_data, train
    from mspa_features.config import load_config

    torch.set_num_threads(1)
    plain = load_align_config(_align_yaml(tiny_workspace, tmp_path))
    ds, _, _ = prepare_data(plain, load_config(plain.run_config))
    # A policy that answers in format with a random letter: groups hold both right and wrong
    # answers, so there are negatives to reweight.
    warm = _warm_start(ds.rows.head(4).to_dict(orient="records"), tmp_path / "warm")
    grpo = {
        "learning_rate": 1e-3,
        "num_generations": 4,
        "per_device_train_batch_size": 8,
        "max_steps": 2,
        "max_completion_length": 32,
        "torch_threads": 1,
    }
    rewards = {"lambda_accuracy": 0.6, "lambda_format": 0.2, "tawin": {"alpha": 0.0, "width": 0.5}}
    cfg = load_align_config(
        _align_yaml(tiny_workspace, tmp_path, model={"name": str(warm)}, grpo=grpo, rewards=rewards)
    )

    # Spies: what TAWin computed, and what advantages the loss received.
    computed: list[tuple[np.ndarray, np.ndarray]] = []
    seen: list[np.ndarray] = []
    real_weights = tawin.tawin_weights

    def weights_spy(adv, scores, **kw):
        w = real_weights(adv, scores, **kw)
        computed.append((np.asarray(adv, dtype=np.float64).reshape(-1), w.reshape(-1)))
        return w

    def loss_spy(self, model, inputs):
        seen.append(inputs["advantages"].detach().double().cpu().numpy().reshape(-1))
        return GRPOTrainer._compute_loss(self, model, inputs)

    monkeypatch.setattr(tawin, "tawin_weights", weights_spy)
    monkeypatch.setattr(TAWinGRPOTrainer, "_compute_loss", loss_spy)

    res = train(cfg)

    # Training finished and saved; TAWin is part of the model_version hash.
    assert Path(res.checkpoint, "config.json").exists()
    assert res.model_version.startswith("warm-grpo-")
    assert len(computed) == 2 and len(seen) == 2  # one generation and one loss per step
    # The loss saw exactly the reweighted advantages (TRL shuffles rows within a batch).
    expected = np.sort(np.concatenate([a * w for a, w in computed]))
    np.testing.assert_allclose(np.sort(np.concatenate(seen)), expected, rtol=1e-6, atol=1e-6)
    # Weights: positives 1; negatives outside [0, 0.5] of the FPR axis got 0 and the
    # negatives' weights average 1 per group (window width 0.5: weights in {0, 1, 2} for
    # 1-4 negatives or fractional at a straddled edge, all within [0, 2]).
    for adv, w in computed:
        assert np.all(w[adv >= 0] == 1.0)
        assert np.all((w >= 0) & (w <= 2.0 + 1e-9))
    all_w = np.concatenate([w for _, w in computed])
    all_adv = np.concatenate([a for a, _ in computed])
    assert np.any(all_w[all_adv < 0] == 0.0), (all_adv, all_w)  # the window cut something

    # The per-step TAWin metrics reached log_history and MLflow.
    steps = [h for h in res.log_history if "tawin/advantage_change" in h]
    assert len(steps) == 2 and max(h["tawin/advantage_change"] for h in steps) > 0
    client = mlflow.tracking.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.get_run(res.mlflow_run_id)
    assert {"tawin/negatives_in_window", "tawin/max_weight"} <= set(run.data.metrics)
    assert run.data.params["mspa.tawin"] == "0.0,0.5"
    again = load_align_config(
        _align_yaml(tiny_workspace, tmp_path, model={"name": str(warm)}, grpo=grpo)
    )
    from mspa_features.align.trainer import model_version_id

    assert (
        model_version_id("warm", again, load_config(again.run_config), ds.fingerprint)
        != res.model_version
    )
