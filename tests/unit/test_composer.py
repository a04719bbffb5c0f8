"""Composer behaviour with the template composer and a recording test-double backend.

The double stands in for a model only to observe what the composer sends (budgets, caching,
skips); the real models are exercised in tests/integration/test_composer_models.py.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from mspa_features.compose.cache import ComposerCache
from mspa_features.compose.composer import (
    TEMPLATE_VERSION,
    LLMComposer,
    TemplateComposer,
    UserHistory,
    build_histories,
)
from mspa_features.compose.feature_rows import compose_author_rows, compose_preference_rows
from mspa_features.data.contracts import AUTHOR_PROFILES, PREFERENCES, Author
from mspa_features.generation.base import (
    BackendConfig,
    Generation,
    GenerationBackend,
    GenerationConfig,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class RecordingBackend(GenerationBackend):
    """Answers valid JSON naming how many author lines it saw; records every prompt."""

    name = "recording"

    def __init__(self):
        super().__init__(BackendConfig(type="recording", model="none"))
        self.prompts: list[str] = []

    @property
    def model_version(self) -> str:
        return "recording-v1"

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def generate(self, conversations, cfg: GenerationConfig, *, schema=None):
        out = []
        for conv in conversations:
            body = conv[-1].content
            self.prompts.append(body)
            n = sum(1 for line in body.splitlines() if line[:1].isdigit())
            out.append(Generation(f'{{"Summary": "saw {n}", "Author Types": "x"}}', 10, 8, "stop"))
        return out


class HashEncoder:
    """Deterministic bag-of-words hashing encoder (test double for shaping tests)."""

    dim = 16
    model_version = "hash16"

    def encode(self, texts):
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            for w in t.split():
                out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % self.dim] += 1
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)


def _author(i, **kw):
    base = {
        "author_id": f"a{i}",
        "event_timestamp": T0,
        "profile_text": f"author {i} sings",
        "attributes": {"category": "singing" if i % 2 else "gaming", "region": "north"},
    }
    base.update(kw)
    return Author(**base)


def _history(n, user="u1"):
    authors = tuple(_author(i) for i in range(n))
    return UserHistory(user, T0 + timedelta(days=1), authors, n, T0 if n else None)


def test_template_is_deterministic_and_structured():
    c = TemplateComposer()
    a, b = c.compose_preferences([_history(5)]), c.compose_preferences([_history(5)])
    assert a == b
    text = a[0].text
    assert text.startswith("Author Types: gaming (3), singing (2)")
    assert "Regional Bias: north (5)" in text


def test_template_author_text_has_attributes_then_profile_once():
    (r,) = TemplateComposer().describe_authors([_author(1, location="Lyon")])
    assert r.status == "ok"
    assert r.text.startswith("Author Types: singing; Regional Bias: north; Profile: author 1 sings")
    assert r.text.count("Profile:") == 1 and "Location: Lyon" in r.text


def test_empty_history_and_contentless_author_are_skipped_with_reason():
    c = TemplateComposer()
    (r,) = c.compose_preferences([_history(0)])
    assert r.status == "skipped" and r.reason == "empty history"
    (r,) = c.describe_authors([_author(1, profile_text="  ", asr_text=None)])
    assert r.status == "skipped" and r.reason == "author has no text or frames"


def test_budget_keeps_the_newest_authors():
    backend = RecordingBackend()
    comp = LLMComposer(backend, token_budget=20)
    (r,) = comp.compose_preferences([_history(10)])
    prompt = backend.prompts[0]
    assert "author 9 sings" in prompt and "author 0 sings" not in prompt
    assert r.n_authors_used < 10 and r.text.startswith("Author Types: x; Summary: saw")
    # numbering restarts at 1 and stays oldest-first among the kept authors
    lines = [ln for ln in prompt.splitlines() if ln[:1].isdigit()]
    assert lines[0].startswith("1. ") and "author 9" in lines[-1]


def test_cache_makes_reruns_free(tmp_path):
    cache = ComposerCache(tmp_path / "c.sqlite")
    backend = RecordingBackend()
    comp = LLMComposer(backend, cache=cache)
    first = comp.compose_preferences([_history(3), _history(4, "u2")])
    assert len(backend.prompts) == 2
    again = LLMComposer(backend, cache=cache).compose_preferences([_history(3), _history(4, "u2")])
    assert len(backend.prompts) == 2  # nothing generated the second time
    assert [c.text for c in again] == [c.text for c in first] and all(c.cached for c in again)
    # a changed history is a new key
    LLMComposer(backend, cache=cache).compose_preferences([_history(5)])
    assert len(backend.prompts) == 3


def test_preference_rows_follow_the_contract_and_reconcile():
    out = compose_preference_rows(
        TemplateComposer(), HashEncoder(), [_history(3), _history(0, "u2")]
    )
    assert out.table.schema == PREFERENCES.schema
    assert out.table.num_rows == 1 and out.quarantine.num_rows == 1
    assert out.quarantine.column("reason").to_pylist() == ["empty history"]
    row = out.table.to_pylist()[0]
    assert row["history_count"] == 3 and row["model_version"] == f"{TEMPLATE_VERSION}|hash16"
    assert abs(np.linalg.norm(row["pref_emb"]) - 1) < 1e-5


def test_author_rows_follow_the_contract():
    out = compose_author_rows(TemplateComposer(), HashEncoder(), [_author(1), _author(2)])
    assert out.table.schema == AUTHOR_PROFILES.schema and out.table.num_rows == 2


def test_build_histories_is_point_in_time():
    inter = pd.DataFrame(
        {
            "user_id": ["u"] * 5,
            "author_id": ["a1", "a2", "a1", "a3", "a4"],
            "event_timestamp": pd.to_datetime([T0 + timedelta(hours=h) for h in (0, 1, 2, 3, 4)]),
            "label": [1, 1, 1, 0, 1],
        }
    )
    authors = {f"a{i}": _author(i) for i in range(1, 5)}
    (h,) = build_histories(inter, authors, [("u", T0 + timedelta(hours=4))])
    # strictly before as-of: the a4 positive at exactly as-of is excluded; a3 is not positive
    assert [a.author_id for a in h.authors] == ["a1", "a2"]
    assert h.history_count == 3 and h.history_last_ts == T0 + timedelta(hours=2)
    (none,) = build_histories(inter, authors, [("nobody", T0)])
    assert none.authors == () and none.history_count == 0


@pytest.mark.parametrize("bad", ["", "not json at all"])
def test_unparseable_model_output_falls_back_to_raw_text(bad):
    class Garbage(RecordingBackend):
        def generate(self, conversations, cfg, *, schema=None):
            return [Generation(bad, 1, 1, "stop") for _ in conversations]

    comp = LLMComposer(Garbage())
    (r,) = comp.compose_preferences([_history(2)])
    if bad:
        assert r.status == "failed" and r.text == bad
    else:
        assert r.status == "skipped" and r.reason == "model returned no text"
    assert comp.stats.parse.counts["failed"] == 1
