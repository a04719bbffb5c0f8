"""Where library noise goes when ``mspa`` runs: the run's log file, not the terminal.

The CLI entry (:func:`mspa_features.cli.main`) calls :func:`install` once, before any heavy
import. From then on:

- every Python warning (ibis and duckdb deprecations, SQLAlchemy via MLflow, Feast's
  "on demand feature view is an experimental feature", transformers ``FutureWarning``...) is
  written to the log file instead of stderr. Filters are not enough: Feast resets them at import
  (``warnings.simplefilter("once", ...)`` in several of its modules), so the display itself is
  replaced (:func:`warnings.showwarning`);
- log records of third-party loggers (MLflow's "Creating initial MLflow database tables",
  Feast, py4j...) go to the log file; MLflow is asked not to install its own stderr handler.
  Warnings of our own loggers (``mspa_features``, ``ranker_hooks``, ``spark_jobs``) still
  print on stderr as ``warning: ...``: they are meant for the user;
- third-party tqdm bars (transformers' "Loading weights", Hugging Face downloads) are off;
  our progress bars are rich's and stay visible;
- when stdout / stderr is not a terminal, ANSI escape codes written to it (Feast prints
  colorama colours whatever the stream) are removed;
- a JVM started inside :func:`child_output_to_log` (the Spark session) writes its start-up
  banner, ``WARNING: Using incubator modules`` and log4j lines into the log file; the log4j2
  configuration :data:`LOG4J2_PROPERTIES` (given to the JVM through ``SPARK_SUBMIT_OPTS``)
  sends Spark's own log to it as well, whether or not the session starts inside that block.

The log file is ``<workspace>/logs/mspa-<command>-<time>-<pid>.log``, the workspace being the
one of the config file given on the command line (an ablation config's ``run_config`` is
followed), else ``workspace``. It is created on the first line written; a command that
captures nothing leaves no file.

duckdb's nanobind "leaked instance" report at interpreter exit is the entry's business: it
leaves with ``os._exit`` once output is flushed (``mspa_features.cli._exit``).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TextIO

# CSI and OSC sequences (colours, cursor moves, hyperlinks): what a pipe or a file must not get.
ANSI_RE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
# Loggers whose warnings are meant for the user: printed on stderr besides the log file.
OWN_LOGGERS = ("mspa_features", "ranker_hooks", "spark_jobs")
# Environment set (unless the user set it) before any library is imported.
QUIET_ENV: dict[str, str] = {
    "MLFLOW_CONFIGURE_LOGGING": "false",  # MLflow's stderr handler: records go to the log
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # also turns off transformers' "Loading weights"
    "TQDM_DISABLE": "1",  # third-party tqdm bars (ours are rich progress bars)
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}
# Spark's log4j2 configuration under the CLI: everything at WARN and above into the run's log
# file (``-Dmspa.log.file``), only errors on the console. A custom configuration also stops
# Spark's "Using Spark's default log4j profile" and "Setting default log level" banners.
LOG4J2_PROPERTIES = """\
status = error
name = mspa
appender.file.type = File
appender.file.name = file
appender.file.fileName = ${sys:mspa.log.file}
appender.file.append = true
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = %d{yyyy-MM-dd HH:mm:ss} %p %c{1}: %m%n%ex
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.filter.threshold.type = ThresholdFilter
appender.console.filter.threshold.level = error
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %p %c{1}: %m%n%ex
rootLogger.level = warn
rootLogger.appenderRef.file.ref = file
rootLogger.appenderRef.console.ref = console
"""


class _Sink:
    """The run's log file, opened on the first line written to it."""

    def __init__(self, path: Path):
        self.path = path
        self._fh: IO[str] | None = None

    def stream(self) -> IO[str]:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        return self._fh

    def write(self, text: str) -> None:
        fh = self.stream()
        fh.write(text if text.endswith("\n") else text + "\n")

    def flush(self) -> None:
        if self._fh is not None:
            self._fh.flush()


