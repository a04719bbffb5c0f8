"""The installed entry point itself (``python -m mspa_features.cli``, what ``mspa`` runs): the
issue's usage errors print one line and exit 2 through ``main`` (issue 14: 8)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["run"], "error: mspa run: Missing argument 'config'. (see 'mspa run --help')"),
        (
            ["data", "fetch", "foo"],
            (
                "error: mspa data fetch: Invalid value for 'source': 'foo' is not one of "
                "'movielens', 'synthetic'. (see 'mspa data fetch --help')"
            ),
        ),
        (["nosuchcmd"], "error: mspa: No such command 'nosuchcmd'. (see 'mspa --help')"),
        (
            ["runs", "compare", "A", "B"],
            (
                "error: mspa runs compare: Invalid value for --tracking-uri: give --tracking-uri or "
                "--run-config (whose workspace holds mlflow.db) (see 'mspa runs compare --help')"
            ),
        ),
    ],
)
def test_usage_error_is_one_line_and_exit_2(argv: list[str], expected: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mspa_features.cli", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"COLUMNS": "60", "PATH": "/usr/bin:/bin"},  # narrow: the line must not wrap
    )
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [expected]
