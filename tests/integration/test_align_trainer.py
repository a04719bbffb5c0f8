"""GRPO alignment end to end on a tiny workspace: train, track, save, compose with the result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def tiny_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic run (40 users, 24 authors) with its U2A/A2A sets: returns the run config."""
    from mspa_features.config import Workspace, load_config
    from mspa_features.pipeline import build_eval_sets, prepare_data

    root = tmp_path_factory.mktemp("align")
    run = {
        "name": "tiny",
        "workspace": str(root / "ws"),
        "seed": 0,
        "data": {
            "source": "synthetic",
            "synthetic": {"n_users": 40, "n_authors": 24, "days": 10, "frames_per_author": 1},
        },
        "u2a": {"num_candidates": [4], "min_positives": 3},
        "a2a": {"num_triples": 50},
        "composer": {"backend": {"type": "transformers", "model": "smollm2", "batch_size": 8}},
    }
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(run))
    cfg = load_config(path)
    ws = Workspace(cfg.workspace)
    prepare_data(cfg, ws)
    build_eval_sets(cfg, ws)
    return path


def _align_yaml(run_config: Path, tmp_path: Path, **over) -> Path:
    cfg = {
        "run_config": str(run_config),
        "model": {"name": "tiny-random-llama"},
        "data": {"split": "train", "num_candidates": 4, "max_users": 4},
        "rewards": {"lambda_accuracy": 0.6, "lambda_format": 0.2},
        "grpo": {
            "learning_rate": 1e-3,
            "num_generations": 2,
            "per_device_train_batch_size": 2,
            "max_steps": 2,
            "max_completion_length": 8,
            "torch_threads": 1,
        },
        "tracking": {"mlflow_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
        "eval": {"enabled": False},
        "output_dir": str(tmp_path / "models"),
        **over,
    }
    p = tmp_path / "align.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_train_tracks_saves_and_composes(tiny_workspace: Path, tmp_path: Path) -> None:
    import mlflow
    import torch

    from mspa_features.align.config import load_align_config
    from mspa_features.align.trainer import CHECKPOINT_META, train

    torch.set_num_threads(1)
    cfg = load_align_config(_align_yaml(tiny_workspace, tmp_path))
    res = train(cfg)

    # The checkpoint carries the model_version id and its metadata.
    ckpt = Path(res.checkpoint)
    assert res.model_version.startswith("tiny-random-llama-grpo-")
    assert ckpt.name == res.model_version
    meta = json.loads((ckpt / CHECKPOINT_META).read_text())
    assert meta["model_version"] == res.model_version
    assert (ckpt / "config.json").exists() and (ckpt / "tokenizer_config.json").exists()

    # TRL's reward components and KL reached MLflow, with the reward probe.
    client = mlflow.tracking.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.get_run(res.mlflow_run_id)
    keys = set(run.data.metrics)
    for k in ("rewards/accuracy/mean", "rewards/format/mean", "rewards/similarity/mean", "kl"):
        assert k in keys, sorted(keys)
    assert "probe_before/reward" in keys and "probe_after/reward" in keys
    assert run.data.tags["mspa.model_version"] == res.model_version
    assert res.reward_weights == pytest.approx({"accuracy": 0.6, "format": 0.2, "similarity": 0.2})

    # Same config and data -> same id (the id is a hash, not a timestamp).
    from mspa_features.align.trainer import model_version_id
    from mspa_features.config import load_config

    run_cfg = load_config(cfg.run_config)
    again = model_version_id("tiny-random-llama", cfg, run_cfg, meta["rows_fingerprint"])
    assert again == res.model_version

    # Hand-off: the run config written beside the checkpoint composes preferences through the
    # normal path, tagged with the aligned model's version.
    from mspa_features.align.trainer import COMPOSE_CONFIG
    from mspa_features.compose_jobs import compose_users

    derived = load_config(ckpt / COMPOSE_CONFIG)
    assert derived.composer.backend.model == str(ckpt)
    assert derived.workspace == run_cfg.workspace.resolve()
    derived = derived.model_copy(
        update={"composer": derived.composer.model_copy(update={"max_new_tokens": 8})}
    )
    out = compose_users(derived, "llm", limit=3)
    versions = set(out.table.column("model_version").to_pylist())
    assert out.table.num_rows + out.quarantine.num_rows == 3
    assert out.table.num_rows > 0, out.quarantine.to_pylist()
    assert all(res.model_version in v for v in versions), versions
