"""Arm-optimized (armv7em) kernels: the real ELF in the emulator vs the reference interpreter.

Every model in ``../shared/models`` and a set of small per-op models (built with ``opbuilder``)
is compiled for a Cortex-M core with ``runtime="armv7em"`` (arm-none-eabi-gcc -O2, -Wall
-Wextra -Wconversion -Werror), run once in Unicorn on seeded random inputs, and its outputs
must equal ``kiloml.ir.interpreter.Interpreter``'s element for element (the interpreter is
itself bit-exact with TFLite Micro, see test_ops_reference.py / test_models.py). To keep the
number of ELF builds small, each per-op model holds many independent single-op branches, one
graph input and output each; graph inputs are overwritten in place as the planner allows, so
the kernels' in-place bounds are exercised too.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import opbuilder as ob
from kiloml.codegen.c import io_specs
from kiloml.ir.graph import DTYPES
from kiloml.ir.interpreter import Interpreter
from kiloml.io.tflite_reader import read_tflite
from kiloml.targets.emulator import emulate
from kiloml.targets.profile import build_elf

SHARED = Path(os.environ.get("KILOML_SHARED", Path(__file__).resolve().parents[3] / "shared"))
MODELS = sorted((SHARED / "models").glob("*/*.tflite"))

pytestmark = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                                reason="arm-none-eabi-gcc not installed")


def run_armv7em(graph, inputs, workdir: Path, core: str = "cortex-m4",
                prefer: str = "balanced", options=None) -> list[np.ndarray]:
    build = build_elf(graph, core, inputs, workdir, runtime="armv7em", prefer=prefer,
                      options=options)
    outs = io_specs(build.result.graph)[1]
    emu = emulate(build.elf, core, None,
                  {f"kml_profile_{s.name}": s.tensor.nbytes for s in outs})
    return [np.frombuffer(emu.memory[f"kml_profile_{s.name}"], DTYPES[s.tensor.dtype])
            .reshape(s.tensor.shape) for s in outs]


def check(graph, workdir: Path, seed: int, core: str = "cortex-m4",
          prefer: str = "balanced", options=None) -> None:
    rng = np.random.default_rng(seed)
    inputs = ob.random_inputs(rng, graph)
    want = Interpreter(graph).run(*inputs)
    got = run_armv7em(graph, inputs, workdir, core, prefer, options)
    assert len(got) == len(want)
    for k, (w, o) in enumerate(zip(want, got)):
        assert o.shape == w.shape and o.dtype == w.dtype
        if not np.array_equal(o, w):
            diff = np.argwhere(o != w)
            name = graph.tensors[graph.outputs[k]].name
            raise AssertionError(f"output {k} ({name}): {len(diff)}/{w.size} elements differ, "
                                 f"first at {diff[0].tolist()}: armv7em {o[tuple(diff[0])]}, "
                                 f"reference {w[tuple(diff[0])]}")
        # a kernel test whose outputs are all one value would pass for any kernel
        assert len(np.unique(w)) > 1 or w.size == 1, f"output {k} is constant"


# -- real models -----------------------------------------------------------------------------

@pytest.mark.parametrize("path", MODELS, ids=[p.stem for p in MODELS])
def test_model_bit_exact(path, tmp_path):
    check(read_tflite(path), tmp_path, seed=1)


@pytest.mark.parametrize("core", ["cortex-m7", "cortex-m33"])
def test_other_dsp_cores(core, tmp_path):
    check(read_tflite(SHARED / "models" / "mlperf_tiny" / "kws_ref_model.tflite"), tmp_path,
          seed=2, core=core)


# -- per-op models -----------------------------------------------------------------------------

def branches(seed: int, cases, make) -> object:
    """One graph: per case an input and ``make(builder, input, **case)``'s output."""
    m = ob.ModelBuilder(np.random.default_rng(seed), "branches")
    outs = []
    for case in cases:
        case = dict(case)
        x = m.input(case.pop("in_shape"))
        outs.append(make(m, x, **case))
    return m.build(outs)


