"""The data stage's place in the floors: it imports only itself and the ground floor, and its
modules import each other without cycles (function-level imports included)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import kiloml.data

DATA_PKG = Path(kiloml.data.__file__).parent
ALLOWED = ("kiloml.data", "kiloml.errors", "kiloml.fileio")


def kiloml_imports(path: Path) -> set[str]:
    """Every ``kiloml...`` module a file imports, at any level of the code."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("kiloml")}
        elif isinstance(node, ast.ImportFrom) and node.module and \
                node.module.startswith("kiloml"):
            out.add(node.module)
            if node.module == "kiloml.data":
                out |= {f"kiloml.data.{a.name}" for a in node.names}
    return out


def test_data_imports_only_itself_and_the_ground_floor():
    bad = {f"{p.name}: {m}" for p in DATA_PKG.glob("*.py") for m in kiloml_imports(p)
           if not m.startswith(ALLOWED) and m != "kiloml"}
    assert not bad, sorted(bad)


def test_no_import_cycle_inside_data():
    mods = {p.stem: p for p in DATA_PKG.glob("*.py") if p.stem != "__init__"}
    graph = {m: {i.split(".")[2] for i in kiloml_imports(p)
                 if i.startswith("kiloml.data.") and i.split(".")[2] in mods} - {m}
             for m, p in mods.items()}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            assert state.get(n) != 1, "import cycle: " + " -> ".join(path + [m, n])
            if n not in state:
                visit(n, path + [m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


def test_importing_data_loads_no_upper_floor():
    code = ("import sys, kiloml.data; print(sorted(m for m in sys.modules "
            "if m.startswith('kiloml')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = ast.literal_eval(r.stdout)
    assert all(m == "kiloml" or m.startswith(ALLOWED) for m in loaded), loaded
