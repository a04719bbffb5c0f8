"""MSPA rewards on hand-built completions: right, wrong, garbage, conversational, pickled."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from mspa_features.align.rewards import (
    AccuracyReward,
    FormatReward,
    SimilarityReward,
    load_author_embeddings,
    reward_weights,
)

CANDS = [["a1", "a2", "a3", "a4"]]


def _answer(letter: str) -> str:
    return (
        '{"User Preference": "likes sci-fi", "Recommendation Reason": "fits", '
        f'"Answer": "{letter}"}}'
    )


def _conv(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


GARBAGE = ["", "lorem ipsum", "{{{{", "\x00\ufffd", '{"Answer": }', "Answer", None]


def test_accuracy_right_wrong_and_garbage() -> None:
    acc = AccuracyReward()
    comps = [_answer("C"), _answer("A"), _answer("c"), _answer("Z"), *GARBAGE]
    n = len(comps)
    got = acc(comps, answer=["C"] * n, candidate_ids=CANDS * n)
    assert got == [1.0, 0.0, 1.0, 0.0] + [0.0] * len(GARBAGE)


def test_accuracy_reads_conversational_completions() -> None:
    acc = AccuracyReward()
    assert acc([_conv(_answer("B"))], answer=["B"], candidate_ids=CANDS) == [1.0]


def test_format_full_partial_and_garbage() -> None:
    fmt = FormatReward()
    full = fmt([_answer("A"), "```json\n" + _answer("B") + "\n```"])
    assert full == [1.0, 1.0]
    # Cut off after the first key: 1 of 3 keys, scaled by 0.5.
    (cut,) = fmt(['{"User Preference": "likes sci-fi", "Recommendation'])
    assert cut == pytest.approx(0.5 / 3)
    assert fmt(GARBAGE) == [0.0] * len(GARBAGE)
    strict = FormatReward(partial=False)
    assert strict(['{"User Preference": "x"}', _answer("A")]) == [0.0, 1.0]


def test_format_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="partial_scale"):
        FormatReward(partial_scale=2.0)
    with pytest.raises(ValueError, match="required key"):
        FormatReward(keys=())


def test_similarity_cosine_clipped_and_unknown() -> None:
    emb = {
        "a1": [1.0, 0.0],
        "a2": [1.0, 1.0],  # cos with a1 = 0.707
        "a3": [-1.0, 0.0],  # cos with a1 = -1 -> clipped to 0
        "a4": [0.0, 0.0],  # zero vector: unknown
    }
    sim = SimilarityReward(emb)
    comps = [_answer("A"), _answer("B"), _answer("C"), _answer("D"), "garbage"]
    got = sim(comps, candidate_ids=CANDS * 5, target_author_id=["a1"] * 5)
    assert got == pytest.approx([1.0, np.sqrt(0.5), 0.0, 0.0, 0.0], abs=1e-6)
    # A target missing from the profiles earns nothing, not an error.
    assert sim([_answer("A")], candidate_ids=CANDS, target_author_id=["zz"]) == [0.0]


@pytest.mark.parametrize(
    "reward",
    [AccuracyReward(), FormatReward(partial_scale=0.25), SimilarityReward({"a1": [1.0, 2.0]})],
)
def test_rewards_pickle_round_trip(reward) -> None:
    back = pickle.loads(pickle.dumps(reward))
    assert back.__name__ == reward.__name__
    kwargs = {"answer": ["A"], "candidate_ids": CANDS, "target_author_id": ["a1"]}
    assert back([_answer("A")], **kwargs) == reward([_answer("A")], **kwargs)
    assert back(["{{garbage"], **kwargs) == reward(["{{garbage"], **kwargs)


def test_reward_weights() -> None:
    assert reward_weights(0.5, 0.2) == pytest.approx((0.5, 0.2, 0.3))
    assert reward_weights(0.8, 0.2)[2] == 0.0
    with pytest.raises(ValueError, match="<= 1"):
        reward_weights(0.9, 0.2)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        reward_weights(-0.1, 0.2)


def test_load_author_embeddings(tmp_path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "author_profiles.parquet"
    pq.write_table(
        pa.table({"author_id": ["a1", "a2"], "author_emb": [[1.0, 0.0], [0.0, 1.0]]}), path
    )
    emb = load_author_embeddings(path)
    assert set(emb) == {"a1", "a2"} and emb["a2"].tolist() == [0.0, 1.0]
    pq.write_table(pa.table({"author_id": ["a1"]}), path)
    from mspa_features.errors import SchemaError

    with pytest.raises(SchemaError, match="author_emb"):
        load_author_embeddings(path)
