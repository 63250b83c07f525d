"""MUL of two int8 tensors with numpy-style broadcasting (up to 4-D), TFLite's integer scheme.

TFLM: ``real = in1_scale * in2_scale / out_scale`` (in double) becomes one multiplier/shift;
each output is ``clamp(out_zp + MBQM((a - a_zp) * (b - b_zp), mult, shift))`` with the fused
activation's range as the clamp.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tflite

from kiloml.ir.graph import Graph, Node
from kiloml.ir.ops.add import check_broadcast, elementwise_emit_shapes, elementwise_inplace
from kiloml.ir.ops.base import (ACTIVATION_CODES, OpDef, activation_name, check_activation,
                                dtype_problems, need_quant, read_table, register)
from kiloml.ir.quant import activation_range, multiply_by_quantized_multiplier, quantize_multiplier

# |(a - a_zp) * (b - b_zp)| <= 255 * 255 < 2^16: a left shift up to 15 stays inside int32
MAX_LEFT_SHIFT = 15


@dataclass(frozen=True)
class MulAttrs:
    activation: str = "NONE"


@dataclass
class MulParams:
    in1_offset: int
    in2_offset: int
    out_offset: int
    out_mult: int
    out_shift: int
    act_min: int
    act_max: int


@register
class Mul(OpDef):
    name = "MUL"
    tflite_code = tflite.BuiltinOperator.MUL
    attrs_cls = MulAttrs
    options_type = tflite.BuiltinOptions.MulOptions

    def read_options(self, op):
        o = read_table(op, tflite.MulOptions)
        return MulAttrs(activation_name(o.FusedActivationFunction()) if o is not None else "NONE")

    def write_options(self, b, a):
        tflite.MulOptionsStart(b)
        tflite.MulOptionsAddFusedActivationFunction(b, ACTIVATION_CODES[a.activation])
        return tflite.MulOptionsEnd(b)

    def check(self, g: Graph, node: Node) -> list[str]:
        if len(node.inputs) != 2 or len(node.outputs) != 1 or min(node.inputs) < 0:
            return ["needs two inputs and one output"]
        ts = g.input_tensors(node) + g.output_tensors(node)
        probs = dtype_problems("MUL", ts, ["int8"] * 3) + need_quant(ts)
        probs += [f"tensor {t.name!r} is quantized per channel; per-tensor expected"
                  for t in ts if t.quant is not None and t.quant.per_channel]
        probs += check_activation(node.attrs.activation)
        if not probs:
            probs += check_broadcast(g, node)
        if not probs and self.prepare(g, node).out_shift > MAX_LEFT_SHIFT:
            probs.append("input scale x input scale / output scale is above 2^15: out of the "
                         "supported range")
        return probs

    def prepare(self, g, node):
        a, b = g.tensors[node.inputs[0]], g.tensors[node.inputs[1]]
        y = g.tensors[node.outputs[0]]
        real = float(np.float32(a.scale)) * float(np.float32(b.scale)) / float(np.float32(y.scale))
        mult, shift = quantize_multiplier(real)
        lo, hi = activation_range(node.attrs.activation, y.scale, y.zero_point)
        return MulParams(-a.zero_point, -b.zero_point, y.zero_point, mult, shift, lo, hi)

    def reference(self, g, node, p, inputs):
        a = inputs[0].astype(np.int64) + p.in1_offset
        b = inputs[1].astype(np.int64) + p.in2_offset
        out = multiply_by_quantized_multiplier(a * b, p.out_mult, p.out_shift) + p.out_offset
        out = np.clip(out, p.act_min, p.act_max).astype(np.int8)
        return [np.broadcast_to(out, g.tensors[node.outputs[0]].shape).copy()]

    def macs(self, g, node):
        return g.tensors[node.outputs[0]].size

    def comment(self, g, node, p):
        return [f"out x{p.out_mult} shift {p.out_shift}, activation {node.attrs.activation} "
                f"-> clamp [{p.act_min}, {p.act_max}]"]

    def emit(self, g, node, p, ctx):
        ctx.use_kernel("elementwise")
        fields = elementwise_emit_shapes(g, node)
        fields.update({k: int(getattr(p, k)) for k in MulParams.__dataclass_fields__})
        params = ctx.struct("kml_mul_params", "p", fields)
        return [ctx.call("kml_mul_s8", f"&{params}", ctx.ptr(node.inputs[0]),
                         ctx.ptr(node.inputs[1]), ctx.ptr(node.outputs[0]))]

    def inplace_delta(self, g, node):
        return elementwise_inplace(g, node)
