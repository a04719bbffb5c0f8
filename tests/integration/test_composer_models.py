"""The composer with the real embedded models: SmolLM2-135M (transformers) + all-MiniLM-L6-v2."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from mspa_features.compose.cache import ComposerCache
from mspa_features.compose.composer import LLMComposer, UserHistory
from mspa_features.compose.feature_rows import compose_preference_rows
from mspa_features.compose.prompts import PREFERENCE, RECOMMEND, render_candidates
from mspa_features.data.contracts import PREFERENCES, Author
from mspa_features.generation.base import BackendConfig, GenerationConfig, load_backend

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T0 = datetime(1998, 1, 1, tzinfo=UTC)
MOVIES = [
    "Toy Story (1995). Genres: Animation, Children's, Comedy.",
    "GoldenEye (1995). Genres: Action, Adventure, Thriller.",
    "Heat (1995). Genres: Action, Crime, Thriller.",
    "Babe (1995). Genres: Children's, Comedy, Drama.",
    "Die Hard (1988). Genres: Action, Thriller.",
]


@pytest.fixture(scope="module")
def backend():
    return load_backend(
        BackendConfig(type="transformers", model="smollm2", batch_size=4, threads=2)
    )


@pytest.fixture(scope="module")
def encoder():
    from mspa_features.compose.encoders import EncoderConfig, load_encoder

    return load_encoder(EncoderConfig())


def _history(user: str, idx: list[int]) -> UserHistory:
    authors = tuple(
        Author(author_id=str(i), event_timestamp=T0, profile_text=MOVIES[i]) for i in idx
    )
    return UserHistory(user, T0 + timedelta(days=1), authors, len(idx), T0)


def test_generation_is_greedy_deterministic_and_bounded(backend):
    conv = PREFERENCE.messages(history="\n".join(f"{i + 1}. {m}" for i, m in enumerate(MOVIES)))
    cfg = GenerationConfig(max_new_tokens=24)
    a, b = backend.generate([conv], cfg), backend.generate([conv], cfg)
    assert a == b and a[0].text.strip()
    assert a[0].n_generated_tokens <= 24 and a[0].n_prompt_tokens > 50
    assert backend.model_version.startswith("transformers:smollm2:")


def test_left_padded_batch_matches_single_greedy(backend):
    convs = [
        PREFERENCE.messages(history="1. " + MOVIES[0]),
        RECOMMEND.messages(
            preference="Likes action thrillers", candidates=render_candidates(MOVIES[:4])
        ),
    ]
    cfg = GenerationConfig(max_new_tokens=16)
    batched = backend.generate(convs, cfg)
    single = [backend.generate([c], cfg)[0] for c in convs]
    # fp32 matmuls over padded batches can flip a late token; the first words must agree
    for b, s in zip(batched, single, strict=True):
        assert b.text.split()[:4] == s.text.split()[:4]


def test_stops_at_end_of_turn(backend):
    conv = RECOMMEND.messages(preference="x", candidates=render_candidates(["a", "b"]))
    (g,) = backend.generate([conv], GenerationConfig(max_new_tokens=200))
    assert g.finish_reason == "stop" and g.n_generated_tokens < 200


def test_composer_writes_contract_rows_and_reruns_from_cache(backend, encoder, tmp_path):
    cache = ComposerCache(tmp_path / "c.sqlite")
    hs = [_history("u1", [0, 3]), _history("u2", [1, 2, 4])]
    comp = LLMComposer(backend, gen=GenerationConfig(max_new_tokens=48), cache=cache)
    out = compose_preference_rows(comp, encoder, hs, cache=cache)
    assert out.table.schema == PREFERENCES.schema and out.table.num_rows == 2
    embs = np.asarray(out.table.column("pref_emb").to_pylist())
    assert embs.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(embs, axis=1), 1.0, atol=1e-5)
    assert all(t.strip() for t in out.table.column("pref_text").to_pylist())
    assert comp.stats.generated == 2
    again = LLMComposer(backend, gen=GenerationConfig(max_new_tokens=48), cache=cache)
    out2 = compose_preference_rows(again, encoder, hs, cache=cache)
    assert again.stats.generated == 0 and again.stats.cache_hits == 2
    assert out2.table.column("pref_text").to_pylist() == out.table.column("pref_text").to_pylist()
