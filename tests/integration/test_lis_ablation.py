"""LIS end to end on a tiny synthetic run: build and register the leak sets, run the ablation
runner with the LIS variants beside the baseline, and read the verdicts.

The data is built so each leak has something to find: a user's taste (the parity of the
authors they like) flips at T, so M_T's author table is stale for the evaluation window and
the future (n-day) tables and the next-positive author carry the new taste.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from mspa_features.config import DataConfig, RunConfig, Workspace
from mspa_features.data.contracts import AUTHOR_PROFILES, INTERACTIONS, PREFERENCES
from mspa_features.errors import LeakedFeatureError

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2] / "feature_repo"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
T = T0 + timedelta(days=40)
DIM = 4
N_USERS, N_AUTHORS = 30, 12


def interactions() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for day in range(70):
        for _ in range(40):
            u, a = int(rng.integers(N_USERS)), int(rng.integers(N_AUTHORS))
            ts = T0 + timedelta(days=day, seconds=int(rng.integers(86_400)))
            # Authors change audience at T: before, users like authors of their parity; after,
            # half of the authors (a < 6) flip. The future author tables see the flip.
            flip = ts >= T and a < N_AUTHORS // 2
            like = (u % 2 == a % 2) != flip
            label = int(like if rng.random() > 0.1 else not like)
            rows.append((f"u{u}", f"a{a}", ts, "rate", float(label), label))
    df = pd.DataFrame(rows, columns=[f.name for f in INTERACTIONS.schema])
    df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True)
    return df


def write_feature_set(root: Path) -> None:
    unit = np.eye(DIM, dtype=np.float32)
    prefs = [
        {"user_id": f"u{u}", "event_timestamp": T0, "created_timestamp": T0, "history_count": 1,
         "history_last_ts": T0, "pref_text": "x", "pref_emb": unit[u % DIM].tolist(),
         "model_version": "t", "prompt_hash": "h"}
        for u in range(N_USERS)
    ]  # fmt: skip
    authors = [
        {"author_id": f"a{a}", "event_timestamp": T0, "created_timestamp": T0,
         "author_text": "x", "author_emb": unit[a % DIM].tolist(), "model_version": "t",
         "prompt_hash": "h"}
        for a in range(N_AUTHORS)
    ]  # fmt: skip
    for sub, rows, contract in (
        ("preferences", prefs, PREFERENCES),
        ("author_profiles", authors, AUTHOR_PROFILES),
    ):
        d = root / sub / f"ds={T0:%Y-%m-%d}"
        d.mkdir(parents=True)
        pq.write_table(
            pa.Table.from_pylist(rows, schema=contract.schema),
            d / "p.parquet",
            coerce_timestamps="us",
        )


@pytest.fixture(scope="module")
def lis_run(tmp_path_factory: pytest.TempPathFactory):
    from mspa_features.serving.materialize import open_store, register
    from ranker_hooks.ablation.run import AblationConfig, run_ablation
    from ranker_hooks.lis.feast_defs import register_leaks
    from ranker_hooks.lis.leaks.build import build_leak_sets
    from ranker_hooks.lis.variants import lis_variants
    from ranker_hooks.rankers.torch_ranker import TorchRanker

    tmp = tmp_path_factory.mktemp("lis")
    cfg = RunConfig(name="toy", workspace=tmp / "ws", data=DataConfig(source="movielens"))
    ws = Workspace(cfg.workspace)
    df = interactions()
    ws.data("toy").mkdir(parents=True)
    pq.write_table(
        pa.Table.from_pandas(df, schema=INTERACTIONS.schema, preserve_index=False),
        ws.data("toy") / "interactions.parquet",
        coerce_timestamps="us",
    )
    write_feature_set(ws.features("toy") / "template")
    register(cfg, None, repo_path=REPO, materialize=False)
    params = {
        "id_dim": 4,
        "dense_dim": 4,
        "hidden": [8],
        "epochs": 15,
        "batch_size": 64,
        "lr": 0.01,
    }
    build_leak_sets(
        cfg,
        split_at=T,
        horizons=(7, 30),
        make_ranker=lambda: TorchRanker(threads=1, **{**params, "hidden": (8,)}),
        workdir=tmp,
    )
    register_leaks(cfg, repo_path=REPO)
    store = open_store(cfg, repo_path=REPO)
    lis, notes = lis_variants(store, "template", horizons=(7, 30))
    ab = AblationConfig(
        name="lis",
        variants=["baseline"],
        split={"split_at": T, "eval_days": 30},
        seeds=[0],
        threads=1,
        ranker={"type": "torch", "params": params},
        bootstrap={"n_boot": 200},
        mlflow={"tracking_uri": f"sqlite:///{tmp / 'mlflow.db'}"},
        repo_path=REPO,
    )
    result = run_ablation(cfg, ab, extra_variants=lis, store=store)
    # Config files for the CLI test, same run and ablation.
    run_yaml = tmp / "run.yaml"
    run_yaml.write_text(
        yaml.safe_dump(
            {"name": "toy", "workspace": str(cfg.workspace), "data": {"source": "movielens"}}
        )
    )
    dumped = json.loads(ab.model_dump_json())
    (tmp / "ablation.yaml").write_text(yaml.safe_dump({**dumped, "run_config": str(run_yaml)}))
    return cfg, store, lis, notes, result


def test_lis_variants_run_beside_the_baseline(lis_run) -> None:
    _, _, _, notes, result = lis_run
    assert notes == []
    names = [v.name for v in result.variants]
    assert names[0] == "baseline"
    assert set(names[1:]) == {
        f"lis_{k}_n{n}" for k in ("future_id", "similar_items", "next_positive") for n in (7, 30)
    }
    rows = {v.name: v for v in result.variants}
    assert all(rows[n].leaked and rows[n].kind == "lis" for n in names[1:])
    assert rows["lis_similar_items_n7"].feature_refs == [
        "leak__similar_items_n7:similar_author_mean_emb"
    ]
    # The future tables know the taste flip: both horizons beat M_T, clearly.
    for n in (7, 30):
        r = rows[f"lis_future_id_n{n}"]
        assert r.delta_auc_ci_low > 0, (n, r.delta_auc, r.delta_auc_ci_low)
    # A longer look ahead sees more of the new world.
    assert rows["lis_future_id_n30"].delta_auc > rows["lis_future_id_n7"].delta_auc


def test_verdicts_from_the_runner_rows(lis_run) -> None:
    from ranker_hooks.lis.ablation import verdict_rows

    _, _, _, _, result = lis_run
    out = {r["variant"]: r for r in verdict_rows(result)}
    assert out["baseline"]["effect"] == "reference"
    n30 = out["lis_future_id_n30"]
    assert (n30["leak_kind"], n30["horizon_days"], n30["effect"]) == ("future_id", 30, "gain")
    assert n30["verdict"].startswith(
        "ID embeddings from 30 days ahead carry information the ranker lacks"
    )
    assert out["lis_similar_items_n7"]["leak_kind"] == "similar_items"


def test_guard_refuses_a_leak_in_an_ais_variant(lis_run) -> None:
    from ranker_hooks.ablation.run import check_not_leaked
    from ranker_hooks.ablation.variants import Variant
    from ranker_hooks.lis.leaks.guard import refuse_leaks

    _, store, _, _, _ = lis_run
    sneaky = Variant(name="sneaky", kind="ais", service="lis__next_positive_n7")
    with pytest.raises(LeakedFeatureError, match="leak__next_positive_n7"):
        check_not_leaked(store, sneaky)
    with pytest.raises(LeakedFeatureError, match="leak__next_positive_n7"):
        refuse_leaks(store, sneaky.service, sneaky.name, kind=sneaky.kind)


def test_cli_lis_prints_verdicts_and_writes_them(lis_run) -> None:
    from typer.testing import CliRunner

    from mspa_features.cli import app

    cfg, _, _, _, _ = lis_run
    config = Path(cfg.workspace).parent / "ablation.yaml"
    args = ["lis", "-c", str(config), "--no-build", "--no-ais", "-k", "future_id", "-n", "30"]
    res = CliRunner().invoke(app, args, catch_exceptions=False, env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "lis_future_id_n30" in res.output and "carry information the ranker lacks" in res.output
    runs = sorted((Path(cfg.workspace) / "results" / "ablation").glob("*/lis_verdicts.json"))
    verdicts = json.loads(runs[-1].read_text())
    assert [r["variant"] for r in verdicts] == ["baseline", "lis_future_id_n30"]
    assert verdicts[1]["effect"] == "gain"
    # The LIS report is an artifact of the ablation's MLflow parent run.
    from mlflow.tracking import MlflowClient

    parent = json.loads((runs[-1].parent / "results.json").read_text())["parent_run_id"]
    client = MlflowClient(tracking_uri=f"sqlite:///{Path(cfg.workspace).parent / 'mlflow.db'}")
    logged = {a.path for a in client.list_artifacts(parent)}
    assert {"lis_verdicts.json", "lis_verdicts.md", "results.json"} <= logged
