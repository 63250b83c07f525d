"""Outputs of a quantized model on float batches in the model's layout: the numbers that
evaluation reports, from the int8 graph (``run_int8``, through kiloml.model.Model) or from the
fake-quant network (``run_fake``, what QAT trains)."""

from __future__ import annotations

import numpy as np
import torch

from kiloml.compress.export import to_nhwc
from kiloml.compress.qnet import QNet
from kiloml.ir.graph import Graph
from kiloml.model import Model


def run_int8(graph: Graph, x: np.ndarray, dequantize: bool = True, logits: bool = False,
             engine: str = "ref", board: str | None = None) -> np.ndarray:
    """The int8 graph on a float batch in the model's layout (N, C, H, W), (N, C, L) or
    (N, F): inputs quantized as the graph's input expects, outputs (N, ...) dequantized (or
    the raw int8). ``logits`` stops before a final SOFTMAX: its int8 input decides the
    predicted class without the ties that 8-bit probabilities have (the softmax is monotonic,
    so the class is the same otherwise). ``engine``/``board``: see ``Model.predict``."""
    model = Model(graph)
    if logits:
        model = model.logits()
    return model.predict(to_nhwc(x), engine=engine, board=board, quantize=True,
                         dequantize=dequantize)


@torch.no_grad()
def run_fake(net: QNet, x: torch.Tensor | np.ndarray, batch_size: int = 256,
             logits: bool = False) -> np.ndarray:
    """"fake"-mode outputs in float64 (the numbers QAT evaluation reports); the net's mode,
    training flag and compute dtype are restored afterwards."""
    was_mode, was_train, was_dtype = net.mode, net.training, net.compute_dtype
    net.set_mode("fake").eval()
    net.compute_dtype = torch.float64
    try:
        x = torch.as_tensor(np.asarray(x))
        outs = [net(x[i:i + batch_size], logits=logits).numpy()
                for i in range(0, len(x), batch_size)]
    finally:
        net.set_mode(was_mode).train(was_train)
        net.compute_dtype = was_dtype
    return np.concatenate(outs) if outs else np.zeros((0,))
