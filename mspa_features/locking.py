"""One writer at a time per run of a workspace: a real file lock around every Feast write.

``mspa backfill``, ``mspa register`` (and the leak / aligned sets an ablation registers) write
the same files: the run's backfill partitions, the Feast registry (``registry.db``, rewritten
whole by every ``apply``) and the online store. Two of them at once could interleave two
registry rewrites or materialize partitions that are being swapped. :func:`run_lock` serializes
them with ``fcntl.flock`` on ``<workspace>/locks/<run name>.lock``:

* the second command waits (printing once who holds the lock) up to a timeout, then refuses with
  :class:`~mspa_features.errors.WorkspaceBusyError` naming the holder; it never starts writing;
* the kernel releases the lock when its holder exits or is killed, so a lock is never stale;
* the lock is reentrant within one process (the main job backfills, then registers).

Readers (historical and online reads) take no lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from mspa_features.errors import WorkspaceBusyError

# Seconds a command waits for another one on the same run before refusing.
TIMEOUT_ENV = "MSPA_LOCK_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0
_POLL_S = 0.2

_held: dict[str, tuple[IO[str], int]] = {}  # lock path -> (open file, depth) in this process
_guard = threading.Lock()


def lock_path(workspace: str | Path, run: str) -> Path:
    """``<workspace>/locks/<run>.lock``: the lock of one run's features and Feast store."""
    return Path(workspace).resolve() / "locks" / f"{run}.lock"


def default_timeout() -> float:
    """``$MSPA_LOCK_TIMEOUT`` seconds (default :data:`DEFAULT_TIMEOUT_S`; 0: never wait)."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value < 0:
        raise WorkspaceBusyError(f"{TIMEOUT_ENV}={raw!r} is not a number of seconds >= 0")
    return value


def holder(path: Path) -> dict[str, Any]:
    """What the current holder wrote into the lock file (pid, command, since); {} if unknown."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8") or "{}")
    except (OSError, json.JSONDecodeError):
        return {}
    return doc if isinstance(doc, dict) else {}


def describe_holder(info: dict[str, Any]) -> str:
    if not info:
        return "another process"
    return (
        f"pid {info.get('pid', '?')} ({info.get('command', '?')}, since {info.get('since', '?')})"
    )


def _stderr_note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def run_lock(
    workspace: str | Path,
    run: str,
    *,
    purpose: str,
    timeout: float | None = None,
    on_wait: Callable[[str], None] | None = _stderr_note,
) -> Iterator[Path]:
    """Hold the exclusive lock of ``run`` in ``workspace`` for the ``with`` block.

    Args:
        workspace: the workspace folder.
        run: the run (dataset) name whose features and Feast store are written.
        purpose: what the holder does (``register``, ``backfill``): shown to a waiting command.
        timeout: seconds to wait for another holder (default :func:`default_timeout`).
        on_wait: called once with a one-line note when the lock is busy (None: silent).

    Yields:
        The lock file path.

    Raises:
        WorkspaceBusyError: another process held the lock for longer than ``timeout``.
    """
    path = lock_path(workspace, run)
    key = str(path)
    with _guard:
        if key in _held:  # reentrant: this process already holds it
            fh, depth = _held[key]
            _held[key] = (fh, depth + 1)
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield path
        finally:
            with _guard:
                fh, depth = _held[key]
                _held[key] = (fh, depth - 1)
        return

    limit = default_timeout() if timeout is None else float(timeout)
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (held past this frame)
    t0 = time.monotonic()
    noted = False
    try:
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - t0
                who = describe_holder(holder(path))
                if waited >= limit:
                    raise WorkspaceBusyError(
                        f"run {run!r} of workspace {Path(workspace).resolve()} is busy: {who} "
                        f"holds {path}; {purpose} gave up after {limit:g} s (set {TIMEOUT_ENV} "
                        "to wait longer)"
                    ) from None
                if not noted and on_wait is not None:
                    on_wait(
                        f"waiting for {who} to release {path} (up to {limit:g} s, {TIMEOUT_ENV})"
                    )
                    noted = True
                time.sleep(min(_POLL_S, max(limit - waited, 0.01)))
    except BaseException:
        fh.close()
        raise
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "command": purpose,
                    "since": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
                }
            )
        )
        fh.flush()
        with _guard:
            _held[key] = (fh, 1)
        yield path
    finally:
        with _guard:
            _held.pop(key, None)
        with contextlib.suppress(OSError):
            fh.seek(0)
            fh.truncate()
            fh.flush()
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


__all__ = ["DEFAULT_TIMEOUT_S", "TIMEOUT_ENV", "default_timeout", "holder", "lock_path", "run_lock"]
