"""The backfill on a real Spark standalone cluster equals the ``local[*]`` run, row for row.

A master and one worker start on 127.0.0.1 from the ``spark-class`` that pyspark's wheel ships
(no separate Spark download); both jobs of the one ``spark_jobs/submit.py`` entry run through
``spark-submit --master spark://127.0.0.1:<port>`` and, as the reference, through ``spark-submit
--master local[2]``, each on its own copy of the same accepted MovieLens data. Texts and keys must be
equal; embeddings equal to float32 rounding (the executors batch texts differently from the local
run, and the encoder's padding depends on the batch).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
START, END = "1997-09-20", "1997-09-26"  # one week of daily partitions


def _spark_bin() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent / "bin"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
        SPARK_LOCAL_IP="127.0.0.1",
        SPARK_LOG_DIR=str(tmp / "logs"),
        SPARK_PID_DIR=str(tmp),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


def _alive_workers(ui_port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=2) as r:
            return int(json.load(r).get("aliveworkers", 0))
    except OSError:
        return 0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A standalone master + one 2-core worker on loopback; yields the master URL."""
    tmp = tmp_path_factory.mktemp("spark-cluster")
    env = _env(tmp)
    port, ui, wui = _free_port(), _free_port(), _free_port()
    spark_class = str(_spark_bin() / "spark-class")
    procs = []
    logs = []
    try:
        mlog = open(tmp / "master.log", "w")  # noqa: SIM115 - closed in finally
        logs.append(mlog)
        procs.append(subprocess.Popen(
            [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
             "--port", str(port), "--webui-port", str(ui)],
            env=env, stdout=mlog, stderr=subprocess.STDOUT,
        ))
        wlog = open(tmp / "worker.log", "w")  # noqa: SIM115
        logs.append(wlog)
        procs.append(subprocess.Popen(
            [spark_class, "org.apache.spark.deploy.worker.Worker", f"spark://127.0.0.1:{port}",
             "--host", "127.0.0.1", "--cores", "2", "--memory", "3g", "--webui-port", str(wui),
             "--work-dir", str(tmp / "work")],
            env=env, stdout=wlog, stderr=subprocess.STDOUT,
        ))
        deadline = time.monotonic() + 120
        while _alive_workers(ui) < 1:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                pytest.fail(
                    "Spark standalone cluster did not come up:\n"
                    + (tmp / "master.log").read_text()[-2000:]
                    + (tmp / "worker.log").read_text()[-2000:]
                )
            time.sleep(1)
        yield f"spark://127.0.0.1:{port}", env
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        for f in logs:
            f.close()


@pytest.fixture(scope="module")
def ml_data(tmp_path_factory, movielens_raw) -> Path:
    from mspa_features.data import movielens
    from mspa_features.data.ingest import write_results

    root = tmp_path_factory.mktemp("ml_data")
    write_results(movielens.convert(movielens_raw).results(), root / "movielens", root / "q")
    return root / "movielens"


def _config(tmp_path_factory, ml_data: Path, name: str) -> Path:
    from mspa_features.config import Workspace

    ws = tmp_path_factory.mktemp(name)
    shutil.copytree(ml_data, Workspace(ws / "workspace").data("movielens"))
    cfg = ws / "run.yaml"
    cfg.write_text(yaml.safe_dump({
        "name": "movielens", "workspace": str(ws / "workspace"),
        "data": {"source": "movielens"},
    }))
    return cfg


def _submit(master: str, env: dict[str, str], job: str, cfg: Path) -> dict:
    cmd = [
        str(_spark_bin() / "spark-submit"), "--master", master,
        "--conf", "spark.ui.enabled=false", "--conf", "spark.executor.memory=2g",
        str(REPO / "spark_jobs" / "submit.py"), job,
        "--config", str(cfg), "--start", START, "--end", END,
    ]
    proc = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=900, cwd=REPO, check=False
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout[proc.stdout.index("{"):])


def _rows(cfg: Path, entity: str) -> dict[str, list]:
    from mspa_features.config import load_config
    from mspa_features.snapshots.backfill import BackfillConfig, feature_set_dir, read_partitions

    run = load_config(cfg)
    t = read_partitions(feature_set_dir(run, BackfillConfig()) / entity)
    key = "user_id" if entity == "preferences" else "author_id"
    return t.sort_by([("ds", "ascending"), (key, "ascending")]).to_pydict()


@pytest.mark.parametrize(
    ("job", "entity", "text"),
    [
        ("preferences", "preferences", "pref_text"),
        ("authors", "author_profiles", "author_text"),
    ],
)
def test_cluster_backfill_equals_local_row_for_row(
    cluster, tmp_path_factory, ml_data, job, entity, text
):
    master, env = cluster
    local_cfg = _config(tmp_path_factory, ml_data, f"local-{entity}")
    cluster_cfg = _config(tmp_path_factory, ml_data, f"cluster-{entity}")
    local_counts = _submit("local[2]", env, job, local_cfg)[entity]
    cluster_counts = _submit(master, env, job, cluster_cfg)[entity]

    assert cluster_counts["written"] > 0
    for k in ("requested", "written", "quarantined"):
        assert cluster_counts[k] == local_counts[k], k
    want, got = _rows(local_cfg, entity), _rows(cluster_cfg, entity)
    assert len(got["ds"]) == cluster_counts["written"]
    emb = "pref_emb" if entity == "preferences" else "author_emb"
    for col, values in want.items():
        if col in (emb, "created_ts"):
            continue
        assert got[col] == values, col  # keys, instants and texts: exactly equal
    assert got[text] == want[text]
    np.testing.assert_allclose(
        np.asarray(got[emb], np.float32), np.asarray(want[emb], np.float32), rtol=0, atol=1e-6
    )
