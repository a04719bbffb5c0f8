"""The GRPO alignment config (``mspa align configs/align/*.yaml``), validated at load.

One YAML file says which model to align, which U2A rows to train on, the reward weights, the
GRPO settings (handed to TRL's ``GRPOConfig``), where MLflow tracks the run and how the
before/after evaluation runs. Cross-field rules (``lambda_accuracy + lambda_format <= 1``,
batch divisible by the group size, bf16 not on CPU, vLLM and DeepSpeed only on GPU, the
DeepSpeed JSON parses, candidate frames only for a vision-language policy) fail at load with
the file and the field named, so a GPU job never starts only to die on a typo.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from mspa_features.align.rewards import reward_weights
from mspa_features.align.rewards.tawin import check_window
from mspa_features.config import load_yaml_model
from mspa_features.config_base import StrictModel
from mspa_features.errors import ConfigError, IncompatibleSettingsError, InvalidValueError
from mspa_features.names import experiment_name

TINY_RANDOM_LLAMA = "tiny-random-llama"


class PolicyModelConfig(StrictModel):
    """The policy to align."""

    name: str = Field(
        "smollm2",
        description="smollm2 (embedded GGUF, fp32 cache), tiny-random-llama (tests: random "
        "weights, SmolLM2 tokenizer), a local checkpoint folder, or a model id",
    )
    architecture: Literal["causal-lm", "vision-language"] = Field(
        "causal-lm",
        description="causal-lm: AutoModelForCausalLM + tokenizer; vision-language (MiMo-VL, "
        "Qwen2.5-VL): AutoModelForImageTextToText + processor",
    )
    dtype: Literal["float32", "bfloat16"] = Field("float32", description="weights dtype")
    local_files_only: bool = Field(True, description="never reach a model hub")
    attn_implementation: str | None = Field(None, description="e.g. flash_attention_2 on GPU")


class AlignDataConfig(StrictModel):
    """Training prompts built from the U2A dataset of the run config."""

    split: Literal["train", "val", "test"] = "train"
    num_candidates: int = Field(4, ge=2, le=26, description="m lettered candidates per prompt")
    max_users: int | None = Field(64, ge=1, description="first N users of the split (by id)")
    preference_composer: Literal["template", "llm"] = Field(
        "template", description="who writes the preference text in the prompt"
    )
    author_profiles: str = Field(
        "template",
        description="feature set under features/<dataset>/ whose author_profiles give the "
        "candidate descriptions and the similarity reward's embeddings (composed with the "
        "template composer when missing)",
    )
    frames_per_candidate: int = Field(
        0,
        ge=0,
        description="images per candidate in the prompt (0: text-only); needs "
        "model.architecture: vision-language",
    )


class TAWinConfig(StrictModel):
    """TAWin (WPAUC paper): reweight each group's negative advantages to the FPR window
    ``[alpha, alpha + width]`` (see :mod:`mspa_features.align.rewards.tawin`)."""

    alpha: float = Field(ge=0.0, lt=1.0, description="window start: share of negatives above it")
    width: float = Field(gt=0.0, le=1.0, description="window width d on the FPR axis")

    @model_validator(mode="after")
    def _window(self) -> TAWinConfig:
        check_window(self.alpha, self.width)  # raises with the values
        return self


class RewardsConfig(StrictModel):
    """``R = l1*accuracy + l2*format + (1 - l1 - l2)*similarity``."""

    lambda_accuracy: float = Field(0.6, ge=0.0, le=1.0, description="l1")
    lambda_format: float = Field(0.2, ge=0.0, le=1.0, description="l2")
    similarity: bool = Field(
        True,
        description="false: the ablation without R_similarity; its weight goes to accuracy "
        "(weights l1' = 1 - l2, l2)",
    )
    format_partial: bool = Field(True, description="graded format reward (see FormatReward)")
    tawin: TAWinConfig | None = Field(
        None,
        description="TAWin advantage reweighting {alpha, width} (None: plain GRPO advantages)",
    )

    @model_validator(mode="after")
    def _sum(self) -> RewardsConfig:
        reward_weights(self.lambda_accuracy, self.lambda_format)  # raises with the values
        return self

    def weights(self) -> dict[str, float]:
        """Reward name -> weight, in the order the trainer passes the reward functions."""
        acc, fmt, sim = reward_weights(self.lambda_accuracy, self.lambda_format)
        if not self.similarity:
            return {"accuracy": round(acc + sim, 12), "format": fmt}
        return {"accuracy": acc, "format": fmt, "similarity": sim}


class GRPOSettings(StrictModel):
    """What goes to TRL's ``GRPOConfig`` (same names; see its docs)."""

    learning_rate: float = Field(1e-6, gt=0.0, description="paper: 1e-6 (7B, full fine-tune)")
    beta: float = Field(0.04, ge=0.0, description="KL coefficient to the reference policy")
    num_generations: int = Field(4, ge=2, description="group size G")
    per_device_train_batch_size: int = Field(4, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_steps: int = Field(4, ge=1)
    max_completion_length: int = Field(64, ge=4)
    temperature: float = Field(1.0, gt=0.0)
    seed: int = 0
    logging_steps: int = Field(1, ge=1)
    use_cpu: bool = True
    bf16: bool = False
    gradient_checkpointing: bool = False
    torch_threads: int | None = Field(None, ge=1, description="CPU threads (None: torch default)")
    num_processes: int = Field(1, ge=1, description="data-parallel processes (accelerate launch)")
    deepspeed: Path | None = Field(None, description="DeepSpeed JSON (GPU; ZeRO-3 in the paper)")
    use_vllm: bool = False
    vllm_mode: Literal["colocate", "server"] = "colocate"
    vllm_server_host: str = "0.0.0.0"
    vllm_server_port: int = Field(8000, ge=1, le=65535)
    vllm_gpu_memory_utilization: float = Field(0.3, gt=0.0, le=1.0)
    vllm_tensor_parallel_size: int = Field(1, ge=1)
    vllm_structured_outputs: bool = Field(
        True,
        description="with use_vllm: constrain rollouts to the recommendation answer schema "
        "(Answer: one of the m letters; free strings bounded to fit max_completion_length) "
        "through TRL's vllm_structured_outputs_regex. TRL constrains rollouts only on vLLM: on "
        "CPU they stay free-form",
    )
    save_steps: int | None = Field(None, ge=1, description="intermediate checkpoints (None: end)")

    @model_validator(mode="after")
    def _cross(self) -> GRPOSettings:
        batch = self.per_device_train_batch_size * self.gradient_accumulation_steps
        if (batch * self.num_processes) % self.num_generations:
            raise IncompatibleSettingsError(
                {
                    "per_device_train_batch_size": self.per_device_train_batch_size,
                    "gradient_accumulation_steps": self.gradient_accumulation_steps,
                    "num_processes": self.num_processes,
                    "num_generations": self.num_generations,
                },
                "per_device_train_batch_size * gradient_accumulation_steps * num_processes "
                f"({batch * self.num_processes}) must be divisible by num_generations: every "
                "prompt needs a whole group",
            )
        if self.use_cpu and self.bf16:
            raise IncompatibleSettingsError(
                {"use_cpu": self.use_cpu, "bf16": self.bf16},
                "bf16 needs a GPU",
                fix="set use_cpu: false or bf16: false",
            )
        if self.use_cpu and self.use_vllm:
            raise IncompatibleSettingsError(
                {"use_cpu": self.use_cpu, "use_vllm": self.use_vllm},
                "use_vllm needs a CUDA GPU (the gpu extra)",
                fix="set use_cpu: false",
            )
        colocated = self.use_vllm and self.vllm_mode == "colocate"
        if colocated and self.num_processes % self.vllm_tensor_parallel_size:
            raise IncompatibleSettingsError(
                {
                    "vllm_mode": self.vllm_mode,
                    "num_processes": self.num_processes,
                    "vllm_tensor_parallel_size": self.vllm_tensor_parallel_size,
                },
                "colocate: num_processes must be a multiple of vllm_tensor_parallel_size",
            )
        return self


class TrackingConfig(StrictModel):
    """MLflow: SQLite in the workspace by default."""

    mlflow_uri: str | None = Field(None, description="default: sqlite:///<workspace>/mlflow.db")
    experiment: str = "mspa-align"

    @field_validator("experiment")
    @classmethod
    def _experiment(cls, v: str) -> str:
        return experiment_name(v, "tracking.experiment")


class AlignEvalConfig(StrictModel):
    """Before/after evaluation on held-out users (U2A test split)."""

    enabled: bool = True
    cohort_users: int = Field(12, ge=1, description="first N test users (by id)")
    author_descriptions: Literal["template", "model"] = Field(
        "template",
        description="who describes the candidate authors: template (as in the training "
        "prompts; cheap) or the evaluated model (an LLM call per author: slow on CPU)",
    )
    num_candidates: list[int] = Field([4, 10], description="Acc@m values")
    generations: int = Field(3, ge=1, description="Acc@m generations (mean and spread)")
    temperature: float = Field(0.7, ge=0.0)
    rec_max_new_tokens: int = Field(64, ge=4)
    composer_max_new_tokens: int = Field(64, ge=8)
    batch_size: int = Field(8, ge=1)

    @model_validator(mode="after")
    def _m(self) -> AlignEvalConfig:
        if any(m < 2 or m > 26 for m in self.num_candidates):
            raise InvalidValueError(
                "num_candidates", self.num_candidates, "a list of Acc@m values in 2..26"
            )
        return self


class AlignConfig(StrictModel):
    """One alignment run."""

    run_config: Path = Field(
        description="the run config (dataset, workspace, encoder); relative to this file"
    )
    model: PolicyModelConfig = Field(default_factory=PolicyModelConfig)
    data: AlignDataConfig = Field(default_factory=AlignDataConfig)
    rewards: RewardsConfig = Field(default_factory=RewardsConfig)
    grpo: GRPOSettings = Field(default_factory=GRPOSettings)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    eval: AlignEvalConfig = Field(default_factory=AlignEvalConfig)
    output_dir: Path | None = Field(None, description="checkpoints (default: <workspace>/models)")
    probe_prompts: int = Field(
        4, ge=1, description="training prompts the before/after reward probe samples G times"
    )

    @model_validator(mode="after")
    def _gpu_only(self) -> AlignConfig:
        if self.grpo.use_cpu and self.model.dtype == "bfloat16":
            raise IncompatibleSettingsError(
                {"model.dtype": self.model.dtype, "grpo.use_cpu": self.grpo.use_cpu},
                "model.dtype bfloat16 needs a GPU",
                fix="set grpo.use_cpu: false or model.dtype: float32",
            )
        if self.model.name in ("smollm2", TINY_RANDOM_LLAMA) and (
            self.model.architecture != "causal-lm"
        ):
            raise IncompatibleSettingsError(
                {"model.name": self.model.name, "model.architecture": self.model.architecture},
                f"model {self.model.name!r} is a causal-lm, not vision-language",
                fix="set model.architecture: causal-lm",
            )
        if self.data.frames_per_candidate and self.model.architecture != "vision-language":
            raise IncompatibleSettingsError(
                {
                    "data.frames_per_candidate": self.data.frames_per_candidate,
                    "model.architecture": self.model.architecture,
                },
                "data.frames_per_candidate needs model.architecture: vision-language, got "
                f"{self.model.architecture!r} (a causal-lm cannot see images)",
                fix="set frames_per_candidate: 0",
            )
        return self

    def rollout_regex(self) -> str | None:
        """The regex TRL's vLLM rollouts are constrained to (None: free-form rollouts).

        The recommendation prompt's answer schema with ``Answer`` narrowed to the
        ``data.num_candidates`` letters and every free string bounded so the answer closes
        within ``grpo.max_completion_length``; :func:`~mspa_features.generation.structured.
        schema_regex` writes it in ``json.dumps``'s layout, which the format reward parses.
        """
        if not (self.grpo.use_vllm and self.grpo.vllm_structured_outputs):
            return None
        from mspa_features.compose.prompts import RECOMMEND
        from mspa_features.generation.structured import bound_strings, letter_schema, schema_regex

        schema = letter_schema(RECOMMEND.answer_schema, self.data.num_candidates)
        return schema_regex(bound_strings(schema, self.grpo.max_completion_length))

    def trl_kwargs(self, output_dir: Path) -> dict[str, Any]:
        """Keyword arguments of ``trl.GRPOConfig`` (built in the trainer: TRL is heavy)."""
        g = self.grpo
        kw: dict[str, Any] = {
            "output_dir": str(output_dir),
            "learning_rate": g.learning_rate,
            "beta": g.beta,
            "num_generations": g.num_generations,
            "per_device_train_batch_size": g.per_device_train_batch_size,
            "gradient_accumulation_steps": g.gradient_accumulation_steps,
            "max_steps": g.max_steps,
            "max_completion_length": g.max_completion_length,
            "temperature": g.temperature,
            "seed": g.seed,
            "logging_steps": g.logging_steps,
            "use_cpu": g.use_cpu,
            "bf16": g.bf16,
            "gradient_checkpointing": g.gradient_checkpointing,
            "reward_weights": list(self.rewards.weights().values()),
            "save_strategy": "steps" if g.save_steps else "no",
            "report_to": ["mlflow"],
            "use_vllm": g.use_vllm,
            "remove_unused_columns": False,  # reward functions read the extra columns
        }
        if g.save_steps:
            kw["save_steps"] = g.save_steps
        if g.deepspeed is not None:
            kw["deepspeed"] = str(g.deepspeed)
        if g.use_vllm:
            kw.update(
                vllm_mode=g.vllm_mode,
                vllm_gpu_memory_utilization=g.vllm_gpu_memory_utilization,
                vllm_tensor_parallel_size=g.vllm_tensor_parallel_size,
            )
            if g.vllm_mode == "server":
                kw.update(vllm_server_host=g.vllm_server_host, vllm_server_port=g.vllm_server_port)
            regex = self.rollout_regex()
            if regex is not None:
                kw["vllm_structured_outputs_regex"] = regex
        return kw


def _check_deepspeed_json(path: Path) -> list[str]:
    """Problems with a DeepSpeed JSON (parse, ZeRO stage, bf16/fp16 settings)."""
    if not path.is_file():
        return [f"grpo.deepspeed: file not found: {path}"]
    try:
        ds = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        return [f"grpo.deepspeed: {path} is not valid JSON: {e}"]
    problems = []
    stage = ds.get("zero_optimization", {}).get("stage")
    if stage not in (0, 1, 2, 3):
        problems.append(f"grpo.deepspeed: zero_optimization.stage must be 0-3, got {stage!r}")
    if ds.get("fp16", {}).get("enabled") is True and ds.get("bf16", {}).get("enabled") is True:
        problems.append("grpo.deepspeed: fp16 and bf16 both enabled")
    return problems


def load_align_config(path: str | Path) -> AlignConfig:
    """Load and validate an alignment config; relative paths resolve against the file.

    Raises:
        ConfigError: missing file, bad YAML, an invalid field (each named) or a DeepSpeed JSON
            that does not parse.
    """
    p = Path(path)
    cfg = load_yaml_model(p, AlignConfig)
    base = p.resolve().parent
    updates: dict[str, Any] = {}
    if not cfg.run_config.is_absolute():
        updates["run_config"] = (base / cfg.run_config).resolve()
    ds_path = cfg.grpo.deepspeed
    if ds_path is not None:
        ds_path = ds_path if ds_path.is_absolute() else (base / ds_path).resolve()
        problems = _check_deepspeed_json(ds_path)
        if problems:
            raise ConfigError(p, problems)
        updates["grpo"] = cfg.grpo.model_copy(update={"deepspeed": ds_path})
    run_config = updates.get("run_config", cfg.run_config)
    if not run_config.is_file():
        raise ConfigError(p, [f"run_config: file not found: {run_config}"])
    return cfg.model_copy(update=updates)
