"""Export: a calibrated (or QAT-trained) QNet -> kiloml's int8 IR graph -> .tflite.

``to_graph`` writes one IR node per QOp through ``EXPORTERS`` (keyed by QOp kind), with every
integer taken from the same functions "fake" mode uses (``integer_weights``), so the exported
model differs from fake-quant evaluation only by TFLite's fixed-point requantization.

Layout: graph inputs are NHWC: a (N, C, H, W) model input becomes (1, H, W, C), a 1-D
(N, C, L) input (1, 1, L, C) (Conv1d runs as a CONV_2D of height 1), a (N, F) input (1, F).
For one-channel 2-D inputs (MFCC, 49x10) and channels-last 1-D windows the bytes are the same
as the feature array's. ``to_nhwc`` and ``quantize_input`` turn float batches in the model's
layout into what the graph reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from kiloml.compress.calibration import calibrate
from kiloml.compress.lowering import lower
from kiloml.compress.qmath import QuantizeError
from kiloml.compress.qnet import QNet, QOp, weight_quant
from kiloml.ir.graph import Graph, Node, QuantParams, Tensor
from kiloml.ir.ops.add import AddAttrs
from kiloml.ir.ops.base import NoAttrs
from kiloml.ir.ops.concatenation import ConcatenationAttrs
from kiloml.ir.ops.conv2d import Conv2DAttrs
from kiloml.ir.ops.depthwise_conv2d import DepthwiseConv2DAttrs
from kiloml.ir.ops.fully_connected import FullyConnectedAttrs
from kiloml.ir.ops.pool2d import Pool2DAttrs
from kiloml.ir.ops.reshape import ReshapeAttrs
from kiloml.ir.ops.softmax import SoftmaxAttrs
from kiloml.model import quantize_array


def nhwc_shape(shape: tuple) -> tuple[int, ...]:
    """An internal (NCHW, batch 1) value shape as the graph's NHWC tensor shape."""
    if len(shape) == 4:
        return (1, shape[2], shape[3], shape[1])
    return (1,) + tuple(shape[1:])


class _Writer:
    """Tensors and nodes of the graph being written; value id -> tensor index."""

    def __init__(self, net: QNet) -> None:
        self.net = net
        self.tensors: list[Tensor] = []
        self.nodes: list[Node] = []
        self.tid: dict[int, int] = {}

    def tensor(self, t: Tensor) -> int:
        self.tensors.append(t)
        return len(self.tensors) - 1

    def activation(self, value: int, name: str) -> int:
        """The int8 tensor of a value, with its observer's quantization."""
        s, z = self.net.qparams_of(value)
        return self.tensor(Tensor(name, nhwc_shape(self.net.shapes[value]), "int8", None,
                                  QuantParams(np.float32([s]), [z])))


# An exporter writes the node of one QOp: (writer, op, node name, input tensor, output tensor).
Exporter = Callable[[_Writer, QOp, str, int, int], Node]


