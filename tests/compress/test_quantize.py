"""PyTorch -> int8 IR: lowering (BN folding, activation fusion, layouts, padding), calibration,
export bit-exact in TFLite Micro and LiteRT (linear layers written as 1x1 convolutions: LiteRT's
FULLY_CONNECTED requantizes in floating point), "fake" mode against the exported integer model, and compilation with ``kiloml compile``."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import trainhelp as H  # noqa: E402
from kiloml.compress.quantize import (QuantizeError, calibrate, lower, qparams_from_range,  # noqa: E402
                                      quantize_input, quantize_ptq, run_fake, run_int8, to_graph,
                                      to_nhwc)
from kiloml.io.tflite_writer import write_tflite  # noqa: E402
from kiloml.ir.graph import Graph  # noqa: E402
from kiloml.ir.interpreter import Interpreter  # noqa: E402
from kiloml.train.layers import Conv2dSame  # noqa: E402
from kiloml.train.models import build_model, input_layout, to_model_input  # noqa: E402

torch.set_num_threads(2)

# (arch, feature shape, classes, params): small versions of every zoo network
ZOO = [
    ("ds-cnn", (49, 10), 12, {"channels": 16, "blocks": 2}),
    ("cnn1d", (50, 3), 4, {"channels": (8, 16)}),
    ("dense", (17,), 10, {"hidden": (16, 8)}),
    ("autoencoder", (64,), 0, {"hidden": 16, "bottleneck": 4, "depth": 2}),
    ("resnet8", (16, 16, 3), 10, {"width": 4}),
    ("mobilenet-v1", (32, 32, 3), 2, {"alpha": 0.125}),
]


def _zoo_case(arch, fshape, nc, params, seed=0):
    torch.manual_seed(seed)
    m = build_model(arch, fshape, nc, **params)
    H.randomize_bn(m, seed)
    x = to_model_input(np.random.default_rng(seed).normal(0, 1, (24,) + fshape),
                       input_layout(arch, fshape))
    return m, x


@pytest.fixture(scope="module", params=ZOO, ids=[z[0] for z in ZOO])
def exported(request):
    arch, fshape, nc, params = request.param
    m, x = _zoo_case(arch, fshape, nc, params)
    net, g = quantize_ptq(m, x[:16], append_softmax=nc > 0)
    return m, net, g, x[16:], nc


def test_lowered_float_equals_model(exported):
    m, net, _, x, nc = exported
    net.set_mode("float")
    with torch.no_grad():
        want = m(torch.as_tensor(x))
        if nc:
            want = torch.softmax(want, -1)
        got = net(torch.as_tensor(x))
    net.set_mode("fake")
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-4), float((got - want).abs().max())


def test_no_batch_norm_or_activation_left(exported):
    _, net, g, _, _ = exported
    assert {op.kind for op in net.ops} <= {"conv", "linear", "pool", "flatten", "add", "softmax"}
    assert "RELU" not in {n.op for n in g.nodes}          # all fused


def test_export_bit_exact_in_tflm_and_kiloml(exported):
    _, _, g, x, _ = exported
    b = write_tflite(g)
    tin = g.tensors[g.inputs[0]]
    it = Interpreter(g)
    for xi in quantize_input(to_nhwc(x), tin.scale, tin.zero_point)[:4]:
        xi = xi.reshape(tin.shape)
        want = it.run(xi)[0]
        assert np.array_equal(H.run_tflm(b, xi).reshape(want.shape), want)


def test_export_bit_exact_in_litert(exported):
    """Whole exported models, linear layers included (written as RESHAPE + 1x1 CONV_2D)."""
    _, _, g, x, _ = exported
    assert "FULLY_CONNECTED" not in {n.op for n in g.nodes}
    b = write_tflite(g)
    tin = g.tensors[g.inputs[0]]
    it = Interpreter(g)
    for xi in quantize_input(to_nhwc(x), tin.scale, tin.zero_point)[:4]:
        xi = xi.reshape(tin.shape)
        want = it.run(xi)[0]
        assert np.array_equal(H.run_litert_ref(b, xi).reshape(want.shape), want)


def test_fully_connected_as_conv_keeps_results_and_compiles_back():
    """The rewrite changes no output (weights per tensor and per unit, chained layers), and
    the compiler turns the one-pixel convolutions back into FULLY_CONNECTED kernels: same
    code size and arena as the FULLY_CONNECTED form."""
    from kiloml.codegen.c import generate_c
    from kiloml.ir.passes import fully_connected_as_conv, pipeline

    torch.manual_seed(5)
    m = nn.Sequential(nn.Linear(40, 32), nn.ReLU(), nn.Linear(32, 24), nn.ReLU(), nn.Linear(24, 6))
    x = np.random.default_rng(5).normal(0, 1, (48, 40)).astype(np.float32)
    net, _ = quantize_ptq(m, x[:32])
    net.ops[2].per_channel = True                  # one layer with per-unit weight scales
    fc = to_graph(net, fc_as_conv=False)
    conv = fully_connected_as_conv(fc)
    assert [n.op for n in fc.nodes] == ["FULLY_CONNECTED"] * 3
    assert [n.op for n in conv.nodes] == ["RESHAPE", "CONV_2D", "CONV_2D", "CONV_2D", "RESHAPE"]
    assert [n.op for n in pipeline(conv).nodes if n.op != "RESHAPE"] == ["FULLY_CONNECTED"] * 3
    assert len(write_tflite(conv)) < len(write_tflite(fc)) + 1024    # no duplicated weights
    tin = fc.tensors[fc.inputs[0]]
    a, c, b = Interpreter(fc), Interpreter(conv), write_tflite(conv)
    for xi in quantize_input(x[32:], tin.scale, tin.zero_point):
        xi = xi.reshape(tin.shape)
        want = a.run(xi)[0]
        assert np.array_equal(c.run(xi)[0].reshape(want.shape), want)
        assert np.array_equal(H.run_litert_ref(b, xi).reshape(want.shape), want)
        assert np.array_equal(H.run_tflm(b, xi).reshape(want.shape), want)
    for runtime in ("portable", "armv7em"):
        r_fc, r_conv = generate_c(fc, "m", runtime=runtime), generate_c(conv, "m", runtime=runtime)
        assert r_conv.plan.arena_bytes == r_fc.plan.arena_bytes
        assert "kml_fully_connected" in r_conv.files["m.c"]


def test_litert_fully_connected_requantizes_in_float():
    """LiteRT's reference FULLY_CONNECTED rounds acc * (s_in s_w / s_out) in floating point
    (google-ai-edge/LiteRT#8567); TFLM and kiloml use the fixed-point multiplier with double
    rounding. Both are pinned here: the exported file is right, the runtimes differ on ties."""
    torch.manual_seed(3)
    m = nn.Sequential(nn.Linear(256, 256))
    x = np.random.default_rng(3).normal(0, 1, (64, 256)).astype(np.float32)
    net, _ = quantize_ptq(m, x[:32])
    g = to_graph(net, fc_as_conv=False)
    b = write_tflite(g)
    xt, wt, bt, yt = [g.tensors[i] for i in g.nodes[0].inputs + g.nodes[0].outputs]
    real = np.float64(xt.scale) * np.float64(wt.scale) / np.float64(yt.scale)
    it = Interpreter(g)
    n_diff = 0
    for xi in quantize_input(x[32:], xt.scale, xt.zero_point):
        xi = xi.reshape(xt.shape)
        acc = wt.data.astype(np.int64) @ (xi.reshape(-1).astype(np.int64) - xt.zero_point) + bt.data
        v = acc * real
        float_rq = np.clip(np.sign(v) * np.floor(np.abs(v) + 0.5) + yt.zero_point, -128, 127)
        lite = H.run_litert_ref(b, xi).reshape(-1)
        ours = it.run(xi)[0].reshape(-1)
        assert np.array_equal(lite, float_rq)
        assert np.array_equal(H.run_tflm(b, xi).reshape(-1), ours)
        assert np.abs(lite.astype(int) - ours).max() <= 1
        n_diff += int((lite != ours).sum())
    assert n_diff < 0.01 * 32 * 256


def test_fake_mode_reproduces_the_integer_model(exported):
    _, net, g, x, _ = exported
    tout = g.tensors[g.outputs[0]]
    fake = run_fake(net, x)
    fq = np.round(fake / tout.scale) + tout.zero_point
    i8 = run_int8(g, x, dequantize=False).reshape(fq.shape)
    assert np.abs(fq - i8).max() <= 2
    assert (fq == i8).mean() >= 0.97


def test_exported_model_compiles_and_generated_c_agrees(exported, tmp_path):
    from kiloml.codegen.c import generate_c
    from kiloml.codegen.host import HostBuild

    _, _, g, x, _ = exported
    path = tmp_path / "m.tflite"
    path.write_bytes(write_tflite(g))
    r = H.kiloml("compile", path, "-o", tmp_path / "c", "--json")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "c" / "model.c").is_file()
    tin = g.tensors[g.inputs[0]]
    xs = quantize_input(to_nhwc(x[:3]), tin.scale, tin.zero_point).reshape((3,) + tin.shape)
    c_out = HostBuild(generate_c(g, "model", command="test"), workdir=tmp_path / "host").run(xs)[0]
    it = Interpreter(g)
    for xi, co in zip(xs, c_out):
        assert np.array_equal(co.reshape(-1), it.run(xi)[0].reshape(-1))
    # compress's int8 evaluation on the generated C: the same bytes as on the reference
    ref = run_int8(g, x, dequantize=False)
    assert np.array_equal(run_int8(g, x, dequantize=False, engine="c"), ref)
    assert np.array_equal(ref[:3].reshape(c_out.shape), c_out)


def test_zoo_macs_match_the_mlperf_reference_models():
    """DS-CNN-S, ResNet-8, MobileNetV1-0.25 and the AD autoencoder as the zoo builds them have
    the MLPerf Tiny reference models' exact MAC counts: same architectures."""
    from kiloml.workflow.compile import load_model, model_macs

    H.require_shared()
    cases = [("ds-cnn", (49, 10), 12, {}, "kws_ref_model"),
             ("resnet8", (32, 32, 3), 10, {}, "pretrainedResnet_quant"),
             ("mobilenet-v1", (96, 96, 3), 2, {}, "vww_96_int8"),
             ("autoencoder", (640,), 0, {}, "ad01_int8")]
    for arch, fshape, nc, params, ref in cases:
        m = build_model(arch, fshape, nc, **params).eval()
        x = to_model_input(np.zeros((1,) + fshape), input_layout(arch, fshape))
        net = lower(m, torch.as_tensor(x), append_softmax=nc > 0)
        want = model_macs(load_model(H.MODELS / "mlperf_tiny" / f"{ref}.tflite"))
        assert net.macs() == want, (arch, net.macs(), want)


# ---------------------------------------------------------------- lowering details


class _Patterns(nn.Module):
    """Symmetric torch padding (stride 1 -> SAME, stride 2 -> explicit PAD), dilation,
    functional relu/relu6, residual add, max pool, standalone ReLU, mean, view-flatten of a
    spatial tensor (FC columns permuted to NHWC order)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(2, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1, stride=2)
        self.c3 = nn.Conv2d(8, 8, 3, padding=2, dilation=2)
        self.dw = nn.Conv2d(8, 16, 3, padding=1, groups=8)       # depth multiplier 2
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(16 * 2 * 2, 5)
        self.fc2 = nn.Linear(16, 5)

    def forward(self, x):
        x = F.relu(self.bn1(self.c1(x)))
        y = F.relu6(self.c2(x))
        y = F.relu(self.c3(y) + y)
        y = self.dw(y)
        y = F.relu(self.pool(y))
        a = self.fc(y.view(y.size(0), -1))
        b = self.fc2(y.mean(dim=(2, 3)))
        return a + b


def test_lowering_patterns_are_exact_and_export():
    torch.manual_seed(1)
    m = _Patterns()
    H.randomize_bn(m, 1)
    x = np.random.default_rng(1).normal(0, 1, (20, 2, 8, 8)).astype(np.float32)
    net, g = quantize_ptq(m, x[:16], append_softmax=False)
    ops = [n.op for n in g.nodes]
    assert ops.count("PAD") == 1 and "MAX_POOL_2D" in ops and "RELU" in ops
    assert ops.count("DEPTHWISE_CONV_2D") == 1
    dw = next(n for n in g.nodes if n.op == "DEPTHWISE_CONV_2D")
    assert dw.attrs.depth_multiplier == 2
    adds = [n for n in g.nodes if n.op == "ADD"]
    assert [a.attrs.activation for a in adds] == ["RELU", "NONE"]
    net.set_mode("float")
    with torch.no_grad():
        assert torch.allclose(net(torch.as_tensor(x)), m(torch.as_tensor(x)), atol=1e-5)
    b = write_tflite(g)
    tin = g.tensors[g.inputs[0]]
    it = Interpreter(g)
    for xi in quantize_input(to_nhwc(x[16:]), tin.scale, tin.zero_point):
        xi = xi.reshape(tin.shape)
        assert np.array_equal(H.run_tflm(b, xi).reshape(-1), it.run(xi)[0].reshape(-1))


def test_conv1d_and_same_padding_layers():
    torch.manual_seed(2)
    m = nn.Sequential(nn.Conv1d(3, 6, 5, padding=2), nn.BatchNorm1d(6), nn.ReLU(),
                      nn.AvgPool1d(2), nn.Conv1d(6, 4, 3, stride=2), nn.Flatten(),
                      nn.Linear(4 * 12, 3))
    H.randomize_bn(m, 2)
    x = np.random.default_rng(2).normal(0, 1, (12, 3, 50)).astype(np.float32)
    net, g = quantize_ptq(m, x[:8])
    assert g.tensors[g.inputs[0]].shape == (1, 1, 50, 3)     # channels last, as the window
    net.set_mode("float")
    with torch.no_grad():
        assert torch.allclose(net(torch.as_tensor(x)), m(torch.as_tensor(x)), atol=1e-5)
    same = nn.Sequential(Conv2dSame(1, 4, (10, 4), stride=2))
    n2, g2 = quantize_ptq(same, np.random.default_rng(0).normal(0, 1, (4, 1, 49, 10)))
    assert g2.nodes[0].attrs.padding == "SAME" and g2.tensors[g2.outputs[0]].shape == (1, 25, 5, 4)


@pytest.mark.parametrize("model, msg", [
    (nn.Sequential(nn.Conv2d(4, 4, 3, groups=2)), "grouped convolution"),
    (nn.Sequential(nn.Conv2d(4, 4, 3), nn.GELU()), "GELU"),
    (nn.Sequential(nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3)), "batch norm"),
    (nn.Sequential(nn.Conv2d(4, 4, 3), nn.Linear(6, 2)), "linear layer"),
    (nn.Sequential(nn.Conv2d(4, 4, 3), nn.Hardtanh(-1.0, 1.0)), "Hardtanh has no TFLite"),
    (nn.Sequential(nn.Conv2d(4, 4, 3), nn.MaxPool2d(2, padding=1)), "padding or ceil_mode"),
    (nn.Sequential(nn.Conv2d(4, 4, 3, padding_mode="reflect")), "padding_mode 'reflect'"),
])
def test_unsupported_models_fail_with_a_clear_error(model, msg):
    with pytest.raises(QuantizeError, match=msg):
        lower(model.eval(), torch.zeros(1, 4, 8, 8))


@pytest.mark.parametrize("tail", ["relu", "bn", "dropout", "relu6-module"])
def test_models_ending_in_an_activation_bn_or_identity(tail):
    """The last layer may be followed by a fused ReLU, a folded batch norm or an identity:
    the model's output is then the folded layer's output (this used to fail with "the
    model's output is not its last operation")."""
    torch.manual_seed(6)
    last = {"relu": nn.ReLU(), "bn": nn.BatchNorm1d(3), "dropout": nn.Dropout(0.2),
            "relu6-module": nn.Hardtanh(0.0, 6.0)}[tail]
    m = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3), last)
    H.randomize_bn(m, 6)
    x = np.random.default_rng(6).normal(0, 2, (40, 8)).astype(np.float32)
    net, g = quantize_ptq(m, x[:32])
    assert [op.kind for op in net.ops] == ["linear", "linear"]
    assert net.ops[-1].act == {"relu": "RELU", "relu6-module": "RELU6"}.get(tail, "NONE")
    net.set_mode("float")
    with torch.no_grad():
        assert torch.allclose(net(torch.as_tensor(x)), m(torch.as_tensor(x)), atol=1e-5)
    fq = run_fake(net, x[32:])
    tout = g.tensors[g.outputs[0]]
    assert np.abs(run_int8(g, x[32:]) - fq).max() <= 2 * tout.scale + 1e-9


