"""The AIS ablation end to end on a tiny registered Feast store, tracked in a temp MLflow SQLite.

Reuses the feature repo test's hand-made feature sets (``template`` and ``llm``: 3 users with
snapshots at T0, T0+10d, T0+20d; 3 authors) and adds interactions over [T0-2d, T0+25d) where
user ``u<k>`` likes author ``a<k>``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_feast_repo import AUTHORS, REPO, T0, T_END, USERS, make_cfg

from mspa_features.config import Workspace
from mspa_features.errors import LeakedFeatureError
from ranker_hooks.ablation.run import AblationConfig, make_ranker, run_ablation
from ranker_hooks.ablation.split import TemporalSplit, split_interactions
from ranker_hooks.ablation.variants import HookContext, Variant, VariantHook
from ranker_hooks.inject import InjectionSpec, offline_matrix, online_matrix

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SPLIT = TemporalSplit(
    train_start=T0 - timedelta(days=2), split_at=T0 + timedelta(days=15), eval_days=10
)
SEEDS = [0, 1]


def write_interactions(cfg) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for day in range(-2, 25):
        for hour in (3, 15):
            for u, user in enumerate(USERS):
                for a, author in enumerate(AUTHORS):
                    p = 0.8 if a == u else 0.2
                    ts = T0 + timedelta(days=day, hours=hour + a)
                    rows.append((user, author, ts, int(rng.random() < p)))
    # A user with no features and no training rows: OOV id, every feature missing.
    for k in range(4):
        rows.append(("u9", "a0", T0 + timedelta(days=16 + k), k % 2))
    df = pd.DataFrame(rows, columns=["user_id", "author_id", "event_timestamp", "label"])
    df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True)
    df["action"], df["value"] = "rate", df["label"] * 5.0
    df["label"] = df["label"].astype("int8")
    path = Workspace(cfg.workspace).data(cfg.name) / "interactions.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(path)
    return df


class FutureAuthorSwap(VariantHook):
    """A tiny LIS future-ID leak: warm-start a copy of M_T on [T, T+w), swap its author table."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def after_fit(self, ranker, ctx: HookContext):
        future = ctx.read("baseline__template", ctx.test_rows, InjectionSpec())
        with tempfile.TemporaryDirectory() as d:
            ranker.save(Path(d))
            later = type(ranker).load(Path(d))
        later.fit(future, warm_start=True)
        ranker.load_id_embeddings(later.export_id_embeddings("author"))
        self.calls.append(ctx.seed)
        return ranker


