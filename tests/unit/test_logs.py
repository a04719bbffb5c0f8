"""The CLI's quiet terminal (issue 15: 6): library warnings, third-party logs, a child
process's output and ANSI codes go to the run's log file, not to a terminal that is a pipe.

The capture runs in a subprocess (it replaces ``warnings.showwarning`` and ``sys.stdout``),
with real library calls that warn: duckdb's deprecated ``fetch_arrow_table`` (what ibis calls
under Feast), Feast's own colorama output, MLflow's logger, a JVM-like child on stderr.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mspa_features import logs

SCRIPT = textwrap.dedent(
    """
    import logging, subprocess, sys, warnings
    from mspa_features import logs

    logs.install(["backfill", "run.yaml"], log_file=sys.argv[1])
    import duckdb
    from colorama import Fore, Style

    duckdb.connect().sql("select 1").fetch_arrow_table()  # DeprecationWarning
    warnings.warn("a library's future change", FutureWarning)
    logging.getLogger("mlflow.store.db.utils").info("Creating initial MLflow database tables...")
    logging.getLogger("mspa_features.align").warning("2 row(s) without any candidate left out")
    print(f"{Style.BRIGHT + Fore.GREEN}user_preferences__template{Style.RESET_ALL}:")
    with logs.child_output_to_log():
        subprocess.run(
            ["sh", "-c", "echo 'WARNING: Using incubator modules' >&2; echo banner"], check=True
        )
    print("done")
    """
)


def test_library_noise_goes_to_the_log_file_not_the_pipe(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "run.log"
    env = {k: v for k, v in os.environ.items() if k not in logs.QUIET_ENV}
    env.pop("MSPA_LOG_FILE", None)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(log)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=tmp_path,
        env=env,
    )
    # Only our output and our own logger's warning reach the (non-terminal) streams.
    assert proc.stdout == "user_preferences__template:\ndone\n"
    assert proc.stderr == "warning: 2 row(s) without any candidate left out\n"
    text = log.read_text()
    assert "DeprecationWarning" in text and "fetch_arrow_table() is deprecated" in text
    assert "FutureWarning" in text and "a library's future change" in text
    assert "INFO mlflow.store.db.utils: Creating initial MLflow database tables" in text
    assert "WARNING: Using incubator modules\nbanner\n" in text
    assert "\x1b" not in text


def test_log_file_is_in_the_workspace_of_the_config_on_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "run.yaml").write_text("name: tiny\nworkspace: ws\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "ablation.yaml").write_text("name: ais\nrun_config: ../run.yaml\n")
    monkeypatch.chdir(tmp_path)
    assert logs.workspace_from_argv(["backfill", "run.yaml", "--start", "x"]) == Path("ws")
    assert logs.workspace_from_argv(["lis", "sub/ablation.yaml"]) == Path("ws")
    assert logs.workspace_from_argv(["data", "validate", "users", "u.csv"]) == Path("workspace")
    path = logs.default_log_file(["runs", "compare", "A", "B", "--run-config", "run.yaml"])
    assert path.parent == Path("ws") / "logs"
    assert path.name.startswith("mspa-runs-compare-") and path.suffix == ".log"


def test_ansi_pattern_strips_colours_and_keeps_text() -> None:
    coloured = "\x1b[1m\x1b[32mauthor_profiles__template\x1b[0m: 5 rows \x1b]8;;http://x\x1b\\x"
    assert logs.ANSI_RE.sub("", coloured) == "author_profiles__template: 5 rows x"
