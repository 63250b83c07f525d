"""The armv6m kernel backend (Cortex-M0+: no DSP extension, single-cycle 32-bit multiply).

CONV_2D (any geometry) and CONV_2D_ADD, FULLY_CONNECTED (as a 1x1 convolution over a 1 x rows image, the same
memory layout) and DEPTHWISE_CONV_2D (depth multiplier 1, channels a multiple of four) call
the kernels of ``codegen/runtime/armv6m/kml_conv_m0.c`` with a packed stream this module
builds (layout in kml_conv_m0.h); every other node, and depthwise layers those kernels do not
take, run the portable kernels (``PortableBackend``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from kiloml.codegen.portable import PortableBackend
from kiloml.ir.graph import Graph, Node
from kiloml.ir.ops.conv2d_add import epilogue_fields
from kiloml.ir.ops.conv_common import conv_struct_fields

if TYPE_CHECKING:  # pragma: no cover
    from kiloml.codegen.c import EmitContext

CONV = "kml_conv2d_m0_s8"
CONV_ADD = "kml_conv2d_add_m0_s8"
DEPTHWISE = "kml_depthwise_conv2d_m0_s8"


def _words(b: np.ndarray) -> np.ndarray:
    """(n, 4) bytes -> n little-endian int32 words."""
    return np.ascontiguousarray(b.astype(np.uint8)).view("<u4").reshape(-1).view("<i4").astype(np.int64)


def _per_channel(v, n: int) -> np.ndarray:
    v = np.asarray(v, np.int64).reshape(-1)
    return np.repeat(v, n) if v.size == 1 else v


def records(mult: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Per channel the kernels' requantization record [mult, s, rnd], flattened: where the
    one-shift form applies to every channel of the layer (multiplier >= 0, shift -31..0)
    s = -shift and rnd = 2^s / 2 rounded down, else s = shift and rnd = -1 (kml_mbqm's
    general form); the kernels look at one channel per group."""
    mult, shift = np.asarray(mult, np.int64), np.asarray(shift, np.int64)
    fast = np.full(mult.shape, bool(np.all((mult >= 0) & (shift <= 0) & (shift >= -31))))
    s = np.where(fast, -shift, shift)
    rnd = np.where(fast, (np.int64(1) << np.clip(-shift, 0, 31)) >> 1, -1)
    return np.stack([mult, s, rnd], axis=1).reshape(-1)


def conv_stream(rows: np.ndarray, bias, mult, shift) -> np.ndarray:
    """kml_conv2d_m0_s8's stream for int8 weights ``rows`` [out_c, K] (window order): groups
    of eight output channels while more than four remain, then one of four."""
    co, k = rows.shape
    widths = []
    while sum(widths) < co:
        widths.append(8 if co - sum(widths) > 4 else 4)
    total, k4 = sum(widths), (k + 3) // 4 * 4          # the window padded to 4: weights 0
    w = np.zeros((total, k4), np.int64)
    w[:co, :k] = rows.astype(np.int64)
    bias = np.zeros(co, np.int64) if bias is None else np.asarray(bias, np.int64)
    mult, shift = _per_channel(mult, co), _per_channel(shift, co)
    out, at = [], 0
    for g in widths:
        sl = slice(at, at + g)
        pad = lambda v: np.concatenate([v[sl], np.zeros(g - v[sl].size, np.int64)])  # noqa: E731
        out += [pad(bias), records(pad(mult), pad(shift)), _words((w[sl] + 128).T)]
        at += g
    return np.concatenate(out)


