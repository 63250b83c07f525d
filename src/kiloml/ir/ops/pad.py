"""PAD of an int8 tensor (up to 4-D) with constant paddings; the pad value is the output zero
point (real 0.0), as in TFLite Micro.

TFLM copies the input bytes unchanged and never rescales. The converter always gives input and
output the same quantization; when a model's differ, TFLM and LiteRT both still copy the raw
values and pad with the output zero point, and so does kiloml (the tests pin both runtimes'
behaviour). PADV2 (explicit pad value) is a different op and not implemented.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tflite

from kiloml.ir.graph import Graph, Node
from kiloml.ir.ops.base import NoAttrs, OpDef, register
from kiloml.ir.ops.movement import map_inplace_delta, same_quant, unary_problems


@dataclass
class PadParams:
    shape: tuple[int, int, int, int]  # input shape padded to 4-D
    before: tuple[int, int, int, int]
    after: tuple[int, int, int, int]
    pad_value: int


@register
class Pad(OpDef):
    name = "PAD"
    tflite_code = tflite.BuiltinOperator.PAD
    attrs_cls = NoAttrs

    def check(self, g: Graph, node: Node) -> list[str]:
        if len(node.inputs) != 2 or len(node.outputs) != 1 or min(node.inputs) < 0:
            return ["needs an input, a constant paddings tensor and one output"]
        x, pads = g.tensors[node.inputs[0]], g.tensors[node.inputs[1]]
        y = g.tensors[node.outputs[0]]
        probs = unary_problems("PAD", g, Node(node.op, node.inputs[:1], node.outputs, node.attrs))
        probs = [p for p in probs if not p.startswith("output shape")]
        if probs:
            return probs
        rank = len(x.shape)
        if rank < 1 or rank > 4:
            return [f"input of rank {rank} is not supported (1 to 4 dimensions)"]
        if pads.dtype != "int32" or not pads.is_const or pads.size != 2 * rank:
            return [f"paddings must be a constant int32 tensor of shape [{rank}, 2]"]
        pv = pads.data.reshape(rank, 2).astype(np.int64)
        if (pv < 0).any():
            return [f"negative paddings {pv.tolist()} are not supported"]
        want = [int(d + pv[i, 0] + pv[i, 1]) for i, d in enumerate(x.shape)]
        if list(y.shape) != want:
            return [f"output shape {list(y.shape)} does not match the padded shape {want}"]
        if x.size == 0:
            return ["an empty input is not supported"]
        return []

    def prepare(self, g, node):
        x, pads = g.tensors[node.inputs[0]], g.tensors[node.inputs[1]]
        y = g.tensors[node.outputs[0]]
        rank = len(x.shape)
        pv = pads.data.reshape(rank, 2).astype(np.int64).tolist()
        k = 4 - rank
        shape = (1,) * k + tuple(int(d) for d in x.shape)
        before = (0,) * k + tuple(int(p[0]) for p in pv)
        after = (0,) * k + tuple(int(p[1]) for p in pv)
        return PadParams(shape, before, after, y.zero_point)

    def reference(self, g, node, p, inputs):
        x = inputs[0].reshape(p.shape)
        out = np.pad(x, list(zip(p.before, p.after)), constant_values=p.pad_value)
        return [out.astype(np.int8).reshape(g.tensors[node.outputs[0]].shape)]

    def comment(self, g, node, p):
        rank = len(g.tensors[node.inputs[0]].shape)
        pairs = list(zip(p.before, p.after))[4 - rank:]
        lines = [f"paddings {[list(q) for q in pairs]}, pad value {p.pad_value} "
                 "(output zero point)"]
        if not same_quant(g.tensors[node.inputs[0]], g.tensors[node.outputs[0]]):
            lines.append("input and output quantization differ: values are copied unchanged, "
                         "as TFLM and LiteRT do")
        return lines

    def emit(self, g, node, p, ctx):
        ctx.use_kernel("pad")
        fields = {f"d{i}": p.shape[i] for i in range(4)}
        fields.update({f"b{i}": p.before[i] for i in range(4)})
        fields.update({f"a{i}": p.after[i] for i in range(4)})
        fields["pad_value"] = p.pad_value
        params = ctx.struct("kml_pad_params", "p", fields)
        return [ctx.call("kml_pad_s8", f"&{params}", ctx.ptr(node.inputs[0]),
                         ctx.ptr(node.outputs[0]))]

    def inplace_delta(self, g, node):
        p = self.prepare(g, node)
        idx = np.arange(int(np.prod(p.shape)), dtype=np.int64).reshape(p.shape)
        src = np.pad(idx, list(zip(p.before, p.after)), constant_values=-1)
        d = map_inplace_delta(src.reshape(-1))
        return {} if d is None else {0: d}
