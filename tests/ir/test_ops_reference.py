"""Per-op bit-exactness: kiloml's numpy reference interpreter and generated C vs TFLite Micro.

Every case builds a one-op int8 model with ``opbuilder`` (seeded random quantization), writes
it with ``write_tflite``, reads it back with ``parse_tflite`` and runs TFLM,
``kiloml.ir.interpreter.Interpreter`` and the generated C (compiled on the host with
-Wall -Wextra -Wconversion -Werror under ASan/UBSan) on several seeded random inputs. Outputs
must be equal, element for element, with the same shape and dtype.
"""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest

import opbuilder as ob
from kiloml.io.tflite_reader import parse_tflite
from kiloml.io.tflite_writer import write_tflite
from kiloml.codegen.c import generate_c
from kiloml.codegen.host import HostBuild
from kiloml.ir.interpreter import Interpreter

RUNS = 3
ACTIVATIONS = ["NONE", "RELU", "RELU6", "RELU_N1_TO_1"]


def check_bit_exact(graph, seed: int, runs: int = RUNS) -> None:
    data = write_tflite(graph)
    g = parse_tflite(data)
    assert ob.graph_differences(graph, g) == []
    interp = Interpreter(g)
    rng = np.random.default_rng(seed)
    seen: list[np.ndarray] = []
    all_inputs = [ob.random_inputs(rng, g) for _ in range(runs)]
    build = HostBuild(generate_c(g, "m"), sanitize=True, opt="-O1")
    c_out = build.run(*[np.stack([ins[k] for ins in all_inputs]) for k in range(len(g.inputs))])
    for run, inputs in enumerate(all_inputs):
        want = ob.run_tflm(data, inputs)
        got = interp.run(*inputs)
        for k, w in enumerate(want):
            assert np.array_equal(c_out[k][run], w), f"run {run} output {k}: generated C != TFLM"
        assert len(got) == len(want)
        for k, (w, o) in enumerate(zip(want, got)):
            assert o.dtype == w.dtype and o.shape == w.shape, (
                f"run {run} output {k}: {o.dtype}{o.shape} vs TFLM {w.dtype}{w.shape}")
            if not np.array_equal(o, w):
                diff = np.abs(o.astype(np.int64) - w.astype(np.int64))
                raise AssertionError(
                    f"run {run} output {k}: {int((diff > 0).sum())}/{diff.size} elements differ "
                    f"(max |diff| {int(diff.max())}), first at {np.argwhere(diff)[0].tolist()}: "
                    f"reference {o[tuple(np.argwhere(diff)[0])]}, "
                    f"TFLM {w[tuple(np.argwhere(diff)[0])]}")
            seen.append(w)
    # guard against degenerate models (all outputs saturated / constant): the test would pass
    # for any kernel
    assert len(np.unique(np.concatenate([s.reshape(-1) for s in seen]))) > 1


def seed_of(request) -> int:
    return zlib.crc32(request.node.nodeid.encode())


def _pc(per_channel: bool) -> str:
    return "perchannel" if per_channel else "pertensor"


# -- CONV_2D -------------------------------------------------------------------------------------

CONV_CASES = []
for padding, stride, dilation, act in itertools.product(["SAME", "VALID"], [1, 2], [1, 2],
                                                         ACTIVATIONS):
    CONV_CASES.append(pytest.param(
        dict(in_shape=(1, 9, 9, 3), out_channels=4, kernel=3, stride=stride, dilation=dilation,
             padding=padding, activation=act),
        id=f"{padding}-s{stride}-d{dilation}-{act}"))
for padding, per_channel, bias, batch in itertools.product(["SAME", "VALID"], [True, False],
                                                           [True, False], [1, 2]):
    CONV_CASES.append(pytest.param(
        dict(in_shape=(batch, 8, 7, 5), out_channels=6, kernel=3, stride=2, padding=padding,
             activation="RELU", per_channel=per_channel, bias=bias),
        id=f"{padding}-s2-{_pc(per_channel)}-{'bias' if bias else 'nobias'}-b{batch}"))
