"""``lower``: trace a PyTorch model with ``torch.fx`` and turn it into a QNet (float mode).

The path: fx trace and shape propagation -> one rule per node (kiloml.compress.rules) ->
folding (kiloml.compress.fold: identities, batch norms, activations) -> one QOp per remaining
operation (``BUILDERS``, keyed by kind) -> ``QNet``.

Layout: PyTorch is NCHW, TFLite NHWC. ``torch.flatten`` before a linear layer becomes a
RESHAPE of the NHWC tensor, so the linear layer's weight columns are permuted here to read
the values in that order.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import fx, nn

from kiloml.compress.fold import simplify
from kiloml.compress.qmath import QuantizeError
from kiloml.compress.qnet import (QAdd, QConcat, QConv, QFlatten, QLinear, QNet, QOp, QPad,
                                  QPool, QRelu, QSlice, QSoftmax)
from kiloml.compress.rules import LOp, Lowering, lower_node
from kiloml.train.layers import Conv1dSame, Conv2dSame


class _Tracer(fx.Tracer):
    """Keeps the SAME-padding layers as modules (their forward pads dynamically)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, (Conv2dSame, Conv1dSame)):
            return True
        return super().is_leaf_module(m, qualname)


def lower(model: nn.Module, example_input: torch.Tensor, append_softmax: bool = False,
          name: str = "model") -> QNet:
    """Trace ``model`` (in eval mode) and lower it to a QNet (float mode).

    ``example_input`` is one batch (N >= 1) in the model's layout: (N, C, H, W), (N, C, L) or
    (N, F). ``append_softmax`` adds a SOFTMAX after a model that outputs logits (after each
    output of one that returns a tuple).

    A model whose forward returns a tuple (kiloml.train.models.BranchHeads: several heads)
    gives a QNet whose ``forward`` is the first element and whose ``extra_outputs`` are the
    others; the first element must be computed by the model's last operation.
    """
    from torch.fx.passes.shape_prop import ShapeProp, TensorMetadata

    model = model.eval()
    try:
        graph = _Tracer().trace(model)
    except Exception as e:
        raise QuantizeError(f"cannot trace the model with torch.fx: {e}") from None
    gm = fx.GraphModule(model, graph)
    ex = example_input[:1].detach().float()
    with torch.no_grad():
        ShapeProp(gm).propagate(ex)
    if ex.dim() not in (2, 3, 4):
        raise QuantizeError(f"model input must be (N, F), (N, C, L) or (N, C, H, W), got "
                            f"{list(ex.shape)}")

    lw = Lowering(gm)
    finals = [0]
    for n in graph.nodes:
        if n.op == "placeholder":
            if lw.value_of:
                raise QuantizeError("models with more than one input are not supported")
            lw.value_of[n] = 0
            lw.shapes[0] = lw.internal(n.meta["tensor_meta"].shape)
        elif n.op == "output":
            out = n.args[0]
            outs = list(out) if isinstance(out, (tuple, list)) else [out]
            if not outs:
                raise QuantizeError("the model returns no output")
            finals = [lw.value(o, "output") for o in outs]
        elif not isinstance(n.meta.get("tensor_meta"), TensorMetadata):
            continue            # x.size(0), shape arithmetic: only feeds view/reshape
        elif n.op == "get_attr":
            raise QuantizeError(f"{n.op} {n.target}: tensors stored on the model (get_attr) are "
                                "not supported")
        else:
            lower_node(lw, n)

    lops = lw.lops
    if len(set(finals)) != len(finals):
        raise QuantizeError("the model returns one value twice")
    if append_softmax:   # the extra outputs' first: the first output stays the last op's
        for k in [*range(1, len(finals)), 0]:
            v = lw.fresh(lw.shapes[finals[k]])
            lops.append(LOp("softmax", [finals[k]], v, "softmax" if k == 0 else
                            f"softmax_{k}"))
            finals[k] = v
    lops, finals = simplify(lops, finals)
    final = finals[0]
    ops = build_ops(lops, lw.shapes)
    if not ops:
        raise QuantizeError("the model has no operations")
    if ops[-1].output != final:
        raise QuantizeError("the model's output is not its last operation")
    net = QNet(ops, tuple(ex.shape[1:]), lw.shapes, name=name)
    net.extra_outputs = list(finals[1:])
    return net


Builder = Callable[[LOp, dict, dict], QOp]


def _build_conv(o: LOp, shapes: dict, producer: dict) -> QOp:
    a = o.attrs
    return QConv(o.name, o.inputs, o.output, a["weight"], a.get("bias"), a["stride"],
                 a["dilation"], a["groups"], a["padding"])


def _build_linear(o: LOp, shapes: dict, producer: dict) -> QOp:
    if len(shapes[o.inputs[0]]) != 2:
        raise QuantizeError(f"{o.name}: a linear layer needs a (batch, features) input, got "
                            f"{list(shapes[o.inputs[0]])} (flatten first)")
    w = o.attrs["weight"]
    src = producer.get(o.inputs[0])
    if src is not None and src.kind == "flatten":
        s = shapes[src.inputs[0]]
        if len(s) == 4 and s[2] * s[3] > 1:
            w = permute_columns(w, s[1], s[2], s[3])
    return QLinear(o.name, o.inputs, o.output, w, o.attrs.get("bias"))


BUILDERS: dict[str, Builder] = {
    "conv": _build_conv,
    "linear": _build_linear,
    "pool": lambda o, shapes, producer: QPool(o.name, o.inputs, o.output, o.attrs["pool"],
                                              o.attrs["kernel"], o.attrs["stride"]),
    "flatten": lambda o, shapes, producer: QFlatten(o.name, o.inputs, o.output),
    "pad": lambda o, shapes, producer: QPad(o.name, o.inputs, o.output, o.attrs["pads"]),
    "add": lambda o, shapes, producer: QAdd(o.name, o.inputs, o.output),
    "relu": lambda o, shapes, producer: QRelu(o.name, o.inputs, o.output, o.attrs["act"]),
    "softmax": lambda o, shapes, producer: QSoftmax(o.name, o.inputs, o.output),
    "slice": lambda o, shapes, producer: QSlice(o.name, o.inputs, o.output, o.attrs["begin"],
                                                o.attrs["size"]),
    "concat": lambda o, shapes, producer: QConcat(o.name, o.inputs, o.output),
}


def build_ops(lops: list[LOp], shapes: dict[int, tuple]) -> list[QOp]:
    """One QOp per folded operation, with its fused activation."""
    ops: list[QOp] = []
    producer = {o.output: o for o in lops}
    for o in lops:
        if o.kind not in BUILDERS:
            raise QuantizeError(f"internal: no QOp builder for lowered kind {o.kind!r}")
        op = BUILDERS[o.kind](o, shapes, producer)
        if o.kind != "relu":
            op.act = o.attrs.get("act", "NONE")
        ops.append(op)
    return ops


def permute_columns(w: torch.Tensor, c: int, h: int, wd: int) -> torch.Tensor:
    """Weight columns from NCHW-flatten order to NHWC-flatten order."""
    idx = torch.arange(c * h * wd).reshape(c, h, wd).permute(1, 2, 0).reshape(-1)
    return w[:, idx]
