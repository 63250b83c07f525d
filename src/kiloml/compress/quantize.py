"""PyTorch model -> kiloml int8 IR with TFLite's integer semantics: PTQ and QAT.

The path a model takes::

    nn.Module --lower()--> QNet (float) --calibrate()--> QNet (fake) --to_graph()--> Graph
                                               \\--QAT: train QNet in "fake" mode--/

``lower`` traces the model with ``torch.fx`` and produces a ``QNet``: a flat list of the
operations TFLite int8 has (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, AVERAGE/MAX_POOL_2D,
RESHAPE, ADD, SOFTMAX, PAD, RELU, RELU6), with batch norms folded into the preceding
convolution or linear layer and ReLU/ReLU6 fused into the op before them. A QNet is itself a
trainable ``nn.Module`` (pruning and fine-tuning work on it) with three modes:

``float``    the folded model in float; equals the original model's eval-mode output.
``observe``  float, and each activation's observer records its values (calibration).
``fake``     every tensor goes through TFLite's quantization, as the int8 model computes it:
             inputs and activations asymmetric int8 per tensor (rounding half away from zero,
             saturating, clamped to the fused activation's range), weights symmetric int8 per
             output channel (per tensor for FULLY_CONNECTED, as TFLite's converter does), biases
             int32 with scale input_scale x weight_scale, average pooling and reshapes keeping
             their input's quantization, softmax output 1/256 with zero point -128. Gradients
             pass straight through (inside the clamp range) for quantization-aware training.

The exported graph and "fake" mode derive every integer from the same functions, so the int8
model differs from "fake" evaluation only by TFLite's fixed-point requantization (a multiplier
rounded to 31 bits, double rounding; ADD's 20-bit input shift; the integer softmax): in
practice a 1-LSB difference on a small fraction of values and the same top-1 class on all but
a handful of samples in thousands (the tests measure it).

Layout: PyTorch is NCHW, TFLite NHWC. Graph inputs are NHWC: a (N, C, H, W) model input
becomes (1, H, W, C), a 1-D (N, C, L) input (1, 1, L, C) (Conv1d runs as a CONV_2D of height
1), a (N, F) input (1, F). For one-channel 2-D inputs (MFCC, 49x10) and channels-last 1-D
windows the bytes are the same as the feature array's. ``torch.flatten`` before a linear layer
becomes a RESHAPE of the NHWC tensor; the linear layer's weight columns are permuted to match.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from kiloml.errors import KilomlError
from kiloml.ir.graph import Graph, Node, QuantParams, Tensor
from kiloml.ir.ops.add import AddAttrs
from kiloml.ir.ops.base import NoAttrs
from kiloml.ir.ops.conv2d import Conv2DAttrs
from kiloml.ir.ops.depthwise_conv2d import DepthwiseConv2DAttrs
from kiloml.ir.ops.fully_connected import FullyConnectedAttrs
from kiloml.ir.ops.pool2d import Pool2DAttrs
from kiloml.ir.ops.reshape import ReshapeAttrs
from kiloml.ir.ops.softmax import SoftmaxAttrs
from kiloml.train.layers import Conv1dSame, Conv2dSame, same_pads

QMIN, QMAX = -128, 127
WMAX = 127                      # symmetric weights use [-127, 127], as TFLite does
INT32_MAX = (1 << 31) - 1
SOFTMAX_SCALE, SOFTMAX_ZP = 1.0 / 256, -128
METHODS = ("minmax", "percentile", "mse")


class QuantizeError(KilomlError):
    """The model uses a layer or pattern that has no TFLite int8 equivalent."""


# ---------------------------------------------------------------- rounding and scales


def round_half_away(x: torch.Tensor) -> torch.Tensor:
    """C's ``round``: halves away from zero (TFLite's quantization rounding)."""
    return torch.sign(x) * torch.floor(torch.abs(x) + 0.5)


def _ste(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Value ``y``, gradient of ``x`` (straight-through estimator)."""
    return x + (y - x).detach()


def f32(v: float) -> float:
    """A float as the float32 a .tflite file stores."""
    return float(np.float32(v))


