"""MFCC: numpy against independent references, C against numpy, and the mlperf-kws preset
proven on the MLPerf Tiny KWS reference model over every clip of ../shared speech_commands.

Tolerances
- numpy vs CMSIS-DSP ``arm_mfcc_f32`` (float32 C): 5e-4 absolute (measured 1.1e-4, values up
  to 40).
- numpy vs librosa (float64 input, see kiloml.dsp.mfe for the mapping): 1e-6 (measured 4e-8).
- C float32 and C q31 (integer only) vs numpy, unquantized: 1e-3 absolute on speech (measured
  1.3e-4 and 3.3e-4), 1e-2 on DC, pure tones and square waves, whose empty bands sit at the
  arithmetic's noise floor (measured 4.6e-3 and 3.2e-3). Quantized preset: int8 equal except
  <= 0.1 % of values off by one LSB (x / scale landing on a rounding boundary).
- C q15: the 16-bit FFT loses ~9 bits to its per-stage scaling, so weak mel bands of frames
  whose energy lies elsewhere (fricatives, tones) are off by up to tens of log units. On
  speech: mean absolute error <= 0.2, 99th percentile <= 4 (measured 0.12 and 2.4); digital
  silence exact. The model's accuracy with q15 features is the meaningful check.
"""

from __future__ import annotations

import numpy as np
import pytest

from dsphelp import KWS_LABELS, KWS_MODEL, SPEECH, speech_clips
from kiloml.dsp import common, make_block
from kiloml.dsp.host import DSPHostBuild
from kiloml.dsp.mfcc import MFCC, PRESETS

pytestmark = pytest.mark.skipif(not SPEECH.is_dir(), reason=f"no speech data at {SPEECH}")


@pytest.fixture(scope="module")
def clips():
    x16, y, paths = speech_clips()
    return x16, y, paths


def subset(clips, step=97):
    x16, y, _ = clips
    return x16[::step], y[::step]


# ---------------------------------------------------------------- filterbank and DCT


@pytest.mark.parametrize("nf,n,sr,lo,hi", [(40, 512, 16000, 20, 4000), (32, 256, 16000, 300, 8000),
                                           (20, 1024, 8000, 0, 4000), (64, 2048, 44100, 50, 11000)])
def test_mel_filterbank_matches_cmsis(nf, n, sr, lo, hi):
    from cmsisdsp.datatype import F32
    from cmsisdsp.mfcc import melFilterMatrix

    w = common.mel_filterbank(nf, n, sr, lo, hi, "htk", "mel", "none", zero_dc=True)
    starts, lens, packed = common.sparse_filters(w)
    c_lens, c_pos, c_packed = melFilterMatrix(F32, lo, hi, nf, sr, n)
    assert list(starts) == list(c_pos) and list(lens) == list(c_lens)
    np.testing.assert_allclose(packed, c_packed, atol=1e-7)


@pytest.mark.parametrize("htk", [True, False])
@pytest.mark.parametrize("norm", [None, "slaney"])
def test_mel_filterbank_hz_matches_librosa(htk, norm):
    import librosa

    w = common.mel_filterbank(40, 512, 16000, 20, 7600, "htk" if htk else "slaney", "hz",
                              "slaney" if norm else "none", zero_dc=False)
    ref = librosa.filters.mel(sr=16000, n_fft=512, n_mels=40, fmin=20, fmax=7600, htk=htk,
                              norm=norm, dtype=np.float64).T
    np.testing.assert_allclose(w, ref, rtol=1e-9, atol=1e-12)


def test_tf_mel_matrix_by_hand():
    """Spot values of TF's linear_to_mel_weight_matrix definition, computed by hand."""
    w = common.mel_filterbank(40, 512, 16000, 20, 4000)
    mel = lambda f: 1127.0 * np.log(1 + f / 700.0)  # noqa: E731
    edges = np.linspace(mel(20), mel(4000), 42)
    k = 10                                  # bin 10 = 312.5 Hz
    m = mel(312.5)
    j = int(np.searchsorted(edges, m)) - 2  # the filter whose rising edge holds bin 10
    want = (m - edges[j + 1]) / (edges[j + 2] - edges[j + 1])
    assert w[k, j + 1] == pytest.approx(want, rel=1e-12)
    assert w[0].sum() == 0 and w[129:].sum() == 0          # DC zeroed; nothing above 4 kHz


