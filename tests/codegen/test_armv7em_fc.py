"""kml_fully_connected_s8 (armv7em, models without convolutions): the requantization modes
(clamps or SSAT, with or without the ReLU shortcut for accumulators <= 0), the int16-weight
layout (``--prefer speed``) and the -O0 / -Os builds, each in the emulator against the
reference interpreter (kiloml.ir.interpreter, bit-exact with TFLite Micro)."""

from __future__ import annotations

import shutil
import subprocess
from importlib import resources

import numpy as np
import pytest

import opbuilder as ob
from kiloml.codegen.c import io_specs
from kiloml.ir.graph import DTYPES
from kiloml.ir.interpreter import Interpreter
from kiloml.ir.ops.base import REGISTRY
from kiloml.targets.emulator import emulate
from kiloml.targets.profile import build_elf

pytestmark = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                                reason="arm-none-eabi-gcc not installed")

CASES = [  # in_shape, units, activation; depths hit the mid-loop entry and the padding
    ((1, 40), 12, "RELU"),     # 5 halves of 8: odd, enters mid-loop
    ((1, 64), 16, "RELU"),     # zero point -128 below: SSAT and the shortcut
    ((1, 33), 8, "NONE"),      # SSAT, no shortcut
    ((2, 24), 7, "RELU6"),     # clamps, a partial last group, 2 rows
    ((1, 17), 9, "RELU_N1_TO_1"),
    ((3, 8), 4, "RELU"),       # one half, 3 rows
]


def _graph(seed: int):
    m = ob.ModelBuilder(np.random.default_rng(seed), "fc_modes")
    outs = [m.fully_connected(m.input(s), u, activation=a) for s, u, a in CASES]
    g = m.build(outs)
    # the second layer: output zero point -128 (a ReLU output range [0, max]) -> act_min -128
    t = g.tensors[g.nodes[1].outputs[0]]
    t.quant = type(t.quant)(np.asarray(t.quant.scale, np.float32),
                            np.full(np.asarray(t.quant.zero_point).shape, -128, np.int64),
                            t.quant.axis)
    return g


def _mode(p) -> int:
    """fc_rq4's mode in kml_fully_connected_s8: bit 0 SSAT, bit 1 the ReLU shortcut."""
    return (1 if (p.act_min, p.act_max) == (-128, 127) else 0) | \
        (2 if p.act_min == p.out_offset else 0)


def _run(g, inputs, workdir, opt="-O2", options=None, core="cortex-m4"):
    b = build_elf(g, core, inputs, workdir, "armv7em", opt=opt, options=options)
    outs = io_specs(b.result.graph)[1]
    emu = emulate(b.elf, core, None,
                  {f"kml_profile_{s.name}": s.tensor.nbytes for s in outs})
    return b, [np.frombuffer(emu.memory[f"kml_profile_{s.name}"], DTYPES[s.tensor.dtype])
               .reshape(s.tensor.shape) for s in outs]


def _check(g, seed, workdir, opt="-O2", options=None, core="cortex-m4"):
    inputs = ob.random_inputs(np.random.default_rng(seed), g)
    want = Interpreter(g).run(*inputs)
    b, got = _run(g, inputs, workdir, opt, options, core)
    for k, (w, o) in enumerate(zip(want, got)):
        assert np.array_equal(o, w), f"output {k}: {np.count_nonzero(o != w)} differ"
        assert len(np.unique(w)) > 1
    return b, inputs, want


