"""Partition dates, snapshot instants and the atomic publishing of ``ds=YYYY-MM-DD`` partitions.

Output layout, under a feature set's folder (:func:`mspa_features.snapshots.backfill.feature_set_dir`)::

    preferences/ds=YYYY-MM-DD/part-00000.parquet          PREFERENCES contract, sorted by user_id
    preferences/_manifest.json                            partitions with row counts
    author_profiles/ds=YYYY-MM-DD/part-00000.parquet      AUTHOR_PROFILES, sorted by author_id, ts
    author_profiles/_manifest.json
    _quarantine/preferences/ds=YYYY-MM-DD/part-00000.parquet      QUARANTINE_SCHEMA
    _quarantine/author_profiles/ds=YYYY-MM-DD/part-00000.parquet

``ds`` lives only in the path (hive partitioning); readers that ignore ``_``/``.`` prefixed names
(Spark, pyarrow datasets, DuckDB globs) see only published partitions. Every day of the run's
range gets a partition (cadence ``daily``; for ``weekly``, every Monday), with zero rows where
nothing was due, so a rerun replaces whatever an earlier run left there. The snapshot instant of
partition ``ds=D`` is ``D 00:00:00 UTC``.

Publishing (:func:`publish`). A job writes its computed rows to a staging folder, split
``kind=row|quarantine/ds=D/``; then, partition by partition, the driver reconciles them
(``requested == written + quarantined``, :class:`~mspa_features.errors.ReconciliationError` before
anything is published otherwise), sorts them, writes ``.ds=D.tmp-<run>/part-00000.parquet`` next
to the partition and swaps it in (``ds=D`` renamed to ``.ds=D.old-<run>``, the temp renamed to
``ds=D``, the old one deleted). A killed job therefore leaves each partition either old or new,
never a mix; the next run first restores any ``.old`` partition whose new version never arrived
and deletes temp and staging leftovers (:func:`prepare_output`). A rerun for the same range
replaces the same partitions (no duplicates), and a run over one new day touches only that
day's partitions (and the manifests). One backfill per entity and feature set at a time
(:func:`entity_lock`). The swap relies on POSIX renames: the workspace must be a local or POSIX
file system. Nothing here imports Spark.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mspa_features.data.contracts import Contract
from mspa_features.data.validation import QUARANTINE_SCHEMA
from mspa_features.errors import (
    IncompatibleSettingsError,
    InvalidValueError,
    MspaError,
    ReconciliationError,
    SchemaError,
    UnknownNameError,
)

__all__ = [
    "CADENCE_DAYS",
    "MANIFEST",
    "PART_FILE",
    "QUARANTINE_DIR",
    "STAGING_DIR",
    "BackfillCounts",
    "PartitionCounts",
    "Progress",
    "drop_staging",
    "entity_lock",
    "parse_date",
    "partition_dates",
    "prepare_output",
    "publish",
    "read_manifest",
    "read_partitions",
    "recover_partitions",
    "snapshot_instant",
    "staging_area",
]

#: ``progress(stage, done, total)``: how jobs report progress to a caller's bar.
Progress = Callable[[str, int, int], None]

PART_FILE = "part-00000.parquet"
MANIFEST = "_manifest.json"
QUARANTINE_DIR = "_quarantine"
STAGING_DIR = "_staging"
CADENCE_DAYS = {"daily": 1, "weekly": 7}
# A seam for tests that simulate a job killed between the two renames of a swap.
_rename = os.rename


# --------------------------------------------------------------------------- instants


def partition_dates(start: date, end: date, cadence: str) -> list[date]:
    """The partition dates of ``[start, end]``: every day (daily) or every Monday (weekly).

    Raises:
        ValueError: ``end`` is before ``start``, or the cadence is unknown.
    """
    if cadence not in CADENCE_DAYS:
        raise UnknownNameError("cadence", cadence, CADENCE_DAYS)
    if end < start:
        raise IncompatibleSettingsError(
            {"start": start.isoformat(), "end": end.isoformat()}, "end is before start"
        )
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    return days if cadence == "daily" else [d for d in days if d.weekday() == 0]


def snapshot_instant(ds: date) -> datetime:
    """The as-of instant of partition ``ds``: its midnight UTC."""
    return datetime(ds.year, ds.month, ds.day, tzinfo=UTC)


def parse_date(value: str) -> date:
    """``YYYY-MM-DD`` -> date (a clear error for anything else)."""
    try:
        return date.fromisoformat(value)
    except ValueError as e:
        raise InvalidValueError("date", value, "a date YYYY-MM-DD") from e


# --------------------------------------------------------------------------- counts


@dataclass
class PartitionCounts:
    """One partition's reconciliation: ``requested == written + quarantined``."""

    ds: str
    requested: int
    written: int
    quarantined: int


