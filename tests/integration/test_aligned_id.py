"""The aligned-ID AIS variant end to end on the tiny LIS run (test_lis_ablation's builders), with
three cold authors first seen after T: the aligned set is point-in-time clean, registers as a
non-leaked Feast view, runs as an AIS variant, and the cold-slice metrics cover exactly the
test rows of cold authors.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_lis_ablation import DIM, N_USERS, REPO, T, interactions, write_feature_set

from mspa_features.config import DataConfig, RunConfig, Workspace
from mspa_features.data.contracts import AUTHOR_PROFILES, INTERACTIONS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COLD = ("a20", "a21", "a22")
PARAMS = {"id_dim": 4, "dense_dim": 4, "hidden": [8], "epochs": 15, "batch_size": 64, "lr": 0.01}


def with_cold_authors(df: pd.DataFrame) -> pd.DataFrame:
    """Add 40 rows per cold author in [T+1d, T+25d): liked by users of its parity."""
    rng = np.random.default_rng(1)
    rows = []
    for k, author in enumerate(COLD):
        for _ in range(40):
            u = int(rng.integers(N_USERS))
            ts = T + timedelta(days=1 + 3 * k, seconds=int(rng.integers(20 * 86_400)))
            label = int(u % 2 == k % 2)
            rows.append((f"u{u}", author, ts, "rate", float(label), label))
    cold = pd.DataFrame(rows, columns=df.columns)
    cold["event_timestamp"] = pd.to_datetime(cold["event_timestamp"], utc=True)
    return pd.concat([df, cold], ignore_index=True)


def write_cold_profiles(root: Path, df: pd.DataFrame) -> pd.Series:
    """A composer snapshot per cold author at its first interaction (when it becomes known)."""
    first = df[df["author_id"].isin(COLD)].groupby("author_id")["event_timestamp"].min()
    unit = np.eye(DIM, dtype=np.float32)
    rows = [
        {"author_id": a, "event_timestamp": ts, "created_timestamp": ts, "author_text": "x",
         "author_emb": unit[k % DIM].tolist(), "model_version": "t", "prompt_hash": "h"}
        for k, (a, ts) in enumerate(first.items())
    ]  # fmt: skip
    d = root / "author_profiles" / f"ds={T:%Y-%m-%d}"
    d.mkdir(parents=True)
    pq.write_table(
        pa.Table.from_pylist(rows, schema=AUTHOR_PROFILES.schema),
        d / "cold.parquet",
        coerce_timestamps="us",
    )
    return first


def make_ranker():
    from ranker_hooks.rankers.torch_ranker import TorchRanker

    return TorchRanker(threads=1, seed=0, **{**PARAMS, "hidden": (8,)})


@pytest.fixture(scope="module")
def aligned_run(tmp_path_factory: pytest.TempPathFactory):
    from mspa_features.serving.materialize import open_store, register
    from ranker_hooks.ablation.run import AblationConfig, run_ablation
    from ranker_hooks.aligned_id.build import aligned_variants, build_aligned_set
    from ranker_hooks.aligned_id.feast_defs import register_aligned

    tmp = tmp_path_factory.mktemp("aligned")
    cfg = RunConfig(name="toy", workspace=tmp / "ws", data=DataConfig(source="movielens"))
    ws = Workspace(cfg.workspace)
    df = with_cold_authors(interactions())
    ws.data("toy").mkdir(parents=True)
    pq.write_table(
        pa.Table.from_pandas(df, schema=INTERACTIONS.schema, preserve_index=False),
        ws.data("toy") / "interactions.parquet",
        coerce_timestamps="us",
    )
    write_feature_set(ws.features("toy") / "template")
    first_seen = write_cold_profiles(ws.features("toy") / "template", df)
    register(cfg, None, repo_path=REPO, materialize=False)

    # Everything at or after T rewritten (labels flipped, rows added): must change nothing.
    future = df["event_timestamp"] >= T
    tampered = df.copy()
    tampered.loc[future, "label"] = 1 - tampered.loc[future, "label"]
    extra = tampered[future].head(50).assign(user_id="u_new", author_id="a_new")
    tampered = pd.concat([tampered, extra], ignore_index=True)
    build_aligned_set(cfg, split_at=T, make_ranker=make_ranker, interactions=tampered)
    aligned_dir = ws.features("toy") / "aligned" / "template"
    tampered_rows = pd.read_parquet(aligned_dir / "rows")

    report = build_aligned_set(cfg, split_at=T, make_ranker=make_ranker, interactions=df)
    register_aligned(cfg, "template", repo_path=REPO)
    store = open_store(cfg, repo_path=REPO)
    variants, notes = aligned_variants(store, "template")
    ab = AblationConfig(
        name="aligned",
        variants=["baseline"],
        split={"split_at": T, "eval_days": 30},
        seeds=[0],
        threads=1,
        ranker={"type": "torch", "params": PARAMS},
        bootstrap={"n_boot": 200},
        mlflow={"tracking_uri": f"sqlite:///{tmp / 'mlflow.db'}"},
        repo_path=REPO,
    )
    result = run_ablation(cfg, ab, extra_variants=variants, store=store)
    return {
        "cfg": cfg,
        "df": df,
        "first_seen": first_seen,
        "report": report,
        "rows": pd.read_parquet(aligned_dir / "rows"),
        "tampered_rows": tampered_rows,
        "store": store,
        "notes": notes,
        "result": result,
    }


def test_aligned_set_uses_nothing_at_or_after_T(aligned_run) -> None:
    from ranker_hooks.aligned_id.feast_defs import FEATURE

    rows, report = aligned_run["rows"], aligned_run["report"]
    pd.testing.assert_frame_equal(rows, aligned_run["tampered_rows"])
    # Row by row: a value depends on the adapter (interactions before T) and its own snapshot.
    df = aligned_run["df"]
    last_train = df.loc[df["event_timestamp"] < T, "event_timestamp"].max()
    assert pd.Timestamp(report.aligned.knowledge_ts) == last_train < T
    snap_us = rows["event_timestamp"].astype("datetime64[us, UTC]").astype("int64")
    expected = np.maximum(snap_us, int(last_train.value // 1000))
    assert (rows["knowledge_ts"] == expected).all()
    # Every author has a prediction, warm or cold; cold ones from their first sighting on.
    assert set(rows["author_id"]) == set(df["author_id"])
    cold = rows.set_index("author_id").loc[list(COLD)]
    first = aligned_run["first_seen"].loc[list(COLD)]
    assert (cold["event_timestamp"].to_numpy() == first.to_numpy()).all()
    assert all(len(v) == PARAMS["id_dim"] for v in rows[FEATURE])
    assert report.n_warm == 12 and report.n_snapshots == 15


def test_feast_reads_cold_predictions_point_in_time(aligned_run) -> None:
    from mspa_features.serving.reads import historical_features
    from ranker_hooks.aligned_id.feast_defs import FEATURE
    from ranker_hooks.lis.leaks.guard import future_information

    a, ts = COLD[0], aligned_run["first_seen"].loc[COLD[0]]
    entity = pd.DataFrame(
        {
            "user_id": ["u0", "u0"],
            "author_id": [a, a],
            "event_timestamp": [ts - timedelta(days=1), ts + timedelta(days=1)],
        }
    )
    out = historical_features(aligned_run["store"], "aligned__template", entity)
    out = out.sort_values("event_timestamp").reset_index(drop=True)
    before, after = out[FEATURE].iloc[0], out[FEATURE].iloc[1]
    assert before is None or (isinstance(before, float) and np.isnan(before))
    truth = aligned_run["rows"].set_index("author_id").loc[a, FEATURE]
    np.testing.assert_allclose(np.asarray(after, dtype=np.float32), truth, rtol=1e-6)
    # Joined with its knowledge_ts, no evaluation row reads anything after its own time.
    rows = aligned_run["rows"][["author_id", "event_timestamp", "knowledge_ts"]].copy()
    df = aligned_run["df"]
    test = df[df["event_timestamp"] >= T].copy()
    for frame in (rows, test):
        frame["event_timestamp"] = frame["event_timestamp"].astype("datetime64[us, UTC]")
    joined = pd.merge_asof(
        test.sort_values("event_timestamp"),
        rows.sort_values("event_timestamp"),
        on="event_timestamp",
        by="author_id",
    )
    assert joined["knowledge_ts"].notna().all()
    assert future_information(joined, knowledge_columns=["knowledge_ts"]).empty


def test_aligned_variant_is_ais_and_not_leaked(aligned_run) -> None:
    from ranker_hooks.lis.leaks.guard import refuse_leaks

    result, store = aligned_run["result"], aligned_run["store"]
    assert aligned_run["notes"] == []
    by = {v.name: v for v in result.variants}
    assert list(by) == ["baseline", "aligned_id"]
    v = by["aligned_id"]
    assert (v.kind, v.leaked, v.service) == ("ais", False, "aligned__template")
    assert v.feature_refs == ["aligned_author_id__template:aligned_author_id_emb"]
    assert v.model_version == aligned_run["report"].aligned.model_version
    assert "M_T" in v.model_version and "adapter" in v.model_version
    assert refuse_leaks(store, "aligned__template", "aligned_id", kind="ais") == {}
    view = store.get_feature_view("aligned_author_id__template")
    assert view.tags["leaked"] == "false" and view.tags["split_at"] == T.isoformat()


def test_cold_slice_covers_exactly_the_cold_test_rows(aligned_run) -> None:
    from ranker_hooks.ablation.run import MIN_COLD_USERS
    from ranker_hooks.ablation.split import TemporalSplit, split_interactions

    result = aligned_run["result"]
    df = aligned_run["df"]
    _, test = split_interactions(df, TemporalSplit(split_at=T, eval_days=30))
    first = df.groupby("author_id")["event_timestamp"].min()
    cold_test = test[test["author_id"].map(first) >= T]
    assert set(cold_test["author_id"]) == set(COLD)
    doc = json.loads(result.results_path.read_text())
    base, aligned = doc["variants"]
    for row in (base, aligned):
        assert row["cold_n_test"] == len(cold_test)
        assert 0.0 <= row["cold_auc"] <= 1.0
    assert base["cold_delta_auc"] == 0.0
    assert aligned["cold_delta_auc"] == pytest.approx(
        aligned["cold_auc"] - base["cold_auc"], abs=1e-12
    )
    n_users = cold_test["user_id"].nunique()
    if n_users >= MIN_COLD_USERS:
        assert aligned["cold_delta_auc_ci_low"] <= aligned["cold_delta_auc_ci_high"]
    else:
        assert aligned["cold_delta_auc_ci_low"] is None
        assert any("cold slice" in n for n in doc["notes"])
