"""Lowering rules: one small function per PyTorch layer or function, in three tables.

``lower`` (kiloml.compress.lowering) traces a model with ``torch.fx`` and hands every node to the
rule registered for it:

``MODULE_RULES``    keyed by module class (``call_module`` nodes); a subclass uses its nearest
                    registered base class, so ``Conv2dSame`` lowers as an ``nn.Conv2d``;
``FUNCTION_RULES``  keyed by the function object (``call_function``: ``F.relu``, ``operator.add``);
``METHOD_RULES``    keyed by the tensor method name (``call_method``: ``x.view``, ``x.mean``).

A rule appends lowered operations (``LOp``) through the ``Lowering`` context: the QOp kinds
(``conv``, ``linear``, ``pool``, ``flatten``, ``pad``, ``add``, ``softmax``, ``slice``,
``concat``) or the transient
kinds ``bn``, ``act`` and ``identity`` that folding removes (kiloml.compress.fold). Supporting
a new layer is one ``@rule(...)`` function here (plus a QOp and an export rule if it is a new
kind of operation). Rules raise ``QuantizeError`` naming the node for what TFLite cannot do.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.nn.modules.batchnorm import _BatchNorm

from kiloml.compress.qmath import QuantizeError
from kiloml.train.layers import Conv1dSame, Conv2dSame, same_pads


@dataclass
class LOp:
    """One lowered operation before folding; ``attrs`` are the QOp constructor's arguments
    (``act`` for a fused activation)."""

    kind: str
    inputs: list[int]
    output: int
    name: str
    attrs: dict = field(default_factory=dict)


class Lowering:
    """The state of one lowering, shared by the rules: fx node -> value id, each value's
    internal shape (NCHW, 1-D inputs with a height axis of 1, batch 1 at trace time), and the
    lowered operations in order."""

    def __init__(self, gm: fx.GraphModule) -> None:
        self.gm = gm
        self.shapes: dict[int, tuple] = {}
        self.value_of: dict[fx.Node, int] = {}
        self.lops: list[LOp] = []
        self._last = 0

    @staticmethod
    def internal(shape: torch.Size) -> tuple:
        """A traced shape in the internal layout: (N, C, L) becomes (N, C, 1, L)."""
        s = tuple(int(v) for v in shape)
        return (s[0], s[1], 1, s[2]) if len(s) == 3 else s

    def fresh(self, shape: tuple) -> int:
        """A new value id of a given internal shape (for values no fx node computes)."""
        self._last += 1
        self.shapes[self._last] = shape
        return self._last

    def new_value(self, n: fx.Node) -> int:
        """A new value id for node ``n``'s result (the latest one wins when a rule emits
        several operations for one node)."""
        v = self.fresh(self.internal(n.meta["tensor_meta"].shape))
        self.value_of[n] = v
        return v

    def value(self, a: Any, where: str) -> int:
        """The value id of an operand, which must be a tensor the model computed."""
        if not isinstance(a, fx.Node) or a not in self.value_of:
            raise QuantizeError(f"{where}: operand {a!r} is not a tensor computed by the model "
                                "(constants and extra inputs are not supported)")
        return self.value_of[a]

    def add(self, kind: str, ins: list[int], n: fx.Node, **attrs: Any) -> int:
        """Append an operation computing node ``n``; returns its output value."""
        v = self.new_value(n)
        self.lops.append(LOp(kind, ins, v, str(n.target if n.op == "call_module" else n.name),
                             attrs))
        return v

    def global_pool(self, n: fx.Node, x: int, flatten: bool) -> None:
        """An average pool over the whole spatial extent (mean, adaptive pool to 1), and a
        flatten to (batch, channels) when the node drops the spatial axes."""
        s = self.shapes[x]
        if flatten:
            mid = self.fresh((s[0], s[1], 1, 1))
            self.lops.append(LOp("pool", [x], mid, f"{n.name}_pool",
                                 dict(pool="avg", kernel=(s[2], s[3]), stride=(s[2], s[3]))))
            self.add("flatten", [mid], n)
        else:
            self.add("pool", [x], n, pool="avg", kernel=(s[2], s[3]), stride=(s[2], s[3]))


ModuleRule = Callable[[Lowering, fx.Node, nn.Module, str], None]
CallRule = Callable[[Lowering, fx.Node, str], None]
MODULE_RULES: dict[type, ModuleRule] = {}
FUNCTION_RULES: dict[Any, CallRule] = {}
METHOD_RULES: dict[str, CallRule] = {}
SUPPORTED = ("Conv1d/Conv2d, depthwise convolution, Linear, BatchNorm, ReLU, ReLU6, pooling, "
             "flatten, add, softmax, dropout, x[:, a:b] and torch.cat of (batch, features) "
             "tensors")


def module_rule(*classes: type) -> Callable[[ModuleRule], ModuleRule]:
    """Register ``fn(lowering, node, module, where)`` for modules of these classes."""
    def deco(fn: ModuleRule) -> ModuleRule:
        for c in classes:
            MODULE_RULES[c] = fn
        return fn
    return deco


def call_rule(*targets: Any) -> Callable[[CallRule], CallRule]:
    """Register ``fn(lowering, node, where)`` for functions (objects) and tensor methods
    (names, as strings)."""
    def deco(fn: CallRule) -> CallRule:
        for t in targets:
            (METHOD_RULES if isinstance(t, str) else FUNCTION_RULES)[t] = fn
        return fn
    return deco


def lower_node(lw: Lowering, n: fx.Node) -> None:
    """Lower one ``call_module`` / ``call_function`` / ``call_method`` node by its rule."""
    where = f"{n.op} {n.target}"
    if n.op == "call_module":
        m = lw.gm.get_submodule(n.target)
        fn = next((MODULE_RULES[c] for c in type(m).__mro__ if c in MODULE_RULES), None)
        if fn is None:
            raise QuantizeError(f"{where}: {type(m).__name__} has no TFLite int8 equivalent")
        fn(lw, n, m, where)
        return
    table: dict = FUNCTION_RULES if n.op == "call_function" else METHOD_RULES
    fn = table.get(n.target) if n.op in ("call_function", "call_method") else None
    if fn is None:
        raise QuantizeError(f"{where}: no TFLite int8 equivalent (supported: {SUPPORTED})")
    fn(lw, n, where)


def _pair(v: int | tuple) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[-1]))


def _tf_same(size_h: int, size_w: int, k: tuple, s: tuple, d: tuple) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) padding of TFLite's SAME."""
    t, b = same_pads(size_h, k[0], s[0], d[0])
    le, r = same_pads(size_w, k[1], s[1], d[1])
    return t, b, le, r


