"""Console, tables and progress shared by the CLI commands."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console(stderr=False)
_M = TypeVar("_M", bound=BaseModel)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: <message>`` as one unwrapped line and leave with ``code``."""
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _config_arg(what: str) -> Any:
    return typer.Argument(help=f"{what} config YAML", show_default=False, metavar="CONFIG")


# The config file as a command's first argument, and the old spelling kept for ablate, lis and
# align (resolved by config_file).
# the run config and Feast repo of commands that read backfilled features (register, nearest,
# drift, compact, recall, gallery)
ConfigArg = Annotated[Path, typer.Argument(help="run config YAML (backfill done)")]
RepoOpt = Annotated[Path, typer.Option("--repo", help="Feast repo folder (yaml files)")]
# the tracking and output options of the report commands (drift, recall, compact)
MlflowUriOpt = Annotated[
    str | None,
    typer.Option("--mlflow-uri", help="tracking URI (default: SQLite in the workspace)"),
]
NoMlflowOpt = Annotated[bool, typer.Option("--no-mlflow", help="write files only")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print the report as JSON")]
AblationConfigArg = Annotated[Path | None, _config_arg("ablation")]
AlignConfigArg = Annotated[Path | None, _config_arg("alignment")]
DeprecatedConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", hidden=True, help="deprecated: pass CONFIG instead"),
]
# the run config an ablation-style command (ablate, lis) reads, overriding its config's
RunConfigOpt = Annotated[
    Path | None, typer.Option(help="run config YAML (overrides the ablation's run_config)")
]


