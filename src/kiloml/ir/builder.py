"""Build small int8 graphs in code, calibrated on sample data.

Used by tests and benchmarks (``demo_dscnn``: a DS-CNN keyword-spotting shaped model with
seeded random weights, for checks that need a realistic graph but no training). Each layer is computed in float on calibration inputs to pick
output scales, so the int8 model does not saturate; weights are per-channel symmetric int8 and
biases int32 with scale input_scale * weight_scale, as TFLite's converter produces them.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from kiloml.ir.graph import Graph, Node, QuantParams, Tensor
from kiloml.ir.ops.add import AddAttrs
from kiloml.ir.ops.conv2d import Conv2DAttrs
from kiloml.ir.ops.conv_common import padded_windows
from kiloml.ir.ops.depthwise_conv2d import DepthwiseConv2DAttrs
from kiloml.ir.ops.fully_connected import FullyConnectedAttrs
from kiloml.ir.ops.pool2d import Pool2DAttrs
from kiloml.ir.ops.reshape import ReshapeAttrs
from kiloml.ir.ops.softmax import SoftmaxAttrs
from kiloml.ir.quant import compute_padding


class GraphBuilder:
    """Append layers to a graph; ``calib`` float inputs (N, *shape) drive scale choice."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.tensors: list[Tensor] = []
        self.nodes: list[Node] = []
        self.inputs: list[int] = []
        self.floats: dict[int, np.ndarray] = {}

    # -- tensors ------------------------------------------------------------------------------
    def _add(self, t: Tensor) -> int:
        self.tensors.append(t)
        return len(self.tensors) - 1

    def _act(self, name: str, real: np.ndarray, relu: str = "NONE") -> int:
        """Activation tensor quantized to cover the calibration range of ``real``."""
        if relu == "RELU6":
            real = np.clip(real, 0, 6)
        elif relu == "RELU":
            real = np.maximum(real, 0)
        lo, hi = min(float(np.percentile(real, 0.1)), 0.0), max(float(np.percentile(real, 99.9)), 0.0)
        scale = max((hi - lo) / 255.0, 1e-6)
        zp = int(np.clip(round(-128 - lo / scale), -128, 127))
        t = self._add(Tensor(name, tuple(real.shape[1:]), "int8", None,
                             QuantParams(np.float32([scale]), [zp])))
        q = np.clip(np.round(real / scale) + zp, -128, 127)
        self.floats[t] = (q - zp) * np.float32(scale)  # what the int8 model really carries
        return t

    def input(self, calib: np.ndarray, name: str = "input") -> int:
        t = self._act(name, calib.astype(np.float64))
        self.inputs.append(t)
        return t

    def _weights(self, name: str, w: np.ndarray, axis: int) -> tuple[int, np.ndarray]:
        red = tuple(i for i in range(w.ndim) if i != axis)
        scale = np.maximum(np.abs(w).max(axis=red) / 127.0, 1e-8).astype(np.float32)
        shape = [1] * w.ndim
        shape[axis] = -1
        q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)
        t = self._add(Tensor(name, w.shape, "int8", q,
                             QuantParams(scale, np.zeros(scale.size, np.int64), axis)))
        return t, q * scale.reshape(shape).astype(np.float64)

    def _bias(self, name: str, b: np.ndarray, x: int, wscale: np.ndarray) -> tuple[int, np.ndarray]:
        s = np.float64(self.tensors[x].scale) * wscale.astype(np.float64)
        q = np.round(b / s).astype(np.int32)
        t = self._add(Tensor(name, b.shape, "int32", q, QuantParams(s.astype(np.float32), np.zeros(s.size, np.int64))))
        return t, q * s

    # -- layers -------------------------------------------------------------------------------
    def conv2d(self, x: int, out_c: int, k: tuple[int, int], stride: int = 1, padding: str = "SAME",
               activation: str = "RELU", depthwise: bool = False, name: str = "conv") -> int:
        xs = self.tensors[x].shape
        fx = self.floats[x].reshape((-1,) + tuple(xs[1:]))  # (N calib, h, w, c); model batch 1
        kh, kw = k
        ho, pt = compute_padding(xs[1], kh, stride, 1, padding)
        wo, pl = compute_padding(xs[2], kw, stride, 1, padding)
        p = SimpleNamespace(k_h=kh, k_w=kw, dil_h=1, dil_w=1, stride_h=stride, stride_w=stride,
                            out_h=ho, out_w=wo, pad_top=pt, pad_left=pl)
        win = padded_windows(fx, p, 0.0)  # (N, ho, wo, kh, kw, ci)
        ci = xs[3]
        if depthwise:
            fan_in = kh * kw
            w = self.rng.normal(0, np.sqrt(2.0 / fan_in), (1, kh, kw, out_c))
            wt, wf = self._weights(f"{name}/weights", w, 3)
            y = np.einsum("nyxhwc,hwc->nyxc", np.repeat(win, out_c // ci, axis=-1), wf[0])
        else:
            fan_in = kh * kw * ci
            w = self.rng.normal(0, np.sqrt(2.0 / fan_in), (out_c, kh, kw, ci))
            wt, wf = self._weights(f"{name}/weights", w, 0)
            y = np.einsum("nyxhwc,ohwc->nyxo", win, wf)
        bt, bf = self._bias(f"{name}/bias", self.rng.normal(0, 0.1, out_c), x,
                            self.tensors[wt].quant.scale)
        out = self._act(f"{name}/out", (y + bf)[:, None], activation)
        if depthwise:
            attrs = DepthwiseConv2DAttrs(stride, stride, 1, 1, padding, activation, out_c // ci)
            self.nodes.append(Node("DEPTHWISE_CONV_2D", [x, wt, bt], [out], attrs, name))
        else:
            attrs = Conv2DAttrs(stride, stride, 1, 1, padding, activation)
            self.nodes.append(Node("CONV_2D", [x, wt, bt], [out], attrs, name))
        return out

    def avg_pool_all(self, x: int, name: str = "pool") -> int:
        xs = self.tensors[x].shape
        t = self._add(Tensor(f"{name}/out", (xs[0], 1, 1, xs[3]), "int8", None, self.tensors[x].quant))
        self.floats[t] = self.floats[x].mean(axis=(2, 3), keepdims=True)
        self.nodes.append(Node("AVERAGE_POOL_2D", [x], [t], Pool2DAttrs(xs[1], xs[2], 1, 1, "VALID"), name))
        return t

    def reshape(self, x: int, shape: tuple[int, ...], name: str = "reshape") -> int:
        st = self._add(Tensor(f"{name}/shape", (len(shape),), "int32", np.array(shape, np.int32)))
        t = self._add(Tensor(f"{name}/out", shape, "int8", None, self.tensors[x].quant))
        self.floats[t] = self.floats[x].reshape((-1,) + tuple(shape))
        self.nodes.append(Node("RESHAPE", [x, st], [t], ReshapeAttrs(shape), name))
        return t

    def fully_connected(self, x: int, units: int, activation: str = "NONE", name: str = "fc") -> int:
        fx = self.floats[x].reshape(self.floats[x].shape[0], -1)
        w = self.rng.normal(0, np.sqrt(2.0 / fx.shape[1]), (units, fx.shape[1]))
        wt, wf = self._weights(f"{name}/weights", w, 0)
        # per-tensor weights, as TFLite's converter emits for FULLY_CONNECTED
        s = np.float32(np.abs(w).max() / 127.0)
        self.tensors[wt].quant = QuantParams(np.float32([s]), [0])
        self.tensors[wt].data = np.clip(np.round(w / s), -127, 127).astype(np.int8)
        wf = self.tensors[wt].data * np.float64(s)
        bt, bf = self._bias(f"{name}/bias", self.rng.normal(0, 0.1, units), x, np.float32([s]))
        out = self._act(f"{name}/out", (fx @ wf.T + bf)[:, None], activation)
        self.nodes.append(Node("FULLY_CONNECTED", [x, wt, bt], [out],
                               FullyConnectedAttrs(activation), name))
        return out

    def add(self, a: int, b: int, activation: str = "NONE", name: str = "add") -> int:
        out = self._act(f"{name}/out", self.floats[a] + self.floats[b], activation)
        self.nodes.append(Node("ADD", [a, b], [out], AddAttrs(activation), name))
        return out

    def softmax(self, x: int, name: str = "softmax") -> int:
        t = self._add(Tensor(f"{name}/out", self.tensors[x].shape, "int8", None,
                             QuantParams(np.float32([1.0 / 256]), [-128])))
        e = np.exp(self.floats[x] - self.floats[x].max(axis=-1, keepdims=True))
        self.floats[t] = e / e.sum(axis=-1, keepdims=True)
        self.nodes.append(Node("SOFTMAX", [x], [t], SoftmaxAttrs(1.0), name))
        return t

    def build(self, outputs: list[int], name: str = "model") -> Graph:
        return Graph(self.tensors, self.nodes, list(self.inputs), outputs, name=name)


def demo_dscnn(seed: int = 0, n_calib: int = 16, width: int = 64) -> Graph:
    """A DS-CNN in the MLPerf Tiny KWS layout (49x10 MFCC in, 12 classes), random weights."""
    b = GraphBuilder(seed)
    x = b.input(b.rng.normal(0, 20, (n_calib, 1, 49, 10, 1)))
    x = b.conv2d(x, width, (10, 4), stride=2, name="conv0")
    for i in range(4):
        x = b.conv2d(x, width, (3, 3), depthwise=True, name=f"dw{i + 1}")
        x = b.conv2d(x, width, (1, 1), name=f"pw{i + 1}")
    x = b.avg_pool_all(x)
    x = b.reshape(x, (1, width))
    x = b.fully_connected(x, 12, name="fc")
    return b.build([b.softmax(x)], name="kiloml-demo-dscnn")
