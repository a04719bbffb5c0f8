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
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from mspa_features.contracts import FRAME, Contract
from mspa_features.errors import ReconciliationError, SchemaError
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

# An explicit UTC offset or Z at the end of an ISO-8601 string.
_OFFSET_RE = r"(?:[zZ]|[+-]\d{2}:?\d{2})$"
_MAX_SHOWN = 60


@dataclass
class ValidationResult:
    """Accepted rows (typed, contract schema) and quarantined rows (raw, with reasons)."""

    contract: str
    source: str
    n_input: int
    accepted: pa.Table
    quarantine: pa.Table

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


def _reason_kind(reason: str) -> str:
    return re.split(r" '|, got| \(| \[| first seen", reason, maxsplit=1)[0]


def _show(v: Any) -> str:
    if isinstance(v, pd.Timestamp):
        v = v.isoformat()
    text = repr(v) if not isinstance(v, str) else v
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "..."


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
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        return s.dt.tz_convert("UTC").dt.as_unit("us")
    if pd.api.types.is_datetime64_dtype(s.dtype):
        rows.add_mask(
            s.notna().to_numpy(), lambda i: f"{col}: naive timestamp '{s.iat[i]}' (no UTC offset)"
        )
        return pd.Series(pd.NaT, index=s.index, dtype="datetime64[us, UTC]")
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        raise SchemaError(
            source,
            f"numeric timestamps are ambiguous (seconds? ms?); give ISO-8601 strings with a UTC "
            f"offset or tz-aware timestamps (dtype {s.dtype})",
            column=col,
        )
    out = pd.Series(pd.NaT, index=s.index, dtype="datetime64[us, UTC]")
    is_str = s.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
    if is_str.any():
        strs = s[is_str].str.strip()
        has_offset = strs.str.contains(_OFFSET_RE, regex=True).to_numpy(dtype=bool)
        parsed = pd.to_datetime(
            strs.where(has_offset), utc=True, errors="coerce", format="ISO8601"
        ).dt.as_unit("us")
        # Strings without an offset: parse anyway, only to tell "naive" from "unparseable".
        naive_ok = pd.to_datetime(strs.where(~has_offset), errors="coerce", format="mixed")
        idx = np.flatnonzero(is_str)
        for j, i in enumerate(idx):
            if has_offset[j]:
                if pd.isna(parsed.iat[j]):
                    rows.add(i, f"{col}: unparseable timestamp '{_show(strs.iat[j])}'")
                else:
                    out.iat[i] = parsed.iat[j]
            elif pd.isna(naive_ok.iat[j]):
                rows.add(i, f"{col}: unparseable timestamp '{_show(strs.iat[j])}'")
            else:
                rows.add(i, f"{col}: naive timestamp '{_show(strs.iat[j])}' (no UTC offset)")
    for i in np.flatnonzero(~is_str):
        v = s.iat[i]
        if _is_missing(v):
            continue
        if isinstance(v, datetime):
            if v.tzinfo is None:
                rows.add(i, f"{col}: naive timestamp '{v}' (no UTC offset)")
            else:
                out.iat[i] = pd.Timestamp(v).tz_convert("UTC").as_unit("us")
        else:
            rows.add(i, f"{col}: unsupported timestamp value {_show(v)}")
    return out


def _to_text(v: Any, col: str, i: int, rows: _Rows) -> str | None:
    if _is_missing(v):
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, bytes):
        try:
            return v.decode("utf-8")
        except UnicodeDecodeError:
            rows.add(i, f"{col}: not valid UTF-8 text")
            return None
    if isinstance(v, (bool, np.bool_)):
        rows.add(i, f"{col}: expected text, got {_show(v)}")
        return None
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        # ids read from a numeric column with nulls arrive as floats (1.0): keep "1".
        return str(int(v))
    rows.add(i, f"{col}: expected text, got {_show(v)}")
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
            rows.add(i, f"{col}: expected a number, got {_show(v)}")
            continue
        try:
            x = float(v)
        except (TypeError, ValueError):
            rows.add(i, f"{col}: not a number '{_show(v)}'")
            continue
        if not math.isfinite(x):
            if finite or integer is not None or not math.isnan(x):
                rows.add(i, f"{col}: not finite ({x})")
            continue
        if integer is not None:
            if not x.is_integer():
                rows.add(i, f"{col}: expected an integer, got {_show(v)}")
                continue
            bits = integer.bit_width - 1
            if not -(2**bits) <= x < 2**bits:
                rows.add(i, f"{col}: out of range for {integer}: {_show(v)}")
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