def depthwise_stream(filt: np.ndarray, bias, mult, shift, in_offset: int) -> np.ndarray:
    """kml_depthwise_conv2d_m0_s8's stream for a [1, k_h, k_w, C] filter (C % 4 == 0)."""
    c = filt.shape[3]
    taps = filt.reshape(-1, c).astype(np.int64)           # [k_h * k_w, C]
    bias = np.zeros(c, np.int64) if bias is None else np.asarray(bias, np.int64)
    folded = bias + int(in_offset) * taps.sum(axis=0)
    mult, shift = _per_channel(mult, c), _per_channel(shift, c)
    out = []
    for gi in range(c // 4):
        sl = slice(4 * gi, 4 * gi + 4)
        out += [folded[sl], records(mult[sl], shift[sl]), taps[:, sl].reshape(-1)]
    return np.concatenate(out)


def depthwise_m0(g: Graph, node: Node, p) -> bool:
    """The layer kml_depthwise_conv2d_m0_s8 takes: depth multiplier 1, channels % 4 == 0."""
    return p.out_c == p.in_c and p.in_c % 4 == 0


def _bias(g: Graph, node: Node):
    return g.tensors[node.inputs[2]].data if len(node.inputs) > 2 and node.inputs[2] >= 0 else None


class Armv6mBackend(PortableBackend):
    name = "armv6m"
    directory = "armv6m"

    def scratch_bytes(self, g: Graph, node: Node) -> int:
        if node.op in ("CONV_2D", "CONV_2D_ADD"):    # the window, padded to a multiple of 4
            w = g.tensors[node.inputs[1]]
            window = 4 * ((int(np.prod(w.shape[1:])) + 3) // 4 * 4)
            # CONV_2D_ADD: two 256-entry tables (the rescaled conv output and residual)
            return window + (2 * 256 * 4 if node.op == "CONV_2D_ADD" else 0)
        if node.op == "FULLY_CONNECTED":
            return 4 * ((int(g.tensors[node.inputs[1]].shape[1]) + 3) // 4 * 4)
        if node.op == "DEPTHWISE_CONV_2D":   # a border pixel's zero-point padded window
            _, kh, kw, co = g.tensors[node.inputs[1]].shape
            if co == g.tensors[node.inputs[0]].shape[-1] and co % 4 == 0:
                return (int(kh * kw * co) + 3) // 4 * 4
        return 0

    def emit(self, g: Graph, node: Node, params: Any, ctx: "EmitContext") -> list[str]:
        if node.op == "CONV_2D_ADD":
            cp, ap = params
            x, w, _, res = node.inputs
            wd = g.tensors[w].data
            ctx.use_kernel("conv_m0")
            st = ctx.struct("kml_conv_params", "p", conv_struct_fields(cp))
            ep = ctx.struct("kml_add_epilogue", "add", epilogue_fields(node, ap))
            packed = ctx.array("packed", "int32_t", conv_stream(
                wd.reshape(wd.shape[0], -1), _bias(g, node), cp.mult, cp.shift))
            return [ctx.call(CONV_ADD, f"&{st}", ctx.ptr(x), "0", "0", "0", "0", f"&{ep}",
                             ctx.ptr(res), ctx.ptr(node.outputs[0]), packed,
                             ctx.scratch("int32_t"))]
        if node.op == "CONV_2D":
            w = g.tensors[node.inputs[1]].data
            stream = conv_stream(w.reshape(w.shape[0], -1), _bias(g, node), params.mult,
                                 params.shift)
            fields = conv_struct_fields(params)
        elif node.op == "FULLY_CONNECTED":
            p = params
            stream = conv_stream(g.tensors[node.inputs[1]].data, _bias(g, node), p.mult, p.shift)
            fields = {"batches": 1, "in_h": 1, "in_w": p.batches, "in_c": p.depth, "out_h": 1,
                      "out_w": p.batches, "out_c": p.units, "k_h": 1, "k_w": 1, "stride_h": 1,
                      "stride_w": 1, "dil_h": 1, "dil_w": 1, "pad_top": 0, "pad_left": 0,
                      "in_offset": p.in_offset, "out_offset": p.out_offset,
                      "act_min": p.act_min, "act_max": p.act_max}
        elif node.op == "DEPTHWISE_CONV_2D" and depthwise_m0(g, node, params):
            stream = depthwise_stream(g.tensors[node.inputs[1]].data, _bias(g, node),
                                      params.mult, params.shift, params.in_offset)
            fields = conv_struct_fields(params)
        else:
            return super().emit(g, node, params, ctx)
        fn = DEPTHWISE if node.op == "DEPTHWISE_CONV_2D" else CONV
        ctx.use_kernel("conv_m0")
        st = ctx.struct("kml_conv_params", "p", fields)
        packed = ctx.array("packed", "int32_t", stream)
        return [ctx.call(fn, f"&{st}", ctx.ptr(node.inputs[0]), "0", "0", "0", "0",
                         ctx.ptr(node.outputs[0]), packed, ctx.scratch("int32_t"))]
