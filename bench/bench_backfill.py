"""Spark backfill: P1 encode throughput through Spark vs bare FlagEmbedding; P4 incremental cost
and peak memory.

Data: the seeded synthetic live-stream generator (``write_synthetic``), written as contract parquet
straight into the workspace's ``data/<name>/`` folder. Validation (``ingest_folder``) is BYPASSED
for speed: the generator emits contract-conformant tables, and ingesting 100k users costs minutes
that measure the validator, not the backfill. Template composer, the embedded MiniLM encoder.

P1: texts/s of the preference rows one warm backfill over ``--days`` daily partitions writes
(Spark SQL, history building, composing, encoding, publishing: everything but the session start,
printed separately, and the workers' first model load, done by a warm-up run on a copy of the
data) vs bare FlagEmbedding encoding the very same texts in this process. Goal >= 0.8x.

P4: a backfill of ONE new day (after the range exists) vs the full range, same session and
workspace. Goal <= 0.15x. Then, per ``--mem-users`` size, a fresh process backfills the last
``--mem-days`` days of the window and the peak memory of its process tree is sampled (driver
Python, the Spark JVM, Python workers; psutil PSS, so pages the forked workers share count once,
every 0.2 s). CPU seconds (all processes, all threads) are printed beside wall times: on a
machine shared with other jobs they are the steadier measure.

    .venv/bin/python bench/bench_backfill.py                      # quick: 2k users, 10k memory
    .venv/bin/python bench/bench_backfill.py --mem-users 10000,100000
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np

START = date(2026, 1, 1)  # SyntheticConfig's default window start


def _workspace(root: Path, n_users: int, n_authors: int, window: int, mean_tips: float):
    from mspa_features.config import DataConfig, RunConfig, Workspace
    from mspa_features.data.synthetic import SyntheticConfig, write_synthetic

    syn = SyntheticConfig(
        n_users=n_users, n_authors=n_authors, days=window, mean_tips_per_user=mean_tips
    )
    cfg = RunConfig(
        name="synthetic", workspace=root, data=DataConfig(source="synthetic", synthetic=syn)
    )
    counts = write_synthetic(syn, Workspace(root).data("synthetic"))
    return cfg, counts


class _Stages:
    """Progress callback that records when each stage was first and last reported."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.spans: dict[str, list[float]] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.perf_counter() - self.t0
        self.spans.setdefault(stage, [now, now])[1] = now

    def line(self) -> str:
        return ", ".join(f"{k.split(': ')[-1]} {b - a:.1f}s" for k, (a, b) in self.spans.items())


