"""A multi-task (click, gift) AIS ablation end to end on registered Feast stores.

Two data sets, each with three actions (shown and not clicked, ``click``, ``tip``: a gift
implies a click), so the click task (click or tip) and the gift task (tip) differ:

* hand-written actions on the tiny store of ``test_feast_repo`` (``view``/``click``/``tip``);
* the synthetic generator's impressions (``impression``/``click``/``tip``, the model of
  ``configs/synthetic.yaml``) with the tasks of ``configs/ablation/synthetic.yaml``, on a store
  whose preference and author embeddings are the generator's latent categories.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from test_ablation import SPLIT, ablation_config
from test_feast_repo import AUTHORS, REPO, T0, T_END, USERS, make_cfg

from mspa_features.config import DataConfig, RunConfig, Workspace
from mspa_features.errors import AblationError
from mspa_features.evaluation.metric_names import task_key
from ranker_hooks.ablation.config import TaskSpec, load_ablation_config
from ranker_hooks.ablation.results import TASK_METRICS
from ranker_hooks.ablation.run import make_ranker, run_ablation
from ranker_hooks.ablation.split import split_interactions
from ranker_hooks.inject import offline_matrix

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TASKS = [
    TaskSpec(name="click", positive=["click", "tip"]),
    TaskSpec(name="gift", positive=["tip"], weight=2.0),
]
VARIANTS = ["baseline", "preference", "all"]
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def write_actions(cfg) -> pd.DataFrame:
    """User u<k> clicks author a<k> most; tips go to author a<(k+1) % 3> most."""
    rng = np.random.default_rng(1)
    rows = []
    for day in range(-2, 25):
        for hour in (3, 15):
            for u, user in enumerate(USERS):
                for a, author in enumerate(AUTHORS):
                    ts = T0 + timedelta(days=day, hours=hour + a)
                    p_tip = 0.6 if a == (u + 1) % 3 else 0.1
                    p_click = 0.7 if a == u else 0.25
                    r = rng.random()
                    action = "tip" if r < p_tip else "click" if rng.random() < p_click else "view"
                    rows.append((user, author, ts, action))
    df = pd.DataFrame(rows, columns=["user_id", "author_id", "event_timestamp", "action"])
    df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True)
    df["label"] = (df["action"] == "tip").astype("int8")  # the contract's label: the gift
    df["value"] = 1.0
    path = Workspace(cfg.workspace).data(cfg.name) / "interactions.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(path)
    return df


@pytest.fixture(scope="module")
def multi(tmp_path_factory: pytest.TempPathFactory):
    from mspa_features.serving.materialize import open_store, register

    tmp = tmp_path_factory.mktemp("multitask")
    cfg = make_cfg(tmp, "tiny")
    register(cfg, None, repo_path=REPO, end=T_END)
    interactions = write_actions(cfg)
    store = open_store(cfg, repo_path=REPO)
    single = ablation_config(tmp).model_copy(update={"variants": VARIANTS})
    acfg = single.model_copy(update={"tasks": TASKS})
    result = run_ablation(cfg, acfg, store=store, run_name="mt-run")
    default = run_ablation(cfg, single, store=store, run_name="st-run")
    return cfg, acfg, single, store, interactions, result, default


def write_generated_features(cfg: RunConfig) -> None:
    """The template feature set of a generated run: one preference per user at the window's
    start (the normalised indicator of the user's preferred categories) and one profile per
    author (its category, one-hot), so the preference variants carry the generator's taste."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mspa_features.data.contracts import AUTHOR_PROFILES, PREFERENCES
    from mspa_features.data.synthetic import (
        CATEGORIES,
        author_ids,
        author_latents,
        user_latents,
    )

    syn = cfg.data.synthetic
    t0 = syn.start
    pref = user_latents(syn, 0, syn.n_users).preferred_categories().astype(np.float32)
    pref /= np.linalg.norm(pref, axis=1, keepdims=True)
    one_hot = np.eye(len(CATEGORIES), dtype=np.float32)[author_latents(syn).category]
    common = {"event_timestamp": t0, "created_timestamp": t0, "model_version": "latent",
              "prompt_hash": "h"}  # fmt: skip
    prefs = [
        {**common, "user_id": f"u{u:07d}", "history_count": 1, "history_last_ts": t0,
         "pref_text": "x", "pref_emb": pref[u].tolist()}
        for u in range(syn.n_users)
    ]  # fmt: skip
    authors = [
        {**common, "author_id": a, "author_text": "x", "author_emb": one_hot[i].tolist()}
        for i, a in enumerate(author_ids(syn.n_authors))
    ]
    root = Workspace(cfg.workspace).features(cfg.name) / "template"
    for sub, rows, contract in (
        ("preferences", prefs, PREFERENCES),
        ("author_profiles", authors, AUTHOR_PROFILES),
    ):
        d = root / sub / f"ds={t0:%Y-%m-%d}"
        d.mkdir(parents=True)
        table = pa.Table.from_pylist(rows, schema=contract.schema)
        pq.write_table(table, d / "p.parquet", coerce_timestamps="us")


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory):
    """The shipped synthetic tasks on generated impressions (the ingest's accepted rows)."""
    from mspa_features.data.ingest import ensure_data
    from mspa_features.data.synthetic import SyntheticConfig
    from mspa_features.serving.materialize import open_store, register

    tmp = tmp_path_factory.mktemp("generated")
    shipped = load_ablation_config(CONFIGS / "ablation" / "synthetic.yaml")
    run_syn = yaml.safe_load((CONFIGS / "synthetic.yaml").read_text())["data"]["synthetic"]
    assert run_syn["impressions"]["enabled"] is True  # the shipped run has impressions
    syn = SyntheticConfig(
        n_users=60,
        n_authors=24,
        frames_per_author=1,  # the synthetic preset requires the frames modality
        frame_size=8,
        start=SPLIT.train_start,
        days=(SPLIT.split_at - SPLIT.train_start).days + SPLIT.eval_days,
        impressions=run_syn["impressions"],
    )
    cfg = RunConfig(
        name="gen", workspace=tmp / "ws", data=DataConfig(source="synthetic", synthetic=syn)
    )
    ensure_data(cfg, Workspace(cfg.workspace))
    write_generated_features(cfg)
    register(cfg, None, repo_path=REPO, materialize=False)
    store = open_store(cfg, repo_path=REPO)
    acfg = ablation_config(tmp).model_copy(update={"variants": VARIANTS, "tasks": shipped.tasks})
    result = run_ablation(cfg, acfg, store=store, run_name="gen-run")
    interactions = pd.read_parquet(Workspace(cfg.workspace).data(cfg.name) / "interactions.parquet")
    return shipped, interactions, result


