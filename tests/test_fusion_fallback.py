"""Fallback models per sensor (``[model] missing = "fallback"``): each sensor gets a model of
its own, trained apart on that sensor's features with the single-sensor recipe, composed with
the fused model into one int8 graph (outputs: fused, then one per sensor;
kiloml.train.models.FallbackHeads), and ``<name>_classify_sensors`` (and its Python twin,
kiloml.deploy.run.run_python with a ``missing`` mask) answers with the remaining sensor's own
model.

The oracles are independent of the composition: each sensor's float model on its own
normalized features (its own normalizer, not the fused one folded into it), and the same
model exported alone (its own graph, its own input quantization); for the C, the reference
interpreter on the int8 graph through the twin."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent / "deploy"))
import deployhelp as H  # noqa: E402

from kiloml.compress.quantize import calibrate, lower, quantize_ptq  # noqa: E402
from kiloml.deploy import DeploySpec  # noqa: E402
from kiloml.deploy.c import deploy_c  # noqa: E402
from kiloml.deploy.run import run_python  # noqa: E402
from kiloml.dsp import make_block  # noqa: E402
from kiloml.dsp.apply import apply_block  # noqa: E402
from kiloml.errors import KilomlError  # noqa: E402
from kiloml.model import Model  # noqa: E402
from kiloml.train.loop import EpochData, TrainConfig, fit  # noqa: E402
from kiloml.train.models import (FallbackHeads, ModelError, build_model,  # noqa: E402
                                 fold_input_affine)
from kiloml.train.normalize import Normalizer  # noqa: E402

from projhelp import kiloml  # noqa: E402
from test_fusion_heads import (_windows, c_against_twin_per_mask,  # noqa: E402
                               run_with_three_heads)

FRAMES = 50
LABELS = ["still", "walk", "turn"]
SENSORS = (("phone", 3), ("watch", 3))
LSB = 1.0 / 256          # the softmax output's quantization step
TOL = 8 * LSB            # stated tolerance of an int8 head against its float model


def _fit(f: np.ndarray, y: np.ndarray, arch: str, seed: int = 0, **params):
    torch.manual_seed(seed)
    m = build_model(arch, (f.shape[1],), 3, **params)
    fit(m, lambda e: EpochData(torch.as_tensor(f), torch.as_tensor(y)),
        TrainConfig(epochs=30, batch_size=32, lr=3e-3, seed=seed), progress=False)
    return m.eval()


@pytest.fixture(scope="module")
def trained():
    """A fused dense model on both sensors' spectral features (per-feature normalizer, no
    sensor dropout) and a dense model per sensor trained apart on its own features: the
    phone's with a per-feature normalizer of its own, the watch's with one global
    normalizer (as a raw block gets), so the fold is exercised; the composed int8 graph and
    its deploy spec; test windows."""
    block = make_block("spectral", params=dict(sample_rate=25.0, fft_length=32,
                                               band_edges_hz=[0.0, 1.0, 3.0, 6.0, 12.5]))
    x, y = _windows(0, 90)
    feats = apply_block(block, x).reshape(len(x), -1)
    norm = Normalizer.fit("feature", feats)
    f = norm(feats).astype(np.float32)
    half = f.shape[1] // 2                 # spectral: axis by axis, so the phone's come first
    fused = _fit(f, y, "dense", hidden=[16])
    own = []
    for k, kind in enumerate(("feature", "global")):
        fk = feats[:, k * half:(k + 1) * half]
        nk = Normalizer.fit(kind, fk)
        mk = _fit(nk(fk).astype(np.float32), y, "dense", seed=1 + k, hidden=[16, 8])
        own.append((mk, nk, (k * half, (k + 1) * half)))
    folded = []
    for mk, nk, (a, b) in own:
        sf, mf = norm.std[a:b].astype(np.float64), norm.mean[a:b].astype(np.float64)
        so = np.broadcast_to(np.asarray(nk.std, np.float64), (b - a))
        mo = np.broadcast_to(np.asarray(nk.mean, np.float64), (b - a))
        folded.append((fold_input_affine(mk, sf / so, (mf - mo) / so), (a, b)))
    _, g = quantize_ptq(FallbackHeads(fused, folded), f, append_softmax=True)
    spec = DeploySpec("fus", g, block, FRAMES, 6, 25.0, 2000.0, LABELS,
                      normalizer=norm.state(), layout="flat", dsp_variant="f32",
                      board="nano33ble", sensors=SENSORS, missing="fallback")
    test, _ = _windows(1, 30)
    train_feats = feats
    return spec, fused, norm, own, test, train_feats


def _oracle(fused, norm, own, block, windows) -> list[np.ndarray]:
    """Softmax of the fused float model and of each sensor's float model on its own
    normalized features (its own normalizer, not the folded one), by PyTorch."""
    feats = apply_block(block, windows).reshape(len(windows), -1)
    with torch.no_grad():
        out = [torch.softmax(fused(torch.as_tensor(norm(feats))), 1).numpy()]
        for mk, nk, (a, b) in own:
            out.append(torch.softmax(mk(torch.as_tensor(nk(feats[:, a:b]))), 1).numpy())
    return out


def test_fold_input_affine_is_the_same_function():
    torch.manual_seed(3)
    m = build_model("dense", (7,), 3, hidden=[5]).eval()
    u = torch.randn(20, 7)
    scale, shift = np.linspace(0.5, 2.0, 7), np.linspace(-1.0, 1.0, 7)
    folded = fold_input_affine(m, scale, shift).eval()
    with torch.no_grad():
        want = m(u * torch.as_tensor(scale, dtype=torch.float32)
                 + torch.as_tensor(shift, dtype=torch.float32))
        np.testing.assert_allclose(folded(u).numpy(), want.numpy(), rtol=1e-5, atol=1e-5)
        # the original is untouched; the identity fold changes nothing
        assert not torch.equal(folded.features[0].weight, m.features[0].weight)
        assert torch.equal(fold_input_affine(m, np.ones(7), np.zeros(7))(u), m(u))
    with pytest.raises(ModelError, match="must be dense"):
        fold_input_affine(build_model("fusion", (7,), 3, sizes=[4, 3]), np.ones(7),
                          np.zeros(7))


def test_exported_graph_has_the_fused_head_then_each_sensors_own_model(trained):
    spec, fused, norm, own, test, _ = trained
    g = spec.graph
    assert len(g.inputs) == 1 and len(g.outputs) == 3
    ops = [n.op for n in g.nodes]
    assert ops.count("SOFTMAX") == 3 and ops.count("SLICE") == 2
    # fused: 2 layers; each sensor's model: 3 (hidden 16, 8, classifier)
    assert sum(op in ("CONV_2D", "FULLY_CONNECTED") for op in ops) == 2 + 3 + 3
    q = Model(g).predict(H.model_input(spec, apply_block(spec.block, test)))
    want = _oracle(fused, norm, own, spec.block, test)
    for k, (o, w) in enumerate(zip(q, want)):
        got = (o.reshape(len(test), -1).astype(np.float64) + 128) * LSB
        assert np.abs(got - w).max() <= TOL, k
        assert (got.argmax(1) == w.argmax(1)).mean() >= 0.9, k
    # the sensors' models are different functions (else the selection could not be tested)
    assert np.abs(want[1] - want[2]).max() > 0.2


def test_each_sensor_head_equals_that_model_exported_alone(trained):
    """Head 1 + k of the composed graph against sensor k's model quantized alone (its own
    graph, input quantization calibrated on its own features): the composed graph shares
    one input quantization across the sensors, so this is where it would lose."""
    spec, fused, norm, own, test, train_feats = trained
    feats = apply_block(spec.block, test).reshape(len(test), -1)
    q = Model(spec.graph).predict(H.model_input(spec, feats))
    for k, (mk, nk, (a, b)) in enumerate(own):
        _, alone = quantize_ptq(mk, nk(train_feats[:, a:b]).astype(np.float32),
                                append_softmax=True)
        t = alone.tensors[alone.inputs[0]]
        xin = nk(feats[:, a:b]).astype(np.float32)
        qi = np.clip(np.round(xin / t.scale) + t.zero_point, -128, 127).astype(np.int8)
        solo = (Model(alone).predict(qi).reshape(len(test), -1).astype(np.float64) + 128) * LSB
        head = (q[1 + k].reshape(len(test), -1).astype(np.float64) + 128) * LSB
        assert (solo.argmax(1) == head.argmax(1)).mean() >= 0.9, k
        assert np.abs(solo - head).max() <= TOL, k


def test_c_and_twin_answer_with_each_sensors_model_for_every_mask(trained, tmp_path):
    """Host build under ASan/UBSan (-Wall -Wextra -Wconversion -Werror): for masks 0-3 the
    C's top class and scores equal the twin's bit for bit; with one sensor missing they
    are the other sensor's own model (within TOL of its float oracle) and not the fused head
    on zeros; masks 0 and 3 are the fused head."""
    spec, fused, norm, own, test, _ = trained
    c_scores, fused_zeroed = c_against_twin_per_mask(spec, test, tmp_path)
    pkg = tmp_path / "pkg"
    meta = json.loads((pkg / "fus.json").read_text())
    assert meta["model"]["missing"] == "fallback"
    assert meta["model"]["heads"] == ["fusion", "phone", "watch"]
    assert "own model (trained apart" in (pkg / "fus.h").read_text()
    want = _oracle(fused, norm, own, spec.block, test)
    for mask in range(4):
        if mask in (1, 2):   # one sensor remains: its own model
            assert np.abs(c_scores[mask] - want[1 + (mask == 1)]).max() <= TOL
            assert np.abs(c_scores[mask] - fused_zeroed[mask]).max() > 16 * LSB
        else:
            np.testing.assert_array_equal(c_scores[mask], fused_zeroed[mask])


def test_deploy_refuses_fallback_heads_that_do_not_fit(trained, tmp_path):
    spec, *_ = trained
    with pytest.raises(KilomlError, match="missing = fallback: needs a multi-sensor model"):
        deploy_c(replace(spec, sensors=()), tmp_path / "a")
    with pytest.raises(KilomlError, match="one input and 1 output, this graph 1 and 3"):
        deploy_c(replace(spec, missing="zero"), tmp_path / "b")
    assert not any((tmp_path / d).exists() for d in "ab")


def test_qat_trains_each_head_on_its_own_windows():
    """HeadsQAT: the fused logits are what fit sees; the extra loss is each sensor model's
    cross-entropy over the windows whose sensor was not dropped (its slice is the
    missing-sensor input), and its gradient reaches that model only."""
    from kiloml.workflow.train import HeadsQAT

    torch.manual_seed(0)
    fused = build_model("dense", (6,), 3, hidden=[4]).eval()
    m0 = build_model("dense", (4,), 3, hidden=[4]).eval()
    m1 = build_model("dense", (2,), 3, hidden=[4]).eval()
    x = torch.randn(16, 6)
    z = torch.full((6,), -2.5)
    x[:5, :4] = z[:4]                      # sensor 0 dropped in windows 0-4
    x[10:, 4:] = z[4:]                     # sensor 1 dropped in windows 10-15
    y = torch.randint(0, 3, (16,))
    net = lower(FallbackHeads(fused, [(m0, (0, 4)), (m1, (4, 6))]), x[:1],
                append_softmax=True)
    calibrate(net, [x])
    net.set_mode("fake").train()
    net.freeze_observers(True)             # the ranges stay put between the calls below
    w = HeadsQAT(net, [(0, 4), (4, 6)], z.numpy())
    out = w(x)
    outs = net.outputs(x, logits=True)
    assert torch.equal(out, outs[0].reshape(16, -1))
    assert torch.equal(out, net(x, logits=True).reshape(16, -1))   # QAT's usual forward
    loss = w.extra_loss(y)
    ce = torch.nn.functional.cross_entropy
    want = ce(outs[1].reshape(16, -1)[5:], y[5:]) + ce(outs[2].reshape(16, -1)[:10], y[:10])
    assert abs(float(loss.detach()) - float(want.detach())) < 1e-5
    loss.backward()
    grads = {id(p): p.grad for p in net.parameters()}
    assert any(g is not None and g.abs().sum() > 0 for g in grads.values())
    # the fused head's layer (the last linear op) gets no gradient from the extra loss
    last = [op for op in net.ops if op.kind == "linear"][-1]
    assert all(p.grad is None or float(p.grad.abs().sum()) == 0 for p in last.parameters())


def _example(tmp_path: Path) -> tuple[Path, Path, str]:
    """``kiloml init --example sp_sw_har`` on the synthetic phone + watch data (only the phone
    tells the classes apart): the project, its kiloml.toml and that file's text, which has
    the example's policy."""
    from test_fusion_optimize import _data

    root = tmp_path / "p"
    assert kiloml("init", root, "--example", "sp_sw_har", "--data",
                  _data(tmp_path / "d")).returncode == 0
    cfg = root / "kiloml.toml"
    text = cfg.read_text()
    assert 'missing = "fallback"' in text
    return root, cfg, text


