"""Validation at Spark scale: the contract rules of ``mspa_features.data.rules``, evaluated by
Spark for inputs that do not fit pandas.

The rule objects are the pandas engine's (:func:`mspa_features.data.rules.contract_rules`), and
so is every reason's text: a reason is built by the rules module's function around a
placeholder, and Spark puts the value (shown as :func:`~mspa_features.data.rules.show` shows
it) in its place. What Spark evaluates natively:

* cells of the common typed layouts: text ids, integers and floats of numeric columns,
  tz-aware timestamps, epoch numbers of a declared unit (``s`` / ``ms`` / ``us``);
* required values, allowed values, non-negative and point-in-time rules;
* references to the accepted ids of another contract (a join), duplicate keys among otherwise
  good rows (a window: the first occurrence by row number wins).

Cells of any other layout (ISO text, CSV text of numbers, naive timestamps, lists, frames,
maps, integer columns with nulls, which pandas reads as floats) go through the library's own
cell reader (:func:`mspa_features.data.validation.clean_cells`) in a pandas UDF, batch by
batch, so their verdicts are the pandas engine's by construction. The quarantine keeps the
record as the file held it (the same JSON as the pandas engine, built by the same function
from the bad rows only).

Output: one accepted parquet file with the contract's schema and one quarantine file
(``contract, source, row_number, reason, record``), both in input order, merged from Spark's
part files with bounded memory; ``input = accepted + quarantined`` is checked.

    validator = SparkValidator(master="local[2]")
    res = validator(SparkValidation(...))   # what ingest calls for data.validation_engine: spark
    validator.stop()
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd  # at module level: the pandas UDFs' type hints name it

from mspa_features.data import rules as R
from mspa_features.data import timestamps as ts
from mspa_features.data.validation import (
    QUARANTINE_SCHEMA,
    FileValidationResult,
    SparkValidation,
    ValidationResult,
)
from mspa_features.errors import IncompatibleSettingsError, ReconciliationError, SchemaError

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

__all__ = ["VALIDATION_CONF", "SparkValidator", "validate_dataframe", "validate_with_spark"]

#: Settings of the validation session (``conf`` overrides them).
VALIDATION_CONF: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.memory": "2g",
    "spark.sql.shuffle.partitions": "8",
}
# Python's str.isspace() characters: a required text made only of them is missing (Java's \s
# is narrower, so the class is spelled out from Python's own definition).
_BLANK = "^[" + "".join(f"\\x{{{ord(c):x}}}" for c in map(chr, range(0x3000 + 1)) if c.isspace())
_BLANK += "]*$"
_UNIT_NAMES = {"s": "seconds", "ms": "milliseconds", "us": "microseconds"}
_EPOCH_US = {"s": 1_000_000, "ms": 1_000, "us": 1}
_INT_BITS = {8: "tinyint", 16: "smallint", 32: "int", 64: "bigint"}


class SparkValidator:
    """The Spark engine as ingest calls it: one session (started on first use, ~20 s), reused
    for every contract of a load.

    Args:
        master: Spark master (``local[*]``, ``spark://HOST:7077``...).
        conf: Spark settings over :data:`VALIDATION_CONF`.
    """

    def __init__(self, master: str = "local[*]", conf: Mapping[str, str] | None = None):
        self.master = master
        self.conf = {**VALIDATION_CONF, **dict(conf or {})}
        self._spark: SparkSession | None = None

    @property
    def spark(self) -> SparkSession:
        if self._spark is None:
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
            from pyspark.sql import SparkSession

            from mspa_features import logs

            builder = SparkSession.builder.master(self.master).appName("mspa-validate")
            for k, v in self.conf.items():
                builder = builder.config(k, v)
            with logs.child_output_to_log():
                self._spark = builder.getOrCreate()
            self._spark.sparkContext.setLogLevel("ERROR")
        return self._spark

    def __call__(self, req: SparkValidation) -> ValidationResult:
        return validate_with_spark(self.spark, req)

    def stop(self) -> None:
        if self._spark is not None:
            self._spark.stop()
            self._spark = None


# --------------------------------------------------------------------------- reading


def _parquet_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*.parquet") if not p.name.startswith((".", "_")))
    return [path]


def _parquet_facts(path: Path) -> tuple[dict[str, bool], dict[str, str]]:
    """(column -> may hold nulls, timestamp column -> unit) from the parquet footers."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    nulls: dict[str, bool] = {}
    units: dict[str, str] = {}
    for f in _parquet_files(path):
        pf = pq.ParquetFile(f)
        for fld in pf.schema_arrow:
            if pa.types.is_timestamp(fld.type):
                units[fld.name] = fld.type.unit
        md = pf.metadata
        for g in range(md.num_row_groups):
            rg = md.row_group(g)
            for c in range(rg.num_columns):
                col = rg.column(c)
                name = col.path_in_schema.split(".")[0]
                st = col.statistics
                has = st is None or not st.has_null_count or st.null_count > 0
                nulls[name] = nulls.get(name, False) or has
    return nulls, units


def _read(spark: SparkSession, req: SparkValidation) -> tuple[DataFrame, bool]:
    """The input with a ``_row`` column (its position in the file, as pandas numbers rows) and
    whether it is parquet."""
    from pyspark.sql import functions as F

    from spark_jobs.sources import read_table

    local = Path(req.local)
    is_parquet = local.suffix.lower() == ".parquet" or (
        local.is_dir() and any(local.rglob("*.parquet"))
    )
    if not is_parquet:
        df = read_table(spark, str(local))
        rdd = df.rdd.zipWithIndex().map(lambda r: (*r[0], r[1]))
        return spark.createDataFrame(rdd, df.schema.add("_row", "long")), False
    files = _parquet_files(local)
    df = spark.read.parquet(*[str(f) for f in files])
    df = df.select("*", F.col("_metadata.file_path").alias("_file"), "_metadata.row_index")
    if len(files) == 1:
        return df.withColumn("_row", F.col("row_index")).drop("row_index", "_file"), True
    import pyarrow.parquet as pq

    # Rows are numbered across the files in path order, as a reader of the folder does.
    offsets, total = [], 0
    for f in files:
        offsets.append((f.resolve().as_uri(), total))
        total += pq.ParquetFile(f).metadata.num_rows
    off = spark.createDataFrame(offsets, "_file string, _offset long")
    df = df.join(F.broadcast(off), "_file", "left")
    return df.withColumn("_row", F.col("_offset") + F.col("row_index")).drop(
        "row_index", "_file", "_offset"
    ), True


# --------------------------------------------------------------------------- showing values


def _show_text(c: Column) -> Column:
    from pyspark.sql import functions as F

    return F.when(F.length(c) <= R.MAX_SHOWN, c).otherwise(
        F.concat(F.substring(c, 1, R.MAX_SHOWN), F.lit("..."))
    )


def _show_instant(c: Column) -> Column:
    """A timestamp as ``show`` prints a UTC instant: ISO 8601, microseconds when not zero, Z."""
    from pyspark.sql import functions as F

    frac = F.pmod(F.unix_micros(c), F.lit(1_000_000))
    return F.concat(
        F.date_format(c, "yyyy-MM-dd'T'HH:mm:ss"),
        F.when(frac != 0, F.concat(F.lit("."), F.lpad(frac.cast("string"), 6, "0"))).otherwise(
            F.lit("")
        ),
        F.lit("Z"),
    )


def _show_raw_instant(c: Column, unit: str) -> Column:
    """A file's timestamp as numpy prints it in the file's unit (the out-of-range reason)."""
    from pyspark.sql import functions as F

    pattern = {"s": "", "ms": ".SSS", "us": ".SSSSSS"}[unit]
    return F.concat(F.date_format(c, f"yyyy-MM-dd'T'HH:mm:ss{pattern}"), F.lit("Z"))


def _show_value(rule: R.ColumnRule, c: Column) -> Column:
    if rule.kind == "string":
        return _show_text(c)
    if rule.kind == "integer":
        return c.cast("string")
    if rule.kind == "timestamp":
        return _show_instant(c)
    raise IncompatibleSettingsError(  # a rule kind with no native show: a programming error
        {"column": rule.column, "kind": rule.kind}, "no Spark rendering of this value"
    )


def _reason(text: str, value: Column | None = None) -> Column:
    """A reason built by a rules function: its text with ``value`` at the placeholder."""
    from pyspark.sql import functions as F

    if value is None:
        return F.lit(text)
    before, after = R.template(text)
    return F.concat(F.lit(before), value, F.lit(after))


# --------------------------------------------------------------------------- cells


def _native_cell(
    rule: R.ColumnRule,
    dtype: Any,
    c: Column,
    *,
    may_be_null: bool,
    fmt: Any,
    unit: str | None,
    source: str,
    contract: str,
) -> tuple[Column, list[Column], list[Column]] | None:
    """(clean value, format-step reasons, cell reasons) as Spark expressions, or None where the
    library's cell reader must read this layout."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    col = rule.column
    integral = isinstance(dtype, (T.ByteType, T.ShortType, T.IntegerType, T.LongType))
    floating = isinstance(dtype, (T.FloatType, T.DoubleType))
    if rule.kind == "string":
        if isinstance(dtype, T.StringType):
            return c, [], []
        if integral:
            return c.cast("string"), [], []
        return None
    if rule.kind == "integer":
        if not integral or may_be_null:  # pandas reads an integer column with nulls as floats
            return None
        bits = rule.arrow_type.bit_width - 1
        fits = (c >= F.lit(-(2**bits))) & (c < F.lit(2**bits))
        bad = c.isNotNull() & ~fits
        reason = _reason(R.integer_out_of_range(col, rule.arrow_type, R.VALUE), c.cast("string"))
        return F.when(fits, c.cast("long")), [], [F.when(bad, reason)]
    if rule.kind == "float":
        if integral:
            return c.cast("double"), [], []
        if not floating:
            return None
        x = c.cast("double")
        nan = F.isnan(x)
        inf = x.isin(float("inf"), float("-inf"))
        shown = F.when(nan, F.lit("nan")).when(x > 0, F.lit("inf")).otherwise(F.lit("-inf"))
        flagged = (nan | inf) if rule.finite else inf
        reason = F.when(c.isNotNull() & flagged, _reason(R.not_finite(col, R.VALUE), shown))
        return F.when(~(nan | inf), x), [], [reason]
    if rule.kind != "timestamp":
        return None
    lo, hi = ts.MIN_US, ts.MAX_US
    if isinstance(dtype, T.TimestampType):  # tz-aware in the file: an instant, whatever unit
        us = F.unix_micros(c)
        fits = (us >= F.lit(lo)) & (us < F.lit(hi))
        shown = _show_raw_instant(c, unit or "us")
        reason = _reason(ts.reason(col, R.VALUE, (ts.OUT_OF_RANGE, "")), shown)
        return F.when(fits, c), [], [F.when(c.isNotNull() & ~fits, reason)]
    numeric = integral or floating or isinstance(dtype, T.DecimalType)
    unit_name = getattr(fmt, "unit", "iso") if fmt is not None else "iso"
    if numeric and unit_name == "iso":
        from mspa_features.data.sources import TimestampFormat, parse_instants

        # the pandas engine's file-level error, raised by the same function
        parse_instants(
            pd.Series([], dtype="int64"),
            col,
            fmt or TimestampFormat(),
            source=source,
            contract=contract,
        )
    if integral and not may_be_null and unit_name in _EPOCH_US:
        factor = _EPOCH_US[unit_name]
        raw = c.cast("long")
        lo_raw, hi_raw = -((-lo) // factor), -((-hi) // factor)  # ceil divisions
        fits = (raw >= F.lit(lo_raw)) & (raw < F.lit(hi_raw))
        problem = (ts.OUT_OF_RANGE, f" (read as epoch {_UNIT_NAMES[unit_name]})")
        reason = _reason(ts.reason(col, R.VALUE, problem), raw.cast("string"))
        value = F.when(fits, F.timestamp_micros(raw * F.lit(factor)))
        return value, [F.when(~fits, reason)], []
    return None


def _cell_udf(
    rule: R.ColumnRule,
    dtype: Any,
    *,
    source: str,
    contract: str,
    fmt: Any,
    unit: str,
    image_root: Path | None,
    check_images: bool,
) -> Any:
    """A pandas UDF reading one column with the library's cell reader:
    struct(value, pre, cell), the reasons joined with ``"; "``."""
    from pyspark.sql import types as T
    from pyspark.sql.functions import pandas_udf

    value_type = {
        "string": T.StringType(),
        "integer": T.LongType(),
        "float": T.DoubleType(),
        "timestamp": T.LongType(),  # microseconds; turned into a timestamp outside
        "text_list": T.ArrayType(T.StringType()),
        "map": T.MapType(T.StringType(), T.StringType()),
        "frames": T.ArrayType(
            T.StructType(
                [T.StructField("bytes", T.BinaryType()), T.StructField("path", T.StringType())]
            )
        ),
    }[rule.kind]
    out_type = T.StructType(
        [
            T.StructField("value", value_type),
            T.StructField("pre", T.StringType()),
            T.StructField("cell", T.StringType()),
        ]
    )
    is_utc = isinstance(dtype, T.TimestampType)
    is_naive = isinstance(dtype, T.TimestampNTZType)

    @pandas_udf(out_type)  # type: ignore[call-overload]
    def read_cells(s: pd.Series) -> pd.DataFrame:
        from mspa_features.data.validation import clean_cells

        # Spark hands timestamps over in nanoseconds, instants naive in the session's zone
        # (UTC); pandas reads them in the file's unit, which reasons print.
        if is_utc:
            s = s.dt.tz_localize("UTC").astype(f"datetime64[{unit}, UTC]")
        elif is_naive:
            s = s.astype(f"datetime64[{unit}]")
        values, pre, cell = clean_cells(
            rule,
            s,
            source=source,
            contract=contract,
            timestamps=fmt,
            image_root=image_root,
            check_images=check_images,
        )
        if rule.kind == "timestamp":
            us = values.dt.tz_convert(None).to_numpy("datetime64[us]").view("i8")
            present = values.notna().to_numpy()
            values = [int(u) if p else None for u, p in zip(us, present, strict=True)]
        elif rule.kind == "map":
            values = [dict(v) for v in values]
        else:
            values = list(values)
        return pd.DataFrame(
            {
                "value": pd.Series(values, dtype=object),
                "pre": ["; ".join(r) if r else None for r in pre],
                "cell": ["; ".join(r) if r else None for r in cell],
            }
        )

    return read_cells


def _record_udf(schema: Any, nulls: Mapping[str, bool]) -> Any:
    """A pandas UDF: each raw row as the quarantine's JSON record (the pandas engine's)."""
    from pyspark.sql import types as T
    from pyspark.sql.functions import pandas_udf

    utc = [f.name for f in schema.fields if isinstance(f.dataType, T.TimestampType)]
    integral = (T.ByteType, T.ShortType, T.IntegerType, T.LongType)
    # pandas reads an integer column holding a null anywhere in the file as floats
    floats = [
        f.name
        for f in schema.fields
        if isinstance(f.dataType, integral) and nulls.get(f.name, False)
    ]

    @pandas_udf(T.StringType())  # type: ignore[call-overload]
    def record(rows: pd.DataFrame) -> pd.Series:
        from mspa_features.data.validation import _record_json

        for name in utc:
            rows[name] = rows[name].dt.tz_localize("UTC")
        for name in floats:
            rows[name] = rows[name].astype("float64")
        return pd.Series([_record_json(r) for r in rows.to_dict(orient="records")])

    return record


# --------------------------------------------------------------------------- rules


def validate_dataframe(
    spark: SparkSession, df: DataFrame, req: SparkValidation, *, is_parquet: bool
) -> DataFrame:
    """``df`` (with ``_row``) checked against ``req.rules``: the raw columns in ``_raw``, the
    clean contract columns, and ``_reasons`` (an array, empty for accepted rows)."""
    from pyspark.sql import functions as F

    from mspa_features.data.sources import apply_columns

    rules = req.rules
    contract = rules.contract
    if any(r.kind == "vector" for r in rules.columns):
        raise IncompatibleSettingsError(
            {"contract": rules.name, "data.validation_engine": "spark"},
            "vector columns (one inferred length per model version) are validated in pandas",
            fix="validate this contract with data.validation_engine: pandas",
        )
    raw_cols = [c for c in df.columns if c != "_row"]
    # The pandas engine's file-level checks and errors (a mapped or required column missing).
    mapped = apply_columns(pd.DataFrame(columns=raw_cols), contract, req.columns, source=req.source)
    present = set(mapped.columns)
    mapping = {c: req.columns.get(c, c) for c in contract.columns}
    dtypes = {f.name: f.dataType for f in df.schema.fields}
    nulls, units = _parquet_facts(Path(req.local)) if is_parquet else ({}, {})

    clean: dict[str, Column] = {}
    pre: list[Column] = []
    cell: list[Column] = []
    udf_cols: dict[str, Column] = {}
    fmt = req.timestamps
    for rule in rules.columns:
        col = rule.column
        if col not in present:  # an absent optional column: lists empty, scalars null
            if rule.kind in ("text_list", "frames"):
                clean[col] = F.array().cast(_spark_type(rule.arrow_type))
            elif rule.kind == "map":
                clean[col] = F.create_map().cast(_spark_type(rule.arrow_type))
            else:
                clean[col] = F.lit(None).cast(_spark_type(rule.arrow_type))
            continue
        src = mapping[col]
        c = F.col(f"`{src}`")
        native = _native_cell(
            rule,
            dtypes[src],
            c,
            may_be_null=nulls.get(src, True),
            fmt=fmt if rule.kind == "timestamp" else None,
            unit=units.get(src),
            source=req.source,
            contract=rules.name,
        )
        if native is not None:
            clean[col], p, r = native
            pre += p
            cell += r
            continue
        udf = _cell_udf(
            rule,
            dtypes[src],
            source=req.source,
            contract=rules.name,
            fmt=fmt if rule.kind == "timestamp" else None,
            unit=units.get(src, "us"),
            image_root=req.image_root,
            check_images=req.check_images,
        )
        udf_cols[col] = udf(c)
        got = F.col(f"_cell_{col}")
        value = got["value"]
        clean[col] = F.timestamp_micros(value) if rule.kind == "timestamp" else value
        pre.append(got["pre"])
        cell.append(got["cell"])

    for k, u in udf_cols.items():  # the library's cell reader, where Spark does not read natively
        df = df.withColumn(f"_cell_{k}", u)
    raw = F.struct(*[F.col(f"`{c}`") for c in raw_cols])
    reasons = F.array_compact(F.array(*(pre + cell or [F.lit(None).cast("string")])))
    staged = df.select(
        "_row",
        raw.alias("_raw"),
        *[expr.alias(col) for col, expr in clean.items()],
        reasons.alias("_reasons"),
    )
    return _row_rules(spark, staged, req)


def _append(reasons: Column, reason: Column) -> Column:
    from pyspark.sql import functions as F

    return F.when(reason.isNotNull(), F.concat(reasons, F.array(reason))).otherwise(reasons)


def _covered(reasons: Column, col: str) -> Column:
    """Some reason already starts with ``col`` (then a missing value is not reported again)."""
    from pyspark.sql import functions as F

    return F.exists(reasons, lambda r: F.substring(r, 1, len(col)) == F.lit(col))


def _row_rules(spark: SparkSession, df: DataFrame, req: SparkValidation) -> DataFrame:
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    rules = req.rules
    by = {r.column: r for r in rules.columns}
    reasons = F.col("_reasons")
    steps: list[Column] = []

    for col in rules.required:
        v = F.col(col)
        blank = v.rlike(_BLANK) if by[col].kind == "string" else F.lit(False)
        missing = v.isNull() | blank
        steps.append(F.when(missing & ~_covered(reasons, col), F.lit(R.missing_required(col))))
    df = _apply(df, steps)
    steps = []
    for col in rules.modalities:
        rule = by[col]
        v = F.col(col)
        if rule.kind == "string":
            empty = v.isNull() | v.rlike(_BLANK)
        elif rule.kind in ("text_list", "frames"):
            empty = v.isNull() | (F.size(v) == 0)
        elif rule.kind == "map":
            empty = v.isNull() | (F.size(F.map_keys(v)) == 0)
        else:
            empty = v.isNull()
        df = _apply(
            df, [F.when(empty & ~_covered(F.col("_reasons"), col), F.lit(R.missing_modality(col)))]
        )
    for rule in rules.enums:
        assert rule.allowed is not None
        v = F.col(rule.column)
        bad = v.isNotNull() & ~v.isin(*rule.allowed)
        steps.append(
            F.when(
                bad, _reason(R.not_one_of(rule.column, rule.allowed, R.VALUE), _show_value(rule, v))
            )
        )
    for rule in rules.nonnegative:
        v = F.col(rule.column)
        steps.append(F.when(v < 0, _reason(R.negative(rule.column, R.VALUE), _show_value(rule, v))))
    for col, as_of in rules.built_before:
        k, t = F.col(col), F.col(as_of)
        text = R.not_before(col, R.VALUE, as_of, R.VALUE)
        a, rest = text.split(R.VALUE, 1)
        b, c = rest.split(R.VALUE, 1)
        steps.append(
            F.when(
                k.isNotNull() & t.isNotNull() & (k >= t),
                F.concat(F.lit(a), _show_instant(k), F.lit(b), _show_instant(t), F.lit(c)),
            )
        )
    if rules.history is not None:
        count_col, last_col = rules.history
        n, last = F.col(count_col), F.col(last_col)
        steps.append(
            F.when(
                (n > 0) & last.isNull(),
                _reason(R.history_missing(last_col, count_col, R.VALUE), n.cast("string")),
            ).when(
                (n == 0) & last.isNotNull(),
                _reason(R.history_set(last_col, count_col, R.VALUE), _show_instant(last)),
            )
        )
    df = _apply(df, steps)

    for rule in rules.references:
        entity = rule.references
        if entity is None or entity not in req.known_ids:
            continue
        ids = sorted(req.known_ids[entity])
        known = spark.createDataFrame(pd_ids(ids), "_id string").withColumn("_known", F.lit(True))
        if len(ids) <= 2_000_000:
            known = F.broadcast(known)
        df = df.join(known, F.col(rule.column) == F.col("_id"), "left").drop("_id")
        v = F.col(rule.column)
        bad = v.isNotNull() & F.col("_known").isNull()
        df = _apply(
            df,
            [
                F.when(
                    bad, _reason(R.unknown_reference(rule.column, entity, R.VALUE), _show_text(v))
                )
            ],
        ).drop("_known")

    # Duplicate keys among otherwise-good rows: the first occurrence (by row number) wins.
    ok = F.size("_reasons") == 0
    w = Window.partitionBy(*[F.col(k) for k in rules.key])
    df = df.withColumn("_first", F.min(F.when(ok, F.col("_row"))).over(w))
    dup = ok & (F.col("_row") != F.col("_first"))
    text = R.duplicate_key([(k, R.VALUE) for k in rules.key], R.VALUE)
    parts = text.split(R.VALUE)
    pieces: list[Column] = [F.lit(parts[0])]
    for k, after in zip(rules.key, parts[1:-1], strict=True):
        pieces += [_show_value(by[k], F.col(k)), F.lit(after)]
    pieces += [F.col("_first").cast("string"), F.lit(parts[-1])]
    df = _apply(df, [F.when(dup, F.concat(*pieces))]).drop("_first")
    return df


def pd_ids(ids: list[str]) -> Any:
    return pd.DataFrame({"_id": pd.Series(ids, dtype=object)})


def _apply(df: DataFrame, reasons: list[Column]) -> DataFrame:
    """Append each non-null reason, in order, to ``_reasons``."""
    from pyspark.sql import functions as F

    if not reasons:
        return df
    new = F.array_compact(F.array(*reasons))
    return df.withColumn("_reasons", F.concat(F.col("_reasons"), new))


# --------------------------------------------------------------------------- writing


def _merge_parts(parts: Path, out: Path, schema: Any) -> int:
    """Spark's part files (in order) -> one parquet file of ``schema``; returns its rows."""
    import pyarrow.parquet as pq

    files = sorted(parts.glob("part-*.parquet"))
    tmp = out.with_name(f".{out.name}.tmp")
    n = 0
    with pq.ParquetWriter(tmp, schema) as w:
        for f in files:
            pf = pq.ParquetFile(f)
            for batch in pf.iter_batches(batch_size=262_144):
                table = batch_table(batch, schema)
                w.write_table(table)
                n += table.num_rows
    os.replace(tmp, out)
    return n