def qparams_from_range(lo: float, hi: float) -> tuple[float, int]:
    """Asymmetric int8 (scale, zero point) covering [lo, hi] (widened to include 0), as
    TFLite's converter derives them: scale = (hi - lo) / 255, zero point rounded and nudged
    into [-128, 127]."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo < 1e-6:
        hi = lo + 1e-6
    scale = f32((hi - lo) / (QMAX - QMIN))
    z = QMIN - lo / scale
    zp = int(np.clip(np.sign(z) * np.floor(abs(z) + 0.5), QMIN, QMAX))
    return scale, zp


def act_range(act: str, scale: float, zp: int) -> tuple[int, int]:
    """Clamp range of a fused activation in the output's quantization (TFLite's
    CalculateActivationRangeQuantized)."""
    from kiloml.ir.quant import activation_range

    return activation_range(act, scale, zp)


def fake_quant(x: torch.Tensor, scale: float, zp: int, lo: int = QMIN, hi: int = QMAX) -> torch.Tensor:
    """Quantize-dequantize with TFLite rounding; gradient 1 inside the representable range."""
    q = torch.clamp(round_half_away(x / scale) + zp, lo, hi)
    y = (q - zp) * scale
    xc = torch.clamp(x, (lo - zp) * scale, (hi - zp) * scale)
    return _ste(xc, y)


def weight_scales(w: torch.Tensor, per_channel: bool, axis: int = 0) -> torch.Tensor:
    """Symmetric scales max|w| / 127 (per output channel or per tensor), as float32 values."""
    a = w.detach().abs()
    if per_channel:
        dims = [d for d in range(w.dim()) if d != axis]
        m = a.amax(dim=dims) if dims else a
    else:
        m = a.max().reshape(1)
    s = torch.clamp(m.to(torch.float64) / WMAX, min=1e-12)
    return s.to(torch.float32).to(torch.float64)


def quantize_weight(w: torch.Tensor, scales: torch.Tensor, axis: int = 0) -> torch.Tensor:
    """Integer weights (as floats) round(w / s) in [-127, 127]."""
    shape = [1] * w.dim()
    shape[axis] = -1
    s = scales.reshape(shape).to(w.dtype) if scales.numel() > 1 else scales.to(w.dtype)
    return torch.clamp(round_half_away(w / s), -WMAX, WMAX)


def quantize_bias(b: torch.Tensor, bias_scales: torch.Tensor) -> torch.Tensor:
    """Integer biases (as floats) round(b / (s_in s_w)) saturated to int32."""
    return torch.clamp(round_half_away(b / bias_scales.to(b.dtype)), -INT32_MAX, INT32_MAX)


# ---------------------------------------------------------------- observers


class Observer(nn.Module):
    """Range of one activation tensor: calibration statistics, EMA during QAT, or fixed."""

    def __init__(self, reservoir: int = 200_000) -> None:
        super().__init__()
        self.register_buffer("lo", torch.zeros((), dtype=torch.float64))
        self.register_buffer("hi", torch.zeros((), dtype=torch.float64))
        self.register_buffer("seen", torch.zeros((), dtype=torch.bool))
        self.register_buffer("fixed", torch.zeros((), dtype=torch.bool))
        self.register_buffer("frozen", torch.zeros((), dtype=torch.bool))
        self.register_buffer("fixed_qp", torch.zeros(2, dtype=torch.float64))
        self.reservoir = reservoir
        self.samples: list[np.ndarray] = []
        self._n = 0
        self.momentum = 0.01
        self.non_negative = False   # output of a fused ReLU / ReLU6: range starts at 0

    def reset(self) -> None:
        self.seen.fill_(False)
        self.samples = []
        self._n = 0

    def set_fixed(self, scale: float, zero_point: int) -> None:
        self.fixed.fill_(True)
        self.fixed_qp[0] = f32(scale)
        self.fixed_qp[1] = int(zero_point)
        self.lo.fill_((QMIN - zero_point) * f32(scale))
        self.hi.fill_((QMAX - zero_point) * f32(scale))
        self.seen.fill_(True)

    def set_range(self, lo: float, hi: float) -> None:
        self.lo.fill_(float(lo))
        self.hi.fill_(float(hi))
        self.seen.fill_(True)

    @torch.no_grad()
    def observe(self, x: torch.Tensor, keep_samples: bool = True) -> None:
        lo, hi = float(x.min()), float(x.max())
        if not bool(self.seen):
            self.lo.fill_(lo)
            self.hi.fill_(hi)
            self.seen.fill_(True)
        else:
            self.lo.fill_(min(float(self.lo), lo))
            self.hi.fill_(max(float(self.hi), hi))
        if keep_samples:
            flat = x.detach().reshape(-1).to(torch.float32).cpu().numpy()
            budget = max(self.reservoir // 8, 1)
            if flat.size > budget:
                rng = np.random.default_rng(self._n)
                flat = flat[rng.choice(flat.size, budget, replace=False)]
            self.samples.append(flat)
            self._n += 1
            total = sum(s.size for s in self.samples)
            if total > 2 * self.reservoir:
                allv = np.concatenate(self.samples)
                rng = np.random.default_rng(self._n)
                self.samples = [allv[rng.choice(allv.size, self.reservoir, replace=False)]]

    @torch.no_grad()
    def ema(self, x: torch.Tensor) -> None:
        """QAT: move the range towards this batch's min/max (unless fixed or frozen)."""
        if bool(self.fixed) or bool(self.frozen):
            return
        lo, hi = float(x.min()), float(x.max())
        if not bool(self.seen):
            self.set_range(lo, hi)
            return
        m = self.momentum
        self.lo.fill_((1 - m) * float(self.lo) + m * lo)
        self.hi.fill_((1 - m) * float(self.hi) + m * hi)

    def qparams(self) -> tuple[float, int]:
        if bool(self.fixed):
            return float(self.fixed_qp[0]), int(self.fixed_qp[1])
        if not bool(self.seen):
            raise QuantizeError("an activation was never observed: calibrate the model first")
        lo = 0.0 if self.non_negative else float(self.lo)
        return qparams_from_range(lo, float(self.hi))

    def finish(self, method: str, percentile: float = 99.99) -> None:
        """Set the range from the calibration statistics with ``method``."""
        if bool(self.fixed) or not bool(self.seen):
            return
        if method == "minmax" or not self.samples:
            pass
        else:
            v = np.concatenate(self.samples).astype(np.float64)
            if method == "percentile":
                lo = float(np.percentile(v, 100.0 - percentile))
                hi = float(np.percentile(v, percentile))
                self.set_range(min(lo, 0.0), max(hi, 0.0))
            elif method == "mse":
                self.set_range(*_mse_range(v, float(self.lo), float(self.hi), self.non_negative))
            else:
                raise QuantizeError(f"unknown calibration method {method!r} "
                                    f"(have: {', '.join(METHODS)})")
        self.samples = []


def _mse_range(v: np.ndarray, lo: float, hi: float, non_negative: bool) -> tuple[float, float]:
    """The clipping range (a shrunk [lo, hi]) minimising the int8 quantization MSE on ``v``."""
    lo = 0.0 if non_negative else min(lo, 0.0)
    hi = max(hi, 0.0)
    best, best_err = (lo, hi), np.inf
    for a in np.linspace(0.15, 1.0, 69):
        s, z = qparams_from_range(lo * a, hi * a)
        q = np.clip(np.sign(v / s) * np.floor(np.abs(v / s) + 0.5) + z, QMIN, QMAX)
        err = float(np.mean(((q - z) * s - v) ** 2))
        if err < best_err:
            best, best_err = (lo * a, hi * a), err
    return best


# ---------------------------------------------------------------- lowered operations


