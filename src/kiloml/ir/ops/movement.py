"""Helpers shared by the data-movement and unary ops (PAD, CONCATENATION, MEAN, QUANTIZE, ...).

* ``map_inplace_delta``: the in-place bound of a kernel that walks its output in increasing
  address order and reads, for each output element, input elements that it names;
* ``unary_problems``: the structural checks of a one-input one-output element-wise op;
* ``same_quant``, ``round_half_away_f32``: quantization helpers of several ops.
"""

from __future__ import annotations

import numpy as np

from kiloml.ir.graph import Graph, Node
from kiloml.ir.ops.base import dtype_problems, need_quant


def map_inplace_delta(src: np.ndarray, in_itemsize: int = 1, out_itemsize: int = 1) -> int | None:
    """Largest safe offset of the output start relative to the input start, in bytes.

    ``src[o]`` is the lowest input element index that output element ``o`` reads (``-1``: it
    reads none, e.g. a padding value). The kernel handles output elements in order, reading an
    element's inputs before writing it. Before output ``o`` is produced, bytes
    ``[out, out + o * out_itemsize)`` are written; they must lie below the lowest input byte
    still to be read, ``in + min(src[o:]) * in_itemsize``. Returns None when nothing is read.
    """
    src = np.asarray(src, dtype=np.int64).reshape(-1)
    big = np.iinfo(np.int64).max
    pending = np.where(src >= 0, src, big)
    first_unread = np.minimum.accumulate(pending[::-1])[::-1]
    valid = first_unread != big
    if not valid.any():
        return None
    o = np.arange(src.size, dtype=np.int64)
    return int((first_unread[valid] * in_itemsize - o[valid] * out_itemsize).min())


def unary_problems(op: str, g: Graph, node: Node, in_dtype: str = "int8",
                   out_dtype: str = "int8") -> list[str]:
    """One input and one output of the same shape with the given types (and quantization)."""
    if len(node.inputs) != 1 or len(node.outputs) != 1 or node.inputs[0] < 0:
        return ["needs one input and one output"]
    x, y = g.tensors[node.inputs[0]], g.tensors[node.outputs[0]]
    probs = dtype_problems(op, [x, y], [in_dtype, out_dtype]) + need_quant([x, y])
    for t in (x, y):
        if t.dtype == "int8" and t.quant is not None and t.quant.per_channel:
            probs.append(f"tensor {t.name!r} is quantized per channel; per-tensor expected")
    if probs:
        return probs
    if x.is_const:
        return ["a constant input is not supported (fold it before compiling)"]
    if tuple(x.shape) != tuple(y.shape):
        return [f"output shape {list(y.shape)} differs from input {list(x.shape)}"]
    return []


def same_quant(a, b) -> bool:
    """Per-tensor scale and zero point equal (the float32 scales compared exactly)."""
    return (np.float32(a.scale) == np.float32(b.scale)) and a.zero_point == b.zero_point


def round_half_away_f32(x: np.ndarray) -> np.ndarray:
    """``std::round`` of float32 values (halves away from zero), exact: done in float64."""
    d = np.asarray(x, dtype=np.float32).astype(np.float64)
    return np.sign(d) * np.floor(np.abs(d) + 0.5)