def test_requantization_modes_and_relu_shortcut(tmp_path):
    """Every mode of fc_rq4 runs bit-exact; in the ReLU layers both kinds of accumulator occur:
    <= 0 (the shortcut: output act_min) and > 0 with an output above act_min, which a
    shortcut taken for an accumulator > 0 would turn into act_min (so this test fails then).
    The accumulators are computed here with numpy from the graph's tensors."""
    g = _graph(61)
    modes = [_mode(REGISTRY["FULLY_CONNECTED"].prepare(g, n)) for n in g.nodes]
    assert sorted(set(modes)) == [0, 1, 2, 3], modes
    _, inputs, want = _check(g, 62, tmp_path)
    for k, node in enumerate(g.nodes):
        p = REGISTRY["FULLY_CONNECTED"].prepare(g, node)
        if not modes[k] & 2:
            continue
        w = g.tensors[node.inputs[1]].data.astype(np.int64)
        bias = g.tensors[node.inputs[2]].data.astype(np.int64)
        x = inputs[k].reshape(-1, w.shape[1]).astype(np.int64) + p.in_offset
        acc = x @ w.T + bias
        y = want[k].reshape(acc.shape)
        assert np.all(y[acc <= 0] == p.act_min)
        assert np.count_nonzero(acc <= 0) >= 3, k
        above = (acc > 0) & (y > p.act_min)
        assert np.count_nonzero(above) >= 3, k


@pytest.mark.parametrize("core", ["cortex-m4", "cortex-m7", "cortex-m33"])
def test_int16_weights_bit_exact(tmp_path, core):
    """The int16-weight layout (option fc-int16, every node forced) in every mode."""
    g = _graph(63)
    b, _, _ = _check(g, 64, tmp_path, options={n: "fc-int16" for n in range(len(g.nodes))},
                     core=core)
    assert [c["option"] for c in b.result.choices] == ["fc-int16"] * len(g.nodes)


@pytest.mark.parametrize("opt", ["-O0", "-Os"])
def test_debug_and_size_builds_bit_exact(tmp_path, opt):
    """-O0 (C loops: GCC cannot allocate the asm blocks' registers with r7 the frame pointer)
    and -Os, both layouts."""
    g = _graph(65)
    _check(g, 66, tmp_path / "int8", opt=opt)
    _check(g, 67, tmp_path / "int16", opt=opt,
           options={n: "fc-int16" for n in range(len(g.nodes))})


