"""Intermediate fusion end to end: ``[model] arch = "fusion"`` on the synthetic phone + watch
project of test_fusion_optimize (only the phone tells the classes apart): ``kiloml run``
trains a branch per sensor over that sensor's slice of the features (with the project's
sensor dropout), exports int8 with SLICE and CONCATENATION, deploys the C library with one
buffer per sensor and verifies it in the emulator: the deployed C gives the Python pipeline's
predictions and scores. ``optimize --variants sensors`` still compares each sensor alone."""

from __future__ import annotations

import json

import pytest

from projhelp import kiloml
from test_fusion_optimize import _data

from kiloml.io.tflite_reader import read_tflite


WATCH_RAW = """units = "m/s2, rad/s"

[data.sensors.dsp]
block = "raw"

[data.sensors.dsp.params]
flatten = true

[dsp]"""


@pytest.mark.parametrize("dsp", ["spectral", "watch raw"])
def test_fusion_branches_train_deploy_and_verify_in_the_emulator(tmp_path, dsp):
    """``spectral``: one block over all axes (axis by axis, so each sensor's features are a
    contiguous range); ``watch raw``: a block per sensor (the watch's raw window), the
    composite ``sensors`` block's parts, and the branches' auxiliary classifiers (``aux``)."""
    data = _data(tmp_path / "d")
    root = tmp_path / "p"
    r = kiloml("init", root, "--example", "sp_sw_har", "--data", data)
    assert r.returncode == 0, r.stderr
    cfg = root / "kiloml.toml"
    text = cfg.read_text()
    assert 'arch = "dense"' in text
    # intermediate fusion with the zero policy (the example's fallback models off)
    text = text.replace('arch = "dense"', 'arch = "fusion"').replace('missing = "fallback"\n', '')
    if dsp == "watch raw":   # the last sensor table (the watch) gets its own block
        head, tail = text.rsplit('units = "m/s2, rad/s"\n\n[dsp]', 1)
        text = head + WATCH_RAW + tail
        # and the branches' training-only classifiers: the deployed graph is the same kind
        assert text.count("[model.params]\n\n") == 1       # empty: add the one setting
        text = text.replace("[model.params]\n\n", "[model.params]\naux = 1.0\n\n")
    cfg.write_text(text.replace("[train]\n", "[train]\nepochs = 6\n"))
    r = kiloml("run", "--project", root, "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    st = {s["name"]: s["status"] for s in json.loads(r.stdout)["steps"]}
    assert st["deploy"] == "ran" and st["verify"] == "ran"
    meta = json.loads((root / "model" / "meta.json").read_text())
    assert meta["arch"] == "fusion"
    assert meta["params"].get("aux") == (1.0 if dsp == "watch raw" else None)
    sizes = meta["params"]["sizes"]
    assert len(sizes) == 2 and sum(sizes) == meta["feature_shape"][0]
    phone = 6 * (5 + 6 + 3 * 2)   # per axis: 5 statistics, 6 band powers, 3 peaks (f, h)
    assert sizes == ([phone, phone] if dsp == "spectral" else [phone, 6 * 100])
    g = read_tflite(root / "model" / "model.tflite")
    ops = [n.op for n in g.nodes]
    assert ops.count("SLICE") == 2 and ops.count("CONCATENATION") == 1
    begins = sorted(int(g.tensors[n.inputs[1]].data[-1]) for n in g.nodes if n.op == "SLICE")
    assert begins == [0, sizes[0]]
    v = json.loads((root / "build" / "verify.json").read_text())
    assert v["ok"] and v["scores_bit_exact"] and v["predictions_equal"] == v["clips"] > 0
    header = next((root / "build" / "deploy" / "c").glob("*.h")).read_text()
    assert "_classify_sensors(const" in header
    # the data's answer: the phone branch separates the classes
    r = kiloml("test", "--project", root, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["accuracy"] >= 0.9
    if dsp == "spectral":   # each sensor alone: the same family with one branch
        r = kiloml("optimize", "--project", root, "--variants", "sensors", "-q", "--json")
        assert r.returncode == 0, r.stderr
        rows = {v["name"]: v for v in json.loads(r.stdout)["variants"]}
        assert list(rows) == ["fusion", "phone only", "watch only", "fusion, phone missing",
                              "fusion, watch missing"]
        assert rows["phone only"]["metric"] >= 0.9 and rows["watch only"]["metric"] <= 0.75
        assert rows["phone only"]["model_flash_bytes"] < rows["fusion"]["model_flash_bytes"]


def test_fusion_needs_each_sensors_features_apart(tmp_path):
    """A raw [dsp] block over both sensors interleaves them frame by frame: no per-sensor
    range, so ``train`` stops with one line naming kiloml.toml (exit 1) and writes no model."""
    data = _data(tmp_path / "d")
    root = tmp_path / "p"
    assert kiloml("init", root, "--example", "sp_sw_har", "--data", data).returncode == 0
    cfg = root / "kiloml.toml"
    text = cfg.read_text().replace('arch = "dense"', 'arch = "fusion"') \
        .replace('missing = "fallback"\n', '')
    head, tail = text.split("[dsp]\n", 1)
    tail = tail.split("[model]", 1)[1]
    cfg.write_text(head + '[dsp]\nblock = "raw"\n\n[model]' + tail)
    r = kiloml("train", "--project", root, "-q")
    assert r.returncode == 1, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "kiloml.toml" in lines[0] and "features apart" in lines[0], lines
    assert not (root / "model" / "model.tflite").exists()
