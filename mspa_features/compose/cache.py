"""Content-addressed cache for generated texts and embeddings (SQLite, one file).

The key is a hash of everything that determines the output: model_version, prompt_hash,
decoding settings and the rendered input (text and image bytes). Reruns and unchanged histories
therefore cost nothing, and a new model or prompt can never be served an old answer. SQLite in
WAL mode lets several processes on one machine (Spark local executors) share the file.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np


def content_key(*parts: str | bytes) -> str:
    """A stable hash of the parts (length-prefixed, so ("ab","c") != ("a","bc"))."""
    h = hashlib.sha256()
    for p in parts:
        b = p.encode("utf-8") if isinstance(p, str) else p
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


class ComposerCache:
    """Generated texts and embeddings by content key. ``path=None`` keeps it in memory."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path is not None else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            str(self.path) if self.path else ":memory:", check_same_thread=False, timeout=60
        )
        self._conn.execute("PRAGMA busy_timeout=60000")
        # Switching to WAL does not wait on the busy timeout: two processes creating the same
        # file at once (Spark workers) see "database is locked". Retry with backoff.
        for attempt in range(60):
            try:
                self._create_tables()
                break
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or attempt == 59:
                    raise
                time.sleep(0.05 * (attempt + 1))
        self.hits = 0
        self.misses = 0

    def _create_tables(self) -> None:
        with self._conn:
            if self.path is not None:
                self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS texts (key TEXT PRIMARY KEY, text TEXT NOT NULL,"
                " n_tokens INTEGER NOT NULL)"
            )
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS embeddings (key TEXT PRIMARY KEY, dim INTEGER NOT NULL,"
                " vec BLOB NOT NULL)"
            )

    # ---------------------------------------------------------------- texts
    def get_texts(self, keys: Sequence[str]) -> dict[str, tuple[str, int]]:
        found: dict[str, tuple[str, int]] = {}
        with self._lock:
            for chunk in _chunks(list(dict.fromkeys(keys)), 500):
                q = f"SELECT key, text, n_tokens FROM texts WHERE key IN ({','.join('?' * len(chunk))})"
                for k, t, n in self._conn.execute(q, chunk):
                    found[k] = (t, n)
        self.hits += sum(1 for k in keys if k in found)
        self.misses += sum(1 for k in keys if k not in found)
        return found

    def put_texts(self, items: Iterable[tuple[str, str, int]]) -> None:
        with self._lock, self._conn:
            self._conn.executemany(
                "INSERT OR REPLACE INTO texts (key, text, n_tokens) VALUES (?, ?, ?)", list(items)
            )

    # ---------------------------------------------------------------- embeddings
    def get_embeddings(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for chunk in _chunks(list(dict.fromkeys(keys)), 500):
                q = f"SELECT key, dim, vec FROM embeddings WHERE key IN ({','.join('?' * len(chunk))})"
                for k, _dim, blob in self._conn.execute(q, chunk):
                    found[k] = np.frombuffer(blob, dtype=np.float32).copy()
        return found

    def put_embeddings(self, items: Iterable[tuple[str, np.ndarray]]) -> None:
        rows = [
            (k, int(v.shape[0]), np.ascontiguousarray(v, np.float32).tobytes()) for k, v in items
        ]
        with self._lock, self._conn:
            self._conn.executemany(
                "INSERT OR REPLACE INTO embeddings (key, dim, vec) VALUES (?, ?, ?)", rows
            )

    def close(self) -> None:
        self._conn.close()


def _chunks(xs: list[str], n: int) -> Iterable[list[str]]:
    for i in range(0, len(xs), n):
        yield xs[i : i + n]