def config_file(positional: Path | None, option: Path | None, command: str) -> Path:
    """The config file of ``command``: ``CONFIG`` as its first argument, as in every command.

    ``--config`` / ``-c`` (the old spelling of ``ablate``, ``lis`` and ``align``, where ``-c``
    meant something else than ``--composer`` elsewhere) still works, with a deprecation note.

    Raises:
        typer.BadParameter: no config, or one given both ways (a usage error: exit 2).
    """
    if positional is not None and option is not None:
        raise typer.BadParameter(
            "give the config once, as CONFIG (not also --config)", param_hint="CONFIG"
        )
    if option is not None:
        Console(stderr=True).print(
            f"note: '--config'/'-c' is deprecated for mspa {command}: pass the file as its "
            f"first argument (mspa {command} {option})",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
        return option
    if positional is None:
        raise typer.BadParameter("missing argument CONFIG (the config YAML)", param_hint="CONFIG")
    return positional


def parse_seeds(text: str, option: str = "--seeds") -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``; anything else is a usage error naming ``option``.

    Raises:
        typer.BadParameter: not a non-empty comma-separated list of integers.
    """
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError as e:
        raise typer.BadParameter(
            f"{text!r} is not a comma-separated list of integers", param_hint=option
        ) from e
    if not seeds:
        raise typer.BadParameter(f"{text!r} holds no seed", param_hint=option)
    return seeds


def override(model: _M, updates: Mapping[str, Any], options: Mapping[str, str]) -> _M:
    """``model`` validated again with ``updates`` (command-line overrides of config fields).

    Raises:
        typer.BadParameter: an override is invalid; names the option (``options`` maps field
            -> option) and pydantic's reason, never a traceback.
    """
    if not updates:
        return model
    try:
        return type(model).model_validate({**model.model_dump(), **updates})
    except ValidationError as e:
        err = e.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else ""
        raise typer.BadParameter(
            f"{err['msg']} (got {updates.get(field, '?')!r})",
            param_hint=options.get(field, field or "option"),
        ) from e


def spark_reader(cfg):  # type: ignore[no-untyped-def]
    """The Spark reader for ``data.source: spark`` (the CLI wires spark_jobs into the library).

    Here, not in ``cli/data.py``, because the main job needs it too and ``cli/data.py`` imports
    the main job's stages: keeping it below both keeps the two modules out of a cycle."""
    if cfg.data.source != "spark":
        return None
    from spark_jobs.sources import export_tables

    return export_tables


@contextmanager
def spark_validator(cfg):  # type: ignore[no-untyped-def]
    """The Spark validation engine for ``cfg`` (``data.validation_engine`` auto or spark), or
    None (pandas, or the MovieLens preset, whose converter validates in pandas). Its session
    starts only if a contract is handed to it, on ``data.spark``'s master (``local[*]``
    otherwise), and stops on exit."""
    if cfg.data.validation_engine == "pandas" or cfg.data.source == "movielens":
        yield None
        return
    from spark_jobs.validate import SparkValidator

    read = cfg.data.spark
    validator = SparkValidator(
        master=read.master if read is not None else "local[*]",
        conf=read.conf if read is not None else None,
    )
    try:
        yield validator
    finally:
        validator.stop()


#: In a progress step's name, what follows this is the step's current detail: a display keeps
#: one row per name before it and shows the detail in that row ("template preferences - compose
#: + encode", then "template preferences - publish partitions" on the same row).
STEP_DETAIL = " - "


def entity_label(entity: str) -> str:
    """An entity as the main job's output names it: ``author_profiles`` reads ``authors`` (the
    progress rows fit beside the bar at 80 columns), ``preferences`` stays."""
    return "authors" if entity == "author_profiles" else entity


def shown_path(path: str | Path, cwd: Path | None = None) -> str:
    """``path`` as a user copies it: relative to ``cwd`` (default: the working directory) when
    it lies under it, which keeps it short; as given otherwise (a URI such as
    ``sqlite:////abs/mlflow.db`` too)."""
    if "://" in str(path):
        return str(path)
    p = Path(path)
    base = Path.cwd() if cwd is None else cwd
    try:
        return str(p.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


def print_wrapped(
    out: Console,
    text: str,
    *,
    prefix: str = "",
    indent: int | None = None,
    prefix_style: str | None = None,
) -> None:
    """``prefix`` + ``text`` wrapped at ``out``'s width with a hanging indent (``indent``
    spaces, default the prefix's width), printed as plain text (no markup is read from
    ``text``).

    Words are never broken, on hyphens or otherwise: a number such as ``-0.0048`` or a path
    stays whole, and a word longer than the line stays on one line (the terminal wraps it, no
    newline is inserted, so it copies whole)."""
    import textwrap

    from rich.text import Text

    hang = " " * (len(prefix) if indent is None else indent)
    lines = textwrap.wrap(
        prefix + text,
        width=max(out.width, len(hang) + 20),
        subsequent_indent=hang,
        break_long_words=False,
        break_on_hyphens=False,
    )
    body = Text("\n".join(lines))
    if prefix_style and prefix:
        body.stylize(prefix_style, 0, len(prefix.rstrip()))
    out.print(body, soft_wrap=True, highlight=False)


def print_path(out: Console, label: str, path: str | Path) -> None:
    """``label:`` on one line, then ``path`` (:func:`shown_path`) indented on its own line and
    never broken by an inserted newline, so a double-click or a line copy takes it whole."""
    from rich.text import Text

    out.print(Text(f"{label}:"), highlight=False)
    out.print(Text(f"  {shown_path(path)}"), soft_wrap=True, highlight=False)


def counts_table(title: str, counts: Iterable[object]) -> Table:
    """Input = accepted + quarantined per contract, with the top quarantine reasons."""
    t = Table(title=title, title_justify="left")
    for col in ("contract", "input", "accepted", "quarantined", "top reasons"):
        t.add_column(
            col, justify="right" if col in ("input", "accepted", "quarantined") else "left"
        )
    for c in counts:
        reasons = sorted(getattr(c, "reasons", {}).items(), key=lambda kv: -kv[1])[:3]
        t.add_row(
            c.contract,
            f"{c.n_input:,}",
            f"{c.n_accepted:,}",
            f"{c.n_quarantined:,}",
            ", ".join(f"{k} ({v})" for k, v in reasons) or "-",
        )
    return t


def metric_table(title: str, rows: dict[str, dict[str, float]], columns: Sequence[str]) -> Table:
    t = Table(title=title, title_justify="left")
    t.add_column("scorer")
    for c in columns:
        t.add_column(c, justify="right")
    for name, vals in rows.items():
        t.add_row(name, *(f"{vals[c]:.4f}" if c in vals else "-" for c in columns))
    return t


@contextmanager
def progress_bar() -> Iterator[Callable[[str, int, int], None]]:
    """A rich progress display; yields ``step(stage, done, total)`` that creates/updates bars."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as prog:
        tasks: dict[str, int] = {}

        def step(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = prog.add_task(stage, total=total)
            prog.update(tasks[stage], completed=done, total=total)

        yield step


def u2a_table(res: dict, num_candidates: Sequence[int]) -> Table:
    """The U2A/A2A table of ``mspa eval u2a`` and the main job: one column per composer.

    Each metric prints as ``value [lo, hi]``, its 95 % bootstrap CI over users (A2A: triples)
    from the composer's ``ci``; ``*`` marks an interval over fewer than ``MIN_USERS_FOR_CI``
    units, which the caption says is not trustworthy.
    """
    from mspa_features.evaluation.metrics import MIN_USERS_FOR_CI

    names = list(res["composers"])
    pool = res.get("author_pool", "all")
    authors = f"{res['n_authors']:,} authors" if "n_authors" in res else "all authors"
    flagged: set[str] = set()

    def with_ci(r: dict, key: str) -> str:
        ci = r.get("ci", {}).get(key)
        if ci is None:
            return f"{r[key]:.3f}"
        if not ci["trustworthy"]:
            flagged.add("triples" if key == "a2a" else "users")
        star = "" if ci["trustworthy"] else "*"
        return f"{r[key]:.3f} [{ci['ci_low']:.3f}, {ci['ci_high']:.3f}]{star}"

    t = Table(
        title=f"U2A/A2A on {res['cohort_users']} of {res['test_users_total']} test users, "
        f"{authors}{' (the cohort pool)' if pool == 'cohort' else ''}, "
        f"{res.get('a2a_triples', '?')} A2A triples; value [95% bootstrap CI over users, "
        f"A2A over triples]",
        title_justify="left",
        caption_justify="left",
    )
    t.add_column("metric")
    for n in names:
        t.add_column(n, justify="right")
    rows: list[tuple[str, Callable[[dict], str]]] = []
    for m in num_candidates:
        rows.append(
            (
                f"acc@{m} gen",
                lambda r, m=m: with_ci(r, f"acc@{m}") if f"acc@{m}" in r else "-",
            )
        )
        rows.append(
            (
                f"acc@{m} gen std",
                lambda r, m=m: f"{r[f'acc@{m}_std']:.3f}" if f"acc@{m}_std" in r else "-",
            )
        )
        rows.append((f"acc@{m} emb", lambda r, m=m: with_ci(r, f"acc@{m}_emb")))
    for k in ("recall@5", "ndcg@5", "recall@10", "ndcg@10"):
        rows.append((k, lambda r, k=k: with_ci(r, k)))
    rows.append(("a2a rate", lambda r: with_ci(r, "a2a") if r.get("a2a") is not None else "-"))

    def _parse(r: dict) -> str:
        # The composer's preference texts, counted as the parse line under the table counts
        # them; a composer that decodes nothing (the template) has no parse to report.
        if r.get("decoding", "none") == "none" and "compose" not in r.get("parse", {}):
            return "no LLM"
        c = r.get("parse", {}).get("preferences") or r.get("parse", {}).get("compose")
        return "/".join(str(c[k]) for k in ("ok", "repaired", "failed")) if c else "-"

    rows.append(("preferences ok/rep/fail", _parse))
    rows.append(("seconds", lambda r: f"{r['seconds']:.0f}"))
    for label, fn in rows:
        t.add_row(label, *(fn(res["composers"][n]) for n in names))
    gens = res.get("generations")
    t.caption = (
        f"acc@m gen: mean over {gens} seeded generations (std: across them), its CI over users. "
        if gens
        else ""
    )
    if flagged:
        units = " / ".join(sorted(flagged, reverse=True))
        t.caption += (
            f"* interval over fewer than {MIN_USERS_FOR_CI} {units}: too few to be read as a 95% "
            f"interval, not trustworthy (this cohort has {res['cohort_users']} users)."
        )
    return t
