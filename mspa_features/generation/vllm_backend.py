"""Generation with vLLM (GPU only): batched chat, images as base64 data URLs.

vLLM is the ``gpu`` extra (``pip install 'mspa-features[gpu]'``, vLLM 0.22-0.31, the range TRL
supports); it is never installed on CPU machines. Importing this module is cheap: vllm and torch
are imported in :class:`VLLMBackend`'s constructor. :func:`to_vllm_messages` is pure so the
conversion is unit-tested without vllm, and so is :func:`sampling_kwargs`, which builds each
request's sampling parameters (its own seed, its structured-outputs constraint).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from mspa_features.errors import BackendError, BackendInputError, ConfigError, MspaError
from mspa_features.extras import require
from mspa_features.generation.base import (
    BackendConfig,
    ChatMessage,
    Generation,
    GenerationBackend,
    GenerationConfig,
    sequence_seed,
)
from mspa_features.generation.structured import (
    SchemaLike,
    check_schema,
    schemas_for,
    vllm_structured_outputs,
)

# MSPA prompts carry several frames per history; vLLM reserves memory for this many per prompt.
DEFAULT_IMAGES_PER_PROMPT = 8

_OPTIONS = {
    "tensor_parallel_size": "GPUs for tensor parallelism (default 1)",
    "gpu_memory_utilization": "fraction of GPU memory vLLM may take (default 0.9)",
    "dtype": "'auto' (default), 'bfloat16', 'float16', 'float32'",
    "limit_mm_per_prompt": f"int (images) or dict per modality (default {{'image': "
    f"{DEFAULT_IMAGES_PER_PROMPT}}})",
    "max_model_len": "context length (default: the model's)",
    "enforce_eager": "disable CUDA graphs (faster start, slower decode)",
    "mm_processor_kwargs": "e.g. {'min_pixels': ..., 'max_pixels': ...}",
}

# magic bytes -> MIME type, for the data URL
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
)


def image_mime_type(data: bytes, *, record: object = None) -> str:
    """The MIME type of encoded image bytes, from their magic number.

    Raises:
        BackendInputError: empty bytes or an unrecognised format (a ``ValueError``); ``record``
            says which image.
    """
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    head = data[:8].hex() if data else "<empty>"
    raise BackendInputError(
        "vllm",
        f"unrecognised image format (first bytes {head}); pass PNG or JPEG bytes",
        record=record,
    )


def image_data_url(data: bytes, *, record: object = None) -> str:
    """``data:<mime>;base64,<...>`` for encoded image bytes."""
    mime = image_mime_type(data, record=record)
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def to_vllm_messages(
    conv: Sequence[ChatMessage], *, conversation: int | None = None
) -> list[dict[str, Any]]:
    """ChatMessages -> OpenAI-style message dicts for ``vllm.LLM.chat``.

    A message without images keeps its text as a plain string. A message with images becomes a
    list of parts: one ``{"type": "image_url", "image_url": {"url": "data:image/...;base64,..."}}``
    per image, in order, then ``{"type": "text", "text": content}``.

    Raises:
        BackendInputError: an image whose format is not recognised; names the conversation
            (when given), the image and the message index.
    """
    where = "" if conversation is None else f"conversation {conversation}, "
    out: list[dict[str, Any]] = []
    n_images = 0
    for msg_idx, m in enumerate(conv):
        if not m.images:
            out.append({"role": m.role, "content": m.content})
            continue
        parts: list[dict[str, Any]] = []
        for raw in m.images:
            url = image_data_url(raw, record=f"{where}image {n_images} (message {msg_idx})")
            parts.append({"type": "image_url", "image_url": {"url": url}})
            n_images += 1
        parts.append({"type": "text", "text": m.content})
        out.append({"role": m.role, "content": parts})
    return out


def sampling_kwargs(
    cfg: GenerationConfig, index: int, schema: SchemaLike | None = None
) -> dict[str, Any]:
    """Keyword arguments of ``vllm.SamplingParams`` for conversation ``index`` of a call.

    Each request gets its own seed (``sequence_seed(cfg.seed, index)``), so the m copies of one
    question are independent draws; with ``schema`` the request is constrained to it
    (``structured_outputs``: the keyword arguments of ``StructuredOutputsParams``, whose JSON
    schema was checked to compile).

    Raises:
        SchemaConstraintError: the schema is not an object schema or does not compile.
    """
    kw: dict[str, Any] = {
        "max_tokens": cfg.max_new_tokens,
        "temperature": cfg.temperature,
        "top_p": cfg.top_p,
        "seed": sequence_seed(cfg.seed, index),
        "stop": list(cfg.stop) or None,
    }
    if schema is not None:
        check_schema(schema)
        kw["structured_outputs"] = vllm_structured_outputs(schema)
    return kw


def _limit_mm(value: Any) -> dict[str, int]:
    if value is None:
        return {"image": DEFAULT_IMAGES_PER_PROMPT}
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return {"image": value}
    if isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, int) and v >= 0 for k, v in value.items()
    ):
        return dict(value)
    raise ConfigError(
        "backend.options.limit_mm_per_prompt",
        [f"expected a non-negative int or a dict of them per modality, got {value!r}"],
    )


class VLLMBackend(GenerationBackend):
    """vLLM offline engine (``vllm.LLM``) behind the generation interface; images supported.

    ``config.model`` is a local folder or a model id. ``config.options``:
    ``tensor_parallel_size``, ``gpu_memory_utilization``, ``dtype``, ``limit_mm_per_prompt``
    (int = images per prompt, or a dict per modality; default 8 images), ``max_model_len``,
    ``enforce_eager``, ``mm_processor_kwargs``. vLLM schedules its own batches, so
    ``config.batch_size`` and ``config.threads`` are not used.

    Conversation ``i`` is sampled with its own seed ``sequence_seed(cfg.seed, i)``, so its
    output does not depend on which other conversations share the call and the m copies of one
    question differ. With ``schema=`` each request carries vLLM's structured-outputs parameters.

    Raises:
        ConfigError: unknown option keys or bad values.
        MissingExtraError: vllm is not installed (the ``gpu`` extra).
        MspaError: no CUDA GPU is visible.
    """

    name: ClassVar[str] = "vllm"
    supports_images: ClassVar[bool] = True
    supports_schema: ClassVar[bool] = True

    def __init__(self, config: BackendConfig):
        super().__init__(config)
        opts = dict(config.options)
        unknown = sorted(set(opts) - set(_OPTIONS))
        if unknown:
            raise ConfigError(
                "backend.options",
                [f"unknown option(s) {unknown} for {self.name}; valid: {sorted(_OPTIONS)}"],
            )
        self.limit_mm_per_prompt = _limit_mm(opts.pop("limit_mm_per_prompt", None))

        vllm = require("vllm")
        import torch

        if not torch.cuda.is_available():
            raise MspaError(
                f"vllm backend needs a CUDA GPU, but torch sees none (model {config.model!r}); "
                "on CPU use type 'transformers-vl' (images) or 'transformers'/'llamacpp' (text)"
            )
        self._vllm = vllm
        engine_kwargs: dict[str, Any] = {
            "tensor_parallel_size": opts.pop("tensor_parallel_size", 1),
            "gpu_memory_utilization": opts.pop("gpu_memory_utilization", 0.9),
            "dtype": opts.pop("dtype", "auto"),
            "limit_mm_per_prompt": self.limit_mm_per_prompt,
        }
        engine_kwargs.update(opts)  # the remaining known options, passed through unchanged
        self.llm = vllm.LLM(model=config.model, **engine_kwargs)
        self._version = self._fingerprint()

    @property
    def model_version(self) -> str:
        return self._version

    def count_tokens(self, text: str) -> int:
        return len(self.llm.get_tokenizer().encode(text, add_special_tokens=False))

    def sampling_params(
        self, cfg: GenerationConfig, schemas: Sequence[SchemaLike | None] | None = None
    ) -> list[Any]:
        """One vLLM ``SamplingParams`` per conversation (see :func:`sampling_kwargs`;
        temperature 0 is greedy in vLLM). ``schemas`` defaults to one free-form request."""
        out = []
        for i, schema in enumerate(schemas if schemas is not None else [None]):
            kw = sampling_kwargs(cfg, i, schema)
            if "structured_outputs" in kw:
                from vllm.sampling_params import StructuredOutputsParams

                kw["structured_outputs"] = StructuredOutputsParams(**kw["structured_outputs"])
            out.append(self._vllm.SamplingParams(**kw))
        return out

    def generate(
        self,
        conversations: Sequence[Sequence[ChatMessage]],
        cfg: GenerationConfig,
        *,
        schema: SchemaLike | Sequence[SchemaLike | None] | None = None,
    ) -> list[Generation]:
        """All conversations in one ``LLM.chat`` call; outputs in input order.

        Raises:
            ValueError: a conversation has more images than ``limit_mm_per_prompt`` allows, or
                an image in an unrecognised format (names the conversation and image index).
            SchemaConstraintError: a schema that does not compile, or a schema list whose length
                is not the number of conversations.
        """
        if self.llm is None:
            raise BackendError(self.name, "backend was closed")
        if not conversations:
            return []
        schemas = schemas_for(schema, len(conversations))
        limit = self.limit_mm_per_prompt.get("image", 0)
        messages = []
        for i, conv in enumerate(conversations):
            n = sum(len(m.images) for m in conv)
            if n > limit:
                raise BackendInputError(
                    self.name,
                    f"{n} images but limit_mm_per_prompt allows {limit}; raise "
                    "backend.options.limit_mm_per_prompt",
                    record=f"conversation {i}",
                )
            messages.append(to_vllm_messages(conv, conversation=i))
        outputs = self.llm.chat(
            messages, self.sampling_params(cfg, schemas), use_tqdm=False, add_generation_prompt=True
        )
        return [
            self._to_generation(o, s is not None) for o, s in zip(outputs, schemas, strict=True)
        ]

    def close(self) -> None:
        import gc

        self.llm = None
        gc.collect()
        try:
            import torch

            torch.cuda.empty_cache()
        except (ImportError, RuntimeError):
            pass

    @staticmethod
    def _to_generation(request_output: Any, constrained: bool = False) -> Generation:
        completion = request_output.outputs[0]
        return Generation(
            text=completion.text,
            n_prompt_tokens=len(request_output.prompt_token_ids or []),
            n_generated_tokens=len(completion.token_ids),
            finish_reason="length" if completion.finish_reason == "length" else "stop",
            constrained=constrained,
        )

    def _fingerprint(self) -> str:
        folder = Path(self.config.model).expanduser()
        if (folder / "config.json").is_file():
            from mspa_features.generation.vlm import folder_fingerprint

            return f"{self.name}:{folder_fingerprint(folder)}"
        return f"{self.name}:{self.config.model}"


__all__ = [
    "VLLMBackend",
    "image_data_url",
    "image_mime_type",
    "sampling_kwargs",
    "to_vllm_messages",
]
