"""build_leak_sets: M_T sees only [T0, T), M_{T+n} only [T, T+n); every set is written with
its manifest under the workspace."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _numpy_ranker import NumpyMF

from mspa_features.config import DataConfig, RunConfig, Workspace
from mspa_features.errors import LeakBuildError
from ranker_hooks.lis.feast_defs import discover_leak_sets
from ranker_hooks.lis.leaks.build import build_leak_sets

T0 = datetime(2024, 1, 1, tzinfo=UTC)
T = T0 + timedelta(days=30)


def interactions(n: int = 600) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    users = rng.integers(0, 15, n)
    authors = rng.integers(0, 8, n)
    df = pd.DataFrame(
        {
            "user_id": [f"u{u}" for u in users],
            "author_id": [f"a{a}" for a in authors],
            "event_timestamp": pd.to_datetime(
                [T0 + timedelta(seconds=int(s)) for s in rng.integers(0, 70 * 86_400, n)], utc=True
            ),
            "label": ((users + authors) % 2 == 0).astype(np.int8),
        }
    )
    return df


def test_build_writes_every_set_and_keeps_windows_apart(tmp_path: Path) -> None:
    cfg = RunConfig(name="toy", workspace=tmp_path / "ws", data=DataConfig(source="movielens"))
    rankers: list[NumpyMF] = []

    def make() -> NumpyMF:
        rankers.append(NumpyMF(epochs=5))
        return rankers[-1]

    rep = build_leak_sets(
        cfg, split_at=T, horizons=(7, 30), make_ranker=make, interactions=interactions()
    )
    assert sorted(rep.leak_sets) == sorted(
        f"{k}_n{n}" for k in ("future_id", "similar_items", "next_positive") for n in (7, 30)
    )
    assert set(discover_leak_sets(cfg)) == set(rep.leak_sets)
    root = Workspace(cfg.workspace).features("toy") / "leaks"
    manifest = json.loads((root / "future_id_n30" / "leak.json").read_text())
    assert manifest["kind"] == "future_id" and manifest["horizon_days"] == 30
    assert manifest["window_start"] == T.isoformat()

    # M_T (the one ranker made) was fitted once, on rows before T only; M_{T+n} are copies
    # (future_id_swap refuses rows outside [T, T+n)), so M_T never saw the future.
    (m_t,) = rankers
    t_us = int(T.timestamp() * 1e6)
    assert len(m_t.fit_event_ts) == 1
    assert (m_t.fit_event_ts[0] < t_us).all() and rep.train_rows == len(m_t.fit_event_ts[0])
    fut = pd.read_parquet(root / "future_id_n7" / "rows")
    assert (fut["knowledge_ts"] < int((T + timedelta(days=7)).timestamp() * 1e6)).all()
    assert (fut["knowledge_ts"] >= t_us).all()


def test_build_refuses_unknown_kinds_and_empty_windows(tmp_path: Path) -> None:
    cfg = RunConfig(name="toy", workspace=tmp_path / "ws", data=DataConfig(source="movielens"))
    with pytest.raises(LeakBuildError, match="unknown kinds"):
        build_leak_sets(cfg, split_at=T, kinds=("nope",), interactions=interactions())
    with pytest.raises(LeakBuildError, match="needs both labels"):
        build_leak_sets(cfg, split_at=T0, make_ranker=NumpyMF, interactions=interactions())


def _leak_schema(root: Path, name: str):
    import pyarrow.parquet as pq

    return pq.read_schema(root / name / "rows" / "part-00000.parquet")


@pytest.mark.parametrize(
    ("keep", "what"),
    [
        # nothing at all after T: every window is empty
        (lambda df: df["event_timestamp"] < T, "no interaction after T"),
        # interactions after T, but no positive: no co-engagement, no next positive
        (lambda df: (df["event_timestamp"] < T) | (df["label"] == 0), "no positive after T"),
        # one positive per user after T: positives, but no author shares a user
        (
            lambda df: (
                (df["event_timestamp"] < T)
                | ((df["label"] == 1) & ~df.duplicated("user_id") & ~df.duplicated("author_id"))
            ),
            "no co-engaged pair after T",
        ),
    ],
)
def test_empty_windows_write_typed_sets_and_say_so(tmp_path: Path, keep, what) -> None:
    """Issue 14 item 9: an empty leak set keeps its schema (string keys, list columns)."""
    import pyarrow as pa

    cfg = RunConfig(name="toy", workspace=tmp_path / "ws", data=DataConfig(source="movielens"))
    df = interactions()
    df = df.sort_values("event_timestamp").reset_index(drop=True)
    df = df[keep(df)].reset_index(drop=True)
    rep = build_leak_sets(
        cfg, split_at=T, horizons=(7,), make_ranker=lambda: NumpyMF(epochs=2), interactions=df
    )
    root = Workspace(cfg.workspace).features("toy") / "leaks"
    assert rep.leak_sets["similar_items_n7"].rows == 0, what
    sim = _leak_schema(root, "similar_items_n7")
    assert sim.field("author_id").type == pa.string()
    assert sim.field("similar_author_ids").type == pa.list_(pa.string())
    assert sim.field("similar_author_scores").type == pa.list_(pa.float32())
    assert sim.field("similar_author_mean_emb").type == pa.list_(pa.float32())
    assert sim.field("event_timestamp").type == pa.timestamp("us", tz="UTC")
    assert any(n.startswith("similar_items_n7: no author has a co-engaged") for n in rep.notes)
    fut = _leak_schema(root, "future_id_n7")
    assert fut.field("author_id").type == pa.string()
    assert fut.field("future_author_id_emb").type == pa.list_(pa.float32())
    nxt = _leak_schema(root, "next_positive_n7")
    assert nxt.field("next_positive_author_id").type == pa.string()
    assert nxt.field("next_positive_emb").type == pa.list_(pa.float32())


def test_no_interaction_in_the_window_leaves_m_t_unchanged(tmp_path: Path) -> None:
    cfg = RunConfig(name="toy", workspace=tmp_path / "ws", data=DataConfig(source="movielens"))
    df = interactions()
    df = df[df["event_timestamp"] < T].reset_index(drop=True)
    made: list[NumpyMF] = []

    def make() -> NumpyMF:
        made.append(NumpyMF(epochs=2))
        return made[-1]

    rep = build_leak_sets(cfg, split_at=T, horizons=(7,), make_ranker=make, interactions=df)
    root = Workspace(cfg.workspace).features("toy") / "leaks"
    fut = pd.read_parquet(root / "future_id_n7" / "rows")
    table = made[0].export_id_embeddings("author")
    rows = dict(zip(fut["author_id"], fut["future_author_id_emb"], strict=True))
    for aid, vec in zip(table.ids, table.matrix, strict=True):
        np.testing.assert_array_equal(
            np.asarray(rows[str(aid)], np.float32), vec.astype(np.float32)
        )
    assert (fut["knowledge_ts"] == int(T.timestamp() * 1e6)).all()
    assert any("future_id_n7: no interaction in" in n for n in rep.notes)


def test_write_leak_set_refuses_an_untyped_empty_frame(tmp_path: Path) -> None:
    from ranker_hooks.lis.feast_defs import write_leak_set

    frame = pd.DataFrame(
        {
            "author_id": [],
            "event_timestamp": pd.Series([], dtype="datetime64[us, UTC]"),
            "created_timestamp": pd.Series([], dtype="datetime64[us, UTC]"),
            "similar_author_ids": [],
            "knowledge_ts": pd.Series([], dtype="int64"),
        }
    )
    args = {"kind": "similar_items", "horizon_days": 7, "key": "author_id"}
    window = {"window_start": T, "window_end": T}
    with pytest.raises(LeakBuildError, match="frame is empty: pass its schema"):
        write_leak_set(tmp_path, frame, **args, **window)
    one = pd.DataFrame(
        {
            "author_id": [1.0],
            "event_timestamp": pd.Series([T], dtype="datetime64[us, UTC]"),
            "created_timestamp": pd.Series([T], dtype="datetime64[us, UTC]"),
            "similar_author_ids": [None],
            "knowledge_ts": [0],
        }
    )
    with pytest.raises(LeakBuildError, match="field 'similar_author_ids'.*no type"):
        write_leak_set(tmp_path, one, **args, **window)
    one["similar_author_ids"] = [["a2"]]
    with pytest.raises(LeakBuildError, match="field 'author_id'.*must hold string ids, got double"):
        write_leak_set(tmp_path, one, **args, **window)


def test_positives_without_a_shared_user_give_a_typed_empty_similar_items_frame() -> None:
    """The tiny-dataset case of issue 14 item 9: positives after T, none co-engaged."""
    import pyarrow as pa

    from ranker_hooks.lis.leaks.similar_items import frame_schema, similar_items

    ts = pd.to_datetime([T + timedelta(days=1), T + timedelta(days=2)], utc=True)
    df = pd.DataFrame(
        {"user_id": ["u1", "u2"], "author_id": ["a1", "a2"], "event_timestamp": ts, "label": [1, 1]}
    )
    frame = similar_items(df, start=T, end=T + timedelta(days=7))
    assert frame.empty
    assert list(frame.columns) == frame_schema(embeddings=False).names
    table = pa.Table.from_pandas(frame, schema=frame_schema(embeddings=False), preserve_index=False)
    assert table.schema.field("similar_author_ids").type == pa.list_(pa.string())


def test_write_leak_set_types_an_empty_float64_frame_from_its_schema(tmp_path: Path) -> None:
    """pandas types an empty frame built from column names float64 (lists and timestamps too):
    written with its schema, it reads back with string ids and typed lists, not floats."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ranker_hooks.lis.feast_defs import write_leak_set
    from ranker_hooks.lis.leaks.similar_items import frame_schema

    schema = frame_schema(embeddings=True)
    frame = pd.DataFrame({n: pd.Series(dtype="float64") for n in schema.names})
    leak = write_leak_set(
        tmp_path, frame, kind="similar_items", horizon_days=7, key="author_id",
        window_start=T, window_end=T + timedelta(days=7), schema=schema,
    )  # fmt: skip
    back = pq.read_table(leak.path / "rows" / "part-00000.parquet")
    assert (leak.rows, back.num_rows) == (0, 0)
    assert back.schema.field("author_id").type == pa.string()
    assert back.schema.field("event_timestamp").type == pa.timestamp("us", tz="UTC")
    assert back.schema.field("similar_author_ids").type == pa.list_(pa.string())
    assert back.schema.field("similar_author_mean_emb").type == pa.list_(pa.float32())
    assert back.schema.field("knowledge_ts").type == pa.int64()
    with pytest.raises(LeakBuildError, match="field 'similar_author_ids'.*missing"):
        write_leak_set(
            tmp_path, frame.drop(columns=["similar_author_ids"]), kind="similar_items",
            horizon_days=7, key="author_id", window_start=T, window_end=T, schema=schema,
        )  # fmt: skip


