"""Teacher ensembles for distillation (kiloml.compress.ensemble) and the ``[train] teacher``
and ``threads`` settings.

The teachers are small int8 classifiers the tests quantize themselves (a dense model over 12
features, 3 classes). The oracle for an ensemble's logits is computed apart from the code
under test: each teacher run alone through kiloml's numpy reference interpreter (the
executable spec, tested bit-exact against TFLM elsewhere), its input quantized and its
softmax's input dequantized here by hand, columns moved to the project's order by name, and
the mean taken here."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import trainhelp as H  # noqa: E402
from kiloml.compress.distill import MLPERF_KWS_LABELS, TfliteTeacher, TorchGraph  # noqa: E402
from kiloml.compress.ensemble import load_ensemble, mean_logits  # noqa: E402
from kiloml.compress.quantize import quantize_ptq  # noqa: E402
from kiloml.errors import KilomlError  # noqa: E402
from kiloml.io.tflite_reader import read_tflite  # noqa: E402
from kiloml.io.tflite_writer import save_tflite  # noqa: E402
from kiloml.ir.interpreter import Interpreter  # noqa: E402
from kiloml.train.loop import EpochData, TrainConfig, fit  # noqa: E402
from kiloml.train.models import build_model  # noqa: E402
from kiloml.train.settings import TrainSettings  # noqa: E402

LABELS = ["down", "up", "left"]
FEATURES = (12,)


def _teacher(path, seed: int, classes: int = 3, features: int = 12):
    torch.manual_seed(seed)
    model = build_model("dense", (features,), classes, hidden=(16,)).eval()
    calib = np.random.default_rng(seed).normal(size=(64, features)).astype(np.float32)
    _, graph = quantize_ptq(model, calib, append_softmax=True, name=f"t{seed}")
    save_tflite(graph, path)
    return path


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    d = tmp_path_factory.mktemp("teachers")
    return {"a": _teacher(d / "a.tflite", 0), "b": _teacher(d / "b.tflite", 1),
            "four": _teacher(d / "four.tflite", 2, classes=4),
            "narrow": _teacher(d / "narrow.tflite", 3, features=10), "dir": d}


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(7).normal(size=(40,) + FEATURES).astype(np.float32)


def _reference_logits(path, x: np.ndarray) -> np.ndarray:
    """The teacher's logits (its softmax's input), by the reference interpreter alone."""
    g = read_tflite(path)
    soft = next(n for n in g.nodes if n.op == "SOFTMAX")
    tin, tlog = g.tensors[g.inputs[0]], g.tensors[soft.inputs[0]]
    s, z = float(tin.quant.scale[0]), int(tin.quant.zero_point[0])
    v = x.astype(np.float64) / s
    q = np.clip(np.sign(v) * np.floor(np.abs(v) + 0.5) + z, -128, 127).astype(np.int8)
    it = Interpreter(g)
    out = []
    for row in q:
        vals = it.run_all(row.reshape(tin.shape))
        ls, lz = float(tlog.quant.scale[0]), int(tlog.quant.zero_point[0])
        out.append((vals[soft.inputs[0]].astype(np.float64).reshape(-1) - lz) * ls)
    return np.array(out)


def test_an_ensemble_of_one_teacher_is_that_teacher(teachers, x):
    ens = load_ensemble([teachers["a"]], [None], LABELS, FEATURES)
    alone = TfliteTeacher(teachers["a"]).logits(x)
    np.testing.assert_array_equal(ens.logits(x), alone)
    np.testing.assert_allclose(alone, _reference_logits(teachers["a"], x), rtol=0, atol=1e-12)
    xt = torch.as_tensor(x)
    tg = TorchGraph(TfliteTeacher(teachers["a"]).graph)
    assert torch.equal(ens.torch_fn()(xt), tg(xt))


def test_an_ensemble_of_two_is_the_mean_of_each_teacher_alone(teachers, x):
    """Teacher b's outputs are in another class order (its labels say which): the ensemble
    maps them by name before averaging."""
    b_order = ["left", "down", "up"]
    ens = load_ensemble([teachers["a"], teachers["b"]], [None, b_order], LABELS, FEATURES)
    ref_a = _reference_logits(teachers["a"], x)
    ref_b = _reference_logits(teachers["b"], x)
    ref_b = ref_b[:, [b_order.index(c) for c in LABELS]]
    want = (ref_a + ref_b) / 2
    got = ens.logits(x)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert not np.allclose(got, ref_a, atol=1e-3) and not np.allclose(got, ref_b, atol=1e-3)
    # the PyTorch fast path (every training batch) averages the same teachers: within one
    # output step of the interpreter (TorchGraph rounds ties in float), the mean of its members
    xt = torch.as_tensor(x)
    fast = ens.torch_fn()(xt).double().numpy()
    members = [m.torch_fn()(xt).double().numpy() for m in ens.members]
    np.testing.assert_allclose(fast, (members[0] + members[1]) / 2, rtol=0, atol=1e-6)
    steps = [float(TfliteTeacher(teachers[k]).output.quant.scale[0]) for k in ("a", "b")]
    assert np.abs(fast - want).max() <= max(steps) + 1e-6


def test_mean_logits_is_the_mean():
    a, b = np.array([[1.0, -2.0]]), np.array([[3.0, 4.0]])
    np.testing.assert_array_equal(mean_logits([a, b]), [[2.0, 1.0]])
    np.testing.assert_array_equal(mean_logits([a]), a)
    with pytest.raises(ValueError):
        mean_logits([])


@pytest.mark.parametrize("bad, labels, needle", [
    ("missing", None, "no such file"),
    ("garbage", None, "not a .tflite model"),
    ("truncated", None, ".tflite"),
    ("four", None, "teacher has 4 outputs, the project 3 classes"),
    ("narrow", None, "teacher input is [1, 10], the project's features are [12]"),
    ("b", ["left", "down", "right"], "teacher classes are not the project's"),
    ("b", ["left", "down"], "teacher labels: 2 names"),
    ("b", ["left", "left", "up"], "(2 distinct)"),
])
def test_a_bad_teacher_in_the_list_is_named(teachers, bad, labels, needle):
    d = teachers["dir"]
    (d / "garbage.tflite").write_bytes(b"not a flatbuffer at all" * 4)
    whole = teachers["a"].read_bytes()
    (d / "truncated.tflite").write_bytes(whole[:len(whole) // 2])
    path = teachers.get(bad, d / f"{bad}.tflite")
    with pytest.raises(KilomlError) as e:
        load_ensemble([teachers["a"], path], [None, labels], LABELS, FEATURES)
    msg = str(e.value)
    assert msg.startswith(str(path)) and needle in msg and "\n" not in msg, msg


def test_the_mlperf_alias_and_input_shapes(teachers):
    """["mlperf-kws"] names the MLPerf KWS class order: the real reference model (input
    1x49x10x1) teaches a 12-class project on MFCC features [49, 10] in any label order, not
    on [10, 49]; a 3-class teacher with those 12 names is refused. A flat teacher input
    ([1, 12]) takes any features of 12 values."""
    H.require_shared()
    kws = list(MLPERF_KWS_LABELS)
    ens = load_ensemble([H.KWS_REF], [["mlperf-kws"]], sorted(kws), (49, 10))
    assert ens.members[0].order == [kws.index(c) for c in sorted(kws)]
    with pytest.raises(KilomlError, match=r"teacher input is \[1, 49, 10, 1\], the project's "
                                          r"features are \[10, 49\]"):
        load_ensemble([H.KWS_REF], [["mlperf-kws"]], kws, (10, 49))
    with pytest.raises(KilomlError, match="teacher labels: 12 names"):
        load_ensemble([teachers["a"]], [["mlperf-kws"]], LABELS, FEATURES)
    load_ensemble([teachers["a"]], [None], LABELS, (3, 4))
    with pytest.raises(KilomlError, match=r"features are \[13\]"):
        load_ensemble([teachers["a"]], [None], LABELS, (13,))


def test_teacher_setting_takes_a_path_or_a_list():
    one = TrainSettings(teacher="t.tflite", teacher_labels=["a", "b"])
    assert one.teachers() == ["t.tflite"] and one.teacher_label_lists() == [["a", "b"]]
    two = TrainSettings(teacher=["t.tflite", "u.tflite"], teacher_labels=[["mlperf-kws"], []])
    assert two.teachers() == ["t.tflite", "u.tflite"]
    assert two.teacher_label_lists() == [["mlperf-kws"], None]
    shared = TrainSettings(teacher=["t.tflite", "u.tflite"], teacher_labels=["a", "b"])
    assert shared.teacher_label_lists() == [["a", "b"], ["a", "b"]]
    assert TrainSettings().teachers() == [] and TrainSettings().teacher_label_lists() == []
    assert one.resolve("kws").teacher == "t.tflite"         # a string stays a string
    for bad in ({"teacher": []}, {"teacher": ["t.tflite", " "]},
                {"teacher": ["t.tflite", "u.tflite"], "teacher_labels": [["a"]]}):
        with pytest.raises(ValueError):
            TrainSettings(**bad)


def test_threads_setting_is_validated_and_reaches_torch():
    assert TrainSettings().resolve("kws").threads == 2          # as before the setting
    assert TrainSettings(threads=1).resolve("motion").threads == 1
    for bad in (0, -1):
        with pytest.raises(ValueError):
            TrainSettings(threads=bad)
    before = torch.get_num_threads()
    try:
        X = torch.randn(16, 4)
        Y = (X[:, 0] > 0).long()
        m = torch.nn.Linear(4, 2)
        fit(m, lambda e: EpochData(X, Y), TrainConfig(epochs=1, batch_size=8, threads=1),
            progress=False)
        assert torch.get_num_threads() == 1
        cfg = TrainConfig(epochs=1, batch_size=8, threads=2)
        assert cfg.fingerprint() == TrainConfig(epochs=1, batch_size=8, threads=1).fingerprint()
    finally:
        torch.set_num_threads(before)
