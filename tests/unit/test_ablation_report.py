"""Ablation reports: comparison of two runs, the AIS table, CSV/markdown/plot files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from ranker_hooks.ablation.report import ais_table, compare_frames, write_reports
from ranker_hooks.ablation.run import AblationResult, VariantResult


def row(name: str, kind: str, auc: float, delta: float, lo: float, hi: float) -> VariantResult:
    return VariantResult(
        name=name, kind=kind, leaked=kind == "lis", auc=auc, uauc=auc - 0.01, gauc=auc - 0.02,
        logloss=0.6, wpauc=0.2, delta_auc=delta, delta_auc_ci_low=lo, delta_auc_ci_high=hi,
        p_value=0.01 if lo > 0 else 0.5, n_train=100, n_test=40, description=name,
    )  # fmt: skip


def result(tmp: Path) -> AblationResult:
    return AblationResult(
        run_name="r1",
        variants=[
            row("baseline", "baseline", 0.70, 0.0, 0.0, 0.0),
            row("all", "ais", 0.71, 0.01, 0.004, 0.02),
            row("odd_ci", "ais", 0.70, 0.01, 0.012, 0.02),  # estimate below its percentile CI
            row("lis_future_id", "lis", 0.75, 0.05, 0.03, 0.07),
        ],
        results_path=tmp / "results.json",
        parent_run_id="p",
        tracking_uri="sqlite:///x.db",
        window={"train_start": "first", "split_at": "1998-03-01T00:00:00+00:00",
                "eval_end": "1998-04-30T00:00:00+00:00"},
        seeds=[0, 1],
        notes=["variant llm_text skipped"],
    )  # fmt: skip


def test_compare_keeps_run_order_and_subtracts() -> None:
    a = pd.DataFrame(
        {"variant": ["baseline", "zeta", "all"], "kind": ["baseline", "ais", "ais"],
         "auc": [0.70, 0.72, 0.71], "delta_auc": [0.0, 0.02, 0.01], "p_value": [1.0, 0.1, 0.2]}
    )  # fmt: skip
    b = pd.DataFrame(
        {"variant": ["baseline", "lis"], "kind": ["baseline", "lis"], "auc": [0.69, 0.80],
         "delta_auc": [0.0, 0.11], "p_value": [1.0, 0.0]}
    )  # fmt: skip
    m = compare_frames(a, b)
    assert list(m["variant"]) == ["baseline", "zeta", "all", "lis"]
    assert list(m["kind"]) == ["baseline", "ais", "ais", "lis"]
    assert m.loc[0, "auc_b_minus_a"] == pytest.approx(-0.01)
    assert m["auc_b_minus_a"].isna().tolist() == [False, True, True, True]


def test_reports_and_table(tmp_path) -> None:
    res = result(tmp_path)
    paths = write_reports(res, tmp_path)
    csv = pd.read_csv(paths["csv"])
    assert list(csv["variant"]) == ["baseline", "all", "odd_ci", "lis_future_id"]
    assert csv.loc[3, "leaked"] and csv.loc[1, "delta_auc_ci_low"] == pytest.approx(0.004)
    md = paths["markdown"].read_text()
    assert "| lis_future_id" in md and "variant llm_text skipped" in md
    assert paths["plot"].read_bytes()[:4] == b"\x89PNG"
    console = Console(width=200, record=True)
    console.print(ais_table(res))
    text = console.export_text()
    assert "+0.0100" in text and "[+0.0040,+0.0200]" in text
    assert "train 100 rows, eval 40 rows" in text
    assert "lis_future_id*" in text and "* LIS: leaked" in text and "1998-03-01" in text


def test_ais_table_fits_80_columns_and_never_cuts_a_number(tmp_path) -> None:
    import dataclasses
    import io

    res = result(tmp_path)
    long = [
        dataclasses.replace(v, name="lis_similar_items_n30", leaked=True, kind="lis")
        if v.leaked
        else v
        for v in res.variants
    ]
    res = dataclasses.replace(res, variants=long)
    out = io.StringIO()
    Console(file=out, width=80, color_system=None).print(ais_table(res))
    lines = out.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80 and "…" not in out.getvalue()
    rows = {ln.split()[0]: ln for ln in lines if ln.strip()[:1].isalpha()}
    # every variant's row is one line holding its name, delta and whole CI
    assert "lis_similar_items_n30*" in rows
    assert "[+0.0040,+0.0200]" in rows["all"] and "+0.0100" in rows["all"]


def test_compare_table_fits_80_columns_and_never_cuts_a_number() -> None:
    import io

    from rich.console import Console

    from ranker_hooks.ablation.report import compare_frames, compare_table

    names = ["baseline", "preference", "lis_similar_items_n30", "lis_future_id_n7"]
    kinds = ["baseline", "ais", "lis", "lis"]

    def frame(auc: list[float], delta: list[float], p: list[float]) -> pd.DataFrame:
        return pd.DataFrame(
            {"variant": names, "kind": kinds, "auc": auc, "delta_auc": delta, "p_value": p}
        )

    a = frame([0.523392, 0.451, 0.648612, 0.7], [0.0, -0.072392, 0.125, 0.2], [1, 0.48, 0.04, 0])
    b = frame([0.528301, 0.4889, 0.741534, 0.71], [0.0, -0.039401, 0.213, 0.18], [1, 0.9, 0, 0])
    out = io.StringIO()
    Console(file=out, width=80, color_system=None).print(
        compare_table("bob's ais, v2", "it's [b]", compare_frames(a, b))
    )
    text = out.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text
    for number in ("0.5234", "0.5283", "+0.0049", "-0.0724", "-0.0394", "+0.2130", "0.480"):
        assert number in text, number
    assert "preference " in text and "lis_similar_items_n30*" in text.replace("\n", "")
    assert "* leaked (LIS) variant" in text
    assert "A = bob's ais, v2   B = it's [b]" in text


def test_small_eval_samples_flag_their_intervals(tmp_path) -> None:
    import dataclasses

    from mspa_features.evaluation.metrics import MIN_USERS_FOR_CI, users_with_both_labels

    # 3 users: u1 both labels, u2 only positives, u3 both; u4 one row
    labels = [1, 0, 1, 1, 0, 0, 1, 1]
    users = ["u1", "u1", "u2", "u2", "u3", "u3", "u3", "u4"]
    assert users_with_both_labels(labels, users) == 2
    assert users_with_both_labels([], []) == 0

    res = result(tmp_path)
    flagged = dataclasses.replace(
        res, variants=[dataclasses.replace(v, n_users_both_labels=3) for v in res.variants]
    )
    console = Console(width=200, record=True)
    console.print(ais_table(flagged))
    text = console.export_text()
    assert "[+0.0040,+0.0200]!" in text
    words = " ".join(text.split())  # the caption wraps at the table's width
    assert f"only 3 eval users with both labels (< {MIN_USERS_FOR_CI})" in words
    enough = dataclasses.replace(
        res,
        variants=[
            dataclasses.replace(v, n_users_both_labels=MIN_USERS_FOR_CI) for v in res.variants
        ],
    )
    console = Console(width=200, record=True)
    console.print(ais_table(enough))
    text = console.export_text()
    assert "]!" not in text and "not trustworthy" not in text


def _predictions(n_users: int, shift: float = 0.0, seed: int = 0) -> pd.DataFrame:
    import numpy as np

    rng = np.random.default_rng(seed)
    users = np.repeat([f"u{i}" for i in range(n_users)], 6)
    y = np.tile([1, 0, 0, 1, 0, 0], n_users)
    s = np.clip(0.5 + 0.2 * (y - 0.5) + rng.normal(0, 0.1, y.size), 0.01, 0.99)
    return pd.DataFrame(
        {
            "user_id": users,
            "author_id": [f"a{i}" for i in range(y.size)],
            "event_timestamp": pd.Timestamp("2024-01-01", tz="UTC"),
            "label": y,
            "score:baseline": s,
            "score:all": np.clip(s + shift, 0.0, 1.0),
        }
    )


def test_paired_compare_matching_rows_identical_scores_give_zero_ci():
    from ranker_hooks.ablation.report import paired_compare, paired_compare_table

    a = _predictions(40)
    frame, reason = paired_compare(a, a.sample(frac=1.0, random_state=1), n_boot=50)
    assert reason is None
    assert set(frame["variant"]) == {"baseline", "all"}
    assert set(frame["metric"]) == {"auc", "uauc", "gauc", "logloss", "wpauc"}
    assert (frame[["delta", "ci_low", "ci_high"]] == 0.0).all().all()
    assert (frame["note"] == "").all()  # 40 users with both labels: enough
    console = Console(width=100, record=True)
    console.print(paired_compare_table("A", "B", frame))
    assert "[+0.0000, +0.0000]" in console.export_text()


def test_paired_compare_small_sample_says_not_trustworthy():
    from ranker_hooks.ablation.report import paired_compare, paired_compare_table

    a, b = _predictions(3), _predictions(3, shift=0.05)
    frame, reason = paired_compare(a, b, n_boot=50)
    assert reason is None
    assert frame["note"].str.contains("not trustworthy: 3 users").all()
    console = Console(width=100, record=True)
    console.print(paired_compare_table("A", "B", frame))
    assert "! not trustworthy" in console.export_text()


def test_paired_compare_refuses_rows_that_do_not_match():
    from ranker_hooks.ablation.report import paired_compare

    a = _predictions(10)
    b = a.iloc[:-6]
    frame, reason = paired_compare(a, b)
    assert frame.empty
    assert reason == (
        "the test rows do not match (A 60 rows, B 54, 54 of A's in B): no paired CI for B - A"
    )
    c = a.assign(label=1 - a["label"])  # the same rows, other labels
    _, reason = paired_compare(a, c)
    assert reason is not None and "0 of A's in B" in reason


def test_delta_table_prints_every_delta_and_flags_few_users(tmp_path):
    import dataclasses

    from ranker_hooks.ablation.report import delta_table

    res = result(tmp_path)
    few = dataclasses.replace(
        res, variants=[dataclasses.replace(v, n_users_both_labels=3) for v in res.variants]
    )
    console = Console(width=80, record=True)
    console.print(delta_table(few))
    text = console.export_text()
    for m in ("uauc", "gauc", "logloss", "wpauc"):
        assert m in text
    assert text.count("! not trustworthy") == 5 * (len(res.variants) - 1) + 1  # + caption
    frame = pd.read_csv(write_reports(few, tmp_path)["csv"])
    assert frame["ci_note"].str.startswith("CI not trustworthy: 3 users").all()
    assert {"delta_logloss_ci_low", "delta_wpauc_ci_high"} <= set(frame.columns)
