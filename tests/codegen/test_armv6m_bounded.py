"""Cortex-M0+ (armv6m) bounded requantization: exact where the compile-time bound holds.

Layers where every channel's accumulator range (over every int8 input, from the weights and
the bias: ``armv6m_backend.acc_range``) stays within |acc| < 2^21 requantize with three
11-bit partial products per output (``m0_rqb``) instead of four 16-bit ones; channels whose
output is the same for every input become constant channels. These tests check

* the records (``chain_record``) with the C and the Thumb-1 forms against kml_mbqm, on the
  host (C, UBSan) and in the emulator (asm), over multipliers at the edges of their split,
  every shift 0..22, accumulators up to +-(2^21 - 1) and clamps with lo == off (the asm's
  fused-ReLU loop) and lo != off; a record without the borrow and accumulators past 2^21
  are shown to give wrong outputs (the bound and the borrow are what keep it exact);
* layers built so an all -128 / all 127 input reaches the bound exactly: just inside
  (2^21 - 1: the bounded path, both signs) and just outside (2^21: the per-group records),
  constant channels (bias +-2^30 with zero weights, as in MLPerf VWW), every activation;
  bit-exact in the emulator and on the host under ASan/UBSan;
* a layer whose accumulators reach ~2^23.5 is refused, and stays exact; taking the bounded
  path there (the bound raised by monkeypatching) gives wrong outputs in the emulator;
* the per-group records (bounded requantization off) stay bit-exact on the same layers.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

import opbuilder as ob
from kiloml.codegen import armv6m_backend as m0b
from kiloml.codegen.c import generate_c, io_specs
from kiloml.codegen.host import HostBuild
from kiloml.ir.graph import DTYPES
from kiloml.ir.interpreter import Interpreter
from kiloml.ir.quant import multiply_by_quantized_multiplier
from kiloml.targets.profile import profile_graph

if shutil.which("arm-none-eabi-gcc") is None:
    pytest.fail("arm-none-eabi-gcc is missing: run `make toolchain`", pytrace=False)

RT = resources.files("kiloml.codegen") / "runtime"
BOUND = 1 << m0b.CHAIN_BITS


# ---------------------------------------------------------------------------------------------
# the records against kml_mbqm, C on the host and asm in the emulator

def _pairs() -> list[tuple[int, int]]:
    """(multiplier, right shift) pairs: the ends of each 11-bit part, low parts of 0 (the
    borrow), TFLite's normalized range [2^30, 2^31) and small multipliers; shifts 0..22."""
    rng = np.random.default_rng(17)
    edge = [1, 2, 2047, 2048, 2049, 4095, 5 << 11, 1 << 22, (1 << 22) + (1 << 11),
            300 << 22, (300 << 22) + 2047, (511 << 22) + (2047 << 11) + 2047, 1 << 30,
            (1 << 30) + 1, (1 << 31) - 1, (1 << 31) - (1 << 11), (1 << 31) - (1 << 22),
            1518500250, 1073741824 + (1 << 11)]
    out = [(m, s) for m in edge for s in range(0, m0b.CHAIN_MAX_S + 1)]
    for m in list(rng.integers(1 << 30, 1 << 31, 120)) + list(rng.integers(1, 1 << 31, 60)):
        out += [(int(m), int(s)) for s in rng.choice(m0b.CHAIN_MAX_S + 1, 4, replace=False)]
    return out


def _c_array(name: str, values) -> str:
    body = ",".join(str(int(v)) for v in values)
    return f"static const int32_t {name}[] = {{{body}}};\n"