# ---------------------------------------------------------------- modules


@module_rule(nn.Conv1d, nn.Conv2d)
def _conv(lw: Lowering, n: fx.Node, m: nn.Module, where: str) -> None:
    """Conv1d runs as a CONV_2D of height 1; groups == channels is a depthwise convolution.
    Padding becomes SAME when it equals TFLite's SAME, otherwise an explicit PAD + VALID."""
    x = lw.value(n.args[0], where)
    s = lw.shapes[x]
    if m.padding_mode != "zeros":
        raise QuantizeError(f"{where}: padding_mode {m.padding_mode!r} (only zeros)")
    w = m.weight.detach()
    if isinstance(m, nn.Conv1d):
        w = w.unsqueeze(2)
        k, st, d = (1, m.kernel_size[0]), (1, m.stride[0]), (1, m.dilation[0])
        pad = (0, m.padding[0]) if not isinstance(m.padding, str) else m.padding
    else:
        k, st, d = tuple(m.kernel_size), tuple(m.stride), tuple(m.dilation)
        pad = m.padding
    if m.groups not in (1, s[1]):
        raise QuantizeError(f"{where}: grouped convolution (groups={m.groups}) has no TFLite "
                            "equivalent (only groups=1 or depthwise groups=in_channels)")
    attrs = dict(weight=w, bias=m.bias, stride=st, dilation=d, groups=m.groups)
    if isinstance(m, (Conv2dSame, Conv1dSame)) or pad == "same":
        lw.add("conv", [x], n, padding="SAME", **attrs)
        return
    if pad == "valid" or tuple(pad) == (0, 0):
        lw.add("conv", [x], n, padding="VALID", **attrs)
        return
    ph, pw = _pair(pad)
    if _tf_same(s[2], s[3], k, st, d) == (ph, ph, pw, pw):
        lw.add("conv", [x], n, padding="SAME", **attrs)
        return
    # PyTorch's symmetric padding differs from TFLite's SAME here: an explicit PAD.
    padded = lw.add("pad", [x], n, pads=(ph, ph, pw, pw))
    lw.shapes[padded] = (s[0], s[1], s[2] + 2 * ph, s[3] + 2 * pw)
    lw.add("conv", [padded], n, padding="VALID", **attrs)


@module_rule(nn.Linear)
def _linear(lw: Lowering, n: fx.Node, m: nn.Module, where: str) -> None:
    lw.add("linear", [lw.value(n.args[0], where)], n, weight=m.weight.detach(), bias=m.bias)


