"""The generation interface every backend implements, and the backend registry.

A backend turns a batch of chat conversations (messages may carry images) into texts. It is
chosen by ``BackendConfig.type``: a short name from :data:`BACKENDS` or a dotted import path
``package.module:Class``. Heavy imports (torch, llama_cpp, vllm) happen inside the backend
modules, which are imported only when selected.
"""

from __future__ import annotations

import hashlib
import importlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field

from mspa_features.config_base import StrictModel
from mspa_features.errors import BackendInputError, ConfigError, InvalidValueError
from mspa_features.generation.structured import SchemaLike

# short name -> "module:Class"
BACKENDS: dict[str, str] = {
    "transformers": "mspa_features.generation.hf:TransformersBackend",
    "llamacpp": "mspa_features.generation.llamacpp:LlamaCppBackend",
    "vllm": "mspa_features.generation.vllm_backend:VLLMBackend",
    "transformers-vl": "mspa_features.generation.vlm:QwenVLBackend",
}


@dataclass(frozen=True)
class ChatMessage:
    """One chat turn. ``images`` are encoded image bytes (PNG/JPEG), in the order they appear."""

    role: Literal["system", "user", "assistant"]
    content: str
    images: tuple[bytes, ...] = ()


@dataclass(frozen=True, kw_only=True)
class GenerationConfig:
    """Decoding settings; ``temperature == 0`` is greedy (deterministic). ``seed`` is the call's
    base seed: conversation ``i`` of a ``generate`` call samples with ``sequence_seed(seed, i)``."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise InvalidValueError("max_new_tokens", self.max_new_tokens, ">= 1")
        if self.temperature < 0:
            raise InvalidValueError("temperature", self.temperature, ">= 0")
        if not 0 < self.top_p <= 1:
            raise InvalidValueError("top_p", self.top_p, "in (0, 1]")


@dataclass(frozen=True)
class Generation:
    """One output: the text (without the prompt), token counts, why it stopped, and whether
    decoding was constrained to an answer schema (``constrained``: every token was masked by the
    schema's grammar, so a ``stop`` finish means the text is a complete answer of that schema).
    """

    text: str
    n_prompt_tokens: int
    n_generated_tokens: int
    finish_reason: Literal["stop", "length"]
    constrained: bool = False


def sequence_seed(seed: int, index: int) -> int:
    """The sampling seed of conversation ``index`` in a call seeded with ``seed``.

    Every backend samples conversation ``i`` of a ``generate`` call with its own seed, so the m
    copies of one question (Acc@m's generations) are independent draws, and a conversation's
    sample never depends on which others share its batch. A SeedSequence hash (not ``seed + i``)
    keeps calls seeded 0 and 1 from sharing streams at shifted positions.

    Returns:
        An int in [0, 2**31): what torch, numpy and vLLM all accept.
    """
    import numpy as np

    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(index)]).generate_state(1)
    return int(state[0] & 0x7FFFFFFF)


class BackendConfig(StrictModel):
    """Which backend and model to load. ``model`` is an embedded name (``smollm2``), a local
    path, or a model id; ``options`` go to the backend's constructor."""

    type: str = Field("transformers", description="short name or 'module:Class'")
    model: str = Field("smollm2", description="embedded name, local path or model id")
    batch_size: int = Field(8, ge=1, description="conversations per forward batch")
    threads: int | None = Field(None, ge=1, description="CPU threads (None: all cores)")
    options: dict[str, Any] = Field(default_factory=dict)


class GenerationBackend(ABC):
    """Chat conversations in, texts out: batched, seeded, bounded, stopping at end-of-turn, and
    constrained to an answer schema while decoding when one is given.

    Sampling (``temperature > 0``): conversation ``i`` of a call draws from its own stream seeded
    with :func:`sequence_seed` ``(cfg.seed, i)``. Structured outputs: ``schema`` is a JSON schema
    (or pydantic model) for every conversation, or one per conversation (None: free-form); see
    :mod:`mspa_features.generation.structured`. Backends that cannot constrain decoding leave
    ``supports_schema`` False and return ``constrained=False``.
    """

    name: ClassVar[str]
    supports_images: ClassVar[bool] = False
    supports_schema: ClassVar[bool] = False

    def __init__(self, config: BackendConfig):
        self.config = config

    @property
    @abstractmethod
    def model_version(self) -> str:
        """Identifies the weights (and backend) so caches never mix outputs of two models."""

    @abstractmethod
    def generate(
        self,
        conversations: Sequence[Sequence[ChatMessage]],
        cfg: GenerationConfig,
        *,
        schema: SchemaLike | Sequence[SchemaLike | None] | None = None,
    ) -> list[Generation]:
        """Generate one continuation per conversation, in input order.

        Args:
            conversations: chat messages per conversation.
            cfg: decoding settings (shared by all conversations; seeds differ per position).
            schema: answer schema(s) decoding is constrained to (see the class docstring).

        Raises:
            SchemaConstraintError: a schema the backend cannot convert, or a list of schemas
                whose length differs from ``conversations``.
        """

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` costs in this backend's tokenizer (for history budgets)."""

    def close(self) -> None:
        """Release model memory (optional)."""
        return

    def _check_images(self, conversations: Sequence[Sequence[ChatMessage]]) -> None:
        if self.supports_images:
            return
        for i, conv in enumerate(conversations):
            if any(m.images for m in conv):
                raise BackendInputError(
                    self.name,
                    f"model {self.config.model!r} is text-only but the conversation holds "
                    "images; pass frames to a vision-language model (e.g. type vllm with "
                    "Qwen2.5-VL)",
                    record=f"conversation {i}",
                )


def file_fingerprint(path: str, *, block: int = 1 << 20) -> str:
    """A cheap content fingerprint of a weights file: size + first and last MiB."""
    import os

    h = hashlib.sha256()
    size = os.path.getsize(path)
    h.update(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(block))
        if size > block:
            f.seek(max(size - block, 0))
            h.update(f.read(block))
    return h.hexdigest()[:12]


def load_backend(config: BackendConfig) -> GenerationBackend:
    """Instantiate the backend named by ``config.type``.

    Raises:
        ConfigError: unknown short name or import path (valid names listed).
        MissingExtraError: the backend's optional dependency is not installed.
    """
    target = BACKENDS.get(config.type, config.type)
    if ":" not in target:
        raise ConfigError(
            "backend.type",
            [f"unknown backend {config.type!r}; valid: {sorted(BACKENDS)} or 'module:Class'"],
        )
    module_name, cls_name = target.split(":", 1)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):
            raise ConfigError("backend.type", [f"cannot import {module_name!r}"]) from e
        raise
    cls = getattr(module, cls_name, None)
    if cls is None or not (isinstance(cls, type) and issubclass(cls, GenerationBackend)):
        raise ConfigError("backend.type", [f"{target!r} is not a GenerationBackend"])
    return cls(config)


__all__ = [
    "BACKENDS",
    "BackendConfig",
    "ChatMessage",
    "Generation",
    "GenerationBackend",
    "GenerationConfig",
    "file_fingerprint",
    "load_backend",
    "sequence_seed",
]
