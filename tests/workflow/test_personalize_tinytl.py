"""``[personalize] biases = "all"`` (TinyTL style): the update also trains the int32 bias of
the CONV_2D before the head (cnn1d's last convolution, through its ReLU and the global
average pool). The generated C equals the numpy twin byte for byte on the host under
ASan/UBSan and in the emulator; inference with the RAM slots equals the reference
interpreter on the personalized graph; the twin's layer forward matches the int8 model."""

from __future__ import annotations

import numpy as np
import pytest

from projhelp import SHARED, edit, kiloml, ran_wand_project, wand_project

from kiloml.deploy.personalize import (Settings, conv_accumulators, find_bias_layer, find_head,
                                       personalize, personalize_files, personalized_graph,
                                       run_model, run_update_emulator, run_update_host)
from kiloml.errors import KilomlError
from kiloml.ir.graph import Graph

CASES = [Settings(epochs=0, lr=0.05, max_samples=16, biases="all"),
         Settings(epochs=3, lr=0.1, max_samples=16, biases="all"),
         Settings(epochs=2, lr=0.2, max_samples=16, biases="all", prox_mu=0.7,
                  bias_lr_scale=3.0)]


def _cnn1d_project(tmp_path):
    """The wand project with raw 4 s windows and the cnn1d model (conv, ReLU, max pool x3,
    global average pool, head): its bias layer is a CONV_2D."""
    root = wand_project(tmp_path)
    cfg = root / "kiloml.toml"
    edit(cfg, "[data]\n", "[data]\nwindow_ms = 4000\nstride_ms = 2000\n")
    text = cfg.read_text()
    text = text.replace("window_ms = 2000.0\n", "").replace("stride_ms = 500.0\n", "")
    a = text.index("[dsp]")
    b = text.index("[model.params]")
    cfg.write_text(text[:a] + '[dsp]\nblock = "raw"\n\n[model]\narch = "cnn1d"\n\n'
                   + text[b:])
    r = kiloml("run", "-q", "--json", cwd=root)
    assert r.returncode == 0, r.stderr
    return root


@pytest.fixture(scope="module", params=["dense", "cnn1d"])
def person(request, tmp_path_factory):
    """(spec, head, int8 model inputs, labels) of the test split of a trained wand project:
    ``dense`` (its bias layer a FULLY_CONNECTED) or ``cnn1d`` (a CONV_2D)."""
    from kiloml.data.windowing import load_windows
    from kiloml.workflow.deploy import project_spec
    from kiloml.workflow.personalize import model_inputs
    from kiloml.workflow.project import load_project

    tmp = tmp_path_factory.mktemp("tl")
    root = ran_wand_project(tmp)[0] if request.param == "dense" else _cnn1d_project(tmp)
    p = load_project(root)
    spec = project_spec(p)
    frames, wins = load_windows(p.dataset, p.config.data, split="test")
    x = model_inputs(spec, frames)
    y = np.array([list(spec.labels).index(w.label) for w in wins])
    return spec, find_head(spec.graph), x, y


def _samples(x, y, rng, per=4):
    pick = np.concatenate([rng.choice(np.flatnonzero(y == c), per, replace=False)
                           for c in np.unique(y)])
    noise = rng.integers(-128, 128, (2, x.shape[1])).astype(np.int8)  # off-distribution too
    return (np.concatenate([x[pick], noise]),
            np.concatenate([y[pick], rng.integers(0, y.max() + 1, 2)]))


def test_the_bias_layer_and_its_float_forward_is_the_int8_models(person):
    """The independent oracle of the twin's layer forward: the reference interpreter's int8
    output of the stem + that layer, dequantized, is (float)(acc) * cs + b clamped, within
    half an output step (and the fixed-point multiplier's rounding)."""
    spec, head, x, y = person
    lay = find_bias_layer(head)
    g = head.graph
    want = "CONV_2D" if any(n.op == "CONV_2D" for n in g.nodes) else "FULLY_CONNECTED"
    assert g.nodes[lay.node].op == want == lay.op and lay.p.out_c == head.depth
    assert {g.nodes[i].op for i in range(lay.node + 1, head.node)} <= {"AVERAGE_POOL_2D",
                                                                       "MEAN", "RESHAPE"}
    conv = g.nodes[lay.node]
    upto = Graph(g.tensors, g.nodes[:lay.node + 1], list(g.inputs), [conv.outputs[0]])
    out = g.tensors[conv.outputs[0]]
    ref = (run_model(upto, x[:20]).astype(np.float64) - out.quant.zero_point[0]) \
        * out.quant.scale[0]
    stem = lay.stem(head)
    acc = conv_accumulators(lay, x[:20] if stem is None else run_model(stem, x[:20]))
    v = np.clip(acc * lay.cs.astype(np.float64) + lay.bias * lay.cs.astype(np.float64),
                lay.lo, lay.hi)
    err = np.abs(v.reshape(ref.shape) - ref) / out.quant.scale[0]
    # the int8 path rounds once (fixed-point multiplier): half a step, plus its rounding
    assert err.max() <= 0.51 and err.mean() < 0.3


