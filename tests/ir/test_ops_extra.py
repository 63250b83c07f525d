"""MUL, PAD, MEAN, CONCATENATION, LOGISTIC, TANH, RELU, RELU6, QUANTIZE and DEQUANTIZE:
bit-exact against TFLite Micro, for the numpy reference and for the sanitized host C.

To keep the C builds few (about a second each), every test puts many independent
configurations side by side in one model (one subgraph per configuration, each with its own
inputs and output), writes it to .tflite, reads it back, runs TFLM on seeded random inputs and
compares every output by name. LOGISTIC, TANH, RELU, RELU6 and int8 QUANTIZE see all 256 int8
values in the first sample.

Behaviours of TFLM that decide kiloml's semantics are pinned here too: MEAN's integer
multiplier path (also for equal quantization), RELU6 ignoring the output quantization,
CONCATENATION refusing mixed quantization, PAD copying raw values, QUANTIZE rounding halves
away from zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

import opbuilder
from opbuilder import CALIBRATION_SAMPLES as S
from kiloml.codegen.c import generate_c
from kiloml.codegen.host import HostBuild
from kiloml.errors import UnsupportedModelError
from kiloml.io.tflite_reader import parse_tflite
from kiloml.io.tflite_writer import write_tflite
from kiloml.ir.graph import Graph, Node, QuantParams, Tensor
from kiloml.ir.interpreter import Interpreter
from kiloml.ir.ops import REGISTRY
from kiloml.ir.ops.base import NoAttrs
from kiloml.ir.ops.concatenation import ConcatenationAttrs
from kiloml.ir.ops.mean import MeanAttrs
from kiloml.ir.ops.mul import MulAttrs

SAMPLES = 6


# -- a model holding many independent single-op subgraphs --------------------------------------

@dataclass
class Bench:
    """Side-by-side single-op subgraphs; ``labels[k]`` names graph output ``k``."""

    rng: np.random.Generator
    m: opbuilder.ModelBuilder = None
    labels: list[str] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.m = opbuilder.ModelBuilder(self.rng, "bench")

    def input(self, shape, scale=None, zero_point=None) -> int:
        return self.m.input(shape, scale, zero_point)

    def float_input(self, shape) -> int:
        t = self.m.tensor("finput", shape, "float32")
        self.m.inputs.append(t)
        return t

    def const(self, shape, scale=None, zero_point=None) -> int:
        return self.m.const_int8(shape, scale, zero_point)

    def out(self, shape, scale: float, zero_point: int, dtype: str = "int8") -> int:
        q = None if dtype == "float32" else QuantParams([scale], [zero_point])
        return self.m.tensor("out", shape, dtype, quant=q)

    def calibrated_out(self, values: np.ndarray, activation: str = "NONE") -> int:
        """Output quantization from the float calibration batch ``values`` (S, *shape)."""
        return self.m._output("out", values, activation)

    def op(self, label: str, op: str, ins: list[int], out: int, attrs=None,
           result: bool = True) -> int:
        self.m.nodes.append(Node(op, ins, [out], attrs if attrs is not None else NoAttrs(), label))
        if result:
            self.labels.append(label)
            self.outputs.append(out)
        return out

    def graph(self) -> Graph:
        g = self.m.build(self.outputs)
        for node in g.nodes:
            reasons = REGISTRY[node.op].check(g, node)
            assert reasons == [], (node.name, reasons)
        return g


def full_range_inputs(g: Graph, rng: np.random.Generator, n: int = SAMPLES,
                      floats=None) -> list[list[np.ndarray]]:
    """Seeded random inputs; in the first sample every int8 input counts up through
    -128..127 (wrapping), so each element-wise config sees all 256 values when it has 256."""
    samples = [opbuilder.random_inputs(rng, g) for _ in range(n)]
    for k, t in enumerate(g.inputs):
        spec = g.tensors[t]
        if spec.dtype == "int8":
            samples[0][k] = ((np.arange(spec.size) % 256) - 128).astype(np.int8).reshape(spec.shape)
        elif floats is not None:
            for s in samples:
                s[k] = floats(rng, spec.shape)
    return samples


def assert_bit_exact(g: Graph, labels: list[str], samples: list[list[np.ndarray]]) -> dict:
    """Write, read back, run TFLM, the reference interpreter and the sanitized host C."""
    model = write_tflite(g)
    g2 = parse_tflite(model)
    assert opbuilder.graph_differences(g, g2) == []
    tflm = [opbuilder.run_tflm(model, x) for x in samples]
    interp = Interpreter(g2)
    ref = [interp.run(*x) for x in samples]
    result = generate_c(g2, "m")
    batched = [np.stack([x[k] for x in samples]) for k in range(len(g2.inputs))]
    c_out = HostBuild(result, sanitize=True).run(*batched)
    for i in range(len(samples)):
        for k, label in enumerate(labels):
            want = tflm[i][k].reshape(g2.tensors[g2.outputs[k]].shape)
            assert want.dtype == ref[i][k].dtype == c_out[k][i].dtype, label
            assert np.array_equal(ref[i][k], want), f"reference != TFLM: {label}, sample {i}"
            assert np.array_equal(c_out[k][i], want), f"C != TFLM: {label}, sample {i}"
    return {"tflm": tflm, "plan": result.plan}


def _calib(b: Bench, t: int) -> np.ndarray:
    return b.m.calib[t]


# -- MUL ---------------------------------------------------------------------------------------

MUL_CASES = [  # (shape a, shape b, activation, b constant)
    ((1, 4, 4, 8), (1, 4, 4, 8), "NONE", False),
    ((1, 4, 4, 8), (8,), "RELU", False),
    ((2, 1, 3, 1), (1, 5, 1, 4), "RELU6", False),
    ((3, 4), (1,), "RELU_N1_TO_1", True),
    ((1, 4, 4, 8), (1, 1, 1, 8), "NONE", True),
    ((2, 3, 4), (4,), "NONE", False),
    ((1, 1, 1, 16), (1, 4, 4, 1), "RELU", False),
    ((7,), (7,), "NONE", False),
]


def test_mul():
    rng = np.random.default_rng(101)
    b = Bench(rng)
    for sa, sb, act, b_const in MUL_CASES:
        a = b.input(sa)
        c = b.const(sb) if b_const else b.input(sb)
        ca, cb = _calib(b, a), _calib(b, c)
        r = max(ca.ndim, cb.ndim) - 1
        ca = ca.reshape((S,) + (1,) * (r - ca.ndim + 1) + ca.shape[1:])
        cb = cb.reshape((S,) + (1,) * (r - cb.ndim + 1) + cb.shape[1:])
        y = b.calibrated_out(ca * cb, act)
        b.op(f"mul {sa}x{sb} {act}{' const' if b_const else ''}", "MUL", [a, c], y, MulAttrs(act))
    # the same tensor twice, and an output scale above the product of the input scales
    x = b.input((1, 3, 3, 4))
    b.op("mul x*x", "MUL", [x, x], b.calibrated_out(_calib(b, x) ** 2), MulAttrs())
    p, q = b.input((2, 8), 0.02, 5), b.input((2, 8), 0.03, -9)
    b.op("mul small output scale", "MUL", [p, q], b.out((2, 8), 0.0001, 3), MulAttrs())
    g = b.graph()
    assert_bit_exact(g, b.labels, full_range_inputs(g, rng))


# -- PAD ---------------------------------------------------------------------------------------

PAD_CASES = [
    ((1, 4, 5, 3), [[0, 0], [1, 2], [2, 1], [0, 0]]),
    ((1, 4, 5, 3), [[0, 0], [0, 0], [0, 0], [0, 0]]),
    ((2, 3, 4, 5), [[1, 0], [0, 2], [3, 0], [1, 1]]),
    ((1, 6, 6, 2), [[0, 0], [1, 1], [1, 1], [0, 0]]),
    ((6,), [[2, 3]]),
    ((3, 4), [[0, 1], [2, 0]]),
    ((2, 3, 4), [[0, 0], [0, 0], [3, 1]]),
]


def _pad(b: Bench, label: str, x: int, pads, out_quant=None) -> int:
    xs = b.m.tensors[x].shape
    pt = b.m.tensor("paddings", (len(xs), 2), "int32", np.array(pads, np.int32))
    shape = tuple(d + p[0] + p[1] for d, p in zip(xs, pads))
    q = out_quant or (b.m.tensors[x].scale, b.m.tensors[x].zero_point)
    return b.op(label, "PAD", [x, pt], b.out(shape, *q))


def test_pad():
    rng = np.random.default_rng(102)
    b = Bench(rng)
    for shape, pads in PAD_CASES:
        _pad(b, f"pad {shape} {pads}", b.input(shape), pads)
    # different output quantization: TFLM and LiteRT copy raw values, pad with the output zp
    _pad(b, "pad, output quantization differs", b.input((1, 3, 3, 2), 0.05, 3),
         [[0, 0], [1, 1], [0, 2], [0, 0]], (0.1, -20))
    g = b.graph()
    samples = full_range_inputs(g, rng)
    assert_bit_exact(g, b.labels, samples)
    assert np.array_equal(opbuilder.run_litert_ref(write_tflite(g), samples[1])[-1],
                          Interpreter(g).run(*samples[1])[-1])


# -- MEAN --------------------------------------------------------------------------------------

MEAN_CASES = [  # (shape, axes, keep_dims, output quantization: "same" | "calibrated" | (s, zp))
    ((1, 5, 7, 3), [1, 2], True, "same"),
    ((1, 5, 7, 3), [1, 2], True, "calibrated"),
    ((1, 5, 7, 3), [1, 2], False, "same"),
    ((1, 5, 7, 3), [2, 1], False, "calibrated"),
    ((1, 8, 8, 16), [1, 2], True, (0.5, -10)),     # output scale far above the input's
    ((1, 8, 8, 16), [1, 2], False, (0.0004, 7)),   # and far below
    ((1, 1, 1, 8), [1, 2], True, "calibrated"),    # one value per mean
    ((2, 4, 6), [-1], False, "same"),
    ((2, 4, 6), [0, 2], True, "calibrated"),
    ((3, 10), [1], False, "calibrated"),
    ((3, 10), [0], True, "same"),
    ((1, 5, 7, 3), [3], True, "calibrated"),
    ((2, 3, 4, 5), [0, 1, 2, 3], False, "calibrated"),
    ((2, 3, 4, 5), [2, -2], True, "calibrated"),   # a repeated axis counts once
    ((16,), [0], False, "same"),
]


def test_mean():
    rng = np.random.default_rng(103)
    b = Bench(rng)
    for shape, axes, keep, oq in MEAN_CASES:
        x = b.input(shape)
        axis_t = b.m.tensor("axis", (len(axes),), "int32", np.array(axes, np.int32))
        rank = len(shape)
        red = tuple(sorted({a % rank for a in axes}))
        calib = _calib(b, x).mean(axis=tuple(a + 1 for a in red), keepdims=keep)
        out_shape = calib.shape[1:]
        if oq == "same":
            y = b.out(out_shape, b.m.tensors[x].scale, b.m.tensors[x].zero_point)
        elif oq == "calibrated":
            y = b.calibrated_out(calib)
        else:
            y = b.out(out_shape, *oq)
        b.op(f"mean {shape} axes {axes} keep {keep} {oq}", "MEAN", [x, axis_t], y, MeanAttrs(keep))
    g = b.graph()
    assert_bit_exact(g, b.labels, full_range_inputs(g, rng))


def test_mean_equal_quantization_rounds_like_the_multiplier_path():
    """TFLM once truncated sum / count when quantization is equal; the installed one rounds
    through the multiplier. Pin it: mean of [0, 0, 0, 1, 1, 1, 1, 1] is 0.625 -> 1, and of
    [-1, -1, -1, 0, 0, 0, 0, 0] is -0.375 -> 0 (truncation would give 0 and 0, the float path
    1 and 0; -1 - 1 - 0 for [-1, -1, -1, -1, -1, 0, 0, 0] tells them apart too)."""
    b = Bench(np.random.default_rng(0))
    x = b.input((2, 8), 0.1, 0)
    axis_t = b.m.tensor("axis", (1,), "int32", np.array([1], np.int32))
    b.op("mean", "MEAN", [x, axis_t], b.out((2,), 0.1, 0), MeanAttrs(False))
    g = b.graph()
    x = np.array([[0, 0, 0, 1, 1, 1, 1, 1], [-1, -1, -1, -1, -1, 0, 0, 0]], np.int8)
    tflm = opbuilder.run_tflm(write_tflite(g), [x])[0]
    assert tflm.tolist() == [1, -1]
    assert Interpreter(g).run(x)[0].tolist() == [1, -1]


# -- CONCATENATION -----------------------------------------------------------------------------

CONCAT_CASES = [  # (input shapes, axis, index of a constant input or None)
    ([(1, 4, 4, 3), (1, 4, 4, 5)], -1, None),
    ([(1, 2, 4, 3), (1, 3, 4, 3), (1, 1, 4, 3)], 1, None),
    ([(1, 4, 4, 3), (1, 4, 4, 5), (1, 4, 4, 1)], 3, None),
    ([(2, 3, 4, 2), (2, 1, 4, 2)], -3, 1),
    ([(2, 3), (2, 3), (1, 3)], 0, None),
    ([(3, 2), (3, 5)], 1, 0),
]


def test_concatenation():
    rng = np.random.default_rng(104)
    b = Bench(rng)
    for shapes, axis, const in CONCAT_CASES:
        first = b.input(shapes[0])
        s, zp = b.m.tensors[first].scale, b.m.tensors[first].zero_point
        ins = [first] + [b.const(sh, s, zp) if k + 1 == const else b.input(sh, s, zp)
                         for k, sh in enumerate(shapes[1:])]
        if const == 0:
            ins[0] = b.const(shapes[0], s, zp)
        out_shape = list(shapes[0])
        out_shape[axis % len(out_shape)] = sum(sh[axis % len(out_shape)] for sh in shapes)
        b.op(f"concat {shapes} axis {axis}", "CONCATENATION", ins, b.out(tuple(out_shape), s, zp),
             ConcatenationAttrs(axis))
    x = b.input((1, 2, 2, 3))
    b.op("concat x, x", "CONCATENATION", [x, x],
         b.out((1, 2, 2, 6), b.m.tensors[x].scale, b.m.tensors[x].zero_point),
         ConcatenationAttrs(-1))
    g = b.graph()
    assert_bit_exact(g, b.labels, full_range_inputs(g, rng))


@pytest.mark.parametrize("other", [(0.1, 3), (0.05, -20)], ids=["scale", "zero_point"])
def test_concatenation_mixed_quantization_is_refused_like_tflm(other):
    t = [Tensor("a", (1, 4), "int8", quant=QuantParams([0.05], [3])),
         Tensor("b", (1, 4), "int8", quant=QuantParams([other[0]], [other[1]])),
         Tensor("y", (1, 8), "int8", quant=QuantParams([0.05], [3]))]
    g = Graph(t, [Node("CONCATENATION", [0, 1], [2], ConcatenationAttrs(-1), "y")], [0, 1], [2])
    model = write_tflite(g)
    with pytest.raises(UnsupportedModelError, match="equal quantization"):
        parse_tflite(model)
    with pytest.raises(RuntimeError):  # TFLM's Prepare fails too
        opbuilder.run_tflm(model, [np.zeros((1, 4), np.int8)] * 2)


# -- LOGISTIC and TANH -------------------------------------------------------------------------

SIGMOID_SCALES = [0.001, 0.01, 0.03, 0.0625, 0.1, 0.25, 0.5, 1.0, 4.0]
SIGMOID_ZPS = [-128, 0, 50]


def test_logistic_and_tanh():
    """Every int8 value at input scales from no saturation (0.001) to nearly all (4.0)."""
    rng = np.random.default_rng(105)
    b = Bench(rng)
    for s in SIGMOID_SCALES:
        for zp in SIGMOID_ZPS:
            x = b.input((1, 256), s, zp)
            b.op(f"logistic s={s} zp={zp}", "LOGISTIC", [x], b.out((1, 256), 1 / 256, -128))
            b.op(f"tanh s={s} zp={zp}", "TANH", [x], b.out((1, 256), 1 / 128, 0))
    g = b.graph()
    assert_bit_exact(g, b.labels, full_range_inputs(g, rng, n=3))


# -- RELU, RELU6, QUANTIZE int8 -> int8 --------------------------------------------------------

REQUANT_CASES = [  # (input scale, zp), (output scale, zp)
    ((0.05, 3), (0.05, 3)),
    ((0.05, 3), (0.03, -100)),
    ((0.02, -128), (0.1, 20)),
    ((0.1, 10), (0.1, -10)),
    ((0.1, 0), (0.0071, -128)),
    ((0.003, 90), (0.2, 127)),
]
RELU6_QUANT = [(0.05, 3), (0.01, -128), (0.1, 100), (0.0235294, -128), (0.2, -60)]


def test_relu_relu6_requantize():
    rng = np.random.default_rng(106)
    b = Bench(rng)
    for qi, qo in REQUANT_CASES:
        x = b.input((1, 256), *qi)
        b.op(f"relu {qi}->{qo}", "RELU", [x], b.out((1, 256), *qo))
        b.op(f"quantize {qi}->{qo}", "QUANTIZE", [x], b.out((1, 256), *qo))
    for q in RELU6_QUANT:
        b.op(f"relu6 {q}", "RELU6", [b.input((1, 256), *q)], b.out((1, 256), *q))
    x = b.input((2, 3, 5))
    b.op("relu 3-D", "RELU", [x], b.out((2, 3, 5), 0.04, -128))
    g = b.graph()
    assert_bit_exact(g, b.labels, full_range_inputs(g, rng, n=3))


def test_relu6_with_other_output_quantization_is_refused():
    """TFLM clamps in the input's quantization and ignores the output's; LiteRT rescales."""
    t = [Tensor("x", (1, 256), "int8", quant=QuantParams([0.05], [3])),
         Tensor("y", (1, 256), "int8", quant=QuantParams([0.1], [-20]))]
    g = Graph(t, [Node("RELU6", [0], [1], NoAttrs(), "y")], [0], [1])
    model = write_tflite(g)
    x = np.arange(-128, 128, dtype=np.int8).reshape(1, 256)
    six = 3 + 120  # round(6 / 0.05) + zp
    assert np.array_equal(opbuilder.run_tflm(model, [x])[0], np.clip(x, 3, six))
    assert not np.array_equal(opbuilder.run_litert_ref(model, [x])[0], np.clip(x, 3, six))
    with pytest.raises(UnsupportedModelError, match="RELU6: input and output quantization differ"):
        parse_tflite(model)


# -- QUANTIZE / DEQUANTIZE with float32 at the model boundary ----------------------------------

def halfway_floats(scale: np.float32, count: int) -> np.ndarray:
    """float32 values whose float32 quotient by ``scale`` is exactly k + 0.5."""
    out = []
    for k in range(-count // 2, count // 2):
        c = np.float32((k + 0.5) * float(scale))
        for v in (c, np.nextafter(c, np.float32(np.inf)), np.nextafter(c, np.float32(-np.inf))):
            if np.float32(v) / scale == np.float32(k + 0.5):
                out.append(v)
                break
    return np.array(out, np.float32)


def test_float_model_quantize_fc_dequantize():
    """float in -> QUANTIZE -> FULLY_CONNECTED -> DEQUANTIZE -> float out; the C API is float."""
    rng = np.random.default_rng(107)
    b = Bench(rng)
    xf = b.float_input((1, 16))
    x = b.m.input((1, 16), 0.05, 3)
    b.m.inputs.remove(x)
    b.op("quantize", "QUANTIZE", [xf], x, result=False)
    y = b.m.fully_connected(x, 8, activation="RELU")
    yf = b.out((1, 8), 0, 0, "float32")
    b.op("dequantize", "DEQUANTIZE", [y], yf)
    # the int8 side as well: QUANTIZE alone (all halfway quotients) and DEQUANTIZE alone
    qf = b.float_input((1, 64))
    b.op("quantize alone", "QUANTIZE", [qf], b.out((1, 64), 0.05, -7))
    d = b.input((1, 256), 0.0173, -41)
    b.op("dequantize alone", "DEQUANTIZE", [d], b.out((1, 256), 0, 0, "float32"))
    g = b.graph()
    header = generate_c(g, "m").files["m.h"]
    assert "const float *input0" in header and "float *output0" in header

    half = halfway_floats(np.float32(0.05), 300)
    assert half.size >= 64

    def floats(r, shape):
        size = int(np.prod(shape))
        if size == 64:
            return r.choice(half, size=size, replace=False).reshape(shape)
        return (r.standard_normal(shape) * 3).astype(np.float32)

    samples = full_range_inputs(g, rng, floats=floats)
    samples[0][0] = np.concatenate([half[:8], -half[:8]]).reshape(1, 16)
    res = assert_bit_exact(g, b.labels, samples)
    # every quotient is k + 0.5: halves round away from zero (std::round), not to even
    y = np.array(res["tflm"][1][1], np.int64).reshape(-1)
    quotient = (samples[1][1].reshape(-1) / np.float32(0.05)).astype(np.float64)
    assert np.all(quotient % 1 == 0.5)
    away = np.sign(quotient) * np.floor(np.abs(quotient) + 0.5)
    assert np.array_equal(y, np.clip(away - 7, -128, 127))
    assert not np.array_equal(y, np.clip(np.rint(quotient) - 7, -128, 127))


def test_quantize_out_of_range_saturates_in_c_and_reference():
    """TFLM converts round(x / scale) to int32 unchecked (undefined for NaN and |q| >= 2^31;
    x86 yields INT32_MIN, i.e. -128). kiloml saturates and maps NaN to the zero point; the C
    and the reference agree on that."""
    t = [Tensor("x", (1, 10), "float32"),
         Tensor("y", (1, 10), "int8", quant=QuantParams([0.05], [3]))]
    g = Graph(t, [Node("QUANTIZE", [0], [1], NoAttrs(), "y")], [0], [1])
    x = np.array([[1e30, -1e30, 1e8, -1e8, np.inf, -np.inf, np.nan, 6.375, -6.525, 0.0]],
                 np.float32)
    want = [127, -128, 127, -128, 127, -128, 3, 127, -128, 3]
    assert Interpreter(g).run(x)[0].reshape(-1).tolist() == want
    assert HostBuild(generate_c(g, "m"), sanitize=True).run(x[None])[0].reshape(-1).tolist() == want


# -- a chain that runs in place ----------------------------------------------------------------

def test_chain_in_place():
    """PAD -> CONCATENATION -> MUL -> MEAN -> LOGISTIC -> DEQUANTIZE with the planner free to
    overlap outputs and inputs (negative in-place deltas for PAD and CONCATENATION)."""
    rng = np.random.default_rng(108)
    b = Bench(rng)
    x = b.input((1, 6, 6, 4))
    s, zp = b.m.tensors[x].scale, b.m.tensors[x].zero_point
    p = _pad(b, "pad", x, [[0, 0], [1, 1], [1, 1], [0, 0]])
    b.labels.pop(), b.outputs.pop()
    o = b.input((1, 8, 8, 2), s, zp)
    c = b.op("concat", "CONCATENATION", [p, o], b.out((1, 8, 8, 6), s, zp),
             ConcatenationAttrs(3), result=False)
    m = b.op("mul", "MUL", [c, b.const((6,))], b.out((1, 8, 8, 6), 0.05, -2), MulAttrs("RELU"),
             result=False)
    axis_t = b.m.tensor("axis", (2,), "int32", np.array([1, 2], np.int32))
    mean = b.op("mean", "MEAN", [m, axis_t], b.out((1, 1, 1, 6), 0.02, -100), MeanAttrs(True),
                result=False)
    lg = b.op("logistic", "LOGISTIC", [mean], b.out((1, 1, 1, 6), 1 / 256, -128), result=False)
    b.op("dequantize", "DEQUANTIZE", [lg], b.out((1, 1, 1, 6), 0, 0, "float32"))
    g = b.graph()
    res = assert_bit_exact(g, b.labels, full_range_inputs(g, rng))
    ops = {g.nodes[n].op for n, _, _ in res["plan"].inplace}
    assert ops & {"PAD", "CONCATENATION"}, res["plan"].inplace


# -- unsupported options give reasons ----------------------------------------------------------

def _single(op: str, in_q, out_q, shape=(1, 8), attrs=None, extra=None, in_dtype="int8",
            out_shape=None) -> list[str]:
    ts = [Tensor("x", shape, in_dtype, quant=in_q),
          Tensor("y", out_shape or shape, "int8", quant=out_q)]
    ins = [0]
    if extra is not None:
        ts.append(extra)
        ins.append(2)
    g = Graph(ts, [Node(op, ins, [1], attrs or NoAttrs(), "y")], [0], [1])
    return REGISTRY[op].check(g, g.nodes[0])


def q(s, zp):
    return QuantParams([s], [zp])


def test_unsupported_options_have_reasons():
    assert "scale 1/256" in _single("LOGISTIC", q(0.1, 0), q(1 / 128, -128))[0]
    assert "zero point 0" in _single("TANH", q(0.1, 0), q(1 / 128, -128))[0]
    assert "out of the supported" in _single("LOGISTIC", q(100.0, 0), q(1 / 256, -128))[0]
    assert "int8" in _single("RELU", q(0.1, 0), q(0.1, 0), in_dtype="int16")[0]
    assert "per channel" in _single("QUANTIZE", None, QuantParams([0.1, 0.2], [0, 0], 1),
                                    in_dtype="float32", shape=(1, 2))[0]
    axis = Tensor("axis", (1,), "int32")  # not constant
    assert "constant int32" in _single("MEAN", q(0.1, 0), q(0.1, 0), shape=(1, 4, 4, 2),
                                       attrs=MeanAttrs(False), extra=axis, out_shape=(1, 4, 2))[0]
    pads = Tensor("pads", (2, 2), "int32", np.array([[0, 0], [-1, 0]], np.int32))
    assert "negative paddings" in _single("PAD", q(0.1, 0), q(0.1, 0), extra=pads,
                                          out_shape=(1, 7))[0]
    t = [Tensor("a", (1, 4), "int8", quant=q(0.1, 0)), Tensor("y", (1, 4), "int8", quant=q(0.1, 0))]
    g = Graph(t, [Node("CONCATENATION", [0], [1], ConcatenationAttrs(0, "RELU"), "y")], [0], [1])
    assert "only NONE" in REGISTRY["CONCATENATION"].check(g, g.nodes[0])[0]
    t = [Tensor("a", (2, 4), "int8", quant=q(0.1, 0)), Tensor("b", (3, 4), "int8", quant=q(0.1, 0)),
         Tensor("y", (2, 4), "int8", quant=q(0.1, 0))]
    g = Graph(t, [Node("MUL", [0, 1], [2], MulAttrs(), "y")], [0, 1], [2])
    assert "do not broadcast" in REGISTRY["MUL"].check(g, g.nodes[0])[0]
    t = [Tensor("a", (2, 4), "int8", quant=q(1.0, 0)), Tensor("b", (2, 4), "int8", quant=q(1.0, 0)),
         Tensor("y", (2, 4), "int8", quant=q(1e-6, 0))]
    g = Graph(t, [Node("MUL", [0, 1], [2], MulAttrs(), "y")], [0, 1], [2])
    assert "out of the supported range" in REGISTRY["MUL"].check(g, g.nodes[0])[0]
