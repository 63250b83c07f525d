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

from kiloml.errors import KilomlError


class TfliteTeacher:
    """An int8 .tflite classifier as a teacher. ``labels`` maps its outputs to class names."""

    def __init__(self, path: str | Path, labels: list[str] | None = None) -> None:
        from kiloml.io.tflite_reader import read_tflite

        self.path = Path(path)
        g = read_tflite(self.path)
        if len(g.inputs) != 1 or len(g.outputs) != 1:
            raise KilomlError(f"{path}: a teacher needs one input and one output")
        last = next((n for n in g.nodes if g.outputs[0] in n.outputs), None)
        if last is not None and last.op == "SOFTMAX":
            g.outputs = [last.inputs[0]]            # logits: the softmax's input
        self.graph = g
        self.labels = labels
        self.input = g.tensors[g.inputs[0]]
        self.output = g.tensors[g.outputs[0]]

    @property
    def num_outputs(self) -> int:
        return int(self.output.shape[-1])

    def logits(self, features: np.ndarray) -> np.ndarray:
        """(N, *feature_shape) float features (channels last, as the DSP block gives them) ->
        (N, classes) float logits."""
        from kiloml.compress.quantize import quantize_input, run_batched

        xq = quantize_input(features, self.input.scale, self.input.zero_point)
        if len(xq) and xq[0].size != self.input.size:
            raise KilomlError(f"{self.path}: teacher input is {list(self.input.shape)}, features "
                              f"are {list(features.shape[1:])}")
        out = run_batched(self.graph, xq.reshape((len(xq),) + tuple(self.input.shape[1:])))
        return (out.reshape(len(xq), -1).astype(np.float64) - self.output.zero_point) \
            * self.output.scale

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
