"""Schema-constrained decoding with the real embedded SmolLM2-135M on the transformers backend
(llguidance), next to the free-form model, and independent seeded generations."""

from __future__ import annotations

import pytest

from mspa_features.compose.composer import CONSTRAINED_HEADROOM
from mspa_features.compose.prompts import PREFERENCE, RECOMMEND, render_candidates
from mspa_features.generation.base import BackendConfig, GenerationConfig, load_backend
from mspa_features.generation.structured import bound_strings, conforms, letter_schema

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CANDIDATES = ["A singer from Texas", "A cooking show", "A chess coach", "A gamer streaming"]


@pytest.fixture(scope="module")
def backend():
    be = load_backend(BackendConfig(type="transformers", model="smollm2", batch_size=4, threads=2))
    yield be
    be.close()


def _rec(pref: str) -> list:
    return RECOMMEND.messages(preference=pref, candidates=render_candidates(CANDIDATES))


def test_transformers_answers_conform_to_their_schemas(backend) -> None:
    rec = bound_strings(letter_schema(RECOMMEND.answer_schema, 4), 48)
    pref = bound_strings(PREFERENCE.answer_schema, 96)
    pref_conv = PREFERENCE.messages(history="1. Profile: A singer from Texas\n2. Profile: A DJ")
    convs = [_rec("likes music"), pref_conv, _rec("likes cooking"), _rec("likes chess")]
    schemas = [rec, pref, rec, None]
    gens = backend.generate(convs, GenerationConfig(max_new_tokens=96), schema=schemas)
    assert [g.constrained for g in gens] == [True, True, True, False]
    for g, s in zip(gens[:3], schemas[:3], strict=True):
        assert g.finish_reason == "stop" and conforms(g.text, s), g.text
    # alone it gives the same constrained greedy answer (its own matcher, whatever the batch)
    (alone,) = backend.generate([pref_conv], GenerationConfig(max_new_tokens=96), schema=pref)
    assert alone.text == gens[1].text


def test_generations_of_one_question_are_independent_seeded_draws(backend) -> None:
    rec = bound_strings(letter_schema(RECOMMEND.answer_schema, 4), 48)
    # the composer's cap: strings bounded for 48 tokens, twice the tokens to decode them (a
    # sample at temperature 1 can wander into one-character tokens, and a cut answer fails)
    cap = CONSTRAINED_HEADROOM * 48
    cfg = GenerationConfig(max_new_tokens=cap, temperature=1.0, seed=0)
    gens = backend.generate([_rec("likes music")] * 4, cfg, schema=rec)
    assert all(conforms(g.text, rec) for g in gens)
    assert len({g.text for g in gens}) >= 3  # a seed per copy: the copies differ
    other = backend.generate(
        [_rec("likes music")] * 4,
        GenerationConfig(max_new_tokens=cap, temperature=1.0, seed=1),
        schema=rec,
    )
    assert other != gens