CONV_CASES += [
    pytest.param(dict(in_shape=(1, 6, 6, 8), out_channels=5, kernel=1), id="1x1"),
    pytest.param(dict(in_shape=(1, 6, 6, 8), out_channels=5, kernel=1, stride=2, padding="VALID"),
                 id="1x1-s2-VALID"),
    pytest.param(dict(in_shape=(1, 10, 7, 2), out_channels=3, kernel=(2, 3), stride=(1, 2),
                      dilation=(2, 1), padding="SAME"), id="k2x3-s1x2-d2x1-SAME"),
    pytest.param(dict(in_shape=(1, 12, 9, 3), out_channels=4, kernel=(5, 3), stride=(3, 2),
                      padding="VALID", activation="RELU6"), id="k5x3-s3x2-VALID-RELU6"),
    pytest.param(dict(in_shape=(1, 3, 3, 2), out_channels=4, kernel=5, padding="SAME"),
                 id="kernel-larger-than-input-SAME"),
    pytest.param(dict(in_shape=(2, 1, 16, 4), out_channels=8, kernel=(1, 5), stride=(1, 2),
                      padding="SAME", per_channel=False), id="1d-k1x5-s1x2-pertensor-b2"),
    pytest.param(dict(in_shape=(1, 5, 5, 32), out_channels=16, kernel=3, padding="SAME"),
                 id="deep-32ch"),
]


@pytest.mark.parametrize("kw", CONV_CASES)
def test_conv2d(kw, request):
    check_bit_exact(ob.conv2d_model(np.random.default_rng(seed_of(request)), **kw), seed_of(request))


# -- DEPTHWISE_CONV_2D -----------------------------------------------------------------------------

DW_CASES = []
for mult, padding, stride, dilation in itertools.product([1, 2], ["SAME", "VALID"], [1, 2], [1, 2]):
    DW_CASES.append(pytest.param(
        dict(in_shape=(1, 9, 8, 3), depth_multiplier=mult, kernel=3, stride=stride,
             dilation=dilation, padding=padding),
        id=f"m{mult}-{padding}-s{stride}-d{dilation}"))
for act in ACTIVATIONS:
    DW_CASES.append(pytest.param(
        dict(in_shape=(1, 8, 8, 4), kernel=3, padding="SAME", activation=act), id=f"SAME-{act}"))
for per_channel, bias, batch in itertools.product([True, False], [True, False], [1, 2]):
    DW_CASES.append(pytest.param(
        dict(in_shape=(batch, 7, 7, 4), depth_multiplier=2, kernel=3, stride=2, padding="SAME",
             activation="RELU6", per_channel=per_channel, bias=bias),
        id=f"m2-SAME-s2-RELU6-{_pc(per_channel)}-{'bias' if bias else 'nobias'}-b{batch}"))
DW_CASES += [
    pytest.param(dict(in_shape=(1, 6, 6, 2), depth_multiplier=3, kernel=(3, 2), stride=(2, 1),
                      dilation=(1, 2), padding="SAME"), id="m3-k3x2-s2x1-d1x2"),
    pytest.param(dict(in_shape=(1, 8, 8, 16), kernel=3, stride=2, padding="SAME"), id="16ch-s2"),
    pytest.param(dict(in_shape=(1, 1, 20, 4), kernel=(1, 7), dilation=(1, 3), padding="VALID"),
                 id="1d-k1x7-d3-VALID"),
]


@pytest.mark.parametrize("kw", DW_CASES)
def test_depthwise_conv2d(kw, request):
    check_bit_exact(ob.depthwise_model(np.random.default_rng(seed_of(request)), **kw),
                    seed_of(request))


# -- FULLY_CONNECTED ------------------------------------------------------------------------------

FC_CASES = []
for act in ACTIVATIONS:
    FC_CASES.append(pytest.param(dict(in_shape=(1, 32), units=10, activation=act), id=f"2d-{act}"))
