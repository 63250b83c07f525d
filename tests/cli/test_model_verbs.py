"""The ``kiloml`` CLI: JSON keys, exit codes, one-line errors, no partial outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kiloml.io.tflite_writer import save_tflite
from kiloml.ir.builder import demo_dscnn

KILOML = [sys.executable, "-m", "kiloml"]


def kiloml(*args, cwd=None):
    return subprocess.run(KILOML + [str(a) for a in args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("m") / "dscnn.tflite"
    save_tflite(demo_dscnn(1), p)
    return p


def test_help_on_every_verb():
    for verb in ([], ["compile"], ["predict"], ["demo"], ["version"]):
        r = kiloml(*verb, "--help")
        assert r.returncode == 0, r.stderr
        assert "Usage" in r.stdout


def test_compile_json(model, tmp_path):
    r = kiloml("compile", model, "-o", tmp_path / "c", "--prefix", "kws", "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    for key in ("ops", "macs", "arena_bytes", "arena_lower_bound_bytes", "weights_bytes", "files"):
        assert key in s
    assert s["macs"] == 2_664_768
    assert sorted(s["files"]) == sorted(os.listdir(tmp_path / "c"))
    assert {"kws.c", "kws.h", "kml_common.h", "kml_conv.c"} <= set(s["files"])
    assert "kml_elementwise.c" not in s["files"]  # only the kernels the model needs
    src = (tmp_path / "c" / "kws.c").read_text()
    assert "do not edit" in src and "malloc" not in src and "stdio" not in src
    assert "int kws_invoke(const int8_t *input, int8_t *output)" in (tmp_path / "c" / "kws.h").read_text()


def test_run_ref_and_c_agree(model, tmp_path):
    x = np.random.default_rng(0).integers(-128, 128, (4, 1, 49, 10, 1), dtype=np.int8)
    np.save(tmp_path / "x.npy", x)
    for engine in ("ref", "c"):
        r = kiloml("predict", model, "--input", tmp_path / "x.npy", "--output",
                   tmp_path / f"{engine}.npy", "--engine", engine, "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["outputs"][0]["shape"] == [4, 1, 12]
    a, b = np.load(tmp_path / "ref.npy"), np.load(tmp_path / "c.npy")
    assert a.dtype == np.int8 and np.array_equal(a, b)
    single = x[0]
    np.save(tmp_path / "x1.npy", single)
    r = kiloml("predict", model, "--input", tmp_path / "x1.npy", "--output", tmp_path / "y1.npy")
    assert r.returncode == 0
    assert np.array_equal(np.load(tmp_path / "y1.npy"), a[0])


BAD_FILES = {
    "empty": b"",
    "truncated": None,  # filled from the real model
    "random": bytes(np.random.default_rng(5).integers(0, 256, 3000, dtype=np.uint8)),
    "wrong_magic": None,
}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_malformed_model_one_line_exit_1(model, tmp_path, kind):
    data = BAD_FILES[kind]
    raw = model.read_bytes()
    if kind == "truncated":
        data = raw[: len(raw) // 3]
    if kind == "wrong_magic":
        data = raw[:4] + b"XXXX" + raw[8:]
    bad = tmp_path / f"{kind}.tflite"
    bad.write_bytes(data)
    out = tmp_path / "out"
    r = kiloml("compile", bad, "-o", out)
    assert r.returncode == 1
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and str(bad.name) in lines[0] and "Traceback" not in r.stderr
    assert not out.exists()  # no partial output


def test_bad_usage_exit_2(model, tmp_path):
    assert kiloml("compile", model).returncode == 2  # missing -o
    r = kiloml("predict", model, "--input", "x.npy", "--output", "y.npy", "--engine", "gpu")
    assert r.returncode == 2


def test_bad_input_array(model, tmp_path):
    np.save(tmp_path / "f.npy", np.zeros((1, 49, 10, 1), np.float32))
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    for f in ("f.npy", "junk.npy", "missing.npy"):
        r = kiloml("predict", model, "--input", tmp_path / f, "--output", tmp_path / "y.npy")
        assert r.returncode == 1
        assert f in r.stderr and "Traceback" not in r.stderr
        assert not (tmp_path / "y.npy").exists()
