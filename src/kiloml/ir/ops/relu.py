"""Standalone RELU and RELU6 on int8, as TFLite Micro computes them.

* RELU (``activations_common.cc``): the float32 ratio ``in_scale / out_scale`` becomes one
  multiplier; ``out = clamp(out_zp + MBQM(x - in_zp), out_zp, 127)`` (the lower bound is
  ``out_zp + round(0 / out_scale)``). Input and output quantization may differ.
* RELU6: TFLM clamps the raw input to ``[in_zp, in_zp + round(6 / in_scale)]`` in the
  *input's* quantization and never looks at the output's. With a different output
  quantization that is a wrong answer (LiteRT rescales), so kiloml requires the output to
  share the input's scale and zero point, as the converter always makes them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tflite

from kiloml.ir.graph import Graph, Node
from kiloml.ir.ops.base import NoAttrs, OpDef, register
from kiloml.ir.ops.movement import same_quant, unary_problems
from kiloml.ir.quant import (multiply_by_quantized_multiplier, quantize_multiplier,
                              quantize_scalar_f32)

# |x - in_zp| <= 255 < 2^8: a left shift up to 23 stays inside int32
MAX_LEFT_SHIFT = 23


@dataclass
class ReluParams:
    count: int
    in_zp: int
    out_zp: int
    mult: int
    shift: int
    act_min: int
    act_max: int


@dataclass
class Relu6Params:
    count: int
    lo: int
    hi: int


@register
class Relu(OpDef):
    name = "RELU"
    tflite_code = tflite.BuiltinOperator.RELU
    attrs_cls = NoAttrs

    def check(self, g: Graph, node: Node) -> list[str]:
        probs = unary_problems("RELU", g, node)
        if not probs and self.prepare(g, node).shift > MAX_LEFT_SHIFT:
            probs.append("input scale / output scale is above 2^23: out of the supported range")
        return probs

    def prepare(self, g, node):
        x, y = g.tensors[node.inputs[0]], g.tensors[node.outputs[0]]
        # TFLM divides the float32 scales in float32 before widening to double
        mult, shift = quantize_multiplier(float(np.float32(x.scale) / np.float32(y.scale)))
        lo = max(-128, y.zero_point)
        return ReluParams(x.size, x.zero_point, y.zero_point, mult, shift, lo, 127)

    def reference(self, g, node, p, inputs):
        v = inputs[0].astype(np.int64) - p.in_zp
        out = p.out_zp + multiply_by_quantized_multiplier(v, p.mult, p.shift)
        return [np.clip(out, p.act_min, p.act_max).astype(np.int8)]

    def comment(self, g, node, p):
        return [f"(x - in_zp {p.in_zp}) x{p.mult} shift {p.shift}, + out_zp {p.out_zp}, clamp "
                f"[{p.act_min}, {p.act_max}]"]

    def emit(self, g, node, p, ctx):
        ctx.use_kernel("activations")
        params = ctx.struct("kml_relu_params", "p", vars(p))
        return [ctx.call("kml_relu_s8", f"&{params}", ctx.ptr(node.inputs[0]),
                         ctx.ptr(node.outputs[0]))]

    def inplace_delta(self, g, node):
        return {0: 0}


@register
class Relu6(OpDef):
    name = "RELU6"
    tflite_code = tflite.BuiltinOperator.RELU6
    attrs_cls = NoAttrs

    def check(self, g: Graph, node: Node) -> list[str]:
        probs = unary_problems("RELU6", g, node)
        if probs:
            return probs
        x, y = g.tensors[node.inputs[0]], g.tensors[node.outputs[0]]
        if not same_quant(x, y):
            return ["input and output quantization differ: TFLM's RELU6 clamps in the input's "
                    "quantization and ignores the output's (LiteRT rescales), so kiloml needs "
                    "them equal"]
        return []

    def prepare(self, g, node):
        x = g.tensors[node.inputs[0]]
        six = min(127, max(-128, quantize_scalar_f32(6.0, x.scale, x.zero_point)))
        return Relu6Params(x.size, x.zero_point, six)

    def reference(self, g, node, p, inputs):
        x = inputs[0].astype(np.int64)
        # TFLM: val > six ? six : (val < zero ? zero : val)
        return [np.where(x > p.hi, p.hi, np.where(x < p.lo, p.lo, x)).astype(np.int8)]

    def comment(self, g, node, p):
        return [f"clamp [{p.lo}, {p.hi}] (0 and 6 in the input's quantization)"]

    def emit(self, g, node, p, ctx):
        ctx.use_kernel("activations")
        return [ctx.call("kml_clamp_s8", str(p.count), str(p.lo), str(p.hi),
                         ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0]))]

    def inplace_delta(self, g, node):
        return {0: 0}
