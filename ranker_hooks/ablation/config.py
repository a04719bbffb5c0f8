"""An ablation's config (``mspa ablate FILE``): variants, temporal split, seeds, ranker backend,
MLflow; its loader; and the ranker backend it names (a short name or a ``module:Class`` path).
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator, model_validator

from mspa_features.config import RunConfig, Workspace
from mspa_features.config_base import StrictModel, load_yaml_model
from mspa_features.errors import (
    ConfigError,
    IncompatibleSettingsError,
    InvalidTypeError,
    InvalidValueError,
    UnknownNameError,
)
from mspa_features.names import experiment_name, feature_set_name, folder_name
from ranker_hooks.ablation.split import TemporalSplit
from ranker_hooks.ablation.variants import BUILTIN_VARIANTS

if TYPE_CHECKING:
    from ranker_hooks.rankers.base import Ranker

__all__ = [
    "RANKERS",
    "AblationConfig",
    "BootstrapSection",
    "InjectionSection",
    "MlflowSection",
    "RankerSection",
    "TaskSpec",
    "default_tracking_uri",
    "load_ablation_config",
    "make_ranker",
    "ranker_class",
]

# Short names of ranker backends; anything else is a dotted ``module:Class`` path.
RANKERS = {
    "torch": "ranker_hooks.rankers.torch_ranker:TorchRanker",
    "tfra": "ranker_hooks.rankers.tfra_ranker:TfraRanker",
}


class RankerSection(StrictModel):
    """The ranker backend and its hyper-parameters (the backend's own config validates them)."""

    type: str = Field("torch", description=f"one of {list(RANKERS)} or 'module:Class'")
    params: dict[str, Any] = Field(default_factory=dict, description="backend keyword arguments")


_TASK_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


class TaskSpec(StrictModel):
    """One binary task of a multi-task ranker: a head of its own on the shared bottom.

    A row is a positive of the task when its ``action`` is one of ``positive``; with
    ``positive`` null the task is the interactions contract's ``label`` column.
    """

    name: str = Field(description="task name (metric keys '<name>/auc'): [a-z][a-z0-9_]{0,31}")
    positive: list[str] | None = Field(
        None,
        min_length=1,
        description="actions whose rows are positives (e.g. [click, tip]); null: the label column",
    )
    weight: float = Field(1.0, gt=0, description="weight of the task's BCE in the summed loss")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _TASK_NAME.fullmatch(v):
            raise InvalidValueError("tasks[].name", v, "[a-z][a-z0-9_]{0,31}")
        return v

    @field_validator("positive")
    @classmethod
    def _actions(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and (len(set(v)) != len(v) or any(not a.strip() for a in v)):
            raise InvalidValueError("tasks[].positive", v, "distinct non-empty action names")
        return v


class InjectionSection(StrictModel):
    """Settings of the hashed text-token features."""

    max_tokens: int = Field(32, ge=1, description="tokens kept per text feature")
    token_buckets: int = Field(4096, ge=2, description="hash space of text tokens")


class BootstrapSection(StrictModel):
    n_boot: int = Field(1000, ge=10, description="bootstrap resamples of users")
    seed: int = 0


class MlflowSection(StrictModel):
    tracking_uri: str | None = Field(
        None, description="default: sqlite:///<workspace>/mlflow.db; any MLflow URI"
    )
    experiment: str = "mspa-ablation"

    @field_validator("experiment")
    @classmethod
    def _experiment(cls, v: str) -> str:
        return experiment_name(v, "mlflow.experiment")


class AblationConfig(StrictModel):
    """One ablation (``mspa ablate FILE``)."""

    name: str = Field("ais", description="ablation name; the run folder is <name>-<UTC time>")
    run_config: Path | None = Field(
        None, description="the run config YAML (dataset, workspace), relative to this file"
    )
    feature_set: str = Field("template", description="feature set of the AIS variants")
    llm_feature_set: str = Field("llm", description="feature set of the llm_text variant")
    variants: list[str] = Field(
        default_factory=lambda: list(BUILTIN_VARIANTS),
        description=f"built-in variants to run, from {list(BUILTIN_VARIANTS)}",
    )
    compare_feature_sets: list[str] = Field(
        default_factory=list,
        description=(
            "more feature sets whose AIS variants run beside feature_set's, named "
            "<variant>@<set> (the 'all' row of llm_feature_set is the llm_text variant)"
        ),
    )
    users: list[str] | None = Field(
        None,
        min_length=1,
        description="only these users' impressions, for training and evaluation (a user "
        "sample every compared feature set covers; null: every user)",
    )
    authors: list[str] | None = Field(
        None,
        min_length=1,
        description="only impressions of these authors (the sample's authors; null: all)",
    )
    split: TemporalSplit
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    threads: int = Field(1, ge=1, description="torch intra-op threads of the ranker")
    max_train_rows: int | None = Field(
        None, ge=10, description="keep only the latest N training rows (null: all)"
    )
    read_chunk_rows: int = Field(
        25_000, ge=1, description="entity rows per Feast historical read (bounds peak memory)"
    )
    ranker: RankerSection = Field(default_factory=RankerSection)
    tasks: list[TaskSpec] = Field(
        default_factory=list,
        description="binary tasks, one ranker head each (empty: one task, the label column, "
        "and results exactly as before); metrics are reported per task",
    )
    injection: InjectionSection = Field(default_factory=InjectionSection)
    bootstrap: BootstrapSection = Field(default_factory=BootstrapSection)
    mlflow: MlflowSection = Field(default_factory=MlflowSection)
    repo_path: Path = Field(Path("feature_repo"), description="Feast repo folder (yaml files)")

    @field_validator("variants")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        unknown = [x for x in v if x not in BUILTIN_VARIANTS]
        if unknown:
            raise UnknownNameError("variant", unknown[0], BUILTIN_VARIANTS, hint="built-in")
        if len(set(v)) != len(v):
            repeated = sorted({x for x in v if v.count(x) > 1})
            raise InvalidValueError("variants", v, "distinct names", hint=f"repeats {repeated}")
        return v

    # Names reach folders, MLflow and Feast object names: a bad one fails at load, named.
    @field_validator("name")
    @classmethod
    def _folder(cls, v: str) -> str:
        return folder_name(v, "name")

    @field_validator("feature_set", "llm_feature_set")
    @classmethod
    def _feature_set(cls, v: str) -> str:
        return feature_set_name(v)

    @model_validator(mode="after")
    def _compared_sets(self) -> AblationConfig:
        for fs in getattr(self, "compare_feature_sets", None) or []:
            feature_set_name(fs, "compare_feature_sets entry")
        return self

    @model_validator(mode="after")
    def _tasks(self) -> AblationConfig:
        names = [t.name for t in getattr(self, "tasks", None) or []]
        if len(set(names)) != len(names):
            raise InvalidValueError("tasks", names, "distinct task names")
        return self

    def task_weights(self) -> tuple[float, ...]:
        """The per-task loss weights handed to the ranker (empty: the single-task default)."""
        return tuple(t.weight for t in self.tasks)


def load_ablation_config(path: str | Path) -> AblationConfig:
    """Load and validate an ablation config; ``run_config`` is resolved against its folder.

    Raises:
        ConfigError: missing file, bad YAML, an invalid field (named), or a ranker backend
            that refuses its ``params``.
    """
    p = Path(path)
    cfg = load_yaml_model(p, AblationConfig)
    if cfg.run_config is not None and not cfg.run_config.is_absolute():
        cfg.run_config = (p.parent / cfg.run_config).resolve()
    try:
        make_ranker(cfg, seed=cfg.seeds[0])
    except (TypeError, ValueError, ImportError) as e:
        raise ConfigError(p, [f"ranker: {e}"]) from e
    return cfg


def ranker_class(type_: str) -> type[Ranker]:
    """The backend class for a short name or ``module:Class`` path.

    Raises:
        ValueError: unknown short name, or a path that does not name a Ranker subclass.
    """
    from ranker_hooks.rankers.base import Ranker

    target = RANKERS.get(type_, type_)
    if ":" not in target:
        raise UnknownNameError("ranker type", type_, [*RANKERS, "'module:Class'"])
    module, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module), attr, None)
    if not (isinstance(cls, type) and issubclass(cls, Ranker)):
        raise InvalidTypeError(f"ranker type {type_!r}", cls, "a Ranker subclass")
    return cls


def make_ranker(cfg: AblationConfig, seed: int) -> Ranker:
    """A fresh ranker of the configured backend, seeded; torch gets ``threads`` by default."""
    cls = ranker_class(cfg.ranker.type)
    params = dict(cfg.ranker.params)
    if cfg.ranker.type == "torch":
        params.setdefault("threads", cfg.threads)
    if len(cfg.tasks) > 1:
        if "task_weights" in params:
            raise IncompatibleSettingsError(
                {"tasks": [t.name for t in cfg.tasks], "ranker.params.task_weights": params},
                "the task weights come from tasks[].weight",
                fix="drop ranker.params.task_weights",
            )
        params["task_weights"] = cfg.task_weights()
    return cls(**params, seed=seed)


def default_tracking_uri(run_cfg: RunConfig) -> str:
    """``sqlite:///<workspace>/mlflow.db`` (a path holding ``?`` or ``%`` escaped)."""
    from mspa_features.mlflow_store import workspace_tracking_uri

    return workspace_tracking_uri(Workspace(run_cfg.workspace).root)