# ---------------------------------------------------------------- calibration


def test_qparams_from_range():
    s, z = qparams_from_range(0.0, 6.0)
    assert z == -128 and s == pytest.approx(6 / 255)
    s, z = qparams_from_range(-1.0, 1.0)
    assert -128 <= z <= 127 and int(quantize_input(np.zeros(1), s, z)[0]) == z   # 0 exact
    assert (-128 - z) * s <= -1.0 + s and (127 - z) * s >= 1.0 - s               # range covered
    s, z = qparams_from_range(0.5, 2.0)                 # range always includes 0
    assert z == -128 and s == pytest.approx(2 / 255)


def test_calibration_methods_on_heavy_tailed_activations():
    torch.manual_seed(4)
    m = nn.Sequential(nn.Linear(32, 64), nn.Linear(64, 8))
    rng = np.random.default_rng(4)
    x = rng.standard_t(2, (512, 32)).astype(np.float32)        # heavy tails
    ranges, errors = {}, {}
    for method in ("minmax", "percentile", "mse"):
        net = lower(m, torch.as_tensor(x[:1]))
        xt = torch.as_tensor(x)
        calibrate(net, [xt[:256], xt[256:]], method=method)
        ob = net.observers[net.quant_of[net.ops[0].output]]
        ranges[method] = (float(ob.lo), float(ob.hi))
        fake = run_fake(net, x)
        net.set_mode("float")
        with torch.no_grad():
            flt = net(xt).numpy()
        errors[method] = float(np.mean((fake - flt) ** 2))
        to_graph(net)                                          # exports
    lo, hi = ranges["minmax"]
    for method in ("percentile", "mse"):
        assert lo <= ranges[method][0] <= 0 <= ranges[method][1] <= hi
        assert ranges[method][1] - ranges[method][0] < hi - lo
    assert errors["mse"] < errors["minmax"]


def test_fixed_input_quantization_is_kept():
    m = nn.Sequential(nn.Flatten(), nn.Linear(49 * 10, 4))
    x = np.random.default_rng(5).normal(0, 20, (32, 1, 49, 10)).astype(np.float32)
    _, g = quantize_ptq(m, x, input_quant=(0.584703, 83))
    tin = g.tensors[g.inputs[0]]
    assert tin.scale == pytest.approx(0.584703) and tin.zero_point == 83
    assert tin.shape == (1, 49, 10, 1)