def test_dct_matches_cmsis_and_scipy():
    import scipy.fft
    from cmsisdsp.datatype import F32
    from cmsisdsp.mfcc import dctMatrix

    np.testing.assert_allclose(common.dct_matrix(13, 40, "tf").reshape(-1), dctMatrix(F32, 13, 40),
                               atol=1e-7)
    v = np.random.default_rng(0).standard_normal((5, 40))
    np.testing.assert_allclose(v @ common.dct_matrix(40, 40, "ortho").T,
                               scipy.fft.dct(v, type=2, norm="ortho"), atol=1e-12)
    np.testing.assert_allclose(v @ common.dct_matrix(40, 40, "none").T, scipy.fft.dct(v, type=2),
                               atol=1e-12)


# ---------------------------------------------------------------- numpy vs references


def test_numpy_matches_cmsis_arm_mfcc_f32(clips):
    """Our TF-style MFCC frame by frame against CMSIS-DSP's arm_mfcc_f32 with the same
    filters, DCT and window (zero-padded to the FFT length), on real clips."""
    import cmsisdsp as dsp
    from cmsisdsp.datatype import F32
    from cmsisdsp.mfcc import dctMatrix, melFilterMatrix

    b = MFCC.preset("mlperf-kws", output_scale=None)
    x = subset(clips, 331)[0].astype(np.float64) / 32768
    ours = b.float_features(x)
    inst = dsp.arm_mfcc_instance_f32()
    fl, fp, pk = melFilterMatrix(F32, 20, 4000, 40, 16000, 512)
    win = np.zeros(512, np.float32)
    win[:480] = common.window("hann", 480)
    assert dsp.arm_mfcc_init_f32(inst, 512, 40, 10, dctMatrix(F32, 10, 40), fp, fl, pk, win) == 0
    for clip, want in zip(x, ours):
        xn = clip / clip.max()                       # the preset's peak normalisation
        for f, fr in enumerate(common.frame(xn, 480, 320)):
            buf = np.zeros(512, np.float32)
            buf[:480] = fr
            got = dsp.arm_mfcc_f32(inst, buf, np.zeros(514, np.float32))
            np.testing.assert_allclose(want[f], got, atol=5e-4)


def test_numpy_matches_librosa(clips):
    import librosa

    x = subset(clips, 211)[0].astype(np.float64) / 32768
    b = make_block("mfcc", params=dict(num_coefficients=10, triangles="hz", zero_dc=False,
                                       dct_norm="ortho", pad_to=16000))
    ours = b.float_features(x)
    y = np.concatenate([np.zeros((len(x), 16)), x], axis=1)   # (512 - 480) / 2 leading zeros
    S = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=512, win_length=480, hop_length=320,
                                       window="hann", center=False, power=1.0, n_mels=40, fmin=20,
                                       fmax=4000, htk=True, norm=None)
    ref = np.swapaxes(librosa.feature.mfcc(S=np.log(S + 1e-6), n_mfcc=10, dct_type=2,
                                           norm="ortho"), -1, -2)
    np.testing.assert_allclose(ours, ref, atol=1e-6)


# ---------------------------------------------------------------- the preset itself


def test_preset_is_the_mlperf_recipe():
    from kiloml.io.tflite_reader import read_tflite

    p = MFCC.preset("mlperf-kws").params
    assert (p.normalize, p.pad_to, p.frame_length, p.frame_step, p.fft_length) == \
        ("peak", 16000, 480, 320, 512)
    assert (p.window, p.periodic_window, p.pad_end, p.power) == ("hann", True, False, 1)
    assert (p.num_filters, p.low_hz, p.high_hz, p.mel_scale, p.triangles) == \
        (40, 20.0, 4000.0, "htk", "mel")
    assert (p.filter_norm, p.zero_dc, p.log, p.log_offset, p.log_mode) == \
        ("none", True, "ln", 1e-6, "add")
    assert (p.num_coefficients, p.dct_norm, p.lifter) == (10, "tf", 0)
    assert MFCC.preset("mlperf-kws").output_shape(16000) == (49, 10)
    if KWS_MODEL.is_file():
        q = read_tflite(KWS_MODEL)
        t = q.tensors[q.inputs[0]]
        assert t.shape == (1, 49, 10, 1)
        assert p.output_scale == pytest.approx(t.quant.scale[0], rel=1e-6)
        assert p.output_zero_point == t.quant.zero_point[0]
    assert set(PRESETS) == {"mlperf-kws", "mlperf-kws-stream"}
    # the streaming preset is the same recipe without the per-clip peak step
    s = MFCC.preset("mlperf-kws-stream").params
    assert s.normalize == "none"
    assert {k: v for k, v in vars(s).items() if k != "normalize"} == \
        {k: v for k, v in vars(p).items() if k != "normalize"}