def ablation_config(tmp: Path) -> AblationConfig:
    return AblationConfig(
        name="tiny",
        split=SPLIT,
        seeds=SEEDS,
        ranker={"type": "torch", "params": {"epochs": 2, "batch_size": 64, "hidden": [8]}},
        injection={"max_tokens": 8, "token_buckets": 256},
        bootstrap={"n_boot": 50},
        read_chunk_rows=200,  # several Feast reads per service: must change no value
        mlflow={"tracking_uri": f"sqlite:///{tmp / 'mlflow.db'}", "experiment": "tiny"},
        repo_path=REPO,
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    from mspa_features.serving.materialize import open_store, register

    tmp = tmp_path_factory.mktemp("ablation")
    cfg = make_cfg(tmp, "tiny")
    register(cfg, None, repo_path=REPO, end=T_END)
    interactions = write_interactions(cfg)
    store = open_store(cfg, repo_path=REPO)
    acfg = ablation_config(tmp)
    hook = FutureAuthorSwap()
    lis = Variant(
        name="lis_future_author",
        kind="lis",
        service="baseline__template",
        leaked=True,
        hook=hook,
        description="M_T with M_{T+w}'s author table",
    )
    result = run_ablation(cfg, acfg, extra_variants=[lis], store=store, run_name="tiny-run")
    return cfg, acfg, store, interactions, result, hook


def test_results_json_contract(tiny) -> None:
    cfg, _, _, interactions, result, hook = tiny
    path = Workspace(cfg.workspace).results / "ablation" / "tiny-run" / "results.json"
    assert result.results_path == path
    doc = json.loads(path.read_text())
    names = [v["name"] for v in doc["variants"]]
    assert names == [
        "baseline", "preference", "author", "cosine", "all", "llm_text", "text_tokens",
        "lis_future_author",
    ]  # fmt: skip
    train, test = split_interactions(interactions, SPLIT)
    fields = [
        "name", "kind", "leaked", "auc", "uauc", "gauc", "logloss", "wpauc", "delta_auc",
        "delta_auc_ci_low", "delta_auc_ci_high", "p_value", "n_train", "n_test", "mlflow_run_id",
    ]  # fmt: skip
    for v in doc["variants"]:
        assert set(fields) <= set(v), v["name"]
        assert (v["n_train"], v["n_test"]) == (len(train), len(test))
        assert 0.0 <= v["auc"] <= 1.0 and v["logloss"] > 0
        assert v["delta_auc_ci_low"] <= v["delta_auc_ci_high"] and 0 <= v["p_value"] <= 1
        assert len(v["auc_seeds"]) == len(SEEDS)
        assert isinstance(v["mlflow_run_id"], str) and v["mlflow_run_id"]
    base = doc["variants"][0]
    assert base["kind"] == "baseline" and base["delta_auc"] == 0.0 and base["p_value"] == 1.0
    by = {v["name"]: v for v in doc["variants"]}
    assert by["lis_future_author"]["kind"] == "lis" and by["lis_future_author"]["leaked"] is True
    assert not any(v["leaked"] for v in doc["variants"] if v["kind"] != "lis")
    assert by["all"]["delta_auc"] == pytest.approx(by["all"]["auc"] - base["auc"], abs=1e-12)
    # Every delta carries its CI (one paired user bootstrap for all), the baseline's is zero.
    for m in ("auc", "uauc", "gauc", "logloss", "wpauc"):
        assert base[f"delta_{m}"] == base[f"delta_{m}_ci_low"] == base[f"delta_{m}_ci_high"] == 0
        v = by["all"]
        assert v[f"delta_{m}"] == pytest.approx(v[m] - base[m], abs=1e-12), m
        assert v[f"delta_{m}_ci_low"] <= v[f"delta_{m}_ci_high"], m
    assert by["llm_text"]["feature_refs"][0] == "user_preferences__llm:pref_emb"
    assert by["cosine"]["feature_refs"] == ["user_author_cosine__template:pref_author_cosine"]
    assert hook.calls == SEEDS  # the LIS hook ran once per seed
    for name in ("comparison.csv", "comparison.md", "delta_auc.png"):
        assert (path.parent / name).stat().st_size > 0


def test_metrics_are_wired_to_a_deterministic_retrain(tiny) -> None:
    """Retraining the baseline outside the runner gives the reported metrics exactly."""
    from mspa_features.evaluation import metrics

    _, acfg, store, interactions, result, _ = tiny
    train, test = split_interactions(interactions, SPLIT)
    tr = offline_matrix(store, "baseline__template", train)
    te = offline_matrix(store, "baseline__template", test)
    probs = []
    for seed in SEEDS:
        r = make_ranker(acfg, seed)
        r.fit(tr)
        probs.append(r.predict(te))
    p = np.mean(probs, axis=0)
    base = result.variants[0]
    assert base.auc == metrics.auc(te.labels, p)
    assert base.uauc == metrics.uauc(te.labels, p, te.user_ids)
    assert base.gauc == metrics.gauc(te.labels, p, te.user_ids)
    assert base.logloss == metrics.logloss(te.labels, p)
    assert base.wpauc == metrics.wpauc(te.labels, p)
    assert base.auc_seeds == [metrics.auc(te.labels, q) for q in probs]


def test_mlflow_parent_and_nested_runs_read_back(tiny) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    _, acfg, _, _, result, _ = tiny
    uri = acfg.mlflow.tracking_uri
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["tiny"])
    parent = runs[runs["run_id"] == result.parent_run_id].iloc[0]
    assert parent["tags.mspa.kind"] == "ablation"
    assert parent["params.window.split_at"] == SPLIT.split_at.isoformat()
    assert parent["params.seeds"] == "0,1"
    assert parent["params.feature_set"] == "template"
    children = runs[runs["tags.mlflow.parentRunId"] == result.parent_run_id]
    assert len(children) == len(result.variants)
    by = {r["tags.variant"]: r for _, r in children.iterrows()}
    for v in result.variants:
        row = by[v.name]
        assert row["run_id"] == v.mlflow_run_id
        assert row["tags.variant_kind"] == v.kind
        assert row["tags.leaked"] == str(v.leaked).lower()
        assert row["params.feature_service"] == v.service
        assert row["metrics.auc"] == pytest.approx(v.auc)
        assert row["metrics.delta_auc_ci_high"] == pytest.approx(v.delta_auc_ci_high)
        assert row["metrics.delta_logloss_ci_low"] == pytest.approx(v.delta_logloss_ci_low)
        assert row["metrics.delta_wpauc"] == pytest.approx(v.delta_wpauc)
    assert by["all"]["params.model_version"] == "tmpl-v1"
    assert by["cosine"]["params.feature_refs"] == "user_author_cosine__template:pref_author_cosine"
    client = MlflowClient(tracking_uri=uri)
    artifacts = {a.path for a in client.list_artifacts(result.parent_run_id)}
    assert {"results.json", "comparison.csv", "comparison.md", "delta_auc.png"} <= artifacts
    refs = client.download_artifacts(by["all"]["run_id"], "feature_refs.json")
    assert json.loads(Path(refs).read_text())["feature_refs"] == result.variants[4].feature_refs


