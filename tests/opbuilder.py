"""Build small int8 models as IR graphs for tests, and run .tflite bytes in the oracles.

Tests import this module directly (``import opbuilder``): pytest puts ``tests/`` on
``sys.path`` because the directory has no ``__init__.py``; tests in sub-directories add it
themselves.

Quantization is random but realistic, drawn from a seeded ``numpy.random.Generator``:

* activations are asymmetric int8 with a random scale and zero point; an op's output range is
  estimated by a float forward pass over a calibration batch of random inputs, taken *before*
  the fused activation so that the activation clamp is actually exercised by the test;
* weights are symmetric int8 (zero point 0), per output channel (axis 0 for CONV_2D and
  FULLY_CONNECTED, axis 3 for DEPTHWISE_CONV_2D, as TFLite does) or per tensor, scaled so the
  layer's float output has a standard deviation of about ``TARGET_STD`` (so RELU6 and
  RELU_N1_TO_1 clip a good share of values);
* biases are int32 with scale ``input_scale * weight_scale`` (computed in float32) and zero
  point 0.

``ModelBuilder`` chains several ops; the ``*_model`` functions build the single-op models the
per-op tests use. ``run_tflm`` and ``run_litert_ref`` run .tflite bytes in TFLite Micro and in
LiteRT's reference kernels.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tflite

from kiloml.ir.graph import DTYPES, Graph, Node, QuantParams, Tensor
from kiloml.ir.ops.add import AddAttrs
from kiloml.ir.ops.conv2d import Conv2DAttrs
from kiloml.ir.ops.depthwise_conv2d import DepthwiseConv2DAttrs
from kiloml.ir.ops.fully_connected import FullyConnectedAttrs
from kiloml.ir.ops.pool2d import Pool2DAttrs
from kiloml.ir.ops.reshape import ReshapeAttrs
from kiloml.ir.ops.softmax import SoftmaxAttrs

CALIBRATION_SAMPLES = 8
TARGET_STD = 4.0

Pair = int | tuple[int, int]


def _pair(v: Pair) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


# -- float reference pieces used only to choose output ranges -------------------------------

def _out_and_pad(n: int, k: int, s: int, d: int, padding: str) -> tuple[int, int, int]:
    """Output size and (before, after) zero padding along one axis, TFLite's rule."""
    eff = (k - 1) * d + 1
    out = (n + s - 1) // s if padding == "SAME" else (n - eff + s) // s
    total = max((out - 1) * s + eff - n, 0)
    return out, total // 2, total - total // 2


def _windows(x: np.ndarray, kh: int, kw: int, stride: tuple[int, int], dil: tuple[int, int],
             padding: str, fill: float = 0.0):
    """Yield (i, j, patch) with patch[N, OH, OW, C] the input tap (i, j) of every window."""
    n, h, w, c = x.shape
    oh, pt, pb = _out_and_pad(h, kh, stride[0], dil[0], padding)
    ow, pl, pr = _out_and_pad(w, kw, stride[1], dil[1], padding)
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=fill)
    for i in range(kh):
        for j in range(kw):
            y0, x0 = i * dil[0], j * dil[1]
            yield i, j, xp[:, y0:y0 + stride[0] * (oh - 1) + 1:stride[0],
                           x0:x0 + stride[1] * (ow - 1) + 1:stride[1], :]


def float_conv2d(x, w, stride, dil, padding):
    """x [N,H,W,C], w [O,KH,KW,C] -> [N,OH,OW,O] in float64."""
    out = 0.0
    for i, j, patch in _windows(x, w.shape[1], w.shape[2], stride, dil, padding):
        out = out + patch @ w[:, i, j, :].T
    return out


def float_depthwise(x, w, stride, dil, padding):
    """x [N,H,W,C], w [1,KH,KW,C*M] -> [N,OH,OW,C*M]; output channel c*M+k reads channel c."""
    m = w.shape[3] // x.shape[3]
    out = 0.0
    for i, j, patch in _windows(x, w.shape[1], w.shape[2], stride, dil, padding):
        out = out + np.repeat(patch, m, axis=-1) * w[0, i, j]
    return out


