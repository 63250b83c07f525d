"""Knowledge distillation: soft targets from a teacher for training a small student.

A teacher is either

* an int8 ``.tflite`` model (``TfliteTeacher``), run through kiloml's reference interpreter,
  e.g. the MLPerf Tiny KWS reference model: its logits are the dequantized input of its final
  SOFTMAX (or its output when it has none), so the student learns from the teacher's full
  ranking of classes rather than 8-bit probabilities; or
* a float PyTorch model (``TorchTeacher``), e.g. a larger zoo model trained first.

The student is trained by kiloml.train.loop with ``distill_alpha`` > 0: loss = alpha x T^2 x
KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) x cross entropy (Hinton et al.
2015). Teachers see the same (augmented) features as the student; their logits are computed
once per feature bank and cached by the caller.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from kiloml.compress.qmath import act_range, fake_quant
from kiloml.errors import KilomlError
from kiloml.model import Model, logits_graph


class TfliteTeacher:
    """An int8 .tflite classifier as a teacher. ``labels`` maps its outputs to class names."""

    def __init__(self, path: str | Path, labels: list[str] | None = None) -> None:
        self.path = Path(path)
        full = Model.load(self.path)
        if len(full.input_specs) != 1 or len(full.output_specs) != 1:
            raise KilomlError(f"{path}: a teacher needs one input and one output")
        self.model = full.logits()                  # logits: the softmax's input
        self.graph = self.model.graph
        self.labels = labels
        self.input = self.graph.tensors[self.graph.inputs[0]]
        self.output = self.graph.tensors[self.graph.outputs[0]]

    @property
    def num_outputs(self) -> int:
        return int(self.output.shape[-1])

    def logits(self, features: np.ndarray) -> np.ndarray:
        """(N, *feature_shape) float features (channels last, as the DSP block gives them) ->
        (N, classes) float logits."""
        features = np.asarray(features)
        if len(features) and features[0].size != self.input.size:
            raise KilomlError(f"{self.path}: teacher input is {list(self.input.shape)}, features "
                              f"are {list(features.shape[1:])}")
        spec = self.model.input_spec
        x = features.reshape((len(features),) + spec.sample_shape)
        return self.model.predict(x, quantize=True, dequantize=True).reshape(len(x), -1)

    def reorder(self, logits: np.ndarray, student_labels: list[str]) -> np.ndarray:
        """Columns in the student's class order (the teacher's ``labels`` must cover them)."""
        if self.labels is None or list(self.labels) == list(student_labels):
            return logits
        missing = [s for s in student_labels if s not in self.labels]
        if missing:
            raise KilomlError(f"teacher has no class {missing[0]!r}")
        return logits[:, [self.labels.index(s) for s in student_labels]]


class TorchTeacher:
    """A float PyTorch model as a teacher (inputs in the model's layout)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model.eval()

    @torch.no_grad()
    def logits(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        xt = torch.as_tensor(np.asarray(x, np.float32))
        return torch.cat([self.model(xt[i:i + batch_size])
                          for i in range(0, len(xt), batch_size)]).numpy().astype(np.float64)


# The MLPerf Tiny KWS reference model's output order (tfds speech_commands label order: the ten
# words sorted, then silence and unknown); checked by the tests on the real test clips.
MLPERF_KWS_LABELS = ["down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes",
                     "_silence_", "_unknown_"]


class TorchGraph(torch.nn.Module):
    """An int8 IR graph run in PyTorch with float arithmetic on dequantized weights and every
    activation re-quantized to its int8 grid (TFLite rounding and fused-activation clamps): the
    integer model up to fixed-point rounding ties, at PyTorch speed and on batches. Used to get
    teacher logits for every (augmented, mixed) training batch on the fly.

    Supports CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, AVERAGE_POOL_2D, MAX_POOL_2D, ADD,
    PAD, RESHAPE, RELU, RELU6, SLICE, CONCATENATION (both copy raw values) and a final SOFTMAX
    (dropped: the output is the logits).
    """

    def __init__(self, graph) -> None:
        super().__init__()
        self.graph = logits_graph(graph)
        g = self.graph
        self._w: dict[int, torch.Tensor] = {}
        for node in g.nodes:
            if node.op not in _TORCH_OPS:
                raise KilomlError(f"teacher op {node.op} is not supported on the fast path")
            for i in node.inputs[1:]:
                if i >= 0 and g.tensors[i].is_const and g.tensors[i].quant is not None:
                    t = g.tensors[i]
                    q = t.quant
                    shape = [1] * len(t.shape)
                    if q.per_channel:
                        shape[q.axis] = -1
                    s = torch.as_tensor(q.scale.astype(np.float64)).reshape(shape)
                    z = torch.as_tensor(q.zero_point.astype(np.float64)).reshape(shape)
                    self._w[i] = ((torch.as_tensor(t.data.astype(np.float64)) - z) * s).float()

    def _fq(self, y: torch.Tensor, t, act: str = "NONE") -> torch.Tensor:
        s, z = float(t.quant.scale[0]), int(t.quant.zero_point[0])
        lo, hi = act_range(act, s, z) if act != "NONE" else (-128, 127)
        return fake_quant(y, s, z, lo, hi)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Float features (N, *input shape without batch, channels last) -> float logits."""
        import torch.nn.functional as F

        from kiloml.train.layers import same_pads

        g = self.graph
        tin = g.tensors[g.inputs[0]]
        v = {g.inputs[0]: self._fq(x.float().reshape((-1,) + tuple(tin.shape[1:])), tin)}
        for node in g.nodes:
            a = node.attrs
            xin = v[node.inputs[0]]
            out = g.tensors[node.outputs[0]]
            if node.op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                w = self._w[node.inputs[1]]
                b = self._w.get(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] >= 0 \
                    else None
                xc = xin.permute(0, 3, 1, 2)
                if node.op == "CONV_2D":
                    wt, groups = w.permute(0, 3, 1, 2), 1
                else:
                    wt, groups = w.permute(3, 0, 1, 2), xc.shape[1]
                if a.padding == "SAME":
                    t, bo = same_pads(xc.shape[2], wt.shape[2], a.stride_h, a.dilation_h)
                    le, r = same_pads(xc.shape[3], wt.shape[3], a.stride_w, a.dilation_w)
                    xc = F.pad(xc, (le, r, t, bo))
                y = F.conv2d(xc, wt, b, (a.stride_h, a.stride_w), 0,
                             (a.dilation_h, a.dilation_w), groups).permute(0, 2, 3, 1)
                y = self._fq(y, out, a.activation)
            elif node.op == "FULLY_CONNECTED":
                w = self._w[node.inputs[1]]
                b = self._w.get(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] >= 0 \
                    else None
                y = self._fq(F.linear(xin.reshape(len(xin), -1), w, b), out, a.activation)
            elif node.op in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
                xc = xin.permute(0, 3, 1, 2)
                k, st = (a.filter_h, a.filter_w), (a.stride_h, a.stride_w)
                if a.padding != "VALID":
                    raise KilomlError("teacher pooling with SAME padding is not supported")
                y = (F.avg_pool2d(xc, k, st) if node.op == "AVERAGE_POOL_2D"
                     else F.max_pool2d(xc, k, st)).permute(0, 2, 3, 1)
                y = self._fq(y, out, a.activation)
            elif node.op == "ADD":
                y = self._fq(xin + v[node.inputs[1]], out, a.activation)
            elif node.op == "PAD":
                p = g.tensors[node.inputs[1]].data.reshape(-1, 2)
                y = F.pad(xin, tuple(int(q) for pair in p[::-1] for q in pair))
            elif node.op in ("RELU", "RELU6"):
                y = self._fq(xin, out, node.op)
            elif node.op == "SLICE":                                # every batch row
                begin, size = (g.tensors[node.inputs[k]].data.reshape(-1) for k in (1, 2))
                y = xin[(slice(None),) + tuple(
                    slice(int(b), None if int(n) == -1 else int(b) + int(n))
                    for b, n in zip(begin[1:], size[1:]))]
            elif node.op == "CONCATENATION":
                y = torch.cat([v[i] for i in node.inputs], dim=a.axis % len(out.shape))
            else:                                                   # RESHAPE
                y = xin.reshape((len(xin),) + tuple(out.shape[1:]))
            v[node.outputs[0]] = y
        return v[g.outputs[0]].reshape(len(x), -1)


_TORCH_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D",
              "MAX_POOL_2D", "ADD", "PAD", "RESHAPE", "RELU", "RELU6", "SOFTMAX", "SLICE",
              "CONCATENATION")