CHECK = r'''
#include "kml_conv_m0.c"
static uint64_t st = 88172645463325252ull;
static uint32_t rnd32(void) { st ^= st << 13; st ^= st >> 7; st ^= st << 17; return (uint32_t)st; }
static const int32_t clamps[][3] = {{0, -128, 127}, {-128, -128, 127}, {-128, -128, -1},
                                    {5, -20, 40}, {-7, 0, 6}, {100, 100, 127}, {-1, -3, 2}};
/* mismatches of m0_rqb_run (records rec, one per pair) against kml_mbqm, for accumulators
 * below ``lim`` in magnitude (edges of the bound below 2^21, then random ones) */
static long check(const int32_t *rec, int32_t umax, long nrand)
{
    static const int32_t e[] = {0, 1, 2, 3, 2047, 2048, 2049, 65535, 65536, 1 << 20,
                                (1 << 21) - 2, (1 << 21) - 1};
    int32_t acc[64], r[64 * 4], par[4];
    int8_t out[64];
    long bad = 0;
    size_t p, c, i;
    for (p = 0; p < sizeof M / sizeof M[0]; ++p) {
        for (c = 0; c < sizeof clamps / sizeof clamps[0]; ++c) {
            int32_t n = 0, k;
            for (i = 0; i < sizeof e / sizeof e[0]; ++i) {
                if (e[i] <= umax) { acc[n++] = e[i]; acc[n++] = -e[i]; }
            }
            for (k = 0; k < nrand && n < 64; ++k) {
                const int32_t u = (int32_t)(rnd32() % (uint32_t)(umax + 1));
                acc[n++] = (rnd32() & 1u) ? u : -u;
            }
            for (k = 0; k < n; ++k) {
                memcpy(r + 4 * k, rec + 4 * p, 4 * sizeof(int32_t));
            }
            par[0] = n; par[1] = clamps[c][0]; par[2] = clamps[c][1]; par[3] = clamps[c][2];
            m0_rqb_run(acc, r, out, par);
            for (k = 0; k < n; ++k) {
                const int32_t want = kml_clamp(kml_mbqm(acc[k], M[p], -S[p]) + par[1], par[2],
                                               par[3]);
                bad += out[k] != want;
            }
        }
    }
    return bad;
}
/* accumulators in [2^21, 2^24): past the bound */
static long past(const int32_t *rec, long n)
{
    int32_t acc[1], r[4], par[4] = {1, -128, -128, 127};
    int8_t out[1];
    long bad = 0, k;
    size_t p;
    for (p = 0; p < sizeof M / sizeof M[0]; ++p) {
        memcpy(r, rec + 4 * p, sizeof r);
        for (k = 0; k < n; ++k) {
            const int32_t u = (1 << 21) + (int32_t)(rnd32() % (uint32_t)(7 << 21));
            acc[0] = (rnd32() & 1u) ? u : -u;
            m0_rqb_run(acc, r, out, par);
            bad += out[0] != kml_clamp(kml_mbqm(acc[0], M[p], -S[p]) - 128, -128, 127);
        }
    }
    return bad;
}
'''


def _check_source(nrand: int, npast: int) -> str:
    pairs = _pairs()
    recs = [w for m, s in pairs for w in m0b.chain_record(m, s)]
    # the same records without the borrow (m0 = 0 where M's low 11 bits are 0)
    nob = []
    for m, s in pairs:
        r = m0b.chain_record(m, s)
        nob += [m & 2047, (m >> 11) & 2047, m >> 22, r[3]]
    assert any(m & 2047 == 0 for m, _ in pairs)
    return ("#include <string.h>\n#include <stdint.h>\n"
            + _c_array("M", [m for m, _ in pairs]) + _c_array("S", [s for _, s in pairs])
            + _c_array("REC", recs) + _c_array("NOB", nob) + CHECK
            + f"static long results[3];\nstatic void run_checks(void) {{\n"
              f"    results[0] = check(REC, (1 << 21) - 1, {nrand});\n"
              f"    results[1] = check(NOB, (1 << 21) - 1, {nrand});\n"
              f"    results[2] = past(REC, {npast});\n}}\n")


def test_records_exact_on_the_host_c_form(tmp_path):
    """m0_rqb_c (the form of host and -O0/-Os builds) under UBSan: no mismatch within the
    bound; without the borrow, or past the bound, there are mismatches."""
    (tmp_path / "t.c").write_text("#include <stdio.h>\n" + _check_source(40, 400) + r'''
int main(void) { run_checks(); printf("%ld %ld %ld\n", results[0], results[1], results[2]);
                 return 0; }
''')
    exe = tmp_path / "t"
    subprocess.run(["gcc", "-O1", "-std=c99", "-fsanitize=undefined", "-fno-sanitize-recover=all",
                    "-I", str(RT / "armv6m"), "-I", str(RT / "portable"), str(tmp_path / "t.c"),
                    "-o", str(exe)], check=True, capture_output=True)
    got = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()
    inside, no_borrow, past = (int(v) for v in got)
    assert inside == 0
    assert no_borrow > 0 and past > 0


