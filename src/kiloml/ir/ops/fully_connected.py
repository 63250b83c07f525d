"""FULLY_CONNECTED: int8 input/output, int8 weights [units, depth], optional int32 bias."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tflite

from kiloml.ir.graph import Graph, Node
from kiloml.ir.ops.base import (ACTIVATION_CODES, OpDef, activation_name, check_activation,
                                dtype_problems, need_quant, read_table, register)
from kiloml.ir.quant import activation_range, quantize_multipliers


@dataclass(frozen=True)
class FullyConnectedAttrs:
    activation: str = "NONE"
    keep_num_dims: bool = False
    # compile-time only (never in a .tflite): the multiplier of a one-pixel CONV_2D that
    # passes.pixel_conv_as_fully_connected turned into this node, i.e. the scales multiplied
    # in double as CONV_2D does, not in float32 as TFLite's per-tensor FULLY_CONNECTED does
    conv_multiplier: bool = False


@dataclass
class FCParams:
    batches: int
    depth: int
    units: int
    in_offset: int
    out_offset: int
    act_min: int
    act_max: int
    mult: np.ndarray
    shift: np.ndarray


@register
class FullyConnected(OpDef):
    name = "FULLY_CONNECTED"
    tflite_code = tflite.BuiltinOperator.FULLY_CONNECTED
    attrs_cls = FullyConnectedAttrs
    options_type = tflite.BuiltinOptions.FullyConnectedOptions

    def read_options(self, op):
        o = read_table(op, tflite.FullyConnectedOptions)
        if o is None:
            return FullyConnectedAttrs()
        if o.WeightsFormat() != 0:
            return FullyConnectedAttrs(f"UNSUPPORTED_WEIGHTS_FORMAT_{o.WeightsFormat()}")
        return FullyConnectedAttrs(activation_name(o.FusedActivationFunction()), bool(o.KeepNumDims()))

    def write_options(self, b, a):
        tflite.FullyConnectedOptionsStart(b)
        tflite.FullyConnectedOptionsAddFusedActivationFunction(b, ACTIVATION_CODES[a.activation])
        tflite.FullyConnectedOptionsAddKeepNumDims(b, a.keep_num_dims)
        return tflite.FullyConnectedOptionsEnd(b)

    def check(self, g: Graph, node: Node) -> list[str]:
        if len(node.inputs) < 2 or len(node.outputs) != 1:
            return ["needs input, weights, optional bias and one output"]
        ins = g.input_tensors(node)
        x, w = ins[0], ins[1]
        bias = ins[2] if len(ins) > 2 else None
        y = g.tensors[node.outputs[0]]
        probs = dtype_problems("FULLY_CONNECTED", [x, w, bias, y], ["int8", "int8", "int32", "int8"])
        probs += need_quant(ins + [y]) + check_activation(node.attrs.activation)
        if probs:
            return probs
        if not w.is_const or len(w.shape) != 2:
            return ["weights must be a constant 2-D [units, depth] tensor"]
        units, depth = w.shape
        if depth == 0 or x.size % depth != 0:
            return [f"input of {x.size} values is not a whole number of rows of depth {depth}"]
        if y.size != (x.size // depth) * units or y.shape[-1] != units:
            return [f"output shape {list(y.shape)} does not match {x.size // depth} x {units}"]
        if int(np.abs(w.quant.zero_point).max()) != 0:
            return ["weights must be symmetric (zero point 0)"]
        if w.quant.scale.size not in (1, units) or (w.quant.per_channel and w.quant.axis != 0):
            return ["weight quantization must be per-tensor or per unit"]
        if bias is not None and (not bias.is_const or bias.size != units):
            return ["bias must be a constant with one value per unit"]
        return []

    def prepare(self, g, node):
        x, w, y = g.tensors[node.inputs[0]], g.tensors[node.inputs[1]], g.tensors[node.outputs[0]]
        units, depth = w.shape
        ws = w.quant.scale
        if ws.size == 1 and not node.attrs.conv_multiplier:
            # TFLM's per-tensor path multiplies the two float32 scales in float32 first.
            real = np.array([np.float64(np.float32(x.quant.scale[0]) * np.float32(ws[0]))
                             / np.float64(y.quant.scale[0])])
            real = np.repeat(real, units)
        else:
            real = np.float64(x.quant.scale[0]) * ws.astype(np.float64) / np.float64(y.quant.scale[0])
            real = np.broadcast_to(real, (units,))
        mult, shift = quantize_multipliers(real)
        lo, hi = activation_range(node.attrs.activation, y.scale, y.zero_point)
        return FCParams(x.size // depth, depth, units, -x.zero_point, y.zero_point, lo, hi, mult, shift)

    def reference(self, g, node, p, inputs):
        from kiloml.ir.ops.conv_common import requantize

        x = inputs[0].reshape(p.batches, p.depth).astype(np.float64) + p.in_offset
        acc = np.rint(x @ inputs[1].astype(np.float64).T).astype(np.int64)
        if len(inputs) > 2 and inputs[2] is not None:
            acc += inputs[2].astype(np.int64)
        y = g.tensors[node.outputs[0]]
        return [requantize(acc, p).reshape(y.shape)]

    def macs(self, g, node):
        return g.tensors[node.outputs[0]].size * g.tensors[node.inputs[1]].shape[1]

    def comment(self, g, node, p):
        return [f"{p.batches} x [{p.depth}] -> [{p.units}], activation {node.attrs.activation} "
                f"-> clamp [{p.act_min}, {p.act_max}]"]

    def emit(self, g, node, p, ctx):
        ctx.use_kernel("fully_connected")
        params = ctx.struct("kml_fc_params", "p", fc_struct_fields(p))
        mult = ctx.array("mult", "int32_t", p.mult)
        shift = ctx.array("shift", "int32_t", p.shift)
        bias = ctx.ptr(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] >= 0 else "0"
        return [ctx.call("kml_fully_connected_s8", f"&{params}", ctx.ptr(node.inputs[0]),
                         ctx.ptr(node.inputs[1]), bias, mult, shift, ctx.ptr(node.outputs[0]),
                         "0", "0")]


def fc_struct_fields(p: FCParams) -> dict[str, int]:
    """The fields of ``kml_fc_params``."""
    return {"batches": p.batches, "depth": p.depth, "units": p.units, "in_offset": p.in_offset,
            "out_offset": p.out_offset, "act_min": p.act_min, "act_max": p.act_max}