class QOp(nn.Module):
    """One TFLite int8 operation of a QNet. ``inputs``/``output`` are value ids."""

    kind = ""
    shares_quant = False      # output keeps input 0's quantization (pool, reshape, pad, relu6)

    def __init__(self, name: str, inputs: list[int], output: int) -> None:
        super().__init__()
        self.op_name = name
        self.inputs = list(inputs)
        self.output = output
        self.act = "NONE"

    def run(self, net: "QNet", xs: list[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError


class QConv(QOp):
    """CONV_2D or DEPTHWISE_CONV_2D (groups == input channels), weight (O, I/groups, kh, kw)."""

    kind = "conv"

    def __init__(self, name, inputs, output, weight, bias, stride, dilation, groups, padding):
        super().__init__(name, inputs, output)
        self.weight = nn.Parameter(weight.detach().clone().float())
        b = bias if bias is not None else torch.zeros(weight.shape[0])
        self.bias = nn.Parameter(b.detach().clone().float())
        self.stride = tuple(int(s) for s in stride)
        self.dilation = tuple(int(d) for d in dilation)
        self.groups = int(groups)
        self.padding = padding          # "SAME" or "VALID"
        self.register_buffer("mask", torch.ones_like(self.weight), persistent=True)

    @property
    def depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.in_channels

    @property
    def in_channels(self) -> int:
        return self.weight.shape[1] * self.groups

    def effective_weight(self) -> torch.Tensor:
        return self.weight * self.mask

    def _conv(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.padding == "SAME":
            t, bo = same_pads(x.shape[2], w.shape[2], self.stride[0], self.dilation[0])
            le, r = same_pads(x.shape[3], w.shape[3], self.stride[1], self.dilation[1])
            if t or bo or le or r:
                x = F.pad(x, (le, r, t, bo))
        return F.conv2d(x, w, b, self.stride, 0, self.dilation, self.groups)

    def quant_axis(self) -> int:
        return 0

    def run(self, net, xs):
        x = xs[0]
        w = self.effective_weight().to(x.dtype)
        b = self.bias.to(x.dtype)
        if net.mode == "fake":
            w, b = _fake_weights(net, self, w, b)
        y = self._conv(x, w, b)
        return y if net.mode == "fake" else _float_act(y, self.act)


class QLinear(QOp):
    kind = "linear"

    def __init__(self, name, inputs, output, weight, bias):
        super().__init__(name, inputs, output)
        self.weight = nn.Parameter(weight.detach().clone().float())
        b = bias if bias is not None else torch.zeros(weight.shape[0])
        self.bias = nn.Parameter(b.detach().clone().float())
        self.register_buffer("mask", torch.ones_like(self.weight), persistent=True)
        self.per_channel = False

    def effective_weight(self) -> torch.Tensor:
        return self.weight * self.mask

    def run(self, net, xs):
        x = xs[0]
        w = self.effective_weight().to(x.dtype)
        b = self.bias.to(x.dtype)
        if net.mode == "fake":
            w, b = _fake_weights(net, self, w, b)
        y = F.linear(x, w, b)
        return y if net.mode == "fake" else _float_act(y, self.act)


def weight_quant(net: "QNet", op: QOp, w: torch.Tensor, b: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(integer weights, weight scales, integer biases, bias scales) of a conv/linear op, as
    floats: the one definition "fake" mode and the exporter share.

    Weight scales are max|w| / 127 per output channel (per tensor for FULLY_CONNECTED), raised
    where needed so that the bias fits int32 with half its range to spare (a pruned, all-zero
    channel whose bias is not zero), and rounded to float32 as the .tflite file stores them.
    """
    s_x, _ = net.qparams_of(op.inputs[0])
    per_channel = op.kind == "conv" or getattr(op, "per_channel", False)
    ws = weight_scales(w, per_channel, 0)
    bmax = b.detach().abs().to(torch.float64)
    if ws.numel() == 1:
        bmax = bmax.max().reshape(1)
    ws = torch.maximum(ws, bmax / (s_x * INT32_MAX / 2)).to(torch.float32).to(torch.float64)
    wq = quantize_weight(w, ws, 0)
    bs = (s_x * ws).expand(w.shape[0]) if ws.numel() == 1 else s_x * ws
    return wq, ws, quantize_bias(b, bs), bs


def _fake_weights(net: "QNet", op: QOp, w: torch.Tensor, b: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    wq, ws, bq, bs = weight_quant(net, op, w, b)
    shape = [-1] + [1] * (w.dim() - 1)
    w_hat = _ste(w, wq * (ws.reshape(shape) if ws.numel() > 1 else ws).to(w.dtype))
    b_hat = _ste(b, bq * bs.to(b.dtype))
    return w_hat, b_hat


def _float_act(y: torch.Tensor, act: str) -> torch.Tensor:
    if act == "RELU":
        return F.relu(y)
    if act == "RELU6":
        return F.relu6(y)
    return y


class QPool(QOp):
    """AVERAGE_POOL_2D / MAX_POOL_2D, VALID padding (a global pool has the input's size)."""

    kind = "pool"
    shares_quant = True

    def __init__(self, name, inputs, output, pool: str, kernel, stride):
        super().__init__(name, inputs, output)
        self.pool = pool
        self.kernel = tuple(int(k) for k in kernel)
        self.stride = tuple(int(s) for s in stride)

    def run(self, net, xs):
        x = xs[0]
        if self.pool == "max":
            return F.max_pool2d(x, self.kernel, self.stride)
        return F.avg_pool2d(x, self.kernel, self.stride)


class QFlatten(QOp):
    """RESHAPE of an NHWC tensor to (1, H*W*C): flattens in NHWC order."""

    kind = "flatten"
    shares_quant = True

    def run(self, net, xs):
        x = xs[0]
        if x.dim() == 4:
            x = x.permute(0, 2, 3, 1)
        return x.reshape(x.shape[0], -1)


class QPad(QOp):
    kind = "pad"
    shares_quant = True

    def __init__(self, name, inputs, output, pads: tuple[int, int, int, int]):
        super().__init__(name, inputs, output)
        self.pads = tuple(int(p) for p in pads)   # (top, bottom, left, right)

    def run(self, net, xs):
        t, b, le, r = self.pads
        return F.pad(xs[0], (le, r, t, b))


class QAdd(QOp):
    kind = "add"

    def run(self, net, xs):
        y = xs[0] + xs[1]
        return y if net.mode == "fake" else _float_act(y, self.act)


class QRelu(QOp):
    """Standalone RELU / RELU6 (one that could not be fused into the op before it)."""

    kind = "relu"

    def __init__(self, name, inputs, output, act: str):
        super().__init__(name, inputs, output)
        self.act = act
        self.shares_quant = act == "RELU6"

    def run(self, net, xs):
        return _float_act(xs[0], self.act)


class QSoftmax(QOp):
    kind = "softmax"

    def run(self, net, xs):
        return torch.softmax(xs[0], dim=-1)


# ---------------------------------------------------------------- the lowered network


class QNet(nn.Module):
    """A model lowered to TFLite int8 operations (see the module doc)."""

    def __init__(self, ops: list[QOp], input_shape: tuple[int, ...], shapes: dict[int, tuple],
                 name: str = "model") -> None:
        super().__init__()
        self.ops = nn.ModuleList(ops)
        self.input_shape = tuple(input_shape)      # the original model's, without batch
        self.shapes = dict(shapes)                 # value id -> internal torch shape (batch 1)
        self.name = name
        self.mode = "float"
        self.compute_dtype = torch.float32
        self.quant_of: dict[int, int] = {}         # value id -> observer index
        observers = []
        self.quant_of[0] = 0
        observers.append(Observer())
        for op in ops:
            if op.shares_quant:
                self.quant_of[op.output] = self.quant_of[op.inputs[0]]
            elif op.kind == "softmax":
                ob = Observer()
                ob.set_fixed(SOFTMAX_SCALE, SOFTMAX_ZP)
                self.quant_of[op.output] = len(observers)
                observers.append(ob)
            else:
                ob = Observer()
                ob.non_negative = op.act in ("RELU", "RELU6")
                self.quant_of[op.output] = len(observers)
                observers.append(ob)
        self.observers = nn.ModuleList(observers)
        self.output = ops[-1].output if ops else 0

    # -- modes ---------------------------------------------------------------------------------
    def set_mode(self, mode: str) -> "QNet":
        if mode not in ("float", "observe", "fake"):
            raise ValueError(mode)
        self.mode = mode
        return self

    def qparams_of(self, value: int) -> tuple[float, int]:
        return self.observers[self.quant_of[value]].qparams()

    def freeze_observers(self, frozen: bool = True) -> None:
        for ob in self.observers:
            ob.frozen.fill_(frozen)

    @property
    def ends_with_softmax(self) -> bool:
        return bool(len(self.ops)) and self.ops[-1].kind == "softmax"

    # -- forward -------------------------------------------------------------------------------
    def to_internal(self, x: torch.Tensor) -> torch.Tensor:
        """Model-layout batch -> internal layout (1-D inputs get a height axis)."""
        if len(self.input_shape) == 2:
            x = x.unsqueeze(2)
        return x.to(self.compute_dtype)

    def forward(self, x: torch.Tensor, logits: bool = False) -> torch.Tensor:
        """The model's output; ``logits`` stops before a final softmax (for training)."""
        vals: dict[int, torch.Tensor] = {0: self._quant(0, self.to_internal(x), "NONE")}
        last = len(self.ops) - 1
        for k, op in enumerate(self.ops):
            if logits and k == last and op.kind == "softmax":
                return vals[op.inputs[0]]
            y = op.run(self, [vals[i] for i in op.inputs])
            vals[op.output] = self._quant(op.output, y, op.act, op)
        return vals[self.output]

    def _quant(self, value: int, y: torch.Tensor, act: str, op: QOp | None = None) -> torch.Tensor:
        ob = self.observers[self.quant_of[value]]
        if self.mode == "float":
            return y
        if self.mode == "observe":
            if op is None or not op.shares_quant:
                ob.observe(_float_act(y, act))
            return _float_act(y, act)
        if self.training and (op is None or not op.shares_quant):
            ob.ema(_float_act(y, act))
        s, z = ob.qparams()
        lo, hi = act_range(act, s, z) if act != "NONE" else (QMIN, QMAX)
        return fake_quant(y, s, z, lo, hi)

    # -- info ----------------------------------------------------------------------------------
    def macs(self) -> int:
        """Multiply-accumulates per inference, counted as kiloml's ops count them (a pooling
        window element or an ADD element is one MAC)."""
        total = 0
        for op in self.ops:
            out = int(np.prod(self.shapes[op.output][1:]))
            if op.kind == "conv":
                w = op.weight
                total += out * w.shape[1] * w.shape[2] * w.shape[3]
            elif op.kind == "linear":
                total += op.weight.shape[0] * op.weight.shape[1]
            elif op.kind == "pool":
                total += out * op.kernel[0] * op.kernel[1]
            elif op.kind == "add":
                total += out
        return total

    def summary(self) -> list[str]:
        lines = []
        for op in self.ops:
            extra = f" act={op.act}" if op.act != "NONE" else ""
            lines.append(f"{op.kind:8s} {op.op_name:24s} {list(op.inputs)} -> {op.output} "
                         f"{list(self.shapes[op.output])}{extra}")
        return lines


# ---------------------------------------------------------------- lowering (torch.fx)


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, (Conv2dSame, Conv1dSame)):
            return True
        return super().is_leaf_module(m, qualname)


@dataclass
class _LOp:
    kind: str
    inputs: list[int]
    output: int
    name: str
    attrs: dict = field(default_factory=dict)


def _tf_same(size_h, size_w, k, s, d) -> tuple[int, int, int, int]:
    t, b = same_pads(size_h, k[0], s[0], d[0])
    le, r = same_pads(size_w, k[1], s[1], d[1])
    return t, b, le, r


def lower(model: nn.Module, example_input: torch.Tensor, append_softmax: bool = False,
          name: str = "model") -> QNet:
    """Trace ``model`` (in eval mode) and lower it to a QNet (float mode).

    ``example_input`` is one batch (N >= 1) in the model's layout: (N, C, H, W), (N, C, L) or
    (N, F). ``append_softmax`` adds a SOFTMAX after a model that outputs logits.
    """
    from torch.fx.passes.shape_prop import ShapeProp

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

    shapes: dict[int, tuple] = {}
    value_of: dict[fx.Node, int] = {}
    lops: list[_LOp] = []
    counter = [0]

    def internal(shape: torch.Size) -> tuple:
        s = tuple(int(v) for v in shape)
        return (s[0], s[1], 1, s[2]) if len(s) == 3 else s

    def new_value(n: fx.Node) -> int:
        counter[0] += 1
        v = counter[0]
        value_of[n] = v
        shapes[v] = internal(n.meta["tensor_meta"].shape)
        return v

    def arg_value(a, where: str) -> int:
        if not isinstance(a, fx.Node) or a not in value_of:
            raise QuantizeError(f"{where}: operand {a!r} is not a tensor computed by the model "
                                "(constants and extra inputs are not supported)")
        return value_of[a]

    def is_tensor(n: fx.Node) -> bool:
        from torch.fx.passes.shape_prop import TensorMetadata

        return isinstance(n.meta.get("tensor_meta"), TensorMetadata)

    def add(kind, ins, n, **attrs):
        v = new_value(n)
        lops.append(_LOp(kind, ins, v, str(n.target if n.op == "call_module" else n.name), attrs))
        return v

    def global_pool(n, x: int, flatten: bool):
        s = shapes[x]
        if flatten:
            counter[0] += 1
            mid = counter[0]
            shapes[mid] = (s[0], s[1], 1, 1)
            lops.append(_LOp("pool", [x], mid, f"{n.name}_pool", dict(pool="avg", kernel=(s[2], s[3]),
                                                                     stride=(s[2], s[3]))))
            add("flatten", [mid], n)
        else:
            add("pool", [x], n, pool="avg", kernel=(s[2], s[3]), stride=(s[2], s[3]))

    for n in graph.nodes:
        where = f"{n.op} {n.target}"
        if n.op == "placeholder":
            if value_of:
                raise QuantizeError("models with more than one input are not supported")
            value_of[n] = 0
            shapes[0] = internal(n.meta["tensor_meta"].shape)
            continue
        if n.op == "output":
            out = n.args[0]
            if isinstance(out, (tuple, list)):
                if len(out) != 1:
                    raise QuantizeError("models with more than one output are not supported")
                out = out[0]
            final = arg_value(out, "output")
            continue
        if not is_tensor(n):
            continue            # x.size(0), shape arithmetic: only feeds view/reshape
        if n.op == "get_attr":
            raise QuantizeError(f"{where}: tensors stored on the model (get_attr) are not supported")
        if n.op == "call_module":
            m = gm.get_submodule(n.target)
            x = arg_value(n.args[0], where)
            _lower_module(m, n, x, shapes, add, global_pool, where)
            continue
        tgt = n.target
        args = n.args
        if n.op == "call_function" and tgt in (operator.add, torch.add) or (
                n.op == "call_method" and tgt == "add"):
            if len(args) != 2 or n.kwargs:
                raise QuantizeError(f"{where}: only a + b of two tensors is supported")
            add("add", [arg_value(args[0], where), arg_value(args[1], where)], n)
        elif (n.op == "call_function" and tgt in (F.relu, torch.relu)) or (
                n.op == "call_method" and tgt == "relu"):
            add("act", [arg_value(args[0], where)], n, act="RELU")
        elif n.op == "call_function" and tgt is F.relu6:
            add("act", [arg_value(args[0], where)], n, act="RELU6")
        elif (n.op == "call_function" and tgt in (F.softmax, torch.softmax)) or (
                n.op == "call_method" and tgt == "softmax"):
            add("softmax", [arg_value(args[0], where)], n)
        elif (n.op == "call_function" and tgt is torch.flatten) or (
                n.op == "call_method" and tgt in ("flatten", "view", "reshape")):
            x = arg_value(args[0], where)
            out_shape = tuple(n.meta["tensor_meta"].shape)
            if len(out_shape) != 2 or out_shape[0] != shapes[x][0]:
                raise QuantizeError(f"{where}: only flattening to (batch, features) is supported, "
                                    f"got {list(out_shape)}")
            add("flatten", [x], n) if len(shapes[x]) == 4 else add("identity", [x], n)
        elif (n.op == "call_function" and tgt is torch.mean) or (
                n.op == "call_method" and tgt == "mean"):
            x = arg_value(args[0], where)
            dims = n.kwargs.get("dim", args[1] if len(args) > 1 else None)
            keep = n.kwargs.get("keepdim", args[2] if len(args) > 2 else False)
            rank = len(n.args[0].meta["tensor_meta"].shape)
            dims = tuple(sorted(int(d) % rank for d in ((dims,) if isinstance(dims, int) else dims)))
            if dims != tuple(range(2, rank)):
                raise QuantizeError(f"{where}: only a mean over all spatial axes is supported")
            global_pool(n, x, flatten=not keep)
        elif n.op == "call_function" and tgt in (F.adaptive_avg_pool2d, F.adaptive_avg_pool1d):
            x = arg_value(args[0], where)
            size = args[1] if len(args) > 1 else n.kwargs.get("output_size")
            if size not in (1, (1,), (1, 1)):
                raise QuantizeError(f"{where}: only adaptive pooling to size 1 is supported")
            global_pool(n, x, flatten=False)
        elif n.op == "call_function" and tgt is F.dropout:
            add("identity", [arg_value(args[0], where)], n)
        else:
            raise QuantizeError(f"{where}: no TFLite int8 equivalent (supported: Conv1d/Conv2d, "
                                "depthwise convolution, Linear, BatchNorm, ReLU, ReLU6, pooling, "
                                "flatten, add, softmax, dropout)")

    if append_softmax:
        counter[0] += 1
        v = counter[0]
        shapes[v] = shapes[final]
        lops.append(_LOp("softmax", [final], v, "softmax"))
        final = v
    lops = _fuse(lops, final)
    ops = _build_ops(lops, shapes)
    if not ops:
        raise QuantizeError("the model has no operations")
    if ops[-1].output != final:
        raise QuantizeError("the model's output is not its last operation")
    net = QNet(ops, tuple(ex.shape[1:]), shapes, name=name)
    return net


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[-1]))


def _lower_module(m: nn.Module, n: fx.Node, x: int, shapes, add, global_pool, where: str) -> None:
    from torch.nn.modules.batchnorm import _BatchNorm

    s = shapes[x]
    if isinstance(m, (nn.Conv1d, nn.Conv2d)):
        if m.padding_mode != "zeros":
            raise QuantizeError(f"{where}: padding_mode {m.padding_mode!r} (only zeros)")
        one_d = isinstance(m, nn.Conv1d)
        w = m.weight.detach()
        if one_d:
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
            add("conv", [x], n, padding="SAME", **attrs)
            return
        if pad == "valid" or tuple(pad) == (0, 0):
            add("conv", [x], n, padding="VALID", **attrs)
            return
        ph, pw = _pair(pad)
        if _tf_same(s[2], s[3], k, st, d) == (ph, ph, pw, pw):
            add("conv", [x], n, padding="SAME", **attrs)
            return
        # PyTorch's symmetric padding differs from TFLite's SAME here: an explicit PAD.
        padded = add("pad", [x], n, pads=(ph, ph, pw, pw))
        shapes[padded] = (s[0], s[1], s[2] + 2 * ph, s[3] + 2 * pw)
        add("conv", [padded], n, padding="VALID", **attrs)
        return
    if isinstance(m, nn.Linear):
        add("linear", [x], n, weight=m.weight.detach(), bias=m.bias)
    elif isinstance(m, _BatchNorm):
        if m.running_mean is None:
            raise QuantizeError(f"{where}: batch norm without running statistics")
        add("bn", [x], n, mean=m.running_mean.detach(), var=m.running_var.detach(), eps=m.eps,
            gamma=None if m.weight is None else m.weight.detach(),
            beta=None if m.bias is None else m.bias.detach())
    elif isinstance(m, nn.ReLU):
        add("act", [x], n, act="RELU")
    elif isinstance(m, nn.ReLU6) or (isinstance(m, nn.Hardtanh) and m.min_val == 0 and m.max_val == 6):
        add("act", [x], n, act="RELU6")
    elif isinstance(m, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)):
        add("identity", [x], n)
    elif isinstance(m, (nn.AvgPool2d, nn.MaxPool2d, nn.AvgPool1d, nn.MaxPool1d)):
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
        add("pool", [x], n, pool=kind, kernel=k, stride=st)
    elif isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool1d)):
        if m.output_size not in (1, (1,), (1, 1)):
            raise QuantizeError(f"{where}: only adaptive pooling to size 1 is supported")
        global_pool(n, x, flatten=False)
    elif isinstance(m, nn.Flatten):
        if m.start_dim != 1 or m.end_dim != -1:
            raise QuantizeError(f"{where}: only Flatten(start_dim=1) is supported")
        add("flatten", [x], n) if len(s) == 4 else add("identity", [x], n)
    elif isinstance(m, nn.Softmax):
        add("softmax", [x], n)
    else:
        raise QuantizeError(f"{where}: {type(m).__name__} has no TFLite int8 equivalent")


