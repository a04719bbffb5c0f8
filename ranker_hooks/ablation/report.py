"""Ablation reports: comparison table (CSV + markdown), delta-AUC plot, rich tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from rich.markup import escape
from rich.table import Table

from ranker_hooks.ablation.results import (
    COLUMNS,
    DELTA_CIS,
    SCORE_PREFIX,
    TASK_METRICS,
    AblationResult,
)


def comparison_frame(result: AblationResult) -> pd.DataFrame:
    """One row per variant with the contract columns, in run order."""
    rows = []
    for v in result.variants:
        row = {c: getattr(v, c) for c in COLUMNS if c != "variant"}
        rows.append(
            {
                "variant": v.name,
                **row,
                "description": v.description,
                "ci_note": ci_note(v.n_users_both_labels),
            }
        )
    return pd.DataFrame(rows, columns=[*COLUMNS, "description", "ci_note"])


def task_frame(result: AblationResult) -> pd.DataFrame:
    """One row per (task, variant) of a multi-task ablation with its TASK_METRICS; empty
    for a single-task one."""
    rows = [
        {"task": task, "variant": v.name, "kind": v.kind, **{k: values[k] for k in TASK_METRICS}}
        for v in result.variants
        for task, values in v.tasks.items()
    ]
    frame = pd.DataFrame(rows, columns=["task", "variant", "kind", *TASK_METRICS])
    # Task by task, variants in run order (a stable sort keeps the run order inside a task).
    order = {t: i for i, t in enumerate(dict.fromkeys(frame["task"]))}
    return frame.sort_values("task", key=lambda c: c.map(order), kind="stable").reset_index(
        drop=True
    )


def delta_auc_plot(frame: pd.DataFrame, path: Path, title: str = "") -> Path:
    """Horizontal bars of delta AUC vs baseline with the 95 % bootstrap CI as error bars."""
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on CI machines
    import matplotlib.pyplot as plt

    f = frame[frame["kind"] != "baseline"]
    fig, ax = plt.subplots(figsize=(6.4, 0.5 * max(len(f), 1) + 1.4))
    y = range(len(f))
    delta = f["delta_auc"].to_numpy(dtype=float)
    # (2, n) distances below and above, as matplotlib wants; a percentile CI need not hold
    # the point estimate, and matplotlib refuses negative error lengths.
    err = np.maximum(
        [
            delta - f["delta_auc_ci_low"].to_numpy(dtype=float),
            f["delta_auc_ci_high"].to_numpy(dtype=float) - delta,
        ],
        0.0,
    )
    colors = ["tab:red" if leaked else "tab:blue" for leaked in f["leaked"]]
    ax.barh(list(y), delta, xerr=err, color=colors, alpha=0.8, capsize=4)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_yticks(list(y), f["variant"])
    ax.invert_yaxis()
    ax.set_xlabel("delta AUC vs baseline (95 % paired bootstrap CI over users)")
    ax.set_title(title or "AIS/LIS ablation")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_reports(result: AblationResult, folder: Path) -> dict[str, Path]:
    """``comparison.csv``, ``comparison.md`` and ``delta_auc.png`` under ``folder``."""
    folder = Path(folder)
    frame = comparison_frame(result)
    paths = {
        "csv": folder / "comparison.csv",
        "markdown": folder / "comparison.md",
        "plot": folder / "delta_auc.png",
    }
    frame.to_csv(paths["csv"], index=False)
    md = frame.to_markdown(index=False, floatfmt=".4f")
    tasks = task_frame(result)
    if len(tasks):
        paths["tasks_csv"] = folder / "tasks.csv"
        tasks.to_csv(paths["tasks_csv"], index=False)
        md += "\n\n## Per task\n\n" + tasks.to_markdown(index=False, floatfmt=".4f")
    notes = "".join(f"\n- {n}" for n in result.notes)
    paths["markdown"].write_text(
        f"# Ablation {result.run_name}\n\nwindow: {result.window}, seeds: {result.seeds}\n\n"
        f"{md}\n{notes}\n",
        encoding="utf-8",
    )
    delta_auc_plot(frame, paths["plot"], title=result.run_name)
    return paths


def _style(lo: float, hi: float) -> str:
    return "green" if lo > 0 else "red" if hi < 0 else ""


def ais_table(result: AblationResult) -> Table:
    """The AIS/LIS table: metrics per variant and delta AUC with its CI and p-value.

    Fits 80 columns without cutting a number or wrapping a variant name: the baseline is the
    first row, leaked (LIS) variants carry a ``*``, row counts go to the caption, a CI that
    excludes 0 is coloured. Logloss and wpAUC (and their deltas) are in :func:`delta_table`
    and ``comparison.md``: with them the longest LIS names no longer fit.
    """
    from rich import box

    from mspa_features.evaluation.metrics import MIN_USERS_FOR_CI

    first = result.variants[0] if result.variants else None
    caption = f"train {first.n_train:,} rows, eval {first.n_test:,} rows" if first else ""
    # Results written before this field existed load it as 0: no flag for them.
    few = [v for v in result.variants if 0 < v.n_users_both_labels < MIN_USERS_FOR_CI]
    if few:
        n = min(v.n_users_both_labels for v in few)
        caption += (
            f"; ! only {n} eval users with both labels (< {MIN_USERS_FOR_CI}): the intervals "
            "are not trustworthy"
        )
    if any(v.leaked for v in result.variants):
        caption += "; * LIS: leaked (future) features, an upper bound, not a deployable gain"
    t = Table(
        title=f"ablation {escape(result.run_name)}: train < {result.window['split_at'][:10]} <= "
        f"eval < {result.window['eval_end'][:10]}, seeds {result.seeds}",
        title_justify="left",
        caption=caption,
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        padding=0,  # the box puts one space between columns: 22-character names + 6 numbers fit
        collapse_padding=True,
        pad_edge=False,
    )
    for col in ("variant", "auc", "uauc", "gauc", "Δauc", "95% CI", "p"):
        left = col == "variant"
        # no_wrap everywhere: a wrapped CI or name misreads; ellipsis never cuts at 80 columns
        # (22-character LIS names + 6 numeric columns = 76)
        t.add_column(col, justify="left" if left else "right", no_wrap=True)
    for v in result.variants:
        if v.kind == "baseline":
            delta, ci, p = "-", "-", "-"
        else:
            style = _style(v.delta_auc_ci_low, v.delta_auc_ci_high)
            delta = f"[{style}]{v.delta_auc:+.4f}[/]" if style else f"{v.delta_auc:+.4f}"
            ci = f"[{v.delta_auc_ci_low:+.4f},{v.delta_auc_ci_high:+.4f}]"
            if v in few:
                ci += "!"
            p = f"{v.p_value:.3f}"
        t.add_row(
            escape(f"{v.name}*" if v.leaked else v.name),
            f"{v.auc:.4f}",
            f"{v.uauc:.4f}",
            f"{v.gauc:.4f}",
            delta,
            ci,
            p,
        )
    return t


#: What a row whose interval rests on too few users says (:func:`ci_note`).
UNTRUSTED = "not trustworthy"


def ci_note(n_users_both_labels: int) -> str:
    """``""``, or why a CI resting on ``n_users_both_labels`` users is not to be trusted
    (fewer than :data:`~mspa_features.evaluation.metrics.MIN_USERS_FOR_CI`; 0, results written
    before the count existed, says nothing)."""
    from mspa_features.evaluation.metrics import MIN_USERS_FOR_CI

    if 0 < n_users_both_labels < MIN_USERS_FOR_CI:
        return (
            f"CI {UNTRUSTED}: {n_users_both_labels} users with both labels (< {MIN_USERS_FOR_CI})"
        )
    return ""


def delta_table(result: AblationResult) -> Table:
    """Every delta against the baseline with its 95 % paired bootstrap CI over users (AUC,
    UAUC, GAUC, logloss, wpAUC: one resample of users for all), p for delta AUC; a row whose
    CI rests on too few users says it is not trustworthy. Fits 80 columns."""
    from rich import box

    from mspa_features.evaluation.metrics import MIN_USERS_FOR_CI

    t = Table(
        title=f"deltas vs baseline: {escape(result.run_name)}",
        title_justify="left",
        caption=f"! {UNTRUSTED}: fewer than {MIN_USERS_FOR_CI} eval users with both labels; "
        "a lower logloss is better",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
    )
    for col in ("variant", "metric", "Δ", "95% CI", "p", "note"):
        left = col in ("variant", "metric", "note")
        t.add_column(
            col,
            justify="left" if left else "right",
            no_wrap=col not in ("variant", "note"),
            overflow="fold",
            min_width=10 if col == "variant" else None,
        )
    for v in result.variants:
        if v.kind == "baseline":
            continue
        flag = "! " + UNTRUSTED if ci_note(v.n_users_both_labels) else ""
        for i, (m, delta, low, high) in enumerate(DELTA_CIS):
            d, lo, hi = (float(getattr(v, k)) for k in (delta, low, high))
            # A lower logloss is the better direction: colour it the other way round.
            style = _style(-hi, -lo) if m == "logloss" else _style(lo, hi)
            text = "-" if np.isnan(d) else f"{d:+.4f}"
            t.add_row(
                escape(f"{v.name}*" if v.leaked else v.name) if i == 0 else "",
                m,
                f"[{style}]{text}[/]" if style else text,
                "-" if np.isnan(lo) else f"[{lo:+.4f}, {hi:+.4f}]",
                f"{v.p_value:.3f}" if m == "auc" else "",
                flag,
                end_section=i == len(DELTA_CIS) - 1,
            )
    return t


def task_tables(result: AblationResult) -> list[Table]:
    """One table per task of a multi-task ablation (none for a single-task one): AUC, UAUC
    and GAUC per variant, each with its delta against the baseline and the 95 % paired
    bootstrap CI over users; p is the delta AUC's. Fits 80 columns."""
    from rich import box

    tables = []
    frame = task_frame(result)
    for task in dict.fromkeys(frame["task"]):
        t = Table(
            title=f"task {escape(str(task))}: {escape(result.run_name)}",
            title_justify="left",
            box=box.SIMPLE_HEAD,
            collapse_padding=True,
            pad_edge=False,
        )
        for col in ("variant", "metric", "value", "Δ", "95% CI", "p"):
            left = col in ("variant", "metric")
            t.add_column(
                col,
                justify="left" if left else "right",
                no_wrap=col != "variant",
                overflow="fold",
                min_width=10 if col == "variant" else None,
            )
        for r in frame[frame["task"] == task].to_dict("records"):
            for i, m in enumerate(("auc", "uauc", "gauc")):
                name = escape(str(r["variant"])) if i == 0 else ""
                if r["kind"] == "baseline":
                    delta, ci, p = "-", "-", "-"
                else:
                    lo, hi = r[f"delta_{m}_ci_low"], r[f"delta_{m}_ci_high"]
                    style = _style(lo, hi)
                    d = f"{r[f'delta_{m}']:+.4f}"
                    delta = f"[{style}]{d}[/]" if style else d
                    ci = f"[{lo:+.4f}, {hi:+.4f}]"
                    p = f"{r['p_value']:.3f}" if m == "auc" else ""
                t.add_row(name, m, f"{r[m]:.4f}", delta, ci, p, end_section=m == "gauc")
        tables.append(t)
    return tables


