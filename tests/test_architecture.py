"""The floors of docs/architecture.md hold: the import-linter contract in pyproject.toml passes,
it really fails on an upward import, and no module imports another package's private names."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "kiloml"
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(cwd: Path, src: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(src))
    return subprocess.run([str(LINT), "--no-cache"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_layers_contract_passes():
    r = _lint(ROOT, ROOT / "src")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "Contracts: 1 kept, 0 broken" in r.stdout


def test_layers_contract_fails_on_an_upward_import(tmp_path):
    # a copy of the package where the IR (a low floor) imports the workflow (a high one)
    shutil.copytree(SRC, tmp_path / "src" / "kiloml",
                    ignore=shutil.ignore_patterns("__pycache__", "runtime", "c"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    graph = tmp_path / "src" / "kiloml" / "ir" / "graph.py"
    graph.write_text(graph.read_text() + "\nimport kiloml.workflow.project  # noqa\n")
    r = _lint(tmp_path, tmp_path / "src")
    assert r.returncode == 1, r.stdout[-3000:]
    assert "kiloml.ir is not allowed to import kiloml.workflow" in r.stdout
    assert "kiloml.ir.graph -> kiloml.workflow.project" in r.stdout


def _package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])


def private_imports() -> list[str]:
    """``from kiloml.<pkg>... import _name`` where <pkg> is not the importer's own package."""
    found = []
    for f in sorted(SRC.rglob("*.py")):
        mod = ".".join(f.relative_to(SRC.parent).with_suffix("").parts)
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.ImportFrom) and node.module and \
                    node.module.startswith("kiloml.") and \
                    _package(node.module) != _package(mod):
                for a in node.names:
                    if a.name.startswith("_"):
                        found.append(f"{f.relative_to(ROOT)}:{node.lineno}: "
                                     f"{node.module}.{a.name}")
    return found


def test_no_private_names_across_packages():
    assert private_imports() == []
