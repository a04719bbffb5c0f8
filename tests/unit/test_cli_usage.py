"""Every usage error of every ``mspa`` command prints one line and exits 2 (issue 14: 8).

The commands are not listed by hand: the typer app is introspected, so a command added later is
walked too. Per command: a missing required argument/option, an unknown option, a value outside
a choice, and a non-number/non-date for every typed option; per group: an unknown subcommand.
Parsing fails before any command body runs, so nothing here reads a file.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from enum import Enum
from typing import Any

import pytest
import typer.main

from mspa_features.cli import app, run_cli

ROOT = typer.main.get_command(app)


def _walk(cmd: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, cmd
    for name, sub in sorted(getattr(cmd, "commands", {}).items()):
        yield from _walk(sub, (*path, name))


NODES = list(_walk(ROOT, ()))
COMMANDS = [(p, c) for p, c in NODES if not hasattr(c, "commands")]
GROUPS = [(p, c) for p, c in NODES if hasattr(c, "commands")]


def _annotation(param: Any) -> Any:
    return param.type_descriptor.annotation


def _choices(param: Any) -> list[str]:
    td = param.type_descriptor
    if not td.is_choice:
        return []
    return [c.value if isinstance(c, Enum) else str(c) for c in td.choices]


def _good_value(param: Any) -> str:
    choices = _choices(param)
    if choices:
        return choices[0]
    ann = _annotation(param)
    if ann is int:
        return "1"
    if ann is float:
        return "1.0"
    if ann is dt.datetime:
        return "2024-01-01"
    return "cfg.yaml"


def _required(cmd: Any) -> list[str]:
    """Arguments for every required parameter of ``cmd`` (valid values, parse-wise)."""
    args: list[str] = []
    opts: list[str] = []
    for p in cmd.params:
        if not p.required:
            continue
        if type(p).__name__ == "TyperArgument":
            args.append(_good_value(p))
        else:
            opts += [p.opts[0], _good_value(p)]
    return [*opts, *args]


def _invoke(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = run_cli(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def _one_line(rc: int, out: str, err: str, argv: list[str]) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, (argv, rc, out, err)
    assert out == "", (argv, out)
    assert len(lines) == 1, (argv, err)
    assert "Traceback" not in err
    assert lines[0].startswith("error: mspa"), lines[0]
    return lines[0]


def test_walk_finds_every_command() -> None:
    """The walk sees the documented commands (so the tests below cannot pass on an empty app)."""
    names = {" ".join(p) for p, _ in COMMANDS}
    assert {
        "run",
        "backfill",
        "register",
        "ablate",
        "lis",
        "align",
        "data fetch",
        "data validate",
        "compose users",
        "eval u2a",
        "features online",
        "runs compare",
        "runs log",
    } <= names
    assert {" ".join(p) for p, _ in GROUPS} >= {"", "data", "compose", "eval", "features", "runs"}


@pytest.mark.parametrize(
    "path", [p for p, c in COMMANDS if any(x.required for x in c.params)], ids=" ".join
)
def test_missing_required_parameter(path: tuple[str, ...], capsys) -> None:
    argv = list(path)
    line = _one_line(*_invoke(argv, capsys), argv)
    assert line.startswith(f"error: mspa {' '.join(path)}: Missing "), line
    assert f"(see 'mspa {' '.join(path)} --help')" in line


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=" ".join)
def test_unknown_option(path: tuple[str, ...], capsys) -> None:
    cmd = dict(COMMANDS)[path]
    argv = [*path, *_required(cmd), "--no-such-option"]
    line = _one_line(*_invoke(argv, capsys), argv)
    assert "No such option: --no-such-option" in line


BAD_CHOICES = [
    (p, param.name) for p, c in COMMANDS for param in c.params if _choices(param)
]  # fmt: skip


def test_there_are_choices_to_try() -> None:
    assert ("data", "fetch") in {p for p, _ in BAD_CHOICES}
    assert {("register",), ("features", "online"), ("lis",)} <= {p for p, _ in BAD_CHOICES}


@pytest.mark.parametrize(("path", "name"), BAD_CHOICES, ids=lambda x: str(x))
def test_value_outside_the_choices(path: tuple[str, ...], name: str, capsys) -> None:
    cmd = dict(COMMANDS)[path]
    param = next(p for p in cmd.params if p.name == name)
    rest = [a for a in _required(cmd)]
    if type(param).__name__ == "TyperArgument":
        args = [a for a in rest if a not in _choices(param)] + ["foo"]
        argv = [*path, *args]
    else:
        argv = [*path, *rest, param.opts[0], "foo"]
    line = _one_line(*_invoke(argv, capsys), argv)
    assert "Invalid value" in line and "'foo' is not one of" in line, line
    for choice in _choices(param):
        assert repr(choice) in line


TYPED = [
    (p, param.name)
    for p, c in COMMANDS
    for param in c.params
    if _annotation(param) in (int, float, dt.datetime) and not param.required
]


@pytest.mark.parametrize(("path", "name"), TYPED, ids=lambda x: str(x))
def test_value_of_the_wrong_type(path: tuple[str, ...], name: str, capsys) -> None:
    cmd = dict(COMMANDS)[path]
    param = next(p for p in cmd.params if p.name == name)
    argv = [*path, *_required(cmd), param.opts[0], "not-a-value"]
    line = _one_line(*_invoke(argv, capsys), argv)
    assert "Invalid value" in line and param.opts[0] in line, line


@pytest.mark.parametrize("path", [p for p, _ in GROUPS], ids=lambda p: " ".join(p) or "mspa")
def test_unknown_subcommand(path: tuple[str, ...], capsys) -> None:
    argv = [*path, "nosuchcmd"]
    line = _one_line(*_invoke(argv, capsys), argv)
    assert "No such command 'nosuchcmd'" in line


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["run"], "error: mspa run: Missing argument 'config'."),
        (["data", "fetch", "foo"], "error: mspa data fetch: Invalid value for 'source': 'foo'"),
        (["nosuchcmd"], "error: mspa: No such command 'nosuchcmd'."),
        (["runs", "compare", "A", "B"], "give --tracking-uri or --run-config"),
        (["ablate", "x.yaml", "--seeds", "1,x"], "'1,x' is not a comma-separated list"),
        (["lis", "x.yaml", "--seeds", ","], "',' holds no seed"),
        (["register", "x.yaml", "--online", "sqlite", "--redis", "h:1"], "--redis needs"),
    ],
)
def test_issue_members_one_line(argv: list[str], expected: str, capsys) -> None:
    """The issue's inputs, and usage errors raised inside a command body (typer.BadParameter)."""
    line = _one_line(*_invoke(argv, capsys), argv)
    assert expected in line, line


def test_no_arguments_prints_help_and_exits_2(capsys) -> None:
    rc, out, err = _invoke([], capsys)
    assert rc == 2 and "Usage: mspa" in out and "Traceback" not in out + err


def test_typer_exit_code_passes_through(capsys) -> None:
    assert _invoke(["--help"], capsys)[0] == 0
    assert _invoke(["runs", "log", "--help"], capsys)[0] == 0


def test_choice_enums_match_the_library() -> None:
    """The CLI's choice lists are the library's (kept in the CLI to keep its import light)."""
    from mspa_features.cli.lis import LeakKind
    from mspa_features.cli.register import Online
    from mspa_features.serving.materialize import ONLINE_KINDS
    from ranker_hooks.lis.variants import LIS_KINDS

    assert [o.value for o in Online] == list(ONLINE_KINDS)
    assert [k.value for k in LeakKind] == list(LIS_KINDS)
