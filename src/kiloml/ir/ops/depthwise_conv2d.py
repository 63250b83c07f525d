"""DEPTHWISE_CONV_2D: any depth multiplier, dilation, SAME/VALID padding, strides."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tflite

from kiloml.ir.graph import Graph, Node
from kiloml.ir.ops.base import (ACTIVATION_CODES, PADDING_CODES, OpDef, activation_name,
                                check_activation, dtype_problems, need_quant, padding_name,
                                read_table, register, window_inplace_delta)
from kiloml.ir.ops.conv_common import (check_geometry, conv_params, conv_struct_fields,
                                       padded_windows, requantize)


@dataclass(frozen=True)
class DepthwiseConv2DAttrs:
    stride_h: int = 1
    stride_w: int = 1
    dilation_h: int = 1
    dilation_w: int = 1
    padding: str = "SAME"
    activation: str = "NONE"
    depth_multiplier: int = 1


@register
class DepthwiseConv2D(OpDef):
    name = "DEPTHWISE_CONV_2D"
    tflite_code = tflite.BuiltinOperator.DEPTHWISE_CONV_2D
    attrs_cls = DepthwiseConv2DAttrs
    options_type = tflite.BuiltinOptions.DepthwiseConv2DOptions

    def read_options(self, op):
        o = read_table(op, tflite.DepthwiseConv2DOptions)
        if o is None:
            return DepthwiseConv2DAttrs()
        return DepthwiseConv2DAttrs(o.StrideH(), o.StrideW(), o.DilationHFactor(),
                                    o.DilationWFactor(), padding_name(o.Padding()),
                                    activation_name(o.FusedActivationFunction()),
                                    o.DepthMultiplier())

    def write_options(self, b, a):
        tflite.DepthwiseConv2DOptionsStart(b)
        tflite.DepthwiseConv2DOptionsAddPadding(b, PADDING_CODES[a.padding])
        tflite.DepthwiseConv2DOptionsAddStrideW(b, a.stride_w)
        tflite.DepthwiseConv2DOptionsAddStrideH(b, a.stride_h)
        tflite.DepthwiseConv2DOptionsAddDepthMultiplier(b, a.depth_multiplier)
        tflite.DepthwiseConv2DOptionsAddFusedActivationFunction(b, ACTIVATION_CODES[a.activation])
        tflite.DepthwiseConv2DOptionsAddDilationWFactor(b, a.dilation_w)
        tflite.DepthwiseConv2DOptionsAddDilationHFactor(b, a.dilation_h)
        return tflite.DepthwiseConv2DOptionsEnd(b)

    def check(self, g: Graph, node: Node) -> list[str]:
        if len(node.inputs) < 2 or len(node.outputs) != 1:
            return ["needs input, filter, optional bias and one output"]
        ins = g.input_tensors(node)
        bias = ins[2] if len(ins) > 2 else None
        y = g.tensors[node.outputs[0]]
        probs = dtype_problems("DEPTHWISE_CONV_2D", [ins[0], ins[1], bias, y],
                               ["int8", "int8", "int32", "int8"])
        probs += need_quant(ins + [y]) + check_activation(node.attrs.activation)
        if node.attrs.padding not in PADDING_CODES:
            probs.append(f"padding {node.attrs.padding} is not supported")
        w = ins[1]
        if not probs and (not w.is_const or len(w.shape) != 4 or w.shape[0] != 1):
            probs.append("filter must be a constant 1xHxWxC tensor")
        if not probs and len(ins[0].shape) == 4:
            ci, co = ins[0].shape[3], w.shape[3]
            # TFLite derives the multiplier from the shapes; the option may be stale (0 or 1).
            if co % ci != 0:
                probs.append(f"filter channels {co} are not a multiple of input channels {ci}")
        if not probs:
            probs += check_geometry(g, node, w.shape[1], w.shape[2], node.attrs, w.shape[3])
        if not probs and (w.quant.scale.size not in (1, w.shape[3])
                          or (w.quant.per_channel and w.quant.axis != 3)):
            probs.append("filter quantization must be per-tensor or per output channel "
                         "(axis 3)")
        if not probs and bias is not None and (not bias.is_const or bias.size != w.shape[3]):
            probs.append("bias must be a constant with one value per output channel")
        return probs

    def prepare(self, g, node):
        w = g.tensors[node.inputs[1]]
        return conv_params(g, node, w.shape[1], w.shape[2], node.attrs)

    def reference(self, g, node, p, inputs):
        x, w = inputs[0], inputs[1]
        bias = inputs[2] if len(inputs) > 2 and inputs[2] is not None else None
        m = p.out_c // p.in_c
        win = padded_windows(x, p, -p.in_offset).astype(np.int64) + p.in_offset
        # (N, oh, ow, kh, kw, ci) -> repeat each input channel m times: oc = ic * m + j
        win = np.repeat(win, m, axis=-1)
        acc = np.einsum("nyxhwc,hwc->nyxc", win, w[0].astype(np.int64))
        if bias is not None:
            acc = acc + bias.astype(np.int64)
        return [requantize(acc, p)]

    def macs(self, g, node):
        w = g.tensors[node.inputs[1]]
        return g.tensors[node.outputs[0]].size * w.shape[1] * w.shape[2]

    def comment(self, g, node, p):
        return [f"depth multiplier {p.out_c // p.in_c}, stride {p.stride_h}x{p.stride_w}, "
                f"dilation {p.dil_h}x{p.dil_w}, pad top/left {p.pad_top}/{p.pad_left}, "
                f"activation {node.attrs.activation} -> clamp [{p.act_min}, {p.act_max}]"]

    def emit(self, g, node, p, ctx):
        ctx.use_kernel("conv")
        params = ctx.struct("kml_conv_params", "p", conv_struct_fields(p))
        x, y = ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0])
        mult = ctx.array("mult", "int32_t", p.mult)
        shift = ctx.array("shift", "int32_t", p.shift)
        bias = ctx.ptr(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] >= 0 else "0"
        return [ctx.call("kml_depthwise_conv2d_s8", f"&{params}", x, ctx.ptr(node.inputs[1]),
                         bias, mult, shift, y, "0", "0")]

    def inplace_delta(self, g, node):
        p = self.prepare(g, node)
        d = window_inplace_delta(g.tensors[node.inputs[0]].shape, g.tensors[node.outputs[0]].shape,
                                 p.stride_h, p.stride_w, p.pad_top, p.pad_left)
        return {} if d is None else {0: d}
