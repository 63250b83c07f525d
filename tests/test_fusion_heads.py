"""Run-time head selection for a missing sensor (``[model] missing = "branch-head"``): the
deployed intermediate-fusion model keeps each sensor branch's auxiliary classifier as an extra
output, and ``<name>_classify_sensors`` (and its Python twin, kiloml.deploy.run.run_python with
a ``missing`` mask) answers with the remaining sensor's own head.

The oracles are independent of the selection code: the float PyTorch model's heads
(``FusionBranches.all_heads``, softmax in float) and, for the C, the reference interpreter on
the int8 graph through the twin."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent / "deploy"))
import deployhelp as H  # noqa: E402

from kiloml.compress.quantize import quantize_ptq  # noqa: E402
from kiloml.deploy import DeploySpec  # noqa: E402
from kiloml.deploy.c import deploy_c  # noqa: E402
from kiloml.deploy.run import build_host_exe, load_manifest, run_python  # noqa: E402
from kiloml.deploy.spec import head_for_missing  # noqa: E402
from kiloml.dsp import make_block  # noqa: E402
from kiloml.dsp.apply import apply_block  # noqa: E402
from kiloml.errors import KilomlError  # noqa: E402
from kiloml.model import Model  # noqa: E402
from kiloml.train.loop import EpochData, TrainConfig, fit  # noqa: E402
from kiloml.train.models import BranchHeads, ModelError, build_model  # noqa: E402
from kiloml.train.normalize import Normalizer  # noqa: E402

from projhelp import kiloml  # noqa: E402

FRAMES = 50
LABELS = ["still", "walk", "turn"]
SENSORS = (("phone", 3), ("watch", 3))
LSB = 1.0 / 256          # the softmax output's quantization step


def _windows(seed: int, n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Windows (n, 50, 6) at 25 Hz in which both sensors tell the classes apart: the phone by
    its frequency (0.5 / 1.5 / 2.5 Hz), the watch by its amplitude; noise on both."""
    rng = np.random.default_rng(seed)
    t = np.arange(FRAMES) / 25.0
    x, y = [], []
    for k in range(n):
        c = k % 3
        w = np.zeros((FRAMES, 6))
        w[:, :3] = np.sin(2 * np.pi * (0.5 + c) * t + rng.uniform(0, 6))[:, None] \
            * rng.uniform(0.8, 1.2, 3)
        w[:, 3:] = (0.5 + c) * np.sin(2 * np.pi * 1.0 * t + rng.uniform(0, 6))[:, None]
        x.append(w + 0.4 * rng.standard_normal((FRAMES, 6)))
        y.append(c)
    return np.array(x, np.float32), np.array(y)


def _trained(head_hidden=(), head_from="branch") -> tuple[DeploySpec, torch.nn.Module,
                                                          Normalizer, np.ndarray]:
    """A small intermediate-fusion model with aux heads (``head_hidden``: each with hidden
    layers of those widths; ``head_from``: on the branch or on the sensor's features), trained with sensor dropout (each window also with the phone and
    with the watch zeroed), its int8 graph of every head, and the deploy spec of the
    pipeline; plus test windows."""
    block = make_block("spectral", params=dict(sample_rate=25.0, fft_length=32,
                                               band_edges_hz=[0.0, 1.0, 3.0, 6.0, 12.5]))
    x, y = _windows(0, 90)
    zp, zw = x.copy(), x.copy()
    zp[:, :, :3] = 0.0
    zw[:, :, 3:] = 0.0
    train = np.concatenate([x, zp, zw])
    ty = np.concatenate([y, y, y])
    feats = apply_block(block, train)
    norm = Normalizer.fit("feature", feats)
    f = norm(feats).reshape(len(feats), -1).astype(np.float32)
    half = f.shape[1] // 2                 # spectral: axis by axis, so the phone's come first
    torch.manual_seed(0)
    m = build_model("fusion", (f.shape[1],), 3, sizes=[half, half], branch=[16], hidden=[16],
                    aux=1.0, head_hidden=list(head_hidden), head_from=head_from)
    fit(m, lambda e: EpochData(torch.as_tensor(f), torch.as_tensor(ty)),
        TrainConfig(epochs=30, batch_size=32, lr=3e-3, seed=0), progress=False)
    m.eval()
    _, g = quantize_ptq(BranchHeads(m), f, append_softmax=True)
    spec = DeploySpec("fus", g, block, FRAMES, 6, 25.0, 2000.0, LABELS,
                      normalizer=norm.state(), layout="flat", dsp_variant="f32",
                      board="nano33ble", sensors=SENSORS, missing="branch-head")
    test, _ = _windows(1, 30)
    return spec, m, norm, test


