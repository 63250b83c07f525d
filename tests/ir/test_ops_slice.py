"""SLICE (int8, constant begin and size): bit-exact against numpy slicing of the int8 tensor
(the independent oracle) and TFLite Micro, for the reference interpreter, the sanitized host C
and the Cortex-M emulator (armv7em and armv6m runtimes, which fall back to the portable
kernel); .tflite round trip; unsupported forms refused with a reason; the planner's in-place
overlap; batched runs.

Many independent configurations sit side by side in one model (one input and one output
each), so one C build covers them all.
"""

from __future__ import annotations

import numpy as np
import pytest

import opbuilder
from kiloml.codegen.c import generate_c
from kiloml.codegen.host import HostBuild
from kiloml.io.tflite_reader import parse_tflite
from kiloml.io.tflite_writer import write_tflite
from kiloml.ir.batch import BatchInterpreter, batch_problem
from kiloml.ir.graph import Graph, Node, QuantParams, Tensor
from kiloml.ir.interpreter import Interpreter
from kiloml.ir.ops import REGISTRY
from kiloml.ir.ops.base import NoAttrs
from kiloml.targets.profile import profile_graph

CASES = [  # (input shape, begin, size); -1: to the end of the axis
    ((1, 40), [0, 0], [1, 17]),
    ((1, 40), [0, 17], [1, -1]),
    ((1, 40), [0, 5], [1, 1]),
    ((1, 6, 5, 7), [0, 1, 2, 3], [1, 4, 2, 3]),
    ((1, 6, 5, 7), [0, 0, 0, 0], [-1, -1, -1, -1]),
    ((2, 3, 9), [1, 1, 2], [1, 2, 6]),
    ((23,), [4], [11]),
    ((3, 8), [0, 0], [3, 8]),
]


def _oracle(x: np.ndarray, begin, size) -> np.ndarray:
    """numpy slicing, sizes -1 resolved here independently of the op."""
    sl = tuple(slice(b, x.shape[i] if s == -1 else b + s) for i, (b, s) in
               enumerate(zip(begin, size)))
    return x[sl]


def _model(seed: int, cases=CASES, index_dtype=np.int32) -> tuple[Graph, list]:
    m = opbuilder.ModelBuilder(np.random.default_rng(seed), "slices")
    outs = []
    for shape, begin, size in cases:
        x = m.input(shape)
        out_shape = _oracle(np.zeros(shape, np.int8), begin, size).shape
        bt = m.tensor("begin", (len(shape),), index_dtype.__name__,
                      np.array(begin, index_dtype))
        st = m.tensor("size", (len(shape),), index_dtype.__name__, np.array(size, index_dtype))
        outs.append(m.generic("SLICE", [x, bt, st], out_shape, quant=m.tensors[x].quant,
                             attrs=NoAttrs()))
    g = m.build(outs)
    for node in g.nodes:
        assert REGISTRY[node.op].check(g, node) == [], node
    return g, cases


def _samples(g: Graph, n: int, seed: int) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [[rng.integers(-128, 128, g.tensors[t].shape).astype(np.int8) for t in g.inputs]
            for _ in range(n)]


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_slice_bit_exact_numpy_tflm_host_c(index_dtype):
    g, cases = _model(1, index_dtype=index_dtype)
    model = write_tflite(g)
    g2 = parse_tflite(model)
    assert opbuilder.graph_differences(g, g2) == []
    samples = _samples(g2, 5, 2)
    interp = Interpreter(g2)
    c_out = HostBuild(generate_c(g2, "m"), sanitize=True).run(
        *[np.stack([x[k] for x in samples]) for k in range(len(g2.inputs))])
    for i, x in enumerate(samples):
        ref = interp.run(*x)
        tflm = opbuilder.run_tflm(model, x)
        for k, (shape, begin, size) in enumerate(cases):
            want = _oracle(x[k], begin, size)
            assert np.array_equal(ref[k], want), (k, i)
            assert np.array_equal(tflm[k].reshape(want.shape), want), ("TFLM", k, i)
            assert np.array_equal(c_out[k][i], want), ("C", k, i)


