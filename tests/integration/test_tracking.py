"""MLflow tracking of ablations: any run name is found (no user text in filter strings), and an
unreachable tracking store costs neither the results nor a second training (issue 14: 5 and
faults).

The first half logs hand-made results folders (no training); the second runs a tiny ablation
(2 variants, 1 seed) against an unreachable store, then logs it with ``mspa runs log`` and with
a rerun of ``mspa ablate`` that must not train.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import yaml

from mspa_features.errors import RunNotFoundError, TrackingError
from ranker_hooks.ablation.tracking import load_ablation, log_results, read_results

pytestmark = [pytest.mark.integration]

NAMES = ["it's", "bob's ais, v2", 'say "hi"', "a [b] c", "tab-free ünïcode"]


def _variant(name: str, kind: str, auc: float) -> dict:
    return {
        "name": name,
        "kind": kind,
        "leaked": kind == "lis",
        "auc": auc,
        "uauc": auc - 0.01,
        "gauc": auc - 0.02,
        "logloss": 0.6,
        "wpauc": auc - 0.03,
        "delta_auc": 0.0 if kind == "baseline" else auc - 0.7,
        "delta_auc_ci_low": 0.0 if kind == "baseline" else auc - 0.72,
        "delta_auc_ci_high": 0.0 if kind == "baseline" else auc - 0.68,
        "p_value": 1.0 if kind == "baseline" else 0.04,
        "n_train": 100,
        "n_test": 40,
        "mlflow_run_id": None,
        "service": f"{'baseline' if kind == 'baseline' else 'all'}__template",
        "feature_refs": [] if kind == "baseline" else ["user_preferences__template:pref_emb"],
        "model_version": "tmpl-v1",
        "auc_seeds": [auc],
        "seconds": 1.5,
    }


def results_folder(root: Path, run: str, aucs: tuple[float, float] = (0.7, 0.75)) -> Path:
    """A results folder as the runner writes it, before logging."""
    folder = root / "results" / "ablation" / run.replace("/", "_")
    folder.mkdir(parents=True)
    doc = {
        "run": run,
        "parent_run_id": None,
        "tracking_uri": None,
        "window": {"train_start": "2024-01-01", "split_at": "2024-02-01", "eval_end": "2024-02-11"},
        "seeds": [0],
        "notes": [],
        "variants": [_variant("baseline", "baseline", aucs[0]), _variant("all", "ais", aucs[1])],
        "dataset": "toy",
        "experiment": "bob's experiment",
        "ablation_config": {"feature_set": "template", "variants": ["baseline", "all"]},
    }
    (folder / "results.json").write_text(json.dumps(doc), encoding="utf-8")
    (folder / "comparison.md").write_text(f"# Ablation {run}\n", encoding="utf-8")
    return folder


def _unreachable_sqlite(tmp: Path) -> str:
    """A sqlite store that cannot be opened: its folder is a plain file (MLflow would create a
    missing folder)."""
    blocker = tmp / "not-a-folder"
    blocker.write_text("a file where the store's folder should be", encoding="utf-8")
    return f"sqlite:///{blocker / 'mlflow.db'}"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("name", NAMES)
def test_any_run_name_is_found_by_name(tmp_path: Path, name: str) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    other = log_results(results_folder(tmp_path, "other run", (0.6, 0.61)), tracking_uri=uri)
    doc = log_results(results_folder(tmp_path, name), tracking_uri=uri)
    assert doc["parent_run_id"] and doc["parent_run_id"] != other["parent_run_id"]
    run_name, frame = load_ablation(uri, name)
    assert run_name == name
    assert list(frame["variant"]) == ["baseline", "all"]
    assert list(frame["auc"]) == [0.7, 0.75]  # this run's, not the other's
    assert list(frame["kind"]) == ["baseline", "ais"]
    by_id = load_ablation(uri, doc["parent_run_id"])
    assert by_id[0] == name and list(by_id[1]["auc"]) == [0.7, 0.75]
    with pytest.raises(RunNotFoundError, match='no ablation run with id or name "it\'s not"'):
        load_ablation(uri, "it's not")


def test_runs_compare_cli_with_quoted_names(tmp_path: Path, capsys, monkeypatch) -> None:
    from mspa_features.cli import run_cli
    from mspa_features.cli.common import console

    # Wide enough for every column; the private field, so monkeypatch's undo restores "auto".
    monkeypatch.setattr(console, "_width", 200)

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    log_results(results_folder(tmp_path, "bob's ais, v2", (0.70, 0.75)), tracking_uri=uri)
    log_results(results_folder(tmp_path, "it's [v3]", (0.71, 0.78)), tracking_uri=uri)
    rc = run_cli(["runs", "compare", "bob's ais, v2", "it's [v3]", "--tracking-uri", uri])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "A = bob's ais, v2" in out and "B = it's [v3]" in out  # brackets not eaten as markup
    assert "0.7500" in out and "0.7800" in out and "+0.0300" in out


def test_unreachable_sqlite_store_keeps_results_and_logs_later(tmp_path: Path) -> None:
    folder = results_folder(tmp_path, "bob's ais, v2")
    bad = _unreachable_sqlite(tmp_path)
    with pytest.raises(TrackingError) as e:
        log_results(folder, tracking_uri=bad)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"MLflow tracking store {bad} unreachable: ")
    assert f"log them without training again: mspa runs log {folder}" in msg
    doc = read_results(folder)
    assert doc["parent_run_id"] is None and doc["mlflow_error"].startswith("FileExistsError")
    assert [v["auc"] for v in doc["variants"]] == [0.7, 0.75]  # results intact

    good = f"sqlite:///{tmp_path / 'mlflow.db'}"
    logged = log_results(folder, tracking_uri=good)
    assert logged["parent_run_id"] and logged["mlflow_error"] is None
    assert all(v["mlflow_run_id"] for v in logged["variants"])
    assert read_results(folder)["parent_run_id"] == logged["parent_run_id"]
    # Logging again changes nothing: no second parent run.
    again = log_results(folder, tracking_uri=good)
    assert again["parent_run_id"] == logged["parent_run_id"]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=good)
    exp = client.get_experiment_by_name("bob's experiment")
    parents = client.search_runs([exp.experiment_id], "tags.`mspa.kind` = 'ablation'")
    assert [r.info.run_id for r in parents] == [logged["parent_run_id"]]
    artifacts = {a.path for a in client.list_artifacts(logged["parent_run_id"])}
    assert {"results.json", "comparison.md", "ablation_config.json"} <= artifacts


def test_unreachable_http_store_is_one_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    folder = results_folder(tmp_path, "it's")
    uri = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(TrackingError) as e:
        log_results(folder, tracking_uri=uri)
    assert "\n" not in str(e.value) and str(e.value).startswith(f"MLflow tracking store {uri}")
    assert read_results(folder)["parent_run_id"] is None


def test_half_logged_parent_loses_to_the_finished_one(tmp_path: Path, monkeypatch) -> None:
    """A store failing mid-way leaves a FAILED parent; the later full log is what compare finds."""
    from ranker_hooks.ablation import tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    folder = results_folder(tmp_path, "bob's ais, v2", (0.7, 0.75))

    def broken(*args, **kwargs):
        raise ConnectionError("store went away")

    monkeypatch.setattr(tracking, "_log_variant", broken)
    with pytest.raises(TrackingError, match="ConnectionError: store went away"):
        log_results(folder, tracking_uri=uri)
    monkeypatch.undo()
    logged = log_results(folder, tracking_uri=uri)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("bob's experiment")
    statuses = sorted(
        r.info.status
        for r in client.search_runs([exp.experiment_id], "tags.`mspa.kind` = 'ablation'")
    )
    assert statuses == ["FAILED", "FINISHED"]
    assert tracking.find_ablation(client, "bob's ais, v2").info.run_id == logged["parent_run_id"]
    assert list(load_ablation(uri, "bob's ais, v2")[1]["auc"]) == [0.7, 0.75]


# --------------------------------------------------------------------------- with training


@pytest.fixture(scope="module")
def tiny_ablation(tmp_path_factory: pytest.TempPathFactory):
    from test_ablation import ablation_config, write_interactions
    from test_feast_repo import REPO, T_END, make_cfg

    from mspa_features.serving.materialize import register

    tmp = tmp_path_factory.mktemp("tracking")
    cfg = make_cfg(tmp, "tiny", sets=("template",))
    register(cfg, None, repo_path=REPO, end=T_END)
    write_interactions(cfg)
    run_yaml = tmp / "run.yaml"
    run_yaml.write_text(yaml.safe_dump(cfg.model_dump(mode="json")), encoding="utf-8")
    acfg = ablation_config(tmp)
    doc = acfg.model_dump(mode="json")
    doc.update(
        name="bob's ais, v2",
        variants=["baseline", "preference"],
        seeds=[0],
        run_config=str(run_yaml),
        mlflow={
            "tracking_uri": _unreachable_sqlite(tmp),
            "experiment": "bob's experiment",
        },
    )
    doc["ranker"]["params"]["epochs"] = 1
    ab_yaml = tmp / "ablation.yaml"
    ab_yaml.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return tmp, ab_yaml


def test_ablation_with_store_down_writes_everything_then_logs_without_training(
    tiny_ablation, capsys, monkeypatch
) -> None:
    from mspa_features.cli import run_cli
    from mspa_features.cli.common import console
    from ranker_hooks.ablation import run as ablation

    monkeypatch.setattr(console, "_width", 400)  # no wrapping inside the lines asserted
    tmp, ab_yaml = tiny_ablation
    rc = run_cli(["ablate", str(ab_yaml)])
    out = capsys.readouterr().out
    assert rc == 2, out
    error_lines = [ln for ln in out.splitlines() if ln.startswith("error:")]
    assert len(error_lines) == 1 and "unreachable: FileExistsError" in error_lines[0]
    assert "Traceback" not in out and "ablation bob's ais, v2-" in out  # the table was printed
    folders = sorted((tmp / "ws" / "results" / "ablation").glob("bob's ais, v2-*"))
    assert len(folders) == 1
    folder = folders[0]
    for name in ("results.json", "comparison.csv", "comparison.md", "delta_auc.png"):
        assert (folder / name).stat().st_size > 0, name
    doc = read_results(folder)
    assert doc["parent_run_id"] is None and doc["mlflow_error"].startswith("FileExistsError")
    assert [v["name"] for v in doc["variants"]] == ["baseline", "preference"]
    assert f"mspa runs log {folder}" in error_lines[0]

    # A rerun of the same command logs the pending results; training again would fail here.
    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(ablation, "run_ablation", no_training)
    good = f"sqlite:///{tmp / 'mlflow.db'}"
    rc = run_cli(["ablate", str(ab_yaml), "--tracking-uri", good])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "logging them without training" in out and "MLflow parent run" in out
    logged = read_results(folder)
    assert logged["parent_run_id"] and logged["tracking_uri"] == good
    name, frame = load_ablation(good, logged["run"])
    assert name == logged["run"]
    assert list(frame["variant"]) == ["baseline", "preference"]
    assert list(frame["auc"]) == pytest.approx([v["auc"] for v in doc["variants"]])
    # `mspa runs log` on a logged folder: nothing new (one parent run).
    rc = run_cli(["runs", "log", str(folder), "--tracking-uri", good])
    assert rc == 0
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=good)
    exp = client.get_experiment_by_name("bob's experiment")
    parents = client.search_runs([exp.experiment_id], "tags.`mspa.kind` = 'ablation'")
    assert [r.info.run_id for r in parents] == [logged["parent_run_id"]]