@torch.no_grad()
def integer_weights(net: QNet, op: QOp) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(int8 weights in torch layout, float32 weight scales, int32 bias, bias scales) exactly as
    "fake" mode uses them."""
    w = op.effective_weight().detach().to(torch.float64)
    b = op.bias.detach().to(torch.float64)
    wq, ws, bq, bs = weight_quant(net, op, w, b)
    return (wq.numpy().astype(np.int8), ws.numpy().astype(np.float32),
            bq.numpy().astype(np.int32), bs.numpy())


def _export_weighted(wr: _Writer, op: QOp, nm: str, x: int, out_t: int) -> Node:
    """CONV_2D (OHWI weights), DEPTHWISE_CONV_2D (1HWO) or FULLY_CONNECTED; per-channel
    weight quantization along the output-channel axis."""
    wq, ws, bq, bs = integer_weights(wr.net, op)
    zeros = np.zeros(ws.size, np.int64)
    bs = bs[:ws.size]                     # per-tensor weights: one bias scale, as TFLite has
    bias_q = QuantParams(bs.astype(np.float32), np.zeros(bs.size, np.int64))
    if op.kind == "linear":
        wt = wr.tensor(Tensor(f"{nm}/weights", wq.shape, "int8", wq, QuantParams(ws, zeros, 0)))
        bt = wr.tensor(Tensor(f"{nm}/bias", bq.shape, "int32", bq, bias_q))
        return Node("FULLY_CONNECTED", [x, wt, bt], [out_t], FullyConnectedAttrs(op.act), nm)
    sh, sw = op.stride
    dh, dw = op.dilation
    if op.depthwise:
        w = np.ascontiguousarray(wq.transpose(1, 2, 3, 0))      # (1, kh, kw, out_c)
        wt = wr.tensor(Tensor(f"{nm}/weights", w.shape, "int8", w, QuantParams(ws, zeros, 3)))
        bt = wr.tensor(Tensor(f"{nm}/bias", bq.shape, "int32", bq, bias_q))
        mult = op.weight.shape[0] // op.in_channels
        attrs = DepthwiseConv2DAttrs(sh, sw, dh, dw, op.padding, op.act, mult)
        return Node("DEPTHWISE_CONV_2D", [x, wt, bt], [out_t], attrs, nm)
    w = np.ascontiguousarray(wq.transpose(0, 2, 3, 1))          # OHWI
    wt = wr.tensor(Tensor(f"{nm}/weights", w.shape, "int8", w, QuantParams(ws, zeros, 0)))
    bt = wr.tensor(Tensor(f"{nm}/bias", bq.shape, "int32", bq, bias_q))
    return Node("CONV_2D", [x, wt, bt], [out_t], Conv2DAttrs(sh, sw, dh, dw, op.padding, op.act),
                nm)


def _export_pool(wr: _Writer, op: QOp, nm: str, x: int, out_t: int) -> Node:
    attrs = Pool2DAttrs(op.kernel[0], op.kernel[1], op.stride[0], op.stride[1], "VALID", "NONE")
    kind = "AVERAGE_POOL_2D" if op.pool == "avg" else "MAX_POOL_2D"
    return Node(kind, [x], [out_t], attrs, nm)


def _export_flatten(wr: _Writer, op: QOp, nm: str, x: int, out_t: int) -> Node:
    shape = nhwc_shape(wr.net.shapes[op.output])
    st = wr.tensor(Tensor(f"{nm}/shape", (len(shape),), "int32", np.array(shape, np.int32)))
    return Node("RESHAPE", [x, st], [out_t], ReshapeAttrs(tuple(shape)), nm)


def _export_pad(wr: _Writer, op: QOp, nm: str, x: int, out_t: int) -> Node:
    t, b, le, r = op.pads
    pads = np.array([[0, 0], [t, b], [le, r], [0, 0]], np.int32)
    pt = wr.tensor(Tensor(f"{nm}/paddings", (4, 2), "int32", pads))
    return Node("PAD", [x, pt], [out_t], NoAttrs(), nm)


def _export_add(wr: _Writer, op: QOp, nm: str, x: int, out_t: int) -> Node:
    return Node("ADD", [x, wr.tid[op.inputs[1]]], [out_t], AddAttrs(op.act), nm)


def _export_slice(wr: _Writer, op: QOp, nm: str, x: int, out_t: int) -> Node:
    bt = wr.tensor(Tensor(f"{nm}/begin", (2,), "int32", np.array([0, op.begin], np.int32)))
    st = wr.tensor(Tensor(f"{nm}/size", (2,), "int32", np.array([1, op.size], np.int32)))
    return Node("SLICE", [x, bt, st], [out_t], NoAttrs(), nm)


def _export_concat(wr: _Writer, op: QOp, nm: str, x: int, out_t: int) -> Node:
    return Node("CONCATENATION", [wr.tid[i] for i in op.inputs], [out_t],
                ConcatenationAttrs(-1), nm)


EXPORTERS: dict[str, Exporter] = {
    "conv": _export_weighted,
    "linear": _export_weighted,
    "pool": _export_pool,
    "flatten": _export_flatten,
    "pad": _export_pad,
    "add": _export_add,
    "slice": _export_slice,
    "concat": _export_concat,
    "relu": lambda wr, op, nm, x, out_t: Node(op.act, [x], [out_t], NoAttrs(), nm),
    "softmax": lambda wr, op, nm, x, out_t: Node("SOFTMAX", [x], [out_t], SoftmaxAttrs(1.0), nm),
}


def to_graph(net: QNet, name: str | None = None, fc_as_conv: bool = True) -> Graph:
    """The int8 IR graph of a calibrated (or QAT-trained) QNet.

    Linear layers are written as 1x1 convolutions between RESHAPEs (``fc_as_conv``,
    kiloml.ir.passes.fully_connected_as_conv) so the model gives the same bytes in kiloml,
    TFLite Micro and LiteRT, whose reference FULLY_CONNECTED requantizes in floating point;
    kiloml compiles them back to its FULLY_CONNECTED kernels. ``fc_as_conv=False`` keeps
    FULLY_CONNECTED nodes (TFLM and kiloml still agree)."""
    wr = _Writer(net)
    wr.tid[0] = wr.activation(0, "input")
    used: set[str] = set()
    for k, op in enumerate(net.ops):
        nm = op.op_name.replace(".", "_") or f"op{k}"
        if nm in used:
            nm = f"{nm}_{k}"
        used.add(nm)
        out_t = wr.activation(op.output, f"{nm}/out")
        if op.kind not in EXPORTERS:
            raise QuantizeError(f"internal: no exporter for QOp kind {op.kind!r}")
        wr.nodes.append(EXPORTERS[op.kind](wr, op, nm, wr.tid[op.inputs[0]], out_t))
        wr.tid[op.output] = out_t
    outs = [net.output, *getattr(net, "extra_outputs", [])]   # several heads: fused first
    g = Graph(wr.tensors, wr.nodes, [wr.tid[0]], [wr.tid[v] for v in outs],
              name=name or net.name)
    _check_graph(g)
    if fc_as_conv:
        from kiloml.ir.passes import fully_connected_as_conv

        g = fully_connected_as_conv(g)
        _check_graph(g)
    return g


def _check_graph(g: Graph) -> None:
    """The exported graph must pass the IR's verifier and every op's own support check: a
    QNet that exports something kiloml cannot run is a bug here, reported as such."""
    from kiloml.ir.ops import REGISTRY
    from kiloml.ir.passes import verify

    verify(g)
    for n, node in enumerate(g.nodes):
        probs = REGISTRY[node.op].check(g, node)
        if probs:
            raise QuantizeError(f"exported node {n} {node.op} ({node.name}): {probs[0]}")


def export_tflite(net: QNet, path: str | Path | None = None) -> bytes:
    """.tflite bytes of the QNet's int8 graph (and write them to ``path`` if given)."""
    from kiloml.io.tflite_writer import write_tflite

    data = write_tflite(to_graph(net))
    if path is not None:
        Path(path).write_bytes(data)
    return data


