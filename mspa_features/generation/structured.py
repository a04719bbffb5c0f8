"""Structured outputs: the answer schemas every generation backend enforces while decoding.

A prompt's answer is a JSON schema (:attr:`mspa_features.compose.prompts.Prompt.answer_schema`, or a
pydantic model class turned into one). ``GenerationBackend.generate(..., schema=...)`` hands it
to the backend, which masks every token that would leave the schema:

* ``llamacpp``: llama.cpp's own grammar sampler, on GBNF that llama.cpp's JSON-schema converter
  (``llama_cpp.llama_grammar.json_schema_to_gbnf``) writes; one grammar state per sequence;
* ``transformers`` / ``transformers-vl``: llguidance (one of vLLM's structured-output engines;
  no dependencies, where xgrammar pulls ~1 GB of triton onto CPU machines) through
  :class:`GrammarMaskProcessor`, one matcher per row of the batch;
* ``vllm``: ``SamplingParams(structured_outputs=StructuredOutputsParams(json=schema))``
  (:func:`vllm_structured_outputs`), one per request;
* GRPO rollouts on vLLM: TRL's ``vllm_structured_outputs_regex`` from :func:`schema_regex`.

What lives here is pure (no torch, no llama_cpp): schema normalisation and narrowing
(:func:`letter_schema`, :func:`bound_strings`), a canonical key, a regex for flat schemas, a
conformance check used by tests and benchmarks, and the per-row sampling logits processors the
transformers backends share (torch and llguidance are imported inside them).
"""

from __future__ import annotations

import copy
import json
import math
import re
import string
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from mspa_features.errors import IncompatibleSettingsError, SchemaConstraintError

LETTERS = string.ascii_uppercase

SchemaLike = Mapping[str, Any] | type[BaseModel]
"""A JSON schema (a mapping) or a pydantic model class (its ``model_json_schema()``)."""


# --------------------------------------------------------------------------- schemas


def to_json_schema(schema: SchemaLike) -> dict[str, Any]:
    """The JSON schema of ``schema`` as a fresh dict; the answer must be a JSON object.

    Raises:
        SchemaConstraintError: not a mapping or pydantic model, or not an object schema.
    """
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        out = schema.model_json_schema()
    elif isinstance(schema, Mapping):
        out = copy.deepcopy(dict(schema))
    else:
        raise SchemaConstraintError(
            f"expected a JSON schema mapping or a pydantic model, got {schema!r}"
        )
    if out.get("type") != "object" or not isinstance(out.get("properties"), Mapping):
        raise SchemaConstraintError(
            f"an answer schema must be an object with properties, got type {out.get('type')!r}"
        )
    return out


def schema_key(schema: SchemaLike) -> str:
    """A canonical JSON string of the schema: the cache key of compiled grammars and part of
    the composer's cache key. Property order is kept (it is the order the answer is written)."""
    return json.dumps(to_json_schema(schema), separators=(",", ":"), ensure_ascii=False)


def letter_schema(schema: SchemaLike, n_candidates: int, *, key: str = "Answer") -> dict[str, Any]:
    """``schema`` with ``key`` narrowed to an enum of exactly the lettered candidates.

    Args:
        schema: the recommendation prompt's answer schema (must have the property ``key``).
        n_candidates: m, the number of lettered candidates (2..26): ``A`` .. the m-th letter.

    Raises:
        SchemaConstraintError: ``key`` is not a property, or m is out of range.
    """
    if not 1 <= n_candidates <= len(LETTERS):
        raise SchemaConstraintError(f"n_candidates must be in 1..26, got {n_candidates}")
    out = to_json_schema(schema)
    if key not in out["properties"]:
        raise SchemaConstraintError(
            f"the answer schema has no {key!r} property; properties: {list(out['properties'])}"
        )
    out["properties"] = dict(out["properties"])
    out["properties"][key] = {"type": "string", "enum": list(LETTERS[:n_candidates])}
    return out


def _free_strings(schema: Mapping[str, Any]) -> list[str]:
    """Properties that are strings without an enum, const or maxLength."""
    return [
        k
        for k, p in schema["properties"].items()
        if isinstance(p, Mapping)
        and p.get("type") == "string"
        and not {"enum", "const", "maxLength", "pattern"} & set(p)
    ]


