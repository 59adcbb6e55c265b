"""Imports that run one way (docs/design/architecture.md), the rules import-linter cannot
state (`make lint` runs it with .importlinter, and this file):

- no import cycle between hpchub's modules, counting imports only type checkers see;
- the leaves import nothing of hpchub;
- no module imports another module's private (``_name``) names;
- no import of an hpchub module inside a function (a lazy import hides a cycle).
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "images" / "hub" / "hpchub"
# Modules every other layer may use, which use nothing of hpchub themselves.
LEAVES = (
    "hpchub.serverstate",
    "hpchub.metrics",
    "hpchub.claims",
    "hpchub.hostlist",
    "hpchub.urls",
    "hpchub.values",
    "hpchub.endings",
    "hpchub.spawnsteps",
)


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> list[tuple[str, ast.AST, list[str]]]:
    """(imported hpchub module, the import node, the names imported from it)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [a.name for a in node.names]
            for cand in [target] + [f"{target}.{n}" for n in names]:
                if cand in known and cand != name:
                    found.append((cand, node, names if cand == target else []))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in known and alias.name != name:
                    found.append((alias.name, node, []))
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: {t for t, _, _ in imports(name, path, known)} for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles() -> None:
    assert cycles(graph()) == []


@pytest.mark.parametrize("leaf", LEAVES)
def test_leaves_import_nothing_of_hpchub(leaf: str) -> None:
    assert graph()[leaf] == set(), f"{leaf} imports {sorted(graph()[leaf])}"


def test_no_module_imports_anothers_private_names() -> None:
    known = modules()
    found = [
        f"{name} imports {n} from {target}"
        for name, path in known.items()
        for target, _, names in imports(name, path, known)
        for n in names
        if n.startswith("_") and n != "__version__"
    ]
    assert found == []


def test_no_import_of_hpchub_inside_a_function() -> None:
    known = modules()
    found = []
    for name, path in known.items():
        for fn in ast.walk(ast.parse(path.read_text())):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom) and (
                    node.level or (node.module or "").startswith("hpchub")
                ):
                    found.append(f"{name}.{fn.name}: {ast.unparse(node)}")
    assert found == []


def test_the_rules_find_what_they_forbid(tmp_path: Path) -> None:
    """The checks above can fail: a cycle, a private import and a lazy import are found."""
    assert cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    fake = tmp_path / "fake.py"
    fake.write_text("from .config import _get\n\ndef f():\n    from .spawners import batch\n")
    known = {**modules(), "hpchub.fake": fake}
    found = imports("hpchub.fake", fake, known)
    assert ("hpchub.config", ["_get"]) in [(t, ns) for t, _, ns in found]
    assert "hpchub.spawners" in {t for t, _, _ in found}


LINT_IMPORTS = "from importlinter.cli import lint_imports_command; lint_imports_command()"


def lint_imports(package_parent: Path) -> subprocess.CompletedProcess[str]:
    config = Path(__file__).resolve().parents[2] / ".importlinter"
    return subprocess.run(
        # import-linter's command run by this Python (its console script need not be on PATH:
        # a fresh machine has it only in the project's venv), as make lint runs it.
        [sys.executable, "-c", LINT_IMPORTS, "--config", str(config)],
        cwd=package_parent,
        env={**os.environ, "PYTHONPATH": str(package_parent)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_lint_imports_keeps_the_tree_and_refuses_a_view_importing_a_spawner(tmp_path: Path) -> None:
    """The contracts hold on the tree, and break (make lint fails) on the import
    docs/design/architecture.md names: a spawner module imported by the console."""
    assert lint_imports(PACKAGE.parent).returncode == 0
    shutil.copytree(PACKAGE, tmp_path / "hpchub", ignore=shutil.ignore_patterns("__pycache__"))
    page = tmp_path / "hpchub" / "console" / "page.py"
    page.write_text(
        page.read_text().replace(
            "from ..access import refusal\n",
            "from ..access import refusal\nfrom ..spawners import dispatch  # noqa\n",
            1,
        )
    )
    broken = lint_imports(tmp_path)
    assert broken.returncode != 0
    assert "The console never imports spawners" in broken.stdout and "BROKEN" in broken.stdout
