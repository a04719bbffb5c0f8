"""Two commands on one run of a workspace, as real processes (issue 14, faults): the second
waits for the first or refuses with one clear line, and the Feast registry and online store
come out whole.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_feast_repo import REPO, SNAPS, T_END, make_cfg, pref_text

from mspa_features.errors import WorkspaceBusyError
from mspa_features.locking import holder, lock_path, run_lock

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOLD = """
import sys, time
from pathlib import Path
from mspa_features.locking import run_lock
ws, run, release = sys.argv[1], sys.argv[2], Path(sys.argv[3])
with run_lock(ws, run, purpose="holder test"):
    print("held", flush=True)
    t0 = time.monotonic()
    while not release.exists() and time.monotonic() - t0 < 120:
        time.sleep(0.05)
"""


def _holder(ws: Path, run: str, release: Path) -> subprocess.Popen:
    """A process holding the run's lock until ``release`` exists (it says "held" first)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(ws), run, str(release)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def _mspa(args: list[str], timeout_s: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "MSPA_LOCK_TIMEOUT": timeout_s, "COLUMNS": "200"}
    return subprocess.Popen(
        [sys.executable, "-m", "mspa_features.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kw,
    )


@pytest.fixture
def run_yaml(tmp_path: Path) -> tuple[Path, object]:
    cfg = make_cfg(tmp_path, "locked", sets=("template",))
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")), encoding="utf-8")
    return path, cfg


def _register_args(path: Path) -> list[str]:
    return ["register", str(path), "--repo", str(REPO), "--end", T_END.strftime("%Y-%m-%d")]


def _store_is_whole(cfg) -> None:
    """Registry readable with every object, online store serving the latest snapshot."""
    from mspa_features.serving.materialize import open_store
    from mspa_features.serving.reads import online_features

    store = open_store(cfg, repo_path=REPO)
    views = {v.name for v in store.list_feature_views()}
    assert views == {"user_preferences__template", "author_profiles__template"}
    services = {s.name for s in store.list_feature_services()}
    assert {"baseline__template", "with_preference__template", "all__template"} <= services
    row = online_features(store, "all__template", [("u1", "a1")], as_of=T_END).iloc[0]
    assert row["pref_text"] == pref_text("template", 1, len(SNAPS) - 1)
    assert row["author_text"] == "template:author 1"


def test_second_command_refuses_with_the_holder_named(run_yaml, tmp_path: Path) -> None:
    path, cfg = run_yaml
    release = tmp_path / "release"
    hold = _holder(cfg.workspace, cfg.name, release)
    try:
        t0 = time.monotonic()
        proc = _mspa(_register_args(path), "1")
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 2, (out, err)
        assert time.monotonic() - t0 >= 1.0  # it waited its timeout first
        lines = [ln for ln in out.splitlines() if ln.strip()]
        assert len(lines) == 1 and "Traceback" not in out + err, (out, err)
        assert f"run 'locked' of workspace {Path(cfg.workspace).resolve()} is busy" in lines[0]
        assert f"pid {hold.pid} (holder test" in lines[0]
        assert "gave up after 1 s (set MSPA_LOCK_TIMEOUT to wait longer)" in lines[0]
        assert f"waiting for pid {hold.pid}" in err  # the one note while it waited
        assert not (Path(cfg.workspace) / "feast" / "locked" / "sqlite" / "registry.db").exists()
    finally:
        release.touch()
        hold.wait(timeout=30)
    # The holder gone, the kernel dropped its lock: the same command goes through.
    proc = _mspa(_register_args(path), "0")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, (out, err)
    _store_is_whole(cfg)
    assert holder(lock_path(cfg.workspace, cfg.name)) == {}  # released and cleared


def test_second_command_waits_then_runs(run_yaml, tmp_path: Path) -> None:
    path, cfg = run_yaml
    release = tmp_path / "release"
    hold = _holder(cfg.workspace, cfg.name, release)
    proc = _mspa(_register_args(path), "120")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            info = holder(lock_path(cfg.workspace, cfg.name))
            if info.get("pid") == hold.pid:
                break
            time.sleep(0.1)
        time.sleep(3.0)  # the register is up and blocked on the lock by now
        assert proc.poll() is None  # still waiting: it did not write beside the holder
        release.touch()
        out, err = proc.communicate(timeout=300)
    finally:
        release.touch()
        hold.wait(timeout=30)
    assert proc.returncode == 0, (out, err)
    assert f"waiting for pid {hold.pid}" in err
    _store_is_whole(cfg)


def test_two_registers_at_once_leave_a_whole_store(run_yaml) -> None:
    """Two real `mspa register` of one run started together: both succeed, one after the
    other, and the registry and online store are whole (no interleaved feast apply)."""
    path, cfg = run_yaml
    procs = [_mspa(_register_args(path), "300") for _ in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, (out, err)
    _store_is_whole(cfg)
    state = Path(cfg.workspace) / "feast" / "locked" / "sqlite" / "materialized_at.json"
    assert set(json.loads(state.read_text())) == {
        "user_preferences__template",
        "author_profiles__template",
    }


def test_backfill_takes_the_same_lock(run_yaml, tmp_path: Path) -> None:
    """A backfill of a run being registered refuses before starting Spark (no session)."""
    from mspa_features.snapshots.backfill import BackfillConfig
    from mspa_features.snapshots.backfill import parse_date as d
    from spark_jobs.backfill import run_backfill

    _, cfg = run_yaml
    release = tmp_path / "release"
    hold = _holder(cfg.workspace, cfg.name, release)
    try:
        os.environ["MSPA_LOCK_TIMEOUT"] = "0"
        with pytest.raises(WorkspaceBusyError, match=f"pid {hold.pid} \\(holder test"):
            run_backfill(cfg, BackfillConfig(cadence="daily"), d("2024-01-01"), d("2024-01-02"))
    finally:
        os.environ.pop("MSPA_LOCK_TIMEOUT", None)
        release.touch()
        hold.wait(timeout=30)


def test_lock_is_reentrant_in_one_process_and_exclusive_across(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    with run_lock(ws, "r", purpose="outer", timeout=0), run_lock(ws, "r", purpose="inner"):
        info = holder(lock_path(ws, "r"))
        assert info["pid"] == os.getpid() and info["command"] == "outer"
        code = (
            "import sys\nfrom mspa_features.locking import run_lock\n"
            "from mspa_features.errors import WorkspaceBusyError\n"
            "try:\n    run_lock(sys.argv[1], 'r', purpose='other', timeout=0).__enter__()\n"
            "except WorkspaceBusyError as e:\n    print(e)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, str(ws)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        ).stdout
        assert f"pid {os.getpid()} (outer, since" in out and "gave up after 0 s" in out
        # another run of the same workspace is not blocked
        with run_lock(ws, "other-run", purpose="x", timeout=0):
            pass
    assert holder(lock_path(ws, "r")) == {}
    with run_lock(ws, "r", purpose="again", timeout=0):
        pass


def test_bad_timeout_is_named(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MSPA_LOCK_TIMEOUT", "soon")
    with (
        pytest.raises(WorkspaceBusyError, match="MSPA_LOCK_TIMEOUT='soon' is not a number"),
        run_lock(tmp_path, "r", purpose="x"),
    ):
        pass
