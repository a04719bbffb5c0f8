"""Training prompts from U2A: lettered candidates, truth letter, reward columns, skips."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from mspa_features.align.dataset import AlignDataset, build_align_rows
from mspa_features.composer import TemplateComposer
from mspa_features.contracts import Author
from mspa_features.errors import SchemaError
from mspa_features.rewards import AccuracyReward

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _author(i: int, genre: str) -> Author:
    return Author(
        author_id=f"a{i}",
        event_timestamp=T0,
        profile_text=f"Movie {i}",
        attributes={"genres": genre},
    )


AUTHORS = {a.author_id: a for a in [_author(i, "Drama" if i % 2 else "Comedy") for i in range(8)]}


def _u2a() -> pd.DataFrame:
    ts = pd.Timestamp("2024-02-01", tz="UTC")
    rows = [
        # u1: truth a5 at letter C
        ("u1", "train", ["a1", "a3"], "a5", ["a2", "a4", "a5", "a6"], "C", 2),
        # u0: empty history -> skipped
        ("u0", "train", [], "a7", ["a7", "a0", "a1", "a2"], "A", 0),
        ("u2", "test", ["a0"], "a2", ["a2", "a1", "a3", "a4"], "A", 0),
    ]
    return pd.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "split": [r[1] for r in rows],
            "history_author_ids": [r[2] for r in rows],
            "history_ts": [[ts - pd.Timedelta(days=1)] * len(r[2]) for r in rows],
            "target_author_id": [r[3] for r in rows],
            "target_ts": [ts] * len(rows),
            "as_of": [ts] * len(rows),
            "candidates_m4": [r[4] for r in rows],
            "answer_m4": [r[5] for r in rows],
            "answer_index_m4": [r[6] for r in rows],
        }
    )


def test_rows_hold_prompt_truth_and_reward_columns(tmp_path) -> None:
    texts = {"a5": "The one about drama", "a2": "A comedy"}
    ds = build_align_rows(_u2a(), AUTHORS, texts, TemplateComposer(), num_candidates=4)
    assert ds.n_skipped == 1 and len(ds.rows) == 1  # u0 has no history; u2 is test split
    row = ds.rows.iloc[0]
    assert row["user_id"] == "u1" and row["answer"] == "C" and row["answer_index"] == 2
    assert row["candidate_ids"][2] == row["target_author_id"] == "a5"
    system, user = row["prompt"]
    assert system["role"] == "system" and user["role"] == "user"
    # Lettered candidates in U2A order; descriptions from author_texts, else the profile.
    assert "A. A comedy" in user["content"] and "C. The one about drama" in user["content"]
    assert "B. Profile: Movie 4" in user["content"]
    assert '"Answer": "<letter>"' in user["content"]
    # The columns are exactly what the rewards read: a right answer scores 1.
    good = '{"User Preference": "drama", "Recommendation Reason": "fits", "Answer": "C"}'
    assert AccuracyReward()([good], **ds.rows[["answer", "candidate_ids"]].to_dict("list")) == [1.0]
    # Round trip through parquet keeps prompts and candidates.
    back = AlignDataset.load(ds.save(tmp_path / "rows.parquet"))
    assert back.rows["prompt"].iloc[0] == row["prompt"]
    assert back.rows["candidate_ids"].iloc[0] == list(row["candidate_ids"])
    assert back.fingerprint == ds.fingerprint
    hf = back.to_hf()
    assert hf.column_names[0] == "prompt" and hf[0]["answer"] == "C"


def test_split_and_limit() -> None:
    test = build_align_rows(_u2a(), AUTHORS, {}, TemplateComposer(), num_candidates=4, split="test")
    assert test.rows["user_id"].tolist() == ["u2"]
    none = build_align_rows(_u2a(), AUTHORS, {}, TemplateComposer(), num_candidates=4, max_users=1)
    assert none.rows.empty and none.n_skipped == 1  # first user by id is u0 (skipped)


def test_missing_candidate_size_is_named() -> None:
    with pytest.raises(SchemaError, match="candidates_m10"):
        build_align_rows(_u2a(), AUTHORS, {}, TemplateComposer(), num_candidates=10)