def test_runs_compare_prints_both_ablations(tiny) -> None:
    from typer.testing import CliRunner

    from mspa_features.cli import app

    _, acfg, _, _, result, _ = tiny
    out = CliRunner().invoke(
        app,
        ["runs", "compare", result.parent_run_id, "tiny-run", "--tracking-uri",
         acfg.mlflow.tracking_uri],
        env={"COLUMNS": "200"},  # rich sizes tables from the environment
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    for v in result.variants:
        assert v.name in out.output
    assert f"{result.variants[0].auc:.4f}" in out.output
    # The same run twice: its stored eval rows match, so B - A comes with a paired CI, [0, 0].
    assert "paired user bootstrap CIs" in out.output
    assert "[+0.0000, +0.0000]" in out.output
    bad = CliRunner().invoke(
        app, ["runs", "compare", "nope", "tiny-run", "--tracking-uri", acfg.mlflow.tracking_uri]
    )
    assert bad.exit_code != 0
    assert "no ablation run with id or name 'nope'" in str(bad.exception)


def test_online_and_offline_injection_agree(tiny) -> None:
    """Same entity, same instant (after the last snapshot was materialized): same matrix."""
    _, _, store, _, _, _ = tiny
    pairs = [(u, a) for u in [*USERS, "ghost"] for a in AUTHORS]
    entity = pd.DataFrame(pairs, columns=["user_id", "author_id"])
    entity["event_timestamp"] = pd.Timestamp(T_END)
    spec = InjectionSpec(text_tokens=True, max_tokens=8, token_buckets=256)
    off = offline_matrix(store, "all__template", entity, spec, label_column=None)
    on = online_matrix(store, "all__template", pairs, spec, as_of=T_END)
    assert on.dense_names == off.dense_names
    assert len(off.dense_names) == 2 * (384 + 1) + 2 * 2
    np.testing.assert_allclose(on.dense, off.dense, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(on.tokens, off.tokens)
    missing = off.dense[:, off.dense_names.index("pref_emb__missing")]
    np.testing.assert_array_equal(missing, [0] * 9 + [1] * 3)  # only the ghost user


def test_leaked_view_is_refused_before_any_training(tmp_path) -> None:
    from mspa_features.serving.materialize import open_store, register

    cfg = make_cfg(tmp_path, "leaky", sets=("template",))
    register(cfg, None, repo_path=REPO, leaked={"template": True}, materialize=False)
    write_interactions(cfg)
    acfg = ablation_config(tmp_path).model_copy(update={"variants": ["baseline", "preference"]})
    with pytest.raises(LeakedFeatureError) as e:
        run_ablation(cfg, acfg, store=open_store(cfg, repo_path=REPO), run_name="leaky-run")
    # The empty baseline service holds no view: it is refused through its own leaked tag.
    assert "variant 'baseline'" in str(e.value) and "baseline__template" in str(e.value)
    assert not (tmp_path / "mlflow.db").exists()
    assert not (Workspace(cfg.workspace).results / "ablation" / "leaky-run").exists()
    shutil.rmtree(Workspace(cfg.workspace).root, ignore_errors=True)