@pytest.mark.parametrize("opt", ["-O0", "-O1", "-O2", "-O3", "-Os"])
def test_kernel_compiles_warning_free(tmp_path, opt):
    rt = resources.files("kiloml.codegen") / "runtime"
    r = subprocess.run(["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", opt, "-std=c99",
                        "-Wall", "-Wextra", "-Wconversion", "-Werror", "-I", str(rt / "armv7em"),
                        "-I", str(rt / "portable"), "-c",
                        str(rt / "armv7em" / "kml_fully_connected.c"),
                        "-o", str(tmp_path / "k.o")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_int16_stream_layout():
    """fc_stream extended: flag bit 1, per input group and unit the sign-extended words
    (w0, w1), (w2, w3) (the inputs' int16 pairs); the folded biases (doubled, not paired), the
    multipliers and shifts of the int8 stream; its size is fc_words'."""
    from kiloml.codegen.armv7em import fc_stream, fc_words

    rng = np.random.default_rng(7)
    w = rng.integers(-128, 128, (6, 13)).astype(np.int8)
    bias = rng.integers(-1000, 1000, 6)
    args = (w, bias, np.full(6, 1 << 30), np.full(6, -8), 5, -3, -128, 127)
    s8, s16 = fc_stream(*args, uniform=False), fc_stream(*args, extended=True, uniform=False)
    assert s8.size == fc_words(6, 13) and s16.size == fc_words(6, 13, True)
    assert s8[0] == 0 and s16[0] == 2
    d8, g8, g16 = 16, 4 + 16 // 4 * 4 + 5, 4 + 16 // 4 * 8 + 5
    fb = 2 * (bias + 5 * w.astype(np.int64).sum(axis=1))  # doubled: a fast layer
    assert list(s16[1:5]) == list(fb[:4])                      # biases, not paired
    assert list(s16[1 + g16 - 5:1 + g16]) == list(s8[1 + g8 - 5:1 + g8])  # mults, shifts
    pad = np.zeros((8, d8), np.int64)
    pad[:6, :13] = w
    halves = np.array(s16[5:5 + 8 * 4], "<i4").view("<i2").reshape(4, 4, 2, 2)  # grp, unit
    for grp in range(4):
        for u in range(4):
            v = pad[u, 4 * grp:4 * grp + 4]
            assert halves[grp, u].tolist() == [[v[0], v[1]], [v[2], v[3]]]


def test_prefer_picks_the_layout():
    """speed: int16 weights for every FULLY_CONNECTED of the AD autoencoder but the 128 x 8
    layer (node 5: its int8 uniform stream runs faster, measured 3,044 against 3,573 cycles
    when FC_CYCLES was fitted); balanced and size: int8 (the int16 layout costs a byte per
    weight for < 1 cycle per 3 MACs)."""
    from pathlib import Path
    import os

    from kiloml.codegen.armv7em_choice import choose
    from kiloml.io.tflite_reader import read_tflite

    shared = Path(os.environ.get("KILOML_SHARED",
                                 Path(__file__).resolve().parents[3] / "shared"))
    g = read_tflite(shared / "models" / "mlperf_tiny" / "ad01_int8.tflite")
    speed = {n: "fc" if n == 5 else "fc-int16" for n in range(10)}
    for prefer, names in (("speed", speed), ("balanced", dict.fromkeys(range(10), "fc")),
                          ("size", dict.fromkeys(range(10), "fc"))):
        picks = choose(g, prefer)
        assert {n: o.name for n, (o, _) in picks.items()} == names, prefer


def test_relu_shortcut_boundary(tmp_path):
    """The smallest accumulators above 0 whose output is above act_min: a ReLU layer with an
    effective scale of 0.45 (multiplier 0.9 x 2^31, right shift 1: the fast path) and units
    whose accumulator is one input (+ offset), so accumulators 2, 3, 4... occur over 64 rows
    and requantize to act_min + 1, + 1, + 2... A shortcut taken for any accumulator >= 2
    fails here (1 requantizes to act_min either way)."""
    m = ob.ModelBuilder(np.random.default_rng(71), "fc_edge")
    g = m.build([m.fully_connected(m.input((64, 8)), 8, activation="RELU")])
    node = g.nodes[0]
    x_t, w_t, b_t, y_t = (g.tensors[i] for i in (*node.inputs[:3], node.outputs[0]))
    w = w_t.data.copy()
    w[:4] = 0
    w[0, 0], w[1, 1], w[2, 2], w[3, 3] = 1, -1, 1, 2
    b = b_t.data.copy()
    b[:4] = 0
    w_t.data, b_t.data = w, b
    eff = float(np.float32(x_t.quant.scale).ravel()[0] * np.float32(w_t.quant.scale).ravel()[0])
    y_t.quant = type(y_t.quant)(np.array([eff / 0.45], np.float32),
                                np.array(y_t.quant.zero_point).reshape(-1), y_t.quant.axis)
    p = REGISTRY["FULLY_CONNECTED"].prepare(g, node)
    assert _mode(p) & 2 and np.all(-np.asarray(p.shift) == 1)  # shortcut; right shift 1
    _, inputs, want = _check(g, 72, tmp_path)
    acc = (inputs[0].reshape(64, 8).astype(np.int64) + p.in_offset) @ w.T.astype(np.int64) + b
    y = want[0].reshape(acc.shape)
    for a in (2, 3, 4):
        assert np.any((acc == a) & (y > p.act_min)), a
    assert np.any(acc <= 0)


def test_ad_autoencoder_speed_bit_exact(tmp_path):
    """The MLPerf AD autoencoder with --prefer speed (int16 weights in nine layers, the int8
    uniform stream in the 128 x 8 one: both entry points in one model) on the Cortex-M4,
    against the reference interpreter."""
    import os
    from pathlib import Path

    from kiloml.io.tflite_reader import read_tflite

    shared = Path(os.environ.get("KILOML_SHARED",
                                 Path(__file__).resolve().parents[3] / "shared"))
    g = read_tflite(shared / "models" / "mlperf_tiny" / "ad01_int8.tflite")
    inputs = ob.random_inputs(np.random.default_rng(81), g)
    b = build_elf(g, "cortex-m4", inputs, tmp_path, "armv7em", prefer="speed")
    picked = [c["option"] for c in b.result.choices]
    assert picked == ["fc-int16"] * 5 + ["fc"] + ["fc-int16"] * 4
    outs = io_specs(b.result.graph)[1]
    emu = emulate(b.elf, "cortex-m4", None,
                  {f"kml_profile_{s.name}": s.tensor.nbytes for s in outs})
    for s, want in zip(outs, Interpreter(g).run(*inputs)):
        got = np.frombuffer(emu.memory[f"kml_profile_{s.name}"], DTYPES[s.tensor.dtype])
        assert np.array_equal(got.reshape(s.tensor.shape), want)


def test_int16_weights_general_requantization(tmp_path):
    """Layers on TFLite's general requantization (a unit with a left shift: flag bits 0 and 1)
    with int16 weights, next to a fast one; a partial last group."""
    from kiloml.codegen.armv7em import fc_stream

    m = ob.ModelBuilder(np.random.default_rng(91), "fc_generic16")
    g = m.build([m.fully_connected(m.input((1, 24)), 14),
                 m.fully_connected(m.input((2, 37)), 10, activation="RELU"),
                 m.fully_connected(m.input((1, 16)), 6, activation="RELU6")])
    for node in g.nodes[:2]:
        w = g.tensors[node.inputs[1]]
        scale = np.array(np.broadcast_to(w.quant.scale, (w.shape[0],)), np.float32)
        scale[1] *= 1e5  # left shift: the whole layer takes the general path
        w.quant = type(w.quant)(scale, np.zeros(scale.size, np.int64), 0)
    flags = []
    for node in g.nodes:
        p = REGISTRY["FULLY_CONNECTED"].prepare(g, node)
        flags.append(int(fc_stream(g.tensors[node.inputs[1]].data,
                                   g.tensors[node.inputs[2]].data, p.mult, p.shift,
                                   p.in_offset, p.out_offset, p.act_min, p.act_max,
                                   extended=True)[0]))
    assert flags == [3, 3, 2]  # int16 streams are never uniform (bit 2)
    _check(g, 92, tmp_path, options={n: "fc-int16" for n in range(len(g.nodes))})


DEPTHS = [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 40, 48, 56, 63, 64, 65, 96, 127,
          128, 129, 200, 640]
UNITS = [1, 2, 3, 4, 5, 6, 7, 9, 13]
ACTS = ["NONE", "RELU", "RELU6", "RELU_N1_TO_1"]


def _sweep_graph(seed: int):
    """One FULLY_CONNECTED per depth: every entry of the 32-input loop (depth padded to 8,
    0 / 8 / 16 / 24 left mod 32), odd unit counts (partial last groups, a lone unit of a
    pair), per-channel and per-tensor weights, every activation, 1 to 3 rows."""
    m = ob.ModelBuilder(np.random.default_rng(seed), "fc_sweep")
    outs = []
    for k, d in enumerate(DEPTHS):
        x = m.input((1 + k % 3, d))
        outs.append(m.fully_connected(x, UNITS[k % len(UNITS)], activation=ACTS[k % 4],
                                      per_channel=bool(k % 2)))
    return m.build(outs)


@pytest.mark.parametrize("core,opt", [("cortex-m4", "-O2"), ("cortex-m7", "-O2"),
                                      ("cortex-m33", "-O2"), ("cortex-m4", "-O0"),
                                      ("cortex-m4", "-Os")])
def test_depth_sweep_bit_exact(tmp_path, core, opt):
    """Depths 1 to 640 (every loop entry and padding), unit counts 1 to 13, both weight
    scalings and every activation, int8 weights (the unit-pair stream), on each core and at
    -O0 (C loops) / -Os, against the reference interpreter."""
    g = _sweep_graph(101)
    inputs = ob.random_inputs(np.random.default_rng(102), g)
    want = Interpreter(g).run(*inputs)
    b, got = _run(g, inputs, tmp_path, opt, None, core)
    assert {c["option"] for c in b.result.choices} == {"fc"}
    for k, (w, o) in enumerate(zip(want, got)):
        assert np.array_equal(o, w), f"depth {DEPTHS[k]}: {np.count_nonzero(o != w)} differ"
    assert sum(len(np.unique(w)) > 1 for w in want) >= len(want) - 4  # 1-output layers


def _set_output_scale(g, node, acc: np.ndarray) -> None:
    """Output scale of a per-tensor layer such that its accumulators span ~[-120, 120]."""
    x_t, w_t, y_t = g.tensors[node.inputs[0]], g.tensors[node.inputs[1]], \
        g.tensors[node.outputs[0]]
    eff = float(np.float32(x_t.quant.scale).ravel()[0] * np.float32(w_t.quant.scale).ravel()[0])
    y_t.quant = type(y_t.quant)(np.array([eff * float(np.abs(acc).max()) / 120], np.float32),
                                np.array([0], np.int64), y_t.quant.axis)


def test_pair_accumulators_wrap(tmp_path):
    """The unit-pair accumulators (2 (256 S_q + S_p + 128 Sx) on the fast path) wrap modulo
    2^32 while the true accumulators stay far below 2^30: units q of extreme weights (127,
    -128) over 640 inputs of extreme values. A second layer takes TFLite's general path (a
    bias near 2^31 - 2^24: accumulator bound >= 2^30), whose accumulators the kernel must not
    double. Both against the reference interpreter; the wrap is checked here with numpy."""
    from kiloml.codegen.armv7em import fc_stream

    m = ob.ModelBuilder(np.random.default_rng(111), "fc_wrap")
    g = m.build([m.fully_connected(m.input((4, 640)), 8),
                 m.fully_connected(m.input((3, 64)), 6, activation="RELU")])
    rng = np.random.default_rng(112)
    inputs = ob.random_inputs(rng, g)
    x0 = inputs[0].reshape(4, 640)
    x0[0], x0[1] = 127, -128          # rows of extreme inputs
    x0[2, ::2], x0[2, 1::2] = 127, -128
    node = g.nodes[0]
    w_t, b_t = g.tensors[node.inputs[1]], g.tensors[node.inputs[2]]
    w = w_t.data.copy()
    w[1], w[3], w[5] = 127, -128, 127
    w[7, ::2], w[7, 1::2] = -128, 127
    w_t.data = w
    p = REGISTRY["FULLY_CONNECTED"].prepare(g, node)
    ww = w.astype(np.int64)
    xx = x0.astype(np.int64)
    acc = (xx + p.in_offset) @ ww.T + b_t.data.astype(np.int64)
    _set_output_scale(g, node, acc)
    p = REGISTRY["FULLY_CONNECTED"].prepare(g, node)
    assert np.abs(acc).max() < 1 << 29
    s = fc_stream(w, b_t.data, p.mult, p.shift, p.in_offset, p.out_offset, p.act_min,
                  p.act_max)
    assert s[0] & 1 == 0  # fast path: inputs doubled
    pair = 2 * (256 * (xx @ ww[1::2].T) + xx @ ww[0::2].T + 128 * xx.sum(axis=1)[:, None])
    assert np.abs(pair).max() >= 1 << 31  # the pair accumulators wrap

    node = g.nodes[1]
    b_t = g.tensors[node.inputs[2]]
    b = b_t.data.copy()
    b[2] = (1 << 31) - (1 << 24)
    b[3] = -(1 << 31) + (1 << 24)
    b_t.data = b
    p = REGISTRY["FULLY_CONNECTED"].prepare(g, node)
    s = fc_stream(g.tensors[node.inputs[1]].data, b, p.mult, p.shift, p.in_offset,
                  p.out_offset, p.act_min, p.act_max)
    assert s[0] & 1 == 1  # general path: not doubled

    want = Interpreter(g).run(*inputs)
    _, got = _run(g, inputs, tmp_path)
    for k, (wv, o) in enumerate(zip(want, got)):
        assert np.array_equal(o, wv), f"output {k}: {np.count_nonzero(o != wv)} differ"
    assert len(np.unique(want[0])) > 10
    y1 = want[1].reshape(3, 6)
    assert np.all(y1[:, 2] == 127) and np.all(y1[:, 3] == p.act_min)  # no wrap of +-2^31


def test_uniform_stream_layout():
    """fc_stream's uniform layout (flag bit 2: one fast multiplier and right shift for the
    layer, per-tensor weights): words 1-2 hold them, the groups only biases and weights (the
    per-unit layout's words less the multipliers and shift word), sizes as fc_words; not
    uniform with per-channel multipliers, a pruned unit (its constant output takes its own
    multiplier) or on TFLite's general path."""
    from kiloml.codegen.armv7em import fc_stream, fc_words

    rng = np.random.default_rng(121)
    w = rng.integers(-128, 128, (10, 21)).astype(np.int8)
    bias = rng.integers(-1000, 1000, 10)
    args = (w, bias, np.full(10, 1_500_000_000), np.full(10, -9), 5, -3, -128, 127)
    u, n = fc_stream(*args), fc_stream(*args, uniform=False)
    assert u[0] == 4 and n[0] == 0
    assert u.size == fc_words(10, 21, False, True) and n.size == fc_words(10, 21)
    assert list(u[1:3]) == [1_500_000_000, 9]
    per = 4 + 24 // 4 * 4  # a group's biases and weight words
    ug = u[3:].reshape(3, per)
    ng = n[1:].reshape(3, per + 5)
    assert np.array_equal(ug, ng[:, :per])
    assert np.all(ng[:, per:per + 4].reshape(-1)[:10] == 1_500_000_000)  # real units
    assert fc_stream(*args, extended=True)[0] == 2  # int16 streams: never uniform
    mult = np.full(10, 1_500_000_000)
    mult[3] += 1
    assert fc_stream(w, bias, mult, np.full(10, -9), 5, -3, -128, 127)[0] == 0
    w0 = w.copy()
    w0[4] = 0
    assert fc_stream(w0, bias, np.full(10, 1_500_000_000), np.full(10, -9), 5, -3, -128,
                     127)[0] == 0
    assert fc_stream(w, bias, np.full(10, 1_500_000_000), np.full(10, 2), 5, -3, -128,
                     127)[0] == 1


@pytest.mark.parametrize("opt", ["-O2", "-O0"])
def test_uniform_and_per_unit_layers_bit_exact(tmp_path, opt):
    """Per-tensor layers (uniform stream) in every requantization mode beside per-channel
    ones and a per-tensor layer with a pruned unit (per-unit stream), and the int16 layout of
    both; the flags are checked, the outputs against the reference interpreter."""
    from kiloml.codegen.armv7em import fc_stream

    m = ob.ModelBuilder(np.random.default_rng(131), "fc_uniform")
    outs = [m.fully_connected(m.input((2, 40)), 12, activation=a, per_channel=pc)
            for a in ACTS for pc in (False, True)]
    outs.append(m.fully_connected(m.input((1, 24)), 9, activation="RELU"))
    g = m.build(outs)
    node = g.nodes[-1]
    wt = g.tensors[node.inputs[1]]
    wd = wt.data.copy()
    wd[5] = 0  # pruned unit: its constant output needs its own multiplier
    wt.data = wd
    flags = []
    for n in g.nodes:
        p = REGISTRY["FULLY_CONNECTED"].prepare(g, n)
        flags.append(int(fc_stream(g.tensors[n.inputs[1]].data, g.tensors[n.inputs[2]].data,
                                   p.mult, p.shift, p.in_offset, p.out_offset, p.act_min,
                                   p.act_max)[0]))
    assert flags[0:8:2] == [4] * 4 and flags[1:8:2] == [0] * 4 and flags[8] == 0, flags
    b, _, _ = _check(g, 132, tmp_path / "int8", opt=opt)
    kernels = [c["kernel"] for c in b.result.choices]
    assert kernels == ["kml_fully_connected_u_s8", "kml_fully_connected_s8"] * 4 + \
        ["kml_fully_connected_s8"], kernels
    _check(g, 133, tmp_path / "int16", opt=opt,
           options={n: "fc-int16" for n in range(len(g.nodes))})


@pytest.mark.parametrize("act", ["NONE", "RELU_N1_TO_1"])
def test_requantization_ties(tmp_path, act):
    """Power-of-two scales (effective scale 1/4 or 1/8: multiplier 2^30, right shift 1 or 2)
    make exact halves frequent, where TFLite rounds away from zero: negative accumulators
    whose requantization ties, in a uniform layer (per-tensor) and a per-unit one (per-channel
    scales 2^-6 / 2^-7), checked against the reference interpreter and counted with numpy
    (a kernel without the sign correction of kml_rq fails here)."""
    from kiloml.codegen.armv7em import fc_stream
    from kiloml.ir.graph import QuantParams

    m = ob.ModelBuilder(np.random.default_rng(141), "fc_ties")
    g = m.build([m.fully_connected(m.input((64, 8)), 8, activation=act),
                 m.fully_connected(m.input((64, 8)), 8, activation=act, per_channel=True)])
    rng = np.random.default_rng(142)
    for k, node in enumerate(g.nodes):
        x_t, w_t, b_t, y_t = (g.tensors[i] for i in (*node.inputs[:3], node.outputs[0]))
        x_t.quant = QuantParams(np.array([2.0 ** -4], np.float32), np.array([0], np.int64))
        ws = np.full(8, 2.0 ** -6, np.float32) if k == 0 else \
            np.array([2.0 ** -6, 2.0 ** -7] * 4, np.float32)
        w_t.quant = QuantParams(ws if k else ws[:1], np.zeros(8 if k else 1, np.int64),
                                0 if k else None)
        b_t.quant = QuantParams(ws * np.float32(2.0 ** -4) if k else ws[:1] * np.float32(
            2.0 ** -4), np.zeros(8 if k else 1, np.int64), 0 if k else None)
        y_t.quant = QuantParams(np.array([2.0 ** -8], np.float32), np.array([3], np.int64))
        w_t.data = rng.integers(-1, 2, (8, 8)).astype(np.int8)
        b_t.data = rng.integers(-40, 40, 8).astype(np.int32)
        p = REGISTRY["FULLY_CONNECTED"].prepare(g, node)
        s = fc_stream(w_t.data, b_t.data, p.mult, p.shift, p.in_offset, p.out_offset,
                      p.act_min, p.act_max)
        assert s[0] == (4 if k == 0 else 0)
        assert set(np.asarray(p.mult).ravel().tolist()) == {1 << 30}
    inputs = [rng.integers(-128, 128, (64, 8)).astype(np.int8) for _ in range(2)]
    want = Interpreter(g).run(*inputs)
    _, got = _run(g, inputs, tmp_path)
    for k, node in enumerate(g.nodes):
        assert np.array_equal(got[k], want[k]), k
        w = g.tensors[node.inputs[1]].data.astype(np.int64)
        acc = inputs[k].astype(np.int64) @ w.T + g.tensors[node.inputs[2]].data
        r = 1 + np.array([0, 1] * 4 if k else [0] * 8)  # right shifts
        half = (acc + 1) // 2   # SRDHM by 2^30 (rounds ties up)
        tie = (acc < 0) & (half % (1 << r) == (1 << r) // 2)
        assert np.count_nonzero(tie) >= 20, k
