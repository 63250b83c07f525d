"""The armv7em kernel backend (Cortex-M4/M7/M33 with the DSP extension).

For CONV_2D, CONV_2D_ADD, DEPTHWISE_CONV_2D and FULLY_CONNECTED it picks the entry point of
``codegen/runtime/armv7em`` a layer can take, emits its packed stream (armv7em.py,
armv7em_dw.py) in place of the weight, bias, multiplier and shift arrays, and reserves the
scratch the kernel works in; every other node, and layers no optimized entry point takes, run
the portable kernel (``PortableBackend``). The armv7em runtime splits ``kml_conv.c`` by entry
point family, so a model is given only the files of the entry points it calls
(``CONV_SOURCES``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kiloml.codegen.armv7em import (_bias, add_table, column_bytes, conv_kernel, conv_rows,
                                    fc_scratch_bytes, fc_stream, matrix_args, pad_image_bytes,
                                    windows_inside)
from kiloml.codegen.armv7em_choice import choose, depthwise_kernel
from kiloml.codegen.armv7em_dw import (depthwise_eligible, depthwise_scratch, depthwise_stream,
                                       depthwise_stream_g6)
from kiloml.codegen.portable import PortableBackend
from kiloml.ir.graph import Graph, Node
from kiloml.ir.ops import REGISTRY
from kiloml.ir.ops.conv2d_add import epilogue_fields
from kiloml.ir.ops.conv_common import conv_struct_fields
from kiloml.ir.ops.fully_connected import fc_struct_fields

if TYPE_CHECKING:  # pragma: no cover
    from kiloml.codegen.c import EmitContext

CONV_1X1 = "kml_conv2d_1x1_s8"
CONV_1X1X = "kml_conv2d_1x1x_s8"  # int16 weights
CONV_RGB = "kml_conv2d_rgb_s8"
DEPTHWISE_3X3 = tuple(f"kml_depthwise_conv2d_3x3{v}_s8"
                      for v in ("", "_w5", "_w5r", "_h", "_s2", "_g6", "_g6r", "_g6s2", "_g6s2r"))

# runtime module "conv" (kml_conv.h): kernel function -> the armv7em files that define it and
# what it calls (kml_conv_rgb.c uses the column geometry of kml_conv.c)
CONV_SOURCES: dict[str, tuple[str, ...]] = {
    "kml_conv2d_s8": ("kml_conv.c",),
    "kml_conv2d_pairs_s8": ("kml_conv.c",),
    "kml_conv2d_pairs_inside_s8": ("kml_conv.c",),
    "kml_conv2d_add_s8": ("kml_conv.c",),
    CONV_1X1: ("kml_conv_1x1.c",),
    CONV_1X1X: ("kml_conv_1x1.c",),
    CONV_RGB: ("kml_conv_rgb.c", "kml_conv.c"),
    "kml_depthwise_conv2d_s8": ("kml_conv_dw.c",),
    **{fn: ("kml_conv_dw.c",) for fn in DEPTHWISE_3X3},
}


def _has_conv(g: Graph) -> bool:
    """The graph runs CONV_2D kernels (so FULLY_CONNECTED can reuse them)."""
    return any(n.op in ("CONV_2D", "CONV_2D_ADD") for n in g.nodes)


class Armv7emBackend(PortableBackend):
    name = "armv7em"
    directory = "armv7em"

    def __init__(self, prefer: str = "balanced", options: dict[int, str] | None = None) -> None:
        self.prefer = prefer  # armv7em_choice.PREFERENCES: how to trade flash for speed
        self.options = options  # node index -> option name, overriding the preference
        self.chosen: dict = {}  # node index -> armv7em_choice.Option (plan)

    def plan(self, g: Graph) -> list[dict]:
        """Choose the option of every node that has one (armv7em_choice.choose) for the
        nodes ``emit`` is then asked for; returns the report ``CompileResult.choices``
        holds: per such node its chosen option and the alternatives, with data bytes and
        estimated cycles."""
        picks = choose(g, self.prefer, self.options)
        self.chosen = {n: o for n, (o, _) in picks.items()}
        return [{"node": n, "op": g.nodes[n].op, "name": g.nodes[n].name, **o.as_dict(),
                 "alternatives": [a.as_dict() for a in alts if a is not o]}
                for n, (o, alts) in picks.items()]

    def scratch_bytes(self, g: Graph, node: Node) -> int:
        if node.op == "CONV_2D":
            w = g.tensors[node.inputs[1]]
            return (column_bytes(w.shape[1] * w.shape[2] * w.shape[3])
                    + pad_image_bytes(REGISTRY["CONV_2D"].prepare(g, node)))
        if node.op == "CONV_2D_ADD":
            w = g.tensors[node.inputs[1]]
            # columns, windows, two pixels of convolution results (the ADD operand table is a
            # constant in flash: armv7em.py add_table)
            return (column_bytes(w.shape[1] * w.shape[2] * w.shape[3])
                    + (2 * w.shape[0] + 3) // 4 * 4)
        if node.op == "DEPTHWISE_CONV_2D":
            p = REGISTRY["DEPTHWISE_CONV_2D"].prepare(g, node)
            return depthwise_scratch(p) if depthwise_eligible(p) else 0
        if node.op == "FULLY_CONNECTED":
            depth = g.tensors[node.inputs[1]].shape[1]
            return column_bytes(depth) if _has_conv(g) else fc_scratch_bytes(depth)
        return 0

    def emit(self, g: Graph, node: Node, params: Any, ctx: "EmitContext") -> list[str]:
        handler = {"CONV_2D": self._conv2d, "CONV_2D_ADD": self._conv2d_add,
                   "DEPTHWISE_CONV_2D": self._depthwise,
                   "FULLY_CONNECTED": self._fully_connected}.get(node.op)
        if handler is None:
            return super().emit(g, node, params, ctx)
        return handler(g, node, params, ctx)

    def sources(self, module: str, functions: set[str]) -> list[str]:
        if module != "conv":
            return super().sources(module, functions)
        return sorted({f for fn in functions if fn in CONV_SOURCES for f in CONV_SOURCES[fn]})

    # -- the ops with optimized kernels ------------------------------------------------------

    def _conv2d(self, g, node, p, ctx) -> list[str]:
        """The option ``plan`` chose (kml_conv2d_1x1_s8, kml_conv2d_1x1x_s8 for int16 weights,
        kml_conv2d_rgb_s8 with int8 or int16 weights: the lean stream), else the
        column-builder kernel conv_kernel picks."""
        ctx.use_kernel("conv")
        params = ctx.struct("kml_conv_params", "p", conv_struct_fields(p))
        w = g.tensors[node.inputs[1]].data
        opt = self.chosen.get(ctx.node_index)
        if opt is not None and opt.kernel in (CONV_1X1, CONV_1X1X, CONV_RGB):
            fn = opt.kernel
        else:
            fn = conv_kernel(g, node, p, conv_rows(w), w.shape[2] * w.shape[3],
                             windows_inside(p))
        rgb, one = fn == CONV_RGB, fn in (CONV_1X1, CONV_1X1X)
        packed = matrix_args(ctx, g, node, p, conv_rows(w), lean=rgb or one,
                             multiple=4 if rgb else 8, doubled=not rgb,
                             extended=(rgb or one) and opt.layout == "int16 weights")
        return [ctx.call(fn, f"&{params}", ctx.ptr(node.inputs[0]), "0", "0", "0", "0",
                         ctx.ptr(node.outputs[0]), packed, ctx.scratch("int32_t"))]

    def _conv2d_add(self, g, node, p, ctx) -> list[str]:
        """kml_conv2d_add_s8 with the ADD table (add_table) in front of the stream."""
        cp, ap = p
        ctx.use_kernel("conv")
        params = ctx.struct("kml_conv_params", "p", conv_struct_fields(cp))
        fields = epilogue_fields(node, ap)
        ep = ctx.struct("kml_add_epilogue", "add", fields)
        x, w, b, res = node.inputs
        prefix = add_table(*(int(fields[k]) for k in (
            "conv_offset", "res_offset", "left_shift", "conv_mult", "conv_shift", "res_mult",
            "res_shift", "out_mult", "out_shift", "act_min", "act_max")))
        packed = matrix_args(ctx, g, node, cp, conv_rows(g.tensors[w].data), prefix=prefix)
        return [ctx.call("kml_conv2d_add_s8", f"&{params}", ctx.ptr(x), "0", "0", "0", "0",
                         f"&{ep}", ctx.ptr(res), ctx.ptr(node.outputs[0]), packed,
                         ctx.scratch("int32_t"))]

    def _depthwise(self, g, node, p, ctx) -> list[str]:
        """The 3x3 entry point the layer's geometry allows (depthwise_eligible: _g6 where
        ``plan`` chose its 40-byte records, _w5, _h, _s2; the r variants for ReLU layers); the
        portable kernel when none does or a channel needs TFLite's general requantization."""
        has_bias = len(node.inputs) > 2 and node.inputs[2] >= 0
        stream = None
        opt = self.chosen.get(ctx.node_index)
        g6 = opt is not None and opt.name == "dw40"
        if depthwise_eligible(p):
            make = depthwise_stream_g6 if g6 else depthwise_stream
            stream = make(g.tensors[node.inputs[1]].data,
                          g.tensors[node.inputs[2]].data if has_bias else None,
                          p.mult, p.shift, p.in_offset, p.out_offset, p.act_min, p.act_max)
        if stream is None:
            return super().emit(g, node, p, ctx)
        ctx.use_kernel("conv")
        params = ctx.struct("kml_conv_params", "p", conv_struct_fields(p))
        packed = ctx.array("packed", "int32_t", stream)
        # entry points that link only the row routines the layer needs
        # _g6r, _w5r: no correction for negative accumulators (they clamp to act_min)
        fn = depthwise_kernel(p, g6)
        return [ctx.call(fn, f"&{params}", ctx.ptr(node.inputs[0]), "0", "0", "0", "0",
                         ctx.ptr(node.outputs[0]), packed, ctx.scratch("int32_t"))]

    def _fully_connected(self, g, node, p, ctx) -> list[str]:
        """In a model that links the convolution kernels anyway: a 1x1 convolution over a
        1 x batches image (same memory layout), no FULLY_CONNECTED code; else
        kml_fully_connected_s8 (four units per pass over the input, widened once to int16 in
        the scratch) with fc_stream's packed weights."""
        x, y = ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0])
        w = g.tensors[node.inputs[1]].data
        if _has_conv(g):
            ctx.use_kernel("conv")
            conv = ctx.struct("kml_conv_params", "conv", {
                "batches": 1, "in_h": 1, "in_w": p.batches, "in_c": p.depth, "out_h": 1,
                "out_w": p.batches, "out_c": p.units, "k_h": 1, "k_w": 1, "stride_h": 1,
                "stride_w": 1, "dil_h": 1, "dil_w": 1, "pad_top": 0, "pad_left": 0,
                "in_offset": p.in_offset, "out_offset": p.out_offset,
                "act_min": p.act_min, "act_max": p.act_max})
            packed = matrix_args(ctx, g, node, p, w)
            fn = conv_kernel(g, node, p, w, p.depth, inside=True)
            return [ctx.call(fn, f"&{conv}", x, "0", "0", "0", "0", y, packed,
                             ctx.scratch("int32_t"))]
        ctx.use_kernel("fully_connected")
        params = ctx.struct("kml_fc_params", "p", fc_struct_fields(p))
        opt = self.chosen.get(ctx.node_index)  # armv7em_choice: int8 or int16 weights
        wide = opt is not None and opt.layout == "int16 weights"
        stream = fc_stream(w, _bias(g, node), p.mult, p.shift, p.in_offset, p.out_offset,
                           p.act_min, p.act_max, extended=wide)
        packed = ctx.array("packed", "int32_t", stream)
        fn = "kml_fully_connected_x_s8" if wide else (
            "kml_fully_connected_u_s8" if int(stream[0]) & 4 else "kml_fully_connected_s8")
        return [ctx.call(fn, f"&{params}", x, "0", "0", "0", "0", y, packed,
                         ctx.scratch("int32_t"))]