def float_pool(x, kind, filt, stride, padding):
    if kind == "MAX":
        taps = [p for _, _, p in _windows(x, filt[0], filt[1], stride, (1, 1), padding, -np.inf)]
        return np.max(taps, axis=0)
    ones = np.ones(x.shape[:3] + (1,))
    total = sum(p for _, _, p in _windows(x, filt[0], filt[1], stride, (1, 1), padding))
    count = sum(p for _, _, p in _windows(ones, filt[0], filt[1], stride, (1, 1), padding))
    return total / count


def apply_activation(y: np.ndarray, activation: str) -> np.ndarray:
    lo, hi = {"NONE": (-np.inf, np.inf), "RELU": (0, np.inf), "RELU6": (0, 6),
              "RELU_N1_TO_1": (-1, 1)}[activation]
    return np.clip(y, lo, hi)


def range_quant(lo: float, hi: float) -> QuantParams:
    """Asymmetric int8 quantization of [lo, hi] (widened to include 0), as the converter does."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo < 1e-6:
        hi = lo + 1e-6
    scale = np.float32((hi - lo) / 255.0)
    zp = int(np.clip(np.round(-128 - lo / float(scale)), -128, 127))
    return QuantParams([scale], [zp])


class ModelBuilder:
    """Appends tensors and nodes; each op method returns its output tensor index.

    Alongside every activation tensor it keeps a float calibration batch of shape
    ``(CALIBRATION_SAMPLES, *shape)`` used to pick the next ops' output quantization.
    """

    def __init__(self, rng: np.random.Generator, name: str = "model") -> None:
        self.rng = rng
        self.name = name
        self.tensors: list[Tensor] = []
        self.nodes: list[Node] = []
        self.inputs: list[int] = []
        self.calib: dict[int, np.ndarray] = {}

    # -- tensors -------------------------------------------------------------------------------
    def tensor(self, name: str, shape: Sequence[int], dtype: str = "int8",
               data: np.ndarray | None = None, quant: QuantParams | None = None) -> int:
        self.tensors.append(Tensor(f"{name}_{len(self.tensors)}", tuple(int(s) for s in shape),
                                   dtype, data, quant))
        return len(self.tensors) - 1

    def random_quant(self, scale: float | None = None, zero_point: int | None = None) -> QuantParams:
        if scale is None:
            scale = float(self.rng.uniform(0.01, 0.1))
        if zero_point is None:
            zero_point = int(self.rng.integers(-40, 41))
        return QuantParams([scale], [zero_point])

    def input(self, shape: Sequence[int], scale: float | None = None,
              zero_point: int | None = None) -> int:
        """A graph input, int8, calibrated with uniformly random int8 values."""
        q = self.random_quant(scale, zero_point)
        t = self.tensor("input", shape, quant=q)
        self.inputs.append(t)
        raw = self.rng.integers(-128, 128, size=(CALIBRATION_SAMPLES, *shape))
        self.calib[t] = float(q.scale[0]) * (raw - int(q.zero_point[0]))
        return t

    def const_int8(self, shape: Sequence[int], scale: float | None = None,
                   zero_point: int | None = None) -> int:
        """A constant int8 activation-like operand (e.g. the second operand of ADD)."""
        q = self.random_quant(scale, zero_point)
        data = self.rng.integers(-128, 128, size=tuple(shape)).astype(np.int8)
        t = self.tensor("const", shape, data=data, quant=q)
        real = float(q.scale[0]) * (data.astype(np.float64) - int(q.zero_point[0]))
        self.calib[t] = np.broadcast_to(real, (CALIBRATION_SAMPLES, *shape))
        return t

    def _output(self, name: str, pre_activation: np.ndarray, activation: str,
                quant: QuantParams | None = None) -> int:
        q = quant or range_quant(pre_activation.min(), pre_activation.max())
        t = self.tensor(name, pre_activation.shape[1:], quant=q)
        self.calib[t] = apply_activation(pre_activation, activation)
        return t

    def _weights(self, shape: tuple[int, ...], axis: int, per_channel: bool,
                 forward) -> tuple[int, np.ndarray, np.ndarray]:
        """Symmetric int8 weights scaled so ``forward(w)`` has std TARGET_STD.

        Returns the tensor index, the dequantized weights and the per-channel scales.
        """
        channels = shape[axis]
        spread = self.rng.uniform(0.3, 2.0, size=channels)
        bshape = [1] * len(shape)
        bshape[axis] = channels
        w = self.rng.standard_normal(shape) * spread.reshape(bshape)
        std = float(np.std(forward(w)))
        w *= TARGET_STD / max(std, 1e-12)
        reduce = tuple(i for i in range(len(shape)) if i != axis)
        if per_channel:
            scales = (np.abs(w).max(axis=reduce) / 127.0).astype(np.float32)
        else:
            scales = np.full(channels, np.abs(w).max() / 127.0, dtype=np.float32)
        scales = np.maximum(scales, np.float32(1e-8))
        q = np.clip(np.round(w / scales.reshape(bshape)), -127, 127).astype(np.int8)
        qp = (QuantParams(scales, np.zeros(channels, np.int64), axis) if per_channel
              else QuantParams(scales[:1], [0], 0))
        t = self.tensor("weights", shape, data=q, quant=qp)
        return t, q.astype(np.float64) * scales.reshape(bshape), scales

    def _bias(self, x: int, w_scales: np.ndarray, y: np.ndarray) -> tuple[int, np.ndarray]:
        """int32 bias per output channel (last axis of ``y``) with std about half of y's."""
        in_scale = np.float32(self.tensors[x].scale)
        b_scales = (in_scale * w_scales.astype(np.float32)).astype(np.float32)
        real = self.rng.normal(0.0, 0.5 * max(float(np.std(y)), 1e-6), size=w_scales.size)
        q = np.round(real / b_scales).astype(np.int32)
        t = self.tensor("bias", (w_scales.size,), "int32", q,
                        QuantParams(b_scales, np.zeros(w_scales.size, np.int64), 0))
        return t, q.astype(np.float64) * b_scales

    def _node(self, op: str, inputs: list[int], output: int, attrs) -> int:
        self.nodes.append(Node(op, inputs, [output], attrs, self.tensors[output].name))
        return output

    @staticmethod
    def _flat(c: np.ndarray) -> np.ndarray:
        """Calibration batch (S, N, ...) -> (S*N, ...)."""
        return c.reshape((-1,) + c.shape[2:])

    # -- ops -------------------------------------------------------------------------------------
    def conv2d(self, x: int, out_channels: int, kernel: Pair = 3, stride: Pair = 1,
               dilation: Pair = 1, padding: str = "SAME", activation: str = "NONE",
               per_channel: bool = True, bias: bool = True) -> int:
        kh, kw = _pair(kernel)
        stride, dilation = _pair(stride), _pair(dilation)
        xs = self.tensors[x].shape
        xc = self._flat(self.calib[x])
        w_t, w, ws = self._weights((out_channels, kh, kw, xs[3]), 0, per_channel,
                                   lambda w: float_conv2d(xc, w, stride, dilation, padding))
        y = float_conv2d(xc, w, stride, dilation, padding)
        ins = [x, w_t]
        if bias:
            b_t, b = self._bias(x, ws, y)
            ins.append(b_t)
            y = y + b
        y = y.reshape((CALIBRATION_SAMPLES, xs[0]) + y.shape[1:])
        out = self._output("conv", y, activation)
        attrs = Conv2DAttrs(stride[0], stride[1], dilation[0], dilation[1], padding, activation)
        return self._node("CONV_2D", ins, out, attrs)

    def depthwise_conv2d(self, x: int, depth_multiplier: int = 1, kernel: Pair = 3,
                         stride: Pair = 1, dilation: Pair = 1, padding: str = "SAME",
                         activation: str = "NONE", per_channel: bool = True,
                         bias: bool = True) -> int:
        kh, kw = _pair(kernel)
        stride, dilation = _pair(stride), _pair(dilation)
        xs = self.tensors[x].shape
        xc = self._flat(self.calib[x])
        oc = xs[3] * depth_multiplier
        w_t, w, ws = self._weights((1, kh, kw, oc), 3, per_channel,
                                   lambda w: float_depthwise(xc, w, stride, dilation, padding))
        y = float_depthwise(xc, w, stride, dilation, padding)
        ins = [x, w_t]
        if bias:
            b_t, b = self._bias(x, ws, y)
            ins.append(b_t)
            y = y + b
        y = y.reshape((CALIBRATION_SAMPLES, xs[0]) + y.shape[1:])
        out = self._output("dwconv", y, activation)
        attrs = DepthwiseConv2DAttrs(stride[0], stride[1], dilation[0], dilation[1], padding,
                                     activation, depth_multiplier)
        return self._node("DEPTHWISE_CONV_2D", ins, out, attrs)

    def fully_connected(self, x: int, units: int, depth: int | None = None,
                        activation: str = "NONE", keep_num_dims: bool = False,
                        per_channel: bool = False, bias: bool = True) -> int:
        """``depth`` defaults to the input's last dimension; rows = input size / depth."""
        xs = self.tensors[x].shape
        depth = depth or xs[-1]
        size = int(np.prod(xs))
        rows = size // depth
        xc = self.calib[x].reshape(CALIBRATION_SAMPLES, rows, depth)
        w_t, w, ws = self._weights((units, depth), 0, per_channel, lambda w: xc @ w.T)
        y = xc @ w.T
        ins = [x, w_t]
        if bias:
            b_t, b = self._bias(x, ws, y)
            ins.append(b_t)
            y = y + b
        out_shape = tuple(xs[:-1]) + (units,) if keep_num_dims else (rows, units)
        out = self._output("fc", y.reshape((CALIBRATION_SAMPLES,) + out_shape), activation)
        return self._node("FULLY_CONNECTED", ins, out, FullyConnectedAttrs(activation, keep_num_dims))

    def pool(self, x: int, kind: str, filter_size: Pair = 2, stride: Pair = 2,
             padding: str = "VALID", activation: str = "NONE") -> int:
        """``kind`` is "AVG" or "MAX"; output quantization equals the input's (as TFLite needs)."""
        fh, fw = _pair(filter_size)
        stride = _pair(stride)
        xs = self.tensors[x].shape
        y = float_pool(self._flat(self.calib[x]), kind, (fh, fw), stride, padding)
        y = y.reshape((CALIBRATION_SAMPLES, xs[0]) + y.shape[1:])
        q = self.tensors[x].quant
        out = self._output("pool", y, activation, QuantParams(q.scale, q.zero_point))
        op = {"AVG": "AVERAGE_POOL_2D", "MAX": "MAX_POOL_2D"}[kind]
        return self._node(op, [x], out, Pool2DAttrs(fh, fw, stride[0], stride[1], padding, activation))

    def add(self, a: int, b: int, activation: str = "NONE") -> int:
        ca, cb = self.calib[a], self.calib[b]
        ra, rb = ca.ndim - 1, cb.ndim - 1
        r = max(ra, rb)
        ca = ca.reshape((CALIBRATION_SAMPLES,) + (1,) * (r - ra) + ca.shape[1:])
        cb = cb.reshape((CALIBRATION_SAMPLES,) + (1,) * (r - rb) + cb.shape[1:])
        out = self._output("add", ca + cb, activation)
        return self._node("ADD", [a, b], out, AddAttrs(activation))

    def reshape(self, x: int, new_shape: Sequence[int], shape_input: bool = True) -> int:
        """``new_shape`` may hold one -1; with ``shape_input`` it is also a constant int32 input."""
        xs = self.tensors[x].shape
        shape = np.empty(xs, dtype=np.int8).reshape(tuple(new_shape)).shape
        q = self.tensors[x].quant
        out = self.tensor("reshape", shape, quant=QuantParams(q.scale, q.zero_point))
        self.calib[out] = self.calib[x].reshape((CALIBRATION_SAMPLES,) + shape)
        ins = [x]
        if shape_input:
            ins.append(self.tensor("shape", (len(new_shape),), "int32",
                                   np.array(new_shape, dtype=np.int32)))
        return self._node("RESHAPE", ins, out, ReshapeAttrs(tuple(int(v) for v in new_shape)))

    def softmax(self, x: int, beta: float = 1.0) -> int:
        out = self.tensor("softmax", self.tensors[x].shape, quant=QuantParams([1.0 / 256], [-128]))
        c = self.calib[x] * beta
        e = np.exp(c - c.max(axis=-1, keepdims=True))
        self.calib[out] = e / e.sum(axis=-1, keepdims=True)
        return self._node("SOFTMAX", [x], out, SoftmaxAttrs(float(beta)))

    def generic(self, op: str, inputs: list[int], shape: Sequence[int], dtype: str = "int8",
                quant: QuantParams | None = None, attrs=None) -> int:
        """Any op, e.g. one kiloml does not implement (``TANH``), for reader tests. Its
        calibration passes input 0's through when the shapes agree (zeros otherwise)."""
        out = self.tensor(op.lower(), shape, dtype, quant=quant)
        src = self.calib.get(inputs[0]) if inputs and inputs[0] >= 0 else None
        same = src is not None and src.shape[1:] == tuple(shape)
        self.calib[out] = src if same else np.zeros((CALIBRATION_SAMPLES, *shape))
        return self._node(op, inputs, out, attrs)

    def build(self, outputs: int | Sequence[int]) -> Graph:
        outs = [outputs] if isinstance(outputs, int) else list(outputs)
        return Graph(list(self.tensors), list(self.nodes), list(self.inputs), outs, name=self.name)


