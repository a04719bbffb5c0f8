"""Loading the policy to align: the embedded SmolLM2, a tiny random Llama, or a checkpoint."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

from mspa_features.align.config import TINY_RANDOM_LLAMA, PolicyModelConfig
from mspa_features.generation.base import file_fingerprint
from mspa_features.models import SMOLLM2, smollm2_gguf


def smollm2_tokenizer() -> Any:
    """SmolLM2's tokenizer, read from the GGUF once (~30 s) and cached beside the fp32 model."""
    from transformers import AutoTokenizer

    from mspa_features.generation.hf import model_cache_dir

    g = smollm2_gguf()
    fp = file_fingerprint(str(g.path))
    for folder in (
        model_cache_dir() / f"{SMOLLM2}-{fp}",
        model_cache_dir() / f"{SMOLLM2}-tok-{fp}",
    ):
        if (folder / "tokenizer_config.json").exists():
            return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(g.folder, gguf_file=g.filename)
    cached = model_cache_dir() / f"{SMOLLM2}-tok-{fp}"
    tmp = cached.with_name(f".{cached.name}.{uuid.uuid4().hex}")
    try:
        tok.save_pretrained(tmp)
        tmp.rename(cached)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another process won the race
    return tok


def tiny_random_llama(tokenizer: Any, *, seed: int = 0) -> Any:
    """A 2-layer, 32-wide Llama with random weights (SmolLM2's vocabulary): proves the
    plumbing, not quality."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        # Wider than the 0.02 default: at 0.02 greedy decoding repeats one newline forever, and
        # the compose path would see empty texts; at 0.2 it writes (random) words.
        initializer_range=0.2,
    )
    return LlamaForCausalLM(cfg)


def load_policy(cfg: PolicyModelConfig, *, seed: int = 0) -> tuple[Any, Any, str]:
    """``(model, tokenizer, base_name)``; the tokenizer is left-padded with a pad token and
    ``model.config._name_or_path`` is a folder the base can be reloaded from.

    ``base_name`` starts the aligned model's version id (``<base>-grpo-<hash>``).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = torch.bfloat16 if cfg.dtype == "bfloat16" else torch.float32
    from mspa_features.generation.hf import model_cache_dir

    # TRL builds the reference policy from ``config._name_or_path``: every policy must have a
    # folder it can be reloaded from (and the evaluation reloads the base from it too).
    if cfg.name == SMOLLM2:
        from mspa_features.generation.hf import _load_embedded_smollm2

        tok, model, fp = _load_embedded_smollm2()
        model = model.to(dtype)
        model.config._name_or_path = str(model_cache_dir() / f"{SMOLLM2}-{fp}")
        base = "smollm2-135m"
    elif cfg.name == TINY_RANDOM_LLAMA:
        folder = model_cache_dir() / f"{TINY_RANDOM_LLAMA}-v2-s{seed}"
        if not (folder / "config.json").exists():
            tok = smollm2_tokenizer()
            tmp = folder.with_name(f".{folder.name}.{uuid.uuid4().hex}")
            try:
                tiny_random_llama(tok, seed=seed).save_pretrained(tmp)
                tok.save_pretrained(tmp)
                tmp.rename(folder)
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)  # another process won the race
        tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=dtype)
        base = TINY_RANDOM_LLAMA
    else:
        kw: dict[str, Any] = {"local_files_only": cfg.local_files_only, "dtype": dtype}
        if cfg.attn_implementation:
            kw["attn_implementation"] = cfg.attn_implementation
        if cfg.architecture == "vision-language":
            from transformers import AutoModelForImageTextToText, AutoProcessor

            tok = AutoProcessor.from_pretrained(cfg.name, local_files_only=cfg.local_files_only)
            model = AutoModelForImageTextToText.from_pretrained(cfg.name, **kw)
        else:
            tok = AutoTokenizer.from_pretrained(cfg.name, local_files_only=cfg.local_files_only)
            model = AutoModelForCausalLM.from_pretrained(cfg.name, **kw)
        base = Path(cfg.name.rstrip("/")).name
    text_tok = getattr(tok, "tokenizer", tok)  # a processor wraps the tokenizer
    text_tok.padding_side = "left"  # decoder-only generation
    if text_tok.pad_token is None:
        text_tok.pad_token = text_tok.eos_token
    return model, tok, base