@pytest.fixture(scope="module")
def trained():
    return _trained()


@pytest.fixture(scope="module")
def trained_deep():
    """The same with a hidden layer of 8 in each branch's own classifier (``head_hidden``)."""
    return _trained(head_hidden=(8,))


@pytest.fixture(scope="module")
def trained_own():
    """Each sensor's classifier a network of its own on that sensor's features
    (``head_from = "features"``, hidden layer of 8)."""
    return _trained(head_hidden=(8,), head_from="features")


BOTH = pytest.mark.parametrize("which", ["trained", "trained_deep", "trained_own"])


def _float_heads(m, norm, block, windows) -> list[np.ndarray]:
    """Softmax of every head of the float model, computed by PyTorch (the oracle)."""
    f = norm(apply_block(block, windows)).reshape(len(windows), -1).astype(np.float32)
    with torch.no_grad():
        return [torch.softmax(h, 1).numpy() for h in m.all_heads(torch.as_tensor(f))]


def test_the_rule_for_every_mask():
    # the stated rule, written out: the remaining sensor's head when exactly one remains
    assert [head_for_missing(2, k) for k in range(4)] == [0, 2, 1, 0]
    assert [head_for_missing(3, k) for k in range(8)] == [0, 0, 0, 3, 0, 2, 1, 0]


@BOTH
def test_exported_model_has_the_fused_head_then_a_head_per_sensor(which, request):
    spec, m, norm, test = request.getfixturevalue(which)
    g = spec.graph
    assert len(g.inputs) == 1 and len(g.outputs) == 3
    ops = [n.op for n in g.nodes]
    assert ops.count("SOFTMAX") == 3
    # every linear layer of the float model is one 1 x 1 CONV_2D or FULLY_CONNECTED (batch
    # norms folded); with head_hidden each branch's own classifier is two of them
    per_head = 1 if which == "trained" else 2
    assert [sum(isinstance(x, torch.nn.Linear) for x in h.modules()) for h in m.aux_heads] \
        == [per_head, per_head]
    linear = [n for n in g.nodes if n.op in ("CONV_2D", "FULLY_CONNECTED")]
    assert len(linear) == \
        sum(isinstance(x, torch.nn.Linear) for x in m.modules()) == 4 + 2 * per_head
    assert ops.count("SLICE") == 2        # one per sensor, read by its branch (and head)
    # what reads a sensor's features: its branch, and with head_from = "features" its head
    half = m.bounds[0][1]
    reads = [g.tensors[n.inputs[1]].shape[-1] for n in linear]
    assert reads.count(half) == (4 if which == "trained_own" else 2)
    # each output is that head of the float model, within int8 tolerance
    q = Model(g).predict(H.model_input(spec, apply_block(spec.block, test)))
    want = _float_heads(m, norm, spec.block, test)
    for k, (o, w) in enumerate(zip(q, want)):
        got = (o.reshape(len(test), -1).astype(np.float64) + 128) * LSB
        assert np.abs(got - w).max() <= 8 * LSB, k
        assert (got.argmax(1) == w.argmax(1)).mean() >= 0.9, k
    # the heads are different functions (else the selection could not be tested)
    assert np.abs(want[1] - want[2]).max() > 0.2


def test_without_aux_there_are_no_heads_to_export():
    with pytest.raises(ModelError, match="aux > 0"):
        BranchHeads(build_model("fusion", (10,), 3, sizes=[6, 4]))
    with pytest.raises(ModelError, match="aux > 0"):
        BranchHeads(build_model("dense", (10,), 3))


