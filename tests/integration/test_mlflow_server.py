"""Ablations tracked by a real MLflow tracking server on 127.0.0.1, and a SQLite store that keeps
its artifacts beside the database.

The server (``mlflow server``, own SQLite backend store and artifact destination) is started by
the test and stopped after it. The tiny ablation of ``test_ablation.py`` runs against
``http://127.0.0.1:<port>`` from an unrelated working directory; the parent and nested runs,
their metrics, the git commit, configs, the dataset input, the feature references and the leak
source are read back through ``mlflow.search_runs`` and ``mspa runs compare``.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import redirect_stdout
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from test_ablation import ablation_config, write_interactions
from test_feast_repo import REPO, T_END, make_cfg

from ranker_hooks.ablation.run import run_ablation
from ranker_hooks.ablation.tracking import git_commit
from ranker_hooks.ablation.variants import Variant, VariantHook

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``mlflow server`` on loopback with its own backend store and artifact destination."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    log = open(root / "server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"), "server",
            "--backend-store-uri", f"sqlite:///{root / 'backend.db'}",
            "--artifacts-destination", str(root / "artifacts"),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ],
        stdout=log, stderr=subprocess.STDOUT, cwd=root,
        env={**os.environ, "MLFLOW_ALLOW_FILE_STORE": "false"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            log.close()
            pytest.fail("mlflow server did not start:\n" + (root / "server.log").read_text()[-3000:])
        time.sleep(1)
    try:
        yield url, root
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


class _NoopHook(VariantHook):
    """Leaks nothing: the variant exists to carry a leak_source through to MLflow."""


@pytest.fixture(scope="module")
def tracked(server, tmp_path_factory):
    """Two tiny ablations (seeds 0 and 1) logged to the server from an unrelated cwd."""
    from mspa_features.serving.materialize import open_store, register

    url, root = server
    tmp = tmp_path_factory.mktemp("ablation-srv")
    cfg = make_cfg(tmp, "srv")
    register(cfg, None, repo_path=REPO, end=T_END)
    write_interactions(cfg)
    store = open_store(cfg, repo_path=REPO)
    cwd = tmp_path_factory.mktemp("cwd")
    old = os.getcwd()
    os.chdir(cwd)  # MLflow's ./mlruns default would land here
    try:
        results = []
        for seed, name in ((0, "srv it's a"), (1, "srv b")):
            acfg = ablation_config(tmp).model_copy(
                update={
                    "seeds": [seed],
                    "variants": ["baseline", "preference", "all"],
                    "mlflow": ablation_config(tmp).mlflow.model_copy(
                        update={"tracking_uri": url, "experiment": "srv"}
                    ),
                }
            )
            lis = Variant(
                name="lis_probe", kind="lis", service="baseline__template", leaked=True,
                hook=_NoopHook(), description="a leak-free probe", leak_source="probe window",
            )
            results.append(
                run_ablation(cfg, acfg, extra_variants=[lis], store=store, run_name=name)
            )
    finally:
        os.chdir(old)
    return url, root, cfg, cwd, results


def test_runs_metrics_and_artifacts_live_on_the_server(tracked):
    url, root, _, cwd, (first, _) = tracked
    assert first.parent_run_id and first.tracking_uri == url
    assert not (cwd / "mlruns").exists() and not (cwd / "mlartifacts").exists()
    mlflow.set_tracking_uri(url)
    runs = mlflow.search_runs(experiment_names=["srv"], output_format="list")
    parent = next(r for r in runs if r.info.run_id == first.parent_run_id)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == first.parent_run_id]
    assert sorted(r.data.tags["variant"] for r in children) == sorted(
        v.name for v in first.variants
    )
    for v in first.variants:
        run = next(r for r in children if r.data.tags["variant"] == v.name)
        assert run.data.metrics["auc"] == pytest.approx(v.auc, abs=0, rel=1e-12)
        assert run.data.metrics["delta_auc"] == pytest.approx(v.delta_auc, abs=1e-15)
        assert run.data.params["feature_service"] == v.service
        assert run.data.params["feature_refs"] == ",".join(v.feature_refs)
    probe = next(r for r in children if r.data.tags["variant"] == "lis_probe")
    assert probe.data.params["leak_source"] == "probe window"
    assert probe.data.tags["leaked"] == "true"

    # Reproducible from MLflow alone: commit, both configs, the interactions as an input.
    commit = git_commit(REPO)
    if commit:
        assert parent.data.tags["mlflow.source.git.commit"] == commit
    client = MlflowClient(tracking_uri=url)
    names = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"results.json", "ablation_config.json", "run_config.json"} <= names
    run_cfg = json.loads(
        Path(client.download_artifacts(parent.info.run_id, "run_config.json")).read_text()
    )
    assert run_cfg["name"] == "srv"
    (inp,) = client.get_run(parent.info.run_id).inputs.dataset_inputs
    assert inp.dataset.name == "srv/interactions" and len(inp.dataset.digest) == 16
    # ...and the artifact bytes are where the server keeps them, not in the client's cwd.
    stored = list((root / "artifacts").rglob("run_config.json"))
    assert len(stored) == 2  # one per ablation


def test_runs_compare_reads_both_ablations_back_from_the_server(tracked):
    from mspa_features.cli import run_cli

    url, _, _, _, (a, b) = tracked
    out = io.StringIO()
    with redirect_stdout(out):
        rc = run_cli(["runs", "compare", a.run_name, b.run_name, "--tracking-uri", url])
    text = out.getvalue()
    assert rc == 0, text
    # Every variant of both runs, with both AUCs and their difference read from the server.
    for va, vb in zip(a.variants, b.variants, strict=True):
        assert va.name == vb.name
        row = next(line for line in text.splitlines() if line.startswith(va.name))
        assert f"{va.auc:.4f}" in row and f"{vb.auc:.4f}" in row
        assert f"{vb.auc - va.auc:+.4f}" in row
    assert "lis_probe*" in text and "…" not in text


def test_sqlite_store_keeps_artifacts_beside_the_database(tmp_path, monkeypatch):
    from mspa_features.mlflow_store import artifact_location, ensure_experiment

    db = tmp_path / "store" / "mlflow.db"
    db.parent.mkdir()
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{db}"
    exp = ensure_experiment(uri, "beside")
    assert ensure_experiment(uri, "beside") == exp  # found, not created twice
    client = MlflowClient(tracking_uri=uri)
    assert client.get_experiment(exp).artifact_location == (db.parent / "mlartifacts").as_uri()
    run = client.create_run(exp)
    client.log_dict(run.info.run_id, {"x": 1}, "x.json")
    assert (db.parent / "mlartifacts").is_dir() and not (tmp_path / "mlruns").exists()
    assert artifact_location("http://127.0.0.1:5000") is None


def test_start_run_opens_a_tagged_run_in_the_workspace_store(tmp_path, monkeypatch):
    from mspa_features.errors import InvalidValueError
    from mspa_features.mlflow_store import start_run, workspace_tracking_uri

    ws = tmp_path / "new-ws"  # not created yet: SQLite cannot create the database's folder
    monkeypatch.chdir(tmp_path)
    client, rid = start_run(
        None, "mspa-x", workspace=ws, run_name="a vs b", tags={"mspa.stage": "x"}
    )
    assert client.tracking_uri == workspace_tracking_uri(ws)
    run = client.get_run(rid)
    assert run.info.run_name == "a vs b" and run.data.tags["mspa.stage"] == "x"
    assert run.info.status == "RUNNING"
    exp = client.get_experiment(run.info.experiment_id)
    assert exp.name == "mspa-x"
    assert exp.artifact_location == (ws / "mlartifacts").resolve().as_uri()
    # A second run finds the experiment (not created twice).
    _, rid2 = start_run(None, "mspa-x", workspace=ws, run_name="r2", tags={})
    assert client.get_run(rid2).info.experiment_id == run.info.experiment_id
    # An explicit URI wins over the workspace.
    uri = f"sqlite:///{tmp_path / 'other' / 'mlflow.db'}"
    c3, _ = start_run(uri, "mspa-x", workspace=ws, run_name="r3", tags={})
    assert c3.tracking_uri == uri and (tmp_path / "other" / "mlflow.db").is_file()
    with pytest.raises(InvalidValueError, match="tracking_uri"):
        start_run(None, "mspa-x", run_name="r", tags={})