@module_rule(_BatchNorm)
def _batch_norm(lw: Lowering, n: fx.Node, m: nn.Module, where: str) -> None:
    """Kept as a ``bn`` op until folding merges it into the layer before it."""
    x = lw.value(n.args[0], where)
    if m.running_mean is None:
        raise QuantizeError(f"{where}: batch norm without running statistics")
    lw.add("bn", [x], n, mean=m.running_mean.detach(), var=m.running_var.detach(), eps=m.eps,
           gamma=None if m.weight is None else m.weight.detach(),
           beta=None if m.bias is None else m.bias.detach())


@module_rule(nn.ReLU)
def _relu_module(lw: Lowering, n: fx.Node, m: nn.Module, where: str) -> None:
    lw.add("act", [lw.value(n.args[0], where)], n, act="RELU")


@module_rule(nn.ReLU6, nn.Hardtanh)
def _relu6_module(lw: Lowering, n: fx.Node, m: nn.Module, where: str) -> None:
    """ReLU6, and Hardtanh(0, 6) which is the same function; other Hardtanh ranges have no
    TFLite activation."""
    x = lw.value(n.args[0], where)
    if not isinstance(m, nn.ReLU6) and not (m.min_val == 0 and m.max_val == 6):
        raise QuantizeError(f"{where}: {type(m).__name__} has no TFLite int8 equivalent")
    lw.add("act", [x], n, act="RELU6")


@module_rule(nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)
def _identity_module(lw: Lowering, n: fx.Node, m: nn.Module, where: str) -> None:
    lw.add("identity", [lw.value(n.args[0], where)], n)


@module_rule(nn.AvgPool2d, nn.MaxPool2d, nn.AvgPool1d, nn.MaxPool1d)
def _pool(lw: Lowering, n: fx.Node, m: nn.Module, where: str) -> None:
    """VALID pooling windows (TFLite's pools pad with SAME only, which PyTorch cannot express
    as a padding count)."""
    x = lw.value(n.args[0], where)
    one_d = isinstance(m, (nn.AvgPool1d, nn.MaxPool1d))
    pad = m.padding if isinstance(m.padding, int) else max(m.padding)
    if pad or m.ceil_mode:
        raise QuantizeError(f"{where}: pooling with padding or ceil_mode is not supported")
    if getattr(m, "dilation", 1) not in (1, (1, 1)):
        raise QuantizeError(f"{where}: dilated pooling is not supported")
    k = _pair(m.kernel_size)
    st = _pair(m.stride if m.stride is not None else m.kernel_size)
    if one_d:
        k, st = (1, k[0]), (1, st[0])
    kind = "max" if isinstance(m, (nn.MaxPool2d, nn.MaxPool1d)) else "avg"
    lw.add("pool", [x], n, pool=kind, kernel=k, stride=st)


@module_rule(nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool1d)
def _adaptive_pool_module(lw: Lowering, n: fx.Node, m: nn.Module, where: str) -> None:
    x = lw.value(n.args[0], where)
    if m.output_size not in (1, (1,), (1, 1)):
        raise QuantizeError(f"{where}: only adaptive pooling to size 1 is supported")
    lw.global_pool(n, x, flatten=False)


@module_rule(nn.Flatten)
def _flatten_module(lw: Lowering, n: fx.Node, m: nn.Module, where: str) -> None:
    x = lw.value(n.args[0], where)
    if m.start_dim != 1 or m.end_dim != -1:
        raise QuantizeError(f"{where}: only Flatten(start_dim=1) is supported")
    _flatten_value(lw, n, x)


@module_rule(nn.Softmax)
def _softmax_module(lw: Lowering, n: fx.Node, m: nn.Module, where: str) -> None:
    lw.add("softmax", [lw.value(n.args[0], where)], n)


# ---------------------------------------------------------------- functions and methods


@call_rule(operator.add, torch.add, "add")
def _add(lw: Lowering, n: fx.Node, where: str) -> None:
    if len(n.args) != 2 or n.kwargs:
        raise QuantizeError(f"{where}: only a + b of two tensors is supported")
    lw.add("add", [lw.value(n.args[0], where), lw.value(n.args[1], where)], n)


@call_rule(F.relu, torch.relu, "relu")
def _relu(lw: Lowering, n: fx.Node, where: str) -> None:
    lw.add("act", [lw.value(n.args[0], where)], n, act="RELU")


@call_rule(F.relu6)
def _relu6(lw: Lowering, n: fx.Node, where: str) -> None:
    lw.add("act", [lw.value(n.args[0], where)], n, act="RELU6")


