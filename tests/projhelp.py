"""Helpers for tests that drive projects through the ``kiloml`` command line: a small real
gesture project (two magic_wand gestures of every person), the CLI as a subprocess with an
80-column terminal, and in-place edits of kiloml.toml."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

SHARED = Path(os.environ.get("KILOML_SHARED", Path(__file__).resolve().parents[2] / "shared"))
WAND = SHARED / "data" / "magic_wand"
KILOML = [sys.executable, "-m", "kiloml"]


def kiloml(*args, cwd=None, timeout: float = 900):
    return subprocess.run(KILOML + [str(a) for a in args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env=dict(os.environ, COLUMNS="80"))


def statuses(r) -> dict[str, str]:
    return {s["name"]: s["status"] for s in json.loads(r.stdout)["steps"]}


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def wand_project(tmp_path: Path, epochs: int = 2, labels=("ring", "wing")) -> Path:
    """A motion project (spectral features, dense model) over ``labels`` of magic_wand, its
    ``[source]`` a copy of the data beside it; nothing imported or trained yet."""
    data = tmp_path / "wand"
    for lab in labels:
        shutil.copytree(WAND / lab, data / lab)
    root = tmp_path / "p"
    r = kiloml("init", root, "--task", "motion")
    assert r.returncode == 0, r.stderr
    cfg = root / "kiloml.toml"
    edit(cfg, "[source]\n", '[source]\npath = "../wand"\n')
    edit(cfg, "[data]\n", "[data]\nsample_rate = 25.0\n")
    edit(cfg, "[train]\n", f"[train]\nepochs = {epochs}\n")
    return root


def ran_wand_project(tmp_path: Path) -> tuple[Path, list[dict]]:
    """``wand_project`` after a whole ``kiloml run`` (import .. report); the run's steps."""
    root = wand_project(tmp_path)
    r = kiloml("run", "-q", "--json", cwd=root)
    assert r.returncode == 0, r.stderr
    return root, json.loads(r.stdout)["steps"]
