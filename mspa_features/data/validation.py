"""Validate raw rows against a contract; rows that fail go to quarantine with the reason.

Two kinds of failure, handled differently:

* the file as a whole is malformed (a required column is missing, timestamps are numbers of
  unknown unit): :class:`~mspa_features.errors.SchemaError`, naming the file and the column;
* a row is bad (naive or unparseable timestamp, unknown id, NaN/inf, wrong vector dimension,
  duplicate key, undecodable image, missing required modality, non-UTF-8 text): the row goes
  to the quarantine table with ``reason`` = ``"<field>: <what is wrong>"`` (several reasons are
  joined with ``"; "``) and the raw record as JSON, so nothing is lost.

``n_input == n_accepted + n_quarantined`` always holds; :func:`validate` checks it.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import re
import shutil
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from mspa_features.data import rules as R
from mspa_features.data import timestamps as ts
from mspa_features.data.contracts import Contract
from mspa_features.errors import (
    InputMismatchError,
    InvalidValueError,
    NothingAcceptedError,
    ReconciliationError,
    SchemaError,
)
from mspa_features.io import write_parquet_atomic

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("contract", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("row_number", pa.int64(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("record", pa.string(), nullable=False),
    ]
)


@dataclass
class ValidationResult:
    """Accepted rows (typed, contract schema) and quarantined rows (raw, with reasons)."""

    contract: str
    source: str
    n_input: int
    accepted: pa.Table
    quarantine: pa.Table
    notes: list[str] = field(default_factory=list)

    @property
    def n_accepted(self) -> int:
        return self.accepted.num_rows

    @property
    def n_quarantined(self) -> int:
        return self.quarantine.num_rows

    def reason_counts(self) -> Counter[str]:
        """Quarantined rows per reason kind (the text before any quoted value)."""
        kinds: Counter[str] = Counter()
        for reason in self.quarantine.column("reason").to_pylist():
            for part in reason.split("; "):
                kinds[_reason_kind(part)] += 1
        return kinds

    def write(self, accepted_path: str | Path, quarantine_path: str | Path) -> None:
        write_parquet_atomic(self.accepted, accepted_path)
        write_parquet_atomic(self.quarantine, quarantine_path)


class FileValidationResult(ValidationResult):
    """A result whose accepted and quarantined rows are parquet files (the Spark engine's:
    tables too large for one process are never collected). Counts are known; the tables are
    read only when asked for, and :meth:`write` moves the files into place.
    """

    def __init__(
        self,
        *,
        contract: str,
        source: str,
        n_input: int,
        n_accepted: int,
        accepted_path: Path,
        quarantine_path: Path,
        reason_kinds: Counter[str] | None = None,
        notes: list[str] | None = None,
    ):
        self.contract, self.source, self.n_input = contract, source, n_input
        self._n_accepted = n_accepted
        self.accepted_path, self.quarantine_path = Path(accepted_path), Path(quarantine_path)
        self._kinds = reason_kinds
        self.notes = list(notes or [])

    def __repr__(self) -> str:
        return (
            f"FileValidationResult({self.contract!r}, input={self.n_input}, "
            f"accepted={self.n_accepted}, quarantined={self.n_quarantined})"
        )

    @property  # type: ignore[override]
    def accepted(self) -> pa.Table:
        import pyarrow.parquet as pq

        return pq.read_table(self.accepted_path)

    @property  # type: ignore[override]
    def quarantine(self) -> pa.Table:
        import pyarrow.parquet as pq

        return pq.read_table(self.quarantine_path)

    @property
    def n_accepted(self) -> int:
        return self._n_accepted

    @property
    def n_quarantined(self) -> int:
        return self.n_input - self._n_accepted

    def ids(self, column: str) -> set[str]:
        import pyarrow.parquet as pq

        return set(pq.read_table(self.accepted_path, columns=[column]).column(0).to_pylist())

    def reason_counts(self) -> Counter[str]:
        if self._kinds is None:
            import pyarrow.parquet as pq

            kinds: Counter[str] = Counter()
            f = pq.ParquetFile(self.quarantine_path)
            for batch in f.iter_batches(columns=["reason"], batch_size=65_536):
                for reason in batch.column(0).to_pylist():
                    for part in reason.split("; "):
                        kinds[_reason_kind(part)] += 1
            self._kinds = kinds
        return Counter(self._kinds)

    def write(self, accepted_path: str | Path, quarantine_path: str | Path) -> None:
        for src, dst in (
            (self.accepted_path, accepted_path),
            (self.quarantine_path, quarantine_path),
        ):
            dst = Path(dst)
            if src.resolve() == dst.resolve():
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(f".{dst.name}.tmp")
            shutil.copyfile(src, tmp)  # staging may sit on another filesystem
            os.replace(tmp, dst)
        self.accepted_path, self.quarantine_path = Path(accepted_path), Path(quarantine_path)


def accepted_ids(res: ValidationResult, column: str) -> set[str]:
    """The ids a result accepted (read from its file when it has one)."""
    if isinstance(res, FileValidationResult):
        return res.ids(column)
    return set(res.accepted.column(column).to_pylist())


@dataclass(frozen=True, kw_only=True)
class SparkValidation:
    """What the Spark engine (``spark_jobs/validate.py``) validates: one contract file with the
    same rules, mapping, timestamp format and known ids the pandas engine would get.

    Attributes:
        rules: the contract's rule set (:func:`mspa_features.data.rules.contract_rules`).
        local: the file (or folder of parquet parts) to read.
        source: its name in errors and in the quarantine's ``source`` column.
        columns: contract column -> the file's column (``data.columns``).
        timestamps: how its instants are written (``data.timestamps``), a
            :class:`~mspa_features.data.sources.TimestampFormat` or None (ISO / typed).
        known_ids: entity contract -> the accepted ids references must be among.
        image_root: where relative frame paths resolve.
        check_images: decode every frame.
        staging: a folder for the engine's output files.
    """

    rules: R.RuleSet
    local: Path
    source: str
    columns: Mapping[str, str]
    timestamps: Any
    known_ids: Mapping[str, set[str]]
    image_root: Path | None
    check_images: bool
    staging: Path


#: The Spark engine: validates one contract file, returns a (file-backed) result.
SparkValidator = Callable[[SparkValidation], ValidationResult]


def _reason_kind(reason: str) -> str:
    return re.split(r" '|, got| \(| \[| first seen", reason, maxsplit=1)[0]


_show = R.show  # one way to show a value in a reason, shared with the Spark engine


def _is_missing(v: Any) -> bool:
    if v is None or v is pd.NaT:
        return True
    return isinstance(v, float) and math.isnan(v)


class _Rows:
    """Collects reasons per row position."""

    def __init__(self, n: int):
        self.reasons: list[list[str]] = [[] for _ in range(n)]

    def add(self, i: int, reason: str) -> None:
        self.reasons[i].append(reason)

    def add_mask(self, mask: np.ndarray, message: Callable[[int], str]) -> None:
        for i in np.flatnonzero(mask):
            self.reasons[i].append(message(int(i)))

    def ok(self) -> np.ndarray:
        return np.array([not r for r in self.reasons], dtype=bool)


# --------------------------------------------------------------------------- column cleaners
# Each cleaner returns a list (or Series) of clean values, None where the value is missing or bad,
# and records a reason for every bad (non-missing) value. Missing required values are reported
# once, later, so a row does not get two reasons for one empty cell.


def _clean_timestamps(s: pd.Series, col: str, rows: _Rows, source: str) -> pd.Series:
    """Per cell: UTC instants in, reasons for naive, unparseable or out-of-range values.

    One rule (:mod:`mspa_features.data.timestamps`) for every input kind, so a parquet
    timestamp and a CSV text of the same instant get the same verdict.
    """
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        us, fits, outside = ts.datetime_column_us(s)
        for i in np.flatnonzero(outside):
            rows.add(i, ts.reason(col, _show(_raw_instant(s, i)), (ts.OUT_OF_RANGE, "")))
        vals = [int(u) if f else None for u, f in zip(us, fits, strict=True)]
        return ts.us_series(vals, s.index)
    if pd.api.types.is_datetime64_dtype(s.dtype):
        rows.add_mask(
            s.notna().to_numpy(),
            lambda i: ts.reason(col, _show(s.iat[i]), (ts.NAIVE, " (no UTC offset)")),
        )
        return ts.us_series([None] * len(s), s.index)
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        raise SchemaError(
            source,
            f"numeric timestamps are ambiguous (seconds? ms?); give ISO-8601 strings with a UTC "
            f"offset or tz-aware timestamps (dtype {s.dtype})",
            column=col,
        )
    out: list[int | None] = [None] * len(s)
    for i, v in enumerate(s.tolist()):
        if _is_missing(v):
            continue
        if isinstance(v, bytes):
            try:
                v = v.decode("utf-8")
            except UnicodeDecodeError:
                rows.add(i, R.not_utf8(col))
                continue
        if isinstance(v, str):
            if not v.strip():
                continue  # blank: reported once as a missing value
            us, problem = ts.parse_text(v)
        elif isinstance(v, datetime):
            us, problem = ts.datetime_us(v)
        else:
            rows.add(i, f"{col}: unsupported timestamp value {_show(v)}")
            continue
        if problem is not None:
            rows.add(i, ts.reason(col, _show(v), problem))
        else:
            out[i] = us
    return ts.us_series(out, s.index)


def _raw_instant(s: pd.Series, i: int) -> str:
    """A tz-aware cell as ISO text, also beyond the range ``pd.Timestamp`` can print."""
    unit = s.dtype.unit
    raw = int(s.dt.tz_convert(None).to_numpy(f"datetime64[{unit}]")[i].view("i8"))
    return f"{np.datetime64(raw, unit)}Z"


def _to_text(v: Any, col: str, i: int, rows: _Rows) -> str | None:
    if _is_missing(v):
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, bytes):
        try:
            return v.decode("utf-8")
        except UnicodeDecodeError:
            rows.add(i, R.not_utf8(col))
            return None
    if isinstance(v, (bool, np.bool_)):
        rows.add(i, R.expected_text(col, _show(v)))
        return None
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        # ids read from a numeric column with nulls arrive as floats (1.0): keep "1".
        return str(int(v))
    rows.add(i, R.expected_text(col, _show(v)))
    return None


def _clean_strings(s: pd.Series, col: str, rows: _Rows) -> list[str | None]:
    return [_to_text(v, col, i, rows) for i, v in enumerate(s.tolist())]


def _clean_numbers(
    s: pd.Series, col: str, rows: _Rows, *, integer: pa.DataType | None, finite: bool
) -> list[Any]:
    values = s.tolist()
    out: list[Any] = [None] * len(values)
    for i, v in enumerate(values):
        if v is None or v is pd.NA:
            continue
        if isinstance(v, (bool, np.bool_)):
            rows.add(i, R.expected_number(col, _show(v)))
            continue
        try:
            x = float(v)
        except (TypeError, ValueError):
            rows.add(i, R.not_a_number(col, _show(v)))
            continue
        if not math.isfinite(x):
            if integer is not None and math.isnan(x):
                # pandas holds a null in an integer column as NaN: a missing value (a required
                # column reports it as missing), not a bad number that quarantines the row
                continue
            if finite or integer is not None or not math.isnan(x):
                rows.add(i, R.not_finite(col, R.show_float(x)))
            continue
        if integer is not None:
            if not x.is_integer():
                rows.add(i, R.expected_integer(col, _show(v)))
                continue
            bits = integer.bit_width - 1
            if not -(2**bits) <= x < 2**bits:
                rows.add(i, R.integer_out_of_range(col, integer, _show(v)))
                continue
            out[i] = int(x)
        else:
            out[i] = x
    return out


def _as_list(v: Any, col: str, i: int, rows: _Rows) -> list[Any] | None:
    if v is None:
        return None
    if isinstance(v, str):
        # CSV cells carry lists as JSON.
        try:
            v = json.loads(v)
        except json.JSONDecodeError:
            rows.add(i, f"{col}: not a JSON list '{_show(v)}'")
            return None
    if isinstance(v, np.ndarray):
        return v.tolist() if v.dtype != object else list(v)
    if isinstance(v, (list, tuple)):
        return list(v)
    if _is_missing(v):
        return None
    rows.add(i, f"{col}: expected a list, got {_show(v)}")
    return None


def _parse_vectors(s: pd.Series, col: str, rows: _Rows) -> list[np.ndarray | None]:
    """Each cell as a float64 array of any shape; None where missing or already reported.

    Lengths are judged later, per table and model version (:func:`_check_vector_lengths`).
    """
    out: list[np.ndarray | None] = []
    big = float(np.finfo(np.float32).max)
    for i, v in enumerate(s.tolist()):
        items = _as_list(v, col, i, rows)
        if items is None:
            out.append(None)
            continue
        try:
            arr = np.asarray(items, dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            rows.add(
                i, f"{col}: not a vector of numbers (found {_show(items)}, expected a flat list)"
            )
            out.append(None)
            continue
        if arr.ndim == 1 and arr.size and not np.isfinite(arr).all():
            rows.add(i, f"{col}: not finite (NaN/inf in vector)")
            out.append(None)
        elif arr.ndim == 1 and arr.size and (np.abs(arr) > big).any():
            rows.add(i, f"{col}: not finite (a value beyond float32's range)")
            out.append(None)
        else:
            out.append(arr)
    return out


def _check_vector_lengths(
    col: str,
    arrays: list[np.ndarray | None],
    groups: list[tuple[Any, ...]],
    group_cols: Sequence[str],
    rows: _Rows,
    *,
    emb_dim: int | None,
    declared: int | None,
) -> tuple[list[np.ndarray | None], list[str]]:
    """One length per table and model version: configured, else declared, else the most common.

    Returns the float32 vectors (None where rejected) and notes saying which length was used
    and why, for the output. Empty and nested vectors are never accepted.
    """
    notes: list[str] = []
    expected: dict[tuple[Any, ...], tuple[int | None, str]] = {}
    if emb_dim is not None:
        notes.append(f"{col}: length {emb_dim} (configured emb_dim)")
    elif declared is not None:
        notes.append(f"{col}: length {declared} (declared by the file's schema)")
    for g in dict.fromkeys(groups):
        if emb_dim is not None:
            expected[g] = (emb_dim, "configured emb_dim")
            continue
        if declared is not None:
            expected[g] = (declared, "declared by the file's schema")
            continue
        lengths = [
            a.shape[0]
            for a, gg in zip(arrays, groups, strict=True)
            if gg == g and a is not None and a.ndim == 1 and a.size
        ]
        if not lengths:
            expected[g] = (None, "")
            continue
        counts = Counter(lengths)  # insertion order = first seen: ties go to the first row
        length, k = counts.most_common(1)[0]
        tie = sum(1 for c in counts.values() if c == k) > 1
        where = ", ".join(f"{c}={_show(v)}" for c, v in zip(group_cols, g, strict=True))
        src = f"the most common length{' for ' + where if where else ''}"
        expected[g] = (length, src)
        notes.append(
            f"{col}: length {length}{' for ' + where if where else ''} (inferred: {k} of "
            f"{len(lengths)} vectors{'; a tie, the first row decides' if tie else ''}; give "
            "emb_dim to require one)"
        )
    out: list[np.ndarray | None] = []
    for i, (a, g) in enumerate(zip(arrays, groups, strict=True)):
        if a is None:
            out.append(None)
            continue
        length, src = expected[g]
        want = f"expected length {length}: {src}" if length is not None else "expected numbers"
        if a.ndim != 1:
            flat = f" of length {length}: {src}" if length is not None else " of numbers"
            rows.add(
                i, f"{col}: nested vector (found shape {a.shape}, expected a flat vector{flat})"
            )
        elif a.size == 0:
            rows.add(i, f"{col}: empty vector (found length 0, {want})")
        elif length is not None and a.shape[0] != length:
            rows.add(i, f"{col}: wrong dimension (found length {a.shape[0]}, {want})")
        else:
            out.append(a.astype(np.float32))
            continue
        out.append(None)
    return out, notes


def _clean_text_lists(s: pd.Series, col: str, rows: _Rows) -> list[list[str]]:
    out: list[list[str]] = []
    for i, v in enumerate(s.tolist()):
        items = _as_list(v, col, i, rows) or []
        texts = [_to_text(x, f"{col}[{k}]", i, rows) for k, x in enumerate(items)]
        out.append([t for t in texts if t is not None])
    return out


def _check_image(data: bytes) -> str | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        return f"undecodable image ({type(e).__name__})"
    return None


def _clean_frames(
    s: pd.Series, col: str, rows: _Rows, image_root: Path | None, check_images: bool
) -> list[list[dict[str, Any]]]:
    out: list[list[dict[str, Any]]] = []
    for i, v in enumerate(s.tolist()):
        frames = []
        for k, f in enumerate(_as_list(v, col, i, rows) or []):
            if isinstance(f, (bytes, bytearray)):
                f = {"bytes": bytes(f), "path": None}
            elif isinstance(f, str):
                f = {"bytes": None, "path": f}
            if not isinstance(f, dict) or not (f.get("bytes") or f.get("path")):
                rows.add(i, f"{col}[{k}]: expected image bytes or a path, got {_show(f)}")
                continue
            data, path = f.get("bytes"), f.get("path")
            if not data:
                p = Path(path)
                if not p.is_absolute() and image_root is not None:
                    p = image_root / p
                if not p.is_file():
                    rows.add(i, f"{col}[{k}]: image file not found '{_show(path)}'")
                    continue
                data_to_check = p.read_bytes() if check_images else None
            else:
                data_to_check = data
            if check_images and data_to_check is not None:
                problem = _check_image(data_to_check)
                if problem:
                    rows.add(i, f"{col}[{k}]: {problem}")
                    continue
            frames.append({"bytes": data or None, "path": path or None})
        out.append(frames)
    return out


def _clean_map(s: pd.Series, col: str, rows: _Rows) -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for i, v in enumerate(s.tolist()):
        if isinstance(v, str):
            try:
                v = json.loads(v)
            except json.JSONDecodeError:
                rows.add(i, f"{col}: not a JSON object '{_show(v)}'")
                v = None
        if v is None or (not isinstance(v, (dict, list, tuple, np.ndarray)) and _is_missing(v)):
            out.append([])
        elif isinstance(v, dict):
            out.append([(str(k), str(x)) for k, x in v.items()])
        elif isinstance(v, (list, tuple, np.ndarray)):
            try:
                out.append([(str(k), str(x)) for k, x in v])
            except (TypeError, ValueError):
                rows.add(i, f"{col}: expected key/value pairs, got {_show(v)}")
                out.append([])
        else:
            rows.add(i, f"{col}: expected a mapping, got {_show(v)}")
            out.append([])
    return out


# --------------------------------------------------------------------------- validate


def _json_default(v: Any) -> Any:
    if isinstance(v, (bytes, bytearray)):
        return {"base64": base64.b64encode(bytes(v)).decode("ascii")}
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (np.integer, np.floating, np.bool_)):
        return v.item()
    return str(v)


def _record_json(row: dict[str, Any]) -> str:
    clean = {
        k: (None if _is_missing(v) and not isinstance(v, np.ndarray) else v) for k, v in row.items()
    }
    return json.dumps(clean, default=_json_default, allow_nan=True)


def _nonempty(v: Any) -> bool:
    if v is None:
        return False
    if isinstance(v, str):
        return bool(v.strip())
    if isinstance(v, (list, tuple, np.ndarray)):
        return len(v) > 0
    return True


def clean_column(
    rule: R.ColumnRule,
    s: pd.Series,
    rows: _Rows,
    *,
    source: str,
    image_root: Path | None = None,
    check_images: bool = True,
) -> Any:
    """One column's cells read as ``rule.kind`` says: clean values (None where missing or bad)
    and a reason in ``rows`` for every bad (non-missing) cell. The cell rules of both engines
    (the Spark engine calls this for the cells it does not read natively)."""
    col = rule.column
    if rule.kind == "timestamp":
        return _clean_timestamps(s, col, rows, source)
    if rule.kind == "string":
        return _clean_strings(s, col, rows)
    if rule.kind == "integer":
        return _clean_numbers(s, col, rows, integer=rule.arrow_type, finite=True)
    if rule.kind == "float":
        return _clean_numbers(s, col, rows, integer=None, finite=rule.finite)
    if rule.kind == "vector":
        return _parse_vectors(s, col, rows)
    if rule.kind == "frames":
        return _clean_frames(s, col, rows, image_root, check_images)
    if rule.kind == "text_list":
        return _clean_text_lists(s, col, rows)
    return _clean_map(s, col, rows)


def clean_cells(
    rule: R.ColumnRule,
    s: pd.Series,
    *,
    source: str,
    contract: str,
    timestamps: Any = None,
    image_root: Path | None = None,
    check_images: bool = True,
) -> tuple[Any, list[list[str]], list[list[str]]]:
    """One column as ingest reads it: the declared timestamp format first
    (:func:`~mspa_features.data.sources.parse_instants`), then :func:`clean_column`.

    Returns (clean values, reasons of the format step, reasons of the cell step) per row: the
    Spark engine's reading of the cells it does not read natively, so its verdicts are these.
    """
    from mspa_features.data.sources import TimestampFormat, parse_instants

    s = s.reset_index(drop=True)
    pre: list[list[str]] = [[] for _ in range(len(s))]
    if rule.kind == "timestamp":
        fmt = timestamps if timestamps is not None else TimestampFormat()
        s, found = parse_instants(s, rule.column, fmt, source=source, contract=contract)
        for i, rs in found.items():
            pre[i] = list(rs)
    rows = _Rows(len(s))
    values = clean_column(
        rule, s, rows, source=source, image_root=image_root, check_images=check_images
    )
    return values, pre, rows.reasons


def validate(
    df: pd.DataFrame,
    contract: Contract,
    *,
    source: str,
    known_ids: Mapping[str, set[str]] | None = None,
    emb_dim: int | None = None,
    required_modalities: Sequence[str] = (),
    image_root: str | Path | None = None,
    check_images: bool = True,
    row_reasons: Mapping[int, Sequence[str]] | None = None,
    raw_records: pd.DataFrame | None = None,
    declared_dims: Mapping[str, int] | None = None,
) -> ValidationResult:
    """Split ``df`` into rows that satisfy ``contract`` and quarantined rows with reasons.

    Args:
        df: raw rows, as read from a file (strings from CSV, typed values from parquet).
        contract: the contract to enforce.
        source: a name for the input (file path), carried into errors and quarantine rows.
        known_ids: entity contract name -> the ids that exist; references to other ids are
            quarantined as unknown. Entities absent from the mapping are not checked.
        emb_dim: the required length of every vector column. Without it, every vector of one
            column and model version must have one length: the one the file declares
            (``declared_dims``, or ``df.attrs["vector_dims"]`` set by
            :func:`~mspa_features.io.read_input`), else the most common one; the length used
            is stated in :attr:`ValidationResult.notes`.
        required_modalities: columns that must be non-empty (text non-blank, lists non-empty),
            e.g. ``("profile_text", "frames")`` for a multimodal composer.
        image_root: directory that relative frame paths resolve against.
        check_images: decode every frame to prove it is an image.
        row_reasons: row position -> reasons found before validation (a converter's per-row
            problems, such as an epoch value out of range); those rows are quarantined.
        raw_records: the rows as the source file holds them (same length as ``df``), kept in
            the quarantine instead of ``df``'s converted values.
        declared_dims: vector column -> the length the source declares.

    Raises:
        SchemaError: a required column is missing, or a column cannot hold the contract's type.
        ValueError: ``emb_dim`` is not a positive integer, or ``raw_records`` has another length.
        ReconciliationError: counts do not add up (a bug).
    """
    missing = [c for c in contract.required if c not in df.columns]
    if missing:
        raise SchemaError(
            source,
            f"missing required column for contract {contract.name!r} "
            f"(file has: {', '.join(map(str, df.columns)) or 'no columns'})",
            column=missing[0],
        )
    for m in required_modalities:
        if m not in contract.columns:
            raise SchemaError(source, f"unknown modality for {contract.name!r}", column=m)
    if emb_dim is not None and (
        isinstance(emb_dim, bool) or int(emb_dim) != emb_dim or emb_dim < 1
    ):
        raise InvalidValueError("emb_dim", emb_dim, "a positive integer")
    if raw_records is not None and len(raw_records) != len(df):
        raise InputMismatchError(
            "must have one row each", {"raw_records": len(raw_records), "df": len(df)}
        )
    declared = dict(declared_dims if declared_dims is not None else df.attrs.get("vector_dims", {}))
    df = df.reset_index(drop=True)
    n = len(df)
    rows = _Rows(n)
    if row_reasons is None:
        row_reasons = df.attrs.get("row_reasons") or {}
    # A row the reader could not split into fields is reported once, as a whole.
    whole_row = {int(i) for i, rs in row_reasons.items() if any(r.startswith("row:") for r in rs)}
    for i, reasons in row_reasons.items():
        for r in reasons:
            rows.add(int(i), r)
    root = Path(image_root) if image_root is not None else None

    rules = R.contract_rules(contract, required_modalities=required_modalities)
    clean: dict[str, Any] = {}
    for rule in rules.columns:
        col = rule.column
        # An absent optional column is all-missing: lists become [] and scalars null below.
        s = df[col] if col in df.columns else pd.Series([None] * n, dtype=object)
        clean[col] = clean_column(
            rule, s, rows, source=source, image_root=root, check_images=check_images
        )

    def value(col: str, i: int) -> Any:
        c = clean[col]
        return c.iat[i] if isinstance(c, pd.Series) else c[i]

    notes: list[str] = []
    for rule in rules.columns:
        if rule.kind != "vector":
            continue
        col = rule.column
        groups = [tuple(value(g, i) for g in rules.vector_groups) for i in range(n)]
        clean[col], col_notes = _check_vector_lengths(
            col,
            clean[col],
            groups,
            rules.vector_groups,
            rows,
            emb_dim=emb_dim,
            declared=declared.get(col),
        )
        notes += col_notes

    # Missing required values, once per cell, only where no other reason already covers it.
    for col in rules.required:
        for i in range(n):
            if i in whole_row:
                continue
            v = value(col, i)
            if (_is_missing(v) or (isinstance(v, str) and not v.strip())) and not any(
                r.startswith(f"{col}") for r in rows.reasons[i]
            ):
                rows.add(i, R.missing_required(col))
    for m in rules.modalities:
        for i in range(n):
            if i in whole_row:
                continue
            if not _nonempty(value(m, i)) and not any(r.startswith(m) for r in rows.reasons[i]):
                rows.add(i, R.missing_modality(m))
    for rule in rules.enums:
        assert rule.allowed is not None
        for i in range(n):
            v = value(rule.column, i)
            if v is not None and v not in rule.allowed:
                rows.add(i, R.not_one_of(rule.column, rule.allowed, _show(v)))
    for rule in rules.nonnegative:
        for i in range(n):
            v = value(rule.column, i)
            if v is not None and v < 0:
                rows.add(i, R.negative(rule.column, _show(v)))
    _check_point_in_time(rules, value, n, rows)
    for rule in rules.references:
        entity = rule.references
        if known_ids is None or entity is None or entity not in known_ids:
            continue
        ids = known_ids[entity]
        for i in range(n):
            v = value(rule.column, i)
            if v is not None and v not in ids:
                rows.add(i, R.unknown_reference(rule.column, entity, _show(v)))

    # Duplicate keys among otherwise-good rows: the first occurrence wins.
    ok = rows.ok()
    if ok.any():
        keys = pd.DataFrame({k: pd.Series(clean[k]) for k in rules.key})[ok]
        dup = keys.duplicated(keep="first").to_numpy()
        if dup.any():
            group = keys.groupby(list(rules.key), sort=False, dropna=False).ngroup().to_numpy()
            _, first_pos = np.unique(group, return_index=True)
            first_row = dict(zip(np.unique(group), keys.index.to_numpy()[first_pos], strict=True))
            ok_idx = np.flatnonzero(ok)
            for j in np.flatnonzero(dup):
                i = int(ok_idx[j])
                shown = [(k, _show(value(k, i))) for k in rules.key]
                rows.add(i, R.duplicate_key(shown, str(first_row[group[j]])))

    ok = rows.ok()
    accepted_cols = []
    for fld in contract.schema:
        c = clean[fld.name]
        if isinstance(c, pd.Series):
            accepted_cols.append(pa.array(c[ok], type=fld.type))
        else:
            sel = [c[i] for i in np.flatnonzero(ok)]
            accepted_cols.append(pa.array(sel, type=fld.type))
    accepted = pa.Table.from_arrays(accepted_cols, schema=contract.schema)

    bad = np.flatnonzero(~ok)
    raw = raw_records.reset_index(drop=True) if raw_records is not None else df
    records = raw.iloc[bad].to_dict(orient="records") if len(bad) else []
    quarantine = pa.Table.from_pydict(
        {
            "contract": [contract.name] * len(bad),
            "source": [str(source)] * len(bad),
            "row_number": [int(i) for i in bad],
            "reason": ["; ".join(rows.reasons[i]) for i in bad],
            "record": [_record_json(r) for r in records],
        },
        schema=QUARANTINE_SCHEMA,
    )
    if accepted.num_rows + quarantine.num_rows != n:
        raise ReconciliationError(contract.name, n, accepted.num_rows, quarantine.num_rows)
    return ValidationResult(
        contract=contract.name,
        source=str(source),
        n_input=n,
        accepted=accepted,
        quarantine=quarantine,
        notes=notes,
    )


def _check_point_in_time(
    rules: R.RuleSet, value: Callable[[str, int], Any], n: int, rows: _Rows
) -> None:
    """Rows may only carry information from before their as-of instant.

    ``contract.built_before`` maps a column that says when the newest information a row was
    built from happened to the column holding the row's as-of instant; the first must be
    strictly earlier. ``contract.history`` pairs a count of events with the newest of them:
    both zero/null or both set.
    """
    for col, as_of in rules.built_before:
        for i in range(n):
            k, t = value(col, i), value(as_of, i)
            if _is_missing(k) or _is_missing(t) or k < t:
                continue
            rows.add(i, R.not_before(col, _show(k), as_of, _show(t)))
    if rules.history is not None:
        count_col, last_col = rules.history
        for i in range(n):
            c, last = value(count_col, i), value(last_col, i)
            if c is None:
                continue
            if c > 0 and _is_missing(last):
                rows.add(i, R.history_missing(last_col, count_col, str(c)))
            elif c == 0 and not _is_missing(last):
                rows.add(i, R.history_set(last_col, count_col, _show(last)))


def require_accepted(
    results: Sequence[ValidationResult],
    *,
    required: Sequence[str] | None = None,
    quarantine: str | Path | None = None,
) -> None:
    """Fail a load in which no row of a required contract was accepted.

    Args:
        results: the validation results of one load.
        required: contract names that must keep at least one row (default: every result's).
        quarantine: where the quarantined rows went, for the message.

    Raises:
        NothingAcceptedError: naming each such contract with its counts and top reasons.
    """
    need = set(required) if required is not None else {r.contract for r in results}
    failed = [
        (
            r.contract,
            r.n_input,
            r.n_quarantined,
            [f"{k} ({v:,})" for k, v in r.reason_counts().most_common(3)],
        )
        for r in results
        if r.contract in need and r.n_accepted == 0
    ]
    if failed:
        raise NothingAcceptedError(failed, quarantine=quarantine, results=list(results))
