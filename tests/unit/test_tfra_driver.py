"""TfraRanker's driver side, without the TFRA environment: config, input checks, errors, keys."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from mspa_features.errors import RankerInputError, TfraEnvironmentError, TfraWorkerError
from ranker_hooks.rankers.base import RankerData
from ranker_hooks.rankers.tfra_ranker import PYTHON_ENV_VAR, TfraRanker, id_keys

WORKER = Path(__file__).resolve().parents[2] / "ranker_hooks" / "rankers" / "tfra_worker.py"


def _data(n: int = 8, labels: np.ndarray | None = None) -> RankerData:
    rng = np.random.default_rng(0)
    return RankerData(
        user_ids=np.array([f"u{i % 3}" for i in range(n)], dtype=object),
        author_ids=np.array([f"a{i % 2}" for i in range(n)], dtype=object),
        dense=rng.normal(size=(n, 2)).astype(np.float32),
        dense_names=["cos", "x1"],
        labels=np.arange(n) % 2 if labels is None else labels,
    )


def test_config_rejects_unknown_and_invalid_fields() -> None:
    with pytest.raises(ValidationError, match="cross_layerz"):
        TfraRanker(cross_layerz=2)
    with pytest.raises(ValidationError, match="epochs"):
        TfraRanker(epochs=0)
    with pytest.raises(ValidationError, match="hidden"):
        TfraRanker(hidden=(8, 0))
    # The ablation runner passes the seed as a keyword.
    assert TfraRanker(seed=7, id_dim=4).config.seed == 7


def test_missing_environment_names_the_setup_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nowhere" / "python"
    with pytest.raises(TfraEnvironmentError, match="setup_tfra.sh") as err:
        TfraRanker(python=str(missing)).fit(_data())
    assert str(missing) in str(err.value)
    monkeypatch.setenv(PYTHON_ENV_VAR, str(missing))
    with pytest.raises(TfraEnvironmentError, match=PYTHON_ENV_VAR):
        TfraRanker().fit(_data())


def test_bad_rows_name_the_record_and_field(tmp_path: Path) -> None:
    ranker = TfraRanker(python=str(tmp_path / "unused"))
    labels = np.arange(8) % 2
    labels[5] = 2
    with pytest.raises(RankerInputError, match=r"record 5 field 'labels'"):
        ranker.fit(_data(labels=labels))
    data = _data()
    data.dense[3, 1] = np.nan
    with pytest.raises(RankerInputError, match=r"record 3 field 'dense\[x1\]'"):
        ranker.fit(data)
    with pytest.raises(RankerInputError, match="labels"):
        ranker.fit(RankerData(data.user_ids, data.author_ids, _data().dense, ["cos", "x1"]))
    with pytest.raises(RuntimeError, match="not fitted"):
        ranker.predict(_data())


def test_worker_failure_carries_its_stderr(tmp_path: Path) -> None:
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'boom: no such op' >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(TfraWorkerError, match="boom: no such op") as err:
        TfraRanker(python=str(fake)).fit(_data())
    assert err.value.returncode == 3


def test_id_keys_are_stable_across_processes_and_distinct() -> None:
    ids = np.array(["u1", "u2", "author:42", "é"], dtype=object)
    keys = id_keys(ids)
    assert keys.dtype == np.int64 and len(set(keys.tolist())) == len(ids)
    # Python's str hash is salted per process; the table keys must not be.
    code = (
        "import numpy as np; from ranker_hooks.rankers.tfra_ranker import id_keys; "
        "print(id_keys(np.array(['u1', 'u2', 'author:42', 'é'], dtype=object)).tolist())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == str(keys.tolist())


def test_worker_imports_only_numpy_tensorflow_and_the_stdlib() -> None:
    # It runs in the TFRA environment, which has neither mspa_features nor the main pins.
    allowed = set(sys.stdlib_module_names) | {
        "__future__",
        "numpy",
        "tensorflow",
        "tensorflow_recommenders_addons",
    }
    tree = ast.parse(WORKER.read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import in the worker"
            roots.add(node.module.split(".")[0])
    assert "tensorflow" in roots and roots <= allowed, roots - allowed
