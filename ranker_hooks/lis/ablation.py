"""One LIS run: build and register the leak sets, run the ablation with the LIS variants beside
the configured baseline/AIS variants, and attach plain-language verdicts (``mspa lis``).

Writes ``lis_verdicts.json`` and ``lis_verdicts.md`` beside the runner's ``results.json``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mspa_features.errors import LeakBuildError
from ranker_hooks.lis.variants import DEFAULT_HORIZONS, LIS_KINDS, lis_variants
from ranker_hooks.lis.verdicts import lis_report, ratio_cell

if TYPE_CHECKING:
    from feast import FeatureStore

    from mspa_features.config import RunConfig
    from ranker_hooks.ablation.config import AblationConfig
    from ranker_hooks.ablation.results import AblationResult

_LIS_NAME = re.compile(r"^lis_(?P<kind>[a-z_]+)_n(?P<n>\d+)$")


@dataclass
class LisRun:
    """What :func:`run_lis` produced."""

    result: AblationResult
    verdicts: list[dict[str, Any]]
    notes: list[str]
    paths: dict[str, Path]


def verdict_rows(result: AblationResult) -> list[dict[str, Any]]:
    """The runner's variants as :func:`ranker_hooks.lis.verdicts.lis_report` rows, verdicts added."""
    rows = []
    for v in result.variants:
        m = _LIS_NAME.match(v.name) if v.kind == "lis" else None
        rows.append(
            {
                "variant": v.name,
                "kind": v.kind,
                "auc": v.auc,
                "delta": v.delta_auc,
                "ci_low": v.delta_auc_ci_low,
                "ci_high": v.delta_auc_ci_high,
                "p_value": v.p_value,
                "feature": v.description or v.name,
                "leak_kind": m["kind"] if m else None,
                "horizon_days": int(m["n"]) if m else None,
                "cold_n_test": v.cold_n_test,
                "cold_auc": v.cold_auc,
                "cold_delta": v.cold_delta_auc,
                "cold_ci_low": v.cold_delta_auc_ci_low,
                "cold_ci_high": v.cold_delta_auc_ci_high,
            }
        )
    return lis_report(rows)


def cold_cell(r: dict[str, Any]) -> str:
    """``AUC delta [CI]`` on the cold slice; blanks where the slice is too small for them."""
    if r.get("cold_auc") is None:
        return "n/a"
    cell = f"{r['cold_auc']:.4f}"
    if r.get("cold_delta") is not None and r["kind"] != "baseline":
        cell += f" {r['cold_delta']:+.4f}"
        if r.get("cold_ci_low") is not None:
            cell += f" [{r['cold_ci_low']:+.4f}, {r['cold_ci_high']:+.4f}]"
    return cell


def _markdown(rows: list[dict[str, Any]]) -> str:
    n_cold = rows[0].get("cold_n_test", 0) if rows else 0
    cold = f"cold AUC, delta [CI] (n={n_cold})"
    lines = [
        f"| variant | kind | AUC | delta AUC | 95% CI | AIS/LIS | {cold} | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['kind']} | {r['auc']:.4f} | {r['delta']:+.4f} | "
            f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}] | "
            f"{ratio_cell(r.get('ais_lis_ratio'))} | {cold_cell(r)} | {r['verdict']} |"
        )
    return "\n".join(lines) + "\n"


def verdict_table(run: LisRun) -> Any:
    """The LIS report as a rich table: AUC, delta with CI, AIS/LIS ratio and a verdict per row."""
    from rich.table import Table

    table = Table(
        title=f"LIS report ({run.result.run_name}): AIS = real MSPA features, LIS = deliberately "
        "leaked preference data (the upper bound); delta AUC vs baseline, 95% paired bootstrap CI",
        title_justify="left",
    )
    n_cold = run.verdicts[0].get("cold_n_test", 0) if run.verdicts else 0
    for col in (
        "variant",
        "AUC",
        "delta AUC [95% CI]",
        "AIS/LIS",
        f"cold AUC, delta [CI] (n={n_cold})",
        "verdict",
    ):
        # numbers never break across lines; the verdict (words) wraps
        table.add_column(col, no_wrap=col != "verdict", overflow="fold")
    for r in run.verdicts:
        table.add_row(
            r["variant"],
            f"{r['auc']:.4f}",
            f"{r['delta']:+.4f} [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]",
            ratio_cell(r.get("ais_lis_ratio")),
            cold_cell(r),
            r["verdict"],
        )
    return table


