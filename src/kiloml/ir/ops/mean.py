"""MEAN over constant axes of an int8 tensor (up to 4-D), as TFLite Micro computes it.

The installed TFLM (``reduce_common.cc`` -> ``QuantizedMeanOrSum``) has one integer path for
every int8 MEAN, whatever the axes, keep_dims, or whether input and output quantization are
equal (older releases truncated ``sum / count`` for equal quantization and special-cased a
4-D mean over H, W; the tests pin the current behaviour down against TFLM):

* ``mult, shift = QuantizeMultiplier(in_scale / out_scale)`` (double);
* ``1 / count`` is folded into the multiplier: ``s = min(floor(log2(count)), 32, 31 + shift)``,
  ``mult' = (mult << s) / count`` (int64, truncated), ``shift' = shift - s``;
* each output is ``clamp(MBQM(sum - in_zp * count, mult', shift') + out_zp)`` where ``sum`` is
  the int32 sum of the raw int8 values over the reduced axes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tflite

from kiloml.ir.graph import Graph, Node
from kiloml.ir.ops.base import OpDef, read_table, register
from kiloml.ir.ops.movement import map_inplace_delta, unary_problems
from kiloml.ir.quant import multiply_by_quantized_multiplier, quantize_multiplier

MAX_COUNT = 1 << 23  # sum - in_zp * count stays inside int32


@dataclass(frozen=True)
class MeanAttrs:
    keep_dims: bool = False


@dataclass
class MeanParams:
    shape: tuple[int, int, int, int]  # input shape padded to 4-D (leading 1s)
    reduce: tuple[bool, bool, bool, bool]  # which of the 4 axes are reduced
    count: int  # elements per mean
    in_zp: int
    out_zp: int
    mult: int  # in_scale / (out_scale * count) as TFLM derives it
    shift: int


def resolve_axes(axes: np.ndarray, rank: int) -> list[int] | None:
    """Axes made non-negative and de-duplicated, in order of appearance; None if out of range."""
    out: list[int] = []
    for a in np.asarray(axes).reshape(-1).tolist():
        a = int(a)
        if a < -rank or a >= rank:
            return None
        a = a + rank if a < 0 else a
        if a not in out:
            out.append(a)
    return out


@register
class Mean(OpDef):
    name = "MEAN"
    tflite_code = tflite.BuiltinOperator.MEAN
    attrs_cls = MeanAttrs
    options_type = tflite.BuiltinOptions.ReducerOptions

    def read_options(self, op):
        o = read_table(op, tflite.ReducerOptions)
        return MeanAttrs(bool(o.KeepDims()) if o is not None else False)

    def write_options(self, b, a):
        tflite.ReducerOptionsStart(b)
        tflite.ReducerOptionsAddKeepDims(b, bool(a.keep_dims))
        return tflite.ReducerOptionsEnd(b)

    def check(self, g: Graph, node: Node) -> list[str]:
        if len(node.inputs) != 2 or len(node.outputs) != 1 or min(node.inputs) < 0:
            return ["needs an input, a constant axis tensor and one output"]
        x, ax, y = g.tensors[node.inputs[0]], g.tensors[node.inputs[1]], g.tensors[node.outputs[0]]
        probs = unary_problems("MEAN", g, Node(node.op, node.inputs[:1], node.outputs, node.attrs))
        probs = [p for p in probs if not p.startswith("output shape")]
        if probs:
            return probs
        if ax.dtype != "int32" or not ax.is_const:
            return ["the axis input must be a constant int32 tensor"]
        if len(x.shape) > 4 or len(x.shape) < 1:
            return [f"input of rank {len(x.shape)} is not supported (1 to 4 dimensions)"]
        axes = resolve_axes(ax.data, len(x.shape))
        if axes is None:
            return [f"axis {ax.data.reshape(-1).tolist()} is out of range for rank {len(x.shape)}"]
        if not axes:
            return ["an empty axis list is not supported"]
        want = [1 if i in axes else d for i, d in enumerate(x.shape)] if node.attrs.keep_dims \
            else [d for i, d in enumerate(x.shape) if i not in axes]
        if list(y.shape) != want and not (want == [] and list(y.shape) in ([], [1])):
            return [f"output shape {list(y.shape)} does not match the reduced shape {want}"]
        if x.size == 0:
            return ["an empty input is not supported"]
        p = self.prepare(g, node)
        if p.count > MAX_COUNT:
            return [f"a mean over {p.count} values is not supported (at most {MAX_COUNT})"]
        if 255 * p.count * (1 << max(p.shift, 0)) >= (1 << 31):
            return ["input scale / output scale is too large: the rescaled sum overflows int32"]
        return []

    def prepare(self, g, node):
        x, ax, y = g.tensors[node.inputs[0]], g.tensors[node.inputs[1]], g.tensors[node.outputs[0]]
        rank = len(x.shape)
        axes = resolve_axes(ax.data, rank) or []
        pad = 4 - rank
        shape = (1,) * pad + tuple(x.shape)
        reduce = tuple((i - pad) in axes for i in range(4))
        count = int(np.prod([shape[i] for i in range(4) if reduce[i]], dtype=np.int64))
        mult, shift = quantize_multiplier(float(np.float32(x.scale)) / float(np.float32(y.scale)))
        s = min(count.bit_length() - 1, 32, 31 + shift)
        mult = (mult << s) // count
        return MeanParams(shape, reduce, count, x.zero_point, y.zero_point, int(mult), shift - s)

    def reference(self, g, node, p, inputs):
        x = inputs[0].reshape(p.shape).astype(np.int64)
        axes = tuple(i for i in range(4) if p.reduce[i])
        shifted = x.sum(axis=axes) - p.in_zp * p.count
        out = multiply_by_quantized_multiplier(shifted, p.mult, p.shift) + p.out_zp
        y_shape = g.tensors[node.outputs[0]].shape
        return [np.clip(out, -128, 127).astype(np.int8).reshape(y_shape)]

    def macs(self, g, node):
        return g.tensors[node.inputs[0]].size

    def comment(self, g, node, p):
        axes = [i - (4 - len(g.tensors[node.inputs[0]].shape)) for i in range(4) if p.reduce[i]]
        return [f"mean over axes {axes} ({p.count} values), keep_dims {node.attrs.keep_dims}",
                f"(sum - in_zp {p.in_zp} x {p.count}) x{p.mult} shift {p.shift}, + out_zp {p.out_zp}"]

    def emit(self, g, node, p, ctx):
        ctx.use_kernel("mean")
        fields = {f"d{i}": p.shape[i] for i in range(4)}
        fields.update({f"r{i}": int(p.reduce[i]) for i in range(4)})
        fields.update({"count": p.count, "in_zp": p.in_zp, "out_zp": p.out_zp, "mult": p.mult,
                       "shift": p.shift})
        params = ctx.struct("kml_mean_params", "p", fields)
        return [ctx.call("kml_mean_s8", f"&{params}", ctx.ptr(node.inputs[0]),
                         ctx.ptr(node.outputs[0]))]

    def inplace_delta(self, g, node):
        p = self.prepare(g, node)
        # output element o first reads the input element with all reduced coordinates 0
        idx = np.arange(int(np.prod(p.shape))).reshape(p.shape)
        first = idx[tuple(slice(0, 1) if r else slice(None) for r in p.reduce)]
        d = map_inplace_delta(first.reshape(-1))
        return {} if d is None else {0: d}
