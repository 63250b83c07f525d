"""Cortex-M0+ (armv6m) packed weight pairs: two unsigned weights per word, one MULS per two MACs.

Bounded CONV_2D / FULLY_CONNECTED layers with at least 16 outputs take ``m0_dot8p`` (every
group of eight channels of a pixel in one call): on the non-zero pairs of the column where the
input is a fused ReLU's output (column values 0..255), or on the whole column of a dense layer
(values x + 128, padding 128 - input offset, the bias corrected at compile time). The lanes
are exact while c (w + 128) < 2^16, i.e. for column values 0..255. These tests check

* layers on every path (the pointwise ones with K a multiple of 4 build their pairs from the
  int8 input in one pass, m0_pairs16_x; built with --prefer speed: these small layers save too few cycles per
  extra flash byte for balanced): a ReLU-fed pointwise conv with 20 outputs (a padded group) over 15
  pixels and a 10-value window (K padded to 12), a ReLU-fed 3x3 SAME conv (im2col padding),
  a ReLU-fed pointwise conv with K = 8 over 9 pixels, a ReLU-fed FULLY_CONNECTED (2 batches), dense 3x3 SAME convs fed by model inputs with zero
  points -128 and 127 (padding values 0 and 255) and 3 input channels, with every ReLU output
  at the zero point (only the pairs' end marker), about half, or none; bit-exact in the
  emulator (Thumb-1 asm) and on the host under ASan/UBSan (the C form of the same lanes);
* the lanes at their limit: every column value 255 times weights 127 (c W = 65025 (1 +
  2^16), the largest product) and -128 (lane 0), exact;
* depthwise border windows by words (channels a multiple of 16, zero points -128 / 127 / 5);
* the choice: the layers take the packed pairs (the generated mode), their flash grows by a
  byte per weight and their instructions drop against ``packed_pairs`` off; a one-pixel FC
  takes them under --prefer speed only (balanced: the flash costs more than it saves);
  --prefer size takes neither.
"""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

import opbuilder as ob
from kiloml.codegen import armv6m_backend as m0b
from kiloml.codegen.c import generate_c
from kiloml.codegen.host import HostBuild
from kiloml.ir.graph import QuantParams
from kiloml.ir.interpreter import Interpreter
from kiloml.ir.passes import pipeline
from kiloml.targets.profile import profile_graph

if shutil.which("arm-none-eabi-gcc") is None:
    pytest.fail("arm-none-eabi-gcc is missing: run `make toolchain`", pytrace=False)


def packed_graph(shift: float):
    """The branches; the ReLU layers' biases moved by ``shift`` times their accumulators'
    spread (-inf: every output at the zero point; +: none at it)."""
    m = ob.ModelBuilder(np.random.default_rng(61), "m0p")
    relus, outs = [], []

    def relu(x, c, kernel=1):
        y = m.conv2d(x, c, kernel=kernel, activation="RELU")
        relus.append(m.nodes[-1])
        return y

    x = relu(m.input((1, 5, 3, 6)), 10)                    # 15 pixels, K = 10
    outs.append(m.conv2d(x, 20, kernel=1))                 # 20 outputs: 8 + 8 + 4 (padded)
    x = relu(m.input((1, 6, 5, 4)), 8)
    outs.append(m.conv2d(x, 16, kernel=3, padding="SAME", activation="RELU6"))
    x = relu(m.input((1, 3, 3, 4)), 8)                     # 9 pixels, K = 8: one pass
    outs.append(m.conv2d(x, 24, kernel=1))
    f = m.fully_connected(m.input((2, 12)), units=24, activation="RELU")
    relus.append(m.nodes[-1])
    outs.append(m.fully_connected(f, units=16))
    for zp in (-128, 127):                                 # dense: padding 0 / 255
        outs.append(m.conv2d(m.input((1, 7, 6, 3), zero_point=zp), 24, kernel=3,
                             padding="SAME", activation="RELU"))
    g = m.build(outs)
    for n in relus:
        b = g.tensors[n.inputs[2]]
        spread = float(np.abs(b.data).max()) + 1.0
        w = g.tensors[n.inputs[1]].data.astype(np.int64)
        reach = 255.0 * np.abs(w.reshape(w.shape[0], -1)).sum(axis=1)
        b.data = np.round(b.data + shift * (reach + spread)).astype(np.int32) \
            if np.isfinite(shift) else np.round(b.data - (reach + spread)).astype(np.int32)
    return g