CONV_CASES = (
    [dict(in_shape=(1, 9, 9, 3), out_channels=4, kernel=3, stride=s, dilation=d, padding=p,
          activation=a)
     for p in ("SAME", "VALID") for s in (1, 2) for d in (1, 2)
     for a in (("RELU",) if (s, d) == (1, 1) else ("NONE",))]
    + [
        dict(in_shape=(1, 6, 6, 8), out_channels=5, kernel=1),                  # 1x1, odd channels
        dict(in_shape=(1, 6, 7, 16), out_channels=8, kernel=1, stride=2, padding="VALID"),
        dict(in_shape=(1, 5, 5, 32), out_channels=16, kernel=3, activation="RELU6"),
        dict(in_shape=(1, 7, 7, 16), out_channels=6, kernel=3, stride=2, per_channel=False),
        dict(in_shape=(1, 8, 7, 12), out_channels=7, kernel=3, bias=False, activation="RELU"),
        dict(in_shape=(1, 10, 7, 2), out_channels=3, kernel=(2, 3), stride=(1, 2),
             dilation=(2, 1)),
        dict(in_shape=(1, 12, 9, 3), out_channels=4, kernel=(5, 3), stride=(3, 2),
             padding="VALID", activation="RELU6"),
        dict(in_shape=(1, 3, 3, 2), out_channels=4, kernel=5),                  # window > input
        dict(in_shape=(2, 1, 16, 4), out_channels=8, kernel=(1, 5), stride=(1, 2),
             per_channel=False),                                                # batch 2
        dict(in_shape=(1, 49, 10, 1), out_channels=8, kernel=(10, 4), stride=2),  # KWS-like
        dict(in_shape=(2, 7, 7, 1), out_channels=4, kernel=(3, 4), stride=(2, 4)),  # padded
        dict(in_shape=(1, 9, 8, 1), out_channels=6, kernel=(2, 4), stride=(1, 2),  # copy, or
             padding="VALID"),                                                  # none needed
        dict(in_shape=(1, 11, 11, 3), out_channels=8, kernel=3, stride=2),        # VWW-like
        dict(in_shape=(1, 4, 4, 20), out_channels=3, kernel=3, dilation=2, activation="RELU"),
        dict(in_shape=(1, 3, 5, 64), out_channels=64, kernel=1, activation="RELU"),
        dict(in_shape=(1, 1, 1, 9), out_channels=2, kernel=1),                  # one pixel
    ])


def test_conv2d_options(tmp_path):
    check(branches(11, CONV_CASES, lambda m, x, **kw: m.conv2d(x, **kw)), tmp_path, seed=12)


CONV_1X1_CASES = [
    dict(in_shape=(1, 5, 5, 8), out_channels=16, activation="RELU"),    # odd pixel count
    dict(in_shape=(1, 5, 7, 12), out_channels=8),                        # K % 8 == 4
    dict(in_shape=(2, 3, 3, 4), out_channels=6, activation="RELU6"),     # batch 2
    dict(in_shape=(2, 1, 1, 16), out_channels=8),                        # 1 pixel x 2 (a
    # single-pixel 1x1 CONV_2D is compiled as FULLY_CONNECTED: pixel_conv_as_fully_connected)
    dict(in_shape=(1, 4, 5, 4), out_channels=8, activation="RELU"),      # 2 groups, in_c 4
    dict(in_shape=(1, 3, 5, 32), out_channels=16),                       # 8 groups
    dict(in_shape=(1, 5, 3, 28), out_channels=16),                       # 8 groups, in_c 28
    dict(in_shape=(1, 1, 2, 8), out_channels=516),                       # int8 weights (too
    dict(in_shape=(1, 2, 1, 16), out_channels=260),                      # many for int16):
    dict(in_shape=(1, 2, 3, 32), out_channels=132),                      # 2, 4, 8 groups
    dict(in_shape=(1, 4, 6, 16), out_channels=8, per_channel=False),
    dict(in_shape=(1, 4, 4, 64), out_channels=64),                       # K > SMALL_K
    dict(in_shape=(1, 3, 3, 128), out_channels=64, bias=False),          # 32 groups: straight
    dict(in_shape=(1, 3, 3, 260), out_channels=132),                     # 66 groups: the loop
    dict(in_shape=(1, 4, 4, 64), out_channels=16),                       # 2 out_c < K: pairs
]


def conv_options(g, int16) -> dict[int, str]:
    """Pin the 1x1 kernel (int16 weights where ``int16(params)``) on every node of the lowered
    graph that can take it: the kernel tests cover it whatever the flash-for-speed choice."""
    from kiloml.codegen.armv7em_choice import node_options
    from kiloml.ir.ops.base import REGISTRY
    from kiloml.ir.passes import pipeline

    pg = pipeline(g)
    out = {}
    for n, node in enumerate(pg.nodes):
        names = [o.name for o in node_options(pg, node)]
        if "1x1" in names:
            p = REGISTRY["CONV_2D"].prepare(pg, node)
            out[n] = "1x1-int16" if "1x1-int16" in names and int16(p) else "1x1"
    return out