def _clean_vectors(s: pd.Series, col: str, rows: _Rows, dim: int | None) -> list[Any]:
    out: list[Any] = []
    for i, v in enumerate(s.tolist()):
        items = _as_list(v, col, i, rows)
        if items is None:
            out.append(None)
            continue
        try:
            arr = np.asarray(items, dtype=np.float32)
        except (TypeError, ValueError):
            rows.add(i, f"{col}: not a vector of numbers")
            out.append(None)
            continue
        if arr.ndim != 1 or (dim is not None and arr.shape[0] != dim):
            rows.add(i, f"{col}: wrong dimension {arr.shape} (expected {dim})")
            out.append(None)
        elif not np.isfinite(arr).all():
            rows.add(i, f"{col}: not finite (NaN/inf in vector)")
            out.append(None)
        else:
            out.append(arr)
    return out


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
) -> ValidationResult:
    """Split ``df`` into rows that satisfy ``contract`` and quarantined rows with reasons.

    Args:
        df: raw rows, as read from a file (strings from CSV, typed values from parquet).
        contract: the contract to enforce.
        source: a name for the input (file path), carried into errors and quarantine rows.
        known_ids: entity contract name -> the ids that exist; references to other ids are
            quarantined as unknown. Entities absent from the mapping are not checked.
        emb_dim: the required length of every vector column.
        required_modalities: columns that must be non-empty (text non-blank, lists non-empty),
            e.g. ``("profile_text", "frames")`` for a multimodal composer.
        image_root: directory that relative frame paths resolve against.
        check_images: decode every frame to prove it is an image.

    Raises:
        SchemaError: a required column is missing, or a column cannot hold the contract's type.
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
    df = df.reset_index(drop=True)
    n = len(df)
    rows = _Rows(n)
    root = Path(image_root) if image_root is not None else None

    clean: dict[str, Any] = {}
    for field in contract.schema:
        col, typ = field.name, field.type
        # An absent optional column is all-missing: lists become [] and scalars null below.
        s = df[col] if col in df.columns else pd.Series([None] * n, dtype=object)
        if col in contract.timestamps:
            clean[col] = _clean_timestamps(s, col, rows, source)
        elif pa.types.is_string(typ):
            clean[col] = _clean_strings(s, col, rows)
        elif pa.types.is_integer(typ):
            clean[col] = _clean_numbers(s, col, rows, integer=typ, finite=True)
        elif pa.types.is_floating(typ):
            clean[col] = _clean_numbers(s, col, rows, integer=None, finite=col in contract.finite)
        elif col in contract.vectors:
            clean[col] = _clean_vectors(s, col, rows, emb_dim)
        elif pa.types.is_list(typ) and typ.value_type == FRAME:
            clean[col] = _clean_frames(s, col, rows, root, check_images)
        elif pa.types.is_list(typ) and pa.types.is_string(typ.value_type):
            clean[col] = _clean_text_lists(s, col, rows)
        elif pa.types.is_map(typ):
            clean[col] = _clean_map(s, col, rows)
        else:  # a contract type this module does not know: a programming error
            raise TypeError(f"no validator for {contract.name}.{col} of type {typ}")

    def value(col: str, i: int) -> Any:
        c = clean[col]
        return c.iat[i] if isinstance(c, pd.Series) else c[i]

    # Missing required values, once per cell, only where no other reason already covers it.
    for col in contract.required:
        for i in range(n):
            v = value(col, i)
            if (v is None or v is pd.NaT or (isinstance(v, str) and not v.strip())) and not any(
                r.startswith(f"{col}") for r in rows.reasons[i]
            ):
                rows.add(i, f"{col}: missing required value")
    for m in required_modalities:
        for i in range(n):
            if not _nonempty(value(m, i)) and not any(r.startswith(m) for r in rows.reasons[i]):
                rows.add(i, f"{m}: missing required modality")
    for col, allowed in contract.allowed.items():
        for i in range(n):
            v = value(col, i)
            if v is not None and v not in allowed:
                rows.add(i, f"{col}: must be one of {list(allowed)}, got {_show(v)}")
    for col, entity in contract.entity_refs.items():
        if known_ids is None or entity not in known_ids:
            continue
        ids = known_ids[entity]
        noun = entity.removesuffix("s")
        for i in range(n):
            v = value(col, i)
            if v is not None and v not in ids:
                rows.add(i, f"{col}: unknown {noun} '{_show(v)}'")

    # Duplicate keys among otherwise-good rows: the first occurrence wins.
    ok = rows.ok()
    if ok.any():
        keys = pd.DataFrame({k: pd.Series(clean[k]) for k in contract.key})[ok]
        dup = keys.duplicated(keep="first").to_numpy()
        if dup.any():
            group = keys.groupby(list(contract.key), sort=False, dropna=False).ngroup().to_numpy()
            _, first_pos = np.unique(group, return_index=True)
            first_row = dict(zip(np.unique(group), keys.index.to_numpy()[first_pos], strict=True))
            ok_idx = np.flatnonzero(ok)
            for j in np.flatnonzero(dup):
                i = int(ok_idx[j])
                key_txt = ", ".join(f"{k}={_show(value(k, i))}" for k in contract.key)
                rows.add(i, f"duplicate key ({key_txt}) first seen at row {first_row[group[j]]}")

    ok = rows.ok()
    accepted_cols = []
    for field in contract.schema:
        c = clean[field.name]
        if isinstance(c, pd.Series):
            accepted_cols.append(pa.array(c[ok], type=field.type))
        else:
            sel = [c[i] for i in np.flatnonzero(ok)]
            accepted_cols.append(pa.array(sel, type=field.type))
    accepted = pa.Table.from_arrays(accepted_cols, schema=contract.schema)

    bad = np.flatnonzero(~ok)
    raw_records = df.iloc[bad].to_dict(orient="records") if len(bad) else []
    quarantine = pa.Table.from_pydict(
        {
            "contract": [contract.name] * len(bad),
            "source": [str(source)] * len(bad),
            "row_number": [int(i) for i in bad],
            "reason": ["; ".join(rows.reasons[i]) for i in bad],
            "record": [_record_json(r) for r in raw_records],
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
    )
