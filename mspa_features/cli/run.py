"""``mspa run CONFIG``: the main job on one config, ending with a results summary."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mspa_features.cli.common import (
    STEP_DETAIL,
    console,
    counts_table,
    entity_label,
    metric_table,
    print_path,
    print_wrapped,
    u2a_table,
)

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID
    from rich.table import Table

    from mspa_features.cli.main_job import RunSummary
    from mspa_features.config import RunConfig


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
    parsed = [
        f"{fs} {entity_label(entity)} "
        f"{'/'.join(str(c['status'].get(k, 0)) for k in ('ok', 'repaired', 'failed'))}"
        + (f" ({', '.join(sorted(c['decoding']))})" if c.get("decoding") else "")
        for fs, entities in features["backfill"].items()
        for entity, c in entities.items()
        if "none" not in c.get("decoding", {"none": 0})  # LLM-written sets only
    ]
    if parsed:
        t.caption += "; rows ok/repaired/failed: " + ", ".join(parsed)
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

    from ranker_hooks.lis.verdicts import ratio_cell

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
            ratio_cell(ratio),
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
        caption_justify="left",
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


#: The header :func:`parse_lines` are printed under.
PARSE_HEADER = "parse ok/repaired/failed (rate), ok + repaired over all:"


def parse_lines(res: dict[str, Any]) -> list[str]:
    """One line per composer: how its preferences and author descriptions parsed (a composer
    that decodes nothing, the template, says it composes without an LLM) and how the LLM's
    recommendation answers parsed, each ``ok/repaired/failed (rate)``."""
    from mspa_features.evaluation.composer_eval import parse_rate

    lines = []
    for name, row in res["composers"].items():
        texts: list[str] = []
        answers: list[str] = []
        for kind, label in (
            ("preferences", "preferences"),
            ("authors", "author descriptions"),
            ("recommend", "LLM answers"),
        ):
            c = row.get("parse", {}).get(kind)
            rate = parse_rate(c) if c else None
            if rate is None:
                continue
            if kind == "recommend" and row.get("answer_decoding", "none") != "none":
                label += f" ({row['answer_decoding']} decoding)"
            part = f"{label} {c['ok']}/{c['repaired']}/{c['failed']} ({rate:.1%})"
            (answers if kind == "recommend" else texts).append(part)
        if texts or answers:
            decoding = row.get("decoding", "none")
            who = "composed without an LLM" if decoding == "none" else f"{decoding} decoding"
            parts = [", ".join(texts)] if texts else []
            lines.append(f"{name} ({who}): " + "; ".join(parts + answers))
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


#: Widest stage or step name beside the bar: spinner, bar, counts up to ``9999/9999`` and the
#: time fill the rest of 80 columns (1 + 44 + 12 + 9 + 7, a space between each). The main
#: job's names fit; a longer one is shortened with an ellipsis.
NAME_WIDTH = 44


def progress_display(out: Console) -> Progress:
    """The main job's progress display on ``out``: name, bar, done/total, elapsed time."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.table import Column

    return Progress(
        SpinnerColumn(),
        # a long stage name is shortened, never the counts and times beside it (80 columns)
        TextColumn(
            "{task.description}",
            table_column=Column(max_width=NAME_WIDTH, no_wrap=True, overflow="ellipsis"),
        ),
        BarColumn(bar_width=12),
        MofNCompleteColumn(table_column=Column(no_wrap=True)),
        TimeElapsedColumn(table_column=Column(no_wrap=True)),
        console=out,
        transient=False,
    )


class RunProgress:
    """One row per stage (``stage(name)``: the previous stage's row completes) and one indented
    row per step of a stage (``step(what, done, total)``), created on a step's first report, so
    a step that reports ``(what, 0, total)`` when it starts shows its row, total and elapsed time
    from its start. A ``what`` of ``"<row> - <detail>"`` (:data:`STEP_DETAIL`) keeps one row
    per ``<row>``, showing its latest detail."""

    def __init__(self, prog: Progress) -> None:
        self.prog = prog
        self.stages: dict[str, TaskID] = {}
        self.steps: dict[str, TaskID] = {}

    def stage(self, name: str) -> None:
        self.finish()
        self.stages[name] = self.prog.add_task(name, total=None)

    def step(self, what: str, done: int, total: int) -> None:
        row = what.split(STEP_DETAIL, 1)[0]
        if row not in self.steps:
            self.steps[row] = self.prog.add_task(f"  {what}", total=total)
        self.prog.update(self.steps[row], completed=done, total=total, description=f"  {what}")

    def finish(self) -> None:
        """Complete every stage row (a stage has no count of its own: 1/1 once over)."""
        for tid in self.stages.values():
            self.prog.update(tid, completed=1, total=1)


