"""Redis as the run's online store (issue 13: 5), against real ``redis-server`` processes this
test starts on 127.0.0.1 on free ports (with a password, append-only file in the test's folder
so a restart keeps the data).

* register + materialize into Redis gives exactly the SQLite store's online rows for the same
  hand-made backfill (``test_feast_repo``'s three users x three snapshots, two feature sets);
* a materialization Redis interrupts is safe to rerun: same rows, no extra key;
* Redis down: ``mspa register`` / ``mspa features online`` exit non-zero with one error line
  naming host:port and what to do, no traceback, the registry and store folder untouched; once
  Redis is back the online rows are those of before and a rerun succeeds with the same rows;
* ``mspa run`` with ``serving.online_store: redis`` on the own-data example: the serving preview
  reads from Redis.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from test_feast_repo import AUTHORS, REPO, SNAPS, T_END, USERS, _free_port, write_feature_set

from mspa_features.config import DataConfig, RedisConfig, RunConfig, ServingConfig, Workspace

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PASSWORD_ENV = "MSPA_TEST_REDIS_PASSWORD"
PASSWORD = "s3cret-for-tests"
SERVICES = ("all__template", "all__llm")
EMBEDDINGS = ("pref_emb", "author_emb")


class RedisServer:
    """One ``redis-server`` on 127.0.0.1:<port> with a password; stop and start again keep
    its data (append-only file in ``folder``)."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server binary not found (apt-get install -y redis-server)")
        pytest.importorskip("redis", reason="the 'redis' extra is not installed")
        self.binary, self.folder = binary, folder
        self.port = port or _free_port()
        self.proc: subprocess.Popen | None = None
        folder.mkdir(parents=True, exist_ok=True)

    def start(self) -> RedisServer:
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder)]
        args += ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]
        args += ["--requirepass", PASSWORD]
        self.proc = subprocess.Popen(
            [self.binary, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on {self.port}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    def client(self):  # type: ignore[no-untyped-def]
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, password=PASSWORD)

    def dbsize(self) -> int:
        with self.client() as c:
            return int(c.dbsize())


@pytest.fixture
def redis_server(tmp_path: Path, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


def _serving(port: int) -> ServingConfig:
    return ServingConfig(
        online_store="redis",
        redis=RedisConfig(host="127.0.0.1", port=port, password_env=PASSWORD_ENV),
    )


def _cfg(tmp: Path, serving: ServingConfig | None = None) -> RunConfig:
    cfg = RunConfig(name="toy", workspace=tmp / "ws", data=DataConfig(source="movielens"))
    if serving is not None:
        cfg = cfg.model_copy(update={"serving": serving})
    return cfg


def _write_sets(cfg: RunConfig) -> None:
    for fs in ("template", "llm"):
        write_feature_set(Workspace(cfg.workspace).features(cfg.name) / fs, fs)


def _rows(cfg: RunConfig, **kw) -> dict[str, pd.DataFrame]:
    """Every (user, author) pair of each service, online, at the end of the window."""
    from mspa_features.serving.materialize import open_store
    from mspa_features.serving.reads import online_features

    store = open_store(cfg, repo_path=REPO, **kw)
    pairs = [(u, a) for u in USERS for a in AUTHORS]
    return {s: online_features(store, s, pairs, as_of=T_END) for s in SERVICES}


def _assert_same_rows(got: dict[str, pd.DataFrame], want: dict[str, pd.DataFrame]) -> None:
    assert set(got) == set(want)
    for service, w in want.items():
        g = got[service]
        assert list(g.columns) == list(w.columns), service
        assert len(g) == len(w) == len(USERS) * len(AUTHORS)
        plain = [c for c in w.columns if c not in EMBEDDINGS]
        pd.testing.assert_frame_equal(g[plain], w[plain], check_dtype=False)
        for col in (c for c in EMBEDDINGS if c in w.columns):
            for a, b in zip(g[col], w[col], strict=True):
                assert (a is None) == (b is None)
                if a is not None:
                    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert w["pref_text"].notna().all()  # the comparison covers real values


def test_redis_rows_equal_the_sqlite_rows(redis_server: RedisServer, tmp_path: Path) -> None:
    from mspa_features.serving.materialize import apply_and_materialize

    sqlite_cfg = _cfg(tmp_path)
    redis_cfg = _cfg(tmp_path, _serving(redis_server.port))  # same run, same backfill
    _write_sets(sqlite_cfg)
    apply_and_materialize(sqlite_cfg, None, repo_path=REPO, end=T_END)
    rep = apply_and_materialize(redis_cfg, None, repo_path=REPO, end=T_END)

    assert rep.online_store == f"redis 127.0.0.1:{redis_server.port},db=0,password=***"
    assert rep.store_dir == Workspace(redis_cfg.workspace).root.resolve() / "feast/toy/redis"
    assert [m.mode for m in rep.materialized] == ["first"] * 4
    # The run's store folder (a Feast repo) names the variable, never the password.
    store_yaml = (rep.store_dir / "feature_store.yaml").read_text()
    assert f"password=${{{PASSWORD_ENV}}}" in store_yaml and PASSWORD not in store_yaml
    assert not (rep.store_dir / "online_store.db").exists()

    want = _rows(sqlite_cfg)
    _assert_same_rows(_rows(redis_cfg), want)

    # A full rerun writes the same rows again: no new key, identical values.
    keys = redis_server.dbsize()
    assert keys == len(USERS) + len(AUTHORS)  # one hash per entity, every view's fields inside
    again = apply_and_materialize(redis_cfg, None, repo_path=REPO, end=T_END, incremental=False)
    assert [m.mode for m in again.materialized] == ["full"] * 4
    assert redis_server.dbsize() == keys
    _assert_same_rows(_rows(redis_cfg), want)


def test_redis_password_settings_fail_clearly(
    redis_server: RedisServer, tmp_path: Path, monkeypatch
) -> None:
    from mspa_features.errors import IncompatibleSettingsError, OnlineStoreUnavailableError
    from mspa_features.serving.materialize import apply_and_materialize

    cfg = _cfg(tmp_path, _serving(redis_server.port))
    _write_sets(cfg)
    monkeypatch.delenv(PASSWORD_ENV)
    with pytest.raises(IncompatibleSettingsError, match=f"export {PASSWORD_ENV}="):
        apply_and_materialize(cfg, None, repo_path=REPO, end=T_END)
    monkeypatch.setenv(PASSWORD_ENV, "wrong")
    with pytest.raises(OnlineStoreUnavailableError, match=f"127.0.0.1:{redis_server.port}"):
        apply_and_materialize(cfg, None, repo_path=REPO, end=T_END)
    assert not (Workspace(cfg.workspace).root / "feast").exists()  # nothing written
    assert redis_server.dbsize() == 0


def test_interrupted_materialization_reruns_to_the_same_rows(
    redis_server: RedisServer, tmp_path: Path, monkeypatch
) -> None:
    """Redis drops the connection after the first view's rows went in; the rerun completes
    the store with exactly the rows of an uninterrupted run, each key once."""
    import redis
    from feast.infra.online_stores.redis import RedisOnlineStore

    from mspa_features.errors import OnlineStoreUnavailableError
    from mspa_features.serving.materialize import apply_and_materialize

    sqlite_cfg = _cfg(tmp_path)
    redis_cfg = _cfg(tmp_path, _serving(redis_server.port))
    _write_sets(sqlite_cfg)
    apply_and_materialize(sqlite_cfg, None, repo_path=REPO, end=T_END)

    real = RedisOnlineStore.online_write_batch
    calls: list[str] = []

    def flaky(self, config, table, data, progress):  # type: ignore[no-untyped-def]
        calls.append(table.name)
        if len(calls) > 1:
            raise redis.exceptions.ConnectionError("Connection reset by peer")
        return real(self, config, table, data, progress)

    monkeypatch.setattr(RedisOnlineStore, "online_write_batch", flaky)
    with pytest.raises(OnlineStoreUnavailableError) as info:
        apply_and_materialize(redis_cfg, None, repo_path=REPO, end=T_END)
    msg = str(info.value)
    assert f"127.0.0.1:{redis_server.port}" in msg and "rerun" in msg and "\n" not in msg
    assert 0 < redis_server.dbsize()  # half of it went in
    monkeypatch.setattr(RedisOnlineStore, "online_write_batch", real)

    rep = apply_and_materialize(redis_cfg, None, repo_path=REPO, end=T_END)
    assert rep.materialized[0].mode in ("incremental", "skipped")  # the view that went in
    assert redis_server.dbsize() == len(USERS) + len(AUTHORS)
    _assert_same_rows(_rows(redis_cfg), _rows(sqlite_cfg))


# --------------------------------------------------------------------------- the CLI

# A tiny source of the user's own (the register command ingests the run's data first).
USERS_CSV = "user_id\n" + "".join(f"{u}\n" for u in USERS)
AUTHORS_CSV = "author_id,event_timestamp,profile_text\n" + "".join(
    f"{a},{SNAPS[0]:%Y-%m-%dT%H:%M:%SZ},author {a}\n" for a in AUTHORS
)
INTERACTIONS_CSV = "user_id,author_id,event_timestamp,action,value,label\n" + "".join(
    f"{u},{a},{SNAPS[1]:%Y-%m-%dT%H:%M:%SZ},view,1.0,1\n" for u in USERS for a in AUTHORS
)


def _mspa(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "mspa_features.cli", *args],
        cwd=cwd,
        check=False,  # the exit status is asserted
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc


def _tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` -> its content hash."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_redis_down_one_error_line_nothing_written_and_rerun(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    from mspa_features.config import load_config

    src = tmp_path / "src"
    src.mkdir()
    (src / "users.csv").write_text(USERS_CSV)
    (src / "authors.csv").write_text(AUTHORS_CSV)
    (src / "interactions.csv").write_text(INTERACTIONS_CSV)
    ws = tmp_path / "ws"
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text(
        yaml.safe_dump(
            {
                "name": "toy",
                "workspace": str(ws),
                "data": {"source": "files", "path": "src"},
                "serving": {
                    "online_store": "redis",
                    "redis": {
                        "host": "127.0.0.1",
                        "port": redis_server.port,
                        "password_env": PASSWORD_ENV,
                    },
                },
            }
        )
    )
    cfg = load_config(run_yaml)
    _write_sets(cfg)
    register = ["register", str(run_yaml), "--repo", str(REPO), "--end", f"{T_END:%Y-%m-%d}"]
    first = _mspa(*register, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"online redis 127.0.0.1:{redis_server.port},db=0,password=***" in first.stdout
    assert PASSWORD not in first.stdout + first.stderr
    store_dir = ws / "feast" / "toy" / "redis"
    assert f"store folder (a Feast repo: feast plan/apply there) {store_dir}" in first.stdout
    before_tree, before_rows = _tree(store_dir), _rows(cfg)
    keys = redis_server.dbsize()

    redis_server.stop()
    address = f"127.0.0.1:{redis_server.port}"
    for args in (
        register,
        ["register", str(run_yaml), "--repo", str(REPO), "--full"],
        ["features", "online", str(run_yaml), "-u", "u1", "-a", "a1", "--repo", str(REPO)],
    ):
        down = _mspa(*args, cwd=tmp_path)
        out = (down.stdout + down.stderr).strip()
        assert down.returncode != 0, out
        assert out.count("\n") == 0, out  # one line
        assert out.startswith("error: Redis online store at " + address), out
        assert f"redis-server --port {redis_server.port}" in out, out
    assert _tree(store_dir) == before_tree  # registry, feature_store.yaml... untouched

    redis_server.start()  # the same port and data folder
    assert redis_server.dbsize() == keys
    _assert_same_rows(_rows(cfg), before_rows)  # the online store as it was
    again = _mspa(*register, "--full", cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert redis_server.dbsize() == keys
    _assert_same_rows(_rows(cfg), before_rows)


# --------------------------------------------------------------------------- mspa run


@pytest.mark.slow
def test_main_job_serves_the_preview_from_redis(redis_server: RedisServer, tmp_path: Path) -> None:
    """``mspa run`` on the own-data example (template features, no composer evaluation, no
    ablation) with the one switch: register writes Redis and the preview reads it."""
    from mspa_features.data.sources_example import write_example_folder

    write_example_folder(tmp_path / "workspace" / "own_data_example")
    cfg = yaml.safe_load((ROOT / "configs" / "own_data_example.yaml").read_text())
    cfg["eval"]["composers"] = []
    cfg["ablation"] = {"enabled": False}
    cfg["serving"] = {
        "online_store": "redis",
        "redis": {"host": "127.0.0.1", "port": redis_server.port, "password_env": PASSWORD_ENV},
    }
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "run.yaml").write_text(yaml.safe_dump(cfg))
    t0 = time.monotonic()
    proc = _mspa("run", "configs/run.yaml", cwd=tmp_path)
    seconds = time.monotonic() - t0
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    address = f"127.0.0.1:{redis_server.port}"
    assert "read from redis" in out, out  # the preview's title (wrapped at the address)
    assert PASSWORD not in out
    summary = json.loads(
        (tmp_path / "workspace" / "results" / cfg["name"] / "summary.json").read_text()
    )
    assert summary["features"]["register"]["online_store"].startswith(f"redis {address}")
    preview = summary["serving"]
    assert preview and all(p["online_store"].startswith(f"redis {address}") for p in preview)
    assert preview[0]["pref_text"] and preview[0]["pref_emb_dim"] > 0
    feast = tmp_path / "workspace" / "feast" / cfg["name"]
    assert [p.name for p in feast.iterdir()] == ["redis"]  # no SQLite store written
    assert redis_server.dbsize() > 0
    print(f"mspa run with Redis: {seconds:.0f} s")