# -- single-op models ------------------------------------------------------------------------

def conv2d_model(rng, in_shape=(1, 8, 8, 3), out_channels=4, kernel: Pair = 3, stride: Pair = 1,
                 dilation: Pair = 1, padding="SAME", activation="NONE", per_channel=True,
                 bias=True) -> Graph:
    m = ModelBuilder(rng, "conv2d")
    y = m.conv2d(m.input(in_shape), out_channels, kernel, stride, dilation, padding, activation,
                 per_channel, bias)
    return m.build(y)


def depthwise_model(rng, in_shape=(1, 8, 8, 4), depth_multiplier=1, kernel: Pair = 3,
                    stride: Pair = 1, dilation: Pair = 1, padding="SAME", activation="NONE",
                    per_channel=True, bias=True) -> Graph:
    m = ModelBuilder(rng, "depthwise")
    y = m.depthwise_conv2d(m.input(in_shape), depth_multiplier, kernel, stride, dilation,
                           padding, activation, per_channel, bias)
    return m.build(y)


def fc_model(rng, in_shape=(1, 16), units=8, depth=None, activation="NONE", keep_num_dims=False,
             per_channel=False, bias=True) -> Graph:
    m = ModelBuilder(rng, "fully_connected")
    y = m.fully_connected(m.input(in_shape), units, depth, activation, keep_num_dims,
                          per_channel, bias)
    return m.build(y)


