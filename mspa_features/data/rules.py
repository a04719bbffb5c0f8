"""The validation rules of a contract, written once, and the reason text of every verdict.

A :class:`RuleSet` is a declarative list of what a contract requires of its rows: one
:class:`ColumnRule` per column (its type, whether it is required, a finite / non-negative
range, the values it may take, the entity it references) plus the row rules (a unique key, a
point-in-time pair, a history pair, required modalities). Two engines evaluate the same rule
objects:

* pandas (:func:`mspa_features.data.validation.validate`), in the library, for inputs that fit
  one process;
* Spark (``spark_jobs/validate.py``), for inputs that do not; the CLI wires it in.

Every quarantine reason is built by one function of this module, so both engines produce the
same text. A reason carries the offending value as :func:`show` prints it; the Spark engine
builds the text around a placeholder (:data:`VALUE`): ``prefix, suffix =
not_one_of("label", (0, 1), VALUE).split(VALUE)``, then puts the value between them.

Which engine runs is :data:`ValidationEngine` (``data.validation_engine``); ``auto`` picks by
the input's size (:func:`choose_engine`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from mspa_features.data.contracts import FRAME, Contract
from mspa_features.errors import IncompatibleSettingsError

#: Placeholder for the offending value in a reason template (see the module docstring).
VALUE = "\x00value\x00"
#: The longest value a reason shows in full (longer ones are cut and end with ``...``).
MAX_SHOWN = 60

ColumnKind = Literal[
    "string", "integer", "float", "timestamp", "vector", "frames", "text_list", "map"
]


@dataclass(frozen=True, kw_only=True)
class ColumnRule:
    """What one contract column must hold.

    Attributes:
        column: the contract column.
        kind: how a cell is read (``string``, ``integer``, ``float``, ``timestamp``, ``vector``,
            ``frames``, ``text_list``, ``map``).
        arrow_type: the type accepted rows have.
        required: every row needs a (non-blank) value.
        finite: a float must not be NaN or infinite (integers always must be finite).
        nonnegative: the value must be >= 0.
        allowed: the only values the column may take (None: any).
        references: the entity contract whose accepted ids the value must be one of.
        modality: a required modality (text non-blank, list non-empty).
    """

    column: str
    kind: ColumnKind
    arrow_type: pa.DataType
    required: bool = False
    finite: bool = False
    nonnegative: bool = False
    allowed: tuple[Any, ...] | None = None
    references: str | None = None
    modality: bool = False


@dataclass(frozen=True, kw_only=True)
class RuleSet:
    """The rules of one contract, in the order reasons are reported.

    Attributes:
        contract: the contract they come from (its schema is what accepted rows have).
        columns: one rule per contract column, in schema order.
        key: columns identifying a row; a later row with the same key is a duplicate.
        built_before: (column, as-of column) pairs: the first must be strictly earlier.
        history: (count column, newest-event column): both zero/null or both set.
        vector_groups: columns within whose values every vector of a column has one length.
    """

    contract: Contract
    columns: tuple[ColumnRule, ...]
    key: tuple[str, ...]
    built_before: tuple[tuple[str, str], ...] = ()
    history: tuple[str, str] | None = None
    vector_groups: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.contract.name

    def column(self, name: str) -> ColumnRule:
        return next(r for r in self.columns if r.column == name)

    @property
    def required(self) -> tuple[str, ...]:
        """Required columns, in the contract's order (the order their reasons come in)."""
        return tuple(self.contract.required)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(r.column for r in self.columns if r.modality)

    @property
    def references(self) -> tuple[ColumnRule, ...]:
        """Columns referencing an entity, in the contract's order."""
        by = {r.column: r for r in self.columns}
        return tuple(by[c] for c in self.contract.entity_refs)

    @property
    def enums(self) -> tuple[ColumnRule, ...]:
        by = {r.column: r for r in self.columns}
        return tuple(by[c] for c in self.contract.allowed)

    @property
    def nonnegative(self) -> tuple[ColumnRule, ...]:
        by = {r.column: r for r in self.columns}
        return tuple(by[c] for c in self.contract.nonnegative)


def _kind(contract: Contract, col: str, typ: pa.DataType) -> ColumnKind:
    if col in contract.timestamps:
        return "timestamp"
    if pa.types.is_string(typ):
        return "string"
    if pa.types.is_integer(typ):
        return "integer"
    if pa.types.is_floating(typ):
        return "float"
    if col in contract.vectors:
        return "vector"
    if pa.types.is_list(typ) and typ.value_type == FRAME:
        return "frames"
    if pa.types.is_list(typ) and pa.types.is_string(typ.value_type):
        return "text_list"
    if pa.types.is_map(typ):
        return "map"
    raise IncompatibleSettingsError(  # a contract type no engine knows: a programming error
        {"contract": contract.name, "column": col, "type": str(typ)},
        "no validation rule for this column type",
    )