def _modes(g, prefer="speed") -> dict[int, int]:
    """Node index -> the conv kernel's mode (0: none) in the generated C."""
    r = generate_c(g, "m", runtime="armv6m", prefer=prefer)
    src = "\n".join(v for k, v in r.files.items() if k.endswith(".c"))
    modes = {int(i): int(v) for i, v in re.findall(r"m_n(\d+)_mode\[1\] = \{\s*(\d+)", src)}
    calls = re.findall(r"kml_conv2d_m0_s8\(&m_n(\d+)_p", src)
    return {int(i): modes.get(int(i), 0) for i in calls}


def _host_and_emulator(g, seed):
    r = profile_graph(g, "pico", runtime="armv6m", prefer="speed")
    assert r["output_matches_reference"] is True and r["layers_match_reference"] is True
    assert r["layers_checked"] == len(pipeline(g).nodes)
    xs = ob.random_inputs(np.random.default_rng(seed), g)
    got = HostBuild(generate_c(g, "m", runtime="armv6m", prefer="speed"), sanitize=True).run(
        *[x[None] for x in xs])
    for o, w in zip(got, Interpreter(g).run(*xs)):
        assert np.array_equal(o[0], w)
    return r


@pytest.mark.parametrize("shift", [-np.inf, 0.0, 1.0])
def test_packed_pairs_bit_exact(shift):
    g = packed_graph(shift)
    modes = _modes(g)
    # the layers under test: four fed by ReLUs (zero skipping, 3), three dense (5); the ReLU
    # layers themselves have fewer than 16 outputs, or a model input (the FC's 24: dense)
    assert list(modes.values()).count(3) == 4 and list(modes.values()).count(5) == 3
    _host_and_emulator(g, 5)


def test_packed_lanes_at_their_limit():
    """Column values all 255 (a ReLU saturated at 127 with zero point -128) times weights
    127 (lane 255: c W = 65025 (1 + 2^16), the largest product) and -128 (lane 0)."""
    m = ob.ModelBuilder(np.random.default_rng(62), "m0l")
    x = m.conv2d(m.input((1, 3, 5, 8)), 12, kernel=1, activation="RELU")
    relu = m.nodes[-1]
    y = m.conv2d(x, 16, kernel=1)
    last = m.nodes[-1]
    g = m.build([y])
    g.tensors[relu.inputs[2]].data = np.full(12, 1 << 28, np.int32)      # saturated
    q = g.tensors[relu.outputs[0]].quant                                # zero point -128
    g.tensors[relu.outputs[0]].quant = QuantParams(q.scale, np.array([-128]))
    w = g.tensors[last.inputs[1]]
    data = np.full(w.shape, 127, np.int8)
    data[1::2] = -128
    data[3, :, :, :5] = -128
    w.data = data
    lg = pipeline(g)
    xs = ob.random_inputs(np.random.default_rng(4), g)
    acts = Interpreter(g).run_all(*xs)
    col = acts[lg.nodes[-1].inputs[0]]
    assert int(g.tensors[lg.nodes[-1].inputs[0]].quant.zero_point[0]) == -128
    assert np.all(col == 127)                                          # c = 255 everywhere
    assert _modes(g)[len(lg.nodes) - 1] == 3
    _host_and_emulator(g, 4)


def test_packed_pairs_choice_flash_and_speed(monkeypatch):
    """The packed layers: a byte more flash per weight, fewer instructions (per layer, in the
    emulator) than the byte stream, both bit-exact."""
    g = packed_graph(0.0)
    on = profile_graph(g, "pico", runtime="armv6m", prefer="speed")
    monkeypatch.setattr(m0b.Armv6mBackend, "packed_pairs", False)
    assert set(_modes(g).values()) <= {0, 1}
    off = profile_graph(g, "pico", runtime="armv6m", prefer="speed")
    monkeypatch.undo()
    for r in (on, off):
        assert r["output_matches_reference"] is True and r["layers_match_reference"] is True
    assert on["flash_bytes"] > off["flash_bytes"]
    a = {la["node"]: la["instructions"] for la in on["layers"]}
    b = {la["node"]: la["instructions"] for la in off["layers"]}
    for i, mode in _modes(g).items():
        if mode in (3, 5):
            assert a[i] < b[i], (i, a[i], b[i])


