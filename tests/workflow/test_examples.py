"""``kiloml init --example NAME --data PATH``: settings for a public data set's layout,
imported at once with the right groups, ready for ``kiloml run``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("KILOML_SHARED", Path(__file__).resolve().parents[3] / "shared"))
DATA = SHARED / "data"
KILOML = [sys.executable, "-m", "kiloml"]


def kiloml(*args, cwd=None):
    return subprocess.run(KILOML + [str(a) for a in args], capture_output=True, text=True,
                          cwd=cwd, timeout=900)


@pytest.mark.parametrize("example,folder,labels,groups", [
    ("magic_wand", "magic_wand", {"ring", "slope", "wing", "negative"}, 14),
    ("cwru", "cwru_bearing_0hp", {"normal", "IR007", "B014", "OR021"}, None),
    ("kws", "speech_commands", {"yes", "no", "_silence_", "_unknown_"}, None),
])
def test_example_projects_import_their_data_set(tmp_path, example, folder, labels, groups):
    root = tmp_path / example
    r = kiloml("init", root, "--example", example, "--data", DATA / folder, "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["example"] == example and res["samples"] > 0
    r = kiloml("data", "info", "--json", "--no-verify", cwd=root)
    info = json.loads(r.stdout)
    assert labels <= set(info["labels"]), info["labels"]
    if groups is not None:
        assert info["groups"] == groups            # 8 people + 6 person-less negatives
    assert all(info["splits"][sp] > 0 for sp in ("train", "validation", "test"))
    cfg = (root / "kiloml.toml").read_text()
    assert f'path = "{os.path.relpath(DATA / folder, root)}"' in cfg   # movable with its data
    # the next `kiloml run` finds the import up to date
    r = kiloml("run", "--until", "import", "--json", cwd=root)
    assert r.returncode == 0 and json.loads(r.stdout)["steps"][0]["status"] == "cached"


def test_example_errors(tmp_path):
    r = kiloml("init", tmp_path / "a", "--example", "magic_wand", "--data", DATA / "cwru_bearing_0hp")
    assert r.returncode == 1 and "not laid out like the magic_wand" in r.stderr
    assert not (tmp_path / "a" / "kiloml.toml").exists()
    r = kiloml("init", tmp_path / "b", "--example", "sp_sw_har", "--data", DATA / "magic_wand")
    assert r.returncode == 1 and "not laid out like the sp_sw_har" in r.stderr
    assert not (tmp_path / "b").exists()
    r = kiloml("init", tmp_path / "c", "--example", "kws")
    assert r.returncode == 2 and "--data" in r.stderr
    r = kiloml("init", tmp_path / "d")
    assert r.returncode == 2 and "--task" in r.stderr


def test_a_failed_example_import_leaves_no_project(tmp_path):
    bad = tmp_path / "wand"
    for lab in ("ring", "wing"):
        (bad / lab).mkdir(parents=True)
        (bad / lab / f"output_{lab}_x.txt").write_text("not, a, log\n")
    r = kiloml("init", tmp_path / "p", "--example", "magic_wand", "--data", bad)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "p").exists()
