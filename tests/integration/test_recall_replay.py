"""`mspa recall` end to end on a small synthetic run, checked against brute force (issue 18: 1).

A small synthetic live-stream run is backfilled (template composer, weekly snapshots) and
registered in milvus-lite. The replay's Hit Rate@K of the preference and popularity sources is
recomputed here by brute force from the raw parquet rows (each query: the latest preference
snapshot at or before its instant, every author's latest profile at or before it, authors
already engaged with excluded, top K by cosine with ties against the target), and at an
instant where the catalogue is the online one, the exact point-in-time search agrees with the
online vector path (:func:`mspa_features.serving.nearest.nearest`, milvus).
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SPLIT = datetime(2026, 1, 5, 12, tzinfo=UTC)  # after Monday 01-05's snapshots
EVAL_DAYS = 4
KS = (1, 3, 5, 40)  # 40 > the 16 authors: capped at the catalogue size


def _cli(*args: str) -> str:
    from mspa_features.cli import run_cli

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = run_cli(list(args))
    assert rc == 0, out.getvalue()
    return out.getvalue()


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from mspa_features.config import Workspace, load_config
    from mspa_features.data.ingest import ingest_folder, write_results
    from mspa_features.data.synthetic import write_synthetic

    root = tmp_path_factory.mktemp("recall")
    config = root / "run.yaml"
    config.write_text(yaml.safe_dump({
        "name": "tinyrecall", "workspace": str(root / "ws"), "seed": 0,
        "data": {"source": "synthetic", "synthetic": {
            "n_users": 40, "n_authors": 16, "days": 9, "frames_per_author": 1, "frame_size": 16,
        }},
    }))
    ablation = root / "ablation.yaml"
    ablation.write_text(yaml.safe_dump({
        "name": "tinyrecall", "run_config": str(config),
        "split": {"split_at": SPLIT.isoformat(), "eval_days": EVAL_DAYS},
        "seeds": [0], "ranker": {"type": "torch", "params": {"epochs": 1, "id_dim": 8}},
        "bootstrap": {"n_boot": 200, "seed": 0},
    }))
    cfg = load_config(config)
    ws = Workspace(cfg.workspace)
    write_synthetic(cfg.data.synthetic, ws.raw / "synthetic")
    results = ingest_folder(ws.raw / "synthetic", author_modalities=("profile_text", "frames"))
    write_results(results, ws.data(cfg.name), ws.quarantine(cfg.name))
    # The Spark backfill in its own process (its JVM stays out of the test process).
    proc = subprocess.run(
        [sys.executable, "-m", "mspa_features.cli", "backfill", str(config), "--start",
         "2026-01-01", "--end", "2026-01-10", "--cadence", "weekly", "--master", "local[2]",
         "--conf", "spark.sql.shuffle.partitions=2"],
        capture_output=True, text=True, cwd=root, timeout=900, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    repo = str(REPO / "feature_repo")
    _cli("register", str(config), "--online", "milvus", "--repo", repo,
         "--end", "2026-01-11 00:00:00")
    args = ["recall", str(config), "--ablation", str(ablation), "--online", "milvus",
            "--repo", repo, "--horizon", "2", "--n-boot", "200",
            "--mlflow-uri", f"sqlite:///{root / 'mlflow.db'}"]
    for k in KS:
        args += ["--k", str(k)]
    doc = json.loads(_cli(*args, "--json"))
    return {"cfg": cfg, "ws": ws, "doc": doc, "root": root, "repo": repo}


def _latest(rows: pd.DataFrame, key: str, col: str, t: pd.Timestamp) -> dict[str, np.ndarray]:
    r = rows[rows["event_timestamp"] <= t].sort_values("event_timestamp", kind="stable")
    return {str(k): np.asarray(g[col].iloc[-1], np.float64) for k, g in r.groupby(key)}


def _brute(replay: dict) -> dict[str, dict[int, float]]:
    """Hit Rate@K of pref@template and popularity from the raw rows, by brute force."""
    ws, name = replay["ws"], replay["cfg"].name
    inter = pd.read_parquet(ws.data(name) / "interactions.parquet")
    inter["user_id"] = inter["user_id"].astype(str)
    inter["author_id"] = inter["author_id"].astype(str)
    authors = sorted(pd.read_parquet(ws.data(name) / "authors.parquet")["author_id"].astype(str))
    prefs = pq.read_table(ws.features(name) / "template" / "preferences").to_pandas()
    profs = pq.read_table(ws.features(name) / "template" / "author_profiles").to_pandas()
    for f in (prefs, profs):
        f["event_timestamp"] = pd.to_datetime(f["event_timestamp"], utc=True)
    pos = inter[inter["label"] == 1]
    end = pd.Timestamp(SPLIT) + timedelta(days=EVAL_DAYS)
    test = pos[(pos["event_timestamp"] >= pd.Timestamp(SPLIT)) & (pos["event_timestamp"] < end)]
    ks = replay["doc"]["ks"]
    hits: dict[str, list[list[bool]]] = {"pref@template": [], "popularity": []}
    for u, a, t in zip(test["user_id"], test["author_id"], test["event_timestamp"], strict=True):
        seen = set(pos.loc[(pos["user_id"] == u) & (pos["event_timestamp"] < t), "author_id"])
        # popularity: positives strictly before t; every synthetic author is valid from day 0
        count = pos[pos["event_timestamp"] < t].groupby("author_id").size()
        pop = {x: float(count.get(x, 0)) for x in authors if x not in seen}
        pref = _latest(prefs, "user_id", "pref_emb", t).get(u)
        cat = {x: v for x, v in _latest(profs, "author_id", "author_emb", t).items()
               if x not in seen}
        cos = {} if pref is None else {
            x: float(v @ pref / (np.linalg.norm(v) * np.linalg.norm(pref))) for x, v in cat.items()
        }
        for src, scores in (("pref@template", cos), ("popularity", pop)):
            # ties against the target: it sorts after every other author with its score
            order = sorted(scores, key=lambda x, s=scores: (-s[x], x == a))
            hits[src].append([a in order[:k] for k in ks])
    return {src: dict(zip(ks, np.mean(h, axis=0).tolist(), strict=True))
            for src, h in hits.items()}


def test_hit_rates_match_brute_force(replay: dict) -> None:
    doc = replay["doc"]
    assert doc["ks"] == [1, 3, 5, 16] and doc["n_authors"] == 16 and doc["exclude_seen"]
    names = [s["name"] for s in doc["sources"]]
    assert names[:2] == ["id@M_T", "popularity"]
    assert {"pref@template", "lis@future_id_n2"} <= set(names)
    brute = _brute(replay)
    assert doc["n_queries"] > 10
    by = {s["name"]: s for s in doc["sources"]}
    for src, rates in brute.items():
        for k, v in rates.items():
            assert by[src]["hit_rate"][str(k)]["value"] == pytest.approx(v, abs=1e-12), (src, k)
    for s in doc["sources"]:
        hr = [s["hit_rate"][str(k)] for k in doc["ks"]]
        assert all(h["ci_low"] <= h["value"] <= h["ci_high"] for h in hr)
        assert [h["value"] for h in hr] == sorted(h["value"] for h in hr)  # monotone in K
        assert s["leaked"] == s["name"].startswith("lis@")
    assert by["id@M_T"]["delta_vs_baseline"]["1"]["delta"] == 0.0
    assert Path(doc["plot_path"]).stat().st_size > 10_000


def test_mlflow_run(replay: dict) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{replay['root'] / 'mlflow.db'}")
    run = client.get_run(replay["doc"]["mlflow_run_id"])
    assert run.data.metrics["hit_rate_at_16/popularity"] == pytest.approx(
        next(s for s in replay["doc"]["sources"] if s["name"] == "popularity")["hit_rate"]["16"][
            "value"
        ]
    )
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"recall.json",
                                                                         "recall.png"}


def test_exact_search_agrees_with_online_vector_path(replay: dict) -> None:
    """After the last snapshot the catalogue at the instant is the online one: the exact
    point-in-time search (what the replay does) and milvus return the same top K."""
    from mspa_features.evaluation.recall import brute_force_top_k, cosine_scores
    from mspa_features.serving.catalogue import iter_catalogue
    from mspa_features.serving.materialize import open_store
    from mspa_features.serving.nearest import nearest
    from mspa_features.serving.reads import historical_features

    cfg, k = replay["cfg"], 5
    store = open_store(cfg, repo_path=Path(replay["repo"]), online="milvus")
    at = pd.Timestamp("2026-01-10 12:00", tz="UTC")  # the last weekly snapshots: 01-05
    authors = sorted(pd.read_parquet(replay["ws"].data(cfg.name) / "authors.parquet")
                     ["author_id"].astype(str))
    users = sorted(pd.read_parquet(replay["ws"].data(cfg.name) / "users.parquet")
                   ["user_id"].astype(str))
    prefs = historical_features(
        store, ["user_preferences__template:pref_emb"],
        pd.DataFrame({"user_id": users, "author_id": "", "event_timestamp": [at] * len(users)}),
    )
    have = [(u, v) for u, v in zip(prefs["user_id"], prefs["pref_emb"], strict=True)
            if v is not None][:6]
    assert len(have) >= 3
    (ep,) = list(iter_catalogue(store, "author_profiles__template", "author_emb", "author_id",
                                authors, [at]))
    assert ep.valid.all()
    exact = brute_force_top_k(cosine_scores(np.stack([v for _, v in have]), ep.matrix), k)
    for (u, _), top in zip(have, exact, strict=True):
        _, hits = nearest(store, "template", user=u, top_k=k, as_of=at.to_pydatetime())
        assert list(hits["author_id"]) == [authors[i] for i in top], u