@pytest.mark.parametrize("board,runtime", [("nano33ble", None), ("pico", "armv6m")])
def test_slice_bit_exact_in_the_emulator(board, runtime):
    g, _ = _model(3)
    r = profile_graph(g, board, runtime=runtime)
    assert r["output_matches_reference"] is True
    assert r["layers_checked"] == len(g.nodes) and r["layers_match_reference"] is True
    assert {layer["kernel"] for layer in r["layers"]} == {"kml_slice_s8"}


def test_slice_values_are_copied_unchanged_like_tflm():
    """Input and output quantization differ: TFLM copies the raw values (no rescale)."""
    t = [Tensor("x", (1, 8), "int8", quant=QuantParams([0.05], [3])),
         Tensor("b", (2,), "int32", np.array([0, 2], np.int32)),
         Tensor("s", (2,), "int32", np.array([1, 4], np.int32)),
         Tensor("y", (1, 4), "int8", quant=QuantParams([0.2], [-7]))]
    g = Graph(t, [Node("SLICE", [0, 1, 2], [3], NoAttrs(), "y")], [0], [3])
    assert REGISTRY["SLICE"].check(g, g.nodes[0]) == []
    x = np.arange(-4, 4, dtype=np.int8).reshape(1, 8)
    want = x[:, 2:6]
    assert np.array_equal(opbuilder.run_tflm(write_tflite(g), [x])[0], want)
    assert np.array_equal(Interpreter(g).run(x)[0], want)


@pytest.mark.parametrize("begin,size,const,reason", [
    ([0, 30], [1, 11], True, "does not fit dimension 40"),
    ([0, -1], [1, 3], True, "does not fit"),
    ([0, 0], [1, 5], False, "constant int32 or int64"),
    ([0, 0, 0], [1, 1, 5], True, "constant int32 or int64 tensor of 2 values"),
    ([0, 3], [1, 4], True, "does not match the slice size [1, 4]"),
])
def test_unsupported_slices_are_refused_with_a_reason(begin, size, const, reason):
    out = (1, 5)
    t = [Tensor("x", (1, 40), "int8", quant=QuantParams([0.05], [3])),
         Tensor("b", (len(begin),), "int32", np.array(begin, np.int32) if const else None),
         Tensor("s", (len(size),), "int32", np.array(size, np.int32)),
         Tensor("y", out, "int8", quant=QuantParams([0.05], [3]))]
    g = Graph(t, [Node("SLICE", [0, 1, 2], [3], NoAttrs(), "y")], [0], [3])
    probs = REGISTRY["SLICE"].check(g, g.nodes[0])
    assert probs and reason in probs[0], probs


def test_slice_in_place_and_batched():
    """A chain x -> SLICE -> SLICE: the planner may overlap each output with its input (a
    slice reads ahead of what it writes); batched runs equal sample-by-sample ones."""
    m = opbuilder.ModelBuilder(np.random.default_rng(4), "chain")
    x = m.input((1, 64))
    q = m.tensors[x].quant
    a = m.generic("SLICE", [x, m.tensor("b", (2,), "int32", np.array([0, 10], np.int32)),
                            m.tensor("s", (2,), "int32", np.array([1, 40], np.int32))],
                  (1, 40), quant=q, attrs=NoAttrs())
    b = m.generic("SLICE", [a, m.tensor("b", (2,), "int32", np.array([0, 3], np.int32)),
                            m.tensor("s", (2,), "int32", np.array([1, -1], np.int32))],
                  (1, 37), quant=q, attrs=NoAttrs())
    g = m.build(b)
    res = generate_c(g, "m")
    xs = np.random.default_rng(5).integers(-128, 128, (7, 1, 64)).astype(np.int8)
    got = HostBuild(res, sanitize=True).run(xs)[0]
    assert np.array_equal(got, xs[:, :, 13:50])
    assert batch_problem(g) is None
    assert np.array_equal(BatchInterpreter(g, batch=4).run(xs)[0], xs[:, :, 13:50])
    assert res.plan.inplace, "the planner found no in-place overlap"
