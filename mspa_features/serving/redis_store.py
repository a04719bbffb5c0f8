"""The Redis online store: its connection string, a reachability check before anything is
written, and one clear error when the server is down (``serving.online_store: redis``).

Feast's Redis store (``feast.infra.online_stores.redis``) takes a connection string
``host:port[,db=N][,ssl=true][,password=...]``. The run config never holds a password:
``serving.redis.password_env`` names the environment variable that does, and the run's store
folder (a Feast repo mspa keeps) gets ``password=${VAR}``, which Feast expands when it reads
``feature_store.yaml``.

Writes are safe to rerun: Feast keys each online row by its entity id and stores the row's
event time beside it, skipping a row no newer than the stored one, so a materialization that
Redis interrupted, run again once Redis is back, ends with the same rows, each written once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from mspa_features.errors import (
    IncompatibleSettingsError,
    InvalidValueError,
    OnlineStoreUnavailableError,
)

if TYPE_CHECKING:
    from mspa_features.config import RedisConfig

_PASSWORD = re.compile(r"(password=)[^,]*")


def redis_connection_string(redis: RedisConfig, *, placeholder: bool = False) -> str:
    """Feast's connection string for ``redis``.

    Args:
        redis: the run config's ``serving.redis``.
        placeholder: write the password as ``${VAR}`` (for files) instead of its value.

    Raises:
        IncompatibleSettingsError: ``password_env`` names a variable that is not set.
    """
    parts = [f"{redis.host}:{redis.port}", f"db={redis.db}"]
    if redis.ssl:
        parts.append("ssl=true")
    if redis.password_env:
        if placeholder:
            parts.append(f"password=${{{redis.password_env}}}")
        else:
            password = os.environ.get(redis.password_env)
            if not password:
                raise IncompatibleSettingsError(
                    {"serving.redis.password_env": redis.password_env},
                    "that environment variable is not set",
                    fix=f"export {redis.password_env}=<the Redis password>",
                )
            if "," in password:
                # Feast splits its connection string on commas.
                raise IncompatibleSettingsError(
                    {"serving.redis.password_env": redis.password_env},
                    "the password holds a comma, which Feast's Redis connection string cannot "
                    "carry",
                    fix="use a password without commas",
                )
            parts.append(f"password={password}")
    return ",".join(parts)


def mask_password(connection_string: str) -> str:
    """``connection_string`` with any ``password=`` value replaced by ``***`` (for printing)."""
    return _PASSWORD.sub(r"\1***", connection_string)


def _address(online_cfg: Mapping[str, Any]) -> tuple[str, int | None, dict[str, Any]]:
    from feast.infra.online_stores.redis import RedisOnlineStore

    nodes, params = RedisOnlineStore._parse_connection_string(
        str(online_cfg.get("connection_string") or "")
    )
    node = nodes[0] if nodes else {"host": "localhost", "port": "6379"}
    host = str(node.get("host") or "localhost")
    try:
        port: int | None = int(node.get("port", 6379))
    except (TypeError, ValueError):
        port = None
    return host, port, params


def _reason(e: BaseException, address: str) -> str:
    """redis-py's ``Error 111 connecting to h:p. Connection refused.`` -> ``connection refused``."""
    text = str(e).strip() or type(e).__name__
    text = re.sub(
        rf"^Error -?\d+ (while writing to socket|connecting to {re.escape(address)})\.?\s*",
        "",
        text,
    )
    return text.rstrip(".").strip().lower() or type(e).__name__


def _fix(address: str, port: int | None, *, during: str) -> str:
    start = f"redis-server --port {port}" if port else "redis-server"
    return (
        f"start Redis there (e.g. {start}) or point serving.redis (host, port) at a running "
        f"server, then rerun; {during}"
    )


_NOTHING_WRITTEN = "nothing was written"
_RERUN_SAFE = "a rerun writes the same online rows once"