def contract_rules(contract: Contract, *, required_modalities: Sequence[str] = ()) -> RuleSet:
    """The rule set of ``contract`` (plus the modalities a composer needs non-empty)."""
    cols = []
    for fld in contract.schema:
        col, typ = fld.name, fld.type
        kind = _kind(contract, col, typ)
        cols.append(
            ColumnRule(
                column=col,
                kind=kind,
                arrow_type=typ,
                required=col in contract.required,
                # integers are always finite; floats only where the contract says so
                finite=kind == "integer" or col in contract.finite,
                nonnegative=col in contract.nonnegative,
                allowed=tuple(contract.allowed[col]) if col in contract.allowed else None,
                references=contract.entity_refs.get(col),
                modality=col in required_modalities,
            )
        )
    return RuleSet(
        contract=contract,
        columns=tuple(cols),
        key=tuple(contract.key),
        built_before=tuple(contract.built_before.items()),
        history=contract.history,
        vector_groups=tuple(contract.vector_groups),
    )


# --------------------------------------------------------------------------- showing values


def show(v: Any) -> str:
    """A value as reasons print it: text as is, instants as ISO 8601 with ``Z``, anything
    else as ``repr``; cut at :data:`MAX_SHOWN` characters."""
    if isinstance(v, datetime):
        v = v.isoformat().replace("+00:00", "Z")
    text = repr(v) if not isinstance(v, str) else v
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "..."


def show_float(x: float) -> str:
    """A float as ``str`` prints it (``nan``, ``inf``, ``-inf``, ``1.5``)."""
    return str(float(x)) if not math.isnan(x) else "nan"


# --------------------------------------------------------------------------- reasons
# One function per verdict. Values arrive already shown (``show``), so the Spark engine can
# pass :data:`VALUE` and fill it in per row.


def missing_required(col: str) -> str:
    return f"{col}: missing required value"


def missing_modality(col: str) -> str:
    return f"{col}: missing required modality"


def not_utf8(col: str) -> str:
    return f"{col}: not valid UTF-8 text"


def expected_text(col: str, shown: str) -> str:
    return f"{col}: expected text, got {shown}"


def expected_number(col: str, shown: str) -> str:
    return f"{col}: expected a number, got {shown}"


def not_a_number(col: str, shown: str) -> str:
    return f"{col}: not a number '{shown}'"


def not_finite(col: str, shown_float: str) -> str:
    return f"{col}: not finite ({shown_float})"


def expected_integer(col: str, shown: str) -> str:
    return f"{col}: expected an integer, got {shown}"


def integer_out_of_range(col: str, typ: pa.DataType, shown: str) -> str:
    return f"{col}: out of range for {typ}: {shown}"


def not_one_of(col: str, allowed: Sequence[Any], shown: str) -> str:
    return f"{col}: must be one of {list(allowed)}, got {shown}"


def negative(col: str, shown: str) -> str:
    return f"{col}: must not be negative, got {shown}"


def unknown_reference(col: str, entity: str, shown: str) -> str:
    return f"{col}: unknown {entity.removesuffix('s')} '{shown}'"


def duplicate_key(key: Sequence[tuple[str, str]], first_row: str) -> str:
    """``key``: (column, shown value) pairs; ``first_row``: the first occurrence's row number."""
    key_txt = ", ".join(f"{k}={v}" for k, v in key)
    return f"duplicate key ({key_txt}) first seen at row {first_row}"


def not_before(col: str, shown: str, as_of: str, shown_as_of: str) -> str:
    return (
        f"{col}: point-in-time violation ('{shown}' is not before {as_of} "
        f"'{shown_as_of}': the row would carry information from its own future)"
    )


def history_missing(last_col: str, count_col: str, shown_count: str) -> str:
    return f"{last_col}: missing although {count_col} is {shown_count}"


def history_set(last_col: str, count_col: str, shown_last: str) -> str:
    return f"{last_col}: set ('{shown_last}') although {count_col} is 0"


def template(reason: str) -> tuple[str, str]:
    """(text before, text after) the :data:`VALUE` placeholder of a reason built with it."""
    before, after = reason.split(VALUE)
    return before, after


# --------------------------------------------------------------------------- choosing an engine

ValidationEngine = Literal["auto", "pandas", "spark"]
#: Peak memory of the pandas engine per input row: ``bench/bench_validation.py`` measured a
#: 0.79 GiB process peak for 1,055,000 rows (750 B a row with the interpreter's own; object
#: columns of ids, the quarantine's JSON records, the accepted Arrow copy): the estimate
#: ``auto`` and the pandas engine's refusal use.
PANDAS_BYTES_PER_ROW = 800
#: The pandas engine is used while its estimated peak stays under this share of the memory
#: available when validation starts (the rest is the other stages' and the machine's).
PANDAS_MEMORY_SHARE = 0.5
#: ``auto`` hands a contract to Spark from this many rows on, whatever the memory. On 2 cores
#: (``bench/bench_validation.py``, bench/README.md) pandas is 2.4x faster at 1M interactions
#: (Spark pays shuffles for the reference join, the duplicate window and the ordered outputs,
#: and ~25-40 s of start-up); at 10M Spark is 1.15x faster with 2.8 GiB peak vs pandas' 6.1.
AUTO_SPARK_ROWS = 5_000_000


