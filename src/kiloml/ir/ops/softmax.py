"""SOFTMAX over the last axis: int8 in, int8 out (scale 1/256, zero point -128)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import tflite

from kiloml.ir import fixedpoint as fp
from kiloml.ir.graph import Graph, Node
from kiloml.ir.ops.base import OpDef, dtype_problems, need_quant, read_table, register
from kiloml.ir.quant import quantize_multiplier, rounding_divide_by_pot, srdhm

SCALED_DIFF_INTEGER_BITS = 5
ACCUMULATION_INTEGER_BITS = 12


@dataclass(frozen=True)
class SoftmaxAttrs:
    beta: float = 1.0


@dataclass
class SoftmaxParams:
    rows: int
    depth: int
    input_multiplier: int
    input_left_shift: int
    diff_min: int


@register
class Softmax(OpDef):
    name = "SOFTMAX"
    tflite_code = tflite.BuiltinOperator.SOFTMAX
    attrs_cls = SoftmaxAttrs
    options_type = tflite.BuiltinOptions.SoftmaxOptions

    def read_options(self, op):
        o = read_table(op, tflite.SoftmaxOptions)
        return SoftmaxAttrs(1.0 if o is None else float(o.Beta()))

    def write_options(self, b, a):
        tflite.SoftmaxOptionsStart(b)
        tflite.SoftmaxOptionsAddBeta(b, a.beta)
        return tflite.SoftmaxOptionsEnd(b)

    def check(self, g: Graph, node: Node) -> list[str]:
        if len(node.inputs) != 1 or len(node.outputs) != 1:
            return ["needs one input and one output"]
        x, y = g.tensors[node.inputs[0]], g.tensors[node.outputs[0]]
        probs = dtype_problems("SOFTMAX", [x, y], ["int8", "int8"]) + need_quant([x, y])
        if probs:
            return probs
        if x.shape != y.shape or len(x.shape) < 1:
            return [f"output shape {list(y.shape)} differs from input {list(x.shape)}"]
        if abs(y.scale - 1.0 / 256) > 1e-9 or y.zero_point != -128:
            return ["int8 output must have scale 1/256 and zero point -128"]
        p = self.prepare(g, node)
        if p.input_left_shift < 0 or p.input_left_shift > 31:
            return ["beta x input scale is out of the supported range"]
        return []

    def prepare(self, g, node):
        x = g.tensors[node.inputs[0]]
        real = min(float(node.attrs.beta) * float(x.quant.scale[0])
                   * (1 << (31 - SCALED_DIFF_INTEGER_BITS)), (1 << 31) - 1.0)
        mult, shift = quantize_multiplier(real)
        max_rescaled = (1.0 * ((1 << SCALED_DIFF_INTEGER_BITS) - 1)
                        * (1 << (31 - SCALED_DIFF_INTEGER_BITS)) / (1 << shift)) if shift >= 0 else 0
        depth = x.shape[-1]
        return SoftmaxParams(x.size // depth, depth, mult, shift, -int(math.floor(max_rescaled)))

    def reference(self, g, node, p, inputs):
        x = inputs[0].reshape(p.rows, p.depth).astype(np.int64)
        diff = x - x.max(axis=1, keepdims=True)
        valid = diff >= p.diff_min
        rescaled = srdhm(np.where(valid, diff, 0) << p.input_left_shift, p.input_multiplier)
        e = fp.exp_on_negative_values(rescaled, SCALED_DIFF_INTEGER_BITS)
        contrib = fp.rescale(e, 0, ACCUMULATION_INTEGER_BITS)
        total = np.where(valid, contrib, 0).sum(axis=1, keepdims=True)
        scale, bits = fp.get_reciprocal(total, ACCUMULATION_INTEGER_BITS)
        unsat = rounding_divide_by_pot(srdhm(scale, e), bits + 31 - 8)
        out = np.clip(unsat - 128, -128, 127)
        out = np.where(valid, out, -128)
        return [out.astype(np.int8).reshape(inputs[0].shape)]

    def comment(self, g, node, p):
        return [f"beta {node.attrs.beta:g}, input multiplier {p.input_multiplier} "
                f"<< {p.input_left_shift}, diff_min {p.diff_min}"]

    def emit(self, g, node, p, ctx):
        ctx.use_kernel("softmax")
        params = ctx.struct("kml_softmax_params", "p", {
            "rows": p.rows, "depth": p.depth, "input_multiplier": p.input_multiplier,
            "input_left_shift": p.input_left_shift, "diff_min": p.diff_min})
        return [ctx.call("kml_softmax_s8", f"&{params}", ctx.ptr(node.inputs[0]),
                         ctx.ptr(node.outputs[0]))]

    def inplace_delta(self, g, node):
        return {0: 0}