HARNESS = r"""
#include <stdio.h>
#include <stdlib.h>
#include "fus.h"

static float phone[FUS_WINDOW_SAMPLES * FUS_PHONE_AXES];
static float watch[FUS_WINDOW_SAMPLES * FUS_WATCH_AXES];
static float raw[FUS_INPUT_SIZE];
static float scores[FUS_NUM_CLASSES];

int main(int argc, char **argv)
{
    FILE *fi = fopen(argv[1], "rb");
    long n = atol(argv[2]), i;
    uint32_t f, a, mask, missing;
    int top, c;
    (void)argc;
    for (i = 0; i < n; ++i) {
        if (fread(raw, sizeof raw[0], FUS_INPUT_SIZE, fi) != FUS_INPUT_SIZE) { return 4; }
        for (f = 0; f < FUS_WINDOW_SAMPLES; ++f) {
            for (a = 0; a < 3u; ++a) {
                phone[f * 3u + a] = raw[f * FUS_CHANNELS + FUS_PHONE_FIRST_CHANNEL + a];
                watch[f * 3u + a] = raw[f * FUS_CHANNELS + FUS_WATCH_FIRST_CHANNEL + a];
            }
        }
        for (mask = 0; mask < 4u; ++mask) {
            missing = 99u;
            top = fus_classify_sensors((mask & 1u) ? 0 : phone, (mask & 2u) ? 0 : watch,
                                       scores, &missing);
            printf("%u %u %d", mask, missing, top);
            for (c = 0; c < FUS_NUM_CLASSES; ++c) { printf(" %.9g", (double)scores[c]); }
            printf("\n");
        }
        top = fus_classify(raw, scores);
        printf("classify %d", top);
        for (c = 0; c < FUS_NUM_CLASSES; ++c) { printf(" %.9g", (double)scores[c]); }
        printf("\n");
    }
    fclose(fi);
    return 0;
}
"""