def check_task_rows(result, tasks: list[str]) -> dict:
    """Every variant has a row per task with each metric and ordered CIs; the baseline's deltas
    are 0 and a variant's are its metric minus the baseline's; the top-level row is the first
    task's; tasks.csv and comparison.md hold the per-task tables. Returns results.json."""
    doc = json.loads(result.results_path.read_text())
    assert [v["name"] for v in doc["variants"]] == VARIANTS
    for v in doc["variants"]:
        assert list(v["tasks"]) == tasks
        for task, m in v["tasks"].items():
            assert set(m) == set(TASK_METRICS), task
            assert 0.0 <= m["auc"] <= 1.0 and 0.0 <= m["uauc"] <= 1.0
            for k in ("auc", "uauc", "gauc"):
                assert m[f"delta_{k}_ci_low"] <= m[f"delta_{k}_ci_high"], (v["name"], task, k)
        # the top-level metrics are the first task's
        assert v["auc"] == v["tasks"][tasks[0]]["auc"]
        assert v["delta_auc"] == v["tasks"][tasks[0]]["delta_auc"]
    base, all_ = doc["variants"][0], doc["variants"][2]
    assert all(base["tasks"][t]["delta_uauc"] == 0.0 for t in tasks)
    for t in tasks:
        m, b = all_["tasks"][t], base["tasks"][t]
        assert m["delta_auc"] == pytest.approx(m["auc"] - b["auc"], abs=1e-12)
        assert m["delta_uauc"] == pytest.approx(m["uauc"] - b["uauc"], abs=1e-12)
    folder = result.results_path.parent
    tasks_csv = pd.read_csv(folder / "tasks.csv")
    assert list(tasks_csv["task"]) == [t for t in tasks for _ in VARIANTS]
    assert "## Per task" in (folder / "comparison.md").read_text()
    return doc


def test_click_and_gift_rows_with_cis(multi) -> None:
    _, _, _, _, _, result, _ = multi
    doc = check_task_rows(result, ["click", "gift"])
    # the tasks differ: a model ranking one does not score the other the same
    all_ = doc["variants"][2]
    assert all_["tasks"]["click"]["auc"] != all_["tasks"]["gift"]["auc"]


