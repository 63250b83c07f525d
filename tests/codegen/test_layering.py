"""The IR sits below the code generator: nothing under src/kiloml/ir imports kiloml.codegen,
not even for type checking (the ops write C through the EmitContext protocol of
kiloml/ir/ops/base.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import kiloml

IR = Path(kiloml.__file__).parent / "ir"


def _package(path: Path) -> str:
    """The package a module under src/kiloml belongs to (kiloml.ir.ops for ops/conv2d.py)."""
    return ".".join(path.relative_to(IR.parent.parent).with_suffix("").parts[:-1])


def _imported_modules(source: str, pkg: str) -> list[tuple[int, str]]:
    """(line, module) of every import in ``source`` (a module of package ``pkg``), at any
    depth (functions, TYPE_CHECKING blocks), relative imports resolved; also
    importlib.import_module / __import__ calls with a constant name."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")
                parent = ".".join(parts[:len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            out += [(node.lineno, base)] + [(node.lineno, f"{base}.{a.name}") for a in node.names]
        elif isinstance(node, ast.Call):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
            if name in ("import_module", "__import__") and node.args and isinstance(
                    node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                out.append((node.lineno, node.args[0].value))
    return out


def test_ir_imports_nothing_from_codegen():
    files = sorted(IR.rglob("*.py"))
    assert len(files) > 15  # the ops are there
    bad = [f"{p.relative_to(IR.parent)}:{line}: {mod}" for p in files
           for line, mod in _imported_modules(p.read_text(), _package(p))
           if mod == "kiloml.codegen" or mod.startswith("kiloml.codegen.")]
    assert bad == []


def test_ir_sources_do_not_name_codegen():
    """As the architecture issue checks it: grep -rn "kiloml.codegen" src/kiloml/ir."""
    hits = [f"{p.relative_to(IR.parent)}:{i}" for p in sorted(IR.rglob("*.py"))
            for i, line in enumerate(p.read_text().splitlines(), 1) if "kiloml.codegen" in line]
    assert hits == []


def test_the_walk_sees_hidden_and_relative_imports():
    """The checker itself: imports under TYPE_CHECKING, in functions, relative ones and
    import_module calls are all found."""
    src = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
           "    from kiloml.codegen.c import EmitContext\n"
           "def f():\n    from ...codegen import cwriter\n"
           "    import importlib\n    importlib.import_module('kiloml.codegen.backend')\n")
    mods = [m for _, m in _imported_modules(src, "kiloml.ir.ops")]
    assert {"kiloml.codegen.c", "kiloml.codegen", "kiloml.codegen.cwriter",
            "kiloml.codegen.backend"} <= set(mods)
