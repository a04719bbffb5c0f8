"""The Python side of the backfill's Spark stages: ``mapInArrow`` bodies run inside workers.

:func:`preference_udf` receives one partition's rows sorted by user (the requested snapshot
instants and the user's positives, ``kind`` 0 and 1), builds each user's snapshots with THE
point-in-time history rule (:func:`mspa_features.snapshots.history.user_snapshots`), then
composes and encodes them in batches of :data:`FLUSH_ROWS`. :func:`author_udf` does the same for
author content snapshots. Both yield :data:`OUT_SCHEMAS` rows: the contract's columns plus
``kind`` (``row`` | ``quarantine``), ``ds``, ``reason`` and ``record``, which the driver stages
and publishes (:func:`mspa_features.snapshots.partitions.publish`).

The composer, encoder, cache connection and authors table are loaded once per Python worker and
job (a module-level dict keyed by the job's JSON, :class:`WorkerSpec`). Timestamps are int64
microseconds since the epoch (UTC) throughout.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa

from mspa_features.config import ComposerConfig
from mspa_features.config_base import StrictModel
from mspa_features.data.contracts import AUTHOR_PROFILES, AUTHORS, PREFERENCES
from mspa_features.errors import InvalidTypeError, ReconciliationError
from mspa_features.snapshots.history import EPOCH, AuthorSnapshots, user_snapshots, utc_from_us

if TYPE_CHECKING:
    from mspa_features.data.contracts import Author
    from mspa_features.snapshots.history import UserHistory

__all__ = [
    "FLUSH_ROWS",
    "OUT_SCHEMAS",
    "RowTicker",
    "WorkerSpec",
    "author_udf",
    "ddl",
    "preference_udf",
    "read_row_progress",
    "user_groups",
]

# Histories composed and encoded per call inside a worker: big enough to batch the encoder well
# (it sorts each call's texts by length), small enough to bound worker memory.
FLUSH_ROWS = 2048


class WorkerSpec(StrictModel):
    """Everything a Python worker needs; its JSON keys the per-worker cache."""

    entity: str
    composer: Literal["template", "llm"]
    composer_cfg: ComposerConfig
    cache_path: str
    authors_path: str
    authors_stamp: str  # size + mtime: a changed authors file is reloaded
    batch_size: int
    torch_threads: int | None


class _Worker:
    """Composer, encoder, cache and authors, loaded once per Python worker and job spec."""

    def __init__(self, spec: WorkerSpec):
        from mspa_features.compose.cache import ComposerCache
        from mspa_features.compose.jobs import get_encoder, make_composer
        from mspa_features.io import read_parquet

        if spec.torch_threads:
            import torch

            torch.set_num_threads(spec.torch_threads)
        self.spec = spec
        self.cache = ComposerCache(spec.cache_path)
        comp_cfg = spec.composer_cfg
        if spec.entity == AUTHOR_PROFILES.name:  # shorter outputs for descriptions
            comp_cfg = comp_cfg.model_copy(
                update={"max_new_tokens": comp_cfg.author_max_new_tokens}
            )
        self.composer = make_composer(spec.composer, comp_cfg, self.cache)
        self.encoder = get_encoder(spec.composer_cfg)
        self.authors = AuthorSnapshots(
            AUTHORS.to_records(read_parquet(spec.authors_path, AUTHORS.schema))
        )

    def compose(self, builder: Any, items: list[Any], tick: RowTicker) -> Any:
        """``builder`` (``compose_preference_rows`` / ``compose_author_rows``) over ``items``
        with this worker's composer, encoder, cache and batch size; ``created_timestamp`` is
        set per row afterwards (:func:`_stamped`), and ``tick`` hears each composer batch."""
        return builder(
            self.composer,
            self.encoder,
            items,
            cache=self.cache,
            batch_size=self.spec.batch_size,
            created=EPOCH,
            on_batch=tick,
        )


_WORKERS: dict[str, _Worker] = {}
_MAX_WORKERS = 4


def _worker(spec_json: str) -> _Worker:
    w = _WORKERS.get(spec_json)
    if w is None:
        while len(_WORKERS) >= _MAX_WORKERS:  # long-lived workers serve many jobs
            _WORKERS.pop(next(iter(_WORKERS)))
        w = _WORKERS[spec_json] = _Worker(WorkerSpec.model_validate_json(spec_json))
    return w


class RowTicker:
    """Row progress of one Spark task, for the driver's display (:func:`read_row_progress`).

    Spark reports a task only when it ends, and the LLM set's compose step is one long task
    (an hour for the whole MovieLens set on 2 cores): after each composer batch the task writes
    its running count of composed inputs to ``<folder>/<partition id>`` (atomically: a temp file
    of its own and ``os.replace``), which the driver sums. A retried attempt starts its
    partition's count again. ``folder=None`` (no display) writes nothing, and a folder the task
    cannot write (a workspace the executors do not share) only stops the reports: the display
    never fails the job.
    """

    def __init__(self, folder: str | None):
        self.path: str | None = None
        self.done = 0
        if folder is None:
            return
        from pyspark import TaskContext

        ctx = TaskContext.get()
        part, attempt = (ctx.partitionId(), ctx.attemptNumber()) if ctx is not None else (0, 0)
        self.path = os.path.join(folder, str(part))
        # each attempt its own temp file: a speculative twin never replaces it from under us
        self._tmp = f"{self.path}.{attempt}-{os.getpid()}.tmp"
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError:
            self.path = None
        self._write()

    def __call__(self, n: int) -> None:
        self.done += n
        self._write()

    def _write(self) -> None:
        if self.path is None:
            return
        try:
            with open(self._tmp, "w") as f:
                f.write(str(self.done))
            os.replace(self._tmp, self.path)
        except OSError:  # the display is a courtesy: it never fails the job
            self.path = None


def read_row_progress(folder: str | Path) -> int:
    """Inputs composed so far by every task of a step (the sum of its :class:`RowTicker` files;
    0 before any). Files being replaced or unreadable count as their last value, 0."""
    total = 0
    for p in Path(folder).glob("[0-9]*"):
        if p.suffix:  # a ticker's temp file
            continue
        try:
            total += int(p.read_text() or 0)
        except (OSError, ValueError):
            continue
    return total


def _nullable(schema: pa.Schema) -> list[pa.Field]:
    return [pa.field(f.name, f.type) for f in schema]


# mapInArrow outputs: the contract's columns plus kind (row | quarantine), ds, reason, record.
_EXTRA_HEAD = [pa.field("kind", pa.string()), pa.field("ds", pa.string())]
_EXTRA_TAIL = [pa.field("reason", pa.string()), pa.field("record", pa.string())]
OUT_SCHEMAS = {
    c.name: pa.schema([*_EXTRA_HEAD, *_nullable(c.schema), *_EXTRA_TAIL])
    for c in (PREFERENCES, AUTHOR_PROFILES)
}


def ddl(schema: pa.Schema) -> str:
    """The Spark DDL of an arrow schema made of the types the contracts use."""

    def typ(t: pa.DataType) -> str:
        if pa.types.is_string(t):
            return "string"
        if pa.types.is_timestamp(t):
            return "timestamp"
        if pa.types.is_int64(t):
            return "long"
        if pa.types.is_float32(t):
            return "float"
        if pa.types.is_list(t):
            return f"array<{typ(t.value_type)}>"
        raise InvalidTypeError(
            "arrow type", t, "string, timestamp, int64, float32 or a list of them (no Spark type)"
        )

    return ", ".join(f"{f.name} {typ(f.type)}" for f in schema)


def user_groups(
    batches: Iterator[pa.RecordBatch],
) -> Iterator[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """(user_id, ts_us, author_ids, kinds) per user from batches sorted by user_id.

    A user's rows may straddle batch boundaries: the last user of a batch is carried over.
    """
    carry: tuple[np.ndarray, ...] | None = None
    for b in batches:
        if b.num_rows == 0:
            continue
        cols = (
            b.column("user_id").to_numpy(zero_copy_only=False),
            b.column("event_timestamp").cast(pa.int64()).to_numpy(),
            b.column("author_id").to_numpy(zero_copy_only=False),
            b.column("kind").to_numpy(),
        )
        if carry is not None:
            cols = tuple(np.concatenate([c, x]) for c, x in zip(carry, cols, strict=True))
        users = cols[0]
        bounds = [0, *(np.flatnonzero(users[1:] != users[:-1]) + 1).tolist(), len(users)]
        for lo, hi in itertools.pairwise(bounds[:-1]):  # all but the last user: complete
            yield users[lo], cols[1][lo:hi], cols[2][lo:hi], cols[3][lo:hi]
        lo = bounds[-2]
        carry = tuple(c[lo:] for c in cols)
    if carry is not None and len(carry[0]):
        yield carry[0][0], carry[1], carry[2], carry[3]


def _with_extras(
    table: pa.Table,
    ds: list[str],
    schema: pa.Schema,
    *,
    kind: str,
    reasons: list[str] | None,
    records: list[str] | None,
) -> pa.Table:
    n = table.num_rows
    cols: dict[str, Any] = {"kind": pa.array([kind] * n, pa.string()), "ds": pa.array(ds)}
    for f in schema:
        if f.name in cols:
            continue
        if f.name in table.column_names:
            cols[f.name] = table.column(f.name).cast(f.type)
        elif f.name == "reason" and reasons is not None:
            cols[f.name] = pa.array(reasons, pa.string())
        elif f.name == "record" and records is not None:
            cols[f.name] = pa.array(records, pa.string())
        else:
            cols[f.name] = pa.nulls(n, f.type)
    return pa.table(cols, schema=schema)


def _stamped(out: Any) -> tuple[list[int], list[int], pa.Table]:
    """(ok, skipped) indices of a composer output, and its rows with ``created_timestamp`` =
    their ``event_timestamp`` (never the wall clock: reruns stay row-for-row identical)."""
    ok = [i for i, c in enumerate(out.composed) if c.status != "skipped"]
    bad = [i for i, c in enumerate(out.composed) if c.status == "skipped"]
    table = out.table.set_column(
        out.table.schema.get_field_index("created_timestamp"),
        "created_timestamp",
        out.table.column("event_timestamp"),
    )
    return ok, bad, table


def _staged(
    out: Any,
    ok_bad: tuple[list[int], list[int]],
    entity: str,
    table: pa.Table,
    days: list[str],
    q_keys: pa.Table,
    records: list[dict[str, Any]],
) -> pa.Table:
    """:data:`OUT_SCHEMAS` rows: ``table`` (the composed rows) as ``kind=row``, and the skipped
    inputs (``q_keys``, ``records`` in input order) as ``kind=quarantine`` with their reason;
    ``ok_bad`` are the composed and skipped input indices, ``days`` every input's partition."""
    ok, bad = ok_bad
    schema = OUT_SCHEMAS[entity]
    rows = _with_extras(
        table, [days[i] for i in ok], schema, kind="row", reasons=None, records=None
    )
    q = _with_extras(
        q_keys,
        [days[i] for i in bad],
        schema,
        kind="quarantine",
        reasons=[out.composed[i].reason or "skipped" for i in bad],
        records=[json.dumps(records[i]) for i in bad],
    )
    return pa.concat_tables([rows, q])


