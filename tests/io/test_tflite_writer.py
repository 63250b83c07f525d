"""The .tflite writer: real models survive read -> write -> read, and the written files run in
TFLite Micro (and LiteRT) with outputs identical to the original files'."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tflite

import opbuilder
from kiloml.io.tflite_reader import parse_tflite, read_tflite
from kiloml.io.tflite_writer import BUFFER_ALIGNMENT, save_tflite, write_tflite

MODELS = sorted(Path("/work/shared/models").glob("*/*.tflite"))


@pytest.fixture(scope="module", params=MODELS, ids=[p.stem for p in MODELS])
def model(request) -> tuple[bytes, bytes]:
    """(original bytes, bytes written from the graph read from them)."""
    original = request.param.read_bytes()
    return original, write_tflite(read_tflite(request.param))


def test_models_present():
    assert len(MODELS) >= 6


def test_round_trip_gives_same_graph(model):
    original, written = model
    g1 = parse_tflite(original)
    g2 = parse_tflite(written)
    assert opbuilder.graph_differences(g1, g2) == []
    assert g1.dump() == g2.dump()


def test_rewrite_is_byte_identical(model):
    _, written = model
    assert write_tflite(parse_tflite(written)) == written


def test_file_layout(model):
    _, written = model
    assert written[4:8] == b"TFL3"
    m = tflite.Model.GetRootAsModel(written, 0)
    assert m.Version() == 3
    assert m.SubgraphsLength() == 1
    sentinel = m.Buffers(0)
    assert sentinel.DataLength() == 0
    sg = m.Subgraphs(0)
    used = set()
    for i in range(sg.TensorsLength()):
        t = sg.Tensors(i)
        if t.Buffer() > 0:
            assert t.Buffer() not in used, "each constant gets its own buffer"
            used.add(t.Buffer())
    assert used == set(range(1, m.BuffersLength()))
    for b in range(1, m.BuffersLength()):
        buf = m.Buffers(b)
        o = buf._tab.Offset(4)
        assert buf._tab.Vector(o) % BUFFER_ALIGNMENT == 0
    for c in range(m.OperatorCodesLength()):
        code = m.OperatorCodes(c)
        assert code.DeprecatedBuiltinCode() == min(code.BuiltinCode(), 127)


def test_written_model_runs_identically_in_tflm(model):
    original, written = model
    g = parse_tflite(original)
    rng = np.random.default_rng(1234)
    for _ in range(2):
        inputs = opbuilder.random_inputs(rng, g)
        want = opbuilder.run_tflm(original, inputs)
        got = opbuilder.run_tflm(written, inputs)
        assert len(want) == len(got) == len(g.outputs)
        for w, o in zip(want, got):
            assert w.dtype == o.dtype and np.array_equal(w, o)


def test_written_model_runs_identically_in_litert(model):
    original, written = model
    g = parse_tflite(original)
    inputs = opbuilder.random_inputs(np.random.default_rng(7), g)
    for w, o in zip(opbuilder.run_litert_ref(original, inputs),
                    opbuilder.run_litert_ref(written, inputs)):
        assert np.array_equal(w, o)


def test_built_model_round_trip_and_save(tmp_path):
    m = opbuilder.ModelBuilder(np.random.default_rng(3), "chain")
    x = m.input((1, 8, 8, 3))
    y = m.conv2d(x, 8, 3, stride=2, activation="RELU")
    y = m.depthwise_conv2d(y, 2, 3, padding="VALID", per_channel=False)
    y = m.pool(y, "AVG", 2, 1, "SAME")
    y = m.reshape(y, (1, -1))
    y = m.fully_connected(y, 5, per_channel=True)
    y = m.softmax(y, 0.5)
    g = m.build(y)
    path = save_tflite(g, tmp_path / "chain.tflite")
    g2 = read_tflite(path)
    assert opbuilder.graph_differences(g, g2) == []


def test_unknown_op_is_rejected():
    g = opbuilder.softmax_model(np.random.default_rng(0))
    g.nodes[0].op = "NOT_AN_OP"
    with pytest.raises(ValueError, match="NOT_AN_OP"):
        write_tflite(g)


def test_fully_connected_as_conv_agrees_in_all_runtimes(model):
    """Written with FULLY_CONNECTED as RESHAPE + 1x1 CONV_2D, every real model gives the same
    bytes in LiteRT (reference kernels), TFLite Micro and kiloml's interpreter: the rewrite
    is what makes LiteRT agree (its FULLY_CONNECTED requantizes in floating point)."""
    from kiloml.ir.interpreter import Interpreter
    from kiloml.ir.passes import fully_connected_as_conv

    original, _ = model
    g = fully_connected_as_conv(parse_tflite(original))
    assert "FULLY_CONNECTED" not in {n.op for n in g.nodes}
    written = write_tflite(g)
    it = Interpreter(parse_tflite(written))
    rng = np.random.default_rng(11)
    for _ in range(2):
        inputs = opbuilder.random_inputs(rng, g)
        want = it.run(*inputs)
        for runtime in (opbuilder.run_tflm, opbuilder.run_litert_ref):
            for w, o in zip(want, runtime(written, inputs)):
                assert np.array_equal(w.reshape(o.shape), o), runtime.__name__


@pytest.mark.parametrize("case", [
    dict(in_shape=(3, 16), units=5),                                       # three rows
    dict(in_shape=(1, 2, 2, 12), units=7, depth=6, keep_num_dims=False),  # rows from a 4-D input
    dict(in_shape=(2, 3, 8), units=4, keep_num_dims=True, activation="RELU"),
    dict(in_shape=(1, 20), units=6, bias=False, per_channel=True),
], ids=["rows", "4d-depth", "keep-dims", "no-bias-per-unit"])
def test_fully_connected_as_conv_shapes(case):
    """Batched rows, keep_num_dims, a depth smaller than the last dimension, no bias and
    per-unit weights: same bytes in kiloml (before and after the rewrite), TFLM and LiteRT."""
    from kiloml.ir.interpreter import Interpreter
    from kiloml.ir.passes import fully_connected_as_conv

    rng = np.random.default_rng(21)
    m = opbuilder.ModelBuilder(rng, "fc")
    x = m.input(case.pop("in_shape"))
    y = m.fully_connected(x, case.pop("units"), **case)
    y2 = m.fully_connected(y, 3, depth=m.tensors[y].shape[-1])
    g = m.build([y, y2])
    conv = fully_connected_as_conv(g)
    assert "FULLY_CONNECTED" not in {n.op for n in conv.nodes}
    written = write_tflite(conv)
    a, b = Interpreter(g), Interpreter(parse_tflite(written))
    for _ in range(3):
        inputs = opbuilder.random_inputs(rng, g)
        want = a.run(*inputs)
        for got in (b.run(*inputs), opbuilder.run_tflm(written, inputs),
                    opbuilder.run_litert_ref(written, inputs)):
            for w, o in zip(want, got):
                assert o.shape == w.shape and np.array_equal(w, o)