@dataclass
class BackfillCounts:
    """What one entity's backfill did; ``requested == written + quarantined`` always holds.

    Attributes:
        entity: ``preferences`` or ``author_profiles``.
        requested: users due for a snapshot (summed over partitions) / author snapshots in range.
        written: rows published.
        quarantined: requests that went to quarantine (reasons in ``reasons``).
        partitions: per-partition counts, in date order.
        path: the entity's output folder.
        seconds: wall time of the backfill (session start excluded).
        notes: why rows one might expect are not there (nothing in range, content carried
            over to the range start), for the output.
        status: written rows per generation status (``ok`` / ``repaired`` / ``failed``, the
            contract's ``<prefix>_status`` column that Feast serves).
        decoding: written rows per decoding (``constrained`` / ``free`` / ``none``).
    """

    entity: str
    requested: int = 0
    written: int = 0
    quarantined: int = 0
    partitions: list[PartitionCounts] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)
    path: str = ""
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    status: dict[str, int] = field(default_factory=dict)
    decoding: dict[str, int] = field(default_factory=dict)

    def check(self) -> None:
        """Raises ReconciliationError unless requested == written + quarantined."""
        if self.requested != self.written + self.quarantined:
            raise ReconciliationError(
                f"backfill {self.entity}", self.requested, self.written, self.quarantined
            )

    def as_dict(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "written": self.written,
            "quarantined": self.quarantined,
            "partitions": len(self.partitions),
            "reasons": dict(self.reasons),
            "path": self.path,
            "seconds": round(self.seconds, 3),
            "notes": list(self.notes),
            "status": dict(self.status),
            "decoding": dict(self.decoding),
        }


# --------------------------------------------------------------------------- publishing


@contextlib.contextmanager
def entity_lock(root: Path, entity: str) -> Iterator[None]:
    """Hold ``root/.<entity>.lock`` (fcntl) for the block: one backfill per entity and folder.

    Raises:
        MspaError: another process holds it (names the folder and the lock file).
    """
    import fcntl

    root.mkdir(parents=True, exist_ok=True)
    path = root / f".{entity}.lock"
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise MspaError(
                f"another backfill of {entity} is writing {root} (lock {path}); wait for it"
            ) from e
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def recover_partitions(folder: Path) -> list[str]:
    """Undo what a killed publish left in ``folder``; returns what was done.

    ``.ds=D.old-*`` is renamed back to ``ds=D`` when the new partition never arrived (else
    deleted); ``.ds=D.tmp-*`` (a new partition not swapped in) is deleted.
    """
    done: list[str] = []
    if not folder.is_dir():
        return done
    for p in sorted(folder.iterdir()):
        name = p.name
        if name.startswith(".ds=") and ".old-" in name:
            final = folder / name[1:].split(".old-")[0]
            if final.exists():
                shutil.rmtree(p)
                done.append(f"deleted {name}")
            else:
                _rename(p, final)
                done.append(f"restored {final.name}")
        elif name.startswith(".ds=") and ".tmp-" in name:
            shutil.rmtree(p)
            done.append(f"deleted {name}")
    return done


def swap_in(folder: Path, ds: str, table: pa.Table, run_id: str) -> Path:
    """Publish ``table`` as ``folder/ds=<ds>/part-00000.parquet``; old or new, never a mix."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"ds={ds}"
    tmp = folder / f".ds={ds}.tmp-{run_id}"
    old = folder / f".ds={ds}.old-{run_id}"
    tmp.mkdir()
    pq.write_table(table, tmp / PART_FILE, coerce_timestamps="us")
    had_old = final.exists()
    if had_old:
        _rename(final, old)
    _rename(tmp, final)
    if had_old:
        shutil.rmtree(old)
    return final / PART_FILE


def _staged_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.parquet")) if folder.is_dir() else []


def _staged_count(folder: Path) -> int:
    return sum(pq.read_metadata(f).num_rows for f in _staged_files(folder))


def _read_staged(folder: Path, columns: list[str]) -> pa.Table | None:
    files = _staged_files(folder)
    if not files:
        return None
    return pa.concat_tables([pq.read_table(f, columns=columns) for f in files])


def read_manifest(entity_dir: Path) -> dict[str, Any]:
    """The entity's manifest (``{}``-shaped skeleton when none was written yet)."""
    p = Path(entity_dir) / MANIFEST
    if p.is_file():
        try:
            return json.loads(p.read_text())
        except json.JSONDecodeError:
            pass  # a manifest is an index: rebuilt partition by partition as runs publish
    return {"partitions": {}}


