"""`mspa run` end to end on a folder of the user's own contracts (issue 13, "Done when" 1).

The folder is the generated podcast catalogue of ``mspa data example`` (not MovieLens, not the
synthetic live-stream data): 30 listeners, 40 shows, ~500 plays over 13 weeks in a layout of its
own (``listener_id``, ``show_id``, ``played_at`` in epoch milliseconds, ``minutes``,
``completed``), mapped by the run config's ``data.columns`` and ``data.timestamps``, with rows
that are wrong on purpose. The main job runs with the template feature set only (CI-sized: one
ablation seed, one epoch, no LIS), and every count it writes is checked against the input.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
NAME = "own-data-example"


def _mspa(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "mspa_features.cli", *args],
        cwd=cwd,
        check=False,  # the exit status is asserted
        capture_output=True,
        text=True,
        timeout=1800,  # ~2.5 min on a quiet 2-core machine; a loaded one takes longer
        env={**os.environ, "COLUMNS": "200"},
    )
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out
    assert proc.returncode == 0, out
    return proc


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    """The shipped example configs, CI-sized, run on a freshly generated example folder."""
    from mspa_features.data.sources_example import write_example_folder

    root = tmp_path_factory.mktemp("own")
    example = write_example_folder(root / "workspace" / "own_data_example")
    (root / "configs" / "ablation").mkdir(parents=True)
    cfg = yaml.safe_load((REPO / "configs" / "own_data_example.yaml").read_text())
    cfg["ablation"]["lis"] = False
    (root / "configs" / "own_data_example.yaml").write_text(yaml.safe_dump(cfg))
    acfg = yaml.safe_load((REPO / "configs" / "ablation" / "own_data_example.yaml").read_text())
    acfg.update(seeds=[0], bootstrap={"n_boot": 50, "seed": 0})
    acfg["ranker"]["params"]["epochs"] = 1
    (root / "configs" / "ablation" / "own_data_example.yaml").write_text(yaml.safe_dump(acfg))
    proc = _mspa("run", "configs/own_data_example.yaml", cwd=root)
    ws = root / "workspace"
    return {
        "root": root,
        "ws": ws,
        "example": example,
        "stdout": proc.stdout,
        "summary": json.loads((ws / "results" / NAME / "summary.json").read_text()),
    }


def test_counts_reconcile_with_the_files_and_the_quarantine_names_each_bad_row(run) -> None:
    example, ws = run["example"], run["ws"]
    counts = {c["contract"]: c for c in run["summary"]["counts"]}
    for contract, n_rows in example.rows.items():
        bad = example.bad_rows[contract]
        c = counts[contract]
        assert (c["n_input"], c["n_accepted"], c["n_quarantined"]) == (
            n_rows,
            n_rows - len(bad),
            len(bad),
        )
        accepted = pq.read_table(ws / "data" / NAME / f"{contract}.parquet")
        assert accepted.num_rows == n_rows - len(bad)
        q = pq.read_table(ws / "quarantine" / NAME / f"{contract}.parquet").to_pylist()
        assert {r["row_number"]: r["reason"].split(" (expected")[0] for r in q} == bad
        assert all(r["source"].endswith(f"own_data_example/{contract}.csv") for r in q)
    # The quarantine keeps the record under the file's own column names.
    q = pq.read_table(ws / "quarantine" / NAME / "interactions.parquet").to_pylist()
    ghost = next(r for r in q if "unknown user" in r["reason"])
    assert json.loads(ghost["record"])["listener_id"] == "L999"
    assert "input = accepted + quarantined" in run["stdout"]


def test_mapped_columns_and_millisecond_timestamps_arrive_exactly(run) -> None:
    example, ws = run["example"], run["ws"]
    with (example.path / "interactions.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    bad = example.bad_rows["interactions"]
    want = pd.DataFrame(
        [
            {
                "user_id": r["listener_id"],
                "author_id": r["show_id"],
                "event_timestamp": pd.Timestamp(int(r["played_at"]), unit="ms", tz="UTC"),
                "value": float(r["minutes"]),
                "label": int(r["completed"]),
            }
            for i, r in enumerate(rows)
            if i not in bad
        ]
    )
    got = pd.read_parquet(ws / "data" / NAME / "interactions.parquet")
    assert (got["action"] == "play").all()
    got = got[want.columns].assign(label=got["label"].astype(int))
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want, check_dtype=False)
    assert got["event_timestamp"].min() >= pd.Timestamp("2026-05-04T00:00:00Z")
    assert got["event_timestamp"].max() < pd.Timestamp("2026-08-03T00:00:00Z")


def test_weekly_preference_rows_reconcile_with_the_accepted_positives(run) -> None:
    """One row per user and weekly snapshot with a new positive in the week before it, whose
    history_count is the user's positives strictly before the snapshot; one profile per show."""
    ws = run["ws"]
    inter = pd.read_parquet(ws / "data" / NAME / "interactions.parquet")
    pos = inter[inter["label"] == 1]
    feats = ws / "features" / NAME / "template"
    prefs = pq.read_table(feats / "preferences").to_pandas()
    assert not prefs.duplicated(["user_id", "event_timestamp"]).any()

    snapshots = pd.date_range("2026-05-04", "2026-08-03", freq="7D", tz="UTC")
    expected = {}
    for k, as_of in enumerate(snapshots):
        since = snapshots[k - 1] if k else pos["event_timestamp"].min()
        week = pos[(pos["event_timestamp"] >= since) & (pos["event_timestamp"] < as_of)]
        for user in week["user_id"].unique():
            expected[(user, as_of)] = int(
                ((pos["user_id"] == user) & (pos["event_timestamp"] < as_of)).sum()
            )
    got = {
        (r.user_id, r.event_timestamp): int(r.history_count) for r in prefs.itertuples(index=False)
    }
    assert got == expected
    assert (prefs["history_last_ts"] < prefs["event_timestamp"]).all()

    backfill = run["summary"]["features"]["backfill"]["template"]
    assert backfill["preferences"]["written"] == len(expected)
    assert backfill["preferences"]["requested"] == len(expected)
    assert backfill["preferences"]["quarantined"] == 0
    authors = pq.read_table(feats / "author_profiles").to_pandas()
    assert sorted(authors["author_id"]) == [f"S{i:03d}" for i in range(1, 41)]
    assert backfill["author_profiles"]["written"] == 40