def test_records_exact_in_the_emulator_asm_form(tmp_path):
    """m0_rqb (Thumb-1, both of its loops) in the emulator, the same checks."""
    from kiloml.targets.batch import END_MARKER, END_SYMBOL, build_image, run_image
    from kiloml.targets.profile import PROFILE_FLAGS

    (tmp_path / "t.c").write_text(_check_source(12, 60) + END_MARKER + f'''
volatile int32_t kml_res[3];
int main(void) {{ run_checks(); kml_res[0] = (int32_t)results[0]; kml_res[1] = (int32_t)results[1];
                 kml_res[2] = (int32_t)results[2]; {END_SYMBOL}(); return 0; }}
''')
    image = build_image([tmp_path / "t.c"], [Path(str(RT / "armv6m")), Path(str(RT / "portable"))],
                        PROFILE_FLAGS["cortex-m0plus"], tmp_path / "build")
    got = np.frombuffer(run_image(image, "cortex-m0plus", {"kml_res": 12})["kml_res"], np.int32)
    assert got[0] == 0
    assert got[1] > 0 and got[2] > 0


# ---------------------------------------------------------------------------------------------
# layers at the bound

def _fc_branch(m: ob.ModelBuilder, rows: np.ndarray, bias: np.ndarray, real: float,
               out_zp: int, activation: str) -> int:
    """A FULLY_CONNECTED branch with the given int8 weights [units, depth], int32 bias and
    effective scale ``real`` (input scale 0.05, weight scales 0.01, zero input zero point)."""
    units, depth = rows.shape
    x = m.input((2, depth), scale=0.05, zero_point=0)
    y = m.fully_connected(x, units=units, activation=activation)
    node = m.nodes[-1]
    w, b = m.tensors[node.inputs[1]], m.tensors[node.inputs[2]]
    w.data = rows.astype(np.int8)
    w.quant = replace(w.quant, scale=np.full(w.quant.scale.shape, 0.01, np.float32),
                      zero_point=np.zeros(w.quant.scale.shape, np.int64))
    b.data = bias.astype(np.int32)
    b.quant = replace(b.quant, scale=np.full(b.quant.scale.shape, np.float32(0.05 * 0.01)),
                      zero_point=np.zeros(b.quant.scale.shape, np.int64))
    yt = m.tensors[y]
    yt.quant = replace(yt.quant, scale=np.asarray([np.float32(0.05 * 0.01 / real)]),
                       zero_point=np.asarray([out_zp]))
    return y


def _edge_rows(depth: int, rng) -> np.ndarray:
    """Channel 0 all +127, channel 1 all -127, channel 2 all 0 (a constant channel),
    channel 3 random."""
    return np.stack([np.full(depth, 127), np.full(depth, -127), np.zeros(depth, np.int64),
                     rng.integers(-127, 128, depth)])


def _edge_graph(delta: int):
    """FC branches (NONE, RELU, RELU6, RELU_N1_TO_1 and output zero points 0 / -128 / 60)
    whose channels 0 and 1 reach +-(2^21 - 1 + delta) on an all -128 input (depth 129:
    128 x 127 x 129 = 2^21 - 128), with outputs ~ +-100 there, and a constant channel 2
    with bias 2^30 (VWW's dead channels)."""
    rng = np.random.default_rng(29)
    m = ob.ModelBuilder(rng, "m0b")
    depth = 129
    k = 128 * 127 * depth                       # |acc| of channel 0 / 1 at x = -128, no bias
    outs = []
    for act, zp in [("NONE", 0), ("RELU", -128), ("RELU6", -128), ("RELU_N1_TO_1", 60),
                    ("NONE", -128)]:
        rows = _edge_rows(depth, rng)
        bias = np.array([-(BOUND - 1 - k) - delta, (BOUND - 1 - k) + delta, 1 << 30,
                         int(rng.integers(-5000, 5000))])
        real = 100.0 / BOUND if act != "RELU_N1_TO_1" else 0.025   # output scale 0.02
        outs.append(_fc_branch(m, rows, bias, real, zp, act))
    return m.build(outs)