def available_memory() -> int:
    """Bytes of memory available now (``MemAvailable``; psutil when /proc is absent)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil
    except ImportError:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    return int(psutil.virtual_memory().available)


def count_rows(path: str | Path) -> int | None:
    """Rows of a parquet file (from its footer), else None (text files are not counted)."""
    p = Path(path)
    if p.suffix.lower() != ".parquet" or not p.exists():
        return None
    import pyarrow.parquet as pq

    if p.is_dir():
        return sum(pq.ParquetFile(f).metadata.num_rows for f in sorted(p.glob("*.parquet")))
    return pq.ParquetFile(p).metadata.num_rows


def estimate_rows(path: str | Path) -> int:
    """Rows of a contract file: parquet's footer, else its size over 60 bytes a line (CSV)."""
    n = count_rows(path)
    if n is not None:
        return n
    p = Path(path)
    return p.stat().st_size // 60 if p.is_file() else 0


@dataclass(frozen=True)
class EngineChoice:
    """Which engine validates one contract file, and why (printed with the counts)."""

    engine: Literal["pandas", "spark"]
    rows: int
    why: str


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def choose_engine(
    setting: ValidationEngine,
    contract: str,
    path: str | Path,
    *,
    spark_available: bool,
    memory: int | None = None,
) -> EngineChoice:
    """The engine for one contract file.

    ``pandas`` and ``spark`` are taken as given; ``auto`` takes Spark when it is available and
    the file has at least :data:`AUTO_SPARK_ROWS` rows or the pandas engine's estimated peak
    (:data:`PANDAS_BYTES_PER_ROW` a row) exceeds :data:`PANDAS_MEMORY_SHARE` of the memory
    available now; pandas otherwise.

    Raises:
        IncompatibleSettingsError: ``spark`` was asked for where no Spark engine is wired (the
            library alone; the ``mspa`` CLI passes it).
    """
    rows = estimate_rows(path)
    if setting == "pandas":
        return EngineChoice("pandas", rows, "data.validation_engine: pandas")
    if setting == "spark":
        if not spark_available:
            raise IncompatibleSettingsError(
                {"data.validation_engine": "spark"},
                "no Spark validator is wired in this call (the library never imports pyspark)",
                fix="run it through the mspa CLI, or pass validate_spark=spark_jobs.validate."
                "validate_with_spark",
            )
        return EngineChoice("spark", rows, "data.validation_engine: spark")
    mem = available_memory() if memory is None else memory
    need = rows * PANDAS_BYTES_PER_ROW
    budget = mem * PANDAS_MEMORY_SHARE
    if spark_available and rows >= AUTO_SPARK_ROWS:
        return EngineChoice("spark", rows, f"auto: {rows:,} rows >= {AUTO_SPARK_ROWS:,}")
    if spark_available and need > budget:
        return EngineChoice(
            "spark",
            rows,
            f"auto: pandas would need ~{_gib(need)} of {_gib(mem)} available",
        )
    return EngineChoice("pandas", rows, f"auto: {rows:,} rows fit pandas")


def pandas_fits(
    contract: str, rows: int, *, memory: int | None = None, source: str = ""
) -> str | None:
    """None when ``rows`` fit the pandas engine, else the one-line refusal (size, memory, and
    the switch to use)."""
    mem = available_memory() if memory is None else memory
    need = rows * PANDAS_BYTES_PER_ROW
    if need <= mem * PANDAS_MEMORY_SHARE:
        return None
    where = f" ({source})" if source else ""
    return (
        f"{contract}{where}: {rows:,} rows need ~{_gib(need)} to validate in pandas, more than "
        f"{PANDAS_MEMORY_SHARE:.0%} of the {_gib(mem)} available; validate it with Spark: "
        "data.validation_engine: spark (or auto) in the run config, through the mspa CLI"
    )


__all__ = [
    "AUTO_SPARK_ROWS",
    "MAX_SHOWN",
    "PANDAS_BYTES_PER_ROW",
    "PANDAS_MEMORY_SHARE",
    "VALUE",
    "ColumnRule",
    "EngineChoice",
    "RuleSet",
    "ValidationEngine",
    "available_memory",
    "choose_engine",
    "contract_rules",
    "count_rows",
    "estimate_rows",
    "pandas_fits",
    "show",
    "show_float",
    "template",
]