def test_the_ablation_ran_on_it(run) -> None:
    ablation = run["summary"]["ablation"]
    results = Path(ablation["results_path"])
    assert results.name == "results.json" and results.is_file()
    doc = json.loads(results.read_text())
    names = [v["name"] for v in doc["variants"]]
    assert names == ["baseline", "preference", "author", "cosine", "all", "text_tokens"]
    assert all(0.0 <= v["auc"] <= 1.0 for v in doc["variants"])
    # Every accepted play is a training row before the split or a test row in the 28 days after.
    base = doc["variants"][0]
    accepted = next(c for c in run["summary"]["counts"] if c["contract"] == "interactions")
    assert base["n_train"] + base["n_test"] == accepted["n_accepted"]
    assert run["summary"]["u2a_report"]["n_users_in"] == 30


def test_spark_source_reads_tables_through_spark_into_the_same_validation(tmp_path) -> None:
    """``source: spark``: a CSV path and a parquet path read by Spark (local[1]), then the same
    mapping, millisecond timestamps, quarantine and counts as ``source: files``."""
    from mspa_features.data.sources_example import EXAMPLE_DATA_CONFIG, write_example_folder

    example = write_example_folder(tmp_path / "own")
    plays = pd.read_csv(example.path / "interactions.csv", dtype=str, keep_default_na=False)
    plays.to_parquet(tmp_path / "plays.parquet")  # text cells, as the CSV holds them
    data = {k: v for k, v in EXAMPLE_DATA_CONFIG.items() if k != "source"}
    cfg = {
        "name": "spark-own",
        "workspace": "ws",
        "data": {
            **data,
            "source": "spark",
            "tables": {
                "users": "own/users.csv",
                "authors": "own/authors.csv",
                "interactions": "plays.parquet",
            },
            "spark": {"master": "local[1]"},
        },
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    proc = _mspa("data", "load", "run.yaml", cwd=tmp_path)
    assert "input = accepted + quarantined" in proc.stdout
    stamp = json.loads((tmp_path / "ws" / "data" / "spark-own" / "_source.json").read_text())
    assert stamp["counts"] == {
        c: {"input": n, "accepted": n - len(example.bad_rows[c]), "quarantined": len(bad)}
        for c, n in example.rows.items()
        for bad in [example.bad_rows[c]]
    }
    q = pq.read_table(tmp_path / "ws" / "quarantine" / "spark-own" / "interactions.parquet")
    assert {
        r["row_number"]: r["reason"].split(" (expected")[0] for r in q.to_pylist()
    } == example.bad_rows["interactions"]
    assert q.column("source")[0].as_py() == str(tmp_path / "plays.parquet")
