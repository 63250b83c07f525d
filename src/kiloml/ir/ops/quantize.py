"""QUANTIZE (float32 -> int8 at a model input, or int8 -> int8 requantization) and DEQUANTIZE
(int8 -> float32 at a model output), as TFLite Micro computes them.

* float32 -> int8 (``AffineQuantize``): ``q = x / scale`` divided in float32, rounded with
  ``std::round`` (halves away from zero, not to even), plus the zero point, clamped to int8.
  TFLM converts the rounded float to int32 without a range check (undefined behaviour for
  NaN or ``|x / scale| >= 2^31``); kiloml saturates huge values and maps NaN to the zero point.
* int8 -> int8 (``Requantize``): multiplier from ``in_scale / out_scale`` (double);
  ``clamp(out_zp + MBQM(x - in_zp))``.
* int8 -> float32 (``Dequantize``): ``(float)(scale * (x - zp))`` with ``scale`` widened to
  double; the product is exact in double, so a float32 multiply gives the same bits.

With a float32 input or output the generated ``<prefix>_invoke`` takes ``const float *`` /
``float *``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tflite

from kiloml.ir.graph import Graph, Node
from kiloml.ir.ops.base import NoAttrs, OpDef, register
from kiloml.ir.ops.movement import map_inplace_delta, round_half_away_f32, unary_problems
from kiloml.ir.quant import multiply_by_quantized_multiplier, quantize_multiplier

# |x - in_zp| <= 255 < 2^8: a left shift up to 23 stays inside int32
MAX_LEFT_SHIFT = 23
# |x / scale| beyond this saturates int8 whatever the zero point; clamping first keeps the
# float -> int conversion defined
QUOTIENT_LIMIT = np.float32(1024.0)


@dataclass
class AffineParams:
    count: int
    zero_point: int
    scale: np.float32


@dataclass
class RequantizeParams:
    count: int
    in_zp: int
    out_zp: int
    mult: int
    shift: int


def quantize_f32(x: np.ndarray, scale: np.float32, zero_point: int) -> np.ndarray:
    """TFLM's float32 -> int8 ``AffineQuantize`` (see the module docstring)."""
    q = np.asarray(x, np.float32) / np.float32(scale)
    q = np.where(np.isnan(q), np.float32(0), np.clip(q, -QUOTIENT_LIMIT, QUOTIENT_LIMIT))
    return np.clip(round_half_away_f32(q) + zero_point, -128, 127).astype(np.int8)


def dequantize_s8(x: np.ndarray, scale: np.float32, zero_point: int) -> np.ndarray:
    """TFLM's int8 -> float32 ``Dequantize``."""
    v = np.asarray(x, np.int64) - zero_point
    return (np.float64(np.float32(scale)) * v).astype(np.float32)


@register
class Quantize(OpDef):
    name = "QUANTIZE"
    tflite_code = tflite.BuiltinOperator.QUANTIZE
    attrs_cls = NoAttrs

    def check(self, g: Graph, node: Node) -> list[str]:
        if len(node.inputs) != 1 or len(node.outputs) != 1 or node.inputs[0] < 0:
            return ["needs one input and one output"]
        x = g.tensors[node.inputs[0]]
        if x.dtype not in ("float32", "int8"):
            return [f"input {x.name!r} is {x.dtype}; float32 or int8 expected"]
        probs = unary_problems("QUANTIZE", g, node, x.dtype, "int8")
        if probs:
            return probs
        if x.dtype == "int8" and self.prepare(g, node).shift > MAX_LEFT_SHIFT:
            return ["input scale / output scale is above 2^23: out of the supported range"]
        return []

    def prepare(self, g, node):
        x, y = g.tensors[node.inputs[0]], g.tensors[node.outputs[0]]
        if x.dtype == "float32":
            return AffineParams(y.size, y.zero_point, np.float32(y.scale))
        mult, shift = quantize_multiplier(float(np.float32(x.scale)) / float(np.float32(y.scale)))
        return RequantizeParams(y.size, x.zero_point, y.zero_point, mult, shift)

    def reference(self, g, node, p, inputs):
        if isinstance(p, AffineParams):
            return [quantize_f32(inputs[0], p.scale, p.zero_point)]
        v = inputs[0].astype(np.int64) - p.in_zp
        out = p.out_zp + multiply_by_quantized_multiplier(v, p.mult, p.shift)
        return [np.clip(out, -128, 127).astype(np.int8)]

    def comment(self, g, node, p):
        if isinstance(p, AffineParams):
            return [f"float32 -> int8: round(x / {float(p.scale):.9g}) + zp {p.zero_point}, "
                    "halves away from zero"]
        return [f"int8 -> int8: (x - in_zp {p.in_zp}) x{p.mult} shift {p.shift}, + out_zp "
                f"{p.out_zp}"]

    def emit(self, g, node, p, ctx):
        ctx.use_kernel("quantize")
        src, dst = ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0])
        if isinstance(p, AffineParams):
            params = ctx.struct("kml_affine_params", "p", vars(p))
            return [ctx.call("kml_quantize_f32_s8", f"&{params}", src, dst)]
        params = ctx.struct("kml_requantize_params", "p", vars(p))
        return [ctx.call("kml_requantize_s8", f"&{params}", src, dst)]

    def inplace_delta(self, g, node):
        x = g.tensors[node.inputs[0]]
        if x.dtype == "int8":
            return {0: 0}
        d = map_inplace_delta(np.arange(x.size), 4, 1)
        return {} if d is None else {0: d}


@register
class Dequantize(OpDef):
    name = "DEQUANTIZE"
    tflite_code = tflite.BuiltinOperator.DEQUANTIZE
    attrs_cls = NoAttrs

    def check(self, g: Graph, node: Node) -> list[str]:
        return unary_problems("DEQUANTIZE", g, node, "int8", "float32")

    def prepare(self, g, node):
        x = g.tensors[node.inputs[0]]
        return AffineParams(x.size, x.zero_point, np.float32(x.scale))

    def reference(self, g, node, p, inputs):
        return [dequantize_s8(inputs[0], p.scale, p.zero_point)]

    def comment(self, g, node, p):
        return [f"int8 -> float32: {float(p.scale):.9g} * (x - zp), zp {p.zero_point}"]

    def emit(self, g, node, p, ctx):
        ctx.use_kernel("quantize")
        params = ctx.struct("kml_affine_params", "p", vars(p))
        return [ctx.call("kml_dequantize_s8_f32", f"&{params}", ctx.ptr(node.inputs[0]),
                         ctx.ptr(node.outputs[0]))]

    def inplace_delta(self, g, node):
        x = g.tensors[node.inputs[0]]
        d = map_inplace_delta(np.arange(x.size), 1, 4)
        return {} if d is None else {0: d}