def bench_p1_p4(args: argparse.Namespace, work: Path) -> None:
    from mspa_features.snapshots import backfill as B
    from spark_jobs import backfill as jobs
    from spark_jobs.session import build_spark_session

    cfg, counts = _workspace(work / "main", args.users, args.authors, args.window, args.mean_tips)
    warm_cfg = cfg.model_copy(update={"workspace": work / "warm"})
    shutil.copytree(work / "main" / "data", work / "warm" / "data")
    print(
        f"data: {counts['users']:,} users, {counts['authors']:,} authors, "
        f"{counts['interactions']:,} interactions over {args.window} days "
        "(contract parquet written directly, validation bypassed)"
    )
    bf = B.BackfillConfig(master=args.master, spark_conf={"spark.ui.enabled": "false"})
    t0 = time.perf_counter()
    spark = build_spark_session(bf, app_name="bench-backfill")
    t_session = time.perf_counter() - t0
    par = spark.sparkContext.defaultParallelism
    print(f"Spark session start: {t_session:.1f}s ({args.master}, parallelism {par})")

    first, last = START + timedelta(days=1), START + timedelta(days=args.days)
    new_day = last + timedelta(days=1)
    t0 = time.perf_counter()
    jobs.backfill_preferences(spark, warm_cfg, bf, first, first)
    print(
        f"warm-up (workers load composer + encoder; other workspace): "
        f"{time.perf_counter() - t0:.1f}s"
    )

    stages = _Stages()
    cpu0 = _tree_cpu()
    full = jobs.backfill_preferences(spark, cfg, bf, first, last, progress=stages)
    cpu_full = _tree_cpu() - cpu0
    full.check()
    t_full = full.seconds
    print(
        f"full range {first}..{last}: {full.requested:,} snapshots, {full.written:,} rows "
        f"in {t_full:.1f}s, {cpu_full:.1f}s cpu ({stages.line()})"
    )
    stages = _Stages()
    inc = jobs.backfill_preferences(spark, cfg, bf, new_day, new_day, progress=stages)
    inc.check()
    print(f"one new day {new_day}: {inc.written:,} rows in {inc.seconds:.1f}s ({stages.line()})")
    spark.stop()

    texts = B.read_partitions(B.feature_set_dir(cfg, bf) / "preferences", None)
    texts = [
        t
        for t, ds in zip(texts["pref_text"].to_pylist(), texts["ds"].to_pylist(), strict=True)
        if ds <= last.isoformat()
    ]
    assert len(texts) == full.written

    import torch

    torch.set_num_threads(args.threads)
    from FlagEmbedding import FlagAutoModel

    from mspa_features.models import minilm_path

    bare = FlagAutoModel.from_finetuned(
        str(minilm_path()),
        model_class="encoder-only-base",
        pooling_method="mean",
        use_fp16=False,
        devices="cpu",
        normalize_embeddings=True,
        batch_size=64,
        query_max_length=256,
        passage_max_length=256,
    )

    def encode(batch: list[str]) -> np.ndarray:
        with contextlib.redirect_stderr(io.StringIO()):  # FlagEmbedding's progress bars
            return bare.encode(batch, batch_size=64, max_length=256)

    encode(texts[:128])  # warm-up
    c0, t0 = time.process_time(), time.perf_counter()
    encode(texts)
    t_bare, cpu_bare = time.perf_counter() - t0, time.process_time() - c0

    rate_spark, rate_bare = full.written / t_full, len(texts) / t_bare
    print(
        f"bare FlagEmbedding ({args.threads} torch threads), same {len(texts):,} texts: "
        f"{t_bare:.1f}s, {cpu_bare:.1f}s cpu"
    )
    print(
        f"P1 encode throughput: backfill {rate_spark:.1f} texts/s vs bare {rate_bare:.1f} "
        f"texts/s = {rate_spark / rate_bare:.2f}x wall, {cpu_bare / cpu_full:.2f}x cpu "
        "(goal >= 0.8x)"
    )
    print(
        f"P4 one new day vs full range ({args.days} days): {inc.seconds:.1f}s / {t_full:.1f}s "
        f"= {inc.seconds / t_full:.3f}x (goal <= 0.15x)"
    )


def _tree_cpu() -> float:
    """CPU seconds of this process and its descendants (JVM, Python workers), exited ones too."""
    import psutil

    me = psutil.Process()
    total = 0.0
    for p in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


def _mem(p) -> int:  # type: ignore[no-untyped-def]
    """Proportional set size where the OS gives it: forked Python workers share pages with their
    parent daemon, and RSS would count those pages once per process."""
    try:
        return p.memory_full_info().pss
    except (AttributeError, OSError):
        return p.memory_info().rss


def _tree_rss(proc) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
    """(driver python, JVM, python workers) memory of ``proc`` and its descendants."""
    import psutil

    driver = jvm = workers = 0
    try:
        driver = _mem(proc)
        for c in proc.children(recursive=True):
            try:
                rss = _mem(c)
                if "java" in c.name():
                    jvm += rss
                else:
                    workers += rss
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    return driver, jvm, workers


