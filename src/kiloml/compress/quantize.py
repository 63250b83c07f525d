"""PyTorch model -> kiloml int8 IR with TFLite's integer semantics: PTQ and QAT (the façade).

The path a model takes::

    nn.Module --lower()--> QNet (float) --calibrate()--> QNet (fake) --to_graph()--> Graph
                                               \\--QAT: train QNet in "fake" mode--/

The work is done in modules with one job each; this module re-exports their public names so
that ``from kiloml.compress.quantize import ...`` keeps working:

``qmath``        TFLite's quantization arithmetic on tensors (rounding, scales, fake_quant)
``calibration``  observers (activation ranges) and ``calibrate``
``qnet``         the fake-quant network: ``QOp`` classes and ``QNet`` (float/observe/fake)
``rules``        the lowering rules, one per PyTorch layer or function, in tables
``fold``         identities dropped, batch norms folded, activations fused
``lowering``     ``lower``: torch.fx trace -> rules -> folding -> QNet
``export``       ``to_graph``, ``export_tflite``, ``quantize_ptq``, the graph's input layout
``evaluate``     ``run_int8`` (through kiloml.model.Model) and ``run_fake``

The exported graph and "fake" mode derive every integer from the same functions, so the int8
model differs from "fake" evaluation only by TFLite's fixed-point requantization (a multiplier
rounded to 31 bits, double rounding; ADD's 20-bit input shift; the integer softmax): in
practice a 1-LSB difference on a small fraction of values and the same top-1 class on all but
a handful of samples in thousands (the tests measure it).
"""

from __future__ import annotations

from kiloml.compress.calibration import METHODS, Observer, calibrate
from kiloml.compress.evaluate import run_fake, run_int8
from kiloml.compress.export import (export_tflite, integer_weights, quantize_input, quantize_ptq,
                                    to_graph, to_nhwc)
from kiloml.compress.lowering import lower
from kiloml.compress.qmath import (INT32_MAX, QMAX, QMIN, SOFTMAX_SCALE, SOFTMAX_ZP, WMAX,
                                   QuantizeError, act_range, f32, fake_quant, qparams_from_range,
                                   quantize_bias, quantize_weight, round_half_away,
                                   weight_scales)
from kiloml.compress.qnet import (QAdd, QConv, QFlatten, QLinear, QNet, QOp, QPad, QPool, QRelu,
                                  QSoftmax, weight_quant)
from kiloml.ir.batch import batched_graph, run_batched
from kiloml.model import logits_graph

__all__ = [
    "INT32_MAX", "METHODS", "QMAX", "QMIN", "SOFTMAX_SCALE", "SOFTMAX_ZP", "WMAX",
    "Observer", "QAdd", "QConv", "QFlatten", "QLinear", "QNet", "QOp", "QPad", "QPool", "QRelu",
    "QSoftmax", "QuantizeError", "act_range", "batched_graph", "calibrate", "export_tflite",
    "f32", "fake_quant", "integer_weights", "logits_graph", "lower", "qparams_from_range",
    "quantize_bias", "quantize_input", "quantize_ptq", "quantize_weight", "round_half_away",
    "run_batched", "run_fake", "run_int8", "to_graph", "to_nhwc", "weight_quant",
    "weight_scales",
]