@call_rule(F.softmax, torch.softmax, "softmax")
def _softmax(lw: Lowering, n: fx.Node, where: str) -> None:
    lw.add("softmax", [lw.value(n.args[0], where)], n)


@call_rule(torch.flatten, "flatten", "view", "reshape")
def _flatten(lw: Lowering, n: fx.Node, where: str) -> None:
    """Only flattening to (batch, features): a RESHAPE of the NHWC tensor (the linear layer
    after it gets its columns permuted to match)."""
    x = lw.value(n.args[0], where)
    out_shape = tuple(n.meta["tensor_meta"].shape)
    if len(out_shape) != 2 or out_shape[0] != lw.shapes[x][0]:
        raise QuantizeError(f"{where}: only flattening to (batch, features) is supported, "
                            f"got {list(out_shape)}")
    _flatten_value(lw, n, x)


def _flatten_value(lw: Lowering, n: fx.Node, x: int) -> None:
    """A spatial value becomes a RESHAPE; a (batch, features) value is already flat."""
    if len(lw.shapes[x]) == 4:
        lw.add("flatten", [x], n)
    else:
        lw.add("identity", [x], n)


@call_rule(torch.mean, "mean")
def _mean(lw: Lowering, n: fx.Node, where: str) -> None:
    """A mean over all spatial axes is a global average pool."""
    args = n.args
    x = lw.value(args[0], where)
    dims = n.kwargs.get("dim", args[1] if len(args) > 1 else None)
    keep = n.kwargs.get("keepdim", args[2] if len(args) > 2 else False)
    rank = len(args[0].meta["tensor_meta"].shape)
    dims = tuple(sorted(int(d) % rank for d in ((dims,) if isinstance(dims, int) else dims)))
    if dims != tuple(range(2, rank)):
        raise QuantizeError(f"{where}: only a mean over all spatial axes is supported")
    lw.global_pool(n, x, flatten=not keep)


@call_rule(F.adaptive_avg_pool2d, F.adaptive_avg_pool1d)
def _adaptive_pool(lw: Lowering, n: fx.Node, where: str) -> None:
    x = lw.value(n.args[0], where)
    size = n.args[1] if len(n.args) > 1 else n.kwargs.get("output_size")
    if size not in (1, (1,), (1, 1)):
        raise QuantizeError(f"{where}: only adaptive pooling to size 1 is supported")
    lw.global_pool(n, x, flatten=False)


@call_rule(F.dropout)
def _dropout(lw: Lowering, n: fx.Node, where: str) -> None:
    lw.add("identity", [lw.value(n.args[0], where)], n)


@call_rule(operator.getitem)
def _getitem(lw: Lowering, n: fx.Node, where: str) -> None:
    """``x[:, a:b]`` of a (batch, features) value: a SLICE (one sensor's range of a fused
    feature vector)."""
    x = lw.value(n.args[0], where)
    idx = n.args[1]
    s = lw.shapes[x]
    full = slice(None, None, None)
    if (len(s) != 2 or not isinstance(idx, tuple) or len(idx) != 2 or idx[0] != full
            or not isinstance(idx[1], slice) or idx[1].step not in (None, 1)
            or not all(v is None or isinstance(v, int) for v in (idx[1].start, idx[1].stop))):
        raise QuantizeError(f"{where}: only x[:, a:b] (constant a, b, step 1) of a "
                            "(batch, features) tensor is supported")
    a, b, _ = idx[1].indices(int(s[1]))
    if b <= a:
        raise QuantizeError(f"{where}: the slice [{a}:{b}] is empty")
    lw.add("slice", [x], n, begin=a, size=b - a)


@call_rule(torch.cat, torch.concat)
def _cat(lw: Lowering, n: fx.Node, where: str) -> None:
    """``torch.cat([a, b, ...], dim=1)`` of (batch, features) values: a CONCATENATION (the
    branches of intermediate fusion merged)."""
    parts = n.args[0] if n.args else n.kwargs.get("tensors")
    dim = n.kwargs.get("dim", n.args[1] if len(n.args) > 1 else 0)
    if not isinstance(parts, (list, tuple)) or not parts:
        raise QuantizeError(f"{where}: expected a list of tensors")
    ins = [lw.value(a, where) for a in parts]
    if any(len(lw.shapes[i]) != 2 for i in ins) or int(dim) not in (1, -1):
        raise QuantizeError(f"{where}: only concatenating (batch, features) tensors along the "
                            "features (dim 1) is supported")
    lw.add("concat", ins, n)