def _fuse(lops: list[_LOp], final: int) -> list[_LOp]:
    """Drop identities, fold batch norms, fuse activations (see the module doc)."""
    # identities: rename their outputs to their inputs
    alias: dict[int, int] = {}
    kept = []
    for op in lops:
        op.inputs = [alias.get(i, i) for i in op.inputs]
        if op.kind == "identity":
            alias[op.output] = op.inputs[0]
        else:
            kept.append(op)
    final = alias.get(final, final)
    lops = kept

    def users(v: int) -> list[_LOp]:
        return [o for o in lops if v in o.inputs]

    producer = {o.output: o for o in lops}
    out: list[_LOp] = []
    for op in lops:
        if op.kind == "bn":
            p = producer.get(op.inputs[0])
            if p is None or p.kind not in ("conv", "linear") or len(users(p.output)) != 1 \
                    or p.attrs.get("act", "NONE") != "NONE" or p.output == final:
                raise QuantizeError(f"{op.name}: a batch norm must directly follow a convolution "
                                    "or linear layer (nothing else reads that layer's output)")
            _fold_bn(p, op.attrs)
            _rename(lops, op.output, p.output)
            if final == op.output:
                final = p.output
            continue
        out.append(op)
    lops = out
    producer = {o.output: o for o in lops}
    out = []
    for op in lops:
        if op.kind == "act":
            p = producer.get(op.inputs[0])
            if (p is not None and p.kind in ("conv", "linear", "add")
                    and p.attrs.get("act", "NONE") == "NONE" and len(users(p.output)) == 1
                    and p.output != final):
                p.attrs["act"] = op.attrs["act"]
                _rename(lops, op.output, p.output)
                if final == op.output:
                    final = p.output
                continue
            op.kind = "relu"
        out.append(op)
    return out