def test_project_with_fallback_runs_deploys_and_verifies(tmp_path):
    """``kiloml run`` on the synthetic phone + watch project (only the phone tells the classes
    apart), the example's early fusion (dense, sensor dropout 0.25, ``missing = "fallback"``)
    with QAT: three heads, each sensor's model recorded in meta.json, verify in
    the emulator bit-exact, and the watch-less twin answers with the phone's own model."""
    root, cfg, text = _example(tmp_path)
    cfg.write_text(text.replace("[train]\n", "[train]\nepochs = 6\nqat_epochs = 2\n"))
    # fused dense 64-32 + classifier, and the same per sensor
    meta, p, spec, frames, y = run_with_three_heads(root, "fallback", layers=9)
    assert [f["sensor"] for f in meta["fallback"]] == ["phone", "watch"]
    assert meta["fallback"][0]["features"] == [0, meta["fallback"][1]["features"][0]]
    assert meta["fallback"][1]["features"][1] == meta["feature_shape"][0]
    pkg = json.loads(next((root / "build" / "deploy" / "c").glob("*.json")).read_text())
    assert pkg["model"]["missing"] == "fallback"
    watchless = run_python(spec, frames, missing=2)
    assert (watchless.predictions == y).mean() >= 0.9      # the phone's own model
    phoneless = run_python(spec, frames, missing=1)
    assert not np.array_equal(phoneless.scores, run_python(replace(spec, missing="zero"),
                                                           frames, missing=1).scores)


