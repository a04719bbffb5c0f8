"""Prompts are versioned and hashed; the cache is content-addressed."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import numpy as np
import pytest

from mspa_features.compose.cache import ComposerCache, content_key
from mspa_features.compose.prompts import (
    AUTHOR,
    PREFERENCE,
    RECOMMEND,
    render_author,
    render_candidates,
)
from mspa_features.data.contracts import Author


def test_prompt_hash_changes_with_text_and_version():
    assert len({PREFERENCE.hash, AUTHOR.hash, RECOMMEND.hash}) == 3
    edited = dataclasses.replace(PREFERENCE, template=PREFERENCE.template + " ")
    bumped = dataclasses.replace(PREFERENCE, version=PREFERENCE.version + ".1")
    assert len({PREFERENCE.hash, edited.hash, bumped.hash}) == 3


def test_recommendation_prompt_asks_for_the_answer_format():
    msgs = RECOMMEND.messages(preference="likes x", candidates=render_candidates(["a", "b"]))
    assert msgs[0].role == "system" and msgs[1].role == "user"
    body = msgs[1].content
    assert '"User Preference"' in body and '"Answer": "<letter>"' in body
    assert "A. a\nB. b" in body
    with pytest.raises(ValueError, match="at most 26"):
        render_candidates(["x"] * 27)


def test_render_author_caps_huge_fields():
    a = Author(
        author_id="a",
        event_timestamp=datetime(2026, 1, 1, tzinfo=UTC),
        profile_text="p" * 10_000,
        asr_text="hello",
        comments=["c" * 5000] * 50,
        location="north",
    )
    text = render_author(a)
    assert len(text) < 1500 and "Location: north" in text and "Says: hello" in text
    assert text.count(" | ") == 4  # five comments at most


def test_content_key_is_length_prefixed():
    assert content_key("ab", "c") != content_key("a", "bc")
    assert content_key("x", b"\x00") == content_key("x", b"\x00")


def test_cache_round_trip_and_persistence(tmp_path):
    path = tmp_path / "c.sqlite"
    c = ComposerCache(path)
    c.put_texts([("k1", "hello", 3)])
    c.put_embeddings([("e1", np.arange(4, dtype=np.float32))])
    assert c.get_texts(["k1", "k2"]) == {"k1": ("hello", 3)}
    assert (c.hits, c.misses) == (1, 1)
    c.close()
    again = ComposerCache(path)
    np.testing.assert_array_equal(again.get_embeddings(["e1"])["e1"], np.arange(4))
    assert again.get_texts(["k1"])["k1"][0] == "hello"


def _open_and_write(path: str) -> int:
    ComposerCache(path).put_texts([("k", "v", 1)])
    return 1


def test_cache_created_by_several_processes_at_once(tmp_path):
    # Spark workers open the shared cache together; switching a new file to WAL used to fail
    # with "database is locked" in some of them.
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    for i in range(3):
        path = str(tmp_path / f"{i}.sqlite")
        with ctx.Pool(4) as pool:
            assert pool.map(_open_and_write, [path] * 4) == [1] * 4


@pytest.mark.parametrize("prompt_set", ["livestream", "catalogue"])
def test_prompts_of_one_kind_share_their_instructions_as_a_prefix(prompt_set):
    """Data comes last, so the backend can prefill the instructions once per kind and a user's
    next weekly snapshot extends the previous prompt (README, Benchmarks)."""
    from mspa_features.compose.prompts import PROMPT_SETS

    ps = PROMPT_SETS[prompt_set]
    one = ps.preference.messages(history="1. a\n2. b")[1].content
    two = ps.preference.messages(history="1. a\n2. b\n3. c")[1].content
    assert two.startswith(one)
    for prompt, field in ((ps.author, "author"), (ps.recommend, "candidates")):
        kw = {"preference": "likes x"} if field == "candidates" else {}
        text = prompt.messages(**kw, **{field: "ZZZ"})[1].content
        assert text.endswith("ZZZ") and "JSON only" in text.split("ZZZ")[0]
