"""The shipped DeepSpeed JSON initializes and steps on CPU (``DS_ACCELERATOR=cpu``) at ZeRO-3,
and at ZeRO-2 with only the stage changed.

deepspeed is in the ``gpu`` extra; scripts/test.sh installs it (``MSPA_WITH_DEEPSPEED=1``, ~30 s)
and the test skips cleanly where it is missing. DeepSpeed's CPU backend would compile its
shared-memory all-reduce op on first use (~3.5 min on 2 cores); that op only serves single-node
CPU inference collectives, never ZeRO, so the test turns it off and the step takes seconds.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Read when deepspeed picks its accelerator (first use): CPU unless the caller chose otherwise.
os.environ.setdefault("DS_ACCELERATOR", "cpu")
deepspeed = pytest.importorskip(
    "deepspeed", reason="deepspeed (gpu extra) not installed: CPU compile of shm_comm ~3.5 min"
)

REPO = Path(__file__).resolve().parents[2]


def _concrete(ds: dict) -> dict:
    """Fill the ``auto`` values transformers would fill from GRPOConfig (CPU: no bf16)."""
    out = json.loads(json.dumps(ds))
    out["bf16"] = {"enabled": False}
    out.update(
        train_batch_size=2,
        train_micro_batch_size_per_gpu=2,
        gradient_accumulation_steps=1,
        gradient_clipping=1.0,
        optimizer={"type": "AdamW", "params": {"lr": 1e-2, "torch_adam": True}},
    )
    z = out["zero_optimization"]
    for k, v in list(z.items()):
        if v == "auto":
            z[k] = 0 if k == "stage3_param_persistence_threshold" else 1_000_000
    return out


def _for_stage(ds: dict, stage: int) -> dict:
    """The same config at ZeRO ``stage`` (stage-3-only keys dropped below stage 3)."""
    z = dict(ds["zero_optimization"], stage=stage)
    if stage < 3:
        z = {k: v for k, v in z.items() if not k.startswith("stage3_")}
    return {**ds, "zero_optimization": z}


@pytest.mark.parametrize("stage", [2, 3])
def test_shipped_zero_json_initializes_and_steps_on_cpu(monkeypatch, stage: int) -> None:
    import importlib

    import torch

    torch.set_num_threads(1)
    # by module path: the package attribute deepspeed.comm.torch is the torch module itself
    ds_torch_comm = importlib.import_module("deepspeed.comm.torch")
    monkeypatch.setattr(ds_torch_comm, "build_shm_op", lambda: None)
    for k, v in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29513", "RANK": "0",
                 "LOCAL_RANK": "0", "WORLD_SIZE": "1"}.items():  # fmt: skip
        monkeypatch.setenv(k, v)
    ds = json.loads((REPO / "configs" / "align" / "ds_zero3.json").read_text())
    assert ds["zero_optimization"]["stage"] == 3
    ds = _for_stage(ds, stage)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    deepspeed.init_distributed(dist_backend="gloo")
    engine, *_ = deepspeed.initialize(
        model=model, model_parameters=model.parameters(), config=_concrete(ds)
    )
    assert engine.zero_optimization_stage() == stage
    first = engine.module[0].weight
    with deepspeed.zero.GatheredParameters([first], enabled=stage == 3):
        before = first.detach().clone()  # (16, 8); at stage 3 gathered from the shards
    x = torch.randn(2, 8)
    loss = engine(x).pow(2).mean()
    engine.backward(loss)
    engine.step()
    with deepspeed.zero.GatheredParameters([first], enabled=stage == 3):
        after = first.detach().clone()
    assert before.shape == (16, 8)
    assert not torch.equal(before, after), f"ZeRO-{stage} step did not update the weights"
