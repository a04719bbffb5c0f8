"""Plain-language verdicts for an ablation table (baseline, AIS and LIS rows).

AIS = AUC(ranker + MLLM feature) - AUC(baseline); LIS = AUC(ranker + leaked feature) -
AUC(baseline), both with the paired bootstrap CI of :func:`mspa_features.evaluation.metrics.paired_bootstrap`
(the runner computes them). LIS is the upper bound of what one kind of preference data can teach
an MLLM: a significant LIS says the ranker lacks that information (worth aligning an MLLM to
it); an LIS whose CI spans zero says the ranker already holds it. AIS / LIS tells how much of
that upper bound an MLLM feature realises.

:func:`lis_report` is pure: rows in, the same rows with verdicts out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mspa_features.errors import DataError

# The paper: "+0.0010 AUC is significant" for a production ranker.
DEFAULT_MIN_EFFECT = 0.001

# leak kind -> (subject, verb agreeing with it, what the information is)
_SUBJECTS = {
    "future_id": ("ID embeddings from {n} days ahead", "carry", "ID-embedding information"),
    "similar_items": (
        "similar-item side information ({n}-day posterior co-occurrence)",
        "carries",
        "similar-item information",
    ),
    "next_positive": (
        "the user's next positive author (up to {n} days ahead)",
        "carries",
        "next-interest information",
    ),
}


class _Row(BaseModel):
    """The fields of one ablation row that the verdict reads (others pass through)."""

    model_config = ConfigDict(extra="ignore")

    variant: str = Field(min_length=1)
    kind: Literal["baseline", "ais", "lis"]
    delta: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    leak_kind: str | None = None
    horizon_days: int | None = None
    feature: str | None = None
    upper_bound: str | None = None

    @model_validator(mode="after")
    def _check(self) -> _Row:
        if self.kind == "baseline":
            return self
        for name in ("delta", "ci_low", "ci_high"):
            value = getattr(self, name)
            if value is None or not math.isfinite(value):
                # "<field>: <problem>": _parse names the field of a whole-row check from it.
                raise DataError(name, f"a finite number is required for kind {self.kind!r}")
        # A percentile CI need not hold the point estimate, but ci_low > ci_high is a bug.
        if self.ci_low > self.ci_high:  # type: ignore[operator]
            raise DataError("ci_low", f"{self.ci_low} > ci_high {self.ci_high}")
        return self


def _parse(i: int, raw: Mapping[str, Any]) -> _Row:
    try:
        return _Row.model_validate(dict(raw))
    except ValidationError as e:
        err = e.errors()[0]
        msg = err["msg"].removeprefix("Value error, ")
        field = ".".join(str(x) for x in err["loc"])
        if not field:  # a whole-row check names its field first: "delta: ..."
            field, msg = (s.strip() for s in msg.split(":", 1))
        raise DataError(
            "lis_report", msg, record=f"row {i} (variant {raw.get('variant')!r})", field=field
        ) from e


def _effect(row: _Row, min_effect: float) -> str:
    if row.ci_low > 0 and row.delta >= min_effect:  # type: ignore[operator]
        return "gain"
    if row.ci_high < 0 and row.delta <= -min_effect:  # type: ignore[operator]
        return "loss"
    return "none"


def _numbers(name: str, row: _Row) -> str:
    return f"{name} {row.delta:+.4f} AUC, 95% CI [{row.ci_low:+.4f}, {row.ci_high:+.4f}]"


def _lis_verdict(row: _Row, effect: str) -> str:
    subject, verb, info = _SUBJECTS.get(
        row.leak_kind or "", (f"leaked {row.leak_kind or 'feature'}", "carries", "this information")
    )
    subject = subject.format(n=row.horizon_days if row.horizon_days is not None else "n")
    nums = _numbers("LIS", row)
    if effect == "gain":
        return (
            f"{subject[0].upper()}{subject[1:]} {verb} information the ranker lacks ({nums}): "
            f"worth aligning an MLLM to predict {info}"
        )
    if effect == "loss":
        return (
            f"{subject[0].upper()}{subject[1:]} lowers AUC ({nums}): the ranker cannot use it "
            "and overfits it; not worth teaching an MLLM"
        )
    return (
        f"{subject[0].upper()}{subject[1:]} does not add information the ranker lacks ({nums}): "
        f"the ranker already holds {info}; not worth teaching an MLLM"
    )


def _ais_verdict(row: _Row, effect: str, ratio: float | None, upper: str | None) -> str:
    feature = row.feature or f"variant {row.variant!r}"
    nums = _numbers("AIS", row)
    if ratio is None:
        share = ""
    elif row.delta < 0:  # type: ignore[operator]
        # A negative share of an upper bound reads as nonsense ("realises -24%"): say it.
        share = (
            f"; below the baseline, it realises none of the LIS upper bound of {upper!r} "
            "(an AIS/LIS ratio is not meaningful for a loss)"
        )
    else:
        share = f"; it realises {ratio:.0%} of the LIS upper bound of {upper!r}"
    if effect == "gain":
        return f"{feature} improves the ranker ({nums}){share}"
    if effect == "loss":
        return f"{feature} hurts the ranker ({nums}){share}"
    return f"{feature} shows no measurable gain ({nums}){share}"


def ratio_cell(ratio: float | None) -> str:
    """The AIS/LIS ratio as a table cell: ``""`` without an upper bound, ``"below"`` under the
    baseline (a negative share of an upper bound is not meaningful, significant or not; the
    verdict says whether it is a loss), else a percentage such as ``"42%"``."""
    if ratio is None:
        return ""
    if ratio < 0:
        return "below"
    return f"{ratio + 0.0:.0%}"  # + 0.0: -0.0 prints "0%", not "-0%"


def lis_report(
    rows: Iterable[Mapping[str, Any]], *, min_effect: float = DEFAULT_MIN_EFFECT
) -> list[dict[str, Any]]:
    """Each row with a plain-language verdict from its delta and CI, and the AIS/LIS ratio.

    Args:
        rows: one mapping per variant with ``variant``, ``kind`` (``baseline`` | ``ais`` |
            ``lis``) and, except for the baseline, ``delta``, ``ci_low``, ``ci_high`` (AUC
            difference to the baseline and its 95% CI). LIS rows may give ``leak_kind``
            (``future_id`` | ``similar_items`` | ``next_positive``) and ``horizon_days``; AIS
            rows may give ``feature`` (what they add) and ``upper_bound`` (the LIS variant
            to compare to; default the LIS row with the largest significant gain). Other keys
            pass through unchanged.
        min_effect: smallest |delta| called an effect, even when the CI excludes zero.

    Returns:
        New dicts, in input order, adding ``effect`` (``reference`` | ``gain`` | ``none`` |
        ``loss``), ``significant`` (CI excludes zero), ``verdict`` and, for AIS rows,
        ``upper_bound`` and ``ais_lis_ratio`` (AIS delta / LIS delta; None without a
        positive, significant upper bound).

    Raises:
        ValueError: a row lacks a needed field or holds a bad value (row index, variant and
            field named), variant names repeat, or ``upper_bound`` names no LIS row.
    """
    raw = [dict(r) for r in rows]
    parsed = [_parse(i, r) for i, r in enumerate(raw)]
    names = [p.variant for p in parsed]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DataError("lis_report", f"variant names repeat: {dupes}", field="variant")
    effects = {
        p.variant: ("reference" if p.kind == "baseline" else _effect(p, min_effect)) for p in parsed
    }
    lis = {p.variant: p for p in parsed if p.kind == "lis"}
    gains = [p for p in lis.values() if effects[p.variant] == "gain"]
    best = max(gains, key=lambda p: p.delta).variant if gains else None  # type: ignore[arg-type,return-value]

    out: list[dict[str, Any]] = []
    for i, (p, r) in enumerate(zip(parsed, raw, strict=True)):
        row = dict(r)
        effect = effects[p.variant]
        row["effect"] = effect
        if p.kind == "baseline":
            row["significant"] = False
            row["verdict"] = "reference: the ranker without added features"
        elif p.kind == "lis":
            row["significant"] = p.ci_low > 0 or p.ci_high < 0  # type: ignore[operator]
            row["verdict"] = _lis_verdict(p, effect)
        else:
            if p.upper_bound is not None and p.upper_bound not in lis:
                raise DataError(
                    "lis_report",
                    f"{p.upper_bound!r} is not an LIS row; LIS rows: {sorted(lis)}",
                    record=f"row {i} (variant {p.variant!r})",
                    field="upper_bound",
                )
            upper = p.upper_bound or best
            ratio = None
            if upper is not None and effects[upper] == "gain":
                ratio = p.delta / lis[upper].delta  # type: ignore[operator]
            row["significant"] = p.ci_low > 0 or p.ci_high < 0  # type: ignore[operator]
            row["upper_bound"] = upper
            row["ais_lis_ratio"] = ratio
            row["verdict"] = _ais_verdict(p, effect, ratio, upper)
        out.append(row)
    return out


__all__ = ["DEFAULT_MIN_EFFECT", "lis_report", "ratio_cell"]
