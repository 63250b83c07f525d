"""AVERAGE_POOL_2D and MAX_POOL_2D on int8 (input and output share scale and zero point)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tflite

from kiloml.ir.graph import Graph, Node
from kiloml.ir.ops.base import (ACTIVATION_CODES, PADDING_CODES, OpDef, activation_name,
                                check_activation, dtype_problems, need_quant, padding_name,
                                read_table, register, window_inplace_delta,
                                window_problems)
from kiloml.ir.quant import activation_range, compute_padding


@dataclass(frozen=True)
class Pool2DAttrs:
    filter_h: int = 1
    filter_w: int = 1
    stride_h: int = 1
    stride_w: int = 1
    padding: str = "VALID"
    activation: str = "NONE"


@dataclass
class PoolParams:
    batches: int
    in_h: int
    in_w: int
    channels: int
    out_h: int
    out_w: int
    k_h: int
    k_w: int
    stride_h: int
    stride_w: int
    pad_top: int
    pad_left: int
    act_min: int
    act_max: int


class _Pool2D(OpDef):
    attrs_cls = Pool2DAttrs
    options_type = tflite.BuiltinOptions.Pool2DOptions
    kernel_fn = ""

    def read_options(self, op):
        o = read_table(op, tflite.Pool2DOptions)
        if o is None:
            return Pool2DAttrs(0, 0, 0, 0)
        return Pool2DAttrs(o.FilterHeight(), o.FilterWidth(), o.StrideH(), o.StrideW(),
                           padding_name(o.Padding()), activation_name(o.FusedActivationFunction()))

    def write_options(self, b, a):
        tflite.Pool2DOptionsStart(b)
        tflite.Pool2DOptionsAddPadding(b, PADDING_CODES[a.padding])
        tflite.Pool2DOptionsAddStrideW(b, a.stride_w)
        tflite.Pool2DOptionsAddStrideH(b, a.stride_h)
        tflite.Pool2DOptionsAddFilterWidth(b, a.filter_w)
        tflite.Pool2DOptionsAddFilterHeight(b, a.filter_h)
        tflite.Pool2DOptionsAddFusedActivationFunction(b, ACTIVATION_CODES[a.activation])
        return tflite.Pool2DOptionsEnd(b)

    def check(self, g: Graph, node: Node) -> list[str]:
        if len(node.inputs) != 1 or len(node.outputs) != 1:
            return ["needs one input and one output"]
        x, y = g.tensors[node.inputs[0]], g.tensors[node.outputs[0]]
        a = node.attrs
        probs = dtype_problems(self.name, [x, y], ["int8", "int8"]) + need_quant([x, y])
        probs += check_activation(a.activation)
        if a.padding not in PADDING_CODES:
            probs.append(f"padding {a.padding} is not supported")
        if probs:
            return probs
        if len(x.shape) != 4 or len(y.shape) != 4:
            return ["input and output must be 4-D NHWC"]
        if min(a.filter_h, a.filter_w, a.stride_h, a.stride_w) < 1:
            return ["filter size and strides must be >= 1"]
        probs = (window_problems(x.shape[1], a.filter_h, a.stride_h, 1, a.padding, "height")
                 + window_problems(x.shape[2], a.filter_w, a.stride_w, 1, a.padding, "width"))
        if probs:
            return probs
        ho, _ = compute_padding(x.shape[1], a.filter_h, a.stride_h, 1, a.padding)
        wo, _ = compute_padding(x.shape[2], a.filter_w, a.stride_w, 1, a.padding)
        if tuple(y.shape) != (x.shape[0], ho, wo, x.shape[3]) or ho < 1 or wo < 1:
            return [f"output shape {list(y.shape)} does not match the computed "
                    f"{[x.shape[0], ho, wo, x.shape[3]]}"]
        if x.scale != y.scale or x.zero_point != y.zero_point:
            return ["input and output quantization must be equal"]
        return []

    def prepare(self, g, node):
        x, y = g.tensors[node.inputs[0]], g.tensors[node.outputs[0]]
        a = node.attrs
        _, pt = compute_padding(x.shape[1], a.filter_h, a.stride_h, 1, a.padding)
        _, pl = compute_padding(x.shape[2], a.filter_w, a.stride_w, 1, a.padding)
        lo, hi = activation_range(a.activation, y.scale, y.zero_point)
        return PoolParams(x.shape[0], x.shape[1], x.shape[2], x.shape[3], y.shape[1], y.shape[2],
                          a.filter_h, a.filter_w, a.stride_h, a.stride_w, pt, pl, lo, hi)

    def _windows(self, x: np.ndarray, p: PoolParams, fill: int) -> np.ndarray:
        from kiloml.ir.ops.conv_common import padded_windows

        view = type("P", (), dict(k_h=p.k_h, k_w=p.k_w, dil_h=1, dil_w=1, stride_h=p.stride_h,
                                  stride_w=p.stride_w, out_h=p.out_h, out_w=p.out_w,
                                  pad_top=p.pad_top, pad_left=p.pad_left))
        return padded_windows(x, view, fill)

    def comment(self, g, node, p):
        return [f"filter {p.k_h}x{p.k_w}, stride {p.stride_h}x{p.stride_w}, pad top/left "
                f"{p.pad_top}/{p.pad_left}, clamp [{p.act_min}, {p.act_max}]"]

    def emit(self, g, node, p, ctx):
        ctx.use_kernel("pool")
        fields = {k: int(getattr(p, k)) for k in PoolParams.__dataclass_fields__}
        params = ctx.struct("kml_pool_params", "p", fields)
        return [ctx.call(self.kernel_fn, f"&{params}", ctx.ptr(node.inputs[0]),
                         ctx.ptr(node.outputs[0]))]

    def inplace_delta(self, g, node):
        p = self.prepare(g, node)
        d = window_inplace_delta(g.tensors[node.inputs[0]].shape, g.tensors[node.outputs[0]].shape,
                                 p.stride_h, p.stride_w, p.pad_top, p.pad_left)
        return {} if d is None else {0: d}


@register
class AveragePool2D(_Pool2D):
    name = "AVERAGE_POOL_2D"
    tflite_code = tflite.BuiltinOperator.AVERAGE_POOL_2D
    kernel_fn = "kml_avg_pool_s8"

    def reference(self, g, node, p, inputs):
        x = inputs[0].astype(np.int64)
        valid = self._windows(np.ones(x.shape[:3] + (1,), np.int64), p, 0)
        count = valid.sum(axis=(3, 4))  # (N, oh, ow, 1)
        total = self._windows(x, p, 0).sum(axis=(3, 4))
        half = count // 2
        # C integer division truncates toward zero; TFLite rounds half away from zero
        num = np.where(total > 0, total + half, total - half)
        avg = np.sign(num) * (np.abs(num) // count)
        return [np.clip(avg, p.act_min, p.act_max).astype(np.int8)]

    def macs(self, g, node):
        a = node.attrs
        return g.tensors[node.outputs[0]].size * a.filter_h * a.filter_w


@register
class MaxPool2D(_Pool2D):
    name = "MAX_POOL_2D"
    tflite_code = tflite.BuiltinOperator.MAX_POOL_2D
    kernel_fn = "kml_max_pool_s8"

    def reference(self, g, node, p, inputs):
        win = self._windows(inputs[0].astype(np.int64), p, -(1 << 20))
        out = win.max(axis=(3, 4))
        return [np.clip(out, p.act_min, p.act_max).astype(np.int8)]
