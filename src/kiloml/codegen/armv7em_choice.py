"""Speed or size: the armv7em kernel and weight-layout choice per node (``prefer``).

Some layers can run on more than one armv7em entry point, or on one entry point with more than
one stream layout; the faster one costs flash (straight-line code, wider records):

* a 1x1 CONV_2D (``armv7em._conv_1x1_fits``, 2 out_c >= in_c): the column kernel
  (``conv_kernel``), ``kml_conv2d_1x1_s8`` (int8 weights), or ``kml_conv2d_1x1x_s8`` (int16
  weights: 2, 4 or 8 groups, out_c a multiple of 4);
* the RGB first layer (``conv_rgb``): the column kernel, ``kml_conv2d_rgb_s8`` with int8 or
  int16 weights;
* a 3x3 DEPTHWISE_CONV_2D that fits the _g6 entries (``depthwise_g6``): the 18-byte records
  (``_h``, ``_s2``, ... entries) or the 40-byte records of the _g6 entries;
* a FULLY_CONNECTED in a model without convolutions: ``kml_fully_connected_s8`` (int8
  weights) or ``kml_fully_connected_x_s8`` (int16 weights, ``fc_stream`` extended: twice the
  weight bytes, 13 instead of 19 instructions per 16 MACs).

``node_options`` lists a node's options with their exact data bytes (the size of the stream the
backend emits for it) and estimated cycles; ``choose`` picks one per node.

Cost of a choice = estimated cycles + ``rate`` x flash bytes, flash = the nodes' data bytes +
the code of every kernel function the model then links (``CODE_BYTES``, each counted once
however many nodes call it). ``rate`` is the exchange rate: the cycles one byte of flash must
save to be worth it (``RATES``: speed 0, balanced BALANCED_RATE, size SIZE_RATE). The code of a
function is shared, so the choice is not separable per node: ``choose`` tries every set of the
optional kernel functions (all but the column kernels: 1x1, RGB, each depthwise entry),
picks per node the cheapest option whose functions are in the set, and keeps the cheapest set.
Ties go to less flash, then to the option listed first.

Cycles: a linear formula per kernel function of the layer's geometry (``CYCLES``: per output,
per output pixel, per output row and channel, per call), fitted by least squares to per-layer
Cortex-M4 cycles measured in the emulator (``benchmarks/prefer_calibrate.py``: the MLPerf Tiny
models with every option forced in turn). The formulas only rank options of one node; the
profiler measures the real figures.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from kiloml.codegen.armv7em import (_bias, _conv_1x1_fits, conv_kernel, conv_rgb, conv_rows,
                                    fc_stream, matrix_stream, windows_inside)
from kiloml.codegen.armv7em_dw import (depthwise_eligible, depthwise_g6, depthwise_h,
                                       depthwise_stream, depthwise_stream_g6, depthwise_w5)
from kiloml.ir.ops import REGISTRY

PREFERENCES = ("speed", "size", "balanced")

# cycles one byte of flash must save (per inference) for the faster option to be taken
# balanced: 48 k cycles per KB (0.5 ms per inference at 100 MHz for each KB of flash): on
# VWW the int16-weight 1x1 entry for its four small-K layers, not the int8 one (~37 cycles
# per byte for the other nine); not on KWS (~40: four 1x1 layers of 64 channels)
BALANCED_RATE = 48.0
# size: 128 k cycles per KB: only what pays most per byte (VWW: the RGB kernel with int16
# weights, the int16-weight 1x1 entry on its three first 1x1 layers, the _g6 records of the
# two widest depthwise layers). Not "the least flash within a cycle bound": on small models
# the code of every faster kernel costs more than the layers' data, so the least flash is far
# slower than speed and a bound would give them speed's flash under the name size.
SIZE_RATE = 128.0
RATES = {"speed": 0.0, "balanced": BALANCED_RATE, "size": SIZE_RATE}

CONV_1X1 = "kml_conv2d_1x1_s8"
CONV_1X1X = "kml_conv2d_1x1x_s8"  # int16 weights
CONV_RGB = "kml_conv2d_rgb_s8"
FC = "kml_fully_connected_s8"  # int8 weights
FCX = "kml_fully_connected_x_s8"  # int16 weights
FCU = "kml_fully_connected_u_s8"  # int8 weights, a uniform stream (one multiplier and shift)

# FULLY_CONNECTED: cycles = a x padded MACs (units to 4, depth to 8, batches) + b x padded
# outputs + c x padded inputs + d per call: Cortex-M4 cycles in the emulator, least squares
# over the AD and zoo dense layers with each layout forced (benchmarks/fc_cycles_fit.py:
# 19 layers per layout, max error 7.9% / 13.1%: the uniform streams' groups loop in asm
# (fc_groups_u) and the widening in asm, 2026-12-07)
FC_CYCLES = {"int8": (1.036, 13.018, 2.707, 256.205),
             "int16": (0.989, 17.731, 0.738, 313.956)}

# Code bytes of each kernel function with everything it calls (Cortex-M4, -O2,
# arm-none-eabi-gcc 12.2; benchmarks/prefer_calibrate.py: the runtime linked with
# --gc-sections and the function as the entry point).
CODE_BYTES: dict[str, int] = {
    'kml_conv2d_1x1_s8': 7556,
    'kml_conv2d_1x1x_s8': 3152,
    'kml_conv2d_rgb_s8': 6224,
    'kml_depthwise_conv2d_3x3_s8': 1856,
    'kml_depthwise_conv2d_3x3_w5_s8': 1276,
    'kml_depthwise_conv2d_3x3_w5r_s8': 1256,
    'kml_depthwise_conv2d_3x3_h_s8': 1688,
    'kml_depthwise_conv2d_3x3_s2_s8': 1716,
    'kml_depthwise_conv2d_3x3_g6_s8': 2468,
    'kml_depthwise_conv2d_3x3_g6r_s8': 2408,
    'kml_depthwise_conv2d_3x3_g6s2_s8': 2516,
    'kml_depthwise_conv2d_3x3_g6s2r_s8': 2456,
    'kml_conv2d_pairs_inside_s8': 2256,
    'kml_conv2d_pairs_s8': 2632,
    'kml_conv2d_s8': 3592,
    # its entry alone (x: its helpers are kml_fully_connected_s8's; u: with fc_groups_u, which
    # only it calls; symbol sizes of the -O2 object, 2026-12-07)
    'kml_fully_connected_x_s8': 1516,
    'kml_fully_connected_u_s8': 1358,
}

# per kernel function: cycles = a MACs + b outputs + c output pixels + d (out_h x out_c) + e
# (benchmarks/prefer_calibrate.py; outputs = out_h x out_w x out_c)
CYCLES: dict[str, tuple[float, float, float, float, float]] = {  # layers, fit error
    'kml_conv2d_1x1_s8': (1.061, 6.275, 40.732, 0.0, 3622.633),
    # 10 layers, max error 3.1%
    'kml_conv2d_1x1x_s8': (0.86, 7.946, 25.086, 0.0, 0.0),
    # 4 layers, max error 1.2%
    'kml_conv2d_pairs_inside_s8': (1.092, 8.333, 142.805, 0.0, 22123.398),
    # 10 layers, max error 4.6%
    'kml_conv2d_rgb_s8': (1.611, 0.0, 31.789, 0.0, 0.0),
    # 2 layers, max error 0.0%
    'kml_conv2d_rgb_s8/int16': (1.414, 0.0, 32.423, 0.0, 0.0),
    # 2 layers, max error 0.0%
    'kml_conv2d_s8': (1.933, 0.0, 174.389, 0.0, 0.0),
    # 2 layers, max error 0.0%
    'kml_depthwise_conv2d_3x3_g6r_s8': (1.793, 0.0, 22.974, 24.969, 0.0),
    # 5 layers, max error 7.0%
    'kml_depthwise_conv2d_3x3_g6s2r_s8': (2.987, 0.0, 1.8, 17.321, 0.0),
    # 4 layers, max error 0.8%
    'kml_depthwise_conv2d_3x3_h_s8': (2.909, 0.0, 16.146, 0.0, 0.0),
    # 2 layers, max error 0.0%
    'kml_depthwise_conv2d_3x3_s2_s8': (4.137, 0.0, 64.733, 21.411, 0.0),
    # 4 layers, max error 0.9%
    'kml_depthwise_conv2d_3x3_s8': (0.0, 0.0, 1216.46, 165.571, 0.0),
    # 3 layers, max error 3.1%
}
# entries without layers of their own in the calibration models: the closest measured one
# (the ReLU variants skip one correction per output; the pair kernel without the inside
# promise adds window checks)
FALLBACK = {"kml_depthwise_conv2d_3x3_g6_s8": "kml_depthwise_conv2d_3x3_g6r_s8",
            "kml_depthwise_conv2d_3x3_g6s2_s8": "kml_depthwise_conv2d_3x3_g6s2r_s8",
            "kml_conv2d_pairs_s8": "kml_conv2d_pairs_inside_s8"}


@dataclass(frozen=True)
class Option:
    """One way to run a node: ``name`` (column, 1x1, 1x1-int16, rgb, rgb-int16, dw18, dw40),
    the kernel function, the stream layout, the exact bytes of its data and its estimated
    cycles."""

    name: str
    kernel: str
    layout: str
    data_bytes: int
    cycles: float

    def as_dict(self) -> dict:
        """The report of ``CompileResult.choices``: ``flash_bytes`` is the node's own data
        (its stream); the kernel's code is shared by the nodes that call it."""
        return {"option": self.name, "kernel": self.kernel, "layout": self.layout,
                "flash_bytes": int(self.data_bytes), "cycles_est": int(round(self.cycles))}


