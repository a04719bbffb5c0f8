"""The ``mspa`` command line: one module per noun, heavy imports inside commands."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer
from rich.console import Console
from rich.markup import escape

from mspa_features import logs
from mspa_features.cli import ablate as ablate_cmd
from mspa_features.cli import align as align_cmd
from mspa_features.cli import backfill as backfill_cmd
from mspa_features.cli import compact as compact_cmd
from mspa_features.cli import compose as compose_cmd
from mspa_features.cli import data as data_cmd
from mspa_features.cli import drift as drift_cmd
from mspa_features.cli import eval as eval_cmd
from mspa_features.cli import gallery as gallery_cmd
from mspa_features.cli import lis as lis_cmd
from mspa_features.cli import nearest as nearest_cmd
from mspa_features.cli import recall as recall_cmd
from mspa_features.cli import register as register_cmd
from mspa_features.cli import run as run_cmd
from mspa_features.cli.common import console
from mspa_features.errors import MspaError

err_console = Console(stderr=True)

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
drift_cmd.install(app)
gallery_cmd.install(app)
recall_cmd.install(app)
compact_cmd.install(app)


def _exit(code: int) -> None:
    """Leave without interpreter finalization once output is flushed and atexit hooks ran.

    duckdb's nanobind bindings print pages of "leaked instance" reports at finalization (feast
    imports duckdb); they are harmless and would bury the results table a user just read.
    """
    import atexit
    import os

    atexit._run_exitfuncs()
    logs.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _usage_line(e: Exception) -> str:
    """One line for a usage error: the command path, the problem, where help is."""
    ctx = getattr(e, "ctx", None)
    where = ctx.command_path if ctx is not None else "mspa"
    fmt = getattr(e, "format_message", None)
    message = fmt() if callable(fmt) else str(e)
    message = " ".join(message.replace("Value error, ", "").split()) or type(e).__name__
    return f"error: {where}: {message} (see '{where} --help')"


def _is_typer_error(e: BaseException) -> bool:
    """typer 0.29 bundles its own click (``typer._click``): its exceptions are not click's."""
    if isinstance(e, typer.TyperException):
        return True
    try:
        import click
    except ImportError:  # pragma: no cover - typer no longer needs click
        return False
    return isinstance(e, click.ClickException)


def run_cli(argv: Sequence[str] | None = None) -> int:
    """Run the CLI on ``argv`` (default ``sys.argv[1:]``) and return the exit status.

    Usage errors of every command (a missing argument, an unknown option or command, a value
    that is not one of the choices or not of the option's type, a ``typer.BadParameter``
    raised by a command) print one line on stderr and return 2, as do library errors
    (:class:`MspaError`, one clear message); no traceback for either.
    """
    try:
        rv = app(args=argv, prog_name="mspa", standalone_mode=False)
    except MspaError as e:
        console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        return 2
    except typer.Exit as e:
        return e.exit_code
    except (typer.Abort, KeyboardInterrupt):
        console.print("aborted")
        return 130
    except Exception as e:
        if not _is_typer_error(e):
            raise
        if type(e).__name__ == "NoArgsIsHelpError":  # typer already printed the help
            return 2
        code = int(getattr(e, "exit_code", 1))
        if code == 2 or hasattr(e, "ctx"):
            err_console.print(_usage_line(e), highlight=False, markup=False, soft_wrap=True)
            return 2
        err_console.print(f"error: {e.format_message()}", highlight=False, markup=False)  # type: ignore[attr-defined]
        return code
    # Without standalone mode, a `typer.Exit` raised inside a command comes back as its code.
    return rv if isinstance(rv, int) else 0


def main() -> None:
    """Entry point: user-facing errors print one clear line and exit 2, no traceback.

    Library warnings, third-party logs and Spark's JVM output go to the run's log file, not
    the terminal (:mod:`mspa_features.logs`), set up before any library is imported.
    """
    logs.install()
    _exit(run_cli())
