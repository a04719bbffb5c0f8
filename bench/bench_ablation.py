"""P5: the whole AIS ablation suite on MovieLens-100K: per-variant time and peak RSS.

Runs :func:`ranker_hooks.ablation.run.run_ablation` exactly as ``mspa ablate`` does (Feast
historical reads per service, one torch ranker per variant and seed, bootstrap, MLflow logging,
reports), and prints for each variant its seconds (feature read + conversion + training +
scoring + bootstrap) and the process's peak RSS once it finished (``ru_maxrss``: a running
maximum, so the last row is the suite's peak). Goal: whole suite <= 600 s, peak <= 4 GiB on
2 cores.

Needs the main job's data plus a backfill and ``mspa register`` in the workspace:

    .venv/bin/python bench/bench_ablation.py --config configs/ablation/movielens.yaml

MLflow goes to a temporary SQLite database unless ``--tracking-uri`` is given, so benchmark
runs do not mix with real ablations.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

GOAL_SECONDS = 600.0
GOAL_RSS_GIB = 4.0


def peak_rss_gib() -> float:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, default=Path("configs/ablation/movielens.yaml"))
    ap.add_argument("--seeds", type=str, default=None, help="comma-separated, overrides config")
    ap.add_argument("--tracking-uri", default=None, help="default: a temporary SQLite file")
    args = ap.parse_args()

    from mspa_features.config import load_config
    from ranker_hooks.ablation.run import load_ablation_config, run_ablation

    cfg = load_ablation_config(args.config)
    if args.seeds:
        cfg = cfg.model_copy(update={"seeds": [int(s) for s in args.seeds.split(",")]})
    tmp = tempfile.TemporaryDirectory()
    uri = args.tracking_uri or f"sqlite:///{Path(tmp.name) / 'mlflow.db'}"
    cfg = cfg.model_copy(update={"mlflow": cfg.mlflow.model_copy(update={"tracking_uri": uri})})
    run_cfg = load_config(cfg.run_config)

    marks: list[tuple[float, float]] = []  # (time, peak RSS) after each variant's last seed
    n_seeds = len(cfg.seeds)

    def progress(_stage: str, done: int, _total: int) -> None:
        if done % n_seeds == 0:
            marks.append((time.perf_counter(), peak_rss_gib()))

    t0 = time.perf_counter()
    result = run_ablation(
        run_cfg, cfg, progress=progress, run_name=f"bench-{time.strftime('%Y%m%dT%H%M%S')}"
    )
    total = time.perf_counter() - t0
    peak = peak_rss_gib()

    print(
        f"ablation {result.run_name}: {len(result.variants)} variants x {n_seeds} seeds, "
        f"train {result.variants[0].n_train:,} rows, eval {result.variants[0].n_test:,} rows"
    )
    print(f"{'variant':<22}{'seconds':>10}{'peak RSS GiB':>15}{'auc':>9}{'delta':>9}")
    for v, (_, rss) in zip(result.variants, marks, strict=False):
        print(f"{v.name:<22}{v.seconds:>10.1f}{rss:>15.2f}{v.auc:>9.4f}{v.delta_auc:>+9.4f}")
    for note in result.notes:
        print(f"note: {note}")
    ok = total <= GOAL_SECONDS and peak <= GOAL_RSS_GIB
    print(
        f"total {total:.1f} s (goal <= {GOAL_SECONDS:.0f}), peak RSS {peak:.2f} GiB "
        f"(goal <= {GOAL_RSS_GIB:.0f}): {'PASS' if ok else 'FAIL'}"
    )
    tmp.cleanup()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
