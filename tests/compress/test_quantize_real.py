"""Quantization on real data: a small DS-CNN trained on the Speech Commands clips (MFCC
``mlperf-kws`` features, speaker-disjoint split). The int8 model must track the float model;
QAT's "fake" evaluation must predict what the exported int8 model scores; the MLPerf Tiny
reference model works as a distillation teacher."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import trainhelp as H  # noqa: E402
from kiloml.compress.distill import MLPERF_KWS_LABELS, TfliteTeacher, TorchGraph  # noqa: E402
from kiloml.compress.quantize import (quantize_input, quantize_ptq, run_fake, run_int8,  # noqa: E402
                                      to_graph, to_nhwc)
from kiloml.io.tflite_writer import write_tflite  # noqa: E402
from kiloml.ir.interpreter import Interpreter  # noqa: E402
from kiloml.workflow import train as P  # noqa: E402
from kiloml.train.loop import EpochData, TrainConfig, fit  # noqa: E402
from kiloml.train.models import build_model  # noqa: E402

pytestmark = pytest.mark.slow
torch.set_num_threads(2)
KWS_Q = (0.584703, 83)


@pytest.fixture(scope="module")
def kws(tmp_path_factory):
    proj, _ = H.make_project(tmp_path_factory.mktemp("kws") / "p", "kws", "speech_commands")
    prep = P.prepare(proj)
    torch.manual_seed(0)
    model = build_model("ds-cnn", (49, 10), 12, channels=24, blocks=2)
    cfg = TrainConfig(epochs=8, batch_size=64, lr=5e-3, label_smoothing=0.1)
    xtr = torch.as_tensor(prep.model_input(prep.train.x))
    fit(model, lambda e: EpochData(xtr, torch.as_tensor(prep.train.y)), cfg, progress=False)
    return prep, model


def _acc(out, y):
    return float((out.argmax(1) == y).mean())


def test_int8_tracks_the_float_model_on_unseen_speakers(kws):
    prep, model = kws
    xte, yte = prep.model_input(prep.test.x), prep.test.y
    with torch.no_grad():
        f = model.eval()(torch.as_tensor(xte)).numpy()
    net, g = quantize_ptq(model, prep.model_input(prep.train.x[:1000]), append_softmax=True,
                          input_quant=KWS_Q)
    q = run_int8(g, xte, logits=True)
    assert len(yte) >= 350
    assert _acc(f, yte) >= 0.6                          # a small model, 8 epochs, no augmentation
    assert (f.argmax(1) == q.argmax(1)).mean() >= 0.95
    assert abs(_acc(q, yte) - _acc(f, yte)) <= 0.02
    # the real features through TFLM: bit-exact with kiloml
    b = write_tflite(g)
    tin = g.tensors[g.inputs[0]]
    assert (tin.scale, tin.zero_point) == (pytest.approx(KWS_Q[0]), KWS_Q[1])
    it = Interpreter(g)
    for xi in quantize_input(to_nhwc(xte[:5]), *KWS_Q):
        xi = xi.reshape(tin.shape)
        assert np.array_equal(H.run_tflm(b, xi).reshape(-1), it.run(xi)[0].reshape(-1))


def test_qat_evaluation_predicts_the_exported_int8_model(kws):
    prep, model = kws
    import copy

    net, _ = P.quantize(prep, copy.deepcopy(model))
    net, _ = P.qat(prep, net, 2, progress=False)
    xte, yte = prep.model_input(prep.test.x), prep.test.y
    fake = run_fake(net, xte, logits=True)
    q = run_int8(to_graph(net), xte, logits=True)
    assert 380 <= len(yte) <= 420   # speaker-disjoint test split: 396 clips (windows balanced)
    differ = int((fake.argmax(1) != q.argmax(1)).sum())
    correct_fake, correct_int8 = int((fake.argmax(1) == yte).sum()), int((q.argmax(1) == yte).sum())
    # Counted in whole clips. The clips whose class differs are near-ties that the int8
    # model's fixed-point requantization breaks differently; which ones depends on the trained
    # weights, so on the machine's floating point (a fresh machine once got 2 more correct
    # clips in one than in the other, which a 0.5-point bound rejected). Measured on this
    # scenario with torch and TrainConfig seeds 0-7 (400 clips each): 2, 1, 11, 5, 7, 7, 4, 5
    # clips with a different class, and correct counts differing by 1, 1, 3, 1, 5, 2, 1, 3.
    # Bounds at about twice the largest measured: 24 clips (6 %) and 10 clips (2.5 points).
    assert differ <= 24
    assert abs(correct_fake - correct_int8) <= 10


def test_mlperf_reference_model_as_teacher(kws):
    prep, _ = kws
    t = TfliteTeacher(H.KWS_REF, MLPERF_KWS_LABELS)
    logits = t.reorder(t.logits(prep.test.x), prep.labels)
    assert logits.shape == (len(prep.test.y), 12)
    assert _acc(logits, prep.test.y) >= 0.88           # ~92 % on these unseen speakers
    with pytest.raises(Exception, match="no class"):
        TfliteTeacher(H.KWS_REF, MLPERF_KWS_LABELS).reorder(logits, ["yes", "maybe"])


def test_teacher_in_pytorch_tracks_the_interpreter(kws):
    """TorchGraph (float arithmetic, every activation re-quantized) is the int8 teacher up to
    rounding ties, which compound over its nine convolutions: same class on nearly every
    clip, logits within a few LSB."""
    prep, _ = kws
    t = TfliteTeacher(H.KWS_REF, MLPERF_KWS_LABELS)
    exact = t.logits(prep.test.x)
    fast = TorchGraph(t.graph)(torch.as_tensor(prep.test.x)).numpy()
    assert fast.shape == exact.shape
    assert (fast.argmax(1) == exact.argmax(1)).mean() >= 0.98
    lsb = float(t.output.scale)
    assert np.abs(fast - exact).max() <= 6 * lsb + 1e-9
    assert np.median(np.abs(fast - exact)) <= lsb + 1e-9

