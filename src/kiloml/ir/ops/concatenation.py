"""CONCATENATION of int8 tensors along one axis (negative axes count from the end).

TFLite Micro's int8 CONCATENATION copies the raw values. Its Prepare fails when any input's
scale or zero point differs from the output's (older releases copied such inputs unchanged,
in the wrong scale); LiteRT's int8 kernel refuses them too. kiloml rejects them with the same
reason; the converter always gives every input the output's quantization. TFLM also requires
a NONE fused activation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tflite

from kiloml.ir.graph import Graph, Node
from kiloml.ir.ops.base import (ACTIVATION_CODES, OpDef, activation_name, dtype_problems,
                                need_quant, read_table, register)
from kiloml.ir.ops.movement import same_quant


@dataclass(frozen=True)
class ConcatenationAttrs:
    axis: int = 0
    activation: str = "NONE"


@dataclass
class ConcatParams:
    axis: int  # non-negative
    outer: int  # product of the dims before the axis
    sizes: list[int]  # per input: its axis dim x the product of the dims after the axis


@register
class Concatenation(OpDef):
    name = "CONCATENATION"
    tflite_code = tflite.BuiltinOperator.CONCATENATION
    attrs_cls = ConcatenationAttrs
    options_type = tflite.BuiltinOptions.ConcatenationOptions

    def read_options(self, op):
        o = read_table(op, tflite.ConcatenationOptions)
        if o is None:
            return ConcatenationAttrs()
        return ConcatenationAttrs(int(o.Axis()), activation_name(o.FusedActivationFunction()))

    def write_options(self, b, a):
        tflite.ConcatenationOptionsStart(b)
        tflite.ConcatenationOptionsAddAxis(b, int(a.axis))
        tflite.ConcatenationOptionsAddFusedActivationFunction(b, ACTIVATION_CODES[a.activation])
        return tflite.ConcatenationOptionsEnd(b)

    def check(self, g: Graph, node: Node) -> list[str]:
        if len(node.inputs) < 1 or len(node.outputs) != 1 or min(node.inputs) < 0:
            return ["needs at least one input and one output"]
        ins = g.input_tensors(node)
        y = g.tensors[node.outputs[0]]
        ts = ins + [y]
        probs = dtype_problems("CONCATENATION", ts, ["int8"] * len(ts)) + need_quant(ts)
        probs += [f"tensor {t.name!r} is quantized per channel; per-tensor expected"
                  for t in ts if t.quant is not None and t.quant.per_channel]
        if node.attrs.activation != "NONE":
            probs.append(f"fused activation {node.attrs.activation} is not supported (TFLM "
                         "accepts only NONE)")
        if probs:
            return probs
        rank = len(y.shape)
        axis = node.attrs.axis
        if rank == 0 or not -rank <= axis < rank:
            return [f"axis {axis} is out of range for rank {rank}"]
        axis %= rank
        total = 0
        for t in ins:
            if len(t.shape) != rank or any(t.shape[i] != y.shape[i]
                                           for i in range(rank) if i != axis):
                return [f"input {t.name!r} of shape {list(t.shape)} does not fit output "
                        f"{list(y.shape)} along axis {axis}"]
            total += t.shape[axis]
        if total != y.shape[axis]:
            return [f"inputs add up to {total} along axis {axis}, output has {y.shape[axis]}"]
        for t in ins:
            if not same_quant(t, y):
                return [f"input {t.name!r} has scale {t.scale:.9g} zero point {t.zero_point}, "
                        f"output {y.scale:.9g} / {y.zero_point}: int8 concatenation copies raw "
                        "values and needs equal quantization (TFLM and LiteRT refuse it too)"]
        return []

    def prepare(self, g, node):
        y = g.tensors[node.outputs[0]]
        axis = node.attrs.axis % len(y.shape)
        outer = int(np.prod(y.shape[:axis], dtype=np.int64))
        inner = int(np.prod(y.shape[axis + 1:], dtype=np.int64))
        sizes = [int(g.tensors[t].shape[axis]) * inner for t in node.inputs]
        return ConcatParams(axis, outer, sizes)

    def reference(self, g, node, p, inputs):
        return [np.concatenate([np.asarray(x, np.int8) for x in inputs], axis=p.axis)]

    def comment(self, g, node, p):
        return [f"axis {p.axis}: {p.outer} block(s) of {' + '.join(map(str, p.sizes))} bytes"]

    def emit(self, g, node, p, ctx):
        ctx.use_kernel("concat")
        params = ctx.struct("kml_concat_params", "p", {"outer": p.outer,
                                                       "n_inputs": len(node.inputs)})
        sizes = ctx.array("sizes", "int32_t", p.sizes)
        ptrs = ", ".join(ctx.ptr(t) for t in node.inputs)
        return [f"const int8_t *const inputs[{len(node.inputs)}] = {{{ptrs}}};",
                ctx.call("kml_concat_s8", f"&{params}", "inputs", sizes,
                         ctx.ptr(node.outputs[0]))]

    def inplace_delta(self, g, node):
        p = self.prepare(g, node)
        total = sum(p.sizes)
        out: dict[int, int] = {}
        for k, t in enumerate(node.inputs):
            if node.inputs.count(t) != 1 or p.sizes[k] == 0:
                continue
            # element j of block o sits at o * size_k + j in the input and at
            # o * total + offset_k + j in the output; the last block is the tightest
            offset = sum(p.sizes[:k])
            out[k] = -(offset + (p.outer - 1) * (total - p.sizes[k]))
        return out
