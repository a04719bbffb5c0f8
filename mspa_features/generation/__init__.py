"""Generation backends behind one interface (chat messages with optional images -> texts)."""

from mspa_features.generation.base import (
    BackendConfig,
    ChatMessage,
    Generation,
    GenerationBackend,
    GenerationConfig,
    load_backend,
)

__all__ = [
    "BackendConfig",
    "ChatMessage",
    "Generation",
    "GenerationBackend",
    "GenerationConfig",
    "load_backend",
]
