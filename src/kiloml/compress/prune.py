"""Pruning on a lowered network (kiloml.compress.qnet.QNet, batch norms already folded).

Unstructured magnitude pruning (``magnitude_prune``) zeroes the smallest weights of each
convolution / linear layer through a mask that stays applied during fine-tuning. It makes the
model sparse, not smaller: kiloml stores and runs weights densely, so flash, RAM and latency do
not change (the variant table says so).

Structured channel pruning (``channel_prune``) removes whole output channels of convolutions
(and units of hidden linear layers) and the matching input channels of every layer that reads
them, so the exported model really has fewer weights and MACs. A channel's importance is the
L2 norm of its (BN-folded) output weights times the L2 norm of the consumer weights that read
it. Channels are pruned per layer in groups: a layer's output flows through channel-wise ops
(pooling, padding, standalone ReLU, depthwise convolutions with multiplier 1, which lose the
same channels) to the convolutions / linear layers that consume it. Layers whose output reaches
an ADD (residual connections), a SOFTMAX or the model output are left alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from kiloml.compress.qnet import QNet, QOp


def _weighted(net: QNet) -> list[QOp]:
    return [op for op in net.ops if op.kind in ("conv", "linear")]


@torch.no_grad()
def magnitude_prune(net: QNet, sparsity: float, skip: tuple[str, ...] = ()) -> dict[str, float]:
    """Zero the ``sparsity`` fraction of smallest-magnitude weights of every conv / linear layer
    (per layer; layers named in ``skip`` untouched); returns each layer's resulting sparsity."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError("sparsity must be in [0, 1)")
    out = {}
    for op in _weighted(net):
        if op.op_name in skip:
            continue
        w = op.weight.detach().abs() * op.mask
        k = int(round(sparsity * w.numel()))
        if k > 0:
            thr = torch.kthvalue(w.reshape(-1), k).values
            op.mask.copy_((w > thr).to(op.mask.dtype))
        op.weight.mul_(op.mask)
        out[op.op_name] = float(1.0 - op.mask.mean())
    return out


def sparsity(net: QNet) -> float:
    """Fraction of zero weights over all conv / linear layers."""
    tot = zero = 0
    for op in _weighted(net):
        w = op.effective_weight().detach()
        tot += w.numel()
        zero += int((w == 0).sum())
    return zero / tot if tot else 0.0


@dataclass
class _Group:
    producer: QOp                 # conv (not depthwise) or linear whose output channels go
    passthrough: list[QOp]        # depthwise convs (multiplier 1) that lose the same channels
    consumers: list[tuple[QOp, str]]   # (op, "conv" | "linear-flat" | "linear") reading them
    flat_hw: int = 1              # spatial positions per channel when a flatten precedes a linear


def _groups(net: QNet) -> list[_Group]:
    users: dict[int, list[QOp]] = {}
    for op in net.ops:
        for v in op.inputs:
            users.setdefault(v, []).append(op)
    groups = []
    for op in _weighted(net):
        if op.kind == "conv" and op.depthwise:
            continue
        g = _Group(op, [], [])
        ok = True
        stack = [(op.output, 1)]
        while stack and ok:
            v, hw = stack.pop()
            if v == net.output:
                ok = False
                break
            for u in users.get(v, []):
                if u.kind == "conv" and u.depthwise:
                    if u.weight.shape[0] != u.in_channels:
                        ok = False
                        break
                    g.passthrough.append(u)
                    stack.append((u.output, hw))
                elif u.kind == "conv":
                    g.consumers.append((u, "conv"))
                elif u.kind == "linear":
                    g.consumers.append((u, "linear"))
                    g.flat_hw = hw
                elif u.kind in ("pool", "pad") or (u.kind == "relu"):
                    stack.append((u.output, hw))
                elif u.kind == "flatten":
                    s = net.shapes[u.inputs[0]]
                    stack.append((u.output, s[2] * s[3] if len(s) == 4 else 1))
                else:                       # add, softmax: channels must stay aligned
                    ok = False
                    break
        if ok and g.consumers:
            groups.append(g)
    return groups