for per_channel, bias in itertools.product([False, True], [True, False]):
    FC_CASES.append(pytest.param(
        dict(in_shape=(3, 20), units=7, per_channel=per_channel, bias=bias),
        id=f"2d-rows3-{_pc(per_channel)}-{'bias' if bias else 'nobias'}"))
FC_CASES += [
    pytest.param(dict(in_shape=(1, 4, 4, 8), units=6, depth=128), id="4d-flatten"),
    pytest.param(dict(in_shape=(1, 4, 4, 8), units=6, depth=8), id="4d-rows16"),
    pytest.param(dict(in_shape=(1, 4, 4, 8), units=6, keep_num_dims=True), id="4d-keep_num_dims"),
    pytest.param(dict(in_shape=(2, 3, 5), units=4, keep_num_dims=True, per_channel=True,
                      activation="RELU"), id="3d-keep_num_dims-perchannel-RELU"),
    pytest.param(dict(in_shape=(2, 12), units=3, keep_num_dims=True, bias=False),
                 id="2d-keep_num_dims-nobias"),
    pytest.param(dict(in_shape=(1, 256), units=64, activation="RELU6"), id="2d-256x64"),
]


@pytest.mark.parametrize("kw", FC_CASES)
def test_fully_connected(kw, request):
    check_bit_exact(ob.fc_model(np.random.default_rng(seed_of(request)), **kw), seed_of(request))


# -- AVERAGE_POOL_2D / MAX_POOL_2D --------------------------------------------------------------------

POOL_CASES = []
for kind, padding, (filt, stride) in itertools.product(
        ["AVG", "MAX"], ["SAME", "VALID"], [(2, 2), (3, 2), (3, 1), (2, 1), ((3, 2), (2, 1))]):
    name = "x".join(map(str, filt)) if isinstance(filt, tuple) else f"{filt}x{filt}"
    sname = "x".join(map(str, stride)) if isinstance(stride, tuple) else f"{stride}"
    POOL_CASES.append(pytest.param(
        dict(kind=kind, in_shape=(1, 7, 7, 3), filter_size=filt, stride=stride, padding=padding),
        id=f"{kind}-{padding}-f{name}-s{sname}"))
for kind, act in itertools.product(["AVG", "MAX"], ACTIVATIONS[1:]):
    POOL_CASES.append(pytest.param(
        dict(kind=kind, in_shape=(1, 7, 7, 3), filter_size=3, stride=2, padding="SAME",
             activation=act, in_scale=0.06, in_zero_point=-10),
        id=f"{kind}-SAME-f3-s2-{act}"))
for kind in ["AVG", "MAX"]:
    POOL_CASES += [
        pytest.param(dict(kind=kind, in_shape=(2, 6, 6, 5), filter_size=2, stride=2),
                     id=f"{kind}-VALID-f2-s2-b2"),
        pytest.param(dict(kind=kind, in_shape=(1, 5, 5, 4), filter_size=5, stride=1,
                          padding="SAME"), id=f"{kind}-SAME-f5-s1-partial"),
        pytest.param(dict(kind=kind, in_shape=(1, 6, 6, 8), filter_size=6, stride=6),
                     id=f"{kind}-VALID-global"),
    ]


@pytest.mark.parametrize("kw", POOL_CASES)
def test_pool2d(kw, request):
    check_bit_exact(ob.pool_model(np.random.default_rng(seed_of(request)), **kw), seed_of(request))


# -- ADD ------------------------------------------------------------------------------------------

