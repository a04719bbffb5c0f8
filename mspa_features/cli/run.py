"""``mspa run CONFIG``: the main job on one config, ending with a results summary."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mspa_features.cli.common import console, counts_table, metric_table, u2a_table

if TYPE_CHECKING:
    from rich.table import Table


def features_table(features: dict[str, Any]) -> Table:
    """Backfill counts per feature set and entity (requested = written + quarantined)."""
    from rich import box
    from rich.table import Table

    t = Table(
        title=f"Features: Spark backfill {features['start']} .. {features['end']} "
        f"({features['cadence']}), registered in Feast",
        title_justify="left",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=0,  # the box's column gap is the only space: no header or entity is cut
    )
    for col in ("set", "entity", "partitions", "requested", "written", "quarantined", "seconds"):
        t.add_column(col, justify="left" if col in ("set", "entity") else "right", no_wrap=True)
    for fs, entities in features["backfill"].items():
        for entity, c in entities.items():
            t.add_row(
                fs,
                entity,
                f"{c['partitions']:,}",
                f"{c['requested']:,}",
                f"{c['written']:,}",
                f"{c['quarantined']:,}",
                f"{c['seconds']:.1f}",
            )
    reg = features["register"]
    t.caption = (
        f"{len(reg['views'])} views, {len(reg['services'])} services; materialized rows: "
        + ", ".join(f"{v} {n:,}" for v, n in reg["materialized_rows"].items())
    )
    s = features.get("sample")
    if s:
        sets = ", ".join(features.get("sampled_sets", [])) or "sampled sets"
        t.caption += (
            f"; {sets}: seeded sample (seed {s['seed']}) of {len(s['users'])} users "
            f"(of {s['eligible_users']} eligible) and {len(s['authors'])} authors"
        )
    return t


def ablation_table(ab: dict[str, Any]) -> Table:
    """AIS (and LIS) rows: AUC, delta AUC vs baseline with its CI and p, the AIS/LIS ratio.

    Verdicts are sentences: :func:`ablation_verdicts` prints them under the table.
    """
    from rich import box
    from rich.table import Table

    w = ab["window"]
    t = Table(
        title=f"AIS / LIS on the ranker: train [{w['train_start'][:10]}, {w['split_at'][:10]}), "
        f"evaluate to {w['eval_end'][:10]}, seeds {ab['seeds']}; delta AUC vs baseline with a "
        "95% paired bootstrap CI over users",
        title_justify="left",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=0,  # the box's column gap is the only space: the 22-character LIS names fit
    )
    ratios = {r["variant"]: r.get("ais_lis_ratio") for r in ab.get("verdicts", [])}
    for col in ("variant", "AUC", "delta", "95% CI", "p", "AIS/LIS"):
        first = col == "variant"
        # never wrapped: a name split over two lines reads as two variants (70 columns)
        t.add_column(col, justify="left" if first else "right", no_wrap=True)
    for v in ab["variants"]:
        base = v["kind"] == "baseline"
        ratio = ratios.get(v["name"])
        p = v["p_value"]
        t.add_row(
            v["name"] + ("*" if v["leaked"] else ""),
            f"{v['auc']:.4f}",
            "" if base else f"{v['delta_auc']:+.4f}",
            "" if base else f"[{v['delta_auc_ci_low']:+.4f},{v['delta_auc_ci_high']:+.4f}]",
            "" if base else ("<0.001" if p < 0.001 else f"{p:.3f}"),
            "" if ratio is None else f"{ratio:.0%}",
        )
    if ab["variants"]:
        n = ab["variants"][0]
        t.caption = (
            f"{n['n_train']:,} training rows, {n['n_test']:,} test rows; * leaked on purpose "
            "(LIS: the upper bound a kind of preference data can reach)"
        )
    return t


def comparison_table(cmp: dict[str, Any]) -> Table:
    """AIS variants per feature set side by side (delta AUC vs one baseline, 95% CI), on the
    comparison's impressions; fits 80 columns for two feature sets."""
    from rich import box
    from rich.table import Table

    s = cmp.get("sample")
    where = (
        f"a seeded sample of {s['users']} users (of {s['eligible_users']} eligible) x "
        f"{s['authors']} authors"
        if s
        else "every impression"
    )
    t = Table(
        title=f"Feature sets side by side on {where}: delta AUC vs baseline, 95% paired "
        "bootstrap CI over users",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    sets = cmp["feature_sets"]
    t.add_column("variant", no_wrap=True)
    for fs in sets:
        t.add_column(fs, justify="right", no_wrap=True)
    cells: dict[str, dict[str, str]] = {}
    base = None
    for v in cmp["variants"]:
        if v["kind"] == "baseline":
            base = v
            continue
        name = v["name"].split("@")[0]
        name = "all" if name == "llm_text" else name
        cells.setdefault(name, {})[v["feature_set"]] = (
            f"{v['delta_auc']:+.4f} [{v['delta_auc_ci_low']:+.4f},{v['delta_auc_ci_high']:+.4f}]"
        )
    for name, by_fs in cells.items():
        t.add_row(name, *(by_fs.get(fs, "") for fs in sets))
    if base is not None:
        t.caption = (
            f"baseline AUC {base['auc']:.4f}; {cmp['n_train']:,} training and "
            f"{cmp['n_test']:,} test impressions, the same for every row; the llm 'all' row is "
            "the llm_text variant"
        )
    return t


def parse_lines(res: dict[str, Any]) -> list[str]:
    """One line per composer: how its preferences, author descriptions and recommendation
    answers parsed (ok / repaired / failed and the parse rate, ok + repaired over all)."""
    from mspa_features.evaluation.composer_eval import parse_rate

    lines = []
    for name, row in res["composers"].items():
        parts = []
        for kind, label in (
            ("preferences", "preferences"),
            ("authors", "author descriptions"),
            ("recommend", "answers"),
        ):
            c = row.get("parse", {}).get(kind)
            rate = parse_rate(c) if c else None
            if rate is None:
                continue
            parts.append(f"{label} {c['ok']}/{c['repaired']}/{c['failed']} ({rate:.1%})")
        if parts:
            decoding = row.get("decoding", "none")
            lines.append(
                f"{name} parse ok/repaired/failed (rate), {decoding} decoding: " + ", ".join(parts)
            )
    return lines


def backfill_notes(features: dict[str, Any]) -> list[str]:
    """The backfill's notes (why rows are missing: nothing in range, no Monday, content after
    the range), one ``note (<feature set> <entity>): <note>`` line each, as ``mspa backfill``
    prints them."""
    return [
        f"note ({fs} {entity}): {note}"
        for fs, entities in features.get("backfill", {}).items()
        for entity, c in entities.items()
        for note in c.get("notes", [])
    ]


def ablation_verdicts(ab: dict[str, Any]) -> list[str]:
    """One plain-language verdict per non-baseline row (when LIS ran)."""
    return [
        f"{r['variant']}: {r['verdict']}"
        for r in ab.get("verdicts", [])
        if r.get("kind") != "baseline" and r.get("verdict")
    ]


def serving_table(p: dict[str, Any]) -> Table:
    """What a ranker receives online for one user and its U2A candidates."""
    from rich.table import Table

    t = Table(
        title=f"What a ranker receives online ({p['service']}) for user {p['user_id']}: "
        f"history_count={p['history_count']}, pref_emb {p['pref_emb_dim']}-d"
        + (f"; read from {p['online_store']}" if p.get("online_store") else ""),
        title_justify="left",
        caption=f"pref_text: {p['pref_text']}",
    )
    for col in ("author_id", "author_text", "pref_author_cosine", "engaged next"):
        t.add_column(col, justify="right" if col == "pref_author_cosine" else "left")
    for c in p["candidates"]:
        text = c["author_text"] or "null"
        t.add_row(
            c["author_id"],
            text if len(text) <= 70 else text[:67] + "...",
            "null" if c["cosine"] is None else f"{c['cosine']:.4f}",
            "yes" if c["target"] else "",
        )
    return t


def run(
    config: Annotated[Path, typer.Argument(help="run config YAML, e.g. configs/movielens.yaml")],
) -> None:
    """Run every stage for CONFIG and print the results table."""
    import time

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    from mspa_features.cli.main_job import run as run_pipeline
    from mspa_features.config import load_config

    cfg = load_config(config)
    t0 = time.perf_counter()
    from rich.table import Column

    with Progress(
        SpinnerColumn(),
        # a long stage name is shortened, never the counts and times beside it (80 columns)
        TextColumn(
            "{task.description}",
            table_column=Column(max_width=40, no_wrap=True, overflow="ellipsis"),
        ),
        BarColumn(bar_width=12),
        MofNCompleteColumn(table_column=Column(no_wrap=True)),
        TimeElapsedColumn(table_column=Column(no_wrap=True)),
        console=console,
        transient=False,
    ) as prog:
        current: dict[str, int] = {}

        def stage(name: str) -> None:
            for tid in current.values():
                prog.update(tid, completed=1, total=1)
            current[name] = prog.add_task(name, total=None)

        steps: dict[str, int] = {}

        def step(what: str, done: int, total: int) -> None:
            if what not in steps:
                steps[what] = prog.add_task(f"  {what}", total=total)
            prog.update(steps[what], completed=done, total=total)

        summary = run_pipeline(cfg, progress=stage, step_progress=step)
        for tid in current.values():
            prog.update(tid, completed=1, total=1)

    console.rule(f"[bold]mspa run: {summary.name}[/] ({summary.dataset})")
    console.print(counts_table("Data contracts: input = accepted + quarantined", summary.counts))
    r = summary.u2a_report
    console.print(
        f"interactions span {summary.data_span[0]} .. {summary.data_span[1]}; "
        f"{summary.n_positives:,} positives\n"
        f"U2A: {r['n_users_in']:,} users in, {r['n_dropped_few_positives']:,} dropped (< "
        f"{cfg.u2a.min_positives} positives), {r['n_dropped_few_negatives']:,} dropped (too few "
        f"negatives), {r['n_users_out']:,} questions (train {r['n_train']:,} / val "
        f"{r['n_val']:,} / test {r['n_test']:,}); A2A: {summary.n_a2a_triples:,} triples",
        highlight=False,
    )
    cols = [f"acc@{m}" for m in cfg.u2a.num_candidates] + [
        "recall@5",
        "ndcg@5",
        "recall@10",
        "ndcg@10",
    ]
    console.print(
        metric_table(
            f"U2A on {r['n_test']:,} test users (non-LLM reference scorers)",
            summary.u2a_metrics,
            cols,
        )
    )
    console.print(
        metric_table(
            "A2A alignment rate", {k: {"a2a": v} for k, v in summary.a2a_metrics.items()}, ["a2a"]
        )
    )
    if summary.composer_eval:
        console.print(u2a_table(summary.composer_eval, cfg.u2a.num_candidates))
        ref = [
            f"{name} "
            + ", ".join(
                f"acc@{m} {row[f'acc@{m}_cohort']:.3f}"
                for m in cfg.u2a.num_candidates
                if f"acc@{m}_cohort" in row
            )
            for name, row in summary.u2a_metrics.items()
            if any(f"acc@{m}_cohort" in row for m in cfg.u2a.num_candidates)
        ]
        if ref:
            console.print(
                f"reference scorers on the same {summary.composer_eval['cohort_users']} users: "
                + "; ".join(ref),
                highlight=False,
            )
        for line in parse_lines(summary.composer_eval):
            console.print(line, highlight=False)
        console.print(
            f"composer stage: {summary.timings_s.get('composers', 0.0):.1f} s",
            highlight=False,
        )
    if summary.features:
        console.print(features_table(summary.features))
        for line in backfill_notes(summary.features):  # why rows one might expect are missing
            console.print(f"  {line}", highlight=False)
    for preview in summary.serving or []:
        console.print(serving_table(preview))
    if summary.ablation:
        console.print(ablation_table(summary.ablation))
        for line in ablation_verdicts(summary.ablation):
            console.print(f"  - {line}", highlight=False)
        for note in summary.ablation["notes"]:
            console.print(f"[yellow]note:[/] {note}")
        cmp = summary.ablation.get("compare")
        if cmp:
            console.print(comparison_table(cmp))
            for note in cmp["notes"]:
                console.print(f"[yellow]note:[/] {note}")
            # soft_wrap: a path is never broken by an inserted newline (copy-paste keeps it)
            console.print(f"comparison -> {cmp['results_path']}", highlight=False, soft_wrap=True)
        console.print(
            f"ablation -> {summary.ablation['results_path']}; MLflow parent run "
            f"{summary.ablation['mlflow_parent_run_id']} ({summary.ablation['tracking_uri']}); "
            "compare two ablations with `mspa runs compare`",
            highlight=False,
            soft_wrap=True,
        )
    console.print(
        f"results -> {Path(cfg.workspace).resolve() / 'results' / summary.name / 'summary.json'}"
        f"   ({time.perf_counter() - t0:.1f} s)",
        highlight=False,
        soft_wrap=True,
    )
