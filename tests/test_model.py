"""kiloml.model.Model: one object runs an int8 graph on every engine, bit for bit the same.

The engines are the numpy reference interpreter (batched, kiloml.ir.batch), the generated C
built for this host, and the generated C cross-compiled for a Cortex-M4 and a Cortex-M0+
board and run in the emulator. All must give the bytes the reference interpreter gives one
sample at a time; bad inputs must fail with one KilomlError that says what is wrong.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import opbuilder as ob
import trainhelp as H
from kiloml.compress.quantize import quantize_ptq
from kiloml.errors import KilomlError
from kiloml.io.tflite_writer import write_tflite
from kiloml.ir.batch import BatchInterpreter, batch_problem, batched_graph, run_batched
from kiloml.ir.interpreter import Interpreter
from kiloml.model import Model, TensorSpec, logits_graph, quantize_array
from kiloml.targets.run import EmulatorBuild

torch.set_num_threads(2)
M4_BOARD, M0_BOARD = "nano33ble", "pico"        # cortex-m4 and cortex-m0plus in boards.toml


class _Small(nn.Module):
    """Every op family the quantizer exports: CONV_2D (SAME), DEPTHWISE_CONV_2D, a residual
    ADD with fused ReLU, MAX_POOL_2D, RESHAPE, a linear layer (1x1 CONV_2D) and SOFTMAX. The
    7x9 input is 63 bytes, so sample slots in the emulator's tables are padded."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, 3, padding=1)
        self.dw = nn.Conv2d(6, 6, 3, padding=1, groups=6)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(6 * 3 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.c1(x))
        x = torch.relu(self.dw(x) + x)
        return self.fc(torch.flatten(self.pool(x), 1))


@pytest.fixture(scope="module")
def small() -> tuple[Model, np.ndarray]:
    torch.manual_seed(0)
    x = np.random.default_rng(0).normal(0, 1, (64, 1, 7, 9)).astype(np.float32)
    _, g = quantize_ptq(_Small(), x[:48], append_softmax=True)
    model = Model(g)
    xq = model.input_spec.quantize(x[48:].transpose(0, 2, 3, 1))       # 16 samples, NHWC
    return model, xq


def _one_by_one(graph, xs: np.ndarray) -> np.ndarray:
    it = Interpreter(graph)
    t = graph.tensors[graph.inputs[0]]
    return np.stack([it.run(xi.reshape(t.shape))[0] for xi in xs])


def test_specs_describe_the_graph(small):
    model, _ = small
    g = model.graph
    tin, tout = g.tensors[g.inputs[0]], g.tensors[g.outputs[0]]
    assert model.input_spec == TensorSpec(tin.name, (1, 7, 9, 1), "int8", tin.scale,
                                          tin.zero_point)
    assert model.output_spec == TensorSpec(tout.name, (1, 5), "int8", 1 / 256, -128)
    assert model.input_spec.sample_shape == (7, 9, 1)
    assert [n.op for n in g.nodes][-1] == "SOFTMAX"


def test_reference_engine_equals_the_interpreter_one_sample_at_a_time(small):
    model, xq = small
    x = np.concatenate([xq, xq[:5]])                 # 21 samples: a full batch of 16 and 5
    got = model.predict(x)
    assert got.shape == (21, 5) and got.dtype == np.int8
    want = _one_by_one(model.graph, x)
    assert np.array_equal(got, want.reshape(got.shape))
    assert len(set(map(bytes, got))) > 5             # the samples really differ
    # the full graph shape is accepted as well: (N, 1, 7, 9, 1)
    assert np.array_equal(model.predict(x[:, None]), got)


@pytest.mark.parametrize("board", [M4_BOARD, M0_BOARD])
def test_c_and_emulator_engines_equal_the_reference(small, board):
    model, xq = small
    ref = model.predict(xq)
    assert np.array_equal(model.predict(xq, engine="c"), ref)
    assert np.array_equal(model.predict(xq, engine="emulator", board=board), ref)


def test_emulator_runs_more_samples_than_its_table_holds(small):
    model, xq = small
    eb = EmulatorBuild(model.graph, M0_BOARD, max_samples=3)
    assert eb.capacity == 3 and eb.core == "cortex-m0plus" and eb.runtime == "armv6m"
    x = xq[:8].reshape((8,) + model.input_spec.shape)
    got = eb.run(x)[0]                               # emulations of 1, 3, 3 and 1 samples
    assert got.shape == (8, 1, 5)
    assert np.array_equal(got.reshape(8, 5), model.predict(xq[:8]))


def test_quantize_and_dequantize_use_the_tensor_parameters(small):
    model, xq = small
    s_in, s_out = model.input_spec, model.output_spec
    real = (xq.astype(np.float64) - s_in.zero_point) * s_in.scale + 0.3 * s_in.scale
    assert np.array_equal(s_in.quantize(real), xq)                 # rounds to the nearest level
    got = model.predict(real, quantize=True, dequantize=True)
    want = (model.predict(xq).astype(np.float64) - s_out.zero_point) * s_out.scale
    assert got.dtype == np.float64 and np.array_equal(got, want)
    assert np.allclose(got.sum(axis=1), 1.0, atol=0.03)            # softmax probabilities
    assert quantize_array([1000.0, -1000.0, 0.5, -0.5, 1.5], 1.0, 0).tolist() == \
        [127, -128, 1, -1, 2]                                      # saturates; halves away