def test_preset_edge_cases():
    b = MFCC.preset("mlperf-kws", output_scale=None)
    rng = np.random.default_rng(5)
    x = rng.standard_normal(16000) * 0.1
    short = b.float_features(x[:9000])
    padded = b.float_features(np.concatenate([x[:9000], np.zeros(7000)]))
    np.testing.assert_allclose(short, padded, atol=1e-12)       # zero-padded to 16,000
    np.testing.assert_allclose(b.float_features(x * 7.0), b.float_features(x), atol=1e-9)
    silent = b.float_features(np.zeros(16000))                  # max <= 0: left unscaled
    assert np.isfinite(silent).all()
    np.testing.assert_allclose(silent[:, 0], np.log(1e-6) * np.sqrt(2 / 40) * 40)
    neg = -np.abs(x)
    assert np.isfinite(b.float_features(neg)).all()
    np.testing.assert_allclose(b.float_features(np.concatenate([x, x])), b.float_features(x),
                               atol=1e-12)                      # truncated to 16,000


# ---------------------------------------------------------------- C vs numpy


def _edge_inputs() -> np.ndarray:
    rng = np.random.default_rng(11)
    t = np.arange(16000)
    return np.stack([
        np.zeros(16000), np.full(16000, -1200.0), np.where(t % 40 < 20, 32767, -32768),
        np.round(rng.standard_normal(16000) * 3),
        np.round(np.sin(2 * np.pi * 1000 * t / 16000) * 30000),
        np.concatenate([np.round(rng.standard_normal(5000) * 8000), np.zeros(11000)]),
    ]).astype(np.int16)


@pytest.mark.parametrize("variant", ["f32", "q31", "q15"])
def test_c_matches_numpy(clips, variant):
    real = subset(clips)[0]
    x16 = np.concatenate([real, _edge_inputs()])
    xf = x16.astype(np.float32) / 32768
    b = MFCC.preset("mlperf-kws", output_scale=None)
    want = b.float_features(xf.astype(np.float64))
    got = DSPHostBuild(b, 16000, variant=variant, sanitize=True).run(
        xf if variant == "f32" else x16).astype(np.float64)
    if variant != "f32":
        got /= 2 ** 20
    assert np.isfinite(got).all()
    err = np.abs(got - want)
    er, ee = err[:len(real)], err[len(real):]
    if variant in ("f32", "q31"):
        assert er.max() < 1e-3          # speech
        assert ee.max() < 1e-2          # DC, pure tone, square wave: bands at float noise
    else:
        assert er.mean() < 0.2 and np.quantile(er, 0.99) < 4.0
        assert ee[0].max() < 1e-4       # digital silence is exact
        assert ee[3].mean() < 0.05      # broadband noise of a few LSB
    bq = MFCC.preset("mlperf-kws")
    q = DSPHostBuild(bq, 16000, variant=variant, sanitize=True).run(
        xf if variant == "f32" else x16).astype(int)
    d = np.abs(q - bq(xf.astype(np.float64)).astype(int))[:len(real)]
    if variant in ("f32", "q31"):
        assert d.max() <= 1 and (d > 0).mean() <= 1e-3


def test_generated_c_is_deterministic_and_clean():
    b = MFCC.preset("mlperf-kws")
    a = b.c_sources("kws_mfcc", 16000, variant="f32", command="kiloml dsp --preset mlperf-kws")
    assert a == b.c_sources("kws_mfcc", 16000, variant="f32",
                            command="kiloml dsp --preset mlperf-kws")
    src = a["kws_mfcc.c"]
    assert "do not edit" in src and "malloc" not in src and "stdio" not in src
    assert all(len(line) <= 100 for text in a.values() for line in text.splitlines())
    assert "int kws_mfcc_features(const float *input, int8_t *output);" in a["kws_mfcc.h"]
    assert "#define KWS_MFCC_OUTPUT_SIZE 490" in a["kws_mfcc.h"]