def pool_model(rng, kind="AVG", in_shape=(1, 8, 8, 4), filter_size: Pair = 2, stride: Pair = 2,
               padding="VALID", activation="NONE", in_scale: float | None = None,
               in_zero_point: int | None = None) -> Graph:
    m = ModelBuilder(rng, f"{kind.lower()}_pool")
    x = m.input(in_shape, in_scale, in_zero_point)
    return m.build(m.pool(x, kind, filter_size, stride, padding, activation))


def add_model(rng, shape_a=(1, 4, 4, 8), shape_b=(1, 4, 4, 8), activation="NONE",
              scale_ratio: float | None = None, b_const: bool = False) -> Graph:
    """``scale_ratio``: input b's scale as a multiple of a's (None: independent random)."""
    m = ModelBuilder(rng, "add")
    a = m.input(shape_a)
    b_scale = None if scale_ratio is None else m.tensors[a].scale * scale_ratio
    b = m.const_int8(shape_b, b_scale) if b_const else m.input(shape_b, b_scale)
    return m.build(m.add(a, b, activation))


def reshape_model(rng, in_shape=(1, 4, 4, 8), new_shape=(1, -1), shape_input=True) -> Graph:
    m = ModelBuilder(rng, "reshape")
    return m.build(m.reshape(m.input(in_shape), new_shape, shape_input))


