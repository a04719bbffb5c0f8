"""Leak sets written under the workspace and registered with the run's Feast store beside an
MSPA feature set: tags, the guard, and point-in-time reads of the leaked views."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mspa_features.config import DataConfig, RunConfig, Workspace
from mspa_features.data.contracts import AUTHOR_PROFILES, PREFERENCES
from mspa_features.errors import LeakBuildError, LeakedFeatureError
from ranker_hooks.lis.feast_defs import (
    discover_leak_sets,
    leak_view_name,
    leaks_root,
    lis_service_name,
    register_leaks,
    write_leak_set,
)
from ranker_hooks.lis.leaks.guard import future_information, leaked_views, refuse_leaks
from ranker_hooks.lis.leaks.next_positive import next_positive
from ranker_hooks.lis.leaks.similar_items import similar_items
from ranker_hooks.rankers.base import IdEmbeddings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2] / "feature_repo"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
T = T0 + timedelta(days=20)
DAY = timedelta(days=1)
DIM = 4


def interactions() -> pd.DataFrame:
    rows = [
        ("u0", "a0", T0 + DAY, 1), ("u0", "a1", T0 + 2 * DAY, 0), ("u0", "a1", T + DAY, 1),
        ("u0", "a2", T + 3 * DAY, 1), ("u1", "a0", T0 + DAY, 1), ("u1", "a2", T + 2 * DAY, 1),
        ("u1", "a1", T + 2 * DAY, 1), ("u2", "a2", T + DAY, 1), ("u2", "a1", T + 4 * DAY, 1),
    ]  # fmt: skip
    df = pd.DataFrame(rows, columns=["user_id", "author_id", "event_timestamp", "label"])
    df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True)
    return df


def write_mspa_set(root: Path) -> None:
    """A one-snapshot MSPA feature set ``template`` (clean, leaked=false)."""
    unit = np.eye(DIM, dtype=np.float32)
    prefs = [
        {"user_id": f"u{u}", "event_timestamp": T0, "created_timestamp": T0, "history_count": 1,
         "history_last_ts": T0 - DAY, "pref_text": f"u{u}", "pref_emb": unit[u].tolist(),
         "model_version": "tmpl", "prompt_hash": "h"}
        for u in range(3)
    ]  # fmt: skip
    authors = [
        {"author_id": f"a{a}", "event_timestamp": T0, "created_timestamp": T0,
         "author_text": f"a{a}", "author_emb": unit[a].tolist(), "model_version": "tmpl",
         "prompt_hash": "h"}
        for a in range(3)
    ]  # fmt: skip
    for sub, rows, contract in (
        ("preferences", prefs, PREFERENCES),
        ("author_profiles", authors, AUTHOR_PROFILES),
    ):
        d = root / sub / f"ds={T0:%Y-%m-%d}"
        d.mkdir(parents=True)
        pq.write_table(
            pa.Table.from_pylist(rows, schema=contract.schema),
            d / "part-00000.parquet",
            coerce_timestamps="us",
        )


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    from mspa_features.serving.materialize import open_store, register

    tmp = tmp_path_factory.mktemp("leaks")
    cfg = RunConfig(name="toy", workspace=tmp / "ws", data=DataConfig(source="movielens"))
    write_mspa_set(Workspace(cfg.workspace).features(cfg.name) / "template")
    register(cfg, None, repo_path=REPO, end=T + 30 * DAY, materialize=False)

    df = interactions()
    emb = IdEmbeddings(
        kind="author",
        ids=np.array(["a0", "a1", "a2"], dtype=object),
        matrix=np.arange(3 * DIM, dtype=np.float32).reshape(3, DIM),
    )
    root = leaks_root(cfg)
    sets = {
        "sim": write_leak_set(
            root,
            similar_items(df, start=T, end=T + 7 * DAY, embeddings=emb),
            kind="similar_items",
            horizon_days=7,
            key="author_id",
            window_start=T,
            window_end=T + 7 * DAY,
        ),
        "next": write_leak_set(
            root,
            next_positive(df, horizon_days=7, embeddings=emb),
            kind="next_positive",
            horizon_days=7,
            key="user_id",
            window_start=T0,
            window_end=T + 30 * DAY,
        ),
    }
    report = register_leaks(cfg, repo_path=REPO, materialize=True, end=T + 30 * DAY)
    return cfg, sets, report, open_store(cfg, repo_path=REPO)


def test_leak_sets_are_written_under_the_workspace_and_discovered(run) -> None:
    cfg, sets, report, _ = run
    root = Workspace(cfg.workspace).features(cfg.name) / "leaks"
    assert sets["sim"].path == (root / "similar_items_n7").resolve()
    assert (sets["next"].path / "rows" / "part-00000.parquet").is_file()
    assert set(discover_leak_sets(cfg)) == {"similar_items_n7", "next_positive_n7"}
    assert sorted(report.services) == ["lis__next_positive_n7", "lis__similar_items_n7"]
    assert sorted(report.materialized) == ["leak__next_positive_n7", "leak__similar_items_n7"]


def test_leak_views_carry_the_tags(run) -> None:
    _, _, _, store = run
    view = store.get_feature_view(leak_view_name("similar_items_n7"))
    assert view.tags["leaked"] == "true"
    assert view.tags["leak_kind"] == "similar_items" and view.tags["horizon_days"] == "7"
    assert {f.name for f in view.features} == {
        "similar_author_ids", "similar_author_scores", "similar_author_mean_emb", "knowledge_ts",
    }  # fmt: skip
    widths = {f.name: f.vector_length for f in view.features}
    assert widths["similar_author_mean_emb"] == DIM and widths["similar_author_ids"] == 0
    svc = store.get_feature_service(lis_service_name("next_positive_n7"))
    assert svc.tags["leaked"] == "true" and svc.tags["leak_kind"] == "next_positive"
    # The MSPA views registered beside them stay clean.
    assert store.get_feature_view("author_profiles__template").tags["leaked"] == "false"


def test_leak_views_never_expire_and_are_listed_for_the_feast_cli(run) -> None:
    from mspa_features.serving.materialize import feast_dir
    from mspa_features.serving.repo import load_feature_sets
    from ranker_hooks.lis.feast_defs import LEAK_TTL

    cfg, sets, _, store = run
    # Not Feast's ttl 0: its first materialize-incremental would start a year before now.
    assert store.get_feature_view(leak_view_name("next_positive_n7")).ttl == LEAK_TTL
    listed = load_feature_sets(feast_dir(cfg, "sqlite") / "feature_sets.yaml")
    assert {n: e.path for n, e in listed.leak_sets.items()} == {
        s.name: s.path for s in sets.values()
    }
    assert set(listed.feature_sets) == {"template"}


def test_guard_finds_leaked_views_and_refuses_non_lis_variants(run) -> None:
    _, _, _, store = run
    for clean in ("baseline__template", "all__template", "with_author__template"):
        assert leaked_views(store, clean) == {}
        assert refuse_leaks(store, clean, clean, kind="ais") == {}
    found = leaked_views(store, "lis__similar_items_n7")
    assert set(found) == {"lis__similar_items_n7", "leak__similar_items_n7"}
    assert found["leak__similar_items_n7"]["leak_kind"] == "similar_items"
    # Refs mixing clean and leaked features: only the leaked view is named.
    refs = ["author_profiles__template:author_emb", "leak__next_positive_n7:next_positive_emb"]
    assert set(leaked_views(store, refs)) == {"leak__next_positive_n7"}
    with pytest.raises(LeakedFeatureError, match="leak__next_positive_n7"):
        refuse_leaks(store, refs, "sneaky", kind="ais")
    assert refuse_leaks(store, "lis__next_positive_n7", "lis_next", kind="lis")
    # The on-demand cosine view reads clean views only.
    assert leaked_views(store, ["user_author_cosine__template:pref_author_cosine"]) == {}


def test_point_in_time_reads_of_leaked_and_clean_services(run) -> None:
    from mspa_features.serving.reads import historical_features

    _, _, _, store = run
    rows = pd.DataFrame(
        {
            "user_id": ["u0", "u0", "u0", "u2"],
            "author_id": ["a0", "a1", "a2", "a1"],
            "event_timestamp": pd.to_datetime([T0 + DAY, T0 + 5 * DAY, T + DAY, T + DAY], utc=True),
        }
    )
    got = historical_features(store, "lis__next_positive_n7", rows)
    # u0 at T0+1d: next positive within 7 days? none (a1 positive is at T+1d, 20 days on).
    # u0 at T+1d: next after it is a2 at T+3d; u2 at T+1d: a1 at T+4d.
    assert got["next_positive_author_id"].tolist()[0] is None or pd.isna(
        got["next_positive_author_id"].tolist()[0]
    )
    assert got["next_positive_author_id"].tolist()[2:] == ["a2", "a1"]
    assert got["next_positive_in_s"].tolist()[2:] == [2 * 86_400, 3 * 86_400]
    # Row by row, the leaked frame knows the future; the baseline frame holds no leak column.
    flagged = future_information(got)
    assert sorted(flagged.index) == [2, 3]
    base = historical_features(store, "baseline__template", rows)
    assert "knowledge_ts" not in base.columns and "next_positive_author_id" not in base.columns
    # Static leak views never expire: rows from the first interaction on see them.
    sim = historical_features(store, "lis__similar_items_n7", rows)
    # In [T, T+7d) a1 and a2 share every user and a0 has no positive (no row: nulls).
    ids = sim["similar_author_ids"].tolist()
    assert ids[0] is None and [list(x) for x in ids[1:]] == [["a2"], ["a1"], ["a2"]]


def test_write_leak_set_rejects_bad_frames(tmp_path: Path) -> None:
    df = next_positive(interactions(), horizon_days=7)
    common = {"kind": "next_positive", "horizon_days": 7, "key": "user_id"}
    common |= {"window_start": T0, "window_end": T}
    with pytest.raises(LeakBuildError, match="unknown leak kind"):
        write_leak_set(tmp_path, df, **{**common, "kind": "oops"})
    with pytest.raises(LeakBuildError, match="'knowledge_ts' is missing"):
        write_leak_set(tmp_path, df.drop(columns="knowledge_ts"), **common)
    bad = df.copy()
    bad.loc[2, "user_id"] = None
    with pytest.raises(LeakBuildError, match="record row 2 field 'user_id'"):
        write_leak_set(tmp_path, bad, **common)
    with pytest.raises(LeakBuildError, match="name"):
        write_leak_set(tmp_path, df, **common, name="a__b")