@pytest.mark.parametrize("case", range(len(CASES)))
def test_host_c_trains_the_layer_bias_like_the_twin(person, case):
    spec, head, x, y = person
    s = CASES[case]
    xs, ys = _samples(x, y, np.random.default_rng(case))
    q, ws, qb, _, _, lb = personalize(head, xs, ys, s)
    bundle = personalize_files(head, "tl", s)
    got = run_update_host(bundle, head, "tl", xs, ys, eval_inputs=x, sanitize=True)
    assert got.weights.tobytes() == q.tobytes() and got.bias.tobytes() == qb.tobytes()
    assert got.layer_bias.tobytes() == lb.tobytes()
    factory = find_bias_layer(head).bias
    if s.epochs:
        assert (lb != factory).sum() > head.depth // 2   # the layer's biases moved
    else:
        assert np.array_equal(lb, factory)
    assert np.array_equal(got.outputs, run_model(personalized_graph(head, q, ws, qb, lb), x))
    # the head-only update on the same samples leaves the layer and trains another head
    h = personalize(head, xs, ys, Settings(s.epochs, s.lr, s.max_samples, s.prox_mu))
    if s.bias_lr_scale != 1.0:     # the scale acts on the layer's bias
        one = personalize(head, xs, ys, Settings(s.epochs, s.lr, s.max_samples, s.prox_mu,
                                                 "all"))
        assert one[5].tobytes() != lb.tobytes()
    assert len(h) == 5 and (not s.epochs or h[0].tobytes() != q.tobytes())


@pytest.mark.parametrize("board", ["nano33ble", "pico"])
def test_emulator_c_equals_the_twin_and_the_memory_is_accounted(person, board):
    from kiloml.deploy.spec import board_flags, find_board

    spec, head, x, y = person
    s = Settings(epochs=1, lr=0.1, max_samples=8, biases="all")
    xs, ys = _samples(x, y, np.random.default_rng(9), per=2)
    q, ws, qb, _, _, lb = personalize(head, xs, ys, s)
    bundle = personalize_files(head, "tl", s)
    bid, b = find_board(board)
    got = run_update_emulator(bundle, head, "tl", xs, ys, str(b["core"]),
                              board_flags(bid, str(b["core"])))
    assert got.weights.tobytes() == q.tobytes() and got.bias.tobytes() == qb.tobytes()
    assert got.layer_bias.tobytes() == lb.tobytes()
    assert 0 < got.stack_bytes < 4096 and got.cycles > got.instructions > 0
    # the static working memory: the head-only update's, plus the layer's float bias and
    # live-position shares (8 bytes a channel) and the inference buffers around it (its int8
    # input unless it is the model input, its int8 output); its int32 bias is in the slot
    lay = find_bias_layer(head)
    U, D = head.units, head.depth
    extra = 8 * D + (lay.in_size if lay.node else 0) + lay.out_size
    assert bundle.working_bytes == 4 * (U * D + 2 * U) + D + U + extra
    assert bundle.store_bytes == s.max_samples * (lay.in_size + 1)
    assert bundle.slot_bytes == U * D + 16 * U + 4 * D


def test_a_model_without_a_conv_before_the_head_is_refused():
    from kiloml.io.tflite_reader import read_tflite

    g = read_tflite(SHARED / "models" / "tflm_examples" / "micro_speech_quantized.tflite")
    head = find_head(g)
    with pytest.raises(KilomlError, match='biases = "all" needs a CONV_2D'):
        find_bias_layer(head)
    with pytest.raises(KilomlError, match="CONV_2D"):
        personalize_files(head, "ms", Settings(biases="all"))


def test_the_c_package_reports_which_biases_it_trains(person, tmp_path):
    import dataclasses
    import json

    from kiloml.deploy import deploy_c

    spec, head, x, y = person
    deploy_c(dataclasses.replace(spec, personalize=Settings(epochs=3, biases="all")), tmp_path)
    meta = json.loads(next(tmp_path.glob("*.json")).read_text())
    rep = meta["personalize"]
    lay = find_bias_layer(head)
    assert rep["biases"] == "all" and len(rep["trained_biases"]) == 2
    assert rep["trained_biases"][1] == f"node {lay.node} {lay.op} ({head.depth} channels)"
    src = (tmp_path / "personalize" / f"{meta['name']}_personalize.c").read_text()
    assert f"{meta['name']}_slot_cb[{head.depth}]" in src