def softmax_model(rng, in_shape=(1, 10), beta=1.0, in_scale: float | None = None,
                  in_zero_point: int | None = None) -> Graph:
    m = ModelBuilder(rng, "softmax")
    return m.build(m.softmax(m.input(in_shape, in_scale, in_zero_point), beta))


def random_inputs(rng: np.random.Generator, graph: Graph) -> list[np.ndarray]:
    """Uniformly random values over the whole range of each graph input's dtype."""
    out = []
    for t in graph.inputs:
        spec = graph.tensors[t]
        dt = DTYPES[spec.dtype]
        if dt.kind in "iu":
            info = np.iinfo(dt)
            out.append(rng.integers(info.min, info.max + 1, size=spec.shape).astype(dt))
        else:
            out.append(rng.standard_normal(spec.shape).astype(dt))
    return out


# -- oracles ---------------------------------------------------------------------------------

def _n_outputs(model_bytes: bytes) -> int:
    return tflite.Model.GetRootAsModel(model_bytes, 0).Subgraphs(0).OutputsLength()


def run_tflm(model_bytes: bytes, inputs: Sequence[np.ndarray],
             arena_size: int | None = None) -> list[np.ndarray]:
    """Invoke TFLite Micro once on ``inputs`` (in graph input order); returns copies of outputs."""
    from tflite_micro.python.tflite_micro import runtime

    model_bytes = bytes(model_bytes)
    arena = arena_size or 10 * len(model_bytes) + (1 << 20)
    it = runtime.Interpreter.from_bytes(model_bytes, arena_size=arena)
    for i, x in enumerate(inputs):
        it.set_input(np.ascontiguousarray(x), i)
    it.invoke()
    return [np.array(it.get_output(i), copy=True) for i in range(_n_outputs(model_bytes))]


