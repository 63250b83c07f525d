"""Quantization layouts that converters wrote and TFLite Micro runs: kiloml reads each and
computes what TFLM computes.

Each test writes a small model (io/tflite_writer.py) carrying one quirk, runs it in the
``tflite_micro`` interpreter (the oracle) on seeded random inputs, and requires kiloml's
reference interpreter and the generated C built for this host to give the same bytes; one
model carrying every quirk also runs in the Cortex-M emulator (armv7em kernels on a Cortex-M4,
portable kernels on the Cortex-M0+). Layouts TFLM refuses are refused by kiloml too, with one
line naming the tensor.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

import opbuilder as ob
from kiloml.codegen.c import generate_c
from kiloml.codegen.host import HostBuild
from kiloml.errors import InvalidModelError
from kiloml.io.tflite_reader import parse_tflite
from kiloml.io.tflite_writer import write_tflite
from kiloml.ir.graph import QuantParams
from kiloml.ir.interpreter import Interpreter

N = 8


def model(kind: str):
    """A one-layer int8 model: conv (per-channel), depthwise (per-channel) or fc (per-tensor
    or per-channel weights), 8 output channels; returns (graph, node)."""
    rng = np.random.default_rng(11)
    if kind == "conv":
        g = ob.conv2d_model(rng, in_shape=(1, 6, 6, 3), out_channels=8)
    elif kind == "dw":
        g = ob.depthwise_model(rng, in_shape=(1, 6, 6, 8))
    else:
        m = ob.ModelBuilder(rng, "fc")
        g = m.build(m.fully_connected(m.input((1, 16)), 8, per_channel=kind == "fcpc"))
    return g, g.nodes[0]


def with_quant(g, tensor: int, fn):
    g = copy.deepcopy(g)
    g.tensors[tensor].quant = fn(g.tensors[tensor].quant)
    return g


def inputs(g) -> np.ndarray:
    spec = g.tensors[g.inputs[0]]
    return np.random.default_rng(5).integers(-128, 128, (N,) + spec.shape, dtype=np.int8)


def tflm(data: bytes, xs: np.ndarray) -> np.ndarray:
    return np.stack([ob.run_tflm(data, [x])[0] for x in xs])


def same_as_tflm(g) -> bytes:
    """Write ``g``; TFLM, kiloml's interpreter and the host C must agree on every input."""
    data = write_tflite(g)
    xs = inputs(g)
    want = tflm(data, xs)
    kg = parse_tflite(data, "quirk.tflite")
    it = Interpreter(kg)
    got = np.stack([it.run(x)[0] for x in xs])
    assert np.array_equal(got.reshape(want.shape), want)
    host = HostBuild(generate_c(kg, "m")).run(xs)[0]
    assert np.array_equal(host.reshape(want.shape), want)
    return data


@pytest.mark.parametrize("kind", ["conv", "dw", "fc", "fcpc"])
@pytest.mark.parametrize("axis", [1, 3, 7])
def test_bias_per_channel_scales_with_any_stored_axis(kind, axis):
    """A 1-D bias whose per-channel quantization carries the weights' quantized_dimension
    (3 for depthwise filters, as in TFLM's own example models) or any other."""
    g, node = model(kind)
    g = with_quant(g, node.inputs[2], lambda q: QuantParams(q.scale, q.zero_point, axis))
    assert g.tensors[node.inputs[2]].quant.scale.size == 8
    kg = parse_tflite(same_as_tflm(g))
    assert kg.tensors[node.inputs[2]].quant.axis == 0


@pytest.mark.parametrize("kind", ["conv", "dw", "fc"])
def test_per_tensor_data_as_one_element_arrays(kind):
    """One scale and one zero point with a quantized_dimension that is not 0 (input and
    filter): per-tensor."""
    g, node = model(kind)
    g = with_quant(g, node.inputs[0], lambda q: QuantParams(q.scale, q.zero_point, 3))
    g = with_quant(g, node.inputs[1], lambda q: QuantParams(q.scale[:1], q.zero_point[:1], 3))
    same_as_tflm(g)


