"""The run config's online store switch (``serving:``; issue 13: 5): validated at load, no
secret in it, and the Redis connection it gives; a closed port fails with one clear line."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from mspa_features.config import RedisConfig, ServingConfig, load_config
from mspa_features.errors import (
    ConfigError,
    IncompatibleSettingsError,
    OnlineStoreUnavailableError,
)

BASE = "name: r\ndata: {source: movielens}\n"


def _load(tmp_path: Path, serving: str):  # type: ignore[no-untyped-def]
    p = tmp_path / "run.yaml"
    p.write_text(BASE + serving, encoding="utf-8")
    return load_config(p)


def test_default_is_sqlite_and_redis_loads(tmp_path: Path) -> None:
    assert _load(tmp_path, "").serving.online_store == "sqlite"
    cfg = _load(
        tmp_path,
        "serving:\n  online_store: redis\n  redis: {host: 10.0.0.5, port: 6380, db: 2, "
        "password_env: MY_REDIS_PW, ssl: true}\n",
    )
    assert cfg.serving.redis == RedisConfig(
        host="10.0.0.5", port=6380, db=2, password_env="MY_REDIS_PW", ssl=True
    )


@pytest.mark.parametrize(
    ("serving", "expected"),
    [
        (
            "serving: {online_store: redis, redis: {host: h, password: hunter2}}\n",
            "serving.redis.password: Extra inputs are not permitted (did you mean 'password_env'?)",
        ),
        ("serving: {online_store: memcached}\n", "serving.online_store"),
        ("serving: {online_store: redis, redis: {port: 70000}}\n", "serving.redis.port"),
        ("serving: {online_store: redis, redis: {host: 'a:1,db=3'}}\n", "plain host name"),
        ("serving: {online_store: redis, redis: {password_env: 'not a name'}}\n", "password_env"),
        ("serving: {redis: {host: h}}\n", "set online_store: redis"),
        ("serving: {online_stor: redis}\n", "did you mean 'online_store'?"),
    ],
)
def test_invalid_settings_name_the_file_and_field(
    tmp_path: Path, serving: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, serving)
    assert str(tmp_path / "run.yaml") in str(info.value)
    assert expected in str(info.value)


def test_connection_string_reads_the_password_from_the_environment(monkeypatch) -> None:
    from mspa_features.serving.redis_store import mask_password, redis_connection_string

    r = RedisConfig(host="h", port=1234, db=3, ssl=True, password_env="MY_REDIS_PW")
    monkeypatch.delenv("MY_REDIS_PW", raising=False)
    with pytest.raises(IncompatibleSettingsError, match="export MY_REDIS_PW="):
        redis_connection_string(r)
    assert redis_connection_string(r, placeholder=True) == (
        "h:1234,db=3,ssl=true,password=${MY_REDIS_PW}"
    )
    monkeypatch.setenv("MY_REDIS_PW", "pw")
    cs = redis_connection_string(r)
    assert cs == "h:1234,db=3,ssl=true,password=pw"
    assert mask_password(cs) == "h:1234,db=3,ssl=true,password=***"
    assert redis_connection_string(RedisConfig()) == "localhost:6379,db=0"


def test_the_switch_picks_the_store_and_its_folder(tmp_path: Path) -> None:
    pytest.importorskip("redis", reason="the 'redis' extra is not installed")
    from mspa_features.serving.materialize import configured_online, store_config

    cfg = _load(tmp_path, "serving: {online_store: redis, redis: {host: h, port: 7000}}\n")
    assert configured_online(cfg) == "redis"
    rc = store_config(cfg, repo_path=Path(__file__).resolve().parents[2] / "feature_repo")
    assert rc.online_store.type == "redis"
    assert rc.online_store.connection_string == "h:7000,db=0"
    assert Path(rc.registry.path).parent.name == "redis"
    # A store yaml given and no store named in the config: the yaml decides.
    plain = _load(tmp_path, "")
    assert configured_online(plain, Path("stores/spark.yaml")) is None
    assert configured_online(plain) == "sqlite"


def test_closed_port_is_one_line_naming_host_port_and_the_fix(tmp_path: Path) -> None:
    pytest.importorskip("redis", reason="the 'redis' extra is not installed")
    from mspa_features.serving.materialize import check_online_store

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = _load(
        tmp_path,
        f"workspace: {tmp_path / 'ws'}\n"
        f"serving: {{online_store: redis, redis: {{host: 127.0.0.1, port: {port}}}}}\n",
    )
    with pytest.raises(OnlineStoreUnavailableError) as info:
        check_online_store(cfg, repo_path=Path(__file__).resolve().parents[2] / "feature_repo")
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"Redis online store at 127.0.0.1:{port} is unreachable (")
    assert f"redis-server --port {port}" in msg and "nothing was written" in msg
    assert not (tmp_path / "ws").exists()  # the check creates nothing


def test_serving_config_defaults() -> None:
    assert ServingConfig().redis is None
