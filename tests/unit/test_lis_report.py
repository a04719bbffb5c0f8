"""lis_report: verdicts from delta and CI, AIS/LIS ratio, errors naming row and field."""

from __future__ import annotations

import pytest

from ranker_hooks.lis.verdicts import lis_report, ratio_cell

ROWS = [
    {"variant": "baseline", "kind": "baseline", "auc": 0.71},
    {"variant": "all__llm", "kind": "ais", "feature": "MSPA embeddings", "delta": 0.003,
     "ci_low": 0.001, "ci_high": 0.005, "auc": 0.713},
    {"variant": "lis_id_n7", "kind": "lis", "leak_kind": "future_id", "horizon_days": 7,
     "delta": 0.02, "ci_low": 0.015, "ci_high": 0.025},
    {"variant": "lis_id_n30", "kind": "lis", "leak_kind": "future_id", "horizon_days": 30,
     "delta": 0.03, "ci_low": 0.024, "ci_high": 0.036},
    {"variant": "lis_sim_n30", "kind": "lis", "leak_kind": "similar_items", "horizon_days": 30,
     "delta": 0.0004, "ci_low": -0.001, "ci_high": 0.0018},
]  # fmt: skip


def by_variant(rows):
    return {r["variant"]: r for r in rows}


def test_verdicts_follow_delta_and_ci() -> None:
    out = by_variant(lis_report(ROWS))
    assert out["baseline"]["effect"] == "reference"
    assert out["lis_id_n7"]["effect"] == "gain" and out["lis_id_n7"]["significant"]
    assert (
        "ID embeddings from 7 days ahead carry information the ranker lacks"
        in (out["lis_id_n7"]["verdict"])
    )
    assert "+0.0200" in out["lis_id_n7"]["verdict"]
    sim = out["lis_sim_n30"]
    assert sim["effect"] == "none" and not sim["significant"]
    assert sim["verdict"].startswith("Similar-item side information (30-day posterior")
    assert "does not add information the ranker lacks" in sim["verdict"]
    assert out["all__llm"]["effect"] == "gain"
    assert out["all__llm"]["auc"] == 0.713  # other keys pass through


def test_ais_lis_ratio_against_best_or_named_upper_bound() -> None:
    out = by_variant(lis_report(ROWS))
    # Default: the largest significant LIS (n=30).
    assert out["all__llm"]["upper_bound"] == "lis_id_n30"
    assert out["all__llm"]["ais_lis_ratio"] == pytest.approx(0.1)
    assert "10% of the LIS upper bound" in out["all__llm"]["verdict"]
    rows = [dict(r) for r in ROWS]
    rows[1]["upper_bound"] = "lis_id_n7"
    assert by_variant(lis_report(rows))["all__llm"]["ais_lis_ratio"] == pytest.approx(0.15)
    # An upper bound with no significant gain gives no ratio.
    rows[1]["upper_bound"] = "lis_sim_n30"
    assert by_variant(lis_report(rows))["all__llm"]["ais_lis_ratio"] is None


def test_significant_but_tiny_and_negative_effects() -> None:
    rows = [
        {"variant": "tiny", "kind": "lis", "leak_kind": "next_positive", "horizon_days": 7,
         "delta": 0.0004, "ci_low": 0.0001, "ci_high": 0.0007},
        {"variant": "worse", "kind": "ais", "delta": -0.01, "ci_low": -0.02, "ci_high": -0.004},
    ]  # fmt: skip
    out = by_variant(lis_report(rows))
    assert out["tiny"]["significant"] and out["tiny"]["effect"] == "none"
    assert out["worse"]["effect"] == "loss" and "hurts the ranker" in out["worse"]["verdict"]
    assert out["worse"]["ais_lis_ratio"] is None
    assert by_variant(lis_report(rows, min_effect=0.0001))["tiny"]["effect"] == "gain"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"kind": "lis", "delta": None}, r"row 1 \(variant 'x'\) field 'delta'"),
        ({"kind": "oops"}, r"row 1 \(variant 'x'\) field 'kind'"),
        ({"ci_low": 0.5, "ci_high": 0.1}, r"row 1 \(variant 'x'\) field 'ci_low'"),
        ({"upper_bound": "nope"}, r"row 1 \(variant 'x'\) field 'upper_bound'.*lis_id_n7"),
        ({"delta": float("nan")}, r"field 'delta'"),
    ],
)
def test_bad_rows_name_row_and_field(bad: dict, message: str) -> None:
    row = {"variant": "x", "kind": "ais", "delta": 0.1, "ci_low": 0.0, "ci_high": 0.2, **bad}
    with pytest.raises(ValueError, match=message):
        lis_report([ROWS[2], row])


def test_repeated_variant_names_are_refused() -> None:
    with pytest.raises(ValueError, match="repeat"):
        lis_report([ROWS[0], ROWS[0]])


def test_ais_below_baseline_says_it_realises_none_of_the_upper_bound() -> None:
    # The run's rows: preference -0.0048 (significant loss), cosine -0.0010 (CI spans zero).
    rows = [dict(r) for r in ROWS]
    rows[1].update(delta=-0.0048, ci_low=-0.0083, ci_high=-0.0018)
    rows.append({"variant": "cosine", "kind": "ais", "delta": -0.001, "ci_low": -0.0038,
                 "ci_high": 0.0013})  # fmt: skip
    out = by_variant(lis_report(rows))
    for name in ("all__llm", "cosine"):
        verdict = out[name]["verdict"]
        assert "realises none of the LIS upper bound of 'lis_id_n30'" in verdict, verdict
        assert "not meaningful for a loss" in verdict and "realises -" not in verdict
    assert out["all__llm"]["ais_lis_ratio"] == pytest.approx(-0.16)  # the number stays in data
    assert "hurts the ranker" in out["all__llm"]["verdict"]
    assert "shows no measurable gain" in out["cosine"]["verdict"]


def test_ratio_cell_prints_a_share_only_for_a_gain() -> None:
    # every table (main job, `mspa lis` rich and markdown) renders the column through it
    assert ratio_cell(None) == ""
    assert ratio_cell(0.4249) == "42%"
    assert ratio_cell(0.0) == ratio_cell(-0.0) == "0%"
    assert ratio_cell(-0.16) == ratio_cell(-0.001) == "below"  # a loss or not: never "-16%"
