"""CONV_2D: int8 input/output, int8 per-channel (or per-tensor) weights, int32 bias."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tflite

from kiloml.ir.graph import Graph, Node
from kiloml.ir.ops.base import (ACTIVATION_CODES, PADDING_CODES, OpDef, activation_name,
                                check_activation, dtype_problems, need_quant,
                                padding_name, read_table, register, window_inplace_delta)
from kiloml.ir.ops.conv_common import (check_geometry, conv_params, conv_struct_fields,
                                       padded_windows, requantize)


@dataclass(frozen=True)
class Conv2DAttrs:
    stride_h: int = 1
    stride_w: int = 1
    dilation_h: int = 1
    dilation_w: int = 1
    padding: str = "SAME"
    activation: str = "NONE"


@register
class Conv2D(OpDef):
    name = "CONV_2D"
    tflite_code = tflite.BuiltinOperator.CONV_2D
    attrs_cls = Conv2DAttrs
    options_type = tflite.BuiltinOptions.Conv2DOptions

    def read_options(self, op):
        o = read_table(op, tflite.Conv2DOptions)
        if o is None:
            return Conv2DAttrs()
        return Conv2DAttrs(o.StrideH(), o.StrideW(), o.DilationHFactor(), o.DilationWFactor(),
                           padding_name(o.Padding()), activation_name(o.FusedActivationFunction()))

    def write_options(self, b, a):
        tflite.Conv2DOptionsStart(b)
        tflite.Conv2DOptionsAddPadding(b, PADDING_CODES[a.padding])
        tflite.Conv2DOptionsAddStrideW(b, a.stride_w)
        tflite.Conv2DOptionsAddStrideH(b, a.stride_h)
        tflite.Conv2DOptionsAddFusedActivationFunction(b, ACTIVATION_CODES[a.activation])
        tflite.Conv2DOptionsAddDilationWFactor(b, a.dilation_w)
        tflite.Conv2DOptionsAddDilationHFactor(b, a.dilation_h)
        return tflite.Conv2DOptionsEnd(b)

    def check(self, g: Graph, node: Node) -> list[str]:
        if len(node.inputs) < 2 or len(node.outputs) != 1:
            return ["needs input, filter, optional bias and one output"]
        ins = g.input_tensors(node)
        bias = ins[2] if len(ins) > 2 else None
        probs = dtype_problems("CONV_2D", [ins[0], ins[1], bias, g.tensors[node.outputs[0]]],
                               ["int8", "int8", "int32", "int8"])
        probs += need_quant(ins + g.output_tensors(node)) + check_activation(node.attrs.activation)
        if node.attrs.padding not in PADDING_CODES:
            probs.append(f"padding {node.attrs.padding} is not supported")
        w = ins[1]
        if not probs and (not w.is_const or len(w.shape) != 4):
            probs.append("filter must be a constant 4-D OHWI tensor")
        if not probs and len(ins[0].shape) == 4 and w.shape[3] != ins[0].shape[3]:
            probs.append(f"filter depth {w.shape[3]} != input channels {ins[0].shape[3]} "
                         "(grouped convolution is not supported)")
        if not probs:
            probs += check_geometry(g, node, w.shape[1], w.shape[2], node.attrs, w.shape[0])
        if not probs and (w.quant.scale.size not in (1, w.shape[0])
                          or (w.quant.per_channel and w.quant.axis != 0)):
            probs.append("filter quantization must be per-tensor or per output channel "
                         "(axis 0)")
        if not probs and bias is not None and (not bias.is_const or bias.size != w.shape[0]):
            probs.append("bias must be a constant with one value per output channel")
        return probs

    def prepare(self, g, node):
        w = g.tensors[node.inputs[1]]
        return conv_params(g, node, w.shape[1], w.shape[2], node.attrs)

    def reference(self, g, node, p, inputs):
        x, w = inputs[0], inputs[1]
        bias = inputs[2] if len(inputs) > 2 and inputs[2] is not None else None
        win = padded_windows(x, p, -p.in_offset).astype(np.float64) + p.in_offset
        cols = win.reshape(p.batches * p.out_h * p.out_w, -1)
        wm = w.reshape(p.out_c, -1).astype(np.float64).T  # (kh*kw*ci, co); exact in float64
        acc = np.rint(cols @ wm).astype(np.int64)
        if bias is not None:
            acc += bias.astype(np.int64)
        return [requantize(acc, p).reshape(p.batches, p.out_h, p.out_w, p.out_c)]

    def macs(self, g, node):
        w = g.tensors[node.inputs[1]]
        y = g.tensors[node.outputs[0]]
        return y.size * w.shape[1] * w.shape[2] * w.shape[3]

    def comment(self, g, node, p):
        return [f"stride {p.stride_h}x{p.stride_w}, dilation {p.dil_h}x{p.dil_w}, "
                f"pad top/left {p.pad_top}/{p.pad_left}, activation {node.attrs.activation} "
                f"-> clamp [{p.act_min}, {p.act_max}]"]

    def emit(self, g, node, p, ctx):
        ctx.use_kernel("conv")
        params = ctx.struct("kml_conv_params", "p", conv_struct_fields(p))
        filt, mult, shift, bias = conv_weight_args(g, node, p, ctx)
        return [ctx.call("kml_conv2d_s8", f"&{params}", ctx.ptr(node.inputs[0]), filt, bias,
                         mult, shift, ctx.ptr(node.outputs[0]), "0", "0")]

    def inplace_delta(self, g, node):
        p = self.prepare(g, node)
        d = window_inplace_delta(g.tensors[node.inputs[0]].shape, g.tensors[node.outputs[0]].shape,
                                 p.stride_h, p.stride_w, p.pad_top, p.pad_left)
        return {} if d is None else {0: d}


def conv_weight_args(g, node, p, ctx) -> tuple[str, str, str, str]:
    """(filter, mult, shift, bias) C arguments of the portable conv kernels: the filter and
    bias tensors, the multiplier and shift arrays; shared with CONV_2D_ADD."""
    mult = ctx.array("mult", "int32_t", p.mult)
    shift = ctx.array("shift", "int32_t", p.shift)
    bias = ctx.ptr(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] >= 0 else "0"
    return ctx.ptr(node.inputs[1]), mult, shift, bias
