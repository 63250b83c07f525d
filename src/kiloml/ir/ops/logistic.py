"""LOGISTIC (sigmoid) on int8: output scale 1/256, zero point -128, TFLite Micro's scheme.

TFLM (``logistic_common.cc``) turns the input scale into a Q4.27 rescale: ``frexp(in_scale *
2^27)`` gives a mantissa ``q`` and exponent ``shift``, the multiplier is ``round(q * 2^31)``.
Inputs with ``|x - zp| >= radius``, ``radius = floor(15 * 2^27 / 2^shift)``, saturate to
-128 / 127; the others go through gemmlowp's fixed-point ``logistic`` with 4 integer bits and
are rounded to Q0.8 (``RoundingDivideByPOT(.., 23)``) minus 128. TFLM checks the output zero
point but not its scale (the kernel assumes 1/256); kiloml requires both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import tflite

from kiloml.ir import fixedpoint as fp
from kiloml.ir.graph import Graph, Node
from kiloml.ir.ops.base import NoAttrs, OpDef, register
from kiloml.ir.ops.movement import unary_problems
from kiloml.ir.quant import (multiply_by_quantized_multiplier, round_half_away,
                              rounding_divide_by_pot)

INPUT_INTEGER_BITS = 4


@dataclass
class SigmoidParams:
    count: int
    in_zp: int
    radius: int
    mult: int
    shift: int


def sigmoid_params(g: Graph, node: Node) -> SigmoidParams:
    """TFLM's input rescale for LOGISTIC and TANH (both use 4 integer bits)."""
    x = g.tensors[node.inputs[0]]
    real = float(np.float32(x.scale)) * float(1 << (31 - INPUT_INTEGER_BITS))
    q, shift = math.frexp(real)
    mult = round_half_away(q * (1 << 31))
    radius = 0
    if 0 <= shift <= 62:
        radius = int(math.floor(((1 << INPUT_INTEGER_BITS) - 1)
                                * float(1 << (31 - INPUT_INTEGER_BITS)) / float(1 << shift)))
    return SigmoidParams(x.size, x.zero_point, radius, int(mult), int(shift))


def sigmoid_problems(op: str, g: Graph, node: Node, out_scale: float, out_zp: int) -> list[str]:
    probs = unary_problems(op, g, node)
    if probs:
        return probs
    y = g.tensors[node.outputs[0]]
    if abs(y.scale - out_scale) > 1e-9 or y.zero_point != out_zp:
        return [f"int8 output must have scale 1/{round(1 / out_scale)} and zero point {out_zp} "
                f"(TFLM's kernel assumes them), got {y.scale:.9g} / {y.zero_point}"]
    p = sigmoid_params(g, node)
    if not 0 <= p.shift <= 30:
        return [f"input scale {g.tensors[node.inputs[0]].scale:.9g} is out of the supported "
                "range [2^-28, 8)"]
    return []


def sigmoid_reference(p: SigmoidParams, x: np.ndarray, fn, out_frac_bits: int,
                      out_offset: int) -> np.ndarray:
    """Saturate outside the radius; otherwise fixed-point ``fn`` rounded to ``out_frac_bits``."""
    v = x.astype(np.int64) - p.in_zp
    inside = (v > -p.radius) & (v < p.radius)
    q4 = multiply_by_quantized_multiplier(np.where(inside, v, 0), p.mult, p.shift)
    r = rounding_divide_by_pot(fn(q4, INPUT_INTEGER_BITS), 31 - out_frac_bits) + out_offset
    out = np.where(inside, np.clip(r, -128, 127), np.where(v <= -p.radius, -128, 127))
    return out.astype(np.int8)


@register
class Logistic(OpDef):
    name = "LOGISTIC"
    tflite_code = tflite.BuiltinOperator.LOGISTIC
    attrs_cls = NoAttrs

    def check(self, g: Graph, node: Node) -> list[str]:
        return sigmoid_problems("LOGISTIC", g, node, 1.0 / 256, -128)

    def prepare(self, g, node):
        return sigmoid_params(g, node)

    def reference(self, g, node, p, inputs):
        return [sigmoid_reference(p, inputs[0], fp.logistic, 8, -128)]

    def comment(self, g, node, p):
        return [f"input x{p.mult} << {p.shift} to Q4.27, saturate at |x - {p.in_zp}| >= "
                f"{p.radius}"]

    def emit(self, g, node, p, ctx):
        ctx.use_kernel("activations")
        params = ctx.struct("kml_sigmoid_params", "p", vars(p))
        return [ctx.call("kml_logistic_s8", f"&{params}", ctx.ptr(node.inputs[0]),
                         ctx.ptr(node.outputs[0]))]

    def inplace_delta(self, g, node):
        return {0: 0}
