"""The evaluation's author pool: what ``eval.authors: cohort`` describes and ranks."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from mspa_features.compose.composer import TemplateComposer
from mspa_features.compose.jobs import author_pool
from mspa_features.data.contracts import Author
from mspa_features.evaluation.composer_eval import evaluate_composer


class _BagOfWords:
    """A deterministic hashing encoder (64-d, L2-normalised): no model load in a unit test."""

    model_version = "bow-64"
    dim = 64

    def encode(self, texts):
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().split():
                out[i, zlib.crc32(w.encode()) % self.dim] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def _authors(n: int) -> dict[str, Author]:
    genres = ["comedy", "drama", "horror", "romance", "thriller"]
    return {
        f"a{i}": Author(
            author_id=f"a{i}",
            event_timestamp=datetime(2026, 1, 1, tzinfo=UTC),
            profile_text=f"Title {i} | {genres[i % 5]} film",
            location="north",
        )
        for i in range(n)
    }


def _questions() -> pd.DataFrame:
    ts = pd.Timestamp("2026-02-01", tz="UTC")
    return pd.DataFrame(
        {
            "user_id": ["u1", "u2"],
            "history_author_ids": [["a0", "a5"], ["a1"]],
            "history_ts": [[ts, ts], [ts]],
            "target_author_id": ["a10", "a11"],
            "target_ts": [ts, ts],
            "candidates_m2": [["a10", "a3"], ["a4", "a11"]],
            "answer_index_m2": [0, 1],
        }
    )


def test_pool_is_targets_candidates_and_triple_members():
    a2a = pd.DataFrame({"a1": ["a6"], "a2": ["a7"], "a3": ["a8"]})
    pool = author_pool(_questions(), a2a, [2])
    assert pool == {"a10", "a11", "a3", "a4", "a6", "a7", "a8"}
    # history authors are read by the composer, never described or ranked
    assert not {"a0", "a5", "a1"} & pool


def test_evaluation_describes_and_ranks_only_the_pool():
    authors = _authors(20)
    test = _questions()
    a2a = pd.DataFrame({"a1": ["a6"], "a2": ["a16"], "a3": ["a7"]})  # a6 ~ a16: both drama
    pool = author_pool(test, a2a, [2])
    common = {"num_candidates": [2], "cache": None, "recommender": None}
    ev = evaluate_composer(
        "template", TemplateComposer(), _BagOfWords(), test, authors, a2a, pool=pool, **common
    )
    full = evaluate_composer(
        "template", TemplateComposer(), _BagOfWords(), test, authors, a2a, **common
    )
    assert ev.n_authors == len(pool) == 7 and full.n_authors == 20
    assert ev.n_users == 2 and ev.skipped == {"users": 0, "authors": 0}
    # the same candidates are scored either way; ranking among 7 is never harder than among 20
    assert ev.acc_emb == full.acc_emb
    assert ev.retrieval["recall@5"] >= full.retrieval["recall@5"]
    assert ev.a2a == full.a2a == 1.0


class _AlwaysA:
    """A recommender that answers the first candidate every time."""

    supports_schema = False

    def generate(self, convs, cfg, **_):
        from mspa_features.generation.base import Generation

        return [Generation('{"Answer": "A"}', 1, 1, "stop") for _ in convs]


def test_evaluation_carries_a_bootstrap_ci_for_every_metric():
    authors = _authors(20)
    a2a = pd.DataFrame({"a1": ["a6", "a6"], "a2": ["a16", "a7"], "a3": ["a7", "a16"]})
    ev = evaluate_composer(
        "template",
        TemplateComposer(),
        _BagOfWords(),
        _questions(),
        authors,
        a2a,
        num_candidates=[2],
        cache=None,
        recommender=_AlwaysA(),
        generations=2,
        n_boot=200,
        ci_seed=7,
    )
    keys = {"acc@2", "acc@2_emb", "recall@5", "ndcg@5", "recall@10", "ndcg@10", "a2a"}
    assert set(ev.ci) == keys
    row = ev.row()
    assert row["ci"] == ev.ci
    # Always "A": user u1 (truth 0) right, u2 (truth 1) wrong in both generations.
    assert ev.ci["acc@2"]["value"] == row["acc@2"] == 0.5
    assert (ev.ci["acc@2"]["ci_low"], ev.ci["acc@2"]["ci_high"]) == (0.0, 1.0)
    for key in keys - {"acc@2"}:
        ci = ev.ci[key]
        value = row[key]
        assert ci["value"] == pytest.approx(value)
        assert ci["ci_low"] <= value <= ci["ci_high"]
        # 2 users (2 triples) is far below MIN_USERS_FOR_CI: flagged
        assert ci["n"] == 2 and ci["trustworthy"] is False and ci["n_boot"] == 200
    # One triple aligned (a6 ~ a16), one not: the A2A values are per triple.
    assert list(ev.per_unit["a2a"]) == [1.0, 0.0]
    again = evaluate_composer(
        "template",
        TemplateComposer(),
        _BagOfWords(),
        _questions(),
        authors,
        a2a,
        num_candidates=[2],
        cache=None,
        recommender=_AlwaysA(),
        generations=2,
        n_boot=200,
        ci_seed=7,
    )
    assert again.ci == ev.ci  # seeded
    # The printed table carries value [lo, hi], flags the 2-user rows and fits 80 columns.
    from rich.console import Console

    from mspa_features.cli.common import u2a_table

    res = {"composers": {"template": row}, "cohort_users": 2, "test_users_total": 2}
    res |= {"n_authors": 20, "a2a_triples": 2, "generations": 2}
    console = Console(width=80, record=True)
    console.print(u2a_table(res, [2]))
    out = console.export_text()
    assert "0.500 [0.000, 1.000]*" in out and "not trustworthy" in out
    assert max(len(line) for line in out.splitlines()) <= 80