def run(
    config: Annotated[Path, typer.Argument(help="run config YAML, e.g. configs/movielens.yaml")],
) -> None:
    """Run every stage for CONFIG and print the results table."""
    import time

    from mspa_features.cli.main_job import run as run_pipeline
    from mspa_features.config import load_config

    cfg = load_config(config)
    t0 = time.perf_counter()
    with progress_display(console) as prog:
        rows = RunProgress(prog)
        summary = run_pipeline(cfg, progress=rows.stage, step_progress=rows.step)
        rows.finish()

    print_summary(console, cfg, summary, elapsed_s=time.perf_counter() - t0)


def print_summary(out: Console, cfg: RunConfig, summary: RunSummary, *, elapsed_s: float) -> None:
    """Everything ``mspa run`` prints after its progress display, on ``out``.

    Sentences wrap with a hanging indent at ``out``'s width; result paths sit alone on their
    line, relative to the working directory when under it (:func:`print_path`), never broken.
    """
    out.rule(f"[bold]mspa run: {summary.name}[/] ({summary.dataset})")
    out.print(counts_table("Data contracts: input = accepted + quarantined", summary.counts))
    r = summary.u2a_report
    out.print(
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
    out.print(
        metric_table(
            f"U2A on {r['n_test']:,} test users (non-LLM reference scorers)",
            summary.u2a_metrics,
            cols,
        )
    )
    out.print(
        metric_table(
            "A2A alignment rate", {k: {"a2a": v} for k, v in summary.a2a_metrics.items()}, ["a2a"]
        )
    )
    if summary.composer_eval:
        out.print(u2a_table(summary.composer_eval, cfg.u2a.num_candidates))
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
            print_wrapped(
                out,
                f"reference scorers on the same {summary.composer_eval['cohort_users']} users: "
                + "; ".join(ref),
                indent=2,
            )
        lines = parse_lines(summary.composer_eval)
        if lines:
            out.print(PARSE_HEADER, highlight=False)
        for line in lines:
            print_wrapped(out, line, prefix="  - ")
        out.print(
            f"composer stage: {summary.timings_s.get('composers', 0.0):.1f} s",
            highlight=False,
        )
    if summary.features:
        out.print(features_table(summary.features))
        for line in backfill_notes(summary.features):  # why rows one might expect are missing
            print_wrapped(out, line, prefix="  ", indent=4)
    for preview in summary.serving or []:
        out.print(serving_table(preview))
    if summary.ablation:
        ab = summary.ablation
        out.print(ablation_table(ab))
        for line in ablation_verdicts(ab):
            print_wrapped(out, line, prefix="  - ")
        for note in ab["notes"]:
            print_wrapped(out, note, prefix="note: ", indent=2, prefix_style="yellow")
        cmp = ab.get("compare")
        if cmp:
            out.print(comparison_table(cmp))
            for note in cmp["notes"]:
                print_wrapped(
                    out, note, prefix="note (feature-set comparison): ", indent=2,
                    prefix_style="yellow",
                )  # fmt: skip
            print_path(out, "feature-set comparison results", cmp["results_path"])
        print_path(
            out,
            f"ablation results (MLflow parent run {ab['mlflow_parent_run_id']})",
            ab["results_path"],
        )
        print_path(out, "MLflow tracking URI", ab["tracking_uri"])
        out.print("compare two ablations with `mspa runs compare`", highlight=False)
    print_path(
        out,
        f"run summary ({elapsed_s:.1f} s)",
        Path(cfg.workspace).resolve() / "results" / summary.name / "summary.json",
    )
