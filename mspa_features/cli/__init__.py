"""The ``mspa`` command line: one module per noun, heavy imports inside commands."""

from __future__ import annotations

import sys

import typer

from mspa_features.cli import ablate as ablate_cmd
from mspa_features.cli import align as align_cmd
from mspa_features.cli import backfill as backfill_cmd
from mspa_features.cli import compose as compose_cmd
from mspa_features.cli import data as data_cmd
from mspa_features.cli import eval as eval_cmd
from mspa_features.cli import lis as lis_cmd
from mspa_features.cli import nearest as nearest_cmd
from mspa_features.cli import register as register_cmd
from mspa_features.cli import run as run_cmd
from mspa_features.cli.common import console
from mspa_features.errors import MspaError

app = typer.Typer(
    name="mspa",
    help="MLLM preference features for rankers: compose, align, backfill, serve, prove.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(data_cmd.app, name="data")
app.add_typer(compose_cmd.app, name="compose")
app.add_typer(eval_cmd.app, name="eval")
app.command("run")(run_cmd.run)
app.command("backfill")(backfill_cmd.backfill)
app.command("align")(align_cmd.align)
register_cmd.install(app)
nearest_cmd.install(register_cmd.features_app)
ablate_cmd.install(app)
lis_cmd.install(app)


def _exit(code: int) -> None:
    """Leave without interpreter finalization once output is flushed and atexit hooks ran.

    duckdb's nanobind bindings print pages of "leaked instance" reports at finalization (feast
    imports duckdb); they are harmless and would bury the results table a user just read.
    """
    import atexit
    import os

    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _quiet_library_warnings() -> None:
    """Library deprecation notices (ibis, SQLAlchemy via MLflow) and Feast's "experimental"
    note on on-demand views say nothing a CLI user can act on; our own warnings still show."""
    import warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message="On demand feature view is an experimental feature")


def main() -> None:
    """Entry point: user-facing errors print one clear message and exit 2, no traceback."""
    _quiet_library_warnings()
    try:
        app(standalone_mode=False)
    except MspaError as e:
        console.print(f"[bold red]error:[/] {e}", highlight=False)
        _exit(2)
    except typer.Exit as e:
        _exit(e.exit_code)
    except typer.Abort:
        console.print("aborted")
        _exit(130)
    except Exception as e:  # click usage errors
        import click

        if isinstance(e, click.ClickException):
            e.show()
            _exit(e.exit_code)
        raise
    _exit(0)
