"""Reading input files (fail fast on malformed files) and writing parquet atomically."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mspa_features.errors import SchemaError

READABLE = (".parquet", ".csv", ".tsv")


def read_input(path: str | Path) -> pd.DataFrame:
    """Read a parquet, CSV or TSV file into a DataFrame without interpreting its values.

    Values stay as the file holds them (CSV cells as strings): validation decides per row what
    is acceptable, so one bad cell quarantines one row instead of failing the whole file.

    Raises:
        SchemaError: the file is missing, has an unsupported suffix, or cannot be parsed.
    """
    p = Path(path)
    if not p.exists():
        raise SchemaError(p, "file not found")
    suffix = p.suffix.lower()
    if suffix not in READABLE:
        raise SchemaError(p, f"unsupported format {suffix!r}; expected one of {READABLE}")
    try:
        if suffix == ".parquet":
            table = pq.read_table(p)
            df = table.to_pandas(types_mapper=None)
            df.attrs["vector_dims"] = declared_vector_dims(table.schema)
            return df
        sep = "\t" if suffix == ".tsv" else ","
        return read_delimited(p, sep)
    except UnicodeDecodeError as e:
        raise SchemaError(p, f"not valid UTF-8 text ({e.reason} at byte {e.start})") from e
    except (pa.ArrowInvalid, pa.ArrowException) as e:
        raise SchemaError(p, f"not a readable parquet file: {e}") from e
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise SchemaError(p, f"not a readable {suffix[1:].upper()} file: {e}") from e


_MALFORMED = "\x00mspa-malformed-line\x00"


def read_delimited(path: Path, sep: str, *, quoting: int = 0) -> pd.DataFrame:
    """Read a CSV/TSV file as text; a line with too many fields quarantines only that row.

    Such rows come back all null, with ``df.attrs["row_reasons"]`` = ``{row: ["row: malformed
    line ..."]}`` (which :func:`~mspa_features.data.validation.validate` picks up), so one broken
    line never fails the whole file. Empty cells become None (missing for validation).
    """
    # dtype=str + keep_default_na=False: no silent coercion.
    kw: dict = {
        "sep": sep,
        "dtype": str,
        "keep_default_na": False,
        "quoting": quoting,
        "encoding_errors": "strict",
    }
    try:
        df = pd.read_csv(path, **kw)
        return df.replace({"": None})
    except pd.errors.ParserError:
        pass  # a malformed line: read again, keeping every other line
    ncols = len(pd.read_csv(path, nrows=0, **kw).columns)
    bad: list[list[str]] = []

    def on_bad(fields: list[str]) -> list[str]:
        bad.append(fields)
        return [f"{_MALFORMED}{len(bad) - 1}"] + [""] * (ncols - 1)

    df = pd.read_csv(path, engine="python", on_bad_lines=on_bad, **kw)
    first = df.iloc[:, 0].astype(str)
    reasons: dict[int, list[str]] = {}
    for i in np.flatnonzero(first.str.startswith(_MALFORMED).to_numpy()):
        fields = bad[int(first.iat[i].removeprefix(_MALFORMED))]
        line = sep.join(fields)
        shown = line if len(line) <= 80 else line[:80] + "..."
        reasons[int(i)] = [
            f"row: malformed line ({len(fields)} fields, expected {ncols}) '{shown}'"
        ]
        df.iloc[i, :] = ""
    df = df.replace({"": None})
    df.attrs["row_reasons"] = reasons
    return df


def declared_vector_dims(schema: pa.Schema) -> dict[str, int]:
    """Column -> the vector length a parquet schema declares for it.

    A ``fixed_size_list<N>`` column declares N; so does field metadata ``vector_length``
    (Feast's name for it) on a variable-length list.
    """
    dims: dict[str, int] = {}
    for f in schema:
        if pa.types.is_fixed_size_list(f.type):
            dims[f.name] = f.type.list_size
        elif f.metadata and b"vector_length" in f.metadata:
            try:
                n = int(f.metadata[b"vector_length"])
            except ValueError:
                continue
            if n > 0:
                dims[f.name] = n
    return dims


def write_parquet_atomic(table: pa.Table, path: str | Path) -> Path:
    """Write ``table`` to ``path`` via a temporary file and an atomic rename.

    A killed writer leaves the previous file (or nothing) in place, never a truncated one.
    Timestamps are written as microseconds: Spark 4 refuses nanosecond parquet.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{uuid.uuid4().hex}.tmp")
    try:
        pq.write_table(table, tmp, coerce_timestamps="us", allow_truncated_timestamps=False)
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()
    return p


def read_parquet(path: str | Path, schema: pa.Schema | None = None) -> pa.Table:
    """Read a parquet file written by this package, optionally cast to ``schema``.

    Raises:
        SchemaError: missing file, unreadable file, or a column missing from ``schema``.
    """
    p = Path(path)
    if not p.exists():
        raise SchemaError(p, "file not found (run the stage that writes it first)")
    try:
        table = pq.read_table(p)
    except (pa.ArrowInvalid, OSError) as e:
        raise SchemaError(p, f"not a readable parquet file: {e}") from e
    if schema is None:
        return table
    for name in schema.names:
        if name not in table.column_names:
            raise SchemaError(p, "missing column", column=name)
    return table.select(schema.names).cast(schema)
