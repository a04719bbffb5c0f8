"""Loading any YAML config into a strict pydantic model, with errors that name file and field.

The run config (:mod:`mspa_features.config`), prompt files (:mod:`mspa_features.compose.prompts`),
ablation configs (:mod:`ranker_hooks.ablation.config`) and alignment configs all load through
:func:`load_yaml_model`. It sits below all of them and imports none of them, so a config that
refers to another kind of file (the run config naming a prompt file) never closes an import
cycle.
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from mspa_features.errors import ConfigError

__all__ = ["StrictModel", "did_you_mean", "load_yaml_model"]


class StrictModel(BaseModel):
    """Base of every model read from a file: an unknown key is an error, not ignored."""

    model_config = ConfigDict(extra="forbid")


_M = TypeVar("_M", bound=BaseModel)


def _format_loc(loc: tuple) -> str:
    return ".".join(str(x) for x in loc) or "<root>"


def _models_in(annotation: object) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (``X``, ``X | None``, ``list[X]``...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for a in typing.get_args(annotation) for m in _models_in(a)]


def did_you_mean(model: type[BaseModel], loc: tuple) -> str:
    """`` (did you mean 'x'?)`` for an unknown key at ``loc`` that is close to a field of the
    model found there (``difflib``), else ``""``."""
    models = [model]
    for part in loc[:-1]:
        if isinstance(part, int):  # a list index: the element's model is already in models
            continue
        models = [
            m
            for parent in models
            if (f := parent.model_fields.get(str(part))) is not None
            for m in _models_in(f.annotation)
        ]
    names: list[str] = []
    for m in models:
        for name, f in m.model_fields.items():
            names += [name] + ([f.alias] if f.alias else [])
    close = difflib.get_close_matches(str(loc[-1]), names, n=1, cutoff=0.6) if loc else []
    return f" (did you mean {close[0]!r}?)" if close else ""


def load_yaml_model(path: str | Path, model: type[_M]) -> _M:
    """Read a YAML mapping from ``path`` and validate it into ``model``.

    Raises:
        ConfigError: the file is missing, not YAML, not a mapping, or a field is invalid (all
            problems listed, each with its dotted field path).
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(p, ["file not found"])
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(p, [f"not valid YAML: {e}"]) from e
    if not isinstance(raw, dict):
        raise ConfigError(p, ["top level must be a mapping"])
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        problems = [
            f"{_format_loc(err['loc'])}: {err['msg']}"
            + (did_you_mean(model, err["loc"]) if err["type"] == "extra_forbidden" else "")
            for err in e.errors()
        ]
        raise ConfigError(p, problems) from e
