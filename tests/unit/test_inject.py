"""to_ranker_data: the conversion both injection paths share (missing indicators, tokens)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ranker_hooks.inject import FeatureRef, InjectionSpec, take, to_ranker_data

P, A, C = "user_preferences__t", "author_profiles__t", "user_author_cosine__t"
FEATURES = [
    FeatureRef(P, "pref_emb", "Array(Float32)", 3),
    FeatureRef(P, "pref_text", "String"),
    FeatureRef(P, "history_count", "Int64"),
    FeatureRef(A, "author_emb", "Array(Float32)", 3),
    FeatureRef(A, "author_text", "String"),
    FeatureRef(C, "pref_author_cosine", "Float64"),
]


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u3"],
            "author_id": ["a1", "a1", "a2"],
            "event_timestamp": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"], utc=True),
            "label": [1, 0, 1],
            "pref_emb": [np.array([1, 0, 0], np.float32), None, [0.0, 0.6, 0.8]],
            "pref_text": ["Likes sci-fi, comedy", None, "likes drama"],
            "history_count": pd.array([3, None, 0], dtype="Int64"),
            "author_emb": [None, [0.0, 1.0, 0.0], np.array([0, 0, 1], np.float32)],
            "author_text": ["Sci-fi film", "sci-fi film", None],
            "pref_author_cosine": [np.nan, None, 0.8],
        }
    )


def test_missing_values_are_zero_plus_indicator_never_nan() -> None:
    d = to_ranker_data(frame(), FEATURES)
    names = d.dense_names
    assert names == [
        "pref_emb[0]", "pref_emb[1]", "pref_emb[2]", "pref_emb__missing",
        "history_count", "history_count__missing",
        "author_emb[0]", "author_emb[1]", "author_emb[2]", "author_emb__missing",
        "pref_author_cosine", "pref_author_cosine__missing",
    ]  # fmt: skip
    assert d.dense.dtype == np.float32 and not np.isnan(d.dense).any()
    col = {n: d.dense[:, i] for i, n in enumerate(names)}
    np.testing.assert_array_equal(col["pref_emb__missing"], [0, 1, 0])
    np.testing.assert_array_equal(d.dense[1, :3], [0, 0, 0])
    np.testing.assert_allclose(d.dense[2, :3], [0.0, 0.6, 0.8])
    np.testing.assert_allclose(col["history_count"], [np.log1p(3), 0, 0])
    np.testing.assert_array_equal(col["history_count__missing"], [0, 1, 0])  # 0 is a real 0
    np.testing.assert_array_equal(col["author_emb__missing"], [1, 0, 0])
    np.testing.assert_allclose(col["pref_author_cosine"], [0, 0, 0.8])
    np.testing.assert_array_equal(col["pref_author_cosine__missing"], [1, 1, 0])
    assert d.tokens is None  # text is left out unless asked for
    np.testing.assert_array_equal(d.labels, [1, 0, 1])
    assert list(d.user_ids) == ["u1", "u2", "u3"]
    assert d.event_ts[1] - d.event_ts[0] == 86_400_000_000


def test_columns_subset_and_token_only_spec() -> None:
    d = to_ranker_data(frame(), FEATURES, InjectionSpec(columns=("pref_author_cosine",)))
    assert d.dense_names == ["pref_author_cosine", "pref_author_cosine__missing"]
    spec = InjectionSpec(
        columns=("pref_text", "author_text"), dense=False, text_tokens=True, max_tokens=4,
        token_buckets=1000,
    )  # fmt: skip
    t = to_ranker_data(frame(), FEATURES, spec)
    assert t.dense.shape == (3, 0)
    assert t.tokens.shape == (3, 8)  # 4 per text feature
    assert (t.tokens >= 0).all() and (t.tokens < 1000).all()
    pref, auth = t.tokens[:, :4], t.tokens[:, 4:]
    assert (pref[0] > 0).sum() == 4  # "likes sci fi comedy": 4 distinct words
    assert (pref[1] == 0).all()  # missing text: padding only
    # Case-insensitive and stable: the same author text gives the same tokens.
    np.testing.assert_array_equal(auth[0], auth[1])
    # The feature name salts the hash: "sci" in pref_text and author_text differ.
    assert pref[0, 1] != auth[0, 0]


def test_unknown_column_and_bad_rows_are_named() -> None:
    with pytest.raises(ValueError, match="nope"):
        to_ranker_data(frame(), FEATURES, InjectionSpec(columns=("nope",)))
    bad = frame()
    bad.loc[1, "label"] = 2
    with pytest.raises(ValueError, match=r"row 1 \(user_id=u2 author_id=a1\): label=2"):
        to_ranker_data(bad, FEATURES)
    wide = frame()
    wide.at[0, "pref_emb"] = [1.0, 2.0]
    with pytest.raises(ValueError, match=r"row 0 \(user_id=u1.*pref_emb shape must be \(3,\), got \(2,\)"):
        to_ranker_data(wide, FEATURES)
    with pytest.raises(ValueError, match="lacks feature column"):
        to_ranker_data(frame().drop(columns=["author_emb"]), FEATURES)


def test_width_is_inferred_or_refused_when_undeclared() -> None:
    undeclared = [FeatureRef(P, "pref_emb", "Array(Float32)")]
    assert to_ranker_data(frame(), undeclared).dense.shape == (3, 4)
    empty = frame().assign(pref_emb=[None, None, None])
    with pytest.raises(ValueError, match="width is unknown"):
        to_ranker_data(empty, undeclared)


def test_take_keeps_rows_aligned() -> None:
    d = to_ranker_data(frame(), FEATURES, InjectionSpec(text_tokens=True))
    sub = take(d, np.array([False, True, True]))
    assert list(sub.user_ids) == ["u2", "u3"]
    np.testing.assert_array_equal(sub.dense, d.dense[1:])
    np.testing.assert_array_equal(sub.tokens, d.tokens[1:])
    np.testing.assert_array_equal(sub.labels, [0, 1])
