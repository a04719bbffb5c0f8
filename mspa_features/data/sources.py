"""Where a run's contract tables come from: one path for every source.

Every source ends as contract files (``users``, ``authors``, ``interactions``; parquet, CSV or
TSV, named after the contract) that the same ingest + validation reads
(:func:`mspa_features.data.ingest.ingest_files`):

* ``files``: the user's own folder, local or any filesystem pyarrow (or fsspec) opens
  (``s3://``, ``gs://``, ``hdfs://``, ``file://``...), read in place when local and copied
  into ``<workspace>/raw/`` otherwise;
* ``spark``: tables or paths read through Spark (``spark_jobs/sources.py``, wired by the CLI:
  the library never imports pyspark) and written as parquet into ``<workspace>/raw/``;
* ``synthetic``: a preset that generates the contract files;
* ``movielens``: a preset whose converter validates the MovieLens files with the same rules.

Users' layouts differ from the contracts in two ways the run config declares instead of this
module guessing: column names (``data.columns``) and how instants are written
(``data.timestamps``: ISO text, or epoch ``s`` / ``ms`` / ``us``; a time zone for text without
an offset). Both are applied here, before validation; what a row gets wrong goes to the
quarantine with the reason, and the quarantine keeps the record as the file held it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field, field_validator, model_validator

from mspa_features.config_base import StrictModel
from mspa_features.data import timestamps as ts
from mspa_features.data.contracts import AUTHORS, INTERACTIONS, USERS, Contract
from mspa_features.errors import IncompatibleSettingsError, InvalidValueError, SchemaError
from mspa_features.io import READABLE

#: The contracts a source provides, in ingest order.
SOURCE_CONTRACTS = (USERS.name, AUTHORS.name, INTERACTIONS.name)
#: Microseconds per epoch unit.
EPOCH_UNITS = {"s": 1_000_000, "ms": 1_000, "us": 1}
_UNIT_NAMES = {"s": "seconds", "ms": "milliseconds", "us": "microseconds"}
STAMP_FILE = "_source.json"


# --------------------------------------------------------------------------- config models


def _contract_columns(contract: Contract, mapping: dict[str, str]) -> dict[str, str]:
    unknown = [k for k in mapping if k not in contract.columns]
    if unknown:
        raise InvalidValueError(
            "a mapped column",
            unknown[0],
            f"a column of contract {contract.name!r} ({', '.join(contract.columns)})",
            hint="map contract column: your column",
        )
    blank = [k for k, v in mapping.items() if not str(v).strip()]
    if blank:
        raise InvalidValueError(f"the column {blank[0]!r} maps to", "", "a column name")
    return mapping


class ColumnMapping(StrictModel):
    """Contract column -> the column of the user's file that holds it, per contract.

    ``interactions: {user_id: listener_id, event_timestamp: played_at}`` reads ``user_id`` from
    ``listener_id``; unmapped contract columns are read under their own name, and columns that
    no contract names are ignored.
    """

    users: dict[str, str] = Field(default_factory=dict)
    authors: dict[str, str] = Field(default_factory=dict)
    interactions: dict[str, str] = Field(default_factory=dict)

    @field_validator("users")
    @classmethod
    def _users(cls, v: dict[str, str]) -> dict[str, str]:
        return _contract_columns(USERS, v)

    @field_validator("authors")
    @classmethod
    def _authors(cls, v: dict[str, str]) -> dict[str, str]:
        return _contract_columns(AUTHORS, v)

    @field_validator("interactions")
    @classmethod
    def _interactions(cls, v: dict[str, str]) -> dict[str, str]:
        return _contract_columns(INTERACTIONS, v)

    def of(self, contract: str) -> dict[str, str]:
        return dict(getattr(self, contract))

    def is_empty(self) -> bool:
        return not (self.users or self.authors or self.interactions)


class TimestampFormat(StrictModel):
    """How one contract's instants are written in the user's files."""

    unit: Literal["iso", "s", "ms", "us"] = Field(
        "iso",
        description="iso: ISO 8601 text (or typed timestamps); s / ms / us: epoch numbers (UTC)",
    )
    timezone: str | None = Field(
        None,
        description="IANA zone of ISO text without an offset (and of naive typed timestamps); "
        "null: such values are quarantined as naive. Text with an offset keeps its offset.",
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise InvalidValueError(
                "timezone", v, "an IANA time zone name such as 'UTC' or 'Europe/Paris'"
            ) from e
        return v

    @model_validator(mode="after")
    def _zone_only_for_text(self) -> TimestampFormat:
        if self.unit != "iso" and self.timezone not in (None, "UTC"):
            raise IncompatibleSettingsError(
                {"unit": self.unit, "timezone": self.timezone},
                "epoch numbers are UTC instants by definition",
                fix="a time zone applies only to unit 'iso' (text without an offset)",
            )
        return self


class ContractTimestamps(StrictModel):
    """Per contract with instants: how its timestamp columns are written."""

    authors: TimestampFormat = Field(default_factory=TimestampFormat)
    interactions: TimestampFormat = Field(default_factory=TimestampFormat)

    def of(self, contract: str) -> TimestampFormat:
        return getattr(self, contract, None) or TimestampFormat()


class SparkTables(StrictModel):
    """``data.tables`` of ``source: spark``: a catalog table name or a path per contract."""

    users: str = Field(min_length=1, description="catalog table (db.users) or a path")
    authors: str = Field(min_length=1)
    interactions: str = Field(min_length=1)


class SparkRead(StrictModel):
    """``data.spark``: the session that reads ``data.tables``."""

    master: str = Field("local[*]", description="Spark master (local[*], spark://HOST:7077, ...)")
    format: str | None = Field(
        None,
        description="reader format for paths (parquet, csv, orc, delta...); null: from the "
        "path's suffix, parquet otherwise",
    )
    conf: dict[str, str] = Field(default_factory=dict, description="extra Spark settings")


# --------------------------------------------------------------------------- column mapping


def apply_columns(
    raw: pd.DataFrame, contract: Contract, mapping: Mapping[str, str], *, source: str
) -> pd.DataFrame:
    """The contract's columns of ``raw``, renamed per ``mapping`` (contract column -> file column).

    Keeps ``raw``'s per-row reasons and declared vector lengths (``attrs``), renamed.

    Raises:
        SchemaError: a mapped column is not in the file, or a required contract column is
            neither mapped nor present (naming the file, the column and the config key).
    """
    has = ", ".join(map(str, raw.columns)) or "no columns"
    for col, src in mapping.items():
        if src not in raw.columns:
            raise SchemaError(
                source,
                f"not in the file (data.columns.{contract.name}.{col} maps it to {col}; "
                f"file has: {has})",
                column=src,
            )
    out = pd.DataFrame(index=raw.index)
    for col in contract.columns:
        src = mapping.get(col, col)
        if src in raw.columns:
            out[col] = raw[src]
    missing = [c for c in contract.required if c not in out.columns]
    if missing:
        raise SchemaError(
            source,
            f"missing required column for contract {contract.name!r} (file has: {has}; "
            f"map yours with data.columns.{contract.name}.{missing[0]})",
            column=missing[0],
        )
    renamed = {src: col for col, src in mapping.items()}
    out.attrs["row_reasons"] = dict(raw.attrs.get("row_reasons") or {})
    out.attrs["vector_dims"] = {
        renamed.get(k, k): v for k, v in (raw.attrs.get("vector_dims") or {}).items()
    }
    return out


# --------------------------------------------------------------------------- timestamps


def _shown(v: Any) -> str:
    text = v if isinstance(v, str) else repr(v.item() if isinstance(v, np.generic) else v)
    return text if len(text) <= 60 else text[:60] + "..."


def epoch_us(v: Any, unit: str) -> tuple[int | None, ts.Problem | None]:
    """One epoch number (or numeric text) in ``unit`` -> (UTC microseconds, None) or a problem."""
    name = _UNIT_NAMES[unit]
    if isinstance(v, (bool, np.bool_)):
        return None, (ts.UNPARSEABLE, f" (expected epoch {name})")
    try:
        dec = Decimal(v.strip()) if isinstance(v, str) else Decimal(str(v))
    except (InvalidOperation, ValueError):
        return None, (ts.UNPARSEABLE, f" (expected epoch {name})")
    if not dec.is_finite():
        return None, (ts.UNPARSEABLE, f" (not a finite number of epoch {name})")
    if abs(dec) >= 10**22:  # beyond any unit's range; avoids building a huge integer
        return None, (ts.OUT_OF_RANGE, f" (read as epoch {name})")
    us = int(dec * EPOCH_UNITS[unit])
    if not ts.in_range(us):
        return None, (ts.OUT_OF_RANGE, f" (read as epoch {name})")
    return us, None


_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _local_text_us(text: str, zone: ZoneInfo) -> tuple[int | None, ts.Problem | None]:
    """ISO text without an offset, read as wall-clock time in ``zone``."""
    t = text.strip()
    wall, problem = ts.parse_text((t + "T00:00:00" if _DATE_ONLY.match(t) else t) + "Z")
    if problem is not None:
        return None, problem
    assert wall is not None
    return _localize_wall_us(wall, zone)


def _localize_wall_us(wall: int, zone: ZoneInfo) -> tuple[int | None, ts.Problem | None]:
    """Wall-clock microseconds in ``zone`` -> UTC microseconds; a time a daylight-saving change
    skips (nonexistent) or repeats (ambiguous) is a problem, never a guess."""
    naive = datetime(1970, 1, 1) + timedelta(microseconds=wall)
    early, late = naive.replace(tzinfo=zone, fold=0), naive.replace(tzinfo=zone, fold=1)
    if early.utcoffset() != late.utcoffset():
        back = early.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
        kind = "ambiguous" if back == naive else "nonexistent"
        return None, (
            f"{kind} local time",
            f" in {zone.key} (a daylight-saving change): give an offset",
        )
    us = wall - int(early.utcoffset() // timedelta(microseconds=1))
    if not ts.in_range(us):
        return None, (ts.OUT_OF_RANGE, "")
    return us, None


def parse_instants(
    s: pd.Series, col: str, fmt: TimestampFormat, *, source: str, contract: str
) -> tuple[pd.Series, dict[int, list[str]]]:
    """A timestamp column as declared -> (values for validation, reasons per row position).

    Epoch units give ``datetime64[us, UTC]`` (null and a reason where a value is not a usable
    number of that unit). ISO text with a declared zone gives the same; without a zone the text
    goes to validation as is (an offset is then required). Typed tz-aware timestamps are
    instants whatever the unit; naive typed timestamps are read in the declared zone.

    Raises:
        SchemaError: numbers declared as ISO text (the unit must be declared).
    """
    reasons: dict[int, list[str]] = {}
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        return s, reasons
    zone = ZoneInfo(fmt.timezone) if fmt.timezone else None
    if pd.api.types.is_datetime64_dtype(s.dtype):
        if zone is None:
            return s, reasons  # validation quarantines them as naive
        out: list[int | None] = []
        unit = s.dtype.unit
        for i, v in enumerate(s.to_numpy(f"datetime64[{unit}]")):
            if np.isnat(v):
                out.append(None)
                continue
            wall = int(v.astype("datetime64[us]").view("i8"))
            us, problem = _localize_wall_us(wall, zone)
            if problem is not None:
                reasons[i] = [ts.reason(col, str(v), problem)]
            out.append(us)
        return ts.us_series(out, s.index), reasons
    numeric = pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype)
    if fmt.unit == "iso":
        if numeric:
            raise SchemaError(
                source,
                f"numeric timestamps are ambiguous (seconds? milliseconds?): declare their unit "
                f"in the run config (data.timestamps.{contract}.unit: s, ms or us)",
                column=col,
            )
        if zone is None:
            return s, reasons  # validation reads the text; an offset is required
        out = []
        for i, v in enumerate(s.tolist()):
            if (
                v is None
                or (isinstance(v, float) and math.isnan(v))
                or (isinstance(v, str) and not v.strip())
            ):
                out.append(None)  # reported once by validation as a missing value
                continue
            if isinstance(v, datetime):
                us, problem = (
                    ts.datetime_us(v)
                    if v.tzinfo is not None
                    else _localize_wall_us(int(pd.Timestamp(v).value // 1000), zone)
                )
            elif isinstance(v, str):
                us, problem = ts.parse_text(v)
                if problem is not None and problem[0] == ts.NAIVE:
                    us, problem = _local_text_us(v, zone)
            else:
                us, problem = None, (ts.UNPARSEABLE, " (expected ISO 8601 text)")
            if problem is not None:
                reasons[i] = [ts.reason(col, _shown(v), problem)]
            out.append(us)
        return ts.us_series(out, s.index), reasons
    factor = EPOCH_UNITS[fmt.unit]
    if pd.api.types.is_integer_dtype(s.dtype) and not s.isna().any():
        raw = s.to_numpy(np.int64)
        lo, hi = -((-ts.MIN_US) // factor), -((-ts.MAX_US) // factor)  # ceil divisions
        fits = (raw >= lo) & (raw < hi)
        for i in np.flatnonzero(~fits):
            reasons[int(i)] = [
                ts.reason(
                    col, str(raw[i]), (ts.OUT_OF_RANGE, f" (read as epoch {_UNIT_NAMES[fmt.unit]})")
                )
            ]
        us_arr = np.where(fits, raw, 0) * factor
        return ts.us_series(
            [int(u) if f else None for u, f in zip(us_arr, fits, strict=True)], s.index
        ), reasons
    out = []
    for i, v in enumerate(s.tolist()):
        if (
            v is None
            or v is pd.NA
            or (isinstance(v, float) and math.isnan(v))
            or (isinstance(v, str) and not v.strip())
        ):
            out.append(None)
            continue
        if isinstance(v, datetime):
            us, problem = ts.datetime_us(v)
        else:
            us, problem = epoch_us(v, fmt.unit)
        if problem is not None:
            reasons[i] = [ts.reason(col, _shown(v), problem)]
        out.append(us)
    return ts.us_series(out, s.index), reasons


def prepare_frame(
    raw: pd.DataFrame,
    contract: Contract,
    *,
    columns: Mapping[str, str] | None = None,
    timestamps: TimestampFormat | None = None,
    source: str,
) -> pd.DataFrame:
    """``raw`` as the contract names it, with its instants read as declared.

    Per-row problems (a value of the wrong unit, a local time a DST change skips) are added to
    ``attrs["row_reasons"]``, which validation turns into quarantine reasons.
    """
    df = apply_columns(raw, contract, columns or {}, source=source)
    fmt = timestamps or TimestampFormat()
    reasons: dict[int, list[str]] = {int(k): list(v) for k, v in df.attrs["row_reasons"].items()}
    for col in contract.timestamps:
        if col not in df.columns:
            continue
        df[col], col_reasons = parse_instants(
            df[col].reset_index(drop=True), col, fmt, source=source, contract=contract.name
        )
        for i, rs in col_reasons.items():
            if any(r.startswith("row:") for r in reasons.get(i, [])):
                continue  # a malformed line is reported once, as a whole
            reasons.setdefault(i, []).extend(rs)
    df.attrs["row_reasons"] = reasons
    return df


# --------------------------------------------------------------------------- files source


@dataclass(frozen=True)
class SourceFile:
    """One contract file of a source: where it is read locally and how it is named to users."""

    contract: str
    local: Path
    uri: str
    size: int | None = None
    mtime: str | None = None


def is_uri(path: str) -> bool:
    return "://" in path


_TABLE_SUFFIXES = (".parquet", ".csv", ".tsv", ".orc", ".json", ".jsonl")


def is_table_path(ref: str) -> bool:
    """A ``data.tables`` entry that is a path or URI (read with a reader), not a catalog table
    name (``db.table``)."""
    return "/" in ref or "://" in ref or ref.lower().rstrip("/").endswith(_TABLE_SUFFIXES)


def open_filesystem(uri: str) -> tuple[Any, str]:
    """(pyarrow filesystem, path in it) for a local path or a URI.

    pyarrow opens ``file://``, ``s3://``, ``gs://``, ``hdfs://``, ``abfs://`` itself (with the
    credentials its environment provides); other schemes go through fsspec when it knows them.

    Raises:
        SchemaError: no filesystem for the scheme, or it cannot be opened.
    """
    import pyarrow as pa
    import pyarrow.fs as pafs

    if not is_uri(uri):
        return pafs.LocalFileSystem(), str(Path(uri).resolve())
    try:
        return pafs.FileSystem.from_uri(uri)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as arrow_err:
        try:
            import fsspec
        except ImportError:
            raise SchemaError(uri, f"no filesystem for this URI: {arrow_err}") from arrow_err
        try:
            fs, path = fsspec.core.url_to_fs(uri)
        except (ImportError, ValueError) as e:
            raise SchemaError(uri, f"no filesystem for this URI: {e}") from e
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path
    except OSError as e:
        raise SchemaError(uri, f"cannot open: {e}") from e


def _join(root: str, name: str, uri: str) -> str:
    sep = "" if uri.endswith("/") or root.endswith("/") else "/"
    return f"{root}{sep}{name}"


def locate_files(uri: str) -> list[tuple[str, Any, str, Any]]:
    """The contract files under ``uri``: ``(contract, filesystem, path, FileInfo)`` per contract.

    Raises:
        SchemaError: the folder does not exist, or a contract has no file (listing what the
            folder holds).
    """
    import pyarrow.fs as pafs

    fs, root = open_filesystem(uri)
    try:
        info = fs.get_file_info(root)
    except OSError as e:
        raise SchemaError(uri, f"cannot read: {e}") from e
    if info.type != pafs.FileType.Directory:
        raise SchemaError(uri, "not a folder (data.path must name the folder of contract files)")
    found = []
    for name in SOURCE_CONTRACTS:
        candidates = [_join(root, f"{name}{suffix}", uri) for suffix in READABLE]
        infos = fs.get_file_info(candidates)
        hit = next((i for i in infos if i.type == pafs.FileType.File), None)
        if hit is None:
            listing = sorted(i.base_name for i in fs.get_file_info(pafs.FileSelector(root)))
            raise SchemaError(
                uri,
                f"no file for contract {name!r} (looked for {', '.join(name + s for s in READABLE)}"
                f"; the folder has: {', '.join(listing[:20]) or 'nothing'})",
            )
        found.append((name, fs, hit.path, hit))
    return found


def stage_files(uri: str, staging: Path, *, copy: bool = True) -> list[SourceFile]:
    """Contract files of a local folder (read in place) or a URI (copied into ``staging``;
    ``copy=False`` only describes them, for a fingerprint)."""
    import pyarrow.fs as pafs

    out = []
    for name, fs, path, info in locate_files(uri):
        mtime = info.mtime.isoformat() if info.mtime is not None else None
        shown = path if not is_uri(uri) else _join(uri.rstrip("/"), Path(path).name, uri)
        if isinstance(fs, pafs.LocalFileSystem):
            out.append(SourceFile(name, Path(path), shown, info.size, mtime))
            continue
        local = staging / Path(path).name
        if not copy:
            out.append(SourceFile(name, local, shown, info.size, mtime))
            continue
        staging.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.tmp")
        with fs.open_input_stream(path) as src, tmp.open("wb") as dst:
            shutil.copyfileobj(src, dst, length=1 << 20)
        tmp.replace(local)
        out.append(SourceFile(name, local, shown, info.size, mtime))
    return out


def source_fingerprint(data: BaseModel, files: list[SourceFile] | None = None) -> str:
    """What the accepted tables were built from: the data config and each file's size + time."""
    doc = {
        "data": data.model_dump(mode="json"),
        "files": [(f.uri, f.size, f.mtime) for f in files or []],
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


#: Reads ``data.tables`` through Spark into ``out_dir/<contract>.parquet`` (spark_jobs/sources.py).
SparkReader = Callable[[SparkTables, SparkRead, Path], None]


__all__ = [
    "EPOCH_UNITS",
    "SOURCE_CONTRACTS",
    "STAMP_FILE",
    "ColumnMapping",
    "ContractTimestamps",
    "SourceFile",
    "SparkRead",
    "SparkReader",
    "SparkTables",
    "TimestampFormat",
    "apply_columns",
    "epoch_us",
    "is_table_path",
    "is_uri",
    "locate_files",
    "open_filesystem",
    "parse_instants",
    "prepare_frame",
    "source_fingerprint",
    "stage_files",
]
