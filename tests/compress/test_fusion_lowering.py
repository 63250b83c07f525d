"""Intermediate fusion through compress: the zoo's ``fusion`` model (a branch per sensor over
``x[:, a:b]``, ``torch.cat``, a head) lowers to SLICE / CONCATENATION, the concatenation's
inputs share one quantization, fake-quant mode reproduces the int8 graph, and the graph runs
the same in TFLite Micro, the reference interpreter and the sanitized host C."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import opbuilder
from kiloml.codegen.c import generate_c
from kiloml.codegen.host import HostBuild
from kiloml.compress.qmath import QuantizeError
from kiloml.compress.quantize import (lower, quantize_input, quantize_ptq, run_fake, run_int8,
                                      to_graph)
from kiloml.io.tflite_reader import parse_tflite
from kiloml.io.tflite_writer import write_tflite
from kiloml.ir.interpreter import Interpreter
from kiloml.ir.ops.movement import same_quant
from kiloml.train.models import ModelError, build_model

SIZES = [12, 7, 5]


@pytest.fixture(scope="module")
def exported():
    torch.manual_seed(0)
    m = build_model("fusion", (sum(SIZES),), 4, sizes=SIZES, branch=[8], hidden=[16])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((160, sum(SIZES))).astype(np.float32)
    x[:, 12:19] *= 3.0   # the sensors' features on different ranges
    m.train()
    with torch.no_grad():   # batch-norm statistics that are not the identity
        for _ in range(5):
            m(torch.from_numpy(x))
    m.eval()
    net, g = quantize_ptq(m, x[:96], append_softmax=True)
    return m, net, g, x[96:]


def test_fusion_lowers_to_slices_and_one_concatenation(exported):
    _, net, g, _ = exported
    kinds = [op.kind for op in net.ops]
    assert kinds.count("slice") == 3 and kinds.count("concat") == 1
    assert [(op.begin, op.size) for op in net.ops if op.kind == "slice"] == \
        [(0, 12), (12, 7), (19, 5)]
    ops = [n.op for n in g.nodes]
    assert ops.count("SLICE") == 3 and ops.count("CONCATENATION") == 1
    cat = next(n for n in g.nodes if n.op == "CONCATENATION")
    y = g.tensors[cat.outputs[0]]
    assert all(same_quant(g.tensors[t], y) for t in cat.inputs)
    for n in g.nodes:
        if n.op == "SLICE":
            assert same_quant(g.tensors[n.inputs[0]], g.tensors[n.outputs[0]])


def test_fake_quant_reproduces_the_int8_graph(exported):
    m, net, g, x = exported
    tout = g.tensors[g.outputs[0]]
    fake = run_fake(net, x)
    fq = np.round(fake / tout.scale) + tout.zero_point
    i8 = run_int8(g, x, dequantize=False).reshape(fq.shape)
    assert np.abs(fq - i8).max() <= 2 and (fq == i8).mean() >= 0.97
    # and the int8 model still computes the float model's decisions
    with torch.no_grad():
        want = m(torch.from_numpy(x)).argmax(1).numpy()
    assert (i8.argmax(1) == want).mean() >= 0.9


def test_int8_graph_tflm_reference_and_host_c_agree(exported):
    _, _, g, x = exported
    model = write_tflite(g)
    g2 = parse_tflite(model)
    tin = g2.tensors[g2.inputs[0]]
    xs = quantize_input(x[:8], tin.scale, tin.zero_point).reshape((8,) + tin.shape)
    it = Interpreter(g2)
    c_out = HostBuild(generate_c(g2, "m"), sanitize=True).run(xs)[0]
    for i, xi in enumerate(xs):
        ref = it.run(xi)[0]
        assert np.array_equal(opbuilder.run_tflm(model, [xi])[0].reshape(ref.shape), ref)
        assert np.array_equal(c_out[i], ref)


def test_bad_sizes_and_unsupported_slicing_are_refused():
    with pytest.raises(ModelError, match="do not add up"):
        build_model("fusion", (20,), 3, sizes=[12, 7])

    class Strided(nn.Module):
        def forward(self, x):
            return x[:, 0:8:2]

    with pytest.raises(QuantizeError, match=r"only x\[:, a:b\]"):
        lower(Strided(), torch.zeros(2, 16))

    class Rows(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return torch.cat([self.fc(x), self.fc(x)], dim=0)

    with pytest.raises(QuantizeError, match="along the features"):
        lower(Rows(), torch.zeros(2, 4))


def test_one_size_is_a_plain_dense_chain():
    m = build_model("fusion", (10,), 3, branch=[6], hidden=[5]).eval()
    net = lower(m, torch.zeros(2, 10))
    assert [op.kind for op in net.ops] == ["linear", "linear", "linear"]
    g = to_graph(quantize_ptq(m, np.random.default_rng(1).standard_normal((32, 10)))[0])
    assert not {"SLICE", "CONCATENATION"} & {n.op for n in g.nodes}


def test_teacher_in_pytorch_runs_slices_and_concatenation(exported, tmp_path):
    """A fusion model as a distillation teacher: TorchGraph's fast path (float arithmetic,
    activations re-quantized) tracks the int8 interpreter's logits."""
    from kiloml.compress.distill import TfliteTeacher, TorchGraph

    _, _, g, x = exported
    path = tmp_path / "t.tflite"
    path.write_bytes(write_tflite(g))
    t = TfliteTeacher(path)
    exact = t.logits(x)
    fast = TorchGraph(t.graph)(torch.as_tensor(x)).numpy()
    assert fast.shape == exact.shape
    assert (fast.argmax(1) == exact.argmax(1)).mean() >= 0.95
    assert np.abs(fast - exact).max() <= 3 * float(t.output.scale) + 1e-9


def test_self_distillation_student_is_half_as_wide():
    from types import SimpleNamespace

    from kiloml.workflow.optimize import _student_params

    prep = SimpleNamespace(arch="fusion", params={"sizes": [12, 8], "branch": [32],
                                                  "hidden": [64]})
    p = _student_params(prep)
    assert p == {"sizes": [12, 8], "branch": (16,), "hidden": (32,)}
    teacher = build_model("fusion", (20,), 3, **prep.params)
    student = build_model("fusion", (20,), 3, **p)
    assert [m.out_features for m in student.modules() if isinstance(m, nn.Linear)] == \
        [16, 16, 32, 3]
    assert sum(t.numel() for t in student.parameters()) < \
        sum(t.numel() for t in teacher.parameters()) / 2