def _compose_preference_batch(
    w: _Worker, histories: list[UserHistory], tick: RowTicker
) -> pa.Table:
    """Preference rows (and quarantine) of the histories, each in its as-of day's partition."""
    from mspa_features.compose.feature_rows import compose_preference_rows

    out = w.compose(compose_preference_rows, histories, tick)
    ok, bad, table = _stamped(out)
    q_keys = pa.table(
        {
            "user_id": pa.array([histories[i].user_id for i in bad], pa.string()),
            "event_timestamp": pa.array(
                [histories[i].as_of for i in bad], PREFERENCES.schema.field("event_timestamp").type
            ),
            "history_count": pa.array([histories[i].history_count for i in bad], pa.int64()),
        }
    )
    records = [
        {
            "user_id": h.user_id,
            "event_timestamp": h.as_of.isoformat(),
            "history_count": h.history_count,
        }
        for h in histories
    ]
    days = [h.as_of.strftime("%Y-%m-%d") for h in histories]
    return _staged(out, (ok, bad), PREFERENCES.name, table, days, q_keys, records)


def preference_udf(
    spec_json: str, batches: Iterator[pa.RecordBatch], *, progress_dir: str | None = None
) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: rows sorted by user -> preference rows and quarantine rows.

    ``progress_dir``: where the task reports snapshots composed so far (:class:`RowTicker`)."""
    w = _worker(spec_json)
    tick = RowTicker(progress_dir)
    pending: list[UserHistory] = []
    for user_id, ts, aids, kinds in user_groups(batches):
        pending += user_snapshots(user_id, ts, aids, kinds, w.authors)
        if len(pending) >= FLUSH_ROWS:
            yield from _compose_preference_batch(w, pending, tick).to_batches()
            pending = []
    if pending:
        yield from _compose_preference_batch(w, pending, tick).to_batches()


def _compose_author_batch(
    w: _Worker, keys: list[tuple[str, int, int]], tick: RowTicker
) -> pa.Table:
    """Profiles for (author_id, content snapshot us, valid-from us) keys.

    A row is valid from its valid-from instant: the snapshot's own time, or the range start
    for content carried over from before it; ``created_timestamp`` is the snapshot's time.
    """
    from mspa_features.compose.feature_rows import compose_author_rows

    valid_from = [v for _, _, v in keys]
    keys2 = [(aid, ts) for aid, ts, _ in keys]
    authors = [w.authors.get(aid, ts) for aid, ts in keys2]
    missing = [k for k, a in zip(keys2, authors, strict=True) if a is None]
    if missing:  # Spark and the worker read the same file: a mismatch is a bug
        raise ReconciliationError(
            f"author snapshots not found in worker: {missing[:3]}",
            len(keys),
            len(keys) - len(missing),
            0,
        )
    recs: list[Author] = [a for a in authors if a is not None]
    out = w.compose(compose_author_rows, recs, tick)
    ok, bad, table = _stamped(out)
    ts_type = AUTHORS.schema.field("event_timestamp").type
    table = table.set_column(
        table.schema.get_field_index("event_timestamp"),
        "event_timestamp",
        pa.array([valid_from[i] for i in ok], pa.int64()).cast(ts_type),
    )
    q_keys = pa.table(
        {
            "author_id": pa.array([recs[i].author_id for i in bad], pa.string()),
            "event_timestamp": pa.array([valid_from[i] for i in bad], pa.int64()).cast(ts_type),
        }
    )
    records = [
        {
            "author_id": a.author_id,
            "event_timestamp": a.event_timestamp.isoformat(),
            "profile_text": a.profile_text,
            "n_frames": len(a.frames),
        }
        for a in recs
    ]
    days = [utc_from_us(v).strftime("%Y-%m-%d") for v in valid_from]
    return _staged(out, (ok, bad), AUTHOR_PROFILES.name, table, days, q_keys, records)


def author_udf(
    spec_json: str, batches: Iterator[pa.RecordBatch], *, progress_dir: str | None = None
) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: (author_id, event_timestamp) keys -> author profile rows + quarantine;
    ``progress_dir`` as :func:`preference_udf`."""
    w = _worker(spec_json)
    tick = RowTicker(progress_dir)
    pending: list[tuple[str, int, int]] = []
    for b in batches:
        aids = b.column("author_id").to_pylist()
        ts = b.column("event_timestamp").cast(pa.int64()).to_pylist()
        valid = b.column("valid_from").cast(pa.int64()).to_pylist()
        pending += list(zip(aids, ts, valid, strict=True))
        while len(pending) >= FLUSH_ROWS:
            yield from _compose_author_batch(w, pending[:FLUSH_ROWS], tick).to_batches()
            pending = pending[FLUSH_ROWS:]
    if pending:
        yield from _compose_author_batch(w, pending, tick).to_batches()