def _rename(lops: list[_LOp], old: int, new: int) -> None:
    for o in lops:
        o.inputs = [new if i == old else i for i in o.inputs]
        if o.output == old:
            o.output = new


def _fold_bn(p: _LOp, bn: dict) -> None:
    w = p.attrs["weight"].double()
    b = p.attrs["bias"].detach().double() if p.attrs.get("bias") is not None else \
        torch.zeros(w.shape[0], dtype=torch.float64)
    gamma = bn["gamma"].double() if bn["gamma"] is not None else torch.ones_like(b)
    beta = bn["beta"].double() if bn["beta"] is not None else torch.zeros_like(b)
    inv = gamma / torch.sqrt(bn["var"].double() + bn["eps"])
    shape = [-1] + [1] * (w.dim() - 1)
    p.attrs["weight"] = (w * inv.reshape(shape)).float()
    p.attrs["bias"] = ((b - bn["mean"].double()) * inv + beta).float()


def _build_ops(lops: list[_LOp], shapes: dict[int, tuple]) -> list[QOp]:
    ops: list[QOp] = []
    producer = {o.output: o for o in lops}
    for o in lops:
        a = o.attrs
        if o.kind == "linear" and len(shapes[o.inputs[0]]) != 2:
            raise QuantizeError(f"{o.name}: a linear layer needs a (batch, features) input, got "
                                f"{list(shapes[o.inputs[0]])} (flatten first)")
        if o.kind == "conv":
            op = QConv(o.name, o.inputs, o.output, a["weight"], a.get("bias"), a["stride"],
                       a["dilation"], a["groups"], a["padding"])
        elif o.kind == "linear":
            w = a["weight"]
            src = producer.get(o.inputs[0])
            if src is not None and src.kind == "flatten":
                s = shapes[src.inputs[0]]
                if len(s) == 4 and s[2] * s[3] > 1:
                    w = _permute_columns(w, s[1], s[2], s[3])
            op = QLinear(o.name, o.inputs, o.output, w, a.get("bias"))
        elif o.kind == "pool":
            op = QPool(o.name, o.inputs, o.output, a["pool"], a["kernel"], a["stride"])
        elif o.kind == "flatten":
            op = QFlatten(o.name, o.inputs, o.output)
        elif o.kind == "pad":
            op = QPad(o.name, o.inputs, o.output, a["pads"])
        elif o.kind == "add":
            op = QAdd(o.name, o.inputs, o.output)
        elif o.kind == "relu":
            op = QRelu(o.name, o.inputs, o.output, a["act"])
        elif o.kind == "softmax":
            op = QSoftmax(o.name, o.inputs, o.output)
        else:  # pragma: no cover - every kind is handled above
            raise QuantizeError(f"internal: unexpected op {o.kind}")
        if o.kind != "relu":
            op.act = a.get("act", "NONE")
        ops.append(op)
    return ops