def small_int16(p) -> bool:  # int16 weights where they add at most 4 KB (the old rule)
    return p.out_c * 4 * ((p.in_c + 7) // 8 * 2) <= 4096


def test_conv2d_1x1(tmp_path):
    """kml_conv2d_1x1_s8 (pinned with generate_c's ``options``): odd pixel counts, K not a
    multiple of 8, batches, activations, 2, 4 and 8 groups with out_c a multiple of 4 with
    int16 weights (conv1x1x_run_g2/4/8, conv1x1x_one) and with int8 weights
    (conv1x1_run_g2/4/8), up to MM_SHORT_1X1 groups otherwise (straight code) and more (the
    loop); a layer with 2 out_c < in_c has no 1x1 option."""
    g = branches(81, CONV_1X1_CASES, lambda m, x, **kw: m.conv2d(x, kernel=1, **kw))
    opts = conv_options(g, small_int16)
    assert len(opts) == len(CONV_1X1_CASES) - 1
    assert sum(v == "1x1-int16" for v in opts.values()) == 7
    check(g, tmp_path, seed=82, options=opts)


def test_prefer_chooses_kernels_and_weight_layouts(tmp_path):
    """``prefer`` on a small model: "speed" takes every faster option (the 1x1 kernel, int16
    weights, the RGB kernel, the _g6 records), "size" none of them here (the code of each
    costs more than SIZE_RATE cycles per byte on layers this small); every choice is reported with its data bytes (exact: the stream's size) and estimated cycles; speed,
    size and a mixed per-node choice are bit-exact. An unknown preference is refused naming
    the choices."""
    from kiloml.codegen.armv7em_choice import choose
    from kiloml.codegen.c import generate_c
    from kiloml.errors import KilomlError
    from kiloml.ir.passes import pipeline

    m = ob.ModelBuilder(np.random.default_rng(85), "prefer")
    outs = [m.conv2d(m.input(c.pop("in_shape")), kernel=1, **c)
            for c in (dict(CONV_1X1_CASES[0]), dict(CONV_1X1_CASES[7]))]  # 16 and 516 channels
    outs.append(m.conv2d(m.input((1, 9, 9, 3)), 8, kernel=3, stride=2))   # RGB
    outs.append(m.depthwise_conv2d(m.input((1, 5, 6, 8)), kernel=3, activation="RELU"))  # _g6
    g = m.build(outs)
    res = {pr: generate_c(g, "m", command="test", runtime="armv7em", prefer=pr)
           for pr in ("speed", "size", "balanced")}
    assert res["speed"].kernels.count("kml_conv2d_1x1x_s8") == 2  # int16 weights
    assert "kml_conv2d_rgb_s8" in res["speed"].kernels
    assert "kml_depthwise_conv2d_3x3_g6r_s8" in res["speed"].kernels
    assert [c["option"] for c in res["speed"].choices] == ["1x1-int16", "1x1-int16",
                                                           "rgb-int16", "dw40"]
    assert [c["option"] for c in res["size"].choices] == ["column", "column", "column", "dw18"]
    assert res["size"].prefer == "size"
    for c in res["speed"].choices:  # the chosen option is the fastest estimate of its node
        assert all(a["cycles_est"] >= c["cycles_est"] for a in c["alternatives"])
        assert c["flash_bytes"] > 0 and c["cycles_est"] > 0

    def packed_words(r):  # int32 words of the packed streams
        src = r.files["m.c"]
        return sum(len(re.findall(r"-?\d+", body)) for body in
                   re.findall(r"_packed\[\d*\] = \{([^}]*)\}", src))

    # the reported flash bytes are the streams the C holds
    for pr in ("speed", "size"):
        assert 4 * packed_words(res[pr]) == sum(c["flash_bytes"] for c in res[pr].choices)
    assert packed_words(res["speed"]) > packed_words(res["size"])
    # a mixed choice: the 1x1 kernel with int8 weights on one layer, the column kernel on the
    # other, the RGB kernel, the 18-byte depthwise records
    pg = pipeline(g)
    nodes = sorted(choose(pg, "speed"))
    mixed = dict(zip(nodes, ["1x1", "column", "rgb", "dw18"]))
    got = generate_c(g, "m", runtime="armv7em", options=mixed)
    assert [c["option"] for c in got.choices] == ["1x1", "column", "rgb", "dw18"]
    for pr in ("speed", "size"):
        check(g, tmp_path / pr, seed=86, prefer=pr)
    check(g, tmp_path / "mixed", seed=86, options=mixed)
    with pytest.raises(KilomlError, match="speed, size, balanced"):
        generate_c(g, "m", runtime="armv7em", prefer="fast")


CONV_RGB_CASES = [
    dict(in_shape=(1, 11, 11, 3), out_channels=8, kernel=3, stride=2),        # VWW-like
    dict(in_shape=(2, 7, 9, 3), out_channels=4, kernel=3, activation="RELU"),  # pad all round
    dict(in_shape=(1, 9, 10, 3), out_channels=6, kernel=3, stride=(1, 2), padding="VALID"),
    dict(in_shape=(1, 8, 7, 3), out_channels=2, kernel=3, stride=2, activation="RELU6",
         per_channel=False),                                                    # odd out_w
    dict(in_shape=(1, 9, 9, 1), out_channels=4, kernel=(3, 5), bias=False),    # rows of 5
    dict(in_shape=(1, 6, 6, 5), out_channels=4, kernel=(3, 1), stride=(2, 1)),  # rows of 5
    dict(in_shape=(1, 12, 12, 3), out_channels=16, kernel=3, stride=2, padding="VALID"),
    dict(in_shape=(1, 5, 5, 3), out_channels=148, kernel=3, stride=2),         # int8 weights
    dict(in_shape=(1, 4, 5, 1), out_channels=258, kernel=(3, 5)),              # (too many)
    dict(in_shape=(1, 6, 7, 7), out_channels=4, kernel=3),                     # K 63: loop
    dict(in_shape=(1, 7, 5, 13), out_channels=6, kernel=(3, 1), stride=2),      # K 39: loop
]


def test_conv2d_rgb(tmp_path):
    """kml_conv2d_rgb_s8 (three window rows of 4n + 1 bytes): padding on every side, VALID,
    strides, odd widths, batches, activations; int16 weights (conv_rgb_extended), int8 weights
    up to MM_SHORT groups and more."""
    from kiloml.codegen.armv7em_choice import node_options
    from kiloml.ir.passes import pipeline

    g = branches(91, CONV_RGB_CASES, lambda m, x, **kw: m.conv2d(x, **kw))
    pg = pipeline(g)
    names = {n: [o.name for o in node_options(pg, node)] for n, node in enumerate(pg.nodes)
             if node.op == "CONV_2D"}
    assert all("rgb" in v for v in names.values())
    assert ["rgb-int16" in v for v in names.values()] == [True] * 9 + [False] * 2
    # int16 weights on the first seven, int8 on the rest (both layouts of rows of one and two
    # groups run)
    opts = {n: "rgb-int16" if k < 7 else "rgb" for k, n in enumerate(names)}
    check(g, tmp_path, seed=92, options=opts)


@pytest.mark.parametrize("core", ["cortex-m7", "cortex-m33"])
def test_whole_layer_conv_kernels_other_cores(core, tmp_path):
    """kml_conv2d_1x1_s8 and kml_conv2d_rgb_s8 (computed jumps into straight code) on the
    other DSP cores."""
    g = branches(81, CONV_1X1_CASES, lambda m, x, **kw: m.conv2d(x, kernel=1, **kw))
    check(g, tmp_path / "1x1", seed=83, core=core, options=conv_options(g, small_int16))
    check(branches(91, CONV_RGB_CASES, lambda m, x, **kw: m.conv2d(x, **kw)),
          tmp_path / "rgb", seed=93, core=core, prefer="speed")


DW_CASES = (
    [dict(in_shape=(1, 9, 8, c), depth_multiplier=mult, kernel=3, stride=s, dilation=d,
          padding=p)
     for c, mult in ((8, 1), (3, 2)) for p in ("SAME", "VALID") for s in (1, 2) for d in (1, 2)]
    + [
        dict(in_shape=(1, 8, 8, 4), kernel=3, activation="RELU"),
        dict(in_shape=(1, 8, 8, 4), kernel=3, activation="RELU6"),
        dict(in_shape=(1, 8, 8, 4), kernel=3, activation="RELU_N1_TO_1"),
        dict(in_shape=(2, 7, 7, 4), depth_multiplier=2, kernel=3, stride=2, activation="RELU6",
             per_channel=False, bias=False),
        dict(in_shape=(1, 6, 6, 2), depth_multiplier=3, kernel=(3, 2), stride=(2, 1),
             dilation=(1, 2)),
        dict(in_shape=(1, 8, 8, 16), kernel=3, stride=2),
        dict(in_shape=(1, 1, 20, 4), kernel=(1, 7), dilation=(1, 3), padding="VALID"),
        dict(in_shape=(1, 7, 6, 12), kernel=5, activation="RELU"),
        dict(in_shape=(2, 5, 5, 8), kernel=3, per_channel=False, bias=False),
        dict(in_shape=(1, 25, 5, 64), kernel=3, activation="RELU"),             # KWS-like
        dict(in_shape=(1, 6, 9, 8), kernel=3, activation="RELU"),               # int16 lines,
        dict(in_shape=(2, 5, 7, 4), kernel=3, padding="VALID"),                 # widths 9, 5
        dict(in_shape=(1, 10, 8, 1), depth_multiplier=8, kernel=(5, 4), stride=2),  # micro_speech
        dict(in_shape=(1, 3, 3, 32), kernel=3, stride=2),
        dict(in_shape=(1, 7, 9, 6), kernel=3, activation="RELU"),               # C % 4 != 0
        dict(in_shape=(1, 7, 9, 5), kernel=3, stride=2, padding="VALID"),
        dict(in_shape=(1, 5, 10, 4), kernel=3, stride=2, activation="RELU"),  # 3 + 2 outputs
        dict(in_shape=(1, 6, 11, 12), kernel=3, stride=2, activation="RELU6"),
        dict(in_shape=(1, 4, 1, 8), kernel=3),                                  # one column
        dict(in_shape=(1, 5, 11, 4), kernel=3, padding="VALID"),                # _w5: 9, no pad
        dict(in_shape=(2, 4, 5, 8), kernel=3, activation="RELU"),               # _w5 overlapping
    ])


def test_depthwise_conv2d_options(tmp_path):
    # prefer speed: the _g6 entries wherever they fit (the 18-byte records: test_depthwise_*)
    check(branches(21, DW_CASES, lambda m, x, **kw: m.depthwise_conv2d(x, **kw)), tmp_path,
          seed=22, prefer="speed")


# the _g6 entries (int16 lines, pre-split weights, groups of six then three outputs): stride 1
# with output widths a multiple of 3, stride 2 with widths of at least 3 (overlapping last
# groups), odd input widths, batches, activations, per-tensor weights, no bias
DW_G6_CASES = [
    dict(in_shape=(1, 5, 6, 8), kernel=3, activation="RELU"),                  # 6: one group
    dict(in_shape=(1, 4, 3, 16), kernel=3),                                     # 3: VWW's last
    dict(in_shape=(2, 7, 12, 4), kernel=3, activation="RELU6"),                 # 6 + 6
    dict(in_shape=(1, 6, 15, 8), kernel=3, per_channel=False, bias=False),      # 6 + 6 + 3
    dict(in_shape=(1, 5, 17, 4), kernel=3, padding="VALID"),                    # 15, VALID
    dict(in_shape=(1, 3, 24, 12), kernel=3, activation="RELU_N1_TO_1"),
    dict(in_shape=(1, 9, 8, 8), kernel=3, stride=2),                            # 4: 3 + 3
    dict(in_shape=(1, 9, 25, 4), kernel=3, stride=2, activation="RELU"),        # 13: 6 6 3
    dict(in_shape=(1, 7, 14, 8), kernel=3, stride=2, padding="VALID"),          # 6, VALID
    dict(in_shape=(2, 7, 13, 4), kernel=3, stride=2, per_channel=False),        # odd, pad 1
    dict(in_shape=(1, 8, 16, 12), kernel=3, stride=2, padding="VALID", bias=False),  # 7
    dict(in_shape=(1, 6, 6, 32), kernel=3, stride=2, activation="RELU6"),       # 3
    dict(in_shape=(1, 5, 19, 8), kernel=3, stride=2, padding="VALID"),          # 9 pairs + 1
    dict(in_shape=(1, 6, 20, 4), kernel=3, stride=2),                           # 10 pairs
]


def test_depthwise_conv2d_g6(tmp_path):
    from kiloml.codegen.c import generate_c

    g = branches(23, DW_G6_CASES, lambda m, x, **kw: m.depthwise_conv2d(x, **kw))
    node = next(n for n in g.nodes if n.op == "DEPTHWISE_CONV_2D")
    w = g.tensors[node.inputs[1]]
    wdata = w.data.copy()
    wdata[..., 1] = 0  # a channel of zero weights: constant output from its bias
    w.data = wdata
    kernels = generate_c(g, "model", command="test", runtime="armv7em", prefer="speed").kernels
    calls = [re.fullmatch(r"kml_depthwise_conv2d_3x3_(g6s2|g6)(r?)_s8", k).groups()
             for k in kernels]
    assert sum(k == "g6" for k, _ in calls) == 6 and sum(k == "g6s2" for k, _ in calls) == 8
    assert {r for _, r in calls} == {"", "r"}  # with and without the correction
    check(g, tmp_path, seed=24, prefer="speed")


# the _w5 / _w5r entries (stride 1, output width 5 or 9): _w5r for layers whose activation
# minimum is at least the output offset (RELU, RELU6, no activation with output offset -128),
# _w5 otherwise (no activation, RELU_N1_TO_1)
DW_W5_CASES = [
    dict(in_shape=(1, 6, 5, 8), kernel=3, activation="RELU"),                   # 5, SAME
    dict(in_shape=(2, 5, 9, 4), kernel=3, activation="RELU"),                   # 9, batches
    dict(in_shape=(1, 7, 5, 12), kernel=3, activation="RELU6"),
    dict(in_shape=(1, 5, 11, 4), kernel=3, padding="VALID", activation="RELU6"),  # 9, VALID
    dict(in_shape=(1, 6, 7, 8), kernel=3, padding="VALID", activation="RELU",
         per_channel=False, bias=False),                                         # 5, VALID
    dict(in_shape=(1, 4, 5, 16), kernel=3),                                      # no activation
    dict(in_shape=(1, 5, 9, 8), kernel=3, bias=False),
    dict(in_shape=(1, 6, 5, 4), kernel=3, activation="RELU_N1_TO_1"),
    dict(in_shape=(2, 4, 9, 8), kernel=3, activation="RELU_N1_TO_1", per_channel=False),
]


def test_depthwise_conv2d_w5(tmp_path):
    from kiloml.codegen.c import generate_c
    from kiloml.ir.ops.base import REGISTRY
    from kiloml.ir.passes import pipeline

    g = branches(25, DW_W5_CASES, lambda m, x, **kw: m.depthwise_conv2d(x, **kw))
    node = next(n for n in g.nodes if n.op == "DEPTHWISE_CONV_2D")
    w = g.tensors[node.inputs[1]]
    wdata = w.data.copy()
    wdata[..., 1] = 0  # a channel of zero weights: constant output from its bias
    w.data = wdata
    pg = pipeline(g)
    params = [REGISTRY["DEPTHWISE_CONV_2D"].prepare(pg, n) for n in pg.nodes
              if n.op == "DEPTHWISE_CONV_2D"]
    want = ["r" if q.act_min >= q.out_offset else "" for q in params]
    kernels = generate_c(g, "model", command="test", runtime="armv7em").kernels
    calls = [re.fullmatch(r"kml_depthwise_conv2d_3x3_w5(r?)_s8", k).group(1) for k in kernels]
    assert calls == want
    assert set(calls) == {"", "r"}  # with and without the correction
    check(g, tmp_path, seed=26)


FC_CASES = [
    dict(in_shape=(1, 16), units=8),
    dict(in_shape=(1, 7), units=3, activation="RELU"),
    dict(in_shape=(1, 9), units=1),
    dict(in_shape=(1, 37), units=13, activation="RELU6", per_channel=True),
    dict(in_shape=(3, 12), units=5, bias=False),                               # 3 rows
    dict(in_shape=(1, 2, 3, 8), units=4, depth=24),
    dict(in_shape=(1, 640), units=16, activation="RELU"),
    dict(in_shape=(2, 64), units=12, keep_num_dims=True),
    dict(in_shape=(1, 1), units=16, activation="RELU"),
    dict(in_shape=(1, 8), units=6),                       # one 8-input half: enters mid-loop
    dict(in_shape=(1, 48), units=4, activation="RELU"),   # three halves
    dict(in_shape=(1, 128), units=9, per_channel=True),   # whole 16-input passes, 4+4+1 units
    dict(in_shape=(2, 21), units=7, activation="RELU6"),  # 2 rows, depth 21 padded to 24
    dict(in_shape=(1, 5), units=5),                       # one half, a partial group of 1
]


def test_fully_connected_options(tmp_path):
    check(branches(31, FC_CASES, lambda m, x, **kw: m.fully_connected(x, **kw)), tmp_path,
          seed=32)


def test_fully_connected_stream_folds_the_input_offset():
    """fc_stream's biases are 2 (bias + in_offset x row sum) (the kernel multiplies the raw
    inputs, doubled), paired per two units; its weight words per input group in unit order,
    units padded to 4 and depth to 8."""
    from kiloml.codegen.armv7em import fc_stream

    rng = np.random.default_rng(5)
    w = rng.integers(-127, 128, (5, 11)).astype(np.int8)
    bias = rng.integers(-1000, 1000, 5)
    s = fc_stream(w, bias, np.full(5, 1 << 30), np.full(5, -8), 37, -3, -128, 127,
                  uniform=False)  # the per-unit layout (uniform: test_armv7em_fc.py)
    d8 = 16
    group = 4 + 4 * d8 // 4 + 5
    assert s.size == 1 + 2 * group
    assert s[0] == 0  # every unit on the fast requantization
    # folded biases, doubled (fast layers: the kernel doubles the inputs for kml_rq)
    fb = 2 * (bias + 37 * w.astype(np.int64).sum(axis=1))
    # unit pairs (0, 1), (2, 3): the first unit's accumulator starts at b_p + 256 b_q (int32)
    wrap = [int(np.int64(v).astype(np.int32)) for v in (fb[0] + 256 * fb[1], fb[2] + 256 * fb[3])]
    assert list(s[1:5]) == [wrap[0], fb[1], wrap[1], fb[3]]
    assert s[1 + group] == fb[4]  # unit 4 with a zero unit
    # inputs 0-3 of units 0-3: per pair and input pair (i, i + 1) a word whose int16 halves
    # are 256 w_q + w_p + 128 (an SMLAD with (x_i, x_i+1) sums 256 S_q + S_p + 128 Sx)
    halves = np.array(s[5:9], "<i4").view("<i2").reshape(2, 2, 2)  # pair, input pair, half
    ww = w.astype(np.int64)
    for pair in range(2):
        p, q = 2 * pair, 2 * pair + 1
        assert halves[pair].reshape(-1).tolist() == (256 * ww[q, :4] + ww[p, :4] + 128).tolist()
    assert s[group] == 8 | 8 << 8 | 8 << 16 | 8 << 24  # right shifts 8 as bytes


def test_fully_connected_requantization_edge_cases(tmp_path):
    """kml_fully_connected_s8 (a model without convolutions): layers whose units need TFLite's
    general requantization (left shift, accumulator that may reach 2^30), huge right shifts,
    dead units and all-zero rows, a partial last group; and a layer on the fast path with a
    dead unit, a pruned unit and a huge right shift."""
    m = ob.ModelBuilder(np.random.default_rng(53), "fc_edges")
    outs = [m.fully_connected(m.input((1, 24)), 14), m.fully_connected(m.input((1, 37)), 10,
                                                                       activation="RELU"),
            m.fully_connected(m.input((1, 40)), 12, activation="RELU6")]
    g = m.build(outs)
    from kiloml.codegen.armv7em import fc_stream
    from kiloml.ir.ops.base import REGISTRY

    for node in g.nodes[:2]:
        w, b = g.tensors[node.inputs[1]], g.tensors[node.inputs[2]]
        scale = np.array(np.broadcast_to(w.quant.scale, (w.shape[0],)), np.float32)
        scale[1] *= 64.0          # left shift: group 0 takes the general path
        scale[5] *= 1e-9          # tiny multiplier
        scale[6] = 0.0            # dead unit
        bdata = b.data.copy()
        bdata[9] = (1 << 30) - 5  # group 2 (units 8-11, partial in the second layer)
        wdata = w.data.copy()
        wdata[7] = 0              # a pruned unit: constant output from its bias
        bdata[7] = -(1 << 20) + 77
        w.quant = type(w.quant)(scale, np.zeros(scale.size, np.int64), 0)
        w.data, b.data = wdata, bdata
    w, b = (g.tensors[t] for t in g.nodes[2].inputs[1:3])
    scale = np.array(np.broadcast_to(w.quant.scale, (w.shape[0],)), np.float32)
    scale[1], scale[2] = 0.0, scale[2] * 1e-9  # dead, huge right shift: still fast
    wdata = w.data.copy()
    wdata[3] = 0
    w.quant = type(w.quant)(scale, np.zeros(scale.size, np.int64), 0)
    w.data = wdata
    flags = []
    for node in g.nodes:
        p = REGISTRY["FULLY_CONNECTED"].prepare(g, node)
        flags.append(int(fc_stream(g.tensors[node.inputs[1]].data, g.tensors[node.inputs[2]].data,
                                   p.mult, p.shift, p.in_offset, p.out_offset, p.act_min,
                                   p.act_max)[0]))
    assert flags == [1, 1, 0]
    check(g, tmp_path, seed=54)


@pytest.mark.parametrize("core", ["cortex-m7", "cortex-m33"])
def test_fully_connected_other_cores(core, tmp_path):
    """kml_fully_connected_s8 on the other DSP cores: the per-op cases and the MLPerf AD
    autoencoder (ten FULLY_CONNECTED layers)."""
    check(branches(31, FC_CASES, lambda m, x, **kw: m.fully_connected(x, **kw)),
          tmp_path / "ops", seed=33, core=core)
    check(read_tflite(SHARED / "models" / "mlperf_tiny" / "ad01_int8.tflite"), tmp_path / "ad",
          seed=34, core=core)


def test_fully_connected_in_conv_model(tmp_path):
    """With convolutions in the model, FULLY_CONNECTED runs on the convolution kernel."""
    m = ob.ModelBuilder(np.random.default_rng(71), "fc_conv")
    outs = [m.conv2d(m.input((1, 4, 4, 8)), 4, kernel=1)]
    for case in FC_CASES[:6]:
        case = dict(case)
        outs.append(m.fully_connected(m.input(case.pop("in_shape")), **case))
    check(m.build(outs), tmp_path, seed=72)


def _conv_add(m, x, conv_first=True, activation="NONE", res_from_input=True, **kw):
    y = m.conv2d(x, **kw)
    if res_from_input:
        r = m.conv2d(x, m.tensors[y].shape[3], kernel=1, stride=kw.get("stride", 1))
    else:
        r = m.const_int8(m.tensors[y].shape)
    return m.add(y, r, activation) if conv_first else m.add(r, y, activation)


ADD_CASES = [
    dict(in_shape=(1, 8, 8, 16), out_channels=16, kernel=3),
    dict(in_shape=(1, 8, 8, 16), out_channels=16, kernel=3, conv_first=False, activation="RELU"),
    dict(in_shape=(1, 8, 8, 16), out_channels=32, kernel=3, stride=2),
    dict(in_shape=(1, 6, 6, 8), out_channels=5, kernel=1, activation="RELU6"),
    dict(in_shape=(1, 5, 5, 8), out_channels=8, kernel=3, res_from_input=False),
]


def test_conv_add_options(tmp_path):
    g = branches(41, ADD_CASES, _conv_add)
    from kiloml.ir.passes import pipeline

    assert sum(n.op == "CONV_2D_ADD" for n in pipeline(g).nodes) == len(ADD_CASES)
    check(g, tmp_path, seed=42)


def test_requantization_edge_cases(tmp_path):
    """Channels the fast requantization cannot take (accumulators that may reach 2^30,
    multipliers with a left shift, tiny multipliers) take TFLite's general path, pair by pair;
    dead channels (scale 0), huge right shifts and all-zero weights become constants."""
    m = ob.ModelBuilder(np.random.default_rng(51), "edges")
    outs = []
    for kind in ("conv", "dw", "fc"):
        x = m.input((1, 5, 5, 8) if kind != "fc" else (1, 24))
        if kind == "conv":
            y = m.conv2d(x, 8, kernel=3)
        elif kind == "dw":
            y = m.depthwise_conv2d(x, kernel=3)
        else:
            y = m.fully_connected(x, 8)
        outs.append(y)
    g = m.build(outs)
    for node in g.nodes:
        w = g.tensors[node.inputs[1]]
        b = g.tensors[node.inputs[2]]
        axis = 3 if node.op == "DEPTHWISE_CONV_2D" else 0
        scale = np.array(np.broadcast_to(w.quant.scale, (w.shape[axis],)), np.float32)
        scale[1] *= 64.0          # real multiplier > 1 for this channel: left shift
        scale[2] *= 1e-9          # tiny multiplier: huge right shift, constant output
        scale[3] = 0.0            # dead channel
        bdata = b.data.copy()
        bdata[4] = (1 << 30) - 5  # accumulator may exceed 2^30
        bdata[5] = -(1 << 30)
        wdata = w.data.copy()
        np.moveaxis(wdata, axis, 0)[6] = 0  # a pruned channel: constant output from its bias
        bdata[6] = -(1 << 30) + 77
        w.quant = type(w.quant)(scale, np.zeros(scale.size, np.int64), axis)
        w.data = wdata
        b.data = bdata
    check(g, tmp_path, seed=52)


POOL_CASES = [
    dict(in_shape=(1, 8, 8, 8), kind="AVG", filter_size=2, stride=2),
    dict(in_shape=(1, 7, 9, 6), kind="AVG", filter_size=3, stride=1, padding="SAME"),
    dict(in_shape=(1, 25, 5, 64), kind="AVG", filter_size=(25, 5), stride=(25, 5)),  # KWS
    dict(in_shape=(1, 16, 16, 4), kind="AVG", filter_size=16, stride=16),  # 256 taps: int32 path
    dict(in_shape=(2, 6, 6, 12), kind="AVG", filter_size=3, stride=2, padding="SAME",
         activation="RELU6"),
    dict(in_shape=(1, 8, 8, 8), kind="MAX", filter_size=2, stride=2),
    dict(in_shape=(1, 7, 7, 5), kind="MAX", filter_size=3, stride=1, padding="SAME",
         activation="RELU"),
    # four channels per word (SSUB8 / SEL), clamped to the activation in the lanes
    dict(in_shape=(2, 9, 7, 12), kind="MAX", filter_size=3, stride=2, padding="SAME",
         activation="RELU6"),
    dict(in_shape=(1, 6, 10, 7), kind="MAX", filter_size=(2, 3), stride=(2, 1),
         padding="VALID", activation="RELU_N1_TO_1"),
]


def test_pool_options(tmp_path):
    check(branches(61, POOL_CASES, lambda m, x, **kw: m.pool(x, **kw)), tmp_path, seed=62)