def compare_frames(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Variants of two ablations side by side: AUC and delta AUC of each, and B - A."""
    cols = ["variant", "kind", "auc", "delta_auc", "p_value"]
    m = a[cols].merge(b[cols], on=["variant"], how="outer", suffixes=("_a", "_b"), sort=False)
    # Outer merges sort their keys: keep A's run order, then B's own variants.
    order = list(dict.fromkeys([*a["variant"], *b["variant"]]))
    m = m.set_index("variant").loc[order].reset_index()
    m["kind"] = m["kind_a"].fillna(m["kind_b"])
    m["auc_b_minus_a"] = m["auc_b"] - m["auc_a"]
    return m[
        [
            "variant",
            "kind",
            "auc_a",
            "auc_b",
            "auc_b_minus_a",
            "delta_auc_a",
            "delta_auc_b",
            "p_value_a",
            "p_value_b",
        ]
    ]


#: The columns two ablations' eval rows must agree on to be paired.
ROW_KEYS = ("user_id", "author_id", "event_timestamp", "label")


def paired_compare(
    pred_a: pd.DataFrame, pred_b: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0
) -> tuple[pd.DataFrame, str | None]:
    """B - A for every variant both ablations ran, with a paired user bootstrap CI over the
    stored eval rows (``predictions.parquet``), when the two runs scored the same rows.

    Returns:
        (one row per variant and metric: delta, ci_low, ci_high, p for AUC, note), and None;
        or an empty frame and the reason no CI is given (the rows differ).
    """
    from mspa_features.evaluation.metrics import paired_bootstrap_deltas, users_with_both_labels

    cols = ["variant", "metric", "delta", "ci_low", "ci_high", "p_value", "note"]
    keys = list(ROW_KEYS)
    a = pred_a.sort_values(keys, kind="stable").reset_index(drop=True)
    b = pred_b.sort_values(keys, kind="stable").reset_index(drop=True)
    if len(a) != len(b) or not a[keys].equals(b[keys]):
        shared = len(a[keys].merge(b[keys].drop_duplicates(), on=keys))
        return pd.DataFrame(columns=cols), (
            f"the test rows do not match (A {len(a):,} rows, B {len(b):,}, {shared:,} of A's "
            "in B): no paired CI for B - A"
        )
    labels, users = a["label"].to_numpy(), a["user_id"].astype(str).to_numpy()
    note = ci_note(users_with_both_labels(labels, users))
    rows = []
    for col in [c for c in a.columns if c.startswith(SCORE_PREFIX) and c in b.columns]:
        boot = paired_bootstrap_deltas(
            labels,
            a[col].to_numpy(),
            b[col].to_numpy(),
            users,
            metrics=[m for m, *_ in DELTA_CIS],
            n_boot=n_boot,
            seed=seed,
        )
        for m, r in boot.items():
            p = r.p_value if m == "auc" else float("nan")
            rows.append([col[len(SCORE_PREFIX) :], m, r.delta, r.ci_low, r.ci_high, p, note])
    return pd.DataFrame(rows, columns=cols), None


def paired_compare_table(name_a: str, name_b: str, frame: pd.DataFrame) -> Table:
    """Rich rendering of :func:`paired_compare`: B - A per variant and metric with its CI."""
    t = Table(
        title=f"B - A with 95 % paired user bootstrap CIs (A = {escape(name_a)}, "
        f"B = {escape(name_b)})",
        title_justify="left",
        box=None,
        pad_edge=False,
        header_style="bold underline",
    )
    for col in ("variant", "metric", "B - A", "95% CI", "p", "note"):
        left = col in ("variant", "metric", "note")
        t.add_column(col, justify="left" if left else "right", overflow="fold")
    last = None
    for r in frame.itertuples(index=False):
        na = pd.isna(r.delta)
        t.add_row(
            escape(str(r.variant)) if r.variant != last else "",
            str(r.metric),
            "-" if na else f"{r.delta:+.4f}",
            "-" if pd.isna(r.ci_low) else f"[{r.ci_low:+.4f}, {r.ci_high:+.4f}]",
            "" if pd.isna(r.p_value) else f"{r.p_value:.3f}",
            ("! " + UNTRUSTED) if r.note else "",
        )
        last = r.variant
    return t


def compare_table(name_a: str, name_b: str, frame: pd.DataFrame) -> Table:
    """Rich rendering of :func:`compare_frames` that fits 80 columns without cutting a number.

    No vertical rules; numbers never wrap or shrink (each column is as wide as its widest
    value); leaked (LIS) variants carry a ``*`` instead of a kind column; a long variant name
    folds onto a second line rather than being cut, as the row key it is.
    """

    def f(x: float, sign: bool = False, digits: int = 4) -> str:
        if pd.isna(x):
            return "-"
        return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"

    rows = [
        [
            # Run names and variants are user text: escaped, or "[x]" would be rich markup.
            escape(str(r.variant)) + ("*" if str(r.kind) == "lis" else ""),
            f(r.auc_a),
            f(r.auc_b),
            f(r.auc_b_minus_a, True),
            f(r.delta_auc_a, True),
            f(r.delta_auc_b, True),
            f(r.p_value_a, digits=3),
            f(r.p_value_b, digits=3),
        ]
        for r in frame.itertuples(index=False)
    ]
    leaked = any(str(k) == "lis" for k in frame["kind"])
    t = Table(
        title=f"A = {escape(name_a)}   B = {escape(name_b)}",
        title_justify="left",
        caption="* leaked (LIS) variant" if leaked else None,
        caption_justify="left",
        box=None,  # two spaces between columns: the room a rule would take goes to names
        pad_edge=False,
        header_style="bold underline",
    )
    heads = ["variant", "auc A", "auc B", "B - A", "Δauc A", "Δauc B", "p A", "p B"]
    for i, h in enumerate(heads):
        if i == 0:
            t.add_column(h, justify="left", overflow="fold", min_width=8)
            continue
        width = max([len(h), *(len(r[i]) for r in rows)])
        t.add_column(h, justify="right", no_wrap=True, min_width=width)
    for r in rows:
        t.add_row(*r)
    return t


__all__ = [
    "ais_table",
    "ci_note",
    "compare_frames",
    "compare_table",
    "comparison_frame",
    "delta_auc_plot",
    "delta_table",
    "paired_compare",
    "paired_compare_table",
    "task_frame",
    "task_tables",
    "write_reports",
]
