"""Lazy imports of optional dependencies, failing with the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from mspa_features.errors import MissingExtraError

# module -> (extra, hint)
EXTRAS: dict[str, tuple[str, str | None]] = {
    "vllm": ("gpu", "needs a CUDA GPU"),
    "deepspeed": ("gpu", None),
    "redis": ("redis", None),
    "llama_cpp": ("cpu-fast", "scripts/setup.sh builds it with portable CPU flags"),
    "pymilvus": ("vector", None),
    "tensorflow": ("tfra", "install it in a separate environment: see README 'TFRA environment'"),
    "tensorflow_recommenders_addons": (
        "tfra",
        "install it in a separate environment: see README 'TFRA environment'",
    ),
}


def require(module: str) -> ModuleType:
    """Import ``module``, or raise :class:`MissingExtraError` naming the extra that provides it.

    Raises:
        MissingExtraError: the module (or one of its own imports) is missing.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.split(".")[0]
        extra, hint = EXTRAS.get(top, ("dev", None))
        raise MissingExtraError(module, extra, hint) from e
