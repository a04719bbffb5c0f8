"""One CLI grammar: every command takes its config file as the first argument (CONFIG); the
old ``--config``/``-c`` of ablate, lis and align still works with a deprecation note."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from mspa_features.cli import app, run_cli

REPO = Path(__file__).resolve().parents[2]
ALIGN = str(REPO / "configs" / "align" / "smollm2_cpu.yaml")


def _commands(group, prefix: tuple[str, ...] = ()):
    # typer 0.29 bundles its own click: duck-type groups and arguments.
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, (*prefix, name))
        else:
            yield (*prefix, name), cmd


def test_every_config_is_the_first_positional_argument() -> None:
    root = typer.main.get_command(app)
    seen = []
    for path, cmd in _commands(root):
        params = [p for p in cmd.params if p.name == "config"]
        if not params:
            continue
        seen.append(" ".join(path))
        (p,) = params
        assert p.param_type_name == "argument", f"mspa {' '.join(path)}: config is not positional"
        first = next(q for q in cmd.params if q.param_type_name == "argument")
        assert first is p, f"mspa {' '.join(path)}: CONFIG is not the first argument"
    assert {"run", "backfill", "ablate", "lis", "align", "register"} <= set(seen)


def test_positional_and_deprecated_option_both_work(capsys) -> None:
    assert run_cli(["align", ALIGN, "--check"]) == 0
    assert "deprecated" not in capsys.readouterr().err
    assert run_cli(["align", "-c", ALIGN, "--check"]) == 0
    err = capsys.readouterr().err
    assert "'--config'/'-c' is deprecated for mspa align" in err and f"mspa align {ALIGN}" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["align", "--check"], "missing argument CONFIG"),
        (["ablate"], "missing argument CONFIG"),
        (["lis", "x.yaml", "-c", "y.yaml"], "give the config once"),
    ],
)
def test_config_usage_errors_are_one_line_exit_2(capsys, args, message) -> None:
    assert run_cli(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
