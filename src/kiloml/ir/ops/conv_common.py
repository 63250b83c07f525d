"""Shared pieces of the convolution-like ops (CONV_2D, DEPTHWISE_CONV_2D, pooling)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kiloml.ir.graph import Graph, Node
from kiloml.ir.ops.base import window_problems
from kiloml.ir.quant import activation_range, compute_padding, quantize_multipliers


@dataclass
class ConvParams:
    """Integer parameters of a quantized convolution, computed as TFLite's Prepare does."""

    batches: int
    in_h: int
    in_w: int
    in_c: int
    out_h: int
    out_w: int
    out_c: int
    k_h: int
    k_w: int
    stride_h: int
    stride_w: int
    dil_h: int
    dil_w: int
    pad_top: int
    pad_left: int
    in_offset: int
    out_offset: int
    act_min: int
    act_max: int
    mult: np.ndarray  # int64 per output channel
    shift: np.ndarray


def conv_params(g: Graph, node: Node, k_h: int, k_w: int, attrs) -> ConvParams:
    x = g.tensors[node.inputs[0]]
    w = g.tensors[node.inputs[1]]
    y = g.tensors[node.outputs[0]]
    n, hi, wi, ci = x.shape
    _, ho, wo, co = y.shape
    _, pt = compute_padding(hi, k_h, attrs.stride_h, attrs.dilation_h, attrs.padding)
    _, pl = compute_padding(wi, k_w, attrs.stride_w, attrs.dilation_w, attrs.padding)
    in_scale = np.float64(x.quant.scale[0])
    w_scales = w.quant.scale.astype(np.float64)
    if w_scales.size == 1:
        w_scales = np.full(co, w_scales[0])
    real = in_scale * w_scales / np.float64(y.quant.scale[0])
    mult, shift = quantize_multipliers(real)
    lo, hi_ = activation_range(attrs.activation, y.scale, y.zero_point)
    return ConvParams(n, hi, wi, ci, ho, wo, co, k_h, k_w, attrs.stride_h, attrs.stride_w,
                      attrs.dilation_h, attrs.dilation_w, pt, pl, -x.zero_point, y.zero_point,
                      lo, hi_, mult, shift)


def check_geometry(g: Graph, node: Node, k_h: int, k_w: int, attrs, out_c: int) -> list[str]:
    """Output shape must equal what TFLite computes from the input, filter and options."""
    x = g.tensors[node.inputs[0]]
    y = g.tensors[node.outputs[0]]
    if len(x.shape) != 4 or len(y.shape) != 4:
        return [f"input and output must be 4-D NHWC, got {list(x.shape)} and {list(y.shape)}"]
    if min(attrs.stride_h, attrs.stride_w, attrs.dilation_h, attrs.dilation_w) < 1:
        return ["strides and dilations must be >= 1"]
    if max(k_h, k_w, attrs.stride_h, attrs.stride_w, attrs.dilation_h, attrs.dilation_w) > 32767:
        return ["filter sizes, strides and dilations must be < 32768"]
    probs = (window_problems(x.shape[1], k_h, attrs.stride_h, attrs.dilation_h, attrs.padding, "height")
             + window_problems(x.shape[2], k_w, attrs.stride_w, attrs.dilation_w, attrs.padding, "width"))
    if probs:
        return probs
    ho, _ = compute_padding(x.shape[1], k_h, attrs.stride_h, attrs.dilation_h, attrs.padding)
    wo, _ = compute_padding(x.shape[2], k_w, attrs.stride_w, attrs.dilation_w, attrs.padding)
    want = (x.shape[0], ho, wo, out_c)
    if tuple(y.shape) != want or ho < 1 or wo < 1:
        return [f"output shape {list(y.shape)} does not match the computed {list(want)}"]
    return []


def padded_windows(x: np.ndarray, p: ConvParams, pad_value: int) -> np.ndarray:
    """All k_h x k_w windows of an NHWC array: shape (N, out_h, out_w, k_h, k_w, C).

    Padding is filled with ``pad_value`` so that (x - zero_point) is 0 there, which equals
    TFLite's skipping of out-of-bounds taps.
    """
    n, h, w, c = x.shape
    eh = (p.k_h - 1) * p.dil_h + 1
    ew = (p.k_w - 1) * p.dil_w + 1
    need_h = (p.out_h - 1) * p.stride_h + eh
    need_w = (p.out_w - 1) * p.stride_w + ew
    pb = max(need_h - h - p.pad_top, 0)
    pr = max(need_w - w - p.pad_left, 0)
    xp = np.pad(x, ((0, 0), (p.pad_top, pb), (p.pad_left, pr), (0, 0)), constant_values=pad_value)
    s = xp.strides
    view = np.lib.stride_tricks.as_strided(
        xp, shape=(n, p.out_h, p.out_w, p.k_h, p.k_w, c),
        strides=(s[0], s[1] * p.stride_h, s[2] * p.stride_w, s[1] * p.dil_h, s[2] * p.dil_w, s[3]),
        writeable=False)
    return view


def requantize(acc: np.ndarray, p) -> np.ndarray:
    """acc (int64, channels last) -> int8 with per-channel multiplier, offset and clamp."""
    from kiloml.ir.quant import multiply_by_quantized_multiplier

    out = multiply_by_quantized_multiplier(acc, p.mult, p.shift) + p.out_offset
    return np.clip(out, p.act_min, p.act_max).astype(np.int8)


def conv_struct_fields(p: ConvParams) -> dict[str, int]:
    return {k: int(getattr(p, k)) for k in (
        "batches", "in_h", "in_w", "in_c", "out_h", "out_w", "out_c", "k_h", "k_w", "stride_h",
        "stride_w", "dil_h", "dil_w", "pad_top", "pad_left", "in_offset", "out_offset",
        "act_min", "act_max")}