def _edge_inputs(g, rng) -> list[np.ndarray]:
    """Row 0 all -128 (channels 0/1 at their extremes), row 1 all 127 (the other ends)."""
    xs = []
    for t in g.inputs:
        shape = g.tensors[t].shape
        x = rng.integers(-128, 128, shape).astype(np.int8)
        x[0], x[1] = -128, 127
        xs.append(x)
    return xs


def _emulate(g, xs, tmp_path) -> list[np.ndarray]:
    from kiloml.targets.emulator import emulate
    from kiloml.targets.profile import build_elf

    b = build_elf(g, "cortex-m0plus", xs, tmp_path, "armv6m")
    _, outs = io_specs(b.result.graph)
    emu = emulate(b.elf, "cortex-m0plus",
                  read_back={f"kml_profile_{s.name}": s.tensor.nbytes for s in outs})
    return [np.frombuffer(emu.memory[f"kml_profile_{s.name}"], DTYPES[s.tensor.dtype])
            .reshape(s.tensor.shape) for s in outs]


def _takes_bounded(g) -> list[bool]:
    be = m0b.Armv6mBackend()
    return [be._bounded(g, n) is not None for n in g.nodes]


@pytest.mark.parametrize("delta,bounded", [(0, True), (1, False)])
def test_layers_at_the_bound_bit_exact(tmp_path, delta, bounded):
    """Just inside (|acc| <= 2^21 - 1 reached: the bounded path) and just outside (2^21
    reached: the per-group records), both signs, every activation: bit-exact in the
    emulator and on the host under ASan/UBSan."""
    g = _edge_graph(delta)
    for n in g.nodes:                       # the extremes really are at the bound
        p = m0b.REGISTRY[n.op].prepare(g, n)
        w = g.tensors[n.inputs[1]].data
        lo, hi = m0b.acc_range(w, g.tensors[n.inputs[2]].data, p.in_offset)
        assert -lo[0] == BOUND - 1 + delta and hi[1] == BOUND - 1 + delta
    assert _takes_bounded(g) == [bounded] * len(g.nodes)
    xs = _edge_inputs(g, np.random.default_rng(5))
    want = Interpreter(g).run(*xs)
    # the extremes requantize to about -+100, not to the clamp
    assert abs(int(want[0][0, 0])) > 50 and abs(int(want[0][0, 1])) > 50
    for got, w in zip(_emulate(g, xs, tmp_path), want):
        assert np.array_equal(got, w)
    host = HostBuild(generate_c(g, "m", runtime="armv6m"), sanitize=True).run(
        *[x[None] for x in xs])
    for got, w in zip(host, want):
        assert np.array_equal(got[0], w)


def _past_graph():
    """A FC layer whose accumulators reach 127 x 127 x 720 = 11,612,880 (~2^23.5) on an all
    127 input, output zero point -128 and an effective scale giving ~163 there (unclamped:
    the bounded path's last partial sum would pass 2^32)."""
    rng = np.random.default_rng(31)
    m = ob.ModelBuilder(rng, "m0p")
    rows = np.stack([np.full(720, 127), rng.integers(-127, 128, 720)])
    out = _fc_branch(m, rows, np.array([0, 1000]), 1.4e-5, -128, "NONE")
    return m.build([out])


def test_past_the_bound_is_refused_and_would_be_wrong(tmp_path, monkeypatch):
    g = _past_graph()
    xs = _edge_inputs(g, np.random.default_rng(6))
    want = Interpreter(g).run(*xs)
    assert 120 < int(want[0][1, 0]) + 128 < 255          # x = 127: unclamped
    assert _takes_bounded(g) == [False]
    got = _emulate(g, xs, tmp_path / "refused")
    assert np.array_equal(got[0], want[0])
    monkeypatch.setattr(m0b, "CHAIN_BITS", 24)             # pretend the bound were 2^24
    assert _takes_bounded(g) == [True]
    got = _emulate(g, xs, tmp_path / "forced")
    assert not np.array_equal(got[0], want[0])


