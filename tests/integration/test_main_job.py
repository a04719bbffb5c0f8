"""The main job (README command 1) and the CLI, run as a user runs them."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def _mspa(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mspa_features.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=3600,  # the whole main job, on a loaded shared 2-core machine too
        check=False,
        env={**os.environ, "COLUMNS": "160"},
    )


def _approx(value: Any) -> Any:
    """``value`` with every float (nested in dicts and lists) as ``pytest.approx(rel=1e-9)``:
    a rerun in another process may differ in the last bits of a float sum; texts, ids, counts
    and flags stay exact."""
    if isinstance(value, float):
        return pytest.approx(value, rel=1e-9, abs=1e-12, nan_ok=True)
    if isinstance(value, dict):
        return {k: _approx(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_approx(v) for v in value]
    return value


def _config(tmp_path: Path, name: str, raw_cache: Path | None = None) -> Path:
    cfg = yaml.safe_load((REPO / "configs" / name).read_text())
    cfg["workspace"] = str(tmp_path / "ws")
    if "ablation" in cfg:  # the copy lives elsewhere: point at the checkout's ablation config
        cfg["ablation"]["config"] = str(REPO / "configs" / cfg["ablation"]["config"])
    # The LLM composer on a smaller cohort than the shipped one: the same code, CI-sized.
    cfg["eval"].update(cohort_users=4, a2a_triples=6)
    if cfg.get("features", {}).get("sample"):  # the LLM feature set on a CI-sized sample:
        # 6 users x 48 authors hold 16 impressions in the comparison's evaluation window, both
        # labels (9 positive); 4 x 24 held 2, both positive, and the comparison cannot score.
        cfg["features"]["sample"].update(users=6, authors=48)
    if raw_cache is not None:  # reuse the session's download instead of fetching again
        (tmp_path / "ws" / "raw").mkdir(parents=True)
        shutil.copytree(raw_cache, tmp_path / "ws" / "raw" / "ml-100k")
    p = tmp_path / name
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_main_job_on_movielens_prints_and_writes_summary(tmp_path, movielens_raw):
    cfg = _config(tmp_path, "movielens.yaml", movielens_raw)
    proc = _mspa("run", str(cfg), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    out = proc.stdout
    assert "input = accepted + quarantined" in out and "100,000" in out
    assert "popularity" in out and "acc@4" in out and "A2A alignment rate" in out
    summary = json.loads((tmp_path / "ws/results/movielens/summary.json").read_text())
    counts = {c["contract"]: c for c in summary["counts"]}
    assert counts["interactions"]["n_input"] == 100_000
    assert counts["users"]["n_accepted"] == 943 and counts["authors"]["n_accepted"] == 1682
    r = summary["u2a_report"]
    assert (
        r["n_users_in"]
        == r["n_dropped_few_positives"] + r["n_dropped_few_negatives"] + r["n_users_out"]
    )
    pop, rnd = summary["u2a_metrics"]["popularity"], summary["u2a_metrics"]["random"]
    # Time-aware popularity is a real signal on MovieLens: it must beat chance on Acc@10.
    assert pop["acc@10"] > rnd["acc@10"]
    # Composers: template and LLM on the same cohort and author pool, the LLM through llama.cpp.
    ce = summary["composer_eval"]
    assert ce["cohort_users"] == 4 and ce["author_pool"] == "cohort" and ce["a2a_triples"] == 6
    tpl, llm = ce["composers"]["template"], ce["composers"]["llm"]
    assert tpl["n_authors"] == llm["n_authors"] == ce["n_authors"] < 1682
    assert llm["model_version"].startswith("llamacpp:")
    for row in (tpl, llm):  # the LLM answers the lettered questions for both composers
        assert 0.0 <= row["acc@4"] <= 1.0 and "acc@4_std" in row and "a2a" in row
    assert "U2A/A2A on 4 of" in out and "llm" in out
    # Parse status of every generated text, per kind: 4 preferences, the pool's author
    # descriptions, and 4 users x 3 generations x (m = 4, 10) recommendation answers.
    n = {k: sum(llm["parse"][k].values()) for k in ("preferences", "authors", "recommend")}
    assert n == {"preferences": 4, "authors": ce["n_authors"], "recommend": 24}
    assert llm["decoding"] == "constrained"
    # Constrained decoding: every preference, description and answer parses (issue 12: >= 99%).
    for row in (tpl, llm):
        for kind, c in row["parse"].items():
            assert c["ok"] + c["repaired"] >= 0.99 * sum(c.values()), (row["composer"], kind, c)
    assert "  - llm (constrained decoding): preferences" in out
    # the template composes without an LLM; the LLM answers for both, decoded the same way
    assert "  - template (composed without an LLM): preferences" in out
    assert tpl["answer_decoding"] == llm["answer_decoding"] == "constrained"
    # Popularity and random on exactly the cohort's questions, printed beside the composers.
    assert {"acc@4_cohort", "acc@10_cohort"} <= set(pop) and {"acc@4_cohort"} <= set(rnd)
    assert "reference scorers on the same 4 users: popularity acc@4" in out
    # Backfill + register: every author gets a profile, counts reconcile, and the online read
    # for a test user returns its preference and a cosine for every candidate that has one.
    feats = summary["features"]["backfill"]["template"]
    for c in feats.values():
        assert c["requested"] == c["written"] + c["quarantined"] and c["written"] > 0
    assert feats["author_profiles"]["written"] == 1682
    assert summary["features"]["register"]["materialized_rows"]["author_profiles__template"] == 1682
    (shown,) = summary["serving"]
    assert shown["pref_emb_dim"] == 384 and shown["history_count"] > 0
    assert sum(c["target"] for c in shown["candidates"]) == 1
    assert all(-1.0 <= c["cosine"] <= 1.0 for c in shown["candidates"])
    assert "What a ranker receives online" in out and f"user {shown['user_id']}" in out
    # The llm feature set: backfilled through the same Spark job for the seeded sample only,
    # reconciled, registered beside template, every row with its generation status.
    sample = summary["features"]["sample"]
    assert len(sample["users"]) == 6 and len(sample["authors"]) == 48
    llm_bf = summary["features"]["backfill"]["llm"]
    for c in llm_bf.values():
        assert c["requested"] == c["written"] + c["quarantined"] and c["written"] > 0
    assert llm_bf["author_profiles"]["requested"] == 48
    import pyarrow.dataset as pads

    prefs = pads.dataset(llm_bf["preferences"]["path"], partitioning="hive").to_table()
    assert set(prefs.column("user_id").to_pylist()) <= set(sample["users"])
    assert set(prefs.column("pref_status").to_pylist()) <= {"ok", "repaired", "failed"}
    assert set(prefs.column("pref_decoding").to_pylist()) <= {"constrained", "free"}
    assert prefs.column("model_version")[0].as_py().startswith("llamacpp:")
    # the summary counts how the rows were written, from those partitions, and prints it
    statuses = prefs.column("pref_status").to_pylist()
    assert llm_bf["preferences"]["status"] == {k: statuses.count(k) for k in set(statuses)}
    assert sum(llm_bf["author_profiles"]["status"].values()) == 48
    assert "rows ok/repaired/failed: llm preferences" in " ".join(out.split())
    assert summary["features"]["register"]["materialized_rows"]["author_profiles__llm"] == 48
    # Ablation: baseline, AIS and LIS rows in results.json (the contract's fields), leaked flags
    # exactly on LIS rows, one MLflow parent run, a verdict per row, the table printed.
    ab = summary["ablation"]
    rows = json.loads(Path(ab["results_path"]).read_text())["variants"]
    kinds = {r["name"]: r["kind"] for r in rows}
    assert kinds["baseline"] == "baseline" and "all" in kinds
    assert {"lis_future_id_n7", "lis_future_id_n30"} <= set(kinds)
    for r in rows:
        assert r["leaked"] == (r["kind"] == "lis")
        assert r["n_train"] > 0 and r["n_test"] > 0 and 0.5 < r["auc"] < 1.0
        assert r["delta_auc_ci_low"] <= r["delta_auc_ci_high"]  # see the comparison below
    assert ab["mlflow_parent_run_id"] and len(ab["verdicts"]) == len(rows)
    assert "AIS / LIS on the ranker" in out and "lis_future_id_n30" in out
    assert "composer stage:" in out
    # Template vs llm side by side on the sample's impressions: every AIS variant per feature
    # set against one baseline, with CIs, in summary.json and the comparison's results.json.
    cmp = ab["compare"]
    assert cmp["feature_sets"] == ["template", "llm"] and cmp["sample"]["users"] == 6
    crow = json.loads(Path(cmp["results_path"]).read_text())["variants"]
    assert crow == json.loads(json.dumps(cmp["variants"]))
    by_name = {r["name"]: r for r in crow}
    llm_rows = ["preference@llm", "author@llm", "cosine@llm", "llm_text", "text_tokens@llm"]
    tpl_rows = ["preference", "author", "cosine", "all", "text_tokens"]
    assert set(by_name) == {"baseline", *llm_rows, *tpl_rows}
    for name in llm_rows:
        assert by_name[name]["feature_set"] == "llm" and by_name[name]["service"].endswith("__llm")
    for name in tpl_rows:
        assert by_name[name]["feature_set"] == "template"
    for r in crow:
        assert r["n_test"] == cmp["n_test"] > 0 and r["n_train"] == cmp["n_train"] > 0
        # A percentile bootstrap interval need not hold the point estimate (tiny samples put
        # it on an edge, or past it by rounding): an ordered, finite interval.
        assert math.isfinite(r["delta_auc_ci_low"]) and math.isfinite(r["delta_auc_ci_high"])
        assert r["delta_auc_ci_low"] <= r["delta_auc_ci_high"]
    assert "Feature sets side by side on a seeded sample of 6 users" in out
    # Result paths: each alone on its line, relative to the working directory, never broken.
    lines = out.splitlines()
    for path in (cmp["results_path"], ab["results_path"], "ws/results/movielens/summary.json"):
        rel = str(Path(path).relative_to(tmp_path)) if Path(path).is_absolute() else path
        assert f"  {rel}" in lines, rel
    assert not any("llm_text skipped" in n for n in ab["notes"])
    # Rerun is idempotent: same numbers, data reused (the ablation is not rerun: it is the
    # slowest stage and its own tests cover determinism).
    raw = yaml.safe_load(cfg.read_text())
    raw["ablation"]["enabled"] = False
    cfg.write_text(yaml.safe_dump(raw))
    proc2 = _mspa("run", str(cfg), cwd=tmp_path)
    assert proc2.returncode == 0
    again = json.loads((tmp_path / "ws/results/movielens/summary.json").read_text())
    assert again["u2a_metrics"] == _approx(summary["u2a_metrics"])
    # The composer table is reproducible from the seed (LLM texts come back from the cache,
    # the seeded recommendation samples are generated again).
    for name in ("template", "llm"):
        keep = [k for k in summary["composer_eval"]["composers"][name] if k != "seconds"]
        first, second = (r["composer_eval"]["composers"][name] for r in (summary, again))
        assert {k: second[k] for k in keep} == _approx({k: first[k] for k in keep})
    # The backfill rerun replaces its partitions: same counts, nothing duplicated online.
    assert again["features"]["backfill"] == {  # counts and paths: exact
        fs: {
            e: {**c, "seconds": again["features"]["backfill"][fs][e]["seconds"]}
            for e, c in d.items()
        }
        for fs, d in summary["features"]["backfill"].items()
    }
    assert again["serving"] == _approx(summary["serving"])


def test_main_job_on_synthetic(tmp_path):
    cfg = yaml.safe_load((REPO / "configs" / "synthetic.yaml").read_text())
    cfg["workspace"] = str(tmp_path / "ws")
    cfg["data"]["synthetic"].update(n_users=300, n_authors=60)
    cfg["eval"].update(cohort_users=4, a2a_triples=6)
    p = tmp_path / "syn.yaml"
    p.write_text(yaml.safe_dump(cfg))
    proc = _mspa("run", str(p), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    summary = json.loads((tmp_path / "ws/results/synthetic/summary.json").read_text())
    counts = {c["contract"]: c for c in summary["counts"]}
    assert counts["users"]["n_accepted"] == 300 and counts["authors"]["n_accepted"] == 60
    assert summary["n_a2a_triples"] > 0
    assert set(summary["composer_eval"]["composers"]) == {"template", "llm"}


def test_cli_help_for_every_command(tmp_path):
    for args in (
        ["--help"],
        ["data", "--help"],
        ["data", "fetch", "--help"],
        ["data", "validate", "--help"],
        ["run", "--help"],
    ):
        proc = _mspa(*args, cwd=tmp_path)
        assert proc.returncode == 0 and "Usage" in proc.stdout, args


def test_cli_errors_name_file_and_field(tmp_path):
    bad_cfg = tmp_path / "bad.yaml"
    bad_cfg.write_text("name: x\ndata: {source: movielens, threshold: 4}\n")
    proc = _mspa("run", str(bad_cfg), cwd=tmp_path)
    assert proc.returncode == 2
    assert "bad.yaml" in proc.stdout and "data.threshold" in proc.stdout

    csv = tmp_path / "inter.csv"
    csv.write_text("user,author\n1,2\n")
    proc = _mspa("data", "validate", "interactions", str(csv), cwd=tmp_path)
    assert proc.returncode == 2
    assert "inter.csv column 'user_id'" in proc.stdout


def test_cli_validate_quarantines_bad_rows(tmp_path):
    csv = tmp_path / "users.csv"
    csv.write_text("user_id,age\n1,20\n2,abc\n1,30\n")
    proc = _mspa("data", "validate", "users", str(csv), "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "age: not a number 'abc'" in proc.stdout and "duplicate key" in proc.stdout
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "o/users.parquet").num_rows == 1
    assert pq.read_table(tmp_path / "o/users.quarantine.parquet").num_rows == 2
