"""Alignment configs: the shipped CPU and GPU configs validate; mistakes name file and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mspa_features.align.config import load_align_config
from mspa_features.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
ALIGN = REPO / "configs" / "align"
GPU_CONFIGS = ["mimo_vl_7b_zero3.yaml", "qwen25vl_7b_zero3_server.yaml"]


def _write(tmp_path: Path, raw: dict, name: str = "align.yaml") -> Path:
    run = tmp_path / "run.yaml"
    run.write_text("name: x\ndata: {source: movielens}\n")
    raw = {"run_config": "run.yaml", **raw}
    p = tmp_path / name
    p.write_text(yaml.safe_dump(raw))
    return p


@pytest.mark.parametrize("name", ["smollm2_cpu.yaml", "smollm2_cpu_no_similarity.yaml"])
def test_cpu_configs_load_and_build_a_trl_config(name: str, tmp_path: Path) -> None:
    from trl import GRPOConfig

    cfg = load_align_config(ALIGN / name)
    assert cfg.run_config == (REPO / "configs" / "movielens.yaml").resolve()
    args = GRPOConfig(**cfg.trl_kwargs(tmp_path))
    assert args.use_cpu and not args.bf16 and not args.gradient_checkpointing
    assert args.num_generations == cfg.grpo.num_generations and args.beta == cfg.grpo.beta
    assert sum(args.reward_weights) == pytest.approx(1.0)
    assert args.report_to == ["mlflow"]


def test_ablation_drops_similarity_and_moves_its_weight() -> None:
    full = load_align_config(ALIGN / "smollm2_cpu.yaml").rewards.weights()
    ablated = load_align_config(ALIGN / "smollm2_cpu_no_similarity.yaml").rewards.weights()
    assert list(full) == ["accuracy", "format", "similarity"]
    assert list(ablated) == ["accuracy", "format"]
    assert ablated["accuracy"] == pytest.approx(full["accuracy"] + full["similarity"])


@pytest.mark.parametrize("name", GPU_CONFIGS)
def test_gpu_configs_validate_without_a_gpu(name: str, tmp_path: Path) -> None:
    cfg = load_align_config(ALIGN / name)
    g = cfg.grpo
    assert g.use_vllm and not g.use_cpu and g.bf16 and cfg.model.dtype == "bfloat16"
    assert g.deepspeed == (ALIGN / "ds_zero3.json").resolve()
    ds = json.loads(g.deepspeed.read_text())
    assert ds["zero_optimization"]["stage"] == 3
    kw = cfg.trl_kwargs(tmp_path)
    assert kw["deepspeed"] == str(g.deepspeed) and kw["vllm_mode"] == g.vllm_mode
    global_batch = g.per_device_train_batch_size * g.gradient_accumulation_steps * g.num_processes
    assert global_batch % g.num_generations == 0
    if g.vllm_mode == "server":
        assert kw["vllm_server_port"] == g.vllm_server_port


def test_accelerate_config_points_at_the_shipped_zero3_json() -> None:
    acc = yaml.safe_load((ALIGN / "accelerate_zero3.yaml").read_text())
    assert acc["distributed_type"] == "DEEPSPEED" and acc["mixed_precision"] == "bf16"
    ds_file = REPO / acc["deepspeed_config"]["deepspeed_config_file"]
    assert ds_file.resolve() == (ALIGN / "ds_zero3.json").resolve()
    colocate = load_align_config(ALIGN / "mimo_vl_7b_zero3.yaml")
    assert acc["num_processes"] == colocate.grpo.num_processes


def test_launch_script_checks_the_config_first() -> None:
    script = (REPO / "scripts" / "align_gpu.sh").read_text()
    assert 'align "$CONFIG" --check' in script
    assert 'accelerate" launch --config_file' in script


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        ({"rewards": {"lambda_accuracy": 0.9, "lambda_format": 0.3}}, "rewards", "<= 1"),
        ({"rewards": {"lambda_acc": 0.5}}, "rewards.lambda_acc", "Extra inputs"),
        (
            {"grpo": {"per_device_train_batch_size": 3, "num_generations": 2}},
            "grpo",
            "divisible by num_generations",
        ),
        ({"grpo": {"bf16": True}}, "grpo", "bf16 needs a GPU"),
        ({"grpo": {"use_vllm": True}}, "grpo", "use_vllm needs a CUDA GPU"),
        ({"model": {"dtype": "bfloat16"}}, "<root>", "needs a GPU"),
        ({"data": {"num_candidates": 30}}, "data.num_candidates", "less than or equal"),
        ({"grpo": {"vllm_mode": "remote"}}, "grpo.vllm_mode", "colocate"),
        (
            {"data": {"frames_per_candidate": 2}},
            "data.frames_per_candidate",
            "needs model.architecture: vision-language, got 'causal-lm'",
        ),
        ({"data": {"frames_per_candidate": -1}}, "data.frames_per_candidate", "greater than"),
    ],
)
def test_bad_fields_are_named(tmp_path: Path, raw: dict, field: str, words: str) -> None:
    p = _write(tmp_path, raw)
    with pytest.raises(ConfigError) as e:
        load_align_config(p)
    msg = str(e.value)
    assert str(p) in msg and field in msg and words in msg


def test_candidate_frames_load_for_a_vision_language_policy(tmp_path: Path) -> None:
    vlm = {"name": "some/vlm-folder", "architecture": "vision-language"}
    cfg = load_align_config(_write(tmp_path, {"model": vlm, "data": {"frames_per_candidate": 2}}))
    assert cfg.data.frames_per_candidate == 2
    assert load_align_config(_write(tmp_path, {})).data.frames_per_candidate == 0  # text-only


def test_deepspeed_json_is_checked_at_load(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    gpu = {"use_cpu": False, "bf16": True, "deepspeed": "bad.json"}
    with pytest.raises(ConfigError, match="grpo.deepspeed: .*not valid JSON"):
        load_align_config(_write(tmp_path, {"grpo": gpu}))
    (tmp_path / "stage.json").write_text('{"zero_optimization": {"stage": 5}}')
    with pytest.raises(ConfigError, match="stage must be 0-3"):
        load_align_config(_write(tmp_path, {"grpo": {**gpu, "deepspeed": "stage.json"}}))
    with pytest.raises(ConfigError, match="file not found"):
        load_align_config(_write(tmp_path, {"grpo": {**gpu, "deepspeed": "missing.json"}}))


def test_missing_run_config_is_named(tmp_path: Path) -> None:
    p = tmp_path / "a.yaml"
    p.write_text("run_config: nowhere.yaml\n")
    with pytest.raises(ConfigError, match="run_config: file not found"):
        load_align_config(p)


def test_cli_check_validates_without_training(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mspa_features.cli import app

    runner = CliRunner()
    ok = runner.invoke(app, ["align", "--config", str(ALIGN / GPU_CONFIGS[0]), "--check"])
    assert ok.exit_code == 0, ok.output
    assert "config ok" in ok.output and "deepspeed=ds_zero3.json" in ok.output
    bad = _write(tmp_path, {"grpo": {"beta": -1}})
    res = runner.invoke(app, ["align", "--config", str(bad), "--check"])
    assert res.exit_code != 0 and isinstance(res.exception, ConfigError)
    assert "grpo.beta" in str(res.exception)


@pytest.mark.parametrize("name", GPU_CONFIGS)
def test_vllm_rollouts_are_constrained_to_the_letter_schema(name: str, tmp_path: Path) -> None:
    import dataclasses
    import re

    from trl import GRPOConfig

    cfg = load_align_config(ALIGN / name)
    kw = cfg.trl_kwargs(tmp_path)
    assert "vllm_structured_outputs_regex" in {f.name for f in dataclasses.fields(GRPOConfig)}
    rx = re.compile(kw["vllm_structured_outputs_regex"])
    m = cfg.data.num_candidates
    last = chr(ord("A") + m - 1)
    good = json.dumps({"User Preference": "x", "Recommendation Reason": "y", "Answer": last})
    assert rx.fullmatch(good)
    beyond = good.replace(f'"Answer": "{last}"', f'"Answer": "{chr(ord(last) + 1)}"')
    assert not rx.fullmatch(beyond)
    assert not rx.fullmatch(good.replace(f'"{last}"', '"I think A"'))
    off = cfg.model_copy(
        update={"grpo": cfg.grpo.model_copy(update={"vllm_structured_outputs": False})}
    )
    assert "vllm_structured_outputs_regex" not in off.trl_kwargs(tmp_path)


def test_cpu_rollouts_stay_free_form(tmp_path: Path) -> None:
    cfg = load_align_config(ALIGN / "smollm2_cpu.yaml")
    assert cfg.rollout_regex() is None
    assert "vllm_structured_outputs_regex" not in cfg.trl_kwargs(tmp_path)


def test_structured_rollouts_flag_is_validated(tmp_path: Path) -> None:
    p = _write(tmp_path, {"grpo": {"vllm_structured_outputs": "sometimes"}})
    with pytest.raises(ConfigError, match="grpo.vllm_structured_outputs"):
        load_align_config(p)
