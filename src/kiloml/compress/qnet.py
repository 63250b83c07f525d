"""The fake-quant network: a model lowered to TFLite int8 operations, as a trainable module.

A ``QNet`` is a flat list of ``QOp`` s (CONV_2D / DEPTHWISE_CONV_2D, FULLY_CONNECTED, pooling,
RESHAPE, PAD, ADD, RELU / RELU6, SOFTMAX, SLICE, CONCATENATION) over numbered values (value 0 is the input), with one
``Observer`` per quantized activation. It has three modes:

``float``    the folded model in float; equals the original model's eval-mode output.
``observe``  float, and each activation's observer records its values (calibration).
``fake``     every tensor goes through TFLite's quantization, as the int8 model computes it:
             inputs and activations asymmetric int8 per tensor (rounding half away from zero,
             saturating, clamped to the fused activation's range), weights symmetric int8 per
             output channel (per tensor for FULLY_CONNECTED, as TFLite's converter does), biases
             int32 with scale input_scale x weight_scale, average pooling and reshapes keeping
             their input's quantization, softmax output 1/256 with zero point -128, slices
             their input's, and a concatenation's inputs and output one shared quantization
             (int8 CONCATENATION copies raw values; TFLite's converter does the same). Gradients
             pass straight through (inside the clamp range) for quantization-aware training.

Values use PyTorch's NCHW layout internally (1-D inputs get a height axis of 1); the exporter
writes NHWC.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kiloml.compress.calibration import Observer
from kiloml.compress.qmath import (INT32_MAX, QMAX, QMIN, SOFTMAX_SCALE, SOFTMAX_ZP, act_range,
                                   fake_quant, quantize_bias, quantize_weight, ste,
                                   weight_scales)
from kiloml.train.layers import same_pads

MODES = ("float", "observe", "fake")


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
        """The op's output on its input values, in the net's current mode (without the
        output's own quantization, which the net applies)."""
        raise NotImplementedError(type(self).__name__)

    def macs(self, out_shape: tuple[int, ...]) -> int:
        """Multiply-accumulates per inference as kiloml's IR ops count them; ``out_shape`` is
        the output value's internal shape (batch 1)."""
        return 0


class QConv(QOp):
    """CONV_2D or DEPTHWISE_CONV_2D (groups == input channels), weight (O, I/groups, kh, kw).

    ``mask`` zeroes pruned weights; it stays applied while fine-tuning."""

    kind = "conv"

    def __init__(self, name: str, inputs: list[int], output: int, weight: torch.Tensor,
                 bias: torch.Tensor | None, stride: tuple[int, int], dilation: tuple[int, int],
                 groups: int, padding: str) -> None:
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

    def run(self, net: "QNet", xs: list[torch.Tensor]) -> torch.Tensor:
        x = xs[0]
        w = self.effective_weight().to(x.dtype)
        b = self.bias.to(x.dtype)
        if net.mode == "fake":
            w, b = _fake_weights(net, self, w, b)
        y = self._conv(x, w, b)
        return y if net.mode == "fake" else float_act(y, self.act)

    def macs(self, out_shape: tuple[int, ...]) -> int:
        w = self.weight
        return int(np.prod(out_shape[1:])) * w.shape[1] * w.shape[2] * w.shape[3]


class QLinear(QOp):
    """FULLY_CONNECTED, weight (units, features); weight scales per tensor unless
    ``per_channel`` (TFLite's converter writes them per tensor)."""

    kind = "linear"

    def __init__(self, name: str, inputs: list[int], output: int, weight: torch.Tensor,
                 bias: torch.Tensor | None) -> None:
        super().__init__(name, inputs, output)
        self.weight = nn.Parameter(weight.detach().clone().float())
        b = bias if bias is not None else torch.zeros(weight.shape[0])
        self.bias = nn.Parameter(b.detach().clone().float())
        self.register_buffer("mask", torch.ones_like(self.weight), persistent=True)
        self.per_channel = False

    def effective_weight(self) -> torch.Tensor:
        return self.weight * self.mask

    def run(self, net: "QNet", xs: list[torch.Tensor]) -> torch.Tensor:
        x = xs[0]
        w = self.effective_weight().to(x.dtype)
        b = self.bias.to(x.dtype)
        if net.mode == "fake":
            w, b = _fake_weights(net, self, w, b)
        y = F.linear(x, w, b)
        return y if net.mode == "fake" else float_act(y, self.act)

    def macs(self, out_shape: tuple[int, ...]) -> int:
        return self.weight.shape[0] * self.weight.shape[1]


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
    """Weights and bias as the int8 model holds them, gradients straight through."""
    wq, ws, bq, bs = weight_quant(net, op, w, b)
    shape = [-1] + [1] * (w.dim() - 1)
    w_hat = ste(w, wq * (ws.reshape(shape) if ws.numel() > 1 else ws).to(w.dtype))
    b_hat = ste(b, bq * bs.to(b.dtype))
    return w_hat, b_hat


def float_act(y: torch.Tensor, act: str) -> torch.Tensor:
    """A fused activation in float (in "fake" mode the output clamp does it instead)."""
    if act == "RELU":
        return F.relu(y)
    if act == "RELU6":
        return F.relu6(y)
    return y


class QPool(QOp):
    """AVERAGE_POOL_2D / MAX_POOL_2D, VALID padding (a global pool has the input's size)."""

    kind = "pool"
    shares_quant = True

    def __init__(self, name: str, inputs: list[int], output: int, pool: str,
                 kernel: tuple[int, int], stride: tuple[int, int]) -> None:
        super().__init__(name, inputs, output)
        self.pool = pool
        self.kernel = tuple(int(k) for k in kernel)
        self.stride = tuple(int(s) for s in stride)

    def run(self, net: "QNet", xs: list[torch.Tensor]) -> torch.Tensor:
        x = xs[0]
        if self.pool == "max":
            return F.max_pool2d(x, self.kernel, self.stride)
        return F.avg_pool2d(x, self.kernel, self.stride)

    def macs(self, out_shape: tuple[int, ...]) -> int:
        return int(np.prod(out_shape[1:])) * self.kernel[0] * self.kernel[1]


class QFlatten(QOp):
    """RESHAPE of an NHWC tensor to (1, H*W*C): flattens in NHWC order."""

    kind = "flatten"
    shares_quant = True

    def run(self, net: "QNet", xs: list[torch.Tensor]) -> torch.Tensor:
        x = xs[0]
        if x.dim() == 4:
            x = x.permute(0, 2, 3, 1)
        return x.reshape(x.shape[0], -1)


class QPad(QOp):
    """PAD with zeros (the input's zero point in int8): PyTorch's symmetric padding where
    TFLite's SAME would pad differently."""

    kind = "pad"
    shares_quant = True

    def __init__(self, name: str, inputs: list[int], output: int,
                 pads: tuple[int, int, int, int]) -> None:
        super().__init__(name, inputs, output)
        self.pads = tuple(int(p) for p in pads)   # (top, bottom, left, right)

    def run(self, net: "QNet", xs: list[torch.Tensor]) -> torch.Tensor:
        t, b, le, r = self.pads
        return F.pad(xs[0], (le, r, t, b))


class QAdd(QOp):
    """ADD of two values (residual connections), with an optional fused activation."""

    kind = "add"

    def run(self, net: "QNet", xs: list[torch.Tensor]) -> torch.Tensor:
        y = xs[0] + xs[1]
        return y if net.mode == "fake" else float_act(y, self.act)

    def macs(self, out_shape: tuple[int, ...]) -> int:
        return int(np.prod(out_shape[1:]))


class QRelu(QOp):
    """Standalone RELU / RELU6 (one that could not be fused into the op before it)."""

    kind = "relu"

    def __init__(self, name: str, inputs: list[int], output: int, act: str) -> None:
        super().__init__(name, inputs, output)
        self.act = act
        self.shares_quant = act == "RELU6"

    def run(self, net: "QNet", xs: list[torch.Tensor]) -> torch.Tensor:
        return float_act(xs[0], self.act)


class QSoftmax(QOp):
    """SOFTMAX over the last axis; its output quantization is fixed (1/256, -128)."""

    kind = "softmax"

    def run(self, net: "QNet", xs: list[torch.Tensor]) -> torch.Tensor:
        return torch.softmax(xs[0], dim=-1)


class QSlice(QOp):
    """SLICE of a (batch, features) value: features [begin, begin + size)."""

    kind = "slice"
    shares_quant = True

    def __init__(self, name: str, inputs: list[int], output: int, begin: int,
                 size: int) -> None:
        super().__init__(name, inputs, output)
        self.begin, self.size = int(begin), int(size)

    def run(self, net: "QNet", xs: list[torch.Tensor]) -> torch.Tensor:
        return xs[0][:, self.begin:self.begin + self.size]


class QConcat(QOp):
    """CONCATENATION of (batch, features) values along the features; every input shares the
    output's observer (``QNet`` merges them), as int8 CONCATENATION needs."""

    kind = "concat"
    shares_quant = True

    def run(self, net: "QNet", xs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(xs, dim=1)


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
        for op in ops:
            if op.kind == "concat":
                _share_observers(self.quant_of, observers, op)
        self.observers = nn.ModuleList(observers)
        self.output = ops[-1].output if ops else 0
        # more heads of the same model (kiloml.train.models.BranchHeads): graph outputs 1, 2,
        # ... of the exported graph; ``forward`` returns only ``output``
        self.extra_outputs: list[int] = []

    # -- modes ---------------------------------------------------------------------------------
    def set_mode(self, mode: str) -> "QNet":
        if mode not in MODES:
            raise ValueError(mode)
        self.mode = mode
        return self

    def qparams_of(self, value: int) -> tuple[float, int]:
        """(scale, zero point) of a value, from the observer it shares."""
        return self.observers[self.quant_of[value]].qparams()

    def freeze_observers(self, frozen: bool = True) -> None:
        """Stop (or resume) QAT's EMA range updates."""
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

    def outputs(self, x: torch.Tensor, logits: bool = False) -> list[torch.Tensor]:
        """Every output: ``output`` then ``extra_outputs`` (several heads); ``logits``: for
        an output made by a softmax, that softmax's input (for training each head)."""
        vals: dict[int, torch.Tensor] = {0: self._quant(0, self.to_internal(x), "NONE")}
        made: dict[int, QOp] = {}
        for op in self.ops:
            y = op.run(self, [vals[i] for i in op.inputs])
            vals[op.output] = self._quant(op.output, y, op.act, op)
            made[op.output] = op
        res = []
        for v in [self.output, *self.extra_outputs]:
            op = made.get(v)
            res.append(vals[op.inputs[0]] if logits and op is not None and op.kind == "softmax"
                       else vals[v])
        return res

    def _quant(self, value: int, y: torch.Tensor, act: str, op: QOp | None = None) -> torch.Tensor:
        ob = self.observers[self.quant_of[value]]
        if self.mode == "float":
            return y
        if self.mode == "observe":
            if op is None or not op.shares_quant:
                ob.observe(float_act(y, act))
            return float_act(y, act)
        if self.training and (op is None or not op.shares_quant):
            ob.ema(float_act(y, act))
        s, z = ob.qparams()
        lo, hi = act_range(act, s, z) if act != "NONE" else (QMIN, QMAX)
        return fake_quant(y, s, z, lo, hi)

    # -- info ----------------------------------------------------------------------------------
    def macs(self) -> int:
        """Multiply-accumulates per inference, counted as kiloml's ops count them (a pooling
        window element or an ADD element is one MAC)."""
        return sum(op.macs(self.shapes[op.output]) for op in self.ops)

    def summary(self) -> list[str]:
        """One line per op: kind, name, values, output shape, fused activation."""
        lines = []
        for op in self.ops:
            extra = f" act={op.act}" if op.act != "NONE" else ""
            lines.append(f"{op.kind:8s} {op.op_name:24s} {list(op.inputs)} -> {op.output} "
                         f"{list(self.shapes[op.output])}{extra}")
        return lines


def _share_observers(quant_of: dict[int, int], observers: list, op: QOp) -> None:
    """Every value quantized like one of ``op``'s inputs takes the output's observer (its
    range then covers all the inputs; non-negative only if all of them are)."""
    from kiloml.compress.qmath import QuantizeError

    target = quant_of[op.output]
    for v in op.inputs:
        src = quant_of[v]
        if src == target:
            continue
        if bool(observers[src].fixed) or bool(observers[target].fixed):
            raise QuantizeError(f"{op.op_name}: cannot concatenate a value of fixed "
                                "quantization (softmax output)")
        observers[target].non_negative = (observers[target].non_negative
                                           and observers[src].non_negative)
        for k, q in quant_of.items():
            if q == src:
                quant_of[k] = target
