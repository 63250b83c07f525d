"""Cortex-M0+ (armv6m) kernels: bit-exact with the reference interpreter, layer by layer.

Small models with many independent single-op branches (conv geometries: padding, stride,
dilation, channel counts that are not multiples of four, window sizes that are not; depthwise
layers the armv6m kernel takes and ones it leaves to portable; per-tensor and per-channel
FULLY_CONNECTED, batched) are built for the Cortex-M0+ with ``runtime="armv6m"`` and run in the
emulator (the Thumb-1 asm steps), every layer compared with the interpreter
(``profile_graph``'s per-layer snapshots); the same C is built for the host under ASan/UBSan
(the C steps). The 64-bit-free requantization is compared with kml_common.h's kml_srdhm on
edge and random operands. The MLPerf Tiny models run on the Pico in test_real_models-style
checks (slow).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

import opbuilder as ob
from kiloml.codegen.c import generate_c
from kiloml.codegen.host import HostBuild
from kiloml.io.tflite_reader import read_tflite
from kiloml.ir.interpreter import Interpreter
from kiloml.targets.profile import default_runtime, profile_graph

if shutil.which("arm-none-eabi-gcc") is None:
    pytest.fail("arm-none-eabi-gcc is missing: run `make toolchain`", pytrace=False)

SHARED = Path(os.environ.get("KILOML_SHARED", Path(__file__).resolve().parents[3] / "shared"))
CONV = "kml_conv2d_m0_s8"
DEPTHWISE = "kml_depthwise_conv2d_m0_s8"


def branches(seed: int):
    m = ob.ModelBuilder(np.random.default_rng(seed), "m0")
    outs = []
    for shape, kw in [((1, 9, 7, 3), dict(out_channels=6, kernel=3, padding="SAME")),
                      ((1, 10, 8, 5), dict(out_channels=8, kernel=(3, 2), stride=2)),
                      ((1, 9, 9, 4), dict(out_channels=7, kernel=3, dilation=2,
                                           padding="SAME", activation="RELU")),
                      ((2, 5, 5, 16), dict(out_channels=9, kernel=1)),
                      ((1, 12, 4, 1), dict(out_channels=5, kernel=(5, 3), stride=(2, 1),
                                           padding="SAME", per_channel=False)),
                      ((1, 6, 6, 8), dict(out_channels=4, kernel=3, bias=False))]:
        outs.append(m.conv2d(m.input(shape), **kw))
    for shape, kw in [((1, 9, 7, 8), dict(kernel=3, padding="SAME")),
                      ((1, 11, 9, 12), dict(kernel=3, stride=2, padding="SAME",
                                            activation="RELU6")),
                      ((1, 8, 8, 4), dict(kernel=(3, 5), dilation=2, padding="SAME")),
                      ((2, 6, 6, 4), dict(kernel=3, padding="VALID", bias=False)),
                      ((1, 7, 7, 6), dict(kernel=3, padding="SAME")),           # C % 4: portable
                      ((1, 6, 6, 4), dict(kernel=3, depth_multiplier=2))]:      # dm 2: portable
        outs.append(m.depthwise_conv2d(m.input(shape), **kw))
    for shape, kw in [((1, 37), dict(units=10)), ((3, 20), dict(units=6, per_channel=True)),
                      ((2, 3, 16), dict(units=5, keep_num_dims=True, activation="RELU"))]:
        outs.append(m.fully_connected(m.input(shape), **kw))
    return m.build(outs)


@pytest.fixture(scope="module")
def graph():
    return branches(5)


def test_every_layer_bit_exact_in_the_emulator(graph):
    r = profile_graph(graph, "pico", runtime="armv6m")
    assert r["runtime"] == "armv6m" and r["output_matches_reference"] is True
    assert r["layers_checked"] == len(graph.nodes) and r["layers_match_reference"] is True
    kernels = [layer["kernel"] for layer in r["layers"]]
    assert kernels.count(CONV) == 6 + 3 and kernels.count(DEPTHWISE) == 4
    assert kernels.count("kml_depthwise_conv2d_s8") == 2   # the layers it does not take


def test_same_c_on_the_host_under_sanitizers(graph):
    samples = [ob.random_inputs(np.random.default_rng(s), graph) for s in range(3)]
    batch = [np.stack([x[k] for x in samples]) for k in range(len(graph.inputs))]
    got = HostBuild(generate_c(graph, "m", runtime="armv6m"), sanitize=True).run(*batch)
    it = Interpreter(graph)
    for s, x in enumerate(samples):
        for o, w in zip(got, it.run(*x)):
            assert np.array_equal(o[s], w)


def edge_graph(seed: int, out_scale_factor: float, in_zero_point: int):
    """Conv, depthwise and FC branches whose output scales are multiplied by
    ``out_scale_factor`` (small: effective scales above 1, TFLite's left shift, the kernels'
    general requantization; large: multipliers near the bottom of the range, outputs mostly at
    the clamp) on inputs with zero point ``in_zero_point``."""
    from dataclasses import replace
    m = ob.ModelBuilder(np.random.default_rng(seed), "m0e")
    outs = [m.conv2d(m.input((1, 6, 5, 8), zero_point=in_zero_point), out_channels=12, kernel=3,
                     padding="SAME"),
            m.conv2d(m.input((1, 4, 4, 16), zero_point=in_zero_point), out_channels=9, kernel=1),
            m.depthwise_conv2d(m.input((1, 7, 6, 8), zero_point=in_zero_point), kernel=3,
                               padding="SAME"),
            m.fully_connected(m.input((2, 24), zero_point=in_zero_point), units=13)]
    g = m.build(outs)
    for n in g.nodes:
        t = g.tensors[n.outputs[0]]
        q = t.quant
        t.quant = replace(q, scale=(np.asarray(q.scale, np.float32)
                                    * np.float32(out_scale_factor)).astype(np.float32))
    return g


@pytest.mark.parametrize("factor,zp", [(1 / 64, -128), (1 / 600, 127), (1 / 4096, -128),
                                       (40.0, 0), (1.0, 127)])
def test_requantization_edges_bit_exact_in_the_emulator(factor, zp):
    """Left shifts (the general path), multipliers at the ends of the range, input zero
    points -128 / 127 (padding with -128 / 127), on the Cortex-M0+ and on the host."""
    g = edge_graph(11, factor, zp)
    r = profile_graph(g, "pico", runtime="armv6m")
    assert r["output_matches_reference"] is True and r["layers_match_reference"] is True
    assert r["layers_checked"] == len(g.nodes)
    x = ob.random_inputs(np.random.default_rng(3), g)
    got = HostBuild(generate_c(g, "m", runtime="armv6m"), sanitize=True).run(
        *[a[None] for a in x])
    for o, w in zip(got, Interpreter(g).run(*x)):
        assert np.array_equal(o[0], w)


SRDHM_CHECK = r'''
#include "kml_conv_m0.c"
static uint64_t st = 88172645463325252ull;
static uint32_t rnd(void) { st ^= st << 13; st ^= st >> 7; st ^= st << 17; return (uint32_t)st; }
/* m0_rqc and (lo >= off) m0_rqcz against kml_clamp(kml_mbqm + off): 0 or the misses. */
static long rqc_bad(int32_t a, const int32_t *r, int32_t off, int32_t lo, int32_t hi)
{
    const int32_t q = kml_mbqm(a, r[0], -r[1]);
    int32_t want;
    if (q > 0x40000000 || q < -0x40000000) {   /* q + off would overflow int32 (TFLite too) */
        return 0;
    }
    want = kml_clamp(q + off, lo, hi);
    return (m0_rqc(a, r, off, lo, hi) != want) + (lo >= off && m0_rqcz(a, r, off, lo, hi) != want);
}
static long check(long n)
{
    static const int32_t e[] = {0, 1, -1, 2, -2, INT32_MIN, INT32_MAX, INT32_MIN + 1,
        INT32_MAX - 1, 0x40000000, -0x40000000, 0x3FFFFFFF, -0x3FFFFFFF, 65535, -65536, 65536,
        32768, -32768, 1518500250, -1518500250, 0x7FFF8000, -0x7FFF8000, 0x40000001,
        1073741823 + 1, -65537, 0x00FFFFFF, -0x01000000};
    long bad = 0, i;
    size_t j, k;
    for (j = 0; j < sizeof e / sizeof e[0]; ++j) {
        for (k = 0; k < sizeof e / sizeof e[0]; ++k) {
            bad += m0_srdhm(e[j], e[k]) != kml_srdhm(e[j], e[k]);
            if (e[k] >= 0) { bad += m0_srdhm_pos(e[j], e[k]) != kml_srdhm(e[j], e[k]); }
            if (e[k] >= 0 && e[k] < 32) {
                bad += m0_rdbp(e[j], e[k]) != kml_rdbp(e[j], e[k]);
            }
        }
    }
    for (i = 0; i < n; ++i) {
        int32_t a = (int32_t)rnd(), b = (int32_t)rnd();
        int32_t sh = (int32_t)(rnd() & 31u);
        if (i & 1) { a >>= sh; }
        bad += m0_srdhm(a, b) != kml_srdhm(a, b);
        if (b < 0) { b = -(b + 1); }
        bad += m0_srdhm_pos(a, b) != kml_srdhm(a, b);
        bad += m0_rdbp(a, sh) != kml_rdbp(a, sh);
        {
            const int32_t r[3] = {b, sh, (int32_t)((1u << sh) >> 1)};
            const int32_t off = (int32_t)(rnd() % 256u) - 128;
            const int32_t lo = off + (int32_t)(rnd() % (uint32_t)(128 - off)), hi = 127;
            bad += m0_rq(a, r) != kml_mbqm(a, b, -sh);
            bad += rqc_bad(a, r, off, lo, hi);
            a = (int32_t)(rnd() % 4096u) - 2048;    /* near 0: the fused-ReLU shortcut */
            bad += rqc_bad(a, r, off, lo, hi) + rqc_bad(a, r, off, off, lo);
        }
    }
    for (j = 0; j < sizeof e / sizeof e[0]; ++j) {      /* the clamped forms at the edges */
        for (k = 0; k < sizeof e / sizeof e[0]; ++k) {
            static const int32_t offs[][3] = {{-128, -128, 127}, {5, 5, 127}, {-7, 0, 6},
                                              {127, 127, 127}, {-20, -20, -10}};
            int32_t s;
            size_t o;
            for (s = 0; s < 32 && e[k] >= 0; s += 3) {
                const int32_t r[3] = {e[k], s, (int32_t)((1u << s) >> 1)};
                for (o = 0; o < sizeof offs / sizeof offs[0]; ++o) {
                    bad += rqc_bad(e[j], r, offs[o][0], offs[o][1], offs[o][2]);
                }
            }
        }
    }
    for (j = 0; j < sizeof e / sizeof e[0]; ++j) {      /* the requantization's one shift */
        for (k = 0; k < sizeof e / sizeof e[0]; ++k) {
            int32_t s;
            for (s = 0; s < 32 && e[k] >= 0; ++s) {
                const int32_t r[3] = {e[k], s, (int32_t)((1u << s) >> 1)};
                bad += m0_rq(e[j], r) != kml_mbqm(e[j], e[k], -s);
            }
        }
    }
    return bad;
}
'''


def test_requantization_without_64_bit_types_equals_kml_srdhm(tmp_path):
    """The C forms, on the host."""
    rt = resources.files("kiloml.codegen") / "runtime"
    (tmp_path / "t.c").write_text("#include <stdio.h>\n" + SRDHM_CHECK + r'''
int main(void) { printf("%ld\n", check(3000000)); return 0; }
''')
    exe = tmp_path / "t"
    subprocess.run(["gcc", "-O1", "-std=c99", "-fsanitize=undefined", "-fno-sanitize-recover=all",
                    "-I", str(rt / "armv6m"), "-I", str(rt / "portable"), str(tmp_path / "t.c"),
                    "-o", str(exe)], check=True, capture_output=True)
    assert subprocess.run([str(exe)], capture_output=True, text=True,
                          check=True).stdout.strip() == "0"


def test_requantization_asm_on_the_cortex_m0plus_equals_kml_srdhm(tmp_path):
    """The Thumb-1 asm form of m0_srdhm_pos, in the emulator, against kml_srdhm (whose int64
    arithmetic GCC makes library calls on Armv6-M)."""
    from kiloml.targets.batch import END_MARKER, END_SYMBOL, build_image, run_image
    from kiloml.targets.profile import PROFILE_FLAGS

    rt = resources.files("kiloml.codegen") / "runtime"
    (tmp_path / "t.c").write_text(SRDHM_CHECK + END_MARKER + f'''
volatile int32_t kml_bad = -1;
int main(void) {{ kml_bad = (int32_t)check(200000); {END_SYMBOL}(); return 0; }}
''')
    image = build_image([tmp_path / "t.c"], [Path(str(rt / "armv6m")), Path(str(rt / "portable"))],
                        PROFILE_FLAGS["cortex-m0plus"], tmp_path / "build")
    got = run_image(image, "cortex-m0plus", {"kml_bad": 4})
    assert int(np.frombuffer(got["kml_bad"], np.int32)[0]) == 0


def test_cortex_m0plus_runs_the_armv6m_kernels_by_default():
    assert default_runtime("cortex-m0plus") == "armv6m"
    assert default_runtime("cortex-m4") == "armv7em"
    assert default_runtime("xtensa-lx7") == "portable"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["kws_ref_model", "ad01_int8"])
def test_mlperf_models_bit_exact_on_the_pico(name):
    r = profile_graph(read_tflite(SHARED / "models" / "mlperf_tiny" / f"{name}.tflite"), "pico")
    assert r["runtime"] == "armv6m"
    assert r["output_matches_reference"] is True and r["layers_match_reference"] is True


def test_conv_add_bit_exact_in_the_emulator_and_on_the_host():
    """CONV_2D_ADD (kml_conv2d_add_m0_s8): conv first or second, activations, stride, a
    1x1 conv with 5 channels, a constant residual; every layer in the emulator, the host C
    under sanitizers."""
    from kiloml.ir.passes import pipeline
    m = ob.ModelBuilder(np.random.default_rng(23), "m0a")
    outs = []
    for shape, first, act, kw in [((1, 6, 6, 16), True, "NONE", dict(out_channels=16, kernel=3)),
                                  ((1, 6, 6, 8), False, "RELU", dict(out_channels=12, kernel=3,
                                                                     stride=2)),
                                  ((1, 5, 5, 8), True, "RELU6", dict(out_channels=5, kernel=1))]:
        x = m.input(shape)
        y = m.conv2d(x, **kw)
        r = m.conv2d(x, m.tensors[y].shape[3], kernel=1, stride=kw.get("stride", 1))
        outs.append(m.add(y, r, act) if first else m.add(r, y, act))
    x = m.input((1, 4, 4, 8))
    y = m.conv2d(x, out_channels=8, kernel=3, padding="SAME")
    outs.append(m.add(y, m.const_int8(m.tensors[y].shape)))
    g = m.build(outs)
    assert sum(n.op == "CONV_2D_ADD" for n in pipeline(g).nodes) == 4
    r = profile_graph(g, "pico", runtime="armv6m")
    assert r["output_matches_reference"] is True and r["layers_match_reference"] is True
    assert [la["kernel"] for la in r["layers"]].count("kml_conv2d_add_m0_s8") == 4
    xs = ob.random_inputs(np.random.default_rng(4), g)
    got = HostBuild(generate_c(g, "m", runtime="armv6m"), sanitize=True).run(
        *[a[None] for a in xs])
    for o, w in zip(got, Interpreter(g).run(*xs)):
        assert np.array_equal(o[0], w)



@pytest.mark.parametrize("opt", ["-O0", "-Os"])
def test_debug_and_size_builds_take_the_c_steps_bit_exact(graph, tmp_path, opt):
    """At -O0 (r7 the frame pointer) and -Os GCC cannot allocate the asm blocks' registers:
    the kernels compile with their C steps and stay bit-exact in the emulator. (At -Os the
    harness's int8 I/O arrays sit at odd addresses: the read-back keeps bit 0 of a data
    symbol, only a function's Thumb bit is cleared.)"""
    from kiloml.codegen.c import io_specs
    from kiloml.ir.graph import DTYPES
    from kiloml.targets.emulator import emulate
    from kiloml.targets.profile import build_elf

    x = ob.random_inputs(np.random.default_rng(8), graph)
    b = build_elf(graph, "cortex-m0plus", x, tmp_path, "armv6m", opt=opt)
    _, outs = io_specs(b.result.graph)
    emu = emulate(b.elf, "cortex-m0plus",
                  read_back={f"kml_profile_{s.name}": s.tensor.nbytes for s in outs})
    for s, want in zip(outs, Interpreter(graph).run(*x)):
        got = np.frombuffer(emu.memory[f"kml_profile_{s.name}"], DTYPES[s.tensor.dtype])
        assert np.array_equal(got.reshape(s.tensor.shape), want)


@pytest.mark.parametrize("opt", ["-O0", "-Os", "-O1", "-O2", "-O3"])
def test_kernels_compile_warning_free_at_every_level(tmp_path, opt):
    """-Os and -O0 used to stop on "inconsistent operand constraints" in the asm blocks."""
    rt = resources.files("kiloml.codegen") / "runtime"
    r = subprocess.run(["arm-none-eabi-gcc", "-mcpu=cortex-m0plus", "-mthumb", opt, "-std=c99",
                        "-Wall", "-Wextra", "-Wconversion", "-Werror", "-I", str(rt / "armv6m"),
                        "-I", str(rt / "portable"), "-c", str(rt / "armv6m" / "kml_conv_m0.c"),
                        "-o", str(tmp_path / "k.o")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
