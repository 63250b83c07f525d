"""Cortex-M0+ (armv6m): conv / FC layers whose input is a fused ReLU output skip zero values.

Such a layer's pixel column is built as pairs {c, weight step} of its non-zero values
(``m0_pairs``), and the pixel runs the sparse loop (``m0_dot8s``) where 14 pairs < 13 K, else
the dense one. Branches of one model, each a ReLU layer feeding the layer under test: a 3x3
SAME conv (im2col with padding), a strided VALID conv with 5 outputs, a pointwise conv with
13 outputs (groups of 8 and a tail), a FULLY_CONNECTED, a CONV_2D_ADD (its conv input a
ReLU output) and a conv fed by a CONV_2D_ADD with a ReLU. The ReLU layers' biases are moved
so that their outputs are all at the zero point (every column value 0: empty pairs), about
half, or none (the dense choice): every layer bit-exact in the emulator (Thumb-1 asm) and on
the host under ASan/UBSan (the C loops), with the bounded requantization on and off, and the
per-layer instruction counts show the path taken.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import opbuilder as ob
from kiloml.codegen import armv6m_backend as m0b
from kiloml.codegen.c import generate_c
from kiloml.codegen.host import HostBuild
from kiloml.ir.interpreter import Interpreter
from kiloml.ir.passes import pipeline
from kiloml.targets.profile import profile_graph

if shutil.which("arm-none-eabi-gcc") is None:
    pytest.fail("arm-none-eabi-gcc is missing: run `make toolchain`", pytrace=False)


def sparse_graph(shift: float):
    """The branches, the ReLU layers' biases moved by ``shift`` times their accumulators'
    spread (-inf side: every output at the zero point; +: none)."""
    m = ob.ModelBuilder(np.random.default_rng(41), "m0s")
    relus, outs = [], []

    def relu(x, c):
        y = m.conv2d(x, c, kernel=1, activation="RELU")
        relus.append(m.nodes[-1])
        return y

    x = relu(m.input((1, 7, 6, 8)), 16)
    outs.append(m.conv2d(x, 12, kernel=3, padding="SAME"))
    x = relu(m.input((1, 9, 9, 4)), 12)
    outs.append(m.conv2d(x, 5, kernel=3, stride=2, padding="VALID", activation="RELU6"))
    x = relu(m.input((2, 4, 4, 16)), 24)
    outs.append(m.conv2d(x, 13, kernel=1))
    f = m.fully_connected(m.input((2, 24)), units=20, activation="RELU")
    relus.append(m.nodes[-1])
    outs.append(m.fully_connected(f, units=11))
    x = relu(m.input((1, 6, 6, 8)), 16)
    y = m.conv2d(x, 16, kernel=3, padding="SAME")
    a = m.add(y, m.conv2d(x, 16, kernel=1), "RELU")
    outs.append(m.conv2d(a, 9, kernel=3, padding="SAME"))
    g = m.build(outs)
    for n in relus:
        b = g.tensors[n.inputs[2]]
        spread = float(np.abs(b.data).max()) + 1.0
        w = g.tensors[n.inputs[1]].data.astype(np.int64)
        reach = 255.0 * np.abs(w.reshape(w.shape[0], -1)).sum(axis=1)     # |acc| bound
        b.data = np.round(b.data + shift * (reach + spread)).astype(np.int32) \
            if np.isfinite(shift) else np.round(b.data - (reach + spread)).astype(np.int32)
    return g


def _sparse_nodes(g):
    lg = pipeline(g)
    return [i for i, n in enumerate(lg.nodes) if n.op in ("CONV_2D", "CONV_2D_ADD",
                                                         "FULLY_CONNECTED")
            and m0b.sparse_input(lg, n)]


@pytest.mark.parametrize("bounded", [True, False])
@pytest.mark.parametrize("shift,zeros", [(-np.inf, "all"), (0.0, "some"), (1.0, "none")])
def test_sparse_columns_bit_exact(monkeypatch, shift, zeros, bounded):
    monkeypatch.setattr(m0b.Armv6mBackend, "bounded_requant", bounded)
    g = sparse_graph(shift)
    xs = ob.random_inputs(np.random.default_rng(2), g)
    acts = Interpreter(g).run_all(*xs)
    lg = pipeline(g)
    sparse = _sparse_nodes(g)
    assert len(sparse) == 7          # the layers under test (and the residual conv), no ReLU
    fr = [float(np.mean(acts[lg.nodes[i].inputs[0]] == g.tensors[lg.nodes[i].inputs[0]]
                        .quant.zero_point[0])) for i in sparse]
    if zeros == "all":
        assert min(fr[:4]) == 1.0
    elif zeros == "none":
        assert max(fr[:4]) == 0.0
    else:
        assert 0.2 < float(np.mean(fr[:4])) < 0.9
    r = profile_graph(g, "pico", runtime="armv6m")
    assert r["output_matches_reference"] is True and r["layers_match_reference"] is True
    assert r["layers_checked"] == len(lg.nodes)
    got = HostBuild(generate_c(g, "m", runtime="armv6m"), sanitize=True).run(
        *[x[None] for x in ob.random_inputs(np.random.default_rng(3), g)])
    want = Interpreter(g).run(*ob.random_inputs(np.random.default_rng(3), g))
    for o, w in zip(got, want):
        assert np.array_equal(o[0], w)


def test_sparse_columns_take_the_pairs():
    """Per-layer instructions in the emulator: a layer fed only zero values runs far fewer
    than with none (the groups of eight skip every value; a last group of four keeps the
    dense loop); the measured worst case ("all": a column without zeros, whatever the input)
    is at least the dense loop's count and at least the count without zeros."""
    def layer_instr(g, mode="skip"):
        old = m0b.Armv6mBackend.sparse_columns
        m0b.Armv6mBackend.sparse_columns = mode
        try:
            r = profile_graph(g, "pico", runtime="armv6m")
        finally:
            m0b.Armv6mBackend.sparse_columns = old
        assert r["layers_match_reference"] is True
        return {la["node"]: la["instructions"] for la in r["layers"]}

    empty, full = sparse_graph(-np.inf), sparse_graph(1.0)
    e, f = layer_instr(empty), layer_instr(full)
    for i in _sparse_nodes(empty)[:4]:
        assert e[i] < 0.8 * f[i]
    off = layer_instr(full, "off")
    worst = layer_instr(full, "all")
    for i in _sparse_nodes(full):
        assert worst[i] >= off[i] and worst[i] >= f[i]


