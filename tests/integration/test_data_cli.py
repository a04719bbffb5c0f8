"""``mspa data fetch`` / ``mspa data validate`` on bad rows: counts, no traceback, exit codes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mspa_features.data import movielens

pytestmark = pytest.mark.integration


def _mspa(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mspa_features.cli", *args],
        cwd=cwd,
        check=False,  # the exit status is what the tests assert
        capture_output=True,
        text=True,
        timeout=300,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )


def test_fetch_movielens_with_a_millisecond_timestamp_quarantines_that_row(movielens_raw, tmp_path):
    raw = tmp_path / "ws" / "raw" / "ml-100k"
    raw.mkdir(parents=True)
    for f in movielens.FILES:
        shutil.copy(movielens_raw / f, raw / f)
    with (raw / "ml-100k.inter").open("a") as fh:
        fh.write("1\t10\t5\t881251949000\n")
    proc = _mspa("data", "fetch", "movielens", "-w", "ws", cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Traceback" not in out
    assert "100,001" in out and "100,000" in out  # interactions: input = accepted + 1
    q = (tmp_path / "ws" / "quarantine" / "movielens" / "interactions.parquet").resolve()
    import pyarrow.parquet as pq

    (reason,) = pq.read_table(q).column("reason").to_pylist()
    assert reason == (
        "event_timestamp: outside the supported range [1677-09-22T00:00:00Z, "
        "2262-04-11T00:00:00Z) '881251949000' (read as unix seconds: in milliseconds?)"
    )


def test_validate_exits_non_zero_when_nothing_is_accepted_and_prints_counts(tmp_path):
    (tmp_path / "a.csv").write_text(
        "author_id,event_timestamp,profile_text\na1,2026-01-01T00:00:00,x\na2,not a time,y\n"
    )
    proc = _mspa("data", "validate", "authors", "a.csv", "--out", "v", cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Traceback" not in out
    assert "row 0: event_timestamp: naive timestamp '2026-01-01T00:00:00' (no UTC offset)" in out
    assert "error: no row of contract 'authors' accepted (input 2 = accepted 0 + quarantined 2" in (
        " ".join(out.split())
    )


def test_validate_states_the_inferred_vector_length_and_accepts_the_rest(tmp_path):
    (tmp_path / "p.csv").write_text(
        "user_id,event_timestamp,created_timestamp,history_count,history_last_ts,pref_text,"
        "pref_emb,model_version,prompt_hash\n"
        'u1,1998-01-01T10:00:00z,1998-01-01T10:00:00Z,1,1997-12-01T00:00:00Z,x,"[1,0,0,0]",m,h\n'
        'u2,1998-01-01T10:00:00Z,1998-01-01T10:00:00Z,1,1997-12-01T00:00:00Z,x,"[0,1,0]",m,h\n'
        'u3,1998-01-01T10:00:00Z,1998-01-01T10:00:00Z,1,1998-01-02T00:00:00Z,x,"[]",m,h\n'
        'u4,1998-01-01T10:00:00Z,1998-01-01T10:00:00Z,0,,x,"[0,0,1,0]",m,h\n'
    )
    proc = _mspa("data", "validate", "preferences", "p.csv", "--out", "v", cwd=tmp_path)
    out = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == 0, out
    assert "Traceback" not in out
    assert "note (preferences): pref_emb: length 4 for model_version=m (inferred: 2 of 3" in out
    assert "row 1: pref_emb: wrong dimension (found length 3, expected length 4" in out
    assert "row 2: pref_emb: empty vector" in out and "history_last_ts: point-in-time" in out