@pytest.mark.parametrize("kind", ["conv", "dw", "fc"])
def test_zero_points_of_zero_stored_per_channel_beside_one_scale(kind):
    """Per-tensor weights and bias whose zero points are a per-channel array of zeros."""
    g, node = model(kind)
    g = with_quant(g, node.inputs[1], lambda q: QuantParams(q.scale[:1], np.zeros(8), q.axis))
    g = with_quant(g, node.inputs[2], lambda q: QuantParams(q.scale[:1], np.zeros(8), 0))
    same_as_tflm(g)


@pytest.mark.parametrize("kind", ["conv", "fcpc"])
def test_activation_zero_point_array_uses_its_first_element(kind):
    """An activation with one scale and several zero points: TFLM uses the first (as
    TfLiteTensor.params), kiloml too -- also when the others differ."""
    g, node = model(kind)
    y = node.outputs[0]
    g = with_quant(g, y, lambda q: QuantParams(q.scale, [q.zero_point[0], q.zero_point[0] + 5,
                                                         q.zero_point[0] - 9], 0))
    g = with_quant(g, node.inputs[0], lambda q: QuantParams(q.scale, [q.zero_point[0], 7], 2))
    kg = parse_tflite(same_as_tflm(g))
    assert kg.tensors[y].quant.zero_point.tolist() == [g.tensors[y].quant.zero_point[0]]


@pytest.mark.parametrize("kind", ["conv", "dw", "fcpc"])
def test_bias_without_or_with_inconsistent_quantization(kind):
    """Older converters: a bias with no quantization, or with a scale that is not
    input scale x filter scale; TFLM never reads it, nor does kiloml."""
    g, node = model(kind)
    same_as_tflm(with_quant(g, node.inputs[2], lambda q: None))
    same_as_tflm(with_quant(g, node.inputs[2],
                            lambda q: QuantParams(q.scale * 2, q.zero_point, q.axis)))


@pytest.mark.parametrize("kind", ["conv", "dw", "fcpc"])
def test_filter_scales_on_a_wrong_axis_are_refused_like_tflm(kind):
    """Per-channel filter scales stored on an axis that does not have that many channels:
    TFLM fails to prepare the node; kiloml refuses the file naming the tensor."""
    g, node = model(kind)
    bad = {"conv": 3, "dw": 0, "fcpc": 1}[kind]
    g = with_quant(g, node.inputs[1], lambda q: QuantParams(q.scale, q.zero_point, bad))
    data = write_tflite(g)
    with pytest.raises(RuntimeError):
        ob.run_tflm(data, [inputs(g)[0]])
    with pytest.raises(InvalidModelError, match=r"quirk.tflite: tensor 1 .*8 scales do not match "
                                                 rf"axis {bad}"):
        parse_tflite(data, "quirk.tflite")


def test_every_quirk_in_one_model_runs_bit_exact_in_the_emulator():
    """conv (bias axis 3, filter zero points per channel) -> depthwise (bias without
    quantization, input axis 3) -> fc (bias axis 7, output zero point array): equal to TFLM
    on a Cortex-M4 (armv7em kernels) and a Cortex-M0+ (portable kernels)."""
    from kiloml.targets.run import EmulatorBuild

    m = ob.ModelBuilder(np.random.default_rng(3), "quirks")
    x = m.input((1, 6, 6, 4))
    c = m.conv2d(x, 8)
    d = m.depthwise_conv2d(c, 1)
    r = m.reshape(d, (1, -1))
    y = m.fully_connected(r, 8)
    g = m.build(y)
    conv, dw, fc = (n for n in g.nodes if n.op != "RESHAPE")
    g = with_quant(g, conv.inputs[2], lambda q: QuantParams(q.scale, q.zero_point, 3))
    g = with_quant(g, conv.inputs[1], lambda q: QuantParams(q.scale, np.zeros(8), 0))
    g = with_quant(g, dw.inputs[2], lambda q: None)
    g = with_quant(g, dw.inputs[0], lambda q: QuantParams(q.scale, q.zero_point, 3))
    g = with_quant(g, fc.inputs[2], lambda q: QuantParams(q.scale[:1], np.zeros(8), 7))
    g = with_quant(g, y, lambda q: QuantParams(q.scale, [q.zero_point[0], 3, -3], 0))
    data = same_as_tflm(g)
    xs = inputs(g)
    want = tflm(data, xs)
    kg = parse_tflite(data)
    for board in ("nucleo-l4r5zi", "pico"):
        got = EmulatorBuild(kg, board).run(xs)[0]
        assert np.array_equal(got.reshape(want.shape), want), board
