"""Validation engines side by side: validated rows/s and peak memory of the pandas and the Spark
engine on the same synthetic interactions (issue 13: 2).

Data: ``--sizes`` interactions (default 1M and 10M) with 1 user per 20 and 1 author per 200
interactions, generated with numpy/pyarrow straight to parquet in a temp folder (epoch
milliseconds, declared ``data.timestamps.interactions.unit: ms``), ``--bad`` of them wrong on
purpose (unknown user, missing author, label 2, NaN value, epoch out of range, blank action,
duplicate of the previous row: a seventh each). Both engines run the same ingest
(``ingest_files``: users, then authors, then interactions against the accepted ids) and must
give the same counts.

Each engine runs in a fresh child process; the peak RSS of its whole process tree (Python
driver + Spark JVM + Python workers; psutil, sampled every 0.2 s) is printed beside the wall
time. The Spark session start is timed separately and not counted in rows/s. The pandas
engine refuses an input its memory estimate says does not fit (the refusal is printed).

    .venv/bin/python bench/bench_validation.py                    # 1M and 10M, local[2]
    .venv/bin/python bench/bench_validation.py --sizes 200000     # quick
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY_MS = 86_400_000


def generate(n: int, folder: Path, bad: float, seed: int = 0) -> dict[str, int]:
    """users / authors / interactions parquet in ``folder``; returns the row counts."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    n_users, n_authors = max(100, n // 20), max(10, n // 200)
    folder.mkdir(parents=True, exist_ok=True)

    def ids(prefix: str, idx: np.ndarray) -> pa.Array:
        return pc.binary_join_element_wise(prefix, pa.array(idx).cast(pa.string()), "")

    users = pa.table(
        {
            "user_id": ids("u", np.arange(n_users)),
            "age": pa.array(rng.integers(16, 80, n_users), pa.int32()),
            "gender": pa.array(rng.choice(["f", "m", "x"], n_users)),
        }
    )
    authors = pa.table(
        {
            "author_id": ids("a", np.arange(n_authors)),
            "event_timestamp": pa.array(
                T0_MS - rng.integers(1, 365, n_authors) * DAY_MS, pa.int64()
            ),
            "profile_text": pc.binary_join_element_wise(
                "streams ", pa.array(rng.choice(["chess", "music", "cooking"], n_authors)), ""
            ),
        }
    )
    u = rng.integers(0, n_users, n)
    a = rng.integers(0, n_authors, n)
    t = T0_MS + rng.integers(0, 90 * DAY_MS, n)
    action_i = rng.integers(0, 3, n)
    value = rng.random(n) * 10
    label = (action_i == 1).astype(np.int64)
    # bad rows: a seventh of --bad each
    k = int(n * bad / 7)
    pos = rng.permutation(np.arange(1, n))[: 7 * k].reshape(7, k) if k else np.zeros((7, 0), int)
    u[pos[0]] = n_users + pos[0]  # unknown user
    label[pos[2]] = 2
    value[pos[3]] = np.nan
    t[pos[4]] = 10**18  # far outside the range as epoch ms
    dup = pos[6]
    u[dup], a[dup], t[dup], action_i[dup] = u[dup - 1], a[dup - 1], t[dup - 1], action_i[dup - 1]
    actions = np.array(["view", "tip", "like", "  "], dtype=object)
    action_i[pos[5]] = 3  # blank
    author_ids = ids("a", a)
    author_mask = np.zeros(n, bool)
    author_mask[pos[1]] = True  # missing author
    author_ids = pc.if_else(pa.array(author_mask), pa.scalar(None, pa.string()), author_ids)
    inter = pa.table(
        {
            "user_id": ids("u", u),
            "author_id": author_ids,
            "event_timestamp": pa.array(t, pa.int64()),
            "action": pa.array(actions[action_i], pa.string()),
            "value": pa.array(value),
            "label": pa.array(label),
        }
    )
    for name, table in (("users", users), ("authors", authors), ("interactions", inter)):
        pq.write_table(table, folder / f"{name}.parquet", row_group_size=1_000_000)
    return {"users": n_users, "authors": n_authors, "interactions": n}