def geometry(p, depthwise: bool = False) -> tuple[int, int, int, int]:
    """(MACs, outputs, output pixels, output rows x channels) of a convolution (``depthwise``:
    one input channel per output channel), batches counted."""
    pix = p.batches * p.out_h * p.out_w
    k = p.k_h * p.k_w * (1 if depthwise else p.in_c)
    return pix * p.out_c * k, pix * p.out_c, pix, p.batches * p.out_h * p.out_c


def estimate(kernel: str, p) -> float:
    """The cycle formula of ``kernel`` (CYCLES) for the layer ``p``; a function without one
    (never an alternative) costs nothing here."""
    coef = CYCLES.get(kernel, CYCLES.get(FALLBACK.get(kernel, "")))
    if coef is None:
        return 0.0
    return max(0.0, float(np.dot(coef, [*geometry(p, "depthwise" in kernel), 1])))


def _stream_bytes(stream) -> int:
    return 4 * int(np.asarray(stream).size)


def _conv_options(g, node, p) -> list[Option]:
    w = g.tensors[node.inputs[1]].data
    rows = conv_rows(w)
    bias = _bias(g, node)
    args = (rows, bias, np.asarray(p.mult), np.asarray(p.shift), p.in_offset, p.out_offset,
            p.act_min, p.act_max)
    one = _conv_1x1_fits(g, node, p) and 2 * p.out_c >= p.in_c
    rgb = not one and conv_rgb(g, node, p)
    if not (one or rgb):
        return []
    base = conv_kernel(g, node, p, rows, w.shape[2] * w.shape[3], windows_inside(p))
    opts = [Option("column", base, "int8 stream", _stream_bytes(matrix_stream(*args)),
                   estimate(base, p))]
    if one:
        groups = (p.in_c + 7) // 8 * 2
        layouts = [False] + ([True] if groups in (2, 4, 8) and p.out_c % 4 == 0 else [])
        for ext in layouts:
            s = matrix_stream(*args, lean=True, multiple=8, doubled=True, extended=ext)
            fn = CONV_1X1X if ext else CONV_1X1
            opts.append(Option("1x1-int16" if ext else "1x1", fn,
                               "int16 weights" if ext else "int8 lean stream",
                               _stream_bytes(s), estimate(fn, p)))
    else:
        row = p.k_w * p.in_c
        for ext in [False] + ([True] if row // 4 in (1, 2) else []):
            s = matrix_stream(*args, lean=True, multiple=4, doubled=False, extended=ext)
            opts.append(Option("rgb-int16" if ext else "rgb", CONV_RGB,
                               "int16 weights" if ext else "int8 lean stream",
                               _stream_bytes(s), estimate(CONV_RGB + ("/int16" if ext else ""),
                                                          p)))
    return opts


def depthwise_kernel(p, g6: bool) -> str:
    """The 3x3 entry point of an eligible depthwise layer (armv7em_backend._depthwise)."""
    relu = "r" if p.act_min >= p.out_offset else ""
    return "kml_depthwise_conv2d_3x3" + (("_g6s2" if p.stride_w == 2 else "_g6") + relu
                                         if g6 else
                                         "_s2" if p.stride_w == 2 else
                                         "_w5" + relu if depthwise_w5(p) else
                                         "_h" if depthwise_h(p) else "") + "_s8"


def _depthwise_options(g, node, p) -> list[Option]:
    if not (depthwise_eligible(p) and depthwise_g6(p)):
        return []
    has_bias = len(node.inputs) > 2 and node.inputs[2] >= 0
    args = (g.tensors[node.inputs[1]].data, g.tensors[node.inputs[2]].data if has_bias else None,
            p.mult, p.shift, p.in_offset, p.out_offset, p.act_min, p.act_max)
    s18, s40 = depthwise_stream(*args), depthwise_stream_g6(*args)
    if s18 is None or s40 is None:
        return []
    k18, k40 = depthwise_kernel(p, False), depthwise_kernel(p, True)
    return [Option("dw18", k18, "18-byte records", _stream_bytes(s18), estimate(k18, p)),
            Option("dw40", k40, "40-byte records", _stream_bytes(s40), estimate(k40, p))]


def _fc_options(g, node, p) -> list[Option]:
    if any(n.op in ("CONV_2D", "CONV_2D_ADD") for n in g.nodes):
        return []  # FULLY_CONNECTED runs on the convolution kernel (armv7em_backend)
    units, depth = g.tensors[node.inputs[1]].shape
    u4, d8 = (units + 3) // 4 * 4, (depth + 7) // 8 * 8
    opts = []
    for ext in (False, True):
        a, b, c, d = FC_CYCLES["int16" if ext else "int8"]
        cyc = p.batches * (a * u4 * d8 + b * u4 + c * d8) + d
        stream = fc_stream(g.tensors[node.inputs[1]].data, _bias(g, node), p.mult, p.shift,
                           p.in_offset, p.out_offset, p.act_min, p.act_max, extended=ext)
        opts.append(Option("fc-int16" if ext else "fc",
                           FCX if ext else (FCU if int(stream[0]) & 4 else FC),
                           "int16 weights" if ext else "int8 stream", 4 * stream.size, cyc))
    return opts


def node_options(g, node) -> list[Option]:
    """The options of a node that has a choice (empty: it has none)."""
    if node.op == "FULLY_CONNECTED":
        return _fc_options(g, node, REGISTRY["FULLY_CONNECTED"].prepare(g, node))
    if node.op == "CONV_2D":
        return _conv_options(g, node, REGISTRY["CONV_2D"].prepare(g, node))
    if node.op == "DEPTHWISE_CONV_2D":
        return _depthwise_options(g, node, REGISTRY["DEPTHWISE_CONV_2D"].prepare(g, node))
    return []


COLUMN = ("kml_conv2d_s8", "kml_conv2d_pairs_s8", "kml_conv2d_pairs_inside_s8")
ALWAYS = COLUMN + (FC,)  # kernel functions every set of choose_at may use
MAX_OPTIONAL = 10  # kernel functions whose subsets choose tries (more: all are allowed)


def choose(g, prefer: str, force: dict[int, str] | None = None
           ) -> dict[int, tuple[Option, list[Option]]]:
    """Node index -> (chosen option, all its options) for every node of ``g`` with a choice,
    by ``prefer`` (PREFERENCES; see the module doc). ``force``: node index -> option name to
    take whatever the cost (calibration and tests; "fast" takes the last option, the fastest
    layout of the faster kernel, "base" the first)."""
    opts = {n: o for n, node in enumerate(g.nodes) if (o := node_options(g, node))}
    picks = choose_at(opts, RATES[prefer], force)
    return {n: (picks[n], opts[n]) for n in sorted(picks)}


def choose_at(opts: dict[int, list[Option]], rate: float,
              force: dict[int, str] | None = None) -> dict[int, Option]:
    """The options (node index -> Option) that minimize cycles + ``rate`` x flash over the
    nodes ``opts`` lists, the ``force``d ones pinned (``choose``)."""
    chosen: dict[int, Option] = {}
    free = {}
    for n, os_ in opts.items():
        if force and n in force:
            name = force[n]
            pick = (os_[-1] if name == "fast" else os_[0] if name == "base" else
                    next((o for o in os_ if o.name == name), None))
            if pick is not None:
                chosen[n] = pick
                continue
        free[n] = os_
    optional = sorted({o.kernel for os_ in free.values() for o in os_} - set(ALWAYS))
    subsets = ([optional] if len(optional) > MAX_OPTIONAL else
               [list(c) for k in range(len(optional) + 1)
                for c in itertools.combinations(optional, k)])
    best = None
    for allowed in subsets:
        pick = {}
        for n, os_ in free.items():
            ok = [o for o in os_ if o.kernel in allowed or o.kernel in ALWAYS]
            if not ok:
                break
            pick[n] = min(ok, key=lambda o: (o.cycles + rate * o.data_bytes, o.data_bytes))
        else:
            every = {**chosen, **pick}
            code = sum(CODE_BYTES.get(f, 0) for f in {o.kernel for o in every.values()})
            data = sum(o.data_bytes for o in every.values())
            cycles = sum(o.cycles for o in every.values())
            key = (cycles + rate * (code + data), code + data)
            if best is None or key < best[0]:
                best = (key, pick)
    if best is not None:
        chosen.update(best[1])
    return chosen