SHAPES = {
    "same": ((1, 4, 4, 8), (1, 4, 4, 8)),
    "bcast-1x1x1xC": ((1, 4, 4, 8), (1, 1, 1, 8)),
    "bcast-C": ((1, 4, 4, 8), (8,)),
    "bcast-both": ((1, 4, 1, 8), (1, 1, 5, 1)),
    "bcast-first": ((1, 1, 1, 8), (2, 3, 4, 8)),
    "2d-rowvec": ((3, 7), (7,)),
    "scalar": ((1, 4, 4, 3), (1,)),
}
ADD_CASES = [pytest.param(dict(shape_a=a, shape_b=b), id=name) for name, (a, b) in SHAPES.items()]
ADD_CASES += [pytest.param(dict(activation=act), id=f"same-{act}") for act in ACTIVATIONS[1:]]
ADD_CASES += [pytest.param(dict(scale_ratio=r), id=f"same-ratio{r}") for r in (1.0, 0.25, 4.0, 37.0)]
ADD_CASES += [
    pytest.param(dict(shape_b=(8,), b_const=True), id="bcast-C-const"),
    pytest.param(dict(shape_b=(1, 1, 1, 8), b_const=True, activation="RELU6", scale_ratio=0.1),
                 id="bcast-const-RELU6-ratio0.1"),
]


@pytest.mark.parametrize("kw", ADD_CASES)
def test_add(kw, request):
    check_bit_exact(ob.add_model(np.random.default_rng(seed_of(request)), **kw), seed_of(request))


# -- RESHAPE --------------------------------------------------------------------------------------

RESHAPE_CASES = [
    pytest.param(dict(in_shape=(1, 4, 4, 8), new_shape=(1, 128)), id="4d-to-2d"),
    pytest.param(dict(in_shape=(1, 4, 4, 8), new_shape=(1, -1)), id="4d-to-2d-minus1"),
    pytest.param(dict(in_shape=(1, 4, 4, 8), new_shape=(1, 128), shape_input=False),
                 id="4d-to-2d-no-shape-input"),
    pytest.param(dict(in_shape=(1, 128), new_shape=(1, 8, 16)), id="2d-to-3d"),
    pytest.param(dict(in_shape=(2, 6), new_shape=(3, 4)), id="2d-to-2d"),
    pytest.param(dict(in_shape=(1, 10), new_shape=(1, 1, 1, 10)), id="2d-to-4d"),
]


@pytest.mark.parametrize("kw", RESHAPE_CASES)
def test_reshape(kw, request):
    check_bit_exact(ob.reshape_model(np.random.default_rng(seed_of(request)), **kw), seed_of(request))


# -- SOFTMAX --------------------------------------------------------------------------------------

SOFTMAX_CASES = []
for beta, shape, scale in itertools.product([1.0, 0.5], [(1, 10), (5, 12), (2, 3, 6)],
                                            [0.02, 0.1, 0.4]):
    SOFTMAX_CASES.append(pytest.param(
        dict(in_shape=shape, beta=beta, in_scale=scale),
        id=f"beta{beta}-{'x'.join(map(str, shape))}-scale{scale}"))
SOFTMAX_CASES += [
    pytest.param(dict(in_shape=(1, 1, 1, 12), beta=1.0, in_scale=1 / 16, in_zero_point=-128),
                 id="4d-zp-128"),
    pytest.param(dict(in_shape=(1, 2), beta=2.0, in_scale=0.05), id="beta2-two-classes"),
    pytest.param(dict(in_shape=(3, 100), beta=1.0, in_scale=0.1), id="depth100"),
]


@pytest.mark.parametrize("kw", SOFTMAX_CASES)
def test_softmax(kw, request):
    check_bit_exact(ob.softmax_model(np.random.default_rng(seed_of(request)), **kw), seed_of(request))


# -- a few-op chain ----------------------------------------------------------------------------------

def test_chain_conv_dw_pool_fc_softmax(request):
    m = ob.ModelBuilder(np.random.default_rng(seed_of(request)), "chain")
    x = m.input((1, 12, 12, 3))
    y = m.conv2d(x, 8, 3, stride=2, activation="RELU6")
    y = m.depthwise_conv2d(y, 1, 3, padding="SAME", activation="RELU")
    z = m.conv2d(y, 8, 1, per_channel=False)
    y = m.add(y, z, "RELU")
    y = m.pool(y, "AVG", 2, 2)
    y = m.reshape(y, (1, -1))
    y = m.fully_connected(y, 6)
    y = m.softmax(y)
    check_bit_exact(m.build(y), seed_of(request))