def _permute_columns(w: torch.Tensor, c: int, h: int, wd: int) -> torch.Tensor:
    """Weight columns from NCHW-flatten order to NHWC-flatten order."""
    idx = torch.arange(c * h * wd).reshape(c, h, wd).permute(1, 2, 0).reshape(-1)
    return w[:, idx]


# ---------------------------------------------------------------- calibration


@torch.no_grad()
def calibrate(net: QNet, batches: Iterable[torch.Tensor], method: str = "minmax",
              percentile: float = 99.99,
              input_quant: tuple[float, int] | None = None) -> QNet:
    """Post-training calibration: run float batches, set every activation's range.

    ``method``: ``minmax`` (observed extremes), ``percentile`` (the ``percentile`` /
    100 - ``percentile`` quantiles), ``mse`` (the shrunk range minimising quantization MSE).
    ``input_quant`` fixes the input's (scale, zero point), e.g. to a DSP block's int8 output.
    Leaves the net in ``fake`` mode.
    """
    if method not in METHODS:
        raise QuantizeError(f"unknown calibration method {method!r} (have: {', '.join(METHODS)})")
    was = net.training
    net.eval()
    for ob in net.observers:
        if not bool(ob.fixed):
            ob.reset()
    if input_quant is not None:
        net.observers[0].set_fixed(*input_quant)
    net.set_mode("observe")
    n = 0
    for xb in batches:
        net(xb)
        n += 1
    if n == 0:
        raise QuantizeError("calibration needs at least one batch")
    for ob in net.observers:
        ob.finish(method, percentile)
    net.set_mode("fake")
    net.train(was)
    return net


