"""Every stage on a tiny dataset of a user's own (issue 14 item 9): 3 users, 5 authors,
20 interactions, put in a workspace the way a user can today.

The files go through ``mspa data validate <contract> FILE --out <workspace>/data/<run name>``,
which writes the accepted contract parquet where every later stage reads it; the run config
names the same folder as its ``source: files`` (accepted tables validated by hand, without the
stamp ``mspa data load`` writes, are used as they are; tests/integration/test_own_data_files.py
runs ``mspa run`` on a source folder end to end). ``mspa backfill``,
``mspa register``, ``mspa ablate`` and ``mspa lis`` then run on it. Each one either works or
says what it had nothing to do for and goes on; none prints a traceback. Before the fix,
``mspa lis`` died at its seventh variant: the empty similar-items leak set was written with
a float ``author_id``, then the all-null next-positive set had no vector width.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

USERS = """user_id,age,gender,occupation,region
u1,25,F,artist,west
u2,34,M,engineer,east
u3,41,F,writer,south
"""
AUTHORS = """author_id,event_timestamp,profile_text
a1,2024-01-01T00:00:00Z,Cooking streams: pasta and bread
a2,2024-01-01T00:00:00Z,Retro games speedruns
a3,2024-01-01T00:00:00Z,Jazz piano live
a4,2024-01-01T00:00:00Z,Mountain hiking vlogs
a5,2024-01-01T00:00:00Z,Indie film reviews
"""
# Every 3 days, users in turn: a user's next interaction is 9 days on, so no user has a next
# positive within 7 days, and after T (2024-02-10) no two authors share a user within 7 days.
INTERACTIONS = """user_id,author_id,event_timestamp,action,value,label
u1,a2,2024-01-03T12:00:00Z,rate,5.0,1
u2,a5,2024-01-06T13:00:00Z,rate,2.0,0
u3,a3,2024-01-09T14:00:00Z,rate,5.0,1
u1,a4,2024-01-12T15:00:00Z,rate,5.0,1
u2,a1,2024-01-15T16:00:00Z,rate,5.0,1
u3,a1,2024-01-18T17:00:00Z,rate,4.0,1
u1,a3,2024-01-21T18:00:00Z,rate,5.0,1
u2,a2,2024-01-24T19:00:00Z,rate,2.0,0
u3,a4,2024-01-27T20:00:00Z,rate,5.0,1
u1,a5,2024-01-30T21:00:00Z,rate,4.0,1
u2,a4,2024-02-02T22:00:00Z,rate,2.0,0
u3,a2,2024-02-05T23:00:00Z,rate,2.0,0
u1,a5,2024-02-09T00:00:00Z,rate,4.0,1
u2,a1,2024-02-12T01:00:00Z,rate,1.0,0
u3,a2,2024-02-15T02:00:00Z,rate,5.0,1
u1,a1,2024-02-18T03:00:00Z,rate,3.0,0
u2,a1,2024-02-21T04:00:00Z,rate,3.0,0
u3,a4,2024-02-24T05:00:00Z,rate,5.0,1
u1,a4,2024-02-27T06:00:00Z,rate,4.0,1
u2,a4,2024-03-01T07:00:00Z,rate,5.0,1
"""
RUN = """name: tiny
workspace: ws
data:
  source: files       # users.csv, authors.csv, interactions.csv beside this file (already
  path: .             # validated into ws/data/tiny by `mspa data validate`)
eval:
  composers: []
features:
  feature_sets: [template]
"""
ABLATION = """name: ais-tiny
run_config: run.yaml
feature_set: template
llm_feature_set: llm
variants: [baseline, preference, author, cosine, all, llm_text, text_tokens]
split: {train_start: null, split_at: 2024-02-10T00:00:00Z, eval_days: 30}
seeds: [0]
threads: 1
ranker:
  type: torch
  params: {epochs: 1, batch_size: 64, lr: 0.003, id_dim: 4, dense_dim: 4}