def test_fallback_refusals_name_kiloml_toml(tmp_path):
    """One sensor, or a model that does not read one feature vector: one line naming
    kiloml.toml, exit 1, no model written."""
    root, cfg, text = _example(tmp_path)
    cfg.write_text(text.replace('arch = "dense"', 'arch = "cnn1d"'))
    r = kiloml("train", "--project", root, "-q")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert "kiloml.toml" in lines[0] and "model.missing = 'fallback'" in lines[0] \
        and "arch is cnn1d" in lines[0], lines
    # one sensor declared: the watch's table removed
    start = text.index("[[data.sensors]]", text.index("[[data.sensors]]") + 1)
    end = text.find("\n[", start + 1)
    one = text[:start] + (text[end + 1:] if end >= 0 else "")
    one = "\n".join(ln for ln in one.splitlines() if not ln.startswith("channels ="))
    cfg.write_text(one + "\n")
    r = kiloml("train", "--project", root, "-q")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert "kiloml.toml" in lines[0] and "has 1 sensor" in lines[0], lines
    assert not (root / "model" / "model.tflite").exists()


def test_arduino_imu_sketch_says_which_model_answered(trained, tmp_path):
    from kiloml.deploy.arduino import deploy_arduino

    spec, *_ = trained
    lib = deploy_arduino(replace(spec, sensors=(("accel", 3), ("gyro", 3))),
                         tmp_path / "Fus").path
    sketch = next(lib.glob("examples/*/*.ino")).read_text()
    assert '"(gyro missing: classified by the accel model)"' in sketch
    assert "fus_head_gyro" in (lib / "src" / "fus.c").read_text()