def test_relu_inputs_only():
    """The static choice: a layer fed by a model input, a layer without activation or a
    RELU_N1_TO_1 keeps the dense loop."""
    m = ob.ModelBuilder(np.random.default_rng(43), "m0d")
    x = m.input((1, 5, 5, 8))
    a = m.conv2d(m.conv2d(x, 8, kernel=1), 8, kernel=1)
    b = m.conv2d(m.conv2d(x, 8, kernel=1, activation="RELU_N1_TO_1"), 8, kernel=1)
    c = m.conv2d(m.conv2d(x, 8, kernel=1, activation="RELU6"), 8, kernel=1)
    g = m.build([a, b, c])
    assert [m0b.sparse_input(g, n) for n in g.nodes] == [False, False, False, False, False,
                                                         True]


@pytest.mark.parametrize("opt", ["-O0", "-Os"])
def test_debug_and_size_builds_bit_exact(tmp_path, opt):
    """At -O0 / -Os the kernels take their C steps (pairs, sparse groups, bounded
    requantization in C) on the Cortex-M0+: the outputs in the emulator equal the
    interpreter's, with some zero values."""
    from kiloml.codegen.c import io_specs
    from kiloml.ir.graph import DTYPES
    from kiloml.targets.emulator import emulate
    from kiloml.targets.profile import build_elf

    g = sparse_graph(0.0)
    x = ob.random_inputs(np.random.default_rng(8), g)
    b = build_elf(g, "cortex-m0plus", x, tmp_path, "armv6m", opt=opt)
    _, outs = io_specs(b.result.graph)
    emu = emulate(b.elf, "cortex-m0plus",
                  read_back={f"kml_profile_{s.name}": s.tensor.nbytes for s in outs})
    for s, want in zip(outs, Interpreter(g).run(*x)):
        got = np.frombuffer(emu.memory[f"kml_profile_{s.name}"], DTYPES[s.tensor.dtype])
        assert np.array_equal(got.reshape(s.tensor.shape), want)


def test_prefer_size_drops_the_memory_for_speed_choices():
    """``--prefer size`` on a Cortex-M0+: no zero skipping (its column pairs live in the arena)
    and no bounded requantization (its records cost flash per channel), so the arena and the
    weights' flash shrink, the layers run the dense loop (more instructions on a layer fed
    only zero values), and every layer stays bit-exact in the emulator."""
    g = sparse_graph(-np.inf)
    bal = profile_graph(g, "pico", runtime="armv6m", prefer="balanced")
    size = profile_graph(g, "pico", runtime="armv6m", prefer="size")
    for r in (bal, size):
        assert r["output_matches_reference"] is True and r["layers_match_reference"] is True
    assert size["arena_bytes"] < bal["arena_bytes"]
    assert size["flash_bytes"] < bal["flash_bytes"]
    b = {la["node"]: la["instructions"] for la in bal["layers"]}
    s = {la["node"]: la["instructions"] for la in size["layers"]}
    for i in _sparse_nodes(g)[:4]:
        assert s[i] > b[i]