injection: {max_tokens: 8, token_buckets: 64}
bootstrap: {n_boot: 50, seed: 0}
mlflow: {tracking_uri: null, experiment: tiny}
"""
AIS = ["baseline", "preference", "author", "cosine", "all", "text_tokens"]
LLM_TEXT_SKIPPED = (
    "variant llm_text skipped: feature service 'all__llm' is not registered "
    "(no 'llm' feature set backfilled)"
)


def _mspa(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "mspa_features.cli", *args],
        cwd=cwd,
        check=False,  # the exit status is asserted
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "COLUMNS": "250"},
    )
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out
    assert proc.returncode == 0, out
    return proc


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    for name, text in (
        ("users.csv", USERS),
        ("authors.csv", AUTHORS),
        ("interactions.csv", INTERACTIONS),
        ("run.yaml", RUN),
        ("ablation.yaml", ABLATION),
    ):
        (root / name).write_text(text)
    for contract in ("users", "authors", "interactions"):
        _mspa("data", "validate", contract, f"{contract}.csv", "--out", "ws/data/tiny", cwd=root)
    return root


def _results(root: Path, after: set[Path]) -> tuple[Path, dict]:
    runs = set((root / "ws" / "results" / "ablation").glob("ais-tiny-*")) - after
    (folder,) = runs
    return folder, json.loads((folder / "results.json").read_text())


def test_own_data_is_validated_into_the_run_data_folder(tiny: Path) -> None:
    data = tiny / "ws" / "data" / "tiny"
    counts = {c: pq.read_table(data / f"{c}.parquet").num_rows for c in ("users", "authors")}
    assert counts == {"users": 3, "authors": 5}
    inter = pq.read_table(data / "interactions.parquet")
    assert inter.num_rows == 20
    assert inter.schema.field("author_id").type == pa.string()


@pytest.fixture(scope="module")
def stages(tiny: Path) -> dict[str, str]:
    """backfill -> register -> ablate -> lis, each once; their outputs by stage."""
    out = {}
    bf = _mspa(
        "backfill", "run.yaml", "--start", "2024-01-01", "--end", "2024-03-03",
        "--cadence", "daily", cwd=tiny,
    )
    out["backfill"] = bf.stdout
    out["register"] = _mspa("register", "run.yaml", "--feature-set", "template", cwd=tiny).stdout
    out["ablate"] = _mspa("ablate", "ablation.yaml", cwd=tiny).stdout
    out["ablate_run"] = str(_results(tiny, set())[0])
    out["lis"] = _mspa("lis", "ablation.yaml", cwd=tiny).stdout
    return out


def test_backfill_writes_every_user_and_author(tiny: Path, stages: dict[str, str]) -> None:
    feats = tiny / "ws" / "features" / "tiny" / "template"
    prefs = pq.read_table(feats / "preferences")
    authors = pq.read_table(feats / "author_profiles")
    # One daily snapshot per user after each day with new positives (13), one profile per author.
    assert (prefs.num_rows, authors.num_rows) == (13, 5)
    assert sorted(set(prefs.column("user_id").to_pylist())) == ["u1", "u2", "u3"]
    assert sorted(authors.column("author_id").to_pylist()) == ["a1", "a2", "a3", "a4", "a5"]
    # A day before the first positive: an empty partition, and its quarantine, keep the schema.
    empty = pq.read_table(feats / "preferences" / "ds=2024-01-01" / "part-00000.parquet")
    assert empty.num_rows == 0
    assert empty.schema.field("user_id").type == pa.string()
    assert empty.schema.field("event_timestamp").type == pa.timestamp("us", tz="UTC")
    assert empty.schema.field("pref_emb").type == pa.list_(pa.float32())
    assert empty.schema.field("history_count").type == pa.int64()
    q = pq.read_table(
        feats / "_quarantine" / "preferences" / "ds=2024-01-01" / "part-00000.parquet"
    )
    assert q.num_rows == 0
    assert q.schema.field("row_number").type == pa.int64()
    assert q.schema.field("reason").type == pa.string()


def test_ablate_runs_every_ais_variant_and_says_which_it_skipped(
    tiny: Path, stages: dict[str, str]
) -> None:
    doc = json.loads((Path(stages["ablate_run"]) / "results.json").read_text())
    assert [v["name"] for v in doc["variants"]] == AIS
    assert LLM_TEXT_SKIPPED in doc["notes"]
    assert "variant llm_text skipped" in stages["ablate"]


def test_lis_runs_to_the_end_and_skips_leak_sets_with_nothing_in_them(
    tiny: Path, stages: dict[str, str]
) -> None:
    folder, doc = _results(tiny, {Path(stages["ablate_run"])})
    assert [v["name"] for v in doc["variants"]] == [
        *AIS,
        "aligned_id",
        "lis_future_id_n7",
        "lis_future_id_n30",
        "lis_similar_items_n30",
        "lis_next_positive_n30",
    ]
    verdicts = json.loads((folder / "lis_verdicts.json").read_text())
    assert {r["variant"] for r in verdicts} >= {"lis_similar_items_n30", "lis_next_positive_n30"}
    text = " ".join(stages["lis"].split())  # rich wraps long notes
    window_n7 = "(window [2024-02-10T00:00:00+00:00, 2024-02-17T00:00:00+00:00))"
    assert (
        f"variant lis_similar_items_n7 skipped: leak set 'similar_items_n7' has no row "
        f"{window_n7}: nothing leaks"
    ) in text
    assert (
        "variant lis_next_positive_n7 skipped: leak set 'next_positive_n7' holds no "
        "next_positive_emb in its 20 rows"
    ) in text
    assert " ".join(LLM_TEXT_SKIPPED.split()) in text

    # The empty leak set keeps its schema: string ids Feast can join, typed lists.
    leaks = tiny / "ws" / "features" / "tiny" / "leaks"
    empty = pq.read_table(leaks / "similar_items_n7" / "rows")
    assert empty.num_rows == 0
    assert empty.schema.field("author_id").type == pa.string()
    assert empty.schema.field("similar_author_ids").type == pa.list_(pa.string())
    assert empty.schema.field("similar_author_mean_emb").type == pa.list_(pa.float32())
