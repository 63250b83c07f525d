"""CONV_2D_ADD: kiloml-internal fusion of a CONV_2D and the ADD that consumes it.

Residual blocks end in ``add(conv(x), skip)``. Run separately, the convolution's output must
exist in full while ``skip`` is still alive; fused, each convolution result is added to the
skip value and written straight over it, so the convolution output never occupies memory.
The arithmetic is exactly CONV_2D's followed by ADD's (the int8 intermediate is rounded and
clamped as TFLite does), so results are bit-identical. Created by ``passes.fuse_conv_add``;
never read from or written to .tflite.
"""

from __future__ import annotations

from dataclasses import dataclass

from kiloml.ir.graph import Graph, Node
from kiloml.ir.ops.add import Add, AddAttrs
from kiloml.ir.ops.base import REGISTRY, OpDef, register
from kiloml.ir.ops.conv2d import Conv2D, Conv2DAttrs, conv_weight_args
from kiloml.ir.ops.conv_common import conv_struct_fields


@dataclass(frozen=True)
class Conv2DAddAttrs:
    conv: Conv2DAttrs
    add: AddAttrs
    mid: int  # tensor index of the (no longer materialized) convolution output
    conv_first: bool  # the convolution result is ADD's first operand


def split(node: Node) -> tuple[Node, Node]:
    """The original CONV_2D and ADD nodes."""
    a = node.attrs
    x, w, b, res = node.inputs
    conv = Node("CONV_2D", [x, w, b], [a.mid], a.conv, node.name)
    add_in = [a.mid, res] if a.conv_first else [res, a.mid]
    return conv, Node("ADD", add_in, list(node.outputs), a.add, node.name)


@register
class Conv2DAdd(OpDef):
    name = "CONV_2D_ADD"
    tflite_code = -1001  # internal: no .tflite builtin
    attrs_cls = Conv2DAddAttrs

    def check(self, g: Graph, node: Node) -> list[str]:
        conv, add = split(node)
        return REGISTRY["CONV_2D"].check(g, conv) + REGISTRY["ADD"].check(g, add)

    def prepare(self, g, node):
        conv, add = split(node)
        return Conv2D().prepare(g, conv), Add().prepare(g, add)

    def reference(self, g, node, p, inputs):
        conv, add = split(node)
        mid = Conv2D().reference(g, conv, p[0], inputs[:3])[0]
        pair = [mid, inputs[3]] if node.attrs.conv_first else [inputs[3], mid]
        return Add().reference(g, add, p[1], pair)

    def macs(self, g, node):
        conv, add = split(node)
        return Conv2D().macs(g, conv) + Add().macs(g, add)

    def comment(self, g, node, p):
        conv, add = split(node)
        return (Conv2D().comment(g, conv, p[0]) + ["fused ADD: " + Add().comment(g, add, p[1])[0]])

    def emit(self, g, node, p, ctx):
        cp, ap = p
        ctx.use_kernel("conv")
        params = ctx.struct("kml_conv_params", "p", conv_struct_fields(cp))
        ep = ctx.struct("kml_add_epilogue", "add", epilogue_fields(node, ap))
        x, w, b, res = node.inputs
        filt, mult, shift, bias = conv_weight_args(g, node, cp, ctx)
        return [ctx.call("kml_conv2d_add_s8", f"&{params}", ctx.ptr(x), filt, bias, mult, shift,
                         f"&{ep}", ctx.ptr(res), ctx.ptr(node.outputs[0]), "0", "0")]

    def inplace_delta(self, g, node):
        return {3: 0}  # each output element overwrites the skip element it was added to


def epilogue_fields(node: Node, ap) -> dict[str, int]:
    """The ``kml_add_epilogue`` of a CONV_2D_ADD node: ADD's parameters ``ap`` ordered as
    (convolution operand, residual operand)."""
    first = node.attrs.conv_first
    c_off, r_off = (ap.in1_offset, ap.in2_offset) if first else (ap.in2_offset, ap.in1_offset)
    c_m, c_s, r_m, r_s = ((ap.in1_mult, ap.in1_shift, ap.in2_mult, ap.in2_shift) if first
                          else (ap.in2_mult, ap.in2_shift, ap.in1_mult, ap.in1_shift))
    return {"conv_first": int(first), "conv_offset": c_off, "res_offset": r_off,
            "out_offset": ap.out_offset, "left_shift": ap.left_shift, "conv_mult": c_m,
            "conv_shift": c_s, "res_mult": r_m, "res_shift": r_s, "out_mult": ap.out_mult,
            "out_shift": ap.out_shift, "act_min": ap.act_min, "act_max": ap.act_max}