def test_packed_pairs_by_preference():
    """Fed by ReLUs (an estimated half a cycle saved per MAC for a byte per weight: pixels / 2
    cycles per byte, balanced's rate 48): a one-pixel FC (20 -> 64 -> 32) and a 15-pixel
    pointwise layer take the packed pairs under speed only, a 100-pixel one under balanced
    too; size: none (no bounded records either)."""
    m = ob.ModelBuilder(np.random.default_rng(63), "m0c")
    f = m.fully_connected(m.input((1, 20)), units=64, activation="RELU")
    fc = m.fully_connected(f, units=32)
    x = m.conv2d(m.input((1, 5, 3, 6)), 12, kernel=1, activation="RELU")
    pw = m.conv2d(x, 16, kernel=1)
    x = m.conv2d(m.input((1, 10, 10, 6)), 12, kernel=1, activation="RELU")
    pw2 = m.conv2d(x, 16, kernel=1)
    g = m.build([fc, pw, pw2])
    lg = pipeline(g)
    idx = [next(i for i, n in enumerate(lg.nodes) if t in n.outputs) for t in (fc, pw, pw2)]
    bal, speed, size = (_modes(g, p) for p in ("balanced", "speed", "size"))
    assert [bal[i] for i in idx] == [1, 1, 3]
    assert [speed[i] for i in idx] == [3, 3, 3]
    assert [size[i] for i in idx] == [0, 0, 0]
    r = profile_graph(g, "pico", runtime="armv6m", prefer="speed")
    assert r["output_matches_reference"] is True and r["layers_match_reference"] is True


@pytest.mark.parametrize("opt", ["-O0", "-Os"])
def test_packed_pairs_c_steps_in_the_emulator(tmp_path, opt):
    """At -O0 / -Os the packed layers take the C form of the lanes (m0_dot8p_c,
    m0_pairs16_c) on the Cortex-M0+: the outputs in the emulator equal the interpreter's."""
    from kiloml.codegen.c import io_specs
    from kiloml.ir.graph import DTYPES
    from kiloml.targets.emulator import emulate
    from kiloml.targets.profile import build_elf

    g = packed_graph(0.0)
    x = ob.random_inputs(np.random.default_rng(9), g)
    b = build_elf(g, "cortex-m0plus", x, tmp_path, "armv6m", opt=opt, prefer="speed")
    _, outs = io_specs(b.result.graph)
    emu = emulate(b.elf, "cortex-m0plus",
                  read_back={f"kml_profile_{s.name}": s.tensor.nbytes for s in outs})
    for s, want in zip(outs, Interpreter(g).run(*x)):
        got = np.frombuffer(emu.memory[f"kml_profile_{s.name}"], DTYPES[s.tensor.dtype])
        assert np.array_equal(got.reshape(s.tensor.shape), want)


def test_depthwise_border_windows_by_words():
    """Depthwise layers with channels a multiple of 16 copy / fill their border windows by
    words (m0_copy16 / m0_fill16): 3x3 SAME layers with 16 and 32 channels, stride 1 and 2,
    2 batches, input zero points -128, 127 and 5 (the fill word's bytes); bit-exact in the
    emulator and on the host (memcpy / memset there)."""
    m = ob.ModelBuilder(np.random.default_rng(64), "m0w")
    outs = [m.depthwise_conv2d(m.input((1, 6, 5, 16), zero_point=-128), kernel=3,
                               padding="SAME"),
            m.depthwise_conv2d(m.input((2, 5, 4, 32), zero_point=127), kernel=3, stride=2,
                               padding="SAME", activation="RELU"),
            m.depthwise_conv2d(m.input((1, 4, 7, 16), zero_point=5), kernel=3,
                               padding="SAME", activation="RELU6")]
    g = m.build(outs)
    r = generate_c(g, "m", runtime="armv6m")
    src = "\n".join(v for k, v in r.files.items() if k.endswith(".c"))
    assert src.count("kml_depthwise_conv2d_m0_s8(&") == 3
    _host_and_emulator(g, 6)
