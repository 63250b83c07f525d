"""Folding the lowered operations before they become a QNet: what TFLite int8 has no op for.

Three passes over the ``LOp`` list, in order (``simplify`` runs them):

1. identities (dropout, ``nn.Identity``, flattening an already flat value) are dropped;
2. batch norms are folded into the convolution or linear layer before them (TFLite has no
   batch norm: its statistics become that layer's weights and bias);
3. ReLU / ReLU6 are fused into the conv, linear or add before them (TFLite's fused
   activation: a clamp of the output, free at run time); one that cannot be fused stays a
   standalone ``relu`` op.

Each pass returns the new list and the (possibly renamed) value ids of the model's outputs
(one, or several for a model with several heads: kiloml.train.models.BranchHeads).
"""

from __future__ import annotations

import torch

from kiloml.compress.qmath import QuantizeError
from kiloml.compress.rules import LOp


def simplify(lops: list[LOp], finals: list[int]) -> tuple[list[LOp], list[int]]:
    """All three passes (see the module doc); ``finals``: the model's output values."""
    lops, finals = drop_identities(lops, finals)
    lops, finals = fold_batch_norms(lops, finals)
    return fuse_activations(lops, finals)


def drop_identities(lops: list[LOp], finals: list[int]) -> tuple[list[LOp], list[int]]:
    """Remove ``identity`` ops; their readers read the identity's input instead."""
    alias: dict[int, int] = {}
    kept = []
    for op in lops:
        op.inputs = [alias.get(i, i) for i in op.inputs]
        if op.kind == "identity":
            alias[op.output] = op.inputs[0]
        else:
            kept.append(op)
    return kept, [alias.get(f, f) for f in finals]


def _users(lops: list[LOp], v: int) -> list[LOp]:
    return [o for o in lops if v in o.inputs]


def fold_batch_norms(lops: list[LOp], finals: list[int]) -> tuple[list[LOp], list[int]]:
    """Fold every ``bn`` into the conv / linear that produces its input, which nothing else
    may read (the unfolded value would be lost)."""
    producer = {o.output: o for o in lops}
    out: list[LOp] = []
    for op in lops:
        if op.kind == "bn":
            p = producer.get(op.inputs[0])
            if p is None or p.kind not in ("conv", "linear") or len(_users(lops, p.output)) != 1 \
                    or p.attrs.get("act", "NONE") != "NONE" or p.output in finals:
                raise QuantizeError(f"{op.name}: a batch norm must directly follow a convolution "
                                    "or linear layer (nothing else reads that layer's output)")
            fold_batch_norm(p, op.attrs)
            finals = _rename(lops, op.output, p.output, finals)
            continue
        out.append(op)
    return out, finals


def fuse_activations(lops: list[LOp], finals: list[int]) -> tuple[list[LOp], list[int]]:
    """Fuse each ``act`` into its producer when that is a conv, linear or add without an
    activation whose output only the act reads; otherwise keep it as a ``relu`` op."""
    producer = {o.output: o for o in lops}
    out: list[LOp] = []
    for op in lops:
        if op.kind == "act":
            p = producer.get(op.inputs[0])
            if (p is not None and p.kind in ("conv", "linear", "add")
                    and p.attrs.get("act", "NONE") == "NONE" and len(_users(lops, p.output)) == 1
                    and p.output not in finals):
                p.attrs["act"] = op.attrs["act"]
                finals = _rename(lops, op.output, p.output, finals)
                continue
            op.kind = "relu"
        out.append(op)
    return out, finals


def _rename(lops: list[LOp], old: int, new: int, finals: list[int]) -> list[int]:
    """Value ``old`` becomes ``new`` everywhere; returns the model outputs' new ids."""
    for o in lops:
        o.inputs = [new if i == old else i for i in o.inputs]
        if o.output == old:
            o.output = new
    return [new if f == old else f for f in finals]


def fold_batch_norm(p: LOp, bn: dict) -> None:
    """Scale the weights of ``p`` per output channel by gamma / sqrt(var + eps) and shift its
    bias to (b - mean) x that + beta, in float64, so the folded layer computes the original
    layer followed by the eval-mode batch norm."""
    w = p.attrs["weight"].double()
    b = p.attrs["bias"].detach().double() if p.attrs.get("bias") is not None else \
        torch.zeros(w.shape[0], dtype=torch.float64)
    gamma = bn["gamma"].double() if bn["gamma"] is not None else torch.ones_like(b)
    beta = bn["beta"].double() if bn["beta"] is not None else torch.zeros_like(b)
    inv = gamma / torch.sqrt(bn["var"].double() + bn["eps"])
    shape = [-1] + [1] * (w.dim() - 1)
    p.attrs["weight"] = (w * inv.reshape(shape)).float()
    p.attrs["bias"] = ((b - bn["mean"].double()) * inv + beta).float()