def bench_memory(args: argparse.Namespace, work: Path) -> None:
    import psutil

    print(
        f"\nP4 peak memory: backfill of the last {args.mem_days} day(s) of a "
        f"{args.window}-day window, fresh process per size ({args.master})"
    )
    print(
        f"{'users':>8} {'interactions':>13} {'rows':>7} {'job s':>6} {'driver':>8} "
        f"{'JVM':>8} {'workers':>8} {'total':>8}  (peak PSS, MiB)"
    )
    for n in args.mem_users:
        root = work / f"mem{n}"
        cfg, counts = _workspace(root, n, args.authors, args.window, args.mean_tips)
        cfg_path = root / "cfg.json"
        cfg_path.write_text(cfg.model_dump_json())
        cmd = [
            sys.executable,
            __file__,
            "--mem-child",
            str(cfg_path),
            "--master",
            args.master,
            "--window",
            str(args.window),
            "--mem-days",
            str(args.mem_days),
        ]
        proc = psutil.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        peak = [0, 0, 0, 0]
        while proc.poll() is None:
            d, j, w = _tree_rss(proc)
            peak = [max(peak[0], d), max(peak[1], j), max(peak[2], w), max(peak[3], d + j + w)]
            time.sleep(0.2)
        out = proc.stdout.read() if proc.stdout else ""
        if proc.returncode != 0:
            print(f"{n:>8,} child failed ({proc.returncode}): {out[-500:]}")
            continue
        res = json.loads(out.strip().splitlines()[-1])
        mib = [x / 2**20 for x in peak]
        print(
            f"{n:>8,} {counts['interactions']:>13,} {res['written']:>7,} {res['seconds']:>6.1f} "
            f"{mib[0]:>8.0f} {mib[1]:>8.0f} {mib[2]:>8.0f} {mib[3]:>8.0f}"
        )
        shutil.rmtree(root, ignore_errors=True)


def memory_child(args: argparse.Namespace) -> None:
    from mspa_features.config import RunConfig
    from mspa_features.snapshots import backfill as B
    from spark_jobs import backfill as jobs
    from spark_jobs.session import build_spark_session

    cfg = RunConfig.model_validate_json(Path(args.mem_child).read_text())
    bf = B.BackfillConfig(master=args.master, spark_conf={"spark.ui.enabled": "false"})
    spark = build_spark_session(bf, app_name="bench-backfill-memory")
    end = START + timedelta(days=args.window)
    counts = jobs.backfill_preferences(spark, cfg, bf, end - timedelta(days=args.mem_days - 1), end)
    spark.stop()
    counts.check()
    print(json.dumps(counts.as_dict()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--users", type=int, default=2000, help="P1/P4 timing: synthetic users")
    ap.add_argument("--authors", type=int, default=200)
    ap.add_argument("--window", type=int, default=30, help="days of synthetic interactions")
    ap.add_argument("--mean-tips", type=float, default=4.0, help="positives per user (window)")
    ap.add_argument("--days", type=int, default=14, help="P1/P4: daily partitions backfilled")
    ap.add_argument("--master", default="local[2]")
    ap.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="torch threads for the bare encoder",
    )
    ap.add_argument(
        "--mem-users",
        type=lambda s: [int(x) for x in s.split(",") if x],
        default=[10_000],
        help="comma-separated sizes for peak memory ('' to skip)",
    )
    ap.add_argument("--mem-days", type=int, default=1, help="days backfilled per memory run")
    ap.add_argument("--skip-timing", action="store_true", help="memory runs only")
    ap.add_argument("--mem-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mem_child:
        memory_child(args)
        return
    if args.days + 1 > args.window:
        ap.error("--days must leave one new day inside --window")
    with tempfile.TemporaryDirectory(prefix="bench_backfill_") as tmp:
        if not args.skip_timing:
            bench_p1_p4(args, Path(tmp))
        if args.mem_users:
            bench_memory(args, Path(tmp))


if __name__ == "__main__":
    main()