def bound_strings(
    schema: SchemaLike, max_new_tokens: int, *, chars_per_token: float = 3.0, floor: int = 16
) -> dict[str, Any]:
    """``schema`` with a ``maxLength`` on every free string property, so that the whole answer
    fits in ``max_new_tokens`` and decoding ends by closing the JSON rather than being cut, and
    a ``minLength`` of 1 on every required string, so that no answer passes the grammar with an
    empty value (the parser counts an empty required value as missing: a failed answer).

    The character budget ``chars_per_token * max_new_tokens`` minus the JSON skeleton (keys,
    quotes, separators) is split evenly over the free strings. SmolLM2's tokenizer averages
    about four characters per English token; three leaves room for short tokens. Properties
    that already bound themselves (enum, const, maxLength, pattern) keep their bounds; a
    required string without enum, const, pattern or minLength gets ``minLength: 1``.

    Raises:
        SchemaConstraintError: see :func:`to_json_schema`; ``max_new_tokens`` < 1.
    """
    if max_new_tokens < 1:
        raise SchemaConstraintError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    out = to_json_schema(schema)
    free = _free_strings(out)
    per_field = 0
    if free:
        skeleton = len(json.dumps({k: "" for k in out["properties"]}))
        budget = int(chars_per_token * max_new_tokens) - skeleton
        per_field = max(floor, budget // len(free))
    required = set(out.get("required") or ())
    props = {}
    for k, p in out["properties"].items():
        if k in free:
            p = {**p, "maxLength": per_field}
        if (
            k in required
            and isinstance(p, Mapping)
            and p.get("type") == "string"
            and not {"enum", "const", "pattern", "minLength"} & set(p)
        ):
            p = {**p, "minLength": 1}
        props[k] = p
    out["properties"] = props
    return out


def max_answer_chars(schema: SchemaLike) -> int | None:
    """Upper bound on the compact JSON answer's length in characters (None: unbounded).

    A token is at least one character, so this also bounds the tokens a constrained answer
    takes (plus the grammar's optional spaces, at most one per separator).
    """
    out = to_json_schema(schema)
    total = 2 + 4 * len(out["properties"])  # braces; ", " and ": " per property
    for k, p in out["properties"].items():
        total += len(json.dumps(k))
        if not isinstance(p, Mapping) or p.get("type") != "string":
            return None
        if "enum" in p:
            total += max(len(json.dumps(v)) for v in p["enum"])
        elif "maxLength" in p:
            total += 2 + 6 * int(p["maxLength"])  # worst case: every char a \uXXXX escape
        else:
            return None
    return total


# --------------------------------------------------------------------------- regex (vLLM / TRL)

# One JSON string character: anything but a quote, backslash or control character, or an escape.
_JSON_CHAR = r'(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})'


def schema_regex(schema: SchemaLike) -> str:
    """A regex matching the compact JSON answers of a flat object-of-strings schema, properties
    in schema order, separated as ``json.dumps`` does (``", "``, ``": "``).

    For engines that take a regex rather than a schema: TRL's ``vllm_structured_outputs_regex``
    constrains GRPO rollouts on vLLM with one regex for the whole run.

    Raises:
        SchemaConstraintError: a property that is not a string (nested objects, numbers), or
            an optional property (a regex of optional keys in fixed order is not worth it).
    """
    out = to_json_schema(schema)
    props = out["properties"]
    required = out.get("required", list(props))
    if set(required) != set(props):
        raise SchemaConstraintError(
            f"schema_regex needs every property required; optional: "
            f"{sorted(set(props) - set(required))}"
        )
    parts = []
    for k, p in props.items():
        if not isinstance(p, Mapping) or p.get("type") != "string":
            raise SchemaConstraintError(
                f"schema_regex handles string properties only; {k!r} is {p!r}"
            )
        if "enum" in p:
            value = "(?:" + "|".join(re.escape(json.dumps(v)) for v in p["enum"]) + ")"
        else:
            lo, hi = int(p.get("minLength", 0)), p.get("maxLength")
            reps = f"{{{lo},{int(hi)}}}" if hi is not None else (f"{{{lo},}}" if lo else "*")
            value = f'"{_JSON_CHAR}{reps}"'
        parts.append(re.escape(json.dumps(k)) + ": " + value)
    return r"\{" + ", ".join(parts) + r"\}"


def check_schema(schema: SchemaLike) -> dict[str, Any]:
    """The schema as a dict, after checking that a structured-generation engine compiles it
    (llguidance, one of vLLM's engines; no tokenizer or GPU needed).

    Raises:
        SchemaConstraintError: not an object schema, or the grammar does not compile.
    """
    import llguidance

    out = to_json_schema(schema)
    try:
        grammar = llguidance.LLMatcher.grammar_from_json_schema(json.dumps(out))
    except ValueError as e:
        raise SchemaConstraintError(f"answer schema is not valid JSON schema input: {e}") from e
    problem = llguidance.LLMatcher.validate_grammar(grammar)
    if problem:
        raise SchemaConstraintError(f"answer schema does not compile to a grammar: {problem}")
    return out


def vllm_structured_outputs(schema: SchemaLike) -> dict[str, Any]:
    """Keyword arguments of vLLM's ``StructuredOutputsParams`` for ``schema`` (vLLM >= 0.12:
    ``SamplingParams(structured_outputs=StructuredOutputsParams(**these))``)."""
    return {"json": to_json_schema(schema)}


# --------------------------------------------------------------------------- conformance


def conforms(text: str, schema: SchemaLike) -> bool:
    """Whether ``text`` is exactly one JSON object valid under ``schema`` (the subset prompts
    use: string, enum, const, min/maxLength, required, additionalProperties: false). For tests
    and benchmarks; never raises."""
    try:
        out = to_json_schema(schema)
        data = json.loads(text)
    except (SchemaConstraintError, json.JSONDecodeError, TypeError, RecursionError):
        return False
    if not isinstance(data, dict):
        return False
    props = out["properties"]
    if any(k not in data for k in out.get("required", ())):
        return False
    if out.get("additionalProperties") is False and any(k not in props for k in data):
        return False
    for k, v in data.items():
        p = props.get(k)
        if not isinstance(p, Mapping):
            continue
        if p.get("type") == "string" and not isinstance(v, str):
            return False
        if "enum" in p and v not in p["enum"]:
            return False
        if "const" in p and v != p["const"]:
            return False
        if isinstance(v, str):
            if len(v) < int(p.get("minLength", 0)):
                return False
            if "maxLength" in p and len(v) > int(p["maxLength"]):
                return False
    return True


def schemas_for(
    schema: SchemaLike | Sequence[SchemaLike | None] | None, n: int
) -> list[dict[str, Any] | None]:
    """One JSON schema (or None: free-form) per conversation.

    Args:
        schema: None (all free-form), one schema for all, or a sequence of ``n`` (each a schema
            or None).

    Raises:
        SchemaConstraintError: a sequence of the wrong length, or an invalid schema.
    """
    if schema is None:
        return [None] * n
    if isinstance(schema, Mapping | type):
        one = to_json_schema(schema)
        return [one] * n
    items = list(schema)
    if len(items) != n:
        raise SchemaConstraintError(f"{len(items)} schemas for {n} conversations")
    cache: dict[int, dict[str, Any]] = {}
    out: list[dict[str, Any] | None] = []
    for s in items:
        if s is None:
            out.append(None)
        else:
            out.append(cache.setdefault(id(s), to_json_schema(s)))
    return out


# --------------------------------------------------------------------------- transformers

# llguidance JSON compile options: the layout of json.dumps (", " and ": "), nothing else.
JSON_LAYOUT = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


class GrammarMaskProcessor:
    """A transformers ``LogitsProcessor`` that masks, row by row, the tokens that would leave
    each row's JSON schema (llguidance ``LLMatcher``; rows without a schema are untouched).

    Each call first feeds every active matcher the token its row chose at the previous step,
    then has the matcher write its allowed-token bitmask (one bit per token, 32 per int32) and
    sets the scores of disallowed tokens to -inf (scores: (batch, vocab)). A row whose matcher
    consumed an end-of-sequence token is finished and left alone (``generate`` pads it).

    The bitmask is applied with numpy rather than ``llguidance.torch``'s kernel, which is
    ``torch.compile``-d (a C++ toolchain and seconds of compilation on first use on CPU).

    Args:
        matchers: one fresh llguidance ``LLMatcher`` or None per row.
        vocab_size: the model's logits width (may exceed the tokenizer's length).
        stop_ids: end-of-turn token ids (a row that chose one is finished).
    """

    def __init__(self, matchers: Sequence[Any | None], vocab_size: int, stop_ids: Sequence[int]):
        import numpy as np

        self.matchers = list(matchers)
        self.stop_ids = frozenset(int(t) for t in stop_ids)
        self.vocab_size = vocab_size
        self.done = [m is None for m in self.matchers]
        self.bitmask = np.zeros((len(self.matchers), (vocab_size + 31) // 32), dtype=np.int32)
        self._started = False

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import numpy as np
        import torch

        rows = []
        for i, m in enumerate(self.matchers):
            if self.done[i]:
                continue
            if self._started:
                tok = int(input_ids[i, -1])
                if tok in self.stop_ids:  # the row ended its turn: generate pads it from now
                    self.done[i] = True
                    continue
                if not m.consume_token(tok):
                    # Cannot happen while this processor masks the row; leave the row
                    # free-form rather than crash a batch, and let the parser judge the text.
                    self.done[i] = True
                    continue
            # A complete answer leaves the matcher stopped: its mask then allows only the
            # end-of-turn tokens.
            row = self.bitmask[i]
            m.unsafe_compute_mask_ptr(row.ctypes.data, row.nbytes)
            rows.append(i)
        self._started = True
        if rows:
            # bit j of int32 word k allows token 32k + j (little-endian words and bits)
            packed = self.bitmask[rows].view(np.uint8)  # (rows, 4 * words)
            bits = np.unpackbits(packed, axis=1, bitorder="little")[:, : scores.shape[-1]]
            allowed = torch.from_numpy(bits.astype(bool)).to(scores.device)
            idx = torch.tensor(rows, device=scores.device)
            scores[idx] = scores[idx].masked_fill(~allowed, -math.inf)
        return scores


class LLGuidanceGrammars:
    """Compiled answer grammars for one transformers tokenizer: the llguidance tokenizer is
    built once (~1 s) and each schema's grammar once; every row then gets a copy of a matcher.

    Args:
        tokenizer: a fast transformers tokenizer.
        vocab_size: the model's logits width.
        stop_ids: token ids that end a turn (all allowed once the answer is complete).

    """

    def __init__(self, tokenizer: Any, vocab_size: int, stop_ids: Sequence[int]):
        import llguidance.hf

        self.tokenizer = llguidance.hf.from_tokenizer(
            tokenizer, n_vocab=vocab_size, eos_token=list(stop_ids)
        )
        self.vocab_size = vocab_size
        self.stop_ids = tuple(stop_ids)
        self._templates: dict[str, Any] = {}

    def matcher(self, schema: SchemaLike) -> Any:
        """A fresh matcher (its own parse state) for ``schema``.

        Raises:
            SchemaConstraintError: llguidance refuses the schema.
        """
        import llguidance

        key = schema_key(schema)
        if key not in self._templates:
            try:
                # Compact separators, no free whitespace: json.dumps's layout, which
                # schema_regex matches and llama.cpp's converter nearly (one optional space).
                grammar = llguidance.LLMatcher.grammar_from_json_schema(key, overrides=JSON_LAYOUT)
            except ValueError as e:
                raise SchemaConstraintError(f"llguidance cannot read the answer schema: {e}") from e
            m = llguidance.LLMatcher(self.tokenizer, grammar, log_level=0)
            if m.is_error():
                raise SchemaConstraintError(
                    f"llguidance cannot compile the answer schema: {m.get_error()}"
                )
            self._templates[key] = m
        return self._templates[key].deep_copy()

    def processor(self, schemas: Sequence[SchemaLike | None]) -> GrammarMaskProcessor:
        """A mask processor for one batch (one schema or None per row)."""
        return GrammarMaskProcessor(
            [self.matcher(s) if s is not None else None for s in schemas],
            self.vocab_size,
            self.stop_ids,
        )


class SeededSampler:
    """A transformers ``LogitsProcessor`` that samples each row with its own seeded generator
    and leaves only the chosen token (score 0, all others -inf), so ``generate`` run greedy picks
    it. Each conversation's sample then depends on its own seed only, never on the batch it
    shares or on the global torch RNG.

    Temperature, then nucleus (top-p) filtering, as transformers' own warpers do.

    Args:
        seeds: one seed per row.
        temperature: > 0.
        top_p: in (0, 1].
        device: where the generators live (the scores' device).
    """

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float, device: Any = "cpu"):
        import torch

        if temperature <= 0 or not 0 < top_p <= 1:
            raise IncompatibleSettingsError(
                {"temperature": temperature, "top_p": top_p},
                "need temperature > 0 and 0 < top_p <= 1 (seeded sampling)",
            )
        self.temperature, self.top_p = temperature, top_p
        self.generators = []
        for s in seeds:
            g = torch.Generator(device=device)
            g.manual_seed(int(s))
            self.generators.append(g)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        logits = scores.float() / self.temperature  # (batch, vocab)
        probs = torch.softmax(logits, dim=-1)
        if self.top_p < 1.0:
            sorted_p, order = probs.sort(dim=-1, descending=True)
            # keep the smallest prefix whose mass reaches top_p (the first token always kept)
            drop = sorted_p.cumsum(dim=-1) - sorted_p >= self.top_p
            sorted_p = sorted_p.masked_fill(drop, 0.0)
            probs = torch.zeros_like(probs).scatter_(-1, order, sorted_p)
        out = torch.full_like(scores, -math.inf)
        for i, g in enumerate(self.generators):
            p = probs[i]
            if not torch.isfinite(p).all() or float(p.sum()) <= 0:
                tok = int(scores[i].argmax())  # every token masked or NaN: greedy fallback
            else:
                tok = int(torch.multinomial(p.to(g.device), 1, generator=g))
            out[i, tok] = 0.0
        return out


__all__ = [
    "LETTERS",
    "GrammarMaskProcessor",
    "LLGuidanceGrammars",
    "SchemaLike",
    "SeededSampler",
    "bound_strings",
    "check_schema",
    "conforms",
    "letter_schema",
    "max_answer_chars",
    "schema_key",
    "schema_regex",
    "schemas_for",
    "to_json_schema",
    "vllm_structured_outputs",
]