def batch_table(batch: Any, schema: Any) -> Any:
    import pyarrow as pa

    t = pa.Table.from_batches([batch]).select(schema.names)
    return t.cast(schema)


def validate_with_spark(spark: SparkSession, req: SparkValidation) -> FileValidationResult:
    """Validate ``req.local`` with Spark into ``req.staging`` (accepted.parquet,
    quarantine.parquet).

    Raises:
        SchemaError: the file cannot be read, or misses a required column (as pandas says).
        ReconciliationError: counts do not add up (a bug).
    """
    from pyspark.sql import functions as F

    rules = req.rules
    contract = rules.contract
    staging = Path(req.staging)
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        df, is_parquet = _read(spark, req)
    except Exception as e:  # AnalysisException and friends: name the file
        if isinstance(e, SchemaError):
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SchemaError(req.source, f"Spark cannot read it: {first}") from e
    raw_schema = df.drop("_row").schema
    nulls = _parquet_facts(Path(req.local))[0] if is_parquet else {}
    checked = validate_dataframe(spark, df, req, is_parquet=is_parquet)
    # One pass over the rules: written once, then read for the two outputs.
    checked_path = staging / "_checked"
    checked.write.parquet(str(checked_path))
    checked = spark.read.parquet(str(checked_path))

    ok = F.size("_reasons") == 0
    accepted = checked.filter(ok).orderBy("_row")
    for fld in contract.schema:
        accepted = accepted.withColumn(fld.name, F.col(fld.name).cast(_spark_type(fld.type)))
    accepted.select(*contract.schema.names).write.parquet(str(staging / "_accepted"))
    record = _record_udf(raw_schema, nulls)
    bad = checked.filter(~ok).orderBy("_row")
    bad.select(
        F.lit(rules.name).alias("contract"),
        F.lit(str(req.source)).alias("source"),
        F.col("_row").alias("row_number"),
        F.array_join("_reasons", "; ").alias("reason"),
        record(F.col("_raw")).alias("record"),
    ).write.parquet(str(staging / "_quarantine"))

    n_input = checked.count()
    n_acc = _merge_parts(staging / "_accepted", staging / "accepted.parquet", contract.schema)
    n_bad = _merge_parts(staging / "_quarantine", staging / "quarantine.parquet", QUARANTINE_SCHEMA)
    for part in ("_checked", "_accepted", "_quarantine"):
        shutil.rmtree(staging / part, ignore_errors=True)
    if n_acc + n_bad != n_input:
        raise ReconciliationError(rules.name, n_input, n_acc, n_bad)
    return FileValidationResult(
        contract=rules.name,
        source=str(req.source),
        n_input=n_input,
        n_accepted=n_acc,
        accepted_path=staging / "accepted.parquet",
        quarantine_path=staging / "quarantine.parquet",
    )


def _spark_type(typ: Any) -> Any:
    import pyarrow as pa
    from pyspark.sql import types as T

    if pa.types.is_string(typ):
        return T.StringType()
    if pa.types.is_integer(typ):
        return {8: T.ByteType(), 16: T.ShortType(), 32: T.IntegerType(), 64: T.LongType()}[
            typ.bit_width
        ]
    if pa.types.is_floating(typ):
        return T.DoubleType() if typ.bit_width == 64 else T.FloatType()
    if pa.types.is_timestamp(typ):
        return T.TimestampType()
    if pa.types.is_list(typ) and pa.types.is_string(typ.value_type):
        return T.ArrayType(T.StringType())
    if pa.types.is_map(typ):
        return T.MapType(T.StringType(), T.StringType())
    return T.ArrayType(
        T.StructType(
            [T.StructField("bytes", T.BinaryType()), T.StructField("path", T.StringType())]
        )
    )
