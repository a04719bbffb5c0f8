"""Import contracts (issue 15: 4): imports follow the data flow, and no module imports itself
back through others.

The contracts live in ``pyproject.toml`` (``[tool.importlinter]``) and ``.ci/run`` runs
``lint-imports`` too; this test runs the same command, proves that it does fail on an import
against the data flow, and checks what import-linter has no contract for: no cycle between
modules (function-level and ``TYPE_CHECKING`` imports included).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("mspa_features", "ranker_hooks", "spark_jobs")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    if not LINT_IMPORTS.exists():
        pytest.fail(f"{LINT_IMPORTS} missing: install the dev extra (import-linter)")
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        check=False,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200", **(env or {})},  # no contract name wrapped
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_import_contracts_hold() -> None:
    res = lint_imports(ROOT, {"PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 broken" in res.stdout, res.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        # the library reaching for the hooks (what mspa_features/pipeline.py did)
        (
            "mspa_features/serving/reads.py",
            "import ranker_hooks.ablation.run",
            "library (all but cli) imports no ranker_hooks, spark_jobs or pyspark",
        ),
        # an upstream stage importing a downstream one
        (
            "mspa_features/data/contracts.py",
            "import mspa_features.compose.composer",
            "library stages import only the stages upstream of them",
        ),
        # the report importing the runner (what report.py did under TYPE_CHECKING)
        (
            "ranker_hooks/ablation/report.py",
            "import ranker_hooks.ablation.run",
            "ablation reports and tracking depend on the result and config types only",
        ),
    ],
)
def test_an_import_against_the_data_flow_fails(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    target.write_text(target.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")
    res = lint_imports(tmp_path, {"PYTHONPATH": str(tmp_path)})
    assert res.returncode == 1, res.stdout + res.stderr
    broken = res.stdout.split("Broken contracts")[-1]
    assert contract in broken, res.stdout


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    scc = []
                    while True:
                        m = stack.pop()
                        on_stack.discard(m)
                        scc.append(m)
                        if m == node:
                            break
                    if len(scc) > 1:
                        out.append(sorted(scc))
    return out


def test_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_modules() -> None:
    import grimp

    g = grimp.build_graph(*PACKAGES)
    graph = {m: set(g.find_modules_directly_imported_by(m)) for m in g.modules}
    # A cycle is broken by moving what both sides need into a module below them (as
    # config_base.py did for config <-> compose.prompts, ablation/results.py for run <-> report).
    assert _cycles(graph) == []
