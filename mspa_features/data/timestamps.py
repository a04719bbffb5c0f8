"""One rule for reading instants: ISO 8601 / RFC 3339 text, datetimes and unix seconds.

Every input path (CSV text, parquet timestamps of any unit, Python datetimes, MovieLens epoch
seconds) ends here, so the same instant gets the same verdict whatever file it came in. Values
are judged one at a time and never raise: each returns microseconds since the epoch (UTC) or a
reason, so one bad cell quarantines one row.

Verdicts:

* accepted: text with an explicit offset (``Z``/``z``, ``+05:30``, ``+0530``, ``+05``,
  ``-00:00``, or a trailing ``UTC``/``GMT``), ``T``/``t``/space between date and time, fractional
  seconds with any number of digits (kept to the microsecond, truncated), extended
  (``1998-01-01T10:00:00Z``) or basic (``19980101T100000Z``) format, expanded years
  (``+10000-01-01T00:00:00Z``, then out of range); ``24:00:00`` is the next midnight and a leap
  second ``23:59:60`` the next second (as POSIX time counts them);
* ``naive timestamp``: a date/time without offset: local or UTC cannot be told, so not guessed;
* ``outside the supported range``: a valid instant the product cannot hold. The range is what
  every stage handles: pandas nanosecond timestamps (Feast, the ranker windows) span
  1677-09-21 .. 2262-04-11, so the supported range is :data:`SUPPORTED_RANGE`;
* ``unparseable timestamp``: anything else (with what is wrong, where it is known).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np
import pandas as pd

#: Inclusive lower and exclusive upper bound of the instants the product holds (UTC).
MIN_SUPPORTED = datetime(1677, 9, 22, tzinfo=UTC)
MAX_SUPPORTED = datetime(2262, 4, 11, tzinfo=UTC)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
MIN_US = (MIN_SUPPORTED - _EPOCH) // _US
MAX_US = (MAX_SUPPORTED - _EPOCH) // _US
SUPPORTED_RANGE = "[1677-09-22T00:00:00Z, 2262-04-11T00:00:00Z)"
OUT_OF_RANGE = f"outside the supported range {SUPPORTED_RANGE}"
NAIVE, UNPARSEABLE = "naive timestamp", "unparseable timestamp"
NUMERIC = "numeric timestamp is ambiguous"

_TZ = r"(?P<tz>[Zz]|[+-]\d{2}(?::?\d{2})?|UTC|GMT|utc|gmt)"
_EXTENDED = re.compile(
    r"^(?P<y>[+-]?\d{4,})-(?P<m>\d{2})-(?P<d>\d{2})"
    r"(?:[Tt ](?P<H>\d{2})(?::(?P<M>\d{2})(?::(?P<S>\d{2})(?:[.,](?P<f>\d+))?)?)?"
    rf"(?: ?{_TZ})?)?$"
)
_BASIC = re.compile(
    r"^(?P<y>\d{4})(?P<m>\d{2})(?P<d>\d{2})"
    r"[Tt](?P<H>\d{2})(?:(?P<M>\d{2})(?:(?P<S>\d{2})(?:[.,](?P<f>\d+))?)?)?"
    r"(?P<tz>[Zz]|[+-]\d{2}(?:\d{2})?)?$"
)
_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
_UNIT_US = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": None}


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date, for any year (no overflow)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _days_in_month(y: int, m: int) -> int:
    if m == 2:
        return 29 if (y % 4 == 0 and y % 100 != 0) or y % 400 == 0 else 28
    return 30 if m in (4, 6, 9, 11) else 31


def in_range(us: int) -> bool:
    return MIN_US <= us < MAX_US


def show_us(us: int) -> str:
    """ISO text of an in-range instant in microseconds (for messages)."""
    return (_EPOCH + timedelta(microseconds=us)).isoformat().replace("+00:00", "Z")


Problem = tuple[str, str]  # (kind, detail): see :func:`reason`


def reason(col: str, shown: str, problem: Problem) -> str:
    """The quarantine reason: ``"<col>: <kind> '<value>'<detail>"``."""
    kind, detail = problem
    return f"{col}: {kind} '{shown}'{detail}"


def parse_text(text: str) -> tuple[int | None, Problem | None]:
    """ISO 8601 / RFC 3339 text -> (UTC microseconds, None) or (None, problem)."""
    t = text.strip()
    m = _EXTENDED.match(t) or _BASIC.match(t)
    if m is None:
        if _NUMBER.match(t):
            return None, (NUMERIC, " (seconds? milliseconds?): give ISO 8601 text with an offset")
        return None, (UNPARSEABLE, "")
    g = m.groupdict()
    y, mo, d = int(g["y"]), int(g["m"]), int(g["d"])
    if not 1 <= mo <= 12:
        return None, (UNPARSEABLE, f" (month {mo})")
    if not 1 <= d <= _days_in_month(y, mo):
        return None, (UNPARSEABLE, f" (day {d} of month {mo})")
    hh = int(g["H"]) if g.get("H") else 0
    mm = int(g["M"]) if g.get("M") else 0
    ss = int(g["S"]) if g.get("S") else 0
    frac = g.get("f") or ""
    if hh == 24 and (mm or ss or frac.strip("0")):
        return None, (UNPARSEABLE, " (hour 24 is only 24:00:00)")
    if hh > 24 or mm > 59 or ss > 60 or (ss == 60 and mm != 59):
        return None, (UNPARSEABLE, f" (time {hh:02d}:{mm:02d}:{ss:02d})")
    if g.get("H") is None or g.get("tz") is None:
        return None, (NAIVE, " (no UTC offset)")
    tz = g["tz"]
    offset_min = 0
    if tz[0] in "+-":
        digits = tz[1:].replace(":", "")
        oh, om = int(digits[:2]), int(digits[2:] or 0)
        if oh > 23 or om > 59:
            return None, (UNPARSEABLE, f" (offset {tz})")
        offset_min = (oh * 60 + om) * (1 if tz[0] == "+" else -1)
    us = (
        ((_days_from_civil(y, mo, d) * 24 + hh) * 60 + mm - offset_min) * 60 + ss
    ) * 1_000_000 + int(frac[:6].ljust(6, "0"))
    if not in_range(us):
        return None, (OUT_OF_RANGE, "")
    return us, None


def datetime_us(v: datetime) -> tuple[int | None, Problem | None]:
    """A Python/pandas datetime -> (UTC microseconds, None) or (None, problem)."""
    if v.tzinfo is None or v.utcoffset() is None:
        return None, (NAIVE, " (no UTC offset)")
    us = (v - _EPOCH) // _US  # exact for any year; sub-microseconds truncated
    if not in_range(us):
        return None, (OUT_OF_RANGE, "")
    return int(us), None


def datetime_column_us(s: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A tz-aware datetime column of any unit -> (us int64, ok mask, out-of-range mask).

    Works in the column's own unit, so a second- or millisecond-precision parquet column
    beyond the nanosecond range cannot overflow on conversion.
    """
    unit = s.dtype.unit
    raw = s.dt.tz_convert(None).to_numpy(f"datetime64[{unit}]").view("i8")
    present = ~np.isnat(raw.view(f"datetime64[{unit}]"))
    factor = _UNIT_US[unit]
    if factor is None:  # ns: always representable; floor to microseconds
        us = np.floor_divide(raw, 1000)
        fits = present & (us >= MIN_US) & (us < MAX_US)
    else:
        lo, hi = -((-MIN_US) // factor), -((-MAX_US) // factor)  # ceil divisions
        fits = present & (raw >= lo) & (raw < hi)
        us = np.where(fits, raw, 0) * factor
    return us.astype(np.int64), fits, present & ~fits


def epoch_seconds_us(v: Any) -> tuple[int | None, Problem | None]:
    """Unix seconds (number or numeric text) -> (UTC microseconds, None) or (None, problem)."""
    if isinstance(v, (bool, np.bool_)):
        return None, (UNPARSEABLE, " (expected unix seconds)")
    try:
        dec = Decimal(v.strip()) if isinstance(v, str) else Decimal(str(v))
    except (InvalidOperation, ValueError):
        return None, (UNPARSEABLE, " (expected unix seconds)")
    if not dec.is_finite():
        return None, (UNPARSEABLE, " (not a finite number of unix seconds)")
    if abs(dec) >= 10**20:  # far beyond any unit's range; avoids building a huge integer
        return None, (OUT_OF_RANGE, " (read as unix seconds)")
    us = int(dec * 1_000_000)
    if not in_range(us):
        hint = next(
            (
                f": in {unit}?"
                for unit, f in (("milliseconds", 1000), ("microseconds", 10**6))
                if in_range(us // f)
            ),
            "",
        )
        return None, (OUT_OF_RANGE, f" (read as unix seconds{hint})")
    return us, None


def us_series(us: list[int | None], index: pd.Index) -> pd.Series:
    """Microseconds (None for missing) -> a ``datetime64[us, UTC]`` series."""
    arr = np.array([x if x is not None else np.iinfo(np.int64).min for x in us], dtype=np.int64)
    return pd.Series(arr.view("datetime64[us]"), index=index).dt.tz_localize("UTC")


def is_number_text(text: str) -> bool:
    return bool(_NUMBER.match(text.strip()))


__all__ = [
    "MAX_SUPPORTED",
    "MIN_SUPPORTED",
    "NAIVE",
    "NUMERIC",
    "OUT_OF_RANGE",
    "SUPPORTED_RANGE",
    "UNPARSEABLE",
    "Problem",
    "datetime_column_us",
    "datetime_us",
    "epoch_seconds_us",
    "in_range",
    "is_number_text",
    "parse_text",
    "reason",
    "show_us",
    "us_series",
]
