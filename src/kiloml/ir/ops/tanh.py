"""TANH on int8: output scale 1/128, zero point 0, TFLite Micro's scheme.

The input rescale and saturation radius are LOGISTIC's (``logistic.sigmoid_params``); inside
the radius gemmlowp's fixed-point ``tanh`` with 4 integer bits is rounded to Q0.7
(``RoundingDivideByPOT(.., 24)``). TFLM checks neither the output scale nor its zero point
(the kernel assumes 1/128 and 0); kiloml requires both.
"""

from __future__ import annotations

import tflite

from kiloml.ir import fixedpoint as fp
from kiloml.ir.graph import Graph, Node
from kiloml.ir.ops.base import NoAttrs, OpDef, register
from kiloml.ir.ops.logistic import sigmoid_params, sigmoid_problems, sigmoid_reference


@register
class Tanh(OpDef):
    name = "TANH"
    tflite_code = tflite.BuiltinOperator.TANH
    attrs_cls = NoAttrs

    def check(self, g: Graph, node: Node) -> list[str]:
        return sigmoid_problems("TANH", g, node, 1.0 / 128, 0)

    def prepare(self, g, node):
        return sigmoid_params(g, node)

    def reference(self, g, node, p, inputs):
        return [sigmoid_reference(p, inputs[0], fp.tanh, 7, 0)]

    def comment(self, g, node, p):
        return [f"input x{p.mult} << {p.shift} to Q4.27, saturate at |x - {p.in_zp}| >= "
                f"{p.radius}"]

    def emit(self, g, node, p, ctx):
        ctx.use_kernel("activations")
        params = ctx.struct("kml_sigmoid_params", "p", vars(p))
        return [ctx.call("kml_tanh_s8", f"&{params}", ctx.ptr(node.inputs[0]),
                         ctx.ptr(node.outputs[0]))]

    def inplace_delta(self, g, node):
        return {0: 0}