# ---------------------------------------------------------------- export to the IR


def _nhwc(shape: tuple) -> tuple[int, ...]:
    if len(shape) == 4:
        return (1, shape[2], shape[3], shape[1])
    return (1,) + tuple(shape[1:])


def to_graph(net: QNet, name: str | None = None, fc_as_conv: bool = True) -> Graph:
    """The int8 IR graph of a calibrated (or QAT-trained) QNet.

    Linear layers are written as 1x1 convolutions between RESHAPEs (``fc_as_conv``,
    kiloml.ir.passes.fully_connected_as_conv) so the model gives the same bytes in kiloml,
    TFLite Micro and LiteRT, whose reference FULLY_CONNECTED requantizes in floating point;
    kiloml compiles them back to its FULLY_CONNECTED kernels. ``fc_as_conv=False`` keeps
    FULLY_CONNECTED nodes (TFLM and kiloml still agree)."""
    tensors: list[Tensor] = []
    nodes: list[Node] = []
    tid: dict[int, int] = {}

    def t_add(t: Tensor) -> int:
        tensors.append(t)
        return len(tensors) - 1

    def act_tensor(value: int, tname: str) -> int:
        s, z = net.qparams_of(value)
        return t_add(Tensor(tname, _nhwc(net.shapes[value]), "int8", None,
                            QuantParams(np.float32([s]), [z])))

    tid[0] = act_tensor(0, "input")
    used: set[str] = set()
    for k, op in enumerate(net.ops):
        nm = op.op_name.replace(".", "_") or f"op{k}"
        if nm in used:
            nm = f"{nm}_{k}"
        used.add(nm)
        out_t = act_tensor(op.output, f"{nm}/out")
        x = tid[op.inputs[0]]
        if op.kind in ("conv", "linear"):
            nodes.append(_export_weighted(net, op, nm, x, out_t, t_add))
        elif op.kind == "pool":
            attrs = Pool2DAttrs(op.kernel[0], op.kernel[1], op.stride[0], op.stride[1], "VALID",
                                "NONE")
            kind = "AVERAGE_POOL_2D" if op.pool == "avg" else "MAX_POOL_2D"
            nodes.append(Node(kind, [x], [out_t], attrs, nm))
        elif op.kind == "flatten":
            shape = _nhwc(net.shapes[op.output])
            st = t_add(Tensor(f"{nm}/shape", (len(shape),), "int32", np.array(shape, np.int32)))
            nodes.append(Node("RESHAPE", [x, st], [out_t], ReshapeAttrs(tuple(shape)), nm))
        elif op.kind == "pad":
            t, b, le, r = op.pads
            pads = np.array([[0, 0], [t, b], [le, r], [0, 0]], np.int32)
            pt = t_add(Tensor(f"{nm}/paddings", (4, 2), "int32", pads))
            nodes.append(Node("PAD", [x, pt], [out_t], NoAttrs(), nm))
        elif op.kind == "add":
            nodes.append(Node("ADD", [x, tid[op.inputs[1]]], [out_t], AddAttrs(op.act), nm))
        elif op.kind == "relu":
            nodes.append(Node(op.act, [x], [out_t], NoAttrs(), nm))
        elif op.kind == "softmax":
            nodes.append(Node("SOFTMAX", [x], [out_t], SoftmaxAttrs(1.0), nm))
        tid[op.output] = out_t
    g = Graph(tensors, nodes, [tid[0]], [tid[net.output]], name=name or net.name)
    _check_graph(g)
    if fc_as_conv:
        from kiloml.ir.passes import fully_connected_as_conv

        g = fully_connected_as_conv(g)
        _check_graph(g)
    return g


@torch.no_grad()
def integer_weights(net: QNet, op: QOp) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(int8 weights in torch layout, float32 weight scales, int32 bias, bias scales) exactly as
    "fake" mode uses them."""
    w = op.effective_weight().detach().to(torch.float64)
    b = op.bias.detach().to(torch.float64)
    wq, ws, bq, bs = weight_quant(net, op, w, b)
    return (wq.numpy().astype(np.int8), ws.numpy().astype(np.float32),
            bq.numpy().astype(np.int32), bs.numpy())


def _export_weighted(net: QNet, op: QOp, nm: str, x: int, out_t: int, t_add) -> Node:
    wq, ws, bq, bs = integer_weights(net, op)
    zeros = np.zeros(ws.size, np.int64)
    bs = bs[:ws.size]                     # per-tensor weights: one bias scale, as TFLite has
    bias_q = QuantParams(bs.astype(np.float32), np.zeros(bs.size, np.int64))
    if op.kind == "linear":
        wt = t_add(Tensor(f"{nm}/weights", wq.shape, "int8", wq, QuantParams(ws, zeros, 0)))
        bt = t_add(Tensor(f"{nm}/bias", bq.shape, "int32", bq, bias_q))
        return Node("FULLY_CONNECTED", [x, wt, bt], [out_t], FullyConnectedAttrs(op.act), nm)
    sh, sw = op.stride
    dh, dw = op.dilation
    if op.depthwise:
        w = np.ascontiguousarray(wq.transpose(1, 2, 3, 0))      # (1, kh, kw, out_c)
        wt = t_add(Tensor(f"{nm}/weights", w.shape, "int8", w, QuantParams(ws, zeros, 3)))
        bt = t_add(Tensor(f"{nm}/bias", bq.shape, "int32", bq, bias_q))
        mult = op.weight.shape[0] // op.in_channels
        attrs = DepthwiseConv2DAttrs(sh, sw, dh, dw, op.padding, op.act, mult)
        return Node("DEPTHWISE_CONV_2D", [x, wt, bt], [out_t], attrs, nm)
    w = np.ascontiguousarray(wq.transpose(0, 2, 3, 1))          # OHWI
    wt = t_add(Tensor(f"{nm}/weights", w.shape, "int8", w, QuantParams(ws, zeros, 0)))
    bt = t_add(Tensor(f"{nm}/bias", bq.shape, "int32", bq, bias_q))
    return Node("CONV_2D", [x, wt, bt], [out_t], Conv2DAttrs(sh, sw, dh, dw, op.padding, op.act), nm)


def _check_graph(g: Graph) -> None:
    from kiloml.ir.ops import REGISTRY
    from kiloml.ir.passes import verify

    verify(g)
    for n, node in enumerate(g.nodes):
        probs = REGISTRY[node.op].check(g, node)
        if probs:
            raise QuantizeError(f"exported node {n} {node.op} ({node.name}): {probs[0]}")


# ---------------------------------------------------------------- running int8 models


def to_nhwc(x: np.ndarray) -> np.ndarray:
    """A batch in the model's layout -> NHWC (what the exported graph reads)."""
    x = np.asarray(x)
    if x.ndim == 4:
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    if x.ndim == 3:
        return np.ascontiguousarray(x.transpose(0, 2, 1))[:, None]
    return x


