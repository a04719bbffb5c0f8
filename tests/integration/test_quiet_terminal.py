"""The CLI's terminal stays quiet when it is not a TTY (issue 15: 6): ``mspa backfill`` (Spark's
JVM and log4j, the encoder's weight loading) and ``mspa register`` (Feast's on-demand-view
warning, its colorama output, ibis/duckdb deprecations) print no library warning, no log4j or
JVM banner and no ANSI escape; what they would have printed is in the run's log file
``<workspace>/logs/``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

USERS = "user_id,age,gender,occupation,region\nu1,25,F,artist,west\nu2,34,M,engineer,east\n"
AUTHORS = (
    "author_id,event_timestamp,profile_text\n"
    "a1,2024-01-01T00:00:00Z,Cooking streams: pasta and bread\n"
    "a2,2024-01-01T00:00:00Z,Retro games speedruns\n"
    "a3,2024-01-01T00:00:00Z,Jazz piano live\n"
)
INTERACTIONS = (
    "user_id,author_id,event_timestamp,action,value,label\n"
    "u1,a2,2024-01-02T12:00:00Z,rate,5.0,1\n"
    "u2,a3,2024-01-03T13:00:00Z,rate,5.0,1\n"
    "u1,a1,2024-01-04T14:00:00Z,rate,4.0,1\n"
    "u2,a1,2024-01-05T15:00:00Z,rate,2.0,0\n"
)
RUN = """name: quiet
workspace: ws
data:
  source: movielens
eval:
  composers: []
features:
  feature_sets: [template]
"""
# What must not reach a pipe: a Python warning line, log4j/JVM banners and WARN lines, ANSI.
NOISE = re.compile(
    r"\w+Warning: |WARNING: Using incubator|log4j|^\S+ WARN |Setting default log level|\x1b\[",
    re.MULTILINE,
)


def _mspa(*args: str, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "MSPA_LOG_FILE"}
    proc = subprocess.run(
        [sys.executable, "-m", "mspa_features.cli", *args],
        cwd=cwd,
        check=False,  # the exit status is asserted with the output
        capture_output=True,
        text=True,
        timeout=900,
        env={**env, "COLUMNS": "80"},
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    return out


def test_backfill_and_register_keep_library_noise_in_the_log_file(tmp_path: Path) -> None:
    for name, text in (
        ("users.csv", USERS),
        ("authors.csv", AUTHORS),
        ("interactions.csv", INTERACTIONS),
        ("run.yaml", RUN),
    ):
        (tmp_path / name).write_text(text)
    for contract in ("users", "authors", "interactions"):
        _mspa(
            "data", "validate", contract, f"{contract}.csv", "--out", "ws/data/quiet", cwd=tmp_path
        )
    outputs = {
        "backfill": _mspa(
            "backfill",
            "run.yaml",
            "--start",
            "2024-01-01",
            "--end",
            "2024-01-06",
            "--cadence",
            "daily",
            cwd=tmp_path,
        ),
        "register": _mspa("register", "run.yaml", "--feature-set", "template", cwd=tmp_path),
    }
    for command, out in outputs.items():
        assert not NOISE.findall(out), (command, NOISE.findall(out), out)
    # The results still show (rich wraps the title at 80 columns).
    assert "requested = written + quarantined" in " ".join(outputs["backfill"].split())

    logs = {p.name.split("-")[1]: p.read_text() for p in (tmp_path / "ws" / "logs").glob("*.log")}
    assert "WARNING: Using incubator modules" in logs["backfill"]
    assert "WARN NativeCodeLoader" in logs["backfill"]
    assert "RuntimeWarning" in logs["register"]
    assert "On demand feature view is an experimental feature" in logs["register"]