def _channel_cols(keep: np.ndarray, channels: int, hw: int) -> np.ndarray:
    """Linear input columns (NHWC flatten order: position-major) of the kept channels."""
    return (np.arange(hw)[:, None] * channels + keep[None, :]).reshape(-1)


@torch.no_grad()
def channel_prune(net: QNet, ratio: float, multiple: int = 1, min_channels: int = 4) -> dict:
    """Remove ``ratio`` of the output channels of every prunable layer (see the module doc),
    keeping a multiple of ``multiple`` and at least ``min_channels``. Modifies ``net`` in place
    (parameters are replaced, so build optimizers afterwards); returns {layer: (before, after)}.
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError("ratio must be in [0, 1)")
    report = {}
    for g in _groups(net):
        p = g.producer
        c = p.weight.shape[0]
        keep_n = max(min_channels, int(round(c * (1 - ratio))))
        if multiple > 1:
            keep_n = max(multiple, int(round(keep_n / multiple)) * multiple)
        keep_n = min(keep_n, c)
        if keep_n >= c:
            continue
        score = p.effective_weight().reshape(c, -1).norm(dim=1).double()
        for d in g.passthrough:
            score = score * d.effective_weight().reshape(c, -1).norm(dim=1).double()
        cons = torch.zeros(c, dtype=torch.float64)
        for u, kind in g.consumers:
            w = u.effective_weight().double()
            if kind == "conv":
                cons += w.transpose(0, 1).reshape(c, -1).pow(2).sum(1)
            else:
                hw = w.shape[1] // c
                cons += w.reshape(w.shape[0], hw, c).pow(2).sum((0, 1))
        score = score * cons.sqrt()
        keep = np.sort(torch.argsort(score, descending=True)[:keep_n].numpy())
        kt = torch.as_tensor(keep)
        _slice_out(p, kt)
        for d in g.passthrough:
            _slice_out(d, kt)
            d.groups = keep_n
        for u, kind in g.consumers:
            if kind == "conv":
                _set(u, "weight", u.weight.detach()[:, kt])
                _set_mask(u, u.mask[:, kt])
            else:
                hw = u.weight.shape[1] // c
                cols = torch.as_tensor(_channel_cols(keep, c, hw))
                _set(u, "weight", u.weight.detach()[:, cols])
                _set_mask(u, u.mask[:, cols])
        report[p.op_name] = (c, keep_n)
    refresh_shapes(net)
    return report


def _set(op: QOp, name: str, value: torch.Tensor) -> None:
    setattr(op, name, nn.Parameter(value.clone().contiguous()))


def _set_mask(op: QOp, mask: torch.Tensor) -> None:
    op.register_buffer("mask", mask.clone().contiguous(), persistent=True)


def _slice_out(op: QOp, keep: torch.Tensor) -> None:
    _set(op, "weight", op.weight.detach()[keep])
    _set(op, "bias", op.bias.detach()[keep])
    _set_mask(op, op.mask[keep])


@torch.no_grad()
def refresh_shapes(net: QNet) -> None:
    """Recompute every value's shape (after channels were removed)."""
    mode, training = net.mode, net.training
    net.set_mode("float").eval()
    shapes = {0: net.shapes[0]}
    x = torch.zeros((1,) + tuple(net.input_shape))
    vals = {0: net.to_internal(x)}
    for op in net.ops:
        y = op.run(net, [vals[i] for i in op.inputs])
        vals[op.output] = y
        shapes[op.output] = tuple(y.shape)
    net.shapes = shapes
    net.set_mode(mode).train(training)


def count_params(net: QNet) -> int:
    return sum(op.weight.numel() + op.bias.numel() for op in _weighted(net))