def redis_client(online_cfg: Mapping[str, Any] | Any, *, timeout_s: float = 5.0) -> Any:
    """A redis-py client on the single server ``online_cfg`` names (a ``feature_store.yaml``
    ``online_store`` mapping, or Feast's online store config): host, port, db, password,
    username and ssl from its connection string.

    Raises:
        InvalidValueError: a Redis cluster or sentinel set-up (one server's keys only).
    """
    import redis as redis_py

    if not isinstance(online_cfg, Mapping):
        online_cfg = {
            "connection_string": getattr(online_cfg, "connection_string", ""),
            "redis_type": getattr(online_cfg, "redis_type", "redis"),
        }
    kind = str(online_cfg.get("redis_type", "redis"))
    if kind not in ("redis", "RedisType.redis"):
        raise InvalidValueError("redis_type", kind, "redis (a single server)")
    host, port, params = _address(online_cfg)
    kwargs = {k: params[k] for k in ("db", "password", "username", "ssl") if k in params}
    if "password" in kwargs:
        kwargs["password"] = str(kwargs["password"])
    return redis_py.Redis(
        host=host,
        port=port or 6379,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        **kwargs,
    )


def check_redis(online_cfg: Mapping[str, Any], *, timeout_s: float = 5.0) -> None:
    """PING the Redis server ``online_cfg`` (a ``feature_store.yaml`` ``online_store``
    mapping) points at; a cluster or sentinel setup is left to Feast.

    Raises:
        OnlineStoreUnavailableError: the server cannot be reached, refuses the password, or
            does not answer within ``timeout_s`` (naming host:port and what to do).
    """
    if str(online_cfg.get("redis_type", "redis")) not in ("redis", "RedisType.redis"):
        return
    import redis as redis_py

    host, port, _ = _address(online_cfg)
    address = f"{host}:{port}"
    client = redis_client(online_cfg, timeout_s=timeout_s)
    try:
        client.ping()
    except redis_py.exceptions.AuthenticationError as e:
        raise OnlineStoreUnavailableError(
            "Redis",
            address,
            f"authentication failed: {_reason(e, address)}",
            fix="set the password (serving.redis.password_env names its variable) and rerun; "
            + _NOTHING_WRITTEN,
        ) from e
    except redis_py.exceptions.ResponseError as e:
        if "NOAUTH" in str(e) or "WRONGPASS" in str(e):
            raise OnlineStoreUnavailableError(
                "Redis",
                address,
                f"authentication required: {_reason(e, address)}",
                fix="set serving.redis.password_env to the variable holding its password and "
                "rerun; " + _NOTHING_WRITTEN,
            ) from e
        raise
    except (redis_py.exceptions.ConnectionError, redis_py.exceptions.TimeoutError) as e:
        raise OnlineStoreUnavailableError(
            "Redis", address, _reason(e, address), fix=_fix(address, port, during=_NOTHING_WRITTEN)
        ) from e
    finally:
        client.close()


@contextmanager
def redis_errors(online_cfg: Mapping[str, Any] | Any, *, writing: bool) -> Iterator[None]:
    """Turn a Redis connection failure inside the block into :class:`OnlineStoreUnavailableError`
    (no traceback at the CLI). ``online_cfg``: a mapping or Feast's online store config."""
    if isinstance(online_cfg, Mapping):
        kind = str(online_cfg.get("type", ""))
        cfg_map: Mapping[str, Any] = online_cfg
    else:
        kind = str(getattr(online_cfg, "type", ""))
        cfg_map = {"connection_string": getattr(online_cfg, "connection_string", "")}
    if kind != "redis":
        yield
        return
    import redis as redis_py

    try:
        yield
    except (redis_py.exceptions.ConnectionError, redis_py.exceptions.TimeoutError) as e:
        host, port, _ = _address(cfg_map)
        address = f"{host}:{port}"
        during = _RERUN_SAFE if writing else "nothing was read"
        raise OnlineStoreUnavailableError(
            "Redis", address, _reason(e, address), fix=_fix(address, port, during=during)
        ) from e