def run_litert_ref(model_bytes: bytes, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Invoke LiteRT with its reference kernels (the XNNPACK default can differ by 1 LSB)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_content=bytes(model_bytes),
                     experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    for detail, x in zip(it.get_input_details(), inputs):
        it.set_tensor(detail["index"], np.ascontiguousarray(x).reshape(detail["shape"]))
    it.invoke()
    return [np.array(it.get_tensor(d["index"]), copy=True) for d in it.get_output_details()]


# -- comparison --------------------------------------------------------------------------------

def graph_differences(a: Graph, b: Graph) -> list[str]:
    """Everything the IR holds that differs between two graphs (empty list: the same)."""
    diffs = []
    for field in ("inputs", "outputs", "name"):
        if getattr(a, field) != getattr(b, field):
            diffs.append(f"{field}: {getattr(a, field)} != {getattr(b, field)}")
    if len(a.tensors) != len(b.tensors):
        return diffs + [f"{len(a.tensors)} tensors != {len(b.tensors)}"]
    for i, (s, t) in enumerate(zip(a.tensors, b.tensors)):
        where = f"tensor {i} {s.name!r}"
        for field in ("name", "shape", "dtype"):
            if getattr(s, field) != getattr(t, field):
                diffs.append(f"{where} {field}: {getattr(s, field)} != {getattr(t, field)}")
        if (s.data is None) != (t.data is None) or (
                s.data is not None and not (s.data.dtype == t.data.dtype
                                            and np.array_equal(s.data, t.data))):
            diffs.append(f"{where}: data differs")
        if (s.quant is None) != (t.quant is None):
            diffs.append(f"{where}: quantization {s.quant} != {t.quant}")
        elif s.quant is not None and not (
                np.array_equal(s.quant.scale, t.quant.scale)
                and np.array_equal(s.quant.zero_point, t.quant.zero_point)
                and s.quant.axis == t.quant.axis):
            diffs.append(f"{where}: quantization {s.quant} != {t.quant}")
    if len(a.nodes) != len(b.nodes):
        return diffs + [f"{len(a.nodes)} nodes != {len(b.nodes)}"]
    for n, (p, q) in enumerate(zip(a.nodes, b.nodes)):
        for field in ("op", "inputs", "outputs", "attrs"):
            if getattr(p, field) != getattr(q, field):
                diffs.append(f"node {n} {field}: {getattr(p, field)} != {getattr(q, field)}")
    return diffs