def c_against_twin_per_mask(spec, test, tmp_path) -> tuple[dict, dict]:
    """The package of ``spec`` built for the host (ASan/UBSan, warnings as errors) with
    HARNESS, run on the windows ``test``: for masks 0-3 the C's missing flag, top class and
    scores are checked equal to the twin's (run_python with that mask) bit for bit, and
    ``_classify`` to mask 0. Returns per mask the C's scores and the fused head's scores on
    the zeroed windows (the zero policy on the same graph)."""
    pkg = tmp_path / "pkg"
    deploy_c(spec, pkg)
    exe = build_host_exe(pkg, load_manifest(pkg), tmp_path / "main.c", HARNESS, sanitize=True)
    test.tofile(tmp_path / "in.bin")
    r = subprocess.run([str(exe), str(tmp_path / "in.bin"), str(len(test))],
                       capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr
    rows = [ln.split() for ln in r.stdout.splitlines()]
    c_scores, fused_zeroed = {}, {}
    for mask in range(4):
        got = [row for row in rows if row[0] == str(mask)]
        assert len(got) == len(test) and {row[1] for row in got} == {str(mask)}
        c_scores[mask] = np.array([[float(v) for v in row[3:]] for row in got], np.float32)
        twin = run_python(spec, test, missing=mask)
        assert [int(row[2]) for row in got] == list(twin.predictions)
        np.testing.assert_array_equal(c_scores[mask], twin.scores)
        fused_zeroed[mask] = run_python(replace(spec, missing="zero"), test,
                                        missing=mask).scores
    plain = [row for row in rows if row[0] == "classify"]
    assert [[float(v) for v in row[2:]] for row in plain] == \
        [[float(v) for v in row[3:]] for row in rows if row[0] == "0"]
    return c_scores, fused_zeroed


@BOTH
def test_c_and_twin_choose_the_same_head_for_every_mask(which, request, tmp_path):
    spec, m, norm, test = request.getfixturevalue(which)
    c_scores, fused_zeroed = c_against_twin_per_mask(spec, test, tmp_path)
    meta = json.loads((tmp_path / "pkg" / "fus.json").read_text())
    assert meta["model"]["heads"] == ["fusion", "phone", "watch"]
    want = _float_heads(m, norm, spec.block, test)
    for mask in range(4):
        if mask in (1, 2):   # one sensor remains: its own head, not the zeroed fusion
            own = want[1 + (mask == 1)]          # phone missing -> the watch's head
            assert np.abs(c_scores[mask] - own).max() <= 8 * LSB
            assert np.abs(c_scores[mask] - fused_zeroed[mask]).max() > 16 * LSB
        else:                # nothing missing, or nothing left: the fused head
            np.testing.assert_array_equal(c_scores[mask], fused_zeroed[mask])
    np.testing.assert_allclose(fused_zeroed[0], want[0], atol=8 * LSB)


STREAM_HARNESS = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fus.h"

#define CHUNK 37u
static float raw[CHUNK * FUS_CHANNELS];
static float phone[CHUNK * 3u];
static float watch[CHUNK * 3u];
static fus_event_t events[8];

int main(int argc, char **argv)
{
    FILE *fi = fopen(argv[1], "rb");
    const char *masks = argv[2];        /* one digit per chunk: the sensors it lacks */
    size_t got, chunk = 0;
    uint32_t f, a, missing;
    int32_t k, i;
    (void)argc;
    fus_stream_init();
    while ((got = fread(raw, sizeof raw[0] * FUS_CHANNELS, CHUNK, fi)) > 0) {
        uint32_t mask = chunk < strlen(masks) ? (uint32_t)(masks[chunk] - '0') : 0u;
        for (f = 0; f < (uint32_t)got; ++f) {
            for (a = 0; a < 3u; ++a) {
                phone[f * 3u + a] = raw[f * FUS_CHANNELS + FUS_PHONE_FIRST_CHANNEL + a];
                watch[f * 3u + a] = raw[f * FUS_CHANNELS + FUS_WATCH_FIRST_CHANNEL + a];
            }
        }
        k = fus_stream_push_sensors((mask & 1u) ? 0 : phone, (mask & 2u) ? 0 : watch,
                                    (uint32_t)got, events, 8u, &missing);
        if (k < 0 || k > 8 || missing != mask) { return 5; }
""" + H.PRINT_EVENTS + r"""
        ++chunk;
    }
    fclose(fi);
    return 0;
}
"""


def test_stream_push_sensors_answers_with_the_remaining_sensors_head(trained, tmp_path):
    # <name>_stream_push_sensors with NULL buffers in some pushes: a window that lacked a
    # sensor in any of its frames is scored by the remaining sensor's head (as
    # _classify_sensors), the others by the fused head; detections event for event equal to
    # the Python stream twin's pushes with the same masks (StreamPipeline.push(missing=))
    from kiloml.deploy.stream import StreamPipeline

    spec, _, _, test = trained
    spec = H.fixed_stream(spec, 1000.0)
    pkg = tmp_path / "pkg"
    deploy_c(spec, pkg)
    assert "fus_stream_head" in (pkg / "fus.c").read_text()
    rec = test.reshape(-1, 6)
    chunks = [rec[a:a + 37] for a in range(0, len(rec), 37)]
    # pushes without the watch or the phone here and there: windows lacking a sensor at their
    # first frames, their last, in between, and windows with everything
    masks = np.random.default_rng(5).choice([0, 0, 0, 0, 0, 0, 0, 1, 2], len(chunks)).tolist()
    exe = build_host_exe(pkg, load_manifest(pkg), tmp_path / "h.c", STREAM_HARNESS,
                         sanitize=True)
    rec.astype("<f4").tofile(tmp_path / "in.bin")
    r = subprocess.run([str(exe), str(tmp_path / "in.bin"), "".join(map(str, masks))],
                       capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr
    got = H.stream_events(r.stdout)
    pipe = StreamPipeline(spec, spec.stream)
    want = [d for c, m in zip(chunks, masks) for d in pipe.push(c, missing=m)]
    assert got == [(LABELS.index(d.label), d.score, d.sample) for d in want]
    assert len(want) > 10
    # the heads answered: the same pushes with the fused head on zeros (the zero policy)
    # score the windows that lacked a sensor otherwise, and only those
    lacked, heads, fused = [], [], []
    pipes = (StreamPipeline(spec, spec.stream),
             StreamPipeline(replace(spec, missing="zero"), spec.stream))
    for c, m in zip(chunks, masks):
        e, sh = pipes[0].window_scores(c, missing=m)
        _, sz = pipes[1].window_scores(c, missing=m)
        lacked += [pipes[0].window_missing(int(end) - FRAMES) != 0 for end in e]
        heads.append(sh)
        fused.append(sz)
    heads, fused, lacked = np.concatenate(heads), np.concatenate(fused), np.array(lacked)
    differ = np.any(heads != fused, axis=1)
    assert 10 < lacked.sum() < len(lacked) - 10 and differ.sum() > 5
    assert not np.any(differ & ~lacked)


EMU_HARNESS = r"""
#include <stdint.h>
#include "fus.h"

#define N_WIN %(n)d
static float phone[FUS_WINDOW_SAMPLES * FUS_PHONE_AXES];
static float watch[FUS_WINDOW_SAMPLES * FUS_WATCH_AXES];
float kml_scores[N_WIN * 4 * FUS_NUM_CLASSES];
uint32_t kml_missing[N_WIN * 4];
int32_t kml_top[N_WIN * 4];

__attribute__((noinline)) void kml_batch_end(void);
void kml_batch_end(void) { __asm volatile ("" ::: "memory"); }

int main(void)
{
    const float *raw = (const float *)0x60000000u;
    uint32_t i, f, a, mask;
    for (i = 0; i < (uint32_t)N_WIN; ++i, raw += FUS_INPUT_SIZE) {
        for (f = 0; f < FUS_WINDOW_SAMPLES; ++f) {
            for (a = 0; a < 3u; ++a) {
                phone[f * 3u + a] = raw[f * FUS_CHANNELS + FUS_PHONE_FIRST_CHANNEL + a];
                watch[f * 3u + a] = raw[f * FUS_CHANNELS + FUS_WATCH_FIRST_CHANNEL + a];
            }
        }
        for (mask = 0; mask < 4u; ++mask) {
            const uint32_t k = i * 4u + mask;
            kml_top[k] = fus_classify_sensors((mask & 1u) ? 0 : phone, (mask & 2u) ? 0 : watch,
                                              &kml_scores[k * FUS_NUM_CLASSES], &kml_missing[k]);
        }
    }
    kml_batch_end();
    for (;;) { }
}
"""


def test_branch_heads_on_the_nano33ble_in_the_emulator(trained, tmp_path):
    """The nano33ble build (Cortex-M4F, softfp, armv7em kernels) in the emulator: for every
    window and every mask of missing sensors, the head it chose, its prediction and its
    scores equal the Python twin's bit for bit (the host test above checks the same C
    against the float model's heads)."""
    from kiloml.targets.batch import build_image, run_image

    spec, _, _, test = trained
    pkg = tmp_path / "pkg"
    deploy_c(spec, pkg)
    flags, kernels = H.CORES["cortex-m4f-softfp"]
    sources, includes = H.package_sources(pkg, kernels)
    n = len(test)
    (tmp_path / "main.c").write_text(EMU_HARNESS % {"n": n})
    image = build_image([*sources, tmp_path / "main.c"], [pkg, *includes], flags,
                        tmp_path / "elf")
    classes = len(spec.labels)
    got = run_image(image, "cortex-m4", {"kml_scores": n * 4 * classes * 4,
                                         "kml_missing": n * 4 * 4, "kml_top": n * 4 * 4},
                    fpu=True, input_data=test.astype(np.float32).tobytes())
    scores = np.frombuffer(got["kml_scores"], np.float32).reshape(n, 4, classes)
    missing = np.frombuffer(got["kml_missing"], np.uint32).reshape(n, 4)
    top = np.frombuffer(got["kml_top"], np.int32).reshape(n, 4)
    for mask in range(4):
        twin = run_python(spec, test, missing=mask)
        assert (missing[:, mask] == mask).all()
        assert list(top[:, mask]) == list(twin.predictions)
        np.testing.assert_array_equal(scores[:, mask], twin.scores)
    # the heads differ: with one sensor missing the answer is not the fused head's
    assert np.abs(scores[:, 1] - scores[:, 0]).max() > 16 * LSB
    assert np.abs(scores[:, 2] - scores[:, 0]).max() > 16 * LSB


def test_deploy_refuses_heads_that_do_not_fit(trained, tmp_path):
    spec, *_ = trained
    with pytest.raises(KilomlError, match="one input and 1 output, this graph 1 and 3"):
        deploy_c(replace(spec, missing="zero"), tmp_path / "a")
    with pytest.raises(KilomlError, match="needs a multi-sensor model"):
        deploy_c(replace(spec, sensors=(), missing="branch-head"), tmp_path / "b")
    with pytest.raises(KilomlError, match="not a policy"):
        deploy_c(replace(spec, missing="drop"), tmp_path / "c")
    assert not any((tmp_path / d).exists() for d in "abc")


def test_missing_setting_needs_intermediate_fusion_with_aux(tmp_path):
    """``[model] missing`` on the example's dense model: one line naming kiloml.toml, exit 1,
    no model written."""
    from test_fusion_optimize import _data

    data = _data(tmp_path / "d")
    root = tmp_path / "p"
    assert kiloml("init", root, "--example", "sp_sw_har", "--data", data).returncode == 0
    cfg = root / "kiloml.toml"
    text = cfg.read_text().replace('missing = "fallback"\n', '')   # the example's policy
    assert 'arch = "dense"\n' in text
    cfg.write_text(text.replace('arch = "dense"\n', 'arch = "dense"\nmissing = "branch-head"\n'))
    r = kiloml("train", "--project", root, "-q")
    assert r.returncode == 1, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "kiloml.toml" in lines[0] and "model.missing" in lines[0] \
        and "arch is not fusion" in lines[0], lines
    assert not (root / "model" / "model.tflite").exists()
    # fusion without aux: refused too, naming why
    cfg.write_text(text.replace('arch = "dense"\n', 'arch = "fusion"\nmissing = "zero"\n'))
    r = kiloml("train", "--project", root, "-q")
    assert r.returncode == 1 and "params.aux is not > 0" in r.stderr, r.stderr
    # a bad value is refused when the project loads
    cfg.write_text(text.replace('arch = "dense"\n', 'arch = "fusion"\nmissing = "drop"\n'))
    r = kiloml("train", "--project", root, "-q")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1 and "kiloml.toml: model.missing" in lines[0] \
        and "'zero', 'branch-head' or 'fallback'" in lines[0], r.stderr


def run_with_three_heads(root: Path, missing: str, layers: int):
    """``kiloml run --json`` on the phone + watch project at ``root`` (configured with 2 QAT
    epochs): meta.json names the policy and three heads (fusion, phone, watch), the .tflite
    has three outputs and ``layers`` CONV_2D / FULLY_CONNECTED nodes, and verify is bit-exact
    in the emulator. Returns meta.json, the project, its deploy spec (with that policy), the
    test windows and their label indices."""
    from kiloml.data.windowing import load_windows
    from kiloml.io.tflite_reader import read_tflite
    from kiloml.workflow.deploy import project_spec
    from kiloml.workflow.project import Project

    r = kiloml("run", "--project", root, "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    meta = json.loads((root / "model" / "meta.json").read_text())
    assert meta["missing"] == missing and meta["heads"] == ["fusion", "phone", "watch"]
    assert meta["qat_train"]["epochs_run"] == 2
    g = read_tflite(root / "model" / "model.tflite")
    assert len(g.outputs) == 3
    assert sum(n.op in ("CONV_2D", "FULLY_CONNECTED") for n in g.nodes) == layers
    v = json.loads((root / "build" / "verify.json").read_text())
    assert v["ok"] and v["scores_bit_exact"] and v["predictions_equal"] == v["clips"] > 0
    p = Project.load(root)
    spec = project_spec(p)
    assert spec.missing == missing
    frames, wins = load_windows(p.dataset, p.config.data, split="test")
    return meta, p, spec, frames, np.array([spec.labels.index(w.label) for w in wins])


def test_project_with_branch_heads_runs_deploys_and_verifies(tmp_path):
    """``kiloml run`` on the synthetic phone + watch project (only the phone tells the classes
    apart) with intermediate fusion, aux 1 with a hidden layer in each branch's classifier
    (``head_hidden``) and the dropped sensor's windows left out of its term
    (``aux_skip_missing``, the example's sensor dropout 0.25), QAT and the default policy:
    the model has three heads, verify in the emulator is bit-exact, and the deployed pipeline
    with the watch missing answers with the phone's head (the twin, as the C above)."""
    from test_fusion_optimize import _data

    data = _data(tmp_path / "d")
    root = tmp_path / "p"
    assert kiloml("init", root, "--example", "sp_sw_har", "--data", data).returncode == 0
    cfg = root / "kiloml.toml"
    # intermediate fusion with branch heads instead of the example's fallback models
    text = cfg.read_text().replace('arch = "dense"', 'arch = "fusion"') \
        .replace('missing = "fallback"\n', '')
    assert text.count("[model.params]\n\n") == 1
    text = text.replace("[model.params]\n\n", "[model.params]\naux = 1.0\nhead_hidden = [8]\n"
                        "aux_skip_missing = true\n\n")
    # QAT too: the fake-quant network trains with the extra heads in it
    cfg.write_text(text.replace("[train]\n", "[train]\nepochs = 6\nqat_epochs = 2\n"))
    # 2 branches, the fused head's hidden layer and classifier, 2 x (hidden + classifier)
    _, p, spec, frames, y = run_with_three_heads(root, "branch-head", layers=8)
    header = next((root / "build" / "deploy" / "c").glob("*.h")).read_text()
    assert "that sensor's own head" in header
    watchless = run_python(spec, frames, missing=2)
    assert (watchless.predictions == y).mean() >= 0.9      # the phone's head: it can tell
    r = kiloml("test", "--project", root, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["accuracy"] >= 0.9, r.stderr
    # aux_skip_missing recognises a dropped sensor by its slice of the model input: that of
    # an all-zeros window (missing_input), equal bit for bit to a real window's slice with
    # that sensor zeroed, and far from every window's slice with the sensor present
    from kiloml.dsp.apply import apply_block
    from kiloml.workflow.features import view_block
    from kiloml.workflow.train import missing_input, prepare

    prep = prepare(p)
    z = missing_input(prep)
    block = view_block(p, None)
    cut = prep.params["sizes"][0]
    chans = p.config.data.sensor_channels()
    for name, part in (("phone", slice(0, cut)), ("watch", slice(cut, None))):
        a, b = chans[name]
        gone = frames.copy()
        gone[:, :, a:b] = 0.0
        other = slice(cut, None) if part.start == 0 else slice(0, cut)
        xg = prep.model_input(apply_block(block, gone))
        x = prep.model_input(apply_block(block, frames))
        assert (xg[:, part] == z[part]).all(), name
        assert (np.abs(x[:, part] - z[part]).max(axis=1) > 1e-2).all(), name
        assert (np.abs(xg[:, other] - z[other]).max(axis=1) > 1e-2).all(), name


def test_arduino_imu_sketch_says_which_head_answered(trained, tmp_path):
    from kiloml.deploy.arduino import deploy_arduino

    spec, *_ = trained
    lib = deploy_arduino(replace(spec, sensors=(("accel", 3), ("gyro", 3))), tmp_path / "Fus").path
    sketch = next(lib.glob("examples/*/*.ino")).read_text()
    assert '"(gyro missing: classified by the accel head)"' in sketch
    assert "fus_head_gyro" in (lib / "src" / "fus.c").read_text()