def _write_manifest(entity_dir: Path, manifest: dict[str, Any]) -> None:
    p = entity_dir / MANIFEST
    tmp = entity_dir / f".{MANIFEST}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    os.replace(tmp, p)


def read_partitions(entity_dir: Path, dates: Sequence[date | str] | None = None) -> pa.Table:
    """Published partitions of one entity as one table with a ``ds`` string column."""
    parts = []
    wanted = None if dates is None else {str(d) for d in dates}
    for d in sorted(Path(entity_dir).glob("ds=*")):
        ds = d.name.removeprefix("ds=")
        if wanted is not None and ds not in wanted:
            continue
        t = pq.read_table(d / PART_FILE)
        parts.append(t.append_column("ds", pa.array([ds] * t.num_rows, pa.string())))
    if not parts:
        raise SchemaError(entity_dir, "no published partitions")
    return pa.concat_tables(parts)


def publish(
    *,
    contract: Contract,
    root: Path,
    dates: list[date],
    requested: dict[str, int],
    staging: Path,
    sort_keys: list[str],
    run_id: str,
    meta: dict[str, Any],
    progress: Progress | None,
) -> BackfillCounts:
    """Reconcile the staged output, then swap each partition in and update the manifest.

    Args:
        contract: the entity's contract (its name is the output folder; its key, less
            ``model_version``, must be unique per partition).
        root: the feature set's folder.
        dates: every partition of the range (each is published, empty ones included).
        requested: ``ds -> rows requested`` (what staged rows + quarantine must add up to).
        staging: the job's staging folder: ``kind=row|quarantine/ds=D/*.parquet``, the rows in
            the contract's columns, the quarantine in its key columns + ``reason`` + ``record``.
        sort_keys: the published rows' order.
        run_id: names the temp and old folders of the swap and goes into the manifest.
        meta: manifest fields (``feature_set`` is required: it names the quarantine source).

    Returns:
        The reconciled counts, partitions in date order, quarantine reasons tallied.

    Raises:
        ReconciliationError: staged rows outside ``dates``, a partition whose requested !=
            written + quarantined (nothing published then), or duplicate keys.
    """
    entity = contract.name
    key_cols = [c for c in contract.key if c != "model_version"]
    rows_dir, q_dir = staging / "kind=row", staging / "kind=quarantine"
    names = [d.isoformat() for d in dates]
    staged = {
        p.name.removeprefix("ds=")
        for base in (rows_dir, q_dir)
        if base.is_dir()
        for p in base.glob("ds=*")
    }
    counts = BackfillCounts(entity=entity, path=str(root / entity))
    for ds in sorted(staged - set(names)):  # rows outside the range: a bug, never published
        raise ReconciliationError(
            f"backfill {entity} ds={ds} (outside the range)",
            requested.get(ds, 0),
            _staged_count(rows_dir / f"ds={ds}"),
            _staged_count(q_dir / f"ds={ds}"),
        )
    for ds in names:
        pc = PartitionCounts(
            ds,
            requested.get(ds, 0),
            _staged_count(rows_dir / f"ds={ds}"),
            _staged_count(q_dir / f"ds={ds}"),
        )
        if pc.requested != pc.written + pc.quarantined:
            raise ReconciliationError(
                f"backfill {entity} ds={ds}", pc.requested, pc.written, pc.quarantined
            )
        counts.partitions.append(pc)
    counts.requested = sum(p.requested for p in counts.partitions)
    counts.written = sum(p.written for p in counts.partitions)
    counts.quarantined = sum(p.quarantined for p in counts.partitions)
    counts.check()

    entity_dir, q_root = root / entity, root / QUARANTINE_DIR / entity
    entity_dir.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(entity_dir)
    manifest.update({"entity": entity, "contract": entity, **meta})
    reasons: Counter[str] = Counter()
    # how the rows were written, tallied from the rows being published (no second read)
    written_by = {
        kind: [c for c in contract.columns if c.endswith(f"_{kind}")]
        for kind in ("status", "decoding")
    }
    tallies: dict[str, Counter[str]] = {kind: Counter() for kind in written_by}
    for i, pc in enumerate(counts.partitions):
        ds = pc.ds
        rows = _read_staged(rows_dir / f"ds={ds}", contract.columns)
        rows = (contract.empty() if rows is None else rows.cast(contract.schema)).sort_by(
            [(k, "ascending") for k in sort_keys]
        )
        q = _read_staged(q_dir / f"ds={ds}", [*key_cols, "reason", "record"])
        q_table = _quarantine_table(entity, ds, meta["feature_set"], rows, q, key_cols)
        reasons.update(q_table.column("reason").to_pylist())
        for kind, cols in written_by.items():
            for col in cols:
                tallies[kind].update(rows.column(col).to_pylist())
        if len(set(zip(*(rows.column(k).to_pylist() for k in key_cols), strict=True))) != len(rows):
            raise ReconciliationError(
                f"backfill {entity} ds={ds}: duplicate keys",
                pc.requested,
                rows.num_rows,
                q_table.num_rows,
            )
        swap_in(entity_dir, ds, rows, run_id)
        swap_in(q_root, ds, q_table, run_id)
        versions = sorted(set(rows.column("model_version").to_pylist()))
        manifest["partitions"][ds] = {
            "path": f"ds={ds}/{PART_FILE}",
            "quarantine_path": f"../{QUARANTINE_DIR}/{entity}/ds={ds}/{PART_FILE}",
            "rows": pc.written,
            "quarantined": pc.quarantined,
            "requested": pc.requested,
            "model_versions": versions,
            "cadence": meta.get("cadence"),
            "run_id": run_id,
            "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        manifest["partitions"] = dict(sorted(manifest["partitions"].items()))
        _write_manifest(entity_dir, manifest)
        if progress:
            progress(f"{entity}: publish partitions", i + 1, len(counts.partitions))
    counts.reasons = dict(reasons)
    counts.status, counts.decoding = (
        dict(sorted(tallies[k].items(), key=lambda kv: str(kv[0]))) for k in written_by
    )
    return counts


def _quarantine_table(
    entity: str, ds: str, feature_set: str, rows: pa.Table, q: pa.Table | None, key_cols: list[str]
) -> pa.Table:
    """QUARANTINE_SCHEMA rows; row_number = the request's rank within the partition by key."""
    if q is None or q.num_rows == 0:
        return QUARANTINE_SCHEMA.empty_table()
    q = q.sort_by([(k, "ascending") for k in key_cols])

    def keys(t: pa.Table) -> list[tuple]:
        return list(zip(*(t.column(k).to_pylist() for k in key_cols), strict=True))

    rank = {k: i for i, k in enumerate(sorted(keys(rows) + keys(q)))}
    return pa.table(
        {
            "contract": [entity] * q.num_rows,
            "source": [f"backfill {feature_set}/{entity} ds={ds}"] * q.num_rows,
            "row_number": [rank[k] for k in keys(q)],
            "reason": q.column("reason").to_pylist(),
            "record": q.column("record").to_pylist(),
        },
        schema=QUARANTINE_SCHEMA,
    )


def prepare_output(root: Path, entity: str) -> list[str]:
    """Recover partitions a killed run left half-swapped; delete stale staging; returns what
    was done (for logs)."""
    done = recover_partitions(root / entity) + recover_partitions(root / QUARANTINE_DIR / entity)
    for p in sorted((root / STAGING_DIR).glob(f"{entity}-*")):
        shutil.rmtree(p, ignore_errors=True)
        done.append(f"deleted staging {p.name}")
    return done


@contextlib.contextmanager
def staging_area(root: Path, entity: str) -> Iterator[tuple[Path, str]]:
    """One publishing run of ``entity`` under ``root``: holds :func:`entity_lock`, recovers what
    a killed run left (:func:`prepare_output`), yields ``(staging folder, run id)`` for the job
    to write into and :func:`publish` from, and deletes the staging folder on exit.

    Raises:
        MspaError: another backfill holds this entity's lock.
    """
    run_id = uuid.uuid4().hex[:12]
    with entity_lock(root, entity):
        prepare_output(root, entity)
        staging = root / STAGING_DIR / f"{entity}-{run_id}"
        try:
            yield staging, run_id
        finally:
            drop_staging(staging)


def drop_staging(staging: Path) -> None:
    """Delete a run's staging folder (and ``_staging`` itself once no other run uses it)."""
    shutil.rmtree(staging, ignore_errors=True)
    with contextlib.suppress(OSError):  # still in use by the other entity's run
        staging.parent.rmdir()