class _StripAnsi:
    """A text stream that drops ANSI escape codes on their way to a non-terminal ``inner``."""

    def __init__(self, inner: TextIO):
        self._inner = inner

    def write(self, text: str) -> int:
        self._inner.write(ANSI_RE.sub("", text))
        return len(text)

    def writelines(self, lines: Sequence[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:  # flush, fileno, isatty, encoding, buffer...
        return getattr(self._inner, name)


_sink: _Sink | None = None


def log4j2_properties() -> Path:
    """:data:`LOG4J2_PROPERTIES` as a file the JVM can read (written once per content, in the
    temporary folder: nothing in the workspace for a command that never starts Spark)."""
    import hashlib
    import tempfile

    digest = hashlib.sha256(LOG4J2_PROPERTIES.encode()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / f"mspa-log4j2-{digest}.properties"
    if not path.is_file():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(LOG4J2_PROPERTIES, encoding="utf-8")
        tmp.replace(path)
    return path


def log_path() -> Path | None:
    """The log file of this process (``None`` unless :func:`install` ran)."""
    return None if _sink is None else _sink.path


def _yaml_mapping(path: Path) -> dict:
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return raw if isinstance(raw, dict) else {}


def workspace_from_argv(argv: Sequence[str]) -> Path:
    """The workspace of the first config file on the command line, else ``workspace``.

    A run config names it (``workspace:``, default ``workspace``, relative to the current
    folder as :class:`mspa_features.config.Workspace` takes it); an ablation config points at
    its run config (``run_config:``, relative to the ablation config's folder). A file that
    cannot be read is skipped: the command itself reports it.
    """
    for arg in argv:
        if not arg.endswith((".yaml", ".yml")) or not Path(arg).is_file():
            continue
        doc = _yaml_mapping(Path(arg))
        if not doc.get("workspace") and doc.get("run_config"):
            run = Path(str(doc["run_config"]))
            run = run if run.is_absolute() else Path(arg).parent / run
            doc = _yaml_mapping(run) if run.is_file() else {}
        if doc:
            return Path(str(doc.get("workspace") or "workspace"))
    return Path("workspace")


def default_log_file(argv: Sequence[str]) -> Path:
    """``<workspace>/logs/mspa-<command>-<time>-<pid>.log`` for the command line ``argv``."""
    words = []
    for arg in argv:
        if arg.startswith("-") or not re.fullmatch(r"[a-z][a-z0-9_-]*", arg):
            break
        words.append(arg)
    command = "-".join(words[:2]) or "mspa"
    stamp = time.strftime("%Y%m%dT%H%M%S")
    return workspace_from_argv(argv) / "logs" / f"mspa-{command}-{stamp}-{os.getpid()}.log"


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    if _sink is None:  # pragma: no cover - only installed together with a sink
        return
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    _sink.write(f"{stamp} {category.__name__} {filename}:{lineno}: {message}")


class _SinkHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if _sink is None:  # pragma: no cover
            return
        try:
            _sink.write(self.format(record))
        except (OSError, ValueError):  # pragma: no cover - a log line never breaks a run
            self.handleError(record)


def install(argv: Sequence[str] | None = None, *, log_file: str | Path | None = None) -> Path:
    """Send library warnings, logs and stray ANSI codes away from the terminal (see the module
    docstring). Idempotent; returns the log file's path.

    Args:
        argv: the command line (default ``sys.argv[1:]``): names the log file.
        log_file: the log file itself (default :func:`default_log_file`; ``MSPA_LOG_FILE``
            overrides both).
    """
    global _sink
    if _sink is not None:
        return _sink.path
    argv = list(sys.argv[1:] if argv is None else argv)
    for k, v in QUIET_ENV.items():
        os.environ.setdefault(k, v)
    chosen = os.environ.get("MSPA_LOG_FILE") or log_file or default_log_file(argv)
    _sink = _Sink(Path(chosen).absolute())

    warnings.showwarning = _show_warning
    handler = _SinkHandler(logging.INFO)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")
    )
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    user = logging.StreamHandler(sys.stderr)
    user.setLevel(logging.WARNING)
    user.setFormatter(logging.Formatter("warning: %(message)s"))
    for name in OWN_LOGGERS:
        logging.getLogger(name).addHandler(user)

    if not sys.stdout.isatty():
        sys.stdout = _StripAnsi(sys.stdout)  # type: ignore[assignment]
    if not sys.stderr.isatty():
        sys.stderr = _StripAnsi(sys.stderr)  # type: ignore[assignment]

    # Spark's JVM reads its log4j2 configuration from here: Spark's log goes to the same file.
    opts = os.environ.get("SPARK_SUBMIT_OPTS", "")
    if "log4j2.configurationFile" not in opts:
        os.environ["SPARK_SUBMIT_OPTS"] = " ".join(
            filter(
                None,
                [
                    opts,
                    # Quoted: Spark's launcher splits this variable like a shell would.
                    f'"-Dlog4j2.configurationFile=file:{log4j2_properties()}"',
                    f'"-Dmspa.log.file={_sink.path}"',
                ],
            )
        )
    return _sink.path


@contextmanager
def child_output_to_log() -> Iterator[None]:
    """Processes started inside this block write their stdout and stderr to the log file.

    For the Spark session: its JVM prints ``WARNING: Using incubator modules`` and, later,
    anything log4j does not catch on the descriptors it inherits, below Python. Without
    :func:`install` (library use, tests) this does nothing. Python's own output in the block
    goes to the log file too; keep the block to the process start.
    """
    if _sink is None:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    fh = _sink.stream()
    saved = [os.dup(1), os.dup(2)]
    try:
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


@contextmanager
def library_prints_to_log() -> Iterator[None]:
    """Python-level ``print`` output of a library call (Feast's ``Materializing ... into the
    sqlite online store`` lines) goes to the log file instead of the terminal, where it lands
    between the progress bars. Without :func:`install` (library use, tests) it stays on
    stdout."""
    if _sink is None:
        yield
        return
    import contextlib

    with contextlib.redirect_stdout(_sink.stream()):
        yield


def flush() -> None:
    """Flush the log file (the entry leaves with ``os._exit``, which flushes nothing)."""
    if _sink is not None:
        _sink.flush()


__all__ = [
    "ANSI_RE",
    "LOG4J2_PROPERTIES",
    "child_output_to_log",
    "default_log_file",
    "flush",
    "install",
    "log4j2_properties",
    "log_path",
    "workspace_from_argv",
]