def run_lis(
    run_cfg: RunConfig,
    ablation_cfg: AblationConfig,
    *,
    horizons: Sequence[int] = DEFAULT_HORIZONS,
    kinds: Sequence[str] = LIS_KINDS,
    build: bool = True,
    aligned: bool = True,
    store: FeatureStore | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> LisRun:
    """Build (optionally) and register the leak sets, then run the ablation with LIS variants.

    The leak sets use the ablation's window: M_T trains on ``[train_start, split_at)`` with
    the ablation's ranker backend (first seed). With ``aligned``, the AIS variant
    ``aligned_id`` (:mod:`ranker_hooks.aligned_id.build`, built from the same M_T when ``build``)
    runs too; when there is nothing to align (fewer than 4 warm authors, no author embedding
    before T) it is skipped with a note and the rest runs.

    Raises:
        LeakBuildError, AblationError, LeakedFeatureError: see the steps.
    """
    from mspa_features.serving.materialize import open_store
    from ranker_hooks.ablation.config import make_ranker
    from ranker_hooks.ablation.run import run_ablation
    from ranker_hooks.lis.feast_defs import discover_leak_sets, register_leaks
    from ranker_hooks.lis.leaks.build import build_leak_sets

    cfg = ablation_cfg
    aligned_notes: list[str] = []
    if build:
        # The future-id view is registered too (the record of what leaked), though its LIS
        # variant swaps the table on the model itself.
        built_leaks = build_leak_sets(
            run_cfg,
            split_at=cfg.split.split_at,
            train_start=cfg.split.train_start,
            horizons=horizons,
            kinds=kinds,
            make_ranker=lambda: make_ranker(cfg, cfg.seeds[0]),
        )
        register_leaks(run_cfg, repo_path=cfg.repo_path)
        aligned_notes += built_leaks.notes  # empty windows: said, and the run goes on
    if build and aligned:
        from ranker_hooks.aligned_id.build import build_aligned_set
        from ranker_hooks.aligned_id.feast_defs import register_aligned

        try:
            built = build_aligned_set(
                run_cfg,
                split_at=cfg.split.split_at,
                train_start=cfg.split.train_start,
                feature_set=cfg.feature_set,
                make_ranker=lambda: make_ranker(cfg, cfg.seeds[0]),
            )
        except LeakBuildError as e:
            # Too few warm authors, or no author embedding before T: nothing to align. The
            # run goes on without the variant (an aligned set of an earlier run is not used).
            aligned = False
            aligned_notes.append(f"variant aligned_id skipped: {e}")
        else:
            register_aligned(run_cfg, cfg.feature_set, repo_path=cfg.repo_path)
            q = built.alignment
            aligned_notes.append(
                f"aligned_id: adapter held-out cosine to M_T's author rows "
                f"{q.cosine_adapter:.3f} vs mean-row baseline {q.cosine_mean_baseline:.3f} "
                f"({q.n_holdout} held-out of {built.n_warm} warm authors; "
                f"{built.n_snapshots} snapshots predicted)"
            )
    if store is None:
        store = open_store(run_cfg, repo_path=cfg.repo_path)
    variants, notes = lis_variants(
        store,
        cfg.feature_set,
        horizons=horizons,
        kinds=kinds,
        leak_sets=discover_leak_sets(run_cfg),  # an empty set is skipped with a note
    )
    if aligned:
        from ranker_hooks.aligned_id.build import aligned_variants

        more, more_notes = aligned_variants(store, cfg.feature_set)
        variants, notes = more + variants, more_notes + notes
    notes = aligned_notes + notes  # the build's notes, with or without the aligned variant
    result = run_ablation(run_cfg, cfg, progress=progress, extra_variants=variants, store=store)
    verdicts = verdict_rows(result)
    folder = result.results_path.parent
    paths = {"json": folder / "lis_verdicts.json", "markdown": folder / "lis_verdicts.md"}
    paths["json"].write_text(json.dumps(verdicts, indent=2) + "\n", encoding="utf-8")
    paths["markdown"].write_text(_markdown(verdicts), encoding="utf-8")
    if result.parent_run_id:
        # The LIS report belongs with the ablation's parent run, beside results.json.
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=result.tracking_uri)
        for path in paths.values():
            client.log_artifact(result.parent_run_id, str(path))
    return LisRun(result=result, verdicts=verdicts, notes=notes + list(result.notes), paths=paths)


__all__ = ["LisRun", "cold_cell", "run_lis", "verdict_rows", "verdict_table"]