def test_lis_variants_skip_a_leak_set_without_values_with_a_note(tmp_path: Path) -> None:
    """A leak set with no row, or no value in the variant's column (no user has a next positive
    within n days), has nothing to measure: its variant is skipped and said, the others run."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ranker_hooks.lis.feast_defs import LeakSet
    from ranker_hooks.lis.variants import lis_variants

    class Store:  # every service is registered
        def get_feature_service(self, name: str) -> str:
            return name

    def leak(kind: str, n: int, values: list) -> LeakSet:
        folder = tmp_path / f"{kind}_n{n}"
        col = "similar_author_mean_emb" if kind == "similar_items" else "next_positive_emb"
        (folder / "rows").mkdir(parents=True)
        table = pa.table({col: pa.array(values, type=pa.list_(pa.float32()))})
        pq.write_table(table, folder / "rows" / "part-00000.parquet")
        return LeakSet(
            name=f"{kind}_n{n}", kind=kind, horizon_days=n,
            key="author_id" if kind == "similar_items" else "user_id",
            window_start=T.isoformat(), window_end=(T + timedelta(days=n)).isoformat(),
            rows=len(values), path=folder,
        )  # fmt: skip

    sets = {
        "similar_items_n7": leak("similar_items", 7, []),
        "next_positive_n7": leak("next_positive", 7, [None, None, None]),
        "similar_items_n30": leak("similar_items", 30, [[0.5, 0.5]]),
        "next_positive_n30": leak("next_positive", 30, [None, [1.0, 0.0]]),
    }
    variants, notes = lis_variants(Store(), "template", horizons=(7, 30), leak_sets=sets)
    assert [v.name for v in variants] == [
        "lis_future_id_n7",
        "lis_future_id_n30",
        "lis_similar_items_n30",
        "lis_next_positive_n30",
    ]
    window = f"(window [{T.isoformat()}, {(T + timedelta(days=7)).isoformat()})): nothing leaks"
    assert notes == [
        f"variant lis_similar_items_n7 skipped: leak set 'similar_items_n7' has no row {window}",
        (
            "variant lis_next_positive_n7 skipped: leak set 'next_positive_n7' holds no "
            f"next_positive_emb in its 3 rows {window}"
        ),
    ]