def child(engine: str, folder: Path, master: str) -> None:
    """One engine's ingest of ``folder``; prints one JSON line."""
    from mspa_features.data.ingest import INGEST_ORDER, ingest_files
    from mspa_features.data.sources import SourceFile, TimestampFormat
    from mspa_features.errors import IncompatibleSettingsError

    files = [
        SourceFile(c.name, folder / f"{c.name}.parquet", str(folder / f"{c.name}.parquet"))
        for c in INGEST_ORDER
    ]
    fmt = {"authors": TimestampFormat(unit="ms"), "interactions": TimestampFormat(unit="ms")}
    validator, session_s = None, 0.0
    if engine == "spark":
        from spark_jobs.validate import SparkValidator

        validator = SparkValidator(master=master)
        t = time.perf_counter()
        validator.spark.range(1).count()
        session_s = time.perf_counter() - t
    t = time.perf_counter()
    try:
        results = ingest_files(
            files,
            timestamps=fmt,
            engine=engine,  # type: ignore[arg-type]
            validate_spark=validator,
            staging=folder / f"staging-{engine}",
        )
    except IncompatibleSettingsError as e:
        print(json.dumps({"refused": str(e)}))
        return
    finally:
        if validator is not None:
            validator.stop()
    seconds = time.perf_counter() - t
    counts = {r.contract: [r.n_input, r.n_accepted, r.n_quarantined] for r in results}
    print(json.dumps({"seconds": seconds, "session_s": session_s, "counts": counts}))


def run_child(engine: str, folder: Path, master: str) -> tuple[dict, float]:
    """(the child's JSON, peak RSS of its process tree in bytes)."""
    import psutil

    cmd = [sys.executable, __file__, "--child", engine, str(folder), "--master", master]
    proc = psutil.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        total = 0
        try:
            for p in [proc, *proc.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
        except psutil.Error:
            pass
        peak = max(peak, total)
        time.sleep(0.2)
    out = proc.stdout.read() if proc.stdout else ""
    err = proc.stderr.read() if proc.stderr else ""
    lines = [ln for ln in out.strip().splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"failed": f"exit {proc.returncode}: {err.strip().splitlines()[-1:]}"}, peak
    return json.loads(lines[-1]), peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",") if x],
        default=[1_000_000, 10_000_000],
        help="comma-separated interaction counts",
    )
    ap.add_argument("--bad", type=float, default=0.03, help="share of bad interactions")
    ap.add_argument("--master", default="local[2]", help="Spark master (2 cores: local[2])")
    ap.add_argument("--engines", default="pandas,spark")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), args.master)
        return
    print(
        f"validation engines: {os.cpu_count()} cores, Spark {args.master}, load average "
        f"{os.getloadavg()[0]:.1f} at start; rows/s = all input rows (users + authors + "
        "interactions) / validation wall time (Spark session start excluded, shown apart)"
    )
    header = (
        f"{'interactions':>12} {'engine':>6} {'rows':>11} {'accepted':>11} {'quarant.':>9} "
        f"{'valid. s':>9} {'rows/s':>9} {'session s':>9} {'peak RSS':>9}"
    )
    print(header)
    for n in args.sizes:
        with tempfile.TemporaryDirectory(prefix="bench_validation_") as tmp:
            folder = Path(tmp)
            t = time.perf_counter()
            counts = generate(n, folder, args.bad)
            gen_s = time.perf_counter() - t
            total = sum(counts.values())
            seen: dict[str, dict] = {}
            for engine in args.engines.split(","):
                res, peak = run_child(engine, folder, args.master)
                shutil.rmtree(folder / f"staging-{engine}", ignore_errors=True)
                if "seconds" not in res:
                    why = res.get("refused") or res.get("failed")
                    print(f"{n:>12,} {engine:>6} {total:>11,}  not run: {why}")
                    continue
                seen[engine] = res["counts"]
                acc = sum(v[1] for v in res["counts"].values())
                bad = sum(v[2] for v in res["counts"].values())
                print(
                    f"{n:>12,} {engine:>6} {total:>11,} {acc:>11,} {bad:>9,} "
                    f"{res['seconds']:>9.1f} {total / res['seconds']:>9,.0f} "
                    f"{res['session_s']:>9.1f} {peak / 2**30:>7.2f} G"
                )
            if len(seen) == 2:
                same = seen["pandas"] == seen["spark"]
                print(f"{'':>12} counts equal between engines: {same} (generated in {gen_s:.0f} s)")
    print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
