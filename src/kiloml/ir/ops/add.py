"""ADD of two int8 tensors with numpy-style broadcasting (up to 4-D), TFLite's integer scheme."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tflite

from kiloml.ir.graph import Graph, Node
from kiloml.ir.ops.base import (ACTIVATION_CODES, OpDef, activation_name, check_activation,
                                dtype_problems, need_quant, read_table, register)
from kiloml.ir.quant import activation_range, multiply_by_quantized_multiplier, quantize_multiplier

LEFT_SHIFT = 20


@dataclass(frozen=True)
class AddAttrs:
    activation: str = "NONE"


@dataclass
class AddParams:
    in1_offset: int
    in2_offset: int
    out_offset: int
    left_shift: int
    in1_mult: int
    in1_shift: int
    in2_mult: int
    in2_shift: int
    out_mult: int
    out_shift: int
    act_min: int
    act_max: int


def broadcast_strides(shape: tuple[int, ...], out_shape: tuple[int, ...]) -> list[int]:
    """Element strides of ``shape`` broadcast to 4-D ``out_shape`` (0 on broadcast axes)."""
    full = (1,) * (4 - len(shape)) + tuple(shape)
    strides, acc = [0] * 4, 1
    for i in range(3, -1, -1):
        strides[i] = 0 if full[i] == 1 and out_shape[i] != 1 else acc
        acc *= full[i]
    return strides


def check_broadcast(g: Graph, node: Node) -> list[str]:
    a, b = g.tensors[node.inputs[0]], g.tensors[node.inputs[1]]
    y = g.tensors[node.outputs[0]]
    try:
        shape = np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        return [f"shapes {list(a.shape)} and {list(b.shape)} do not broadcast"]
    if tuple(shape) != tuple(y.shape):
        return [f"output shape {list(y.shape)} is not the broadcast shape {list(shape)}"]
    if len(y.shape) > 4:
        return ["more than 4 dimensions are not supported"]
    return []


def elementwise_emit_shapes(g: Graph, node: Node) -> dict[str, int]:
    """The 4-D output shape and both inputs' broadcast strides, as C struct fields."""
    y = g.tensors[node.outputs[0]]
    out4 = (1,) * (4 - len(y.shape)) + tuple(y.shape)
    fields = {f"d{i}": int(out4[i]) for i in range(4)}
    for k, t in (("a", node.inputs[0]), ("b", node.inputs[1])):
        for i, s in enumerate(broadcast_strides(g.tensors[t].shape, out4)):
            fields[f"{k}_s{i}"] = s
    return fields


def elementwise_inplace(g: Graph, node: Node) -> dict[int, int]:
    """Output may overwrite an input of the same shape exactly (read before write)."""
    y = g.tensors[node.outputs[0]]
    return {i: 0 for i, t in enumerate(node.inputs[:2]) if tuple(g.tensors[t].shape) == tuple(y.shape)}


@register
class Add(OpDef):
    name = "ADD"
    tflite_code = tflite.BuiltinOperator.ADD
    attrs_cls = AddAttrs
    options_type = tflite.BuiltinOptions.AddOptions

    def read_options(self, op):
        o = read_table(op, tflite.AddOptions)
        return AddAttrs(activation_name(o.FusedActivationFunction()) if o is not None else "NONE")

    def write_options(self, b, a):
        tflite.AddOptionsStart(b)
        tflite.AddOptionsAddFusedActivationFunction(b, ACTIVATION_CODES[a.activation])
        return tflite.AddOptionsEnd(b)

    def check(self, g: Graph, node: Node) -> list[str]:
        if len(node.inputs) != 2 or len(node.outputs) != 1 or min(node.inputs) < 0:
            return ["needs two inputs and one output"]
        ts = g.input_tensors(node) + g.output_tensors(node)
        probs = dtype_problems("ADD", ts, ["int8"] * 3) + need_quant(ts)
        probs += check_activation(node.attrs.activation)
        if not probs:
            probs += check_broadcast(g, node)
        if not probs:
            p = self.prepare(g, node)
            if max(p.in1_shift, p.in2_shift, p.out_shift) > 0:
                probs.append("input/output scale ratio is out of the supported range")
        return probs

    def prepare(self, g, node):
        a, b = g.tensors[node.inputs[0]], g.tensors[node.inputs[1]]
        y = g.tensors[node.outputs[0]]
        twice_max = 2.0 * float(max(np.float32(a.scale), np.float32(b.scale)))
        m1, s1 = quantize_multiplier(a.scale / twice_max)
        m2, s2 = quantize_multiplier(b.scale / twice_max)
        mo, so = quantize_multiplier(twice_max / ((1 << LEFT_SHIFT) * y.scale))
        lo, hi = activation_range(node.attrs.activation, y.scale, y.zero_point)
        return AddParams(-a.zero_point, -b.zero_point, y.zero_point, LEFT_SHIFT, m1, s1, m2, s2,
                         mo, so, lo, hi)

    def reference(self, g, node, p, inputs):
        a = (inputs[0].astype(np.int64) + p.in1_offset) << p.left_shift
        b = (inputs[1].astype(np.int64) + p.in2_offset) << p.left_shift
        sa = multiply_by_quantized_multiplier(a, p.in1_mult, p.in1_shift)
        sb = multiply_by_quantized_multiplier(b, p.in2_mult, p.in2_shift)
        out = multiply_by_quantized_multiplier(sa + sb, p.out_mult, p.out_shift) + p.out_offset
        return [np.clip(out, p.act_min, p.act_max).astype(np.int8)]

    def macs(self, g, node):
        return g.tensors[node.outputs[0]].size

    def comment(self, g, node, p):
        return [f"in1 x{p.in1_mult}>>{-p.in1_shift}, in2 x{p.in2_mult}>>{-p.in2_shift}, "
                f"out x{p.out_mult}>>{-p.out_shift}, clamp [{p.act_min}, {p.act_max}]"]

    def emit(self, g, node, p, ctx):
        ctx.use_kernel("elementwise")
        fields = elementwise_emit_shapes(g, node)
        fields.update({k: int(getattr(p, k)) for k in AddParams.__dataclass_fields__})
        params = ctx.struct("kml_add_params", "p", fields)
        return [ctx.call("kml_add_s8", f"&{params}", ctx.ptr(node.inputs[0]),
                         ctx.ptr(node.inputs[1]), ctx.ptr(node.outputs[0]))]

    def inplace_delta(self, g, node):
        return elementwise_inplace(g, node)