def test_constant_channels_are_rewritten():
    """A channel whose range maps to one output gets zero weights and bias 2 d (d = the
    constant less the output offset) with the record of M = 2^30, s = 0; the others keep
    their weights; a channel past the bound refuses the layer."""
    rows = np.array([[0] * 8, [3] * 8, [1] * 8])
    bias = np.array([1 << 30, 10, 10])
    mult = np.array([1 << 30, 1 << 30, 1 << 30])
    shift = np.array([-5, -5, -31])     # channel 0: bias only; channel 2: 2^-31 moves nothing
    rq = m0b.bounded(rows, bias, mult, shift, 0, -3, -128, 127)
    assert rq is not None
    recs, rows2, bias2 = rq
    assert (rows2[0] == 0).all() and (rows2[2] == 0).all() and (rows2[1] == 3).all()
    assert bias2[0] == 2 * (127 + 3) and bias2[1] == 10 and bias2[2] == 2 * (-3 + 3)
    assert list(recs[:4]) == m0b.chain_record(1 << 30, 0)
    assert list(recs[4:8]) == m0b.chain_record(1 << 30, 5)
    for c in (0, 2):     # what the rewritten channel gives is the constant
        want = np.clip(multiply_by_quantized_multiplier(
            np.array([bias[c]]), np.array([1 << 30]), np.array([shift[c]])) - 3, -128, 127)
        got = np.clip(multiply_by_quantized_multiplier(
            np.array([bias2[c]]), np.array([1 << 30]), np.array([0])) - 3, -128, 127)
        assert want[0] == got[0]
    big = np.array([[127] * 200, [3] * 8 + [0] * 192])    # 128 x 127 x 200 > 2^21
    assert m0b.bounded(big, None, mult[:2], shift[:2], 0, -3, -128, 127) is None


def test_per_group_records_stay_bit_exact(monkeypatch):
    """With the bounded requantization off, the per-group records (m0_rq, m0_rqc, m0_rqcz)
    on the geometry branches of test_armv6m_kernels and on the layers at the bound."""
    from test_armv6m_kernels import branches

    monkeypatch.setattr(m0b.Armv6mBackend, "bounded_requant", False)
    for g in (branches(5), _edge_graph(0)):
        r = profile_graph(g, "pico", runtime="armv6m")
        assert r["output_matches_reference"] is True and r["layers_match_reference"] is True
        assert r["layers_checked"] == len(g.nodes)
        assert not any(_takes_bounded(g))


def test_geometry_branches_take_the_bounded_path():
    """Most of the geometry branches of test_armv6m_kernels take the bounded path (so that
    test checks it), the depthwise layers left to portable do not."""
    from test_armv6m_kernels import branches

    g = branches(5)
    took = _takes_bounded(g)
    assert sum(took) >= 10
    for n, t in zip(g.nodes, took):
        if n.op == "DEPTHWISE_CONV_2D" and t:
            p = m0b.REGISTRY[n.op].prepare(g, n)
            assert m0b.depthwise_m0(g, n, p)


def test_left_shift_channels_are_not_made_constant():
    """With a left shift the requantization wraps in int32 (TFLite's x * 2^left), so equal
    outputs at the two ends of a channel's range do not make it constant: here both ends give
    0 and the middle -128; the layer keeps the per-group records. A single accumulator value
    (zero weights) is constant whatever the shift."""
    k = 66312                                  # 127 x 255 x k ~ 2^31: the range wraps
    rows = np.full((1, k), 127)
    bias = np.array([-(1 << 31) + 16256 * k + 5])
    mult, shift = np.array([1 << 14]), np.array([1])
    lo, hi = m0b.acc_range(rows, bias, 0)
    assert lo[0] == -(1 << 31) + 5 and hi[0] < (1 << 31)
    q = multiply_by_quantized_multiplier(np.array([lo[0], -(1 << 30), hi[0]]), mult, shift)
    assert list(np.clip(q, -128, 127)) == [0, -128, 0]
    assert m0b.bounded(rows, bias, mult, shift, 0, 0, -128, 127) is None
    zero = np.zeros((1, 8), np.int64)
    assert m0b.bounded(zero, bias, mult, shift, 0, 0, -128, 127) is not None
