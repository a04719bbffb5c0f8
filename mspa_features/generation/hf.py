"""The ``transformers`` backend: the CPU default and the reference the fast backend is measured
against.

The embedded SmolLM2-135M-Instruct ships as GGUF; transformers dequantises it to fp32 on load
(~40 s). The dequantised model is saved once to a local cache (``MSPA_MODEL_CACHE``, default
``~/.cache/mspa-features/models``) so later loads take seconds. Batches are left-padded, as
decoder-only generation requires.

Structured outputs: with ``schema=`` each row's tokens are masked by its own llguidance matcher
(:class:`~mspa_features.generation.structured.GrammarMaskProcessor`). Sampling: each row draws
from its own generator seeded with ``sequence_seed(cfg.seed, i)``
(:class:`~mspa_features.generation.structured.SeededSampler`), so a conversation's sample does
not depend on its batch, and the m copies of one question are independent draws.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mspa_features.generation.base import (
    BackendConfig,
    ChatMessage,
    Generation,
    GenerationBackend,
    GenerationConfig,
    file_fingerprint,
    sequence_seed,
)
from mspa_features.generation.structured import (
    LLGuidanceGrammars,
    SchemaLike,
    SeededSampler,
    schemas_for,
)
from mspa_features.models import SMOLLM2, smollm2_gguf


def model_cache_dir() -> Path:
    """Where converted embedded models are kept between runs."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mspa-features"
    return Path(os.environ.get("MSPA_MODEL_CACHE", default / "models"))


def _load_embedded_smollm2() -> tuple[Any, Any, str]:
    """Tokenizer, model and version of the embedded SmolLM2, via the fp32 cache."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    g = smollm2_gguf()
    fp = file_fingerprint(str(g.path))
    cached = model_cache_dir() / f"{SMOLLM2}-{fp}"
    if (cached / "config.json").exists():
        tok = AutoTokenizer.from_pretrained(cached, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(cached, local_files_only=True)
        return tok, model, fp
    tok = AutoTokenizer.from_pretrained(g.folder, gguf_file=g.filename)
    model = AutoModelForCausalLM.from_pretrained(g.folder, gguf_file=g.filename)
    # save_pretrained refuses a GGUF-loaded model until the quantizer marks are removed.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = cached.with_name(f".{cached.name}.{uuid.uuid4().hex}")
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        tmp.rename(cached)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another process won the race, or disk full
    return tok, model, fp


class TokenizerBackend(GenerationBackend):
    """What the transformers-based backends share: a Hugging Face tokenizer and model, the
    llguidance grammars that constrain their decoding, the model version and token counts.

    Subclasses set ``tokenizer``, ``model``, ``end_token_ids`` (EOS and the chat template's end
    of turn) and ``_version`` in their ``__init__``.
    """

    tokenizer: Any
    model: Any
    end_token_ids: list[int]
    _version: str
    _grammars: LLGuidanceGrammars | None = None

    def grammars(self) -> LLGuidanceGrammars:
        """The llguidance grammars for this tokenizer (built on first use, ~1 s)."""
        if self._grammars is None:
            vocab = self.model.config.get_text_config().vocab_size
            self._grammars = LLGuidanceGrammars(self.tokenizer, vocab, self.end_token_ids)
        return self._grammars

    @property
    def model_version(self) -> str:
        return self._version

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])


class TransformersBackend(TokenizerBackend):
    """HF transformers ``generate`` on CPU (or any device torch has), batched and left-padded."""

    name = "transformers"
    supports_schema = True

    def __init__(self, config: BackendConfig):
        super().__init__(config)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if config.threads:
            torch.set_num_threads(config.threads)
        if config.model == SMOLLM2:
            self.tokenizer, self.model, fp = _load_embedded_smollm2()
        else:
            local = bool(config.options.get("local_files_only", True))
            self.tokenizer = AutoTokenizer.from_pretrained(config.model, local_files_only=local)
            self.model = AutoModelForCausalLM.from_pretrained(config.model, local_files_only=local)
            cfg_file = Path(config.model) / "config.json"
            fp = file_fingerprint(str(cfg_file)) if cfg_file.exists() else config.model
        self.model.eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # End of turn: the chat template's end token as well as EOS.
        stop_ids = {self.tokenizer.eos_token_id}
        for tok in ("<|im_end|>", "<|eot_id|>", "<|end|>"):
            tid = self.tokenizer.convert_tokens_to_ids(tok)
            if isinstance(tid, int) and tid != self.tokenizer.unk_token_id:
                stop_ids.add(tid)
        self.end_token_ids = sorted(i for i in stop_ids if i is not None)
        self._version = f"transformers:{Path(config.model).name}:{fp}"

    def render(self, conversation: Sequence[ChatMessage]) -> str:
        """The prompt string the model sees (chat template + generation prompt)."""
        msgs = [{"role": m.role, "content": m.content} for m in conversation]
        return self.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)

    def generate(
        self,
        conversations: Sequence[Sequence[ChatMessage]],
        cfg: GenerationConfig,
        *,
        schema: SchemaLike | Sequence[SchemaLike | None] | None = None,
    ) -> list[Generation]:
        """Generate one continuation per conversation, ``config.batch_size`` per forward batch.

        Raises:
            SchemaConstraintError: llguidance refuses a schema, or a schema list's length is not
                the number of conversations.
        """
        import torch
        from transformers import LogitsProcessorList

        self._check_images(conversations)
        schemas = schemas_for(schema, len(conversations))
        out: list[Generation] = []
        bs = self.config.batch_size
        for start in range(0, len(conversations), bs):
            chunk = [self.render(c) for c in conversations[start : start + bs]]
            rows = schemas[start : start + bs]
            enc = self.tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
            processors = LogitsProcessorList()
            if any(s is not None for s in rows):
                processors.append(self.grammars().processor(rows))
            if cfg.temperature > 0:
                seeds = [sequence_seed(cfg.seed, start + j) for j in range(len(chunk))]
                processors.append(SeededSampler(seeds, cfg.temperature, cfg.top_p))
            # Always greedy over the processed scores: the seeded sampler (when sampling) has
            # already left one token per row. The model's default sampling settings are off.
            kwargs: dict[str, Any] = {
                "max_new_tokens": cfg.max_new_tokens,
                "eos_token_id": self.end_token_ids,
                "pad_token_id": self.tokenizer.pad_token_id,
                "do_sample": False,
                "temperature": None,
                "top_p": None,
                "top_k": None,
                "logits_processor": processors,
            }
            with torch.inference_mode():
                seqs = self.model.generate(**enc, **kwargs)
            new = seqs[:, enc["input_ids"].shape[1] :]  # (batch, new_tokens)
            for i in range(new.shape[0]):
                ids = new[i].tolist()
                n_prompt = int(enc["attention_mask"][i].sum())
                finish = "length"
                for k, t in enumerate(ids):
                    if t in self.end_token_ids:
                        ids, finish = ids[:k], "stop"
                        break
                text = self.tokenizer.decode(ids, skip_special_tokens=True)
                text, stopped = _apply_stop(text, cfg.stop)
                out.append(
                    Generation(
                        text=text,
                        n_prompt_tokens=n_prompt,
                        n_generated_tokens=len(ids) + (1 if finish == "stop" else 0),
                        finish_reason="stop" if stopped else finish,
                        constrained=rows[i] is not None,
                    )
                )
        return out

    def close(self) -> None:
        del self.model


def _apply_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` at the first stop string."""
    cut = min((i for s in stops if (i := text.find(s)) >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