def quantize_ptq(model: nn.Module, calib: torch.Tensor | np.ndarray, method: str = "minmax",
                 append_softmax: bool = False, input_quant: tuple[float, int] | None = None,
                 batch_size: int = 256, name: str = "model") -> tuple[QNet, Graph]:
    """Post-training quantization in one call: lower, calibrate on ``calib``, export."""
    calib = torch.as_tensor(np.asarray(calib), dtype=torch.float32)
    net = lower(model, calib[:1], append_softmax=append_softmax, name=name)
    calibrate(net, (calib[i:i + batch_size] for i in range(0, len(calib), batch_size)),
              method=method, input_quant=input_quant)
    return net, to_graph(net)


# ---------------------------------------------------------------- inputs of the exported graph


def to_nhwc(x: np.ndarray) -> np.ndarray:
    """A batch in the model's layout -> NHWC (what the exported graph reads)."""
    x = np.asarray(x)
    if x.ndim == 4:
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    if x.ndim == 3:
        return np.ascontiguousarray(x.transpose(0, 2, 1))[:, None]
    return x


def quantize_input(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Float features -> int8 the way the graph's input expects (round half away), for any
    array shape: kiloml.model's arithmetic, the one every engine's input goes through."""
    return quantize_array(x, scale, zero_point, "int8")
