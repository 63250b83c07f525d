"""``kiloml deploy`` and ``kiloml verify`` on a trained project: the host build of the deployed
C classifies the test windows as ``kiloml test`` does, verify catches a DSP parameter changed in
the deployed C, and bad input gives one line and the right exit code, leaving nothing
half-written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from projhelp import SHARED, edit, kiloml, ran_wand_project

SPEECH = SHARED / "data" / "speech_commands"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    root, steps = ran_wand_project(tmp_path_factory.mktemp("dv"))
    assert {s["name"]: s["status"] for s in steps}["verify"] == "ran"
    return root


def test_run_writes_both_packages_and_a_passing_verify(trained):
    ver = json.loads((trained / "build" / "verify.json").read_text())
    assert ver["ok"] is True and ver["board"] == "nano33ble" and ver["engine"] == "emulator"
    assert ver["predictions_equal"] == ver["clips"] > 50
    assert ver["features_over_tolerance"] == 0
    for fmt, header in (("c", "p.h"), ("arduino", "src/p.h")):
        assert (trained / "build" / "deploy" / fmt / header).is_file()


def test_host_build_classifies_the_test_windows_as_kiloml_test_does(trained):
    from kiloml.data.windowing import load_windows
    from kiloml.deploy import run_host
    from kiloml.workflow.project import load_project

    p = load_project(trained)
    frames, wins = load_windows(p.dataset, p.config.data, split="test")
    dev = run_host(trained / "build" / "deploy" / "c", frames.reshape(len(frames), -1))
    r = kiloml("test", "--json", cwd=trained)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    labels = rep["labels"]
    conf = np.zeros((len(labels), len(labels)), int)
    for w, k in zip(wins, dev.predictions):
        conf[labels.index(w.label), k] += 1
    assert conf.tolist() == rep["confusion"]
    assert rep["n"] == len(wins)


def test_verify_catches_a_dsp_parameter_changed_in_the_deployed_c(trained, tmp_path):
    pkg = tmp_path / "pkg"
    shutil.copytree(trained / "build" / "deploy" / "c", pkg)
    r = kiloml("verify", "--package", pkg, "--json", cwd=trained)
    assert r.returncode == 0, r.stderr
    good = json.loads(r.stdout)
    assert good["ok"] and good["scores_bit_exact"]
    # band_edges_hz [0, 1, 2, 4, 8, 12] -> [0, 1, 2.4, 4, 8, 12]: the third band starts two
    # FFT bins later in the device's C, the manifest still says the project's parameters
    dsp = pkg / "dsp" / "p_dsp.c"
    text = dsp.read_text()
    old = "static const uint16_t p_dsp_band_lo[5] = {\n    0, 6, 11, 21, 41,"
    assert old in text
    dsp.write_text(text.replace(old, old.replace("11, 21", "13, 21")))
    r = kiloml("verify", "--package", pkg, "--json", cwd=trained)
    assert r.returncode == 1
    bad = json.loads(r.stdout)
    assert bad["ok"] is False and bad["features_over_tolerance"] == bad["clips"]
    assert bad["feature_max_abs_diff"] > 100 * bad["feature_tolerance"]
    assert r.stderr.strip().splitlines()[-1].startswith("error: the device disagrees")
    # the package of another model or DSP setting is refused before anything runs
    man = pkg / "p.json"
    meta = json.loads(man.read_text())
    meta["dsp"]["params"]["fft_length"] = 256
    man.write_text(json.dumps(meta))
    r = kiloml("verify", "--package", pkg, cwd=trained)
    assert r.returncode == 1 and "dsp is not the project's" in r.stderr


def test_library_properties_from_the_project(trained, tmp_path):
    cfg = trained / "kiloml.toml"
    text = cfg.read_text()
    try:
        edit(cfg, 'url = "https://example.com/"', 'url = "https://example.org/wand"')
        edit(cfg, 'author = "kiloml"', 'author = "Ada"')
        edit(cfg, 'library_version = "1.0.0"', 'library_version = "2.1.0"')
        r = kiloml("deploy", "--format", "arduino", "-o", tmp_path / "Wand", cwd=trained)
        assert r.returncode == 0, r.stderr
        props = (tmp_path / "Wand" / "library.properties").read_text().splitlines()
        for line in ("url=https://example.org/wand", "author=Ada", "maintainer=Ada",
                     "version=2.1.0"):
            assert line in props
        edit(cfg, 'library_version = "2.1.0"', 'library_version = "two"')
        r = kiloml("deploy", "--format", "arduino", "-o", tmp_path / "W2", cwd=trained)
        assert r.returncode == 1 and "deploy.library_version" in r.stderr
    finally:
        cfg.write_text(text)


def test_deploy_refuses_an_existing_folder_unless_forced(trained, tmp_path):
    out = tmp_path / "lib"
    out.mkdir()
    (out / "mine.c").write_text("int keep;\n")
    r = kiloml("deploy", "-o", out, cwd=trained)
    assert r.returncode == 1 and "not empty" in r.stderr and len(r.stderr.splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == ["mine.c"]
    r = kiloml("deploy", "-o", out, "--force", "--json", cwd=trained)
    assert r.returncode == 0, r.stderr
    assert not (out / "mine.c").exists() and (out / "p.h").is_file()
    first = {f: (out / f).read_bytes() for f in json.loads(r.stdout)["files"]}
    assert b"command: kiloml deploy -o" in first["p.h"]
    r = kiloml("deploy", "-o", out, "--force", "--json", cwd=trained)
    again = {f: (out / f).read_bytes() for f in json.loads(r.stdout)["files"]}
    assert again == first  # deterministic
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


@pytest.mark.parametrize("args, code, words", [
    (["deploy", "-o", "x", "--format", "zip"], 2, "--format must be one of"),
    (["deploy", "-o", "x", "--board", "no-such-board"], 2, "unknown board"),
    (["deploy", "-o", "x", "--dsp-variant", "q15"], 2, "has no q15 variant"),
    (["verify", "--board", "no-such-board"], 2, "unknown board"),
    (["verify", "--data", "nowhere"], 2, "no such file or directory"),
    (["verify", "--package", "nowhere"], 2, "not a folder"),
])
def test_bad_usage(trained, args, code, words):
    r = kiloml(*args, cwd=trained)
    assert r.returncode == code, (r.stdout, r.stderr)
    assert words in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (trained / "x").exists()


def test_missing_project_and_empty_data(trained, tmp_path):
    for verb in (["deploy", "-o", tmp_path / "o"], ["verify"]):
        r = kiloml(*verb, "-p", tmp_path / "none")
        assert r.returncode in (1, 2) and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    r = kiloml("verify", "--data", empty, cwd=trained)
    assert r.returncode == 1 and str(empty) in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def kws(tmp_path_factory) -> Path:
    """A tiny KWS project (3 words, 1 epoch): enough to run audio through verify."""
    base = tmp_path_factory.mktemp("kws")
    data = base / "sc"
    for lab in ("yes", "no", "up"):
        (data / lab).mkdir(parents=True)
        for f in sorted((SPEECH / lab).glob("*.wav"))[:24]:
            shutil.copy(f, data / lab / f.name)
    root = base / "p"
    r = kiloml("init", root, "--task", "kws")
    assert r.returncode == 0, r.stderr
    cfg = root / "kiloml.toml"
    edit(cfg, "[source]\n", '[source]\npath = "../sc"\n')
    edit(cfg, "[train]\n", "[train]\nepochs = 1\n")
    edit(cfg, "[deploy]\n", '[deploy]\nverify_limit = 16\n')
    r = kiloml("run", "-q", "--json", cwd=root)
    assert r.returncode == 0, r.stderr
    return root


def test_verify_kws_on_other_speakers_and_a_corrupt_wav(kws, tmp_path):
    ver = json.loads((kws / "build" / "verify.json").read_text())
    assert ver["ok"] and 0 < ver["clips"] <= 16 and ver["scores_bit_exact"]
    other = tmp_path / "other"
    for lab in ("yes", "no"):
        (other / lab).mkdir(parents=True)
        for f in sorted((SPEECH / lab).glob("*.wav"))[-3:]:
            shutil.copy(f, other / lab / f.name)
    r = kiloml("verify", "--data", other, "--host", "--json", cwd=kws)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["clips"] == 6
    bad = other / "no" / "broken.wav"
    bad.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt ")
    r = kiloml("verify", "--data", other, "--host", cwd=kws)
    assert r.returncode == 1 and "broken.wav" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("variant, board, engine", [("q15", "nano33ble", "--host"),
                                                    ("q31", "nano33ble", "--host"),
                                                    ("q15", "nano33ble", None)])
def test_verify_with_integer_dsp_is_bit_exact(kws, variant, board, engine):
    """Integer DSP: the Python side runs the numpy twin of the C, so every feature, score and
    prediction must be identical (the device's C on the host, or on the M4F in the emulator)."""
    args = ["verify", "--dsp-variant", variant, "--board", board, "--limit", "4", "--json"]
    r = kiloml(*args, *([engine] if engine else []), cwd=kws)
    assert r.returncode == 0, r.stderr
    v = json.loads(r.stdout)
    assert v["dsp_variant"] == variant and v["clips"] == 4
    assert v["feature_max_abs_diff"] == 0.0 and v["feature_tolerance"] == 0.0
    assert v["scores_bit_exact"] is True and v["predictions_equal"] == 4 and v["ok"]