def quantize_input(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Float features -> int8 the way the graph's input expects (round half away)."""
    v = np.asarray(x, np.float64) / scale
    q = np.sign(v) * np.floor(np.abs(v) + 0.5) + zero_point
    return np.clip(q, QMIN, QMAX).astype(np.int8)


def logits_graph(graph: Graph) -> Graph:
    """The graph whose output is its final SOFTMAX's input (itself when it has none)."""
    last = next((n for n in graph.nodes if graph.outputs[0] in n.outputs), None)
    if last is None or last.op != "SOFTMAX":
        return graph
    return Graph(graph.tensors, [n for n in graph.nodes if n is not last], graph.inputs,
                 [last.inputs[0]], graph.name, graph.source_sha256, dict(graph.meta))


def batched_graph(graph: Graph, n: int) -> Graph:
    """The same graph with batch ``n`` instead of 1 (activations' leading axis, RESHAPE
    targets): every kiloml op computes each batch row exactly as it computes a batch of one,
    so running it equals ``n`` single runs, far faster in numpy."""
    from dataclasses import replace

    tensors = list(graph.tensors)
    for i, t in enumerate(tensors):
        if not t.is_const and t.shape and t.shape[0] == 1:
            tensors[i] = replace(t, shape=(n,) + tuple(t.shape[1:]))
    nodes = []
    for node in graph.nodes:
        if node.op == "RESHAPE":
            shape = tensors[node.outputs[0]].shape
            if len(node.inputs) > 1 and node.inputs[1] >= 0:
                st = tensors[node.inputs[1]]
                tensors[node.inputs[1]] = replace(st, data=np.array(shape, np.int32),
                                                  shape=(len(shape),))
            if node.attrs.new_shape:
                node = replace(node, attrs=replace(node.attrs, new_shape=tuple(shape)))
        nodes.append(node)
    return Graph(tensors, nodes, list(graph.inputs), list(graph.outputs), graph.name,
                 graph.source_sha256, dict(graph.meta))


def run_batched(graph: Graph, xq: np.ndarray, batch: int = 16) -> np.ndarray:
    """Outputs (N, *output shape without batch) of the int8 graph on int8 inputs (N, *input
    shape without batch), with kiloml's reference interpreter in batches."""
    from kiloml.ir.interpreter import Interpreter

    tin = graph.tensors[graph.inputs[0]]
    tout = graph.tensors[graph.outputs[0]]
    if tin.shape[:1] != (1,) or tout.shape[:1] != (1,):
        raise QuantizeError("batched runs need a model with batch 1")
    outs, cache = [], {}
    for i in range(0, len(xq), batch):
        chunk = np.ascontiguousarray(xq[i:i + batch])
        n = len(chunk)
        if n not in cache:
            cache[n] = Interpreter(batched_graph(graph, n))
        y = cache[n].run(chunk.reshape((n,) + tuple(tin.shape[1:])))[0]
        outs.append(y.reshape((n,) + tuple(tout.shape[1:])))
    if not outs:
        return np.zeros((0,) + tuple(tout.shape[1:]), np.int8)
    return np.concatenate(outs)


def run_int8(graph: Graph, x: np.ndarray, dequantize: bool = True,
             logits: bool = False) -> np.ndarray:
    """Run the int8 graph with kiloml's reference interpreter on a float batch in the model's
    layout; returns the outputs (N, ...) dequantized (or raw int8). ``logits`` stops before a
    final SOFTMAX: its int8 input decides the predicted class without the ties that 8-bit
    probabilities have (the softmax is monotonic, so the class is the same otherwise)."""
    if logits:
        graph = logits_graph(graph)
    tin = graph.tensors[graph.inputs[0]]
    tout = graph.tensors[graph.outputs[0]]
    xq = quantize_input(to_nhwc(x), tin.scale, tin.zero_point)
    outs = run_batched(graph, xq.reshape((len(xq),) + tuple(tin.shape[1:])))
    if not dequantize:
        return outs
    return (outs.astype(np.float64) - tout.zero_point) * tout.scale


@torch.no_grad()
def run_fake(net: QNet, x: torch.Tensor | np.ndarray, batch_size: int = 256,
             logits: bool = False) -> np.ndarray:
    """"fake"-mode outputs in float64 (the numbers QAT evaluation reports)."""
    was_mode, was_train, was_dtype = net.mode, net.training, net.compute_dtype
    net.set_mode("fake").eval()
    net.compute_dtype = torch.float64
    try:
        x = torch.as_tensor(np.asarray(x))
        outs = [net(x[i:i + batch_size], logits=logits).numpy() for i in range(0, len(x), batch_size)]
    finally:
        net.set_mode(was_mode).train(was_train)
        net.compute_dtype = was_dtype
    return np.concatenate(outs) if outs else np.zeros((0,))


def quantize_ptq(model: nn.Module, calib: torch.Tensor | np.ndarray, method: str = "minmax",
                 append_softmax: bool = False, input_quant: tuple[float, int] | None = None,
                 batch_size: int = 256, name: str = "model") -> tuple[QNet, Graph]:
    """Post-training quantization in one call: lower, calibrate on ``calib``, export."""
    calib = torch.as_tensor(np.asarray(calib), dtype=torch.float32)
    net = lower(model, calib[:1], append_softmax=append_softmax, name=name)
    calibrate(net, (calib[i:i + batch_size] for i in range(0, len(calib), batch_size)),
              method=method, input_quant=input_quant)
    return net, to_graph(net)


def export_tflite(net: QNet, path=None) -> bytes:
    """.tflite bytes of the QNet's int8 graph (and write them to ``path`` if given)."""
    from kiloml.io.tflite_writer import write_tflite

    data = write_tflite(to_graph(net))
    if path is not None:
        from pathlib import Path

        Path(path).write_bytes(data)
    return data