def test_load_from_tflite_and_logits(small, tmp_path):
    model, xq = small
    path = tmp_path / "m.tflite"
    path.write_bytes(write_tflite(model.graph))
    loaded = Model.load(path)
    assert np.array_equal(loaded.predict(xq), model.predict(xq))
    lg = loaded.logits()
    softmax = loaded.graph.nodes[-1]
    assert softmax.op == "SOFTMAX" and lg.graph.outputs == [softmax.inputs[0]]
    assert lg.graph.nodes == loaded.graph.nodes[:-1] and lg.output_spec.shape == (1, 5)
    it = Interpreter(loaded.graph)
    tin = loaded.input_spec
    want = np.stack([it.run_all(xi.reshape(tin.shape))[softmax.inputs[0]][0] for xi in xq])
    assert np.array_equal(lg.predict(xq), want)
    assert lg.logits() is lg and logits_graph(lg.graph) is lg.graph


def test_a_model_with_two_inputs(tmp_path):
    g = ob.add_model(np.random.default_rng(3), (1, 4, 4, 8), (1, 4, 4, 8), activation="RELU")
    model = Model(g)
    assert len(model.input_specs) == 2
    rng = np.random.default_rng(4)
    a, b = (rng.integers(-128, 128, (6, 4, 4, 8), dtype=np.int8) for _ in range(2))
    got = model.predict([a, b])
    it = Interpreter(g)
    want = np.stack([it.run(a[i][None], b[i][None])[0][0] for i in range(6)])
    assert np.array_equal(got, want)
    assert np.array_equal(model.predict((a, b), engine="c"), got)
    with pytest.raises(KilomlError, match="has 2 inputs"):
        model.input_spec
    with pytest.raises(KilomlError, match="pass a list of 2 arrays"):
        model.predict(a)
    with pytest.raises(KilomlError, match="different numbers of samples"):
        model.predict([a, b[:3]])


def test_a_graph_that_cannot_run_batched_runs_sample_by_sample():
    """A RESHAPE to a rank-1 tensor has no batch axis: batching it would mix samples."""
    g = ob.reshape_model(np.random.default_rng(5), (1, 4, 4, 2), (32,))
    assert "not batch 1" in batch_problem(g)
    with pytest.raises(KilomlError, match="cannot run batched"):
        batched_graph(g, 4)
    x = np.random.default_rng(6).integers(-128, 128, (5, 4, 4, 2), dtype=np.int8)
    got = Model(g).predict(x)
    assert got.shape == (5, 32)
    assert np.array_equal(got, x.reshape(5, 32))
    assert BatchInterpreter(g).batch == 1


def test_batched_runs_equal_single_runs_on_the_mlperf_models():
    """A batch-N copy of the graph equals N batch-1 runs on real models (chunks of 3)."""
    from kiloml.io.tflite_reader import read_tflite

    H.require_shared()
    for name in ("kws_ref_model", "ad01_int8", "pretrainedResnet_quant"):
        g = read_tflite(H.MODELS / "mlperf_tiny" / f"{name}.tflite")
        assert batch_problem(g) is None, name
        tin = g.tensors[g.inputs[0]]
        x = np.random.default_rng(0).integers(-128, 128, (7,) + tin.shape[1:], dtype=np.int8)
        want = _one_by_one(g, x)
        assert np.array_equal(run_batched(g, x, batch=3), want.reshape((7,) + want.shape[2:]))
        assert np.array_equal(BatchInterpreter(g, 3).run(x[:, None])[0], want)


@pytest.mark.parametrize("kwargs, message", [
    (dict(x=np.zeros((2, 7, 9, 1), np.float32)),
     r"'input' is int8, got float32 \(real values need quantize=True\)"),
    (dict(x=np.zeros((2, 7, 9, 1), np.int16)), "'input' is int8, got int16"),
    (dict(x=np.zeros((2, 9, 7, 1), np.int8)),
     r"takes a batch of shape \(N, 7, 9, 1\); got \[2, 9, 7, 1\]"),
    (dict(x=np.zeros((7, 9, 1), np.int8)), r"takes a batch of shape \(N, 7, 9, 1\)"),
    (dict(x=np.zeros((2, 7, 9, 1), bool), quantize=True), "needs real numbers, got bool"),
    (dict(x=np.zeros((2, 7, 9, 1), np.int8), engine="tflm"), "unknown engine 'tflm'"),
    (dict(x=np.zeros((2, 7, 9, 1), np.int8), engine="emulator"), "needs a board"),
    (dict(x=np.zeros((2, 7, 9, 1), np.int8), board=M4_BOARD), "only used by engine 'emulator'"),
    (dict(x=np.zeros((2, 7, 9, 1), np.int8), engine="emulator", board="uno"),
     "unknown board 'uno'"),
    (dict(x=np.zeros((2, 7, 9, 1), np.int8), engine="emulator", board="esp32s3"),
     "xtensa-lx7 core: the emulator runs only"),
])
def test_bad_inputs_fail_with_a_clear_error(small, kwargs, message):
    model, _ = small
    kwargs = dict(kwargs)
    with pytest.raises(KilomlError, match=message):
        model.predict(kwargs.pop("x"), **kwargs)


def test_no_samples_give_no_outputs(small):
    model, _ = small
    for engine, board in (("ref", None), ("c", None), ("emulator", M4_BOARD)):
        got = model.predict(np.zeros((0, 7, 9, 1), np.int8), engine=engine, board=board)
        assert got.shape == (0, 5) and got.dtype == np.int8


def test_model_sits_below_train_and_compress():
    """kiloml.model may use the IR, the .tflite reader, the C generator and the targets, and
    nothing above them (train, compress, data, dsp, workflow, cli): compress builds on it."""
    import ast
    from pathlib import Path

    import kiloml.model

    allowed = ("kiloml.errors", "kiloml.ir", "kiloml.io", "kiloml.codegen", "kiloml.targets")
    tree = ast.parse(Path(kiloml.model.__file__).read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    ours = sorted(m for m in imported if m.split(".")[0] == "kiloml")
    assert ours and all(m.startswith(allowed) for m in ours), ours
