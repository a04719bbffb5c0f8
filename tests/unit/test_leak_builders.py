"""Leak builders 2 and 3 on hand-made interactions with known answers, and the row-by-row
check that a frame built for [T0, T) holds no information from >= T."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from mspa_features.errors import LeakBuildError
from ranker_hooks.lis.leaks.guard import future_information
from ranker_hooks.lis.leaks.next_positive import next_positive
from ranker_hooks.lis.leaks.similar_items import similar_items
from ranker_hooks.rankers.base import IdEmbeddings

T0 = datetime(2024, 1, 1, tzinfo=UTC)
T = T0 + timedelta(days=30)
DAY = timedelta(days=1)


def frame(rows: list[tuple[str, str, datetime, int]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["user_id", "author_id", "event_timestamp", "label"])
    df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True)
    return df


def random_interactions(seed: int, start: datetime, days: int, n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return frame(
        [
            (
                f"u{rng.integers(12)}",
                f"a{rng.integers(8)}",
                start + timedelta(seconds=int(rng.integers(days * 86_400))),
                int(rng.random() < 0.5),
            )
            for _ in range(n)
        ]
    )


def test_similar_items_known_cooccurrence() -> None:
    # Window [T, T+7d): users u1,u2 like a and b; u3 likes a and c; a negative never counts.
    rows = [
        ("u1", "a", T + DAY, 1), ("u1", "b", T + DAY, 1),
        ("u2", "a", T + 2 * DAY, 1), ("u2", "b", T + 2 * DAY, 1),
        ("u3", "a", T + 3 * DAY, 1), ("u3", "c", T + 3 * DAY, 1),
        ("u4", "c", T + 3 * DAY, 0), ("u4", "d", T + 3 * DAY, 0),
        ("u5", "d", T + 8 * DAY, 1), ("u5", "a", T + 8 * DAY, 1),  # after the window
        ("u6", "d", T - DAY, 1), ("u6", "a", T - DAY, 1),  # before the window
    ]  # fmt: skip
    emb = IdEmbeddings(
        kind="author",
        ids=np.array(["a", "b", "c"], dtype=object),
        matrix=np.array([[1, 0], [0, 1], [0, 3]], np.float32),
    )
    out = similar_items(frame(rows), start=T, end=T + 7 * DAY, k=5, embeddings=emb)
    got = {r.author_id: r for r in out.itertuples()}
    assert set(got) == {"a", "b", "c"}  # d has no positive in the window
    # cos(a,b) = 2/sqrt(3*2), cos(a,c) = 1/sqrt(3*1), cos(b,c) = 0 (no shared user)
    assert got["a"].similar_author_ids == ["b", "c"]
    np.testing.assert_allclose(
        got["a"].similar_author_scores, [2 / np.sqrt(6), 1 / np.sqrt(3)], rtol=1e-6
    )
    assert got["b"].similar_author_ids == ["a"] and got["c"].similar_author_ids == ["a"]
    np.testing.assert_allclose(got["a"].similar_author_mean_emb, [0, 2])
    # Default visibility: from the first interaction on; knowledge: the last positive used.
    assert (out["event_timestamp"] == T - DAY).all()
    assert (out["knowledge_ts"] == int((T + 3 * DAY).timestamp() * 1e6)).all()
    assert (
        len(similar_items(frame(rows), start=T, end=T + 7 * DAY, k=1).iloc[0]["similar_author_ids"])
        == 1
    )


def test_next_positive_known_answers() -> None:
    rows = [
        ("u1", "a", T0, 0),
        ("u1", "b", T0 + DAY, 1),
        ("u1", "c", T0 + 3 * DAY, 0),
        ("u1", "d", T0 + 5 * DAY, 1),
        ("u1", "e", T0 + 20 * DAY, 1),
        ("u2", "a", T0 + DAY, 0),
    ]
    emb = IdEmbeddings(
        kind="author", ids=np.array(["b", "d"], dtype=object), matrix=np.eye(2, dtype=np.float32)
    )
    out = next_positive(frame(rows), horizon_days=7, embeddings=emb)
    u1 = out[out["user_id"] == "u1"].set_index("event_timestamp")
    # Strictly after: the positive at T0+1d sees the next one (d), never itself.
    assert list(u1["next_positive_author_id"]) == ["b", "d", "d", None, None]  # e is 15 days on
    assert list(u1["next_positive_in_s"].iloc[:3]) == [86_400, 4 * 86_400, 2 * 86_400]
    assert u1["next_positive_in_s"].iloc[3:].isna().all()
    assert u1["next_positive_emb"].iloc[0] == [1.0, 0.0] and u1["next_positive_emb"].iloc[3] is None
    # With a 30-day horizon the d row sees e; u2 never has a positive.
    out30 = next_positive(frame(rows), horizon_days=30)
    assert out30.loc[out30["user_id"] == "u1", "next_positive_author_id"].tolist()[3] == "e"
    assert out30.loc[out30["user_id"] == "u2", "next_positive_author_id"].isna().all()
    # Deliberately leaked: rows with a next positive know the future, the guard sees it.
    flagged = future_information(out)
    assert len(flagged) == 3 and set(flagged["leaked_column"]) == {"knowledge_ts"}


def test_non_leaked_frames_hold_no_information_from_after_T() -> None:
    """Built for [T0, T) and visible from T, a frame must (a) pass the row-by-row timestamp
    check and (b) not change at all when every interaction at or after T is replaced."""
    past = random_interactions(0, T0, 30)
    future_a = random_interactions(1, T, 30)
    future_b = random_interactions(2, T, 30)
    built = [
        similar_items(pd.concat([past, fut]), start=T0, end=T, visible_from=T)
        for fut in (future_a, future_b)
    ]
    pd.testing.assert_frame_equal(built[0], built[1])
    assert future_information(built[0]).empty
    assert (built[0]["knowledge_ts"] < int(T.timestamp() * 1e6)).all()
    # The same builder on the future window is a leak: every row knows what comes after it.
    leaked = similar_items(pd.concat([past, future_a]), start=T, end=T + 30 * DAY)
    assert len(future_information(leaked)) == len(leaked) > 0


def test_bad_interactions_name_row_and_field() -> None:
    good = frame([("u1", "a", T, 1), ("u1", "b", T + DAY, 1)])
    bad = good.copy()
    bad.loc[1, "author_id"] = None
    with pytest.raises(LeakBuildError, match=r"record row 1 field 'author_id'.*null"):
        similar_items(bad, start=T, end=T + DAY * 2)
    bad = good.copy()
    bad["label"] = [1, 2]
    with pytest.raises(LeakBuildError, match=r"row 1 field 'label'.*0 or 1"):
        next_positive(bad, horizon_days=7)
    naive = good.copy()
    naive["event_timestamp"] = naive["event_timestamp"].dt.tz_localize(None)
    with pytest.raises(LeakBuildError, match="event_timestamp.*tz-aware"):
        next_positive(naive, horizon_days=7)
    with pytest.raises(LeakBuildError, match="'label' is missing"):
        next_positive(good.drop(columns="label"), horizon_days=7)
    with pytest.raises(LeakBuildError, match="no positive"):
        similar_items(good, start=T0, end=T)
