"""SLICE of an int8 tensor (up to 4-D) with constant begin and size: a byte copy.

TFLite's SLICE takes ``begin`` and ``size`` as int32 or int64 tensors of one value per axis;
a size of -1 means "to the end of the axis". TFLite Micro copies the input bytes unchanged and
never rescales (the converter gives input and output the same quantization); kiloml does the
same and, like PAD, pins that behaviour in its tests. kiloml needs ``begin`` and ``size`` to be
constants (every converter writes them so).

This is the op of intermediate fusion: a branch per sensor reads that sensor's range of the
concatenated feature vector (``x[:, a:b]`` in PyTorch lowers to one SLICE).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tflite

from kiloml.ir.graph import Graph, Node
from kiloml.ir.ops.base import NoAttrs, OpDef, register
from kiloml.ir.ops.movement import map_inplace_delta, same_quant, unary_problems


@dataclass
class SliceParams:
    shape: tuple[int, int, int, int]  # input shape padded to 4-D
    begin: tuple[int, int, int, int]
    size: tuple[int, int, int, int]


def slice_bounds(shape, begin, size) -> tuple[list[int], list[int]] | str:
    """(begin, size) with -1 sizes resolved, or the reason they do not fit ``shape``."""
    b_out, s_out = [], []
    for i, (d, b, s) in enumerate(zip(shape, begin, size)):
        b, s = int(b), int(s)
        if s == -1:
            s = d - b
        if b < 0 or s < 0 or b + s > d:
            return f"axis {i}: begin {b} size {s} does not fit dimension {d}"
        b_out.append(b)
        s_out.append(s)
    return b_out, s_out


@register
class Slice(OpDef):
    name = "SLICE"
    tflite_code = tflite.BuiltinOperator.SLICE
    attrs_cls = NoAttrs

    def check(self, g: Graph, node: Node) -> list[str]:
        if len(node.inputs) != 3 or len(node.outputs) != 1 or min(node.inputs) < 0:
            return ["needs an input, constant begin and size tensors and one output"]
        x, y = g.tensors[node.inputs[0]], g.tensors[node.outputs[0]]
        probs = unary_problems("SLICE", g, Node(node.op, node.inputs[:1], node.outputs,
                                                node.attrs))
        probs = [p for p in probs if not p.startswith("output shape")]
        if probs:
            return probs
        rank = len(x.shape)
        if rank < 1 or rank > 4:
            return [f"input of rank {rank} is not supported (1 to 4 dimensions)"]
        for k, what in ((1, "begin"), (2, "size")):
            t = g.tensors[node.inputs[k]]
            if t.dtype not in ("int32", "int64") or not t.is_const or t.size != rank:
                return [f"{what} must be a constant int32 or int64 tensor of {rank} values"]
        bounds = slice_bounds(x.shape, g.tensors[node.inputs[1]].data.reshape(-1),
                              g.tensors[node.inputs[2]].data.reshape(-1))
        if isinstance(bounds, str):
            return [bounds]
        if list(y.shape) != bounds[1]:
            return [f"output shape {list(y.shape)} does not match the slice size {bounds[1]}"]
        if y.size == 0:
            return ["an empty slice is not supported"]
        return []

    def prepare(self, g, node):
        x = g.tensors[node.inputs[0]]
        b, s = slice_bounds(x.shape, g.tensors[node.inputs[1]].data.reshape(-1),
                            g.tensors[node.inputs[2]].data.reshape(-1))
        k = 4 - len(x.shape)
        return SliceParams((1,) * k + tuple(int(d) for d in x.shape), (0,) * k + tuple(b),
                           (1,) * k + tuple(s))

    def reference(self, g, node, p, inputs):
        x = np.asarray(inputs[0], np.int8).reshape(p.shape)
        out = x[tuple(slice(b, b + s) for b, s in zip(p.begin, p.size))]
        return [np.ascontiguousarray(out).reshape(g.tensors[node.outputs[0]].shape)]

    def comment(self, g, node, p):
        rank = len(g.tensors[node.inputs[0]].shape)
        lines = [f"begin {list(p.begin[4 - rank:])} size {list(p.size[4 - rank:])}"]
        if not same_quant(g.tensors[node.inputs[0]], g.tensors[node.outputs[0]]):
            lines.append("input and output quantization differ: values are copied unchanged, "
                         "as TFLM does")
        return lines

    def emit(self, g, node, p, ctx):
        ctx.use_kernel("slice")
        fields = {f"d{i}": p.shape[i] for i in range(1, 4)}
        fields.update({f"b{i}": p.begin[i] for i in range(4)})
        fields.update({f"s{i}": p.size[i] for i in range(4)})
        params = ctx.struct("kml_slice_params", "p", fields)
        return [ctx.call("kml_slice_s8", f"&{params}", ctx.ptr(node.inputs[0]),
                         ctx.ptr(node.outputs[0]))]

    def inplace_delta(self, g, node):
        p = self.prepare(g, node)
        idx = np.arange(int(np.prod(p.shape)), dtype=np.int64).reshape(p.shape)
        src = idx[tuple(slice(b, b + s) for b, s in zip(p.begin, p.size))]
        d = map_inplace_delta(src.reshape(-1))
        return {} if d is None else {0: d}