@pytest.mark.parametrize("variant", ["q31", "q15"])
def test_fixed_point_variants_use_no_floating_point(variant, tmp_path):
    """Integer-only for FPU-less cores: gcc's -mgeneral-regs-only rejects any float or
    double operation, so the generated file and its runtime must compile with it."""
    import subprocess

    from kiloml.codegen.host import WARNINGS, find_cc

    files = MFCC.preset("mlperf-kws").c_sources("k", 16000, variant=variant)
    assert sorted(files) == ["k.c", "k.h", "kml_dsp.h", "kml_fft_q.c", "kml_frontend_q.c"]
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    for src in ("k.c", "kml_fft_q.c", "kml_frontend_q.c"):
        r = subprocess.run([find_cc(), *WARNINGS, "-mgeneral-regs-only", "-O2", "-c",
                            str(tmp_path / src), "-o", str(tmp_path / (src + ".o"))],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------- the proof on the model


def _model_predict(q: np.ndarray) -> np.ndarray:
    """Top-1 of the reference model (generated C, bit-exact with TFLM and the reference
    interpreter, see tests/test_models.py) on int8 features (N, 49, 10), on both cores."""
    from concurrent.futures import ThreadPoolExecutor

    from kiloml.codegen.c import generate_c
    from kiloml.codegen.host import HostBuild
    from kiloml.io.tflite_reader import read_tflite

    g = read_tflite(KWS_MODEL)
    parts = [a for a in np.array_split(q.reshape(-1, 1, 49, 10, 1), 2) if len(a)]
    builds = [HostBuild(generate_c(g, "kws")) for _ in parts]
    with ThreadPoolExecutor(len(parts)) as ex:
        outs = list(ex.map(lambda a: a[0].run(a[1])[0], zip(builds, parts)))
    return np.concatenate(outs).reshape(-1, 12).argmax(axis=1)


@pytest.fixture(scope="module")
def numpy_preset(clips):
    x16, y, _ = clips
    b = MFCC.preset("mlperf-kws")
    xf = x16.astype(np.float64) / 32768
    q = np.concatenate([b(xf[s:s + 500]) for s in range(0, len(xf), 500)])
    return q, _model_predict(q)


@pytest.mark.slow
@pytest.mark.skipif(not KWS_MODEL.is_file(), reason="no kws_ref_model.tflite")
def test_preset_reaches_reference_accuracy_numpy(clips, numpy_preset):
    x16, y, _ = clips
    assert len(y) == 3975 and sorted(set(y)) == list(range(12)) and len(KWS_LABELS) == 12
    q, pred = numpy_preset
    acc = float((pred == y).mean())
    print(f"mlperf-kws numpy: top-1 {acc:.4f} on {len(y)} clips")
    assert acc >= 0.90
    per_class = [float((pred[y == k] == k).mean()) for k in range(12)]
    assert min(per_class) >= 0.8, dict(zip(KWS_LABELS, per_class))


@pytest.mark.slow
@pytest.mark.skipif(not KWS_MODEL.is_file(), reason="no kws_ref_model.tflite")
@pytest.mark.parametrize("variant,step,floor", [("f32", 1, 0.90), ("q31", 3, 0.90),
                                                ("q15", 3, 0.88)])
def test_preset_reaches_reference_accuracy_c(clips, numpy_preset, variant, step, floor):
    """The C preset on every clip (f32) or every third clip (q31, q15): the model sees
    the C features; where they equal the numpy features its prediction is the same
    deterministic function of the same input, so only differing clips are re-run."""
    x16, y, _ = clips
    qn, pn = numpy_preset
    x16, y, qn, pn = x16[::step], y[::step], qn[::step], pn[::step]
    b = MFCC.preset("mlperf-kws")
    inp = x16.astype(np.float32) / 32768 if variant == "f32" else x16
    qc = DSPHostBuild(b, 16000, variant=variant).run(inp)
    diff = np.flatnonzero((qc != qn).reshape(len(qc), -1).any(axis=1))
    pred = pn.copy()
    if diff.size:
        pred[diff] = _model_predict(qc[diff])
    acc = float((pred == y).mean())
    print(f"mlperf-kws C {variant}: top-1 {acc:.4f} on {len(y)} clips "
          f"({diff.size} clips with any feature differing from numpy)")
    assert acc >= floor
