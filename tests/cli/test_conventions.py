"""CLI conventions as a new user meets them (DESIGN.md "CLI conventions", docs/architecture.md):
results on stdout, diagnostics on stderr; every table readable at 80 columns; exit codes 0/1/2;
``--version``; one-line errors for unwritable outputs; files with the user's umask; the
project found from a sub-folder as git finds its repository."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kiloml import __version__
from kiloml.io.tflite_writer import save_tflite
from kiloml.ir.builder import demo_dscnn

SHARED = Path(os.environ.get("KILOML_SHARED", Path(__file__).resolve().parents[3] / "shared"))
HELLO = SHARED / "models" / "tflm_examples" / "hello_world_int8.tflite"
WAND = SHARED / "data" / "magic_wand"
KILOML = [sys.executable, "-m", "kiloml"]


def kiloml(*args, cwd=None, columns=80, umask=None, timeout=600):
    env = dict(os.environ, COLUMNS=str(columns), NO_COLOR="1")
    env.pop("LINES", None)
    pre = (lambda: os.umask(umask)) if umask is not None else None
    return subprocess.run(KILOML + [str(a) for a in args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout, preexec_fn=pre)


def assert_readable_at_80(text: str, must_show: list[str] = ()) -> None:
    """No line wider than 80 columns, nothing truncated with an ellipsis, and every key
    (board id, label) shown whole on one line."""
    lines = text.splitlines()
    assert lines, "no output"
    wide = [ln for ln in lines if len(ln) > 80]
    assert not wide, f"{len(wide)} line(s) wider than 80 columns:\n" + "\n".join(wide[:3])
    assert "…" not in text, text
    for key in must_show:
        assert any(key in ln.split() for ln in lines), f"{key!r} not shown whole:\n{text}"


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("m") / "dscnn.tflite"
    save_tflite(demo_dscnn(1), p)
    return p


@pytest.fixture(scope="module")
def boards() -> list[str]:
    r = kiloml("boards", "--json")
    assert r.returncode == 0, r.stderr
    return list(json.loads(r.stdout))


@pytest.fixture(scope="module")
def wand_project(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("wand") / "wand"
    r = kiloml("init", p, "--task", "motion")
    assert r.returncode == 0, r.stderr
    r = kiloml("data", "import", WAND / "ring", "--label", "ring", "--rate", "25", cwd=p)
    assert r.returncode == 0, r.stderr
    return p


def test_version():
    for args in (["--version"], ["version"]):
        r = kiloml(*args)
        assert r.returncode == 0 and __version__ in r.stdout and r.stderr == ""


def test_boards_table_goes_to_stdout_and_fits_80_columns(boards, tmp_path):
    r = kiloml("boards")
    assert r.returncode == 0 and r.stderr == ""
    assert_readable_at_80(r.stdout, boards)
    # as a shell user redirects it: the file holds the table
    with open(tmp_path / "boards.txt", "w") as f:
        subprocess.run(KILOML + ["boards"], stdout=f, check=True, timeout=120,
                       env=dict(os.environ, COLUMNS="80"))
    assert all(b in (tmp_path / "boards.txt").read_text() for b in boards)


def test_profile_all_boards_fits_80_columns(boards):
    r = kiloml("profile", HELLO, "--board", "all")
    assert r.returncode == 0, r.stderr
    assert_readable_at_80(r.stdout, boards)


def test_profile_one_board_fits_80_columns():
    r = kiloml("profile", HELLO, "--board", "nucleo-l4r5zi")
    assert r.returncode == 0, r.stderr
    assert_readable_at_80(r.stdout, ["FULLY_CONNECTED"])


def test_compile_and_predict_fit_80_columns(model, tmp_path):
    r = kiloml("compile", model, "-o", tmp_path / "c")
    assert r.returncode == 0 and r.stderr == ""
    assert_readable_at_80(r.stdout, ["DEPTHWISE_CONV_2D"])
    x = np.zeros((2, 1, 49, 10, 1), np.int8)   # a batch of two
    np.save(tmp_path / "x.npy", x)
    r = kiloml("predict", model, "-i", tmp_path / "x.npy", "--output", tmp_path / "y.npy")
    assert r.returncode == 0 and "y.npy" in r.stdout and r.stderr == ""


def test_data_tables_fit_80_columns(wand_project):
    r = kiloml("data", "info", "--no-verify", cwd=wand_project)
    assert r.returncode == 0, r.stderr
    assert_readable_at_80(r.stdout, ["ring"])
    r = kiloml("data", "info", "--json", "--no-verify", cwd=wand_project)
    assert json.loads(r.stdout)["labels"] == {"ring": 176}


def test_json_goes_to_stdout_alone(model, tmp_path):
    r = kiloml("compile", model, "-o", tmp_path / "c", "--json")
    assert r.returncode == 0 and r.stderr == ""
    assert json.loads(r.stdout)["nodes"] > 0


def test_project_found_from_a_sub_folder(wand_project):
    sub = wand_project / "notes" / "deep"
    sub.mkdir(parents=True)
    r = kiloml("data", "info", "--json", "--no-verify", cwd=sub)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["samples"] == 176


def test_outside_a_project_is_one_line_exit_1(tmp_path):
    r = kiloml("data", "info", cwd=tmp_path)
    assert r.returncode == 1 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "not inside a kiloml project" in lines[0], r.stderr


@pytest.mark.parametrize("args,code", [
    (["compile"], 2),                                   # missing argument
    (["compile", "x.tflite", "-o", "o", "--kernels", "gpu"], 2),
    (["profile", str(HELLO), "--board", "nope"], 2),    # unknown board: bad usage
    (["predict", "x.tflite", "-i", "x.npy", "--output", "y.npy", "--engine", "gpu"], 2),
    (["nosuchverb"], 2),
    (["compile", "missing.tflite", "-o", "o"], 1),      # a file problem: failure
])
def test_exit_codes(args, code, tmp_path):
    r = kiloml(*args, cwd=tmp_path)
    assert r.returncode == code, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_unwritable_output_is_one_line(model, tmp_path):
    r = kiloml("compile", model, "-o", "/proc/kiloml-cannot-write-here")
    assert r.returncode == 1 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "/proc/kiloml-cannot-write-here" in lines[0]
    assert "internal error" not in lines[0] and "Traceback" not in r.stderr


def test_created_files_follow_the_umask(tmp_path):
    r = kiloml("init", tmp_path / "p", "--task", "kws", umask=0o022)
    assert r.returncode == 0, r.stderr
    for f in (tmp_path / "p" / "kiloml.toml", tmp_path / "p" / "dataset" / "index.csv"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, oct(f.stat().st_mode)
    r = kiloml("init", tmp_path / "q", "--task", "kws", umask=0o077)
    assert stat.S_IMODE((tmp_path / "q" / "kiloml.toml").stat().st_mode) == 0o600