def test_generated_click_is_not_the_mirror_of_gift(generated) -> None:
    """On the generator's impressions the shipped click task (click or tip) is not gift's
    complement: the labels differ on the click-only rows (about a fifth), both tasks have
    positives and negatives, and the heads' AUCs differ for every variant."""
    shipped, interactions, result = generated
    assert [(t.name, t.positive) for t in shipped.tasks] == [
        ("gift", ["tip"]),
        ("click", ["click", "tip"]),
    ]
    act = interactions["action"]
    assert set(act) == {"impression", "click", "tip"}
    gift = act.isin(["tip"]).to_numpy()
    click = act.isin(["click", "tip"]).to_numpy()
    assert (click >= gift).all()  # every tip is a click
    # the old engagement-only data made click the exact complement of gift: (click != gift)
    # on every row; with impressions they differ on the click-only rows alone
    differ = (click != gift).mean()
    assert 0.12 < differ < 0.35, differ
    assert 0 < gift.mean() < click.mean() < 0.5
    doc = check_task_rows(result, ["gift", "click"])
    # a mirrored click head restated gift's AUCs within 0.0005 for every variant; here they part
    gaps = [abs(v["tasks"]["click"]["auc"] - v["tasks"]["gift"]["auc"]) for v in doc["variants"]]
    assert max(gaps) > 0.01, gaps
    # the store's embeddings are the latent taste, which drives tips far more than clicks
    # (clicks follow popularity): the taste features gain more AUC on gift than on click
    all_ = doc["variants"][2]["tasks"]
    assert all_["gift"]["delta_auc"] > all_["click"]["delta_auc"] + 0.02, all_


def test_task_metrics_logged_to_mlflow(multi) -> None:
    from mlflow.tracking import MlflowClient

    _, acfg, _, _, _, result, _ = multi
    client = MlflowClient(tracking_uri=acfg.mlflow.tracking_uri)
    v = result.variants[2]
    logged = client.get_run(v.mlflow_run_id).data.metrics
    for task in ("click", "gift"):
        for k in TASK_METRICS:
            assert logged[task_key(task, k)] == pytest.approx(v.tasks[task][k]), (task, k)


def test_task_metrics_match_a_multi_head_retrain(multi) -> None:
    """The baseline's per-task AUCs are those of a two-head ranker trained outside the runner."""
    from mspa_features.evaluation import metrics

    _, acfg, _, store, interactions, result, _ = multi
    train, test = split_interactions(interactions, SPLIT)
    tr = offline_matrix(store, "baseline__template", train)
    te = offline_matrix(store, "baseline__template", test)
    y_tr = np.stack([train["action"].isin(t.positive) for t in TASKS], axis=1).astype(np.int8)
    y_te = np.stack([test["action"].isin(t.positive) for t in TASKS], axis=1).astype(np.int8)
    tr.labels, te.labels = y_tr, y_te
    probs = []
    for seed in acfg.seeds:
        r = make_ranker(acfg, seed)
        assert r.config.task_weights == (1.0, 2.0)
        r.fit(tr)
        probs.append(r.predict(te))
    p = np.mean(probs, axis=0)  # (n_test, 2)
    base = result.variants[0]
    for j, t in enumerate(TASKS):
        assert base.tasks[t.name]["auc"] == metrics.auc(y_te[:, j], p[:, j])


def test_single_task_default_is_unchanged(multi) -> None:
    """No ``tasks:``: no task rows, and the label-column AUC of a plain one-head retrain
    (the ranker and metrics as before multi-task existed), seed for seed."""
    from mspa_features.evaluation import metrics

    _, _, single, store, interactions, _, default = multi
    train, test = split_interactions(interactions, SPLIT)
    tr = offline_matrix(store, "baseline__template", train)
    te = offline_matrix(store, "baseline__template", test)
    assert tr.labels.ndim == 1
    probs = []
    for seed in single.seeds:
        r = make_ranker(single, seed)
        assert r.config.task_weights == ()
        r.fit(tr)
        probs.append(r.predict(te))
    base = default.variants[0]
    assert all(v.tasks == {} for v in default.variants)
    assert base.auc_seeds == [metrics.auc(te.labels, q) for q in probs]
    assert base.auc == metrics.auc(te.labels, np.mean(probs, axis=0))
    assert not (default.results_path.parent / "tasks.csv").exists()


def test_a_task_without_both_classes_is_refused(multi) -> None:
    cfg, acfg, _, store, _, _, _ = multi
    bad = acfg.model_copy(update={"tasks": [TaskSpec(name="never", positive=["share"])]})
    with pytest.raises(AblationError, match="task 'never'.*only label 0"):
        run_ablation(cfg, bad, store=store, run_name="bad-run")
