"""RESHAPE: a view. The planner aliases output and input; no code is generated."""

from __future__ import annotations

from dataclasses import dataclass

import tflite

from kiloml.ir.graph import Graph, Node
from kiloml.ir.ops.base import OpDef, read_table, register


@dataclass(frozen=True)
class ReshapeAttrs:
    new_shape: tuple[int, ...] = ()


@register
class Reshape(OpDef):
    name = "RESHAPE"
    tflite_code = tflite.BuiltinOperator.RESHAPE
    attrs_cls = ReshapeAttrs
    options_type = tflite.BuiltinOptions.ReshapeOptions

    def read_options(self, op):
        o = read_table(op, tflite.ReshapeOptions)
        if o is None or o.NewShapeIsNone():
            return ReshapeAttrs()
        return ReshapeAttrs(tuple(int(v) for v in o.NewShapeAsNumpy()))

    def write_options(self, b, a):
        tflite.ReshapeOptionsStartNewShapeVector(b, len(a.new_shape))
        for v in reversed(a.new_shape):
            b.PrependInt32(int(v))
        vec = b.EndVector()
        tflite.ReshapeOptionsStart(b)
        tflite.ReshapeOptionsAddNewShape(b, vec)
        return tflite.ReshapeOptionsEnd(b)

    def check(self, g: Graph, node: Node) -> list[str]:
        if len(node.inputs) < 1 or len(node.outputs) != 1 or node.inputs[0] < 0:
            return ["needs an input and one output"]
        x, y = g.tensors[node.inputs[0]], g.tensors[node.outputs[0]]
        if x.is_const:
            return ["reshaping a constant is not supported"]
        if x.dtype != y.dtype or x.size != y.size:
            return [f"output {y.dtype}{list(y.shape)} does not hold input {x.dtype}{list(x.shape)}"]
        if (x.quant is None) != (y.quant is None) or (
                x.quant is not None and (x.scale != y.scale or x.zero_point != y.zero_point)):
            return ["input and output quantization must be equal"]
        return []

    def reference(self, g, node, p, inputs):
        return [inputs[0].reshape(g.tensors[node.outputs[0]].shape)]

    def is_alias(self):
        return True

    def emit(self, g, node, p, ctx):
        return []
