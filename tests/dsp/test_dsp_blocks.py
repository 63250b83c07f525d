"""MFE, spectrogram, spectral and raw blocks: numpy against independent references, C against
numpy, parameter validation, declared output shapes and costs.

Tolerances (C vs numpy; float32 in C, float64 in numpy)
- MFE f32: 1e-3 absolute in log units (ln / dB / log10) on speech; q31: 2e-3; q15: mean 0.2.
- spectrogram f32: 1e-5 relative to the frame's largest bin, compared in linear units (a
  log output's weak bins carry float32's error relative to that largest bin).
- spectral f32: statistics 1e-4 relative, band powers and peak heights 1e-4 relative to the
  largest PSD value, peak frequencies equal.
- raw f32: 1e-6 relative.
Numpy vs references: librosa (its mel basis is float32) 1e-6 relative; scipy (stft, welch, skew,
kurtosis) 1e-9 relative; peaks equal to scipy.signal.find_peaks.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import scipy.signal
import scipy.stats

from dsphelp import SHARED, SPEECH, speech_clips
from kiloml.codegen.host import find_cc
from kiloml.dsp import make_block
from kiloml.dsp.host import DSPHostBuild
from kiloml.errors import DSPError

HAVE_SPEECH = SPEECH.is_dir()


def speech(n=12):
    if HAVE_SPEECH:
        return speech_clips()[0][::331][:n]
    rng = np.random.default_rng(0)
    return np.round(rng.standard_normal((n, 16000)) * 3000).astype(np.int16)


# ---------------------------------------------------------------- MFE


@pytest.mark.parametrize("power,log,scale,norm", [(1, "ln", "htk", "none"),
                                                  (2, "db", "htk", "slaney"),
                                                  (2, "log10", "slaney", "slaney")])
def test_mfe_matches_librosa(power, log, scale, norm):
    import librosa

    x = speech(6).astype(np.float64) / 32768
    b = make_block("mfe", params=dict(frame_length=400, frame_step=160, fft_length=512,
                                      num_filters=32, low_hz=0, high_hz=8000, power=power,
                                      mel_scale=scale, triangles="hz", filter_norm=norm,
                                      zero_dc=False, log=log, log_offset=1e-10,
                                      log_mode="clamp"))
    ours = b.front.log_mel(x)
    y = np.concatenate([np.zeros((len(x), 56)), x], axis=1)       # (512 - 400) / 2
    S = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=512, win_length=400, hop_length=160,
                                       window="hann", center=False, power=float(power),
                                       n_mels=32, fmin=0, fmax=8000, htk=scale == "htk",
                                       norm="slaney" if norm == "slaney" else None)
    S = np.maximum(np.swapaxes(S, -1, -2), 1e-10)
    ref = {"ln": np.log, "db": lambda s: 10 * np.log10(s), "log10": np.log10}[log](S)
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-5)   # librosa: float32 mel basis


MFE_CONFIGS = {
    "kws-like": dict(normalize="peak", pad_to=16000),
    "power-db-preemph": dict(power=2, log="db", log_offset=1e-10, log_mode="clamp",
                             pre_emphasis=0.97, frame_length=400, frame_step=160, num_filters=32,
                             high_hz=8000, low_hz=0, window="hamming"),
    "log10-add-slaney": dict(log="log10", log_offset=1e-4, filter_norm="slaney", fft_length=256,
                             frame_length=256, frame_step=128, num_filters=24, pad_end=True,
                             normalize="peak_abs"),
}


@pytest.mark.parametrize("name", sorted(MFE_CONFIGS))
@pytest.mark.parametrize("variant", ["f32", "q31", "q15"])
def test_mfe_c_matches_numpy(name, variant):
    x16 = speech(8)
    xf = x16.astype(np.float32) / 32768
    b = make_block("mfe", params=MFE_CONFIGS[name])
    want = b(xf.astype(np.float64)).astype(np.float64)
    got = DSPHostBuild(b, 16000, variant=variant, sanitize=True).run(
        xf if variant == "f32" else x16).astype(np.float64)
    if variant != "f32":
        got /= 2 ** 20
    err = np.abs(got - want) / (10.0 if MFE_CONFIGS[name].get("log") == "db" else 1.0)
    if variant == "f32":
        assert err.max() < 1e-3
    elif variant == "q31":
        assert err.max() < 2e-3
    else:
        assert err.mean() < 0.2


def test_mfe_fixed_point_needs_a_log():
    b = make_block("mfe", params=dict(log="none"))
    with pytest.raises(DSPError, match="needs a log"):
        b.c_sources("m", 16000, variant="q31")


# ---------------------------------------------------------------- spectrogram


def test_spectrogram_matches_scipy_stft():
    x = speech(3).astype(np.float64) / 32768
    b = make_block("spectrogram", params=dict(frame_length=256, frame_step=100, fft_length=512))
    ours = b(x)
    w = scipy.signal.get_window("hann", 256)          # periodic, as ours
    _, _, Z = scipy.signal.stft(x, nperseg=256, noverlap=156, nfft=512, window=w, boundary=None,
                                padded=False, detrend=False, return_onesided=True,
                                scaling="spectrum")
    ref = np.abs(np.swapaxes(Z, -1, -2)) * w.sum()
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5 * ref.max())


@pytest.mark.parametrize("params", [dict(), dict(log="db", power=2, low_hz=100, high_hz=4000),
                                    dict(normalize="peak_abs", pad_end=True, frame_length=200,
                                         fft_length=256, frame_step=97, log="ln",
                                         log_mode="add")])
def test_spectrogram_c_matches_numpy(params):
    xf = speech(5).astype(np.float32) / 32768
    b = make_block("spectrogram", params=params)
    want = b(xf.astype(np.float64)).astype(np.float64)
    got = DSPHostBuild(b, 16000, sanitize=True).run(xf).astype(np.float64)
    assert got.shape == want.shape == (5,) + b.output_shape(16000)
    if params.get("log") == "db":
        got, want = 10 ** (got / 10), 10 ** (want / 10)
    elif params.get("log") == "ln":
        got, want = np.exp(got), np.exp(want)
    # float32 error is relative to the frame's largest bin: in log units bins far below it
    # carry large relative errors, so compare linear values.
    rel = np.abs(got - want) / want.max(axis=-1, keepdims=True)
    assert rel.max() < 1e-5


# ---------------------------------------------------------------- spectral


def imu_windows() -> np.ndarray:
    """Real 3-axis windows from magic_wand (or seeded noise without ../shared)."""
    from kiloml.data.readers import read_serial_log

    p = SHARED / "data" / "magic_wand" / "ring" / "output_ring_hyw.txt"
    if p.is_file():
        rec = read_serial_log(p, rate=25)
        wins = [rec.data[o:o + 64] for o, n in rec.segments if n >= 64]
        return np.stack(wins[:10]).astype(np.float64)
    return np.random.default_rng(1).standard_normal((10, 64, 3)) * 300


def vibration_windows() -> np.ndarray:
    p = SHARED / "data" / "cwru_bearing_0hp" / "12k_Drive_End_IR007_0_105.mat"
    if p.is_file():
        from kiloml.data.readers import read_mat

        d = read_mat(p, rate=12000).data[:, 0]
        w = np.stack([d[k * 2048:(k + 1) * 2048] for k in range(6)])
        return w[..., None].astype(np.float64)
    return np.random.default_rng(2).standard_normal((6, 2048, 1))


@pytest.mark.parametrize("which", ["imu", "vibration"])
def test_spectral_matches_scipy(which):
    if which == "imu":
        x = imu_windows()
        b = make_block("spectral", params=dict(sample_rate=25, fft_length=32,
                                               band_edges_hz=[0, 1, 3, 6, 12.5], num_peaks=3))
    else:
        x = vibration_windows()
        b = make_block("spectral", params=dict(sample_rate=12000, fft_length=512,
                                               band_edges_hz=[0, 500, 1500, 3000, 6000],
                                               num_peaks=4))
    p = b.params
    out = b(x).reshape(len(x), x.shape[-1], -1)
    for w in range(len(x)):
        for a in range(x.shape[-1]):
            v = x[w, :, a]
            feats = out[w, a]
            np.testing.assert_allclose(feats[:5], [v.mean(), np.sqrt((v ** 2).mean()), v.std(),
                                                   scipy.stats.skew(v), scipy.stats.kurtosis(v)],
                                       rtol=1e-5, atol=1e-6 * np.abs(v).max())
            seg = min(p.fft_length, len(v))
            f, P = scipy.signal.welch(v, fs=p.sample_rate, window="hann", nperseg=seg,
                                      noverlap=seg // 2, nfft=p.fft_length, detrend="constant",
                                      scaling="density")
            np.testing.assert_allclose(b.psd(x[w])[a], P, rtol=1e-6, atol=1e-9 * P.max())
            df = f[1]
            e = p.band_edges_hz
            bands = [P[(f >= lo) & (f < hi)].sum() * df for lo, hi in zip(e, e[1:])]
            np.testing.assert_allclose(feats[5:5 + len(bands)], bands, rtol=1e-5,
                                       atol=1e-6 * max(bands))
            idx, _ = scipy.signal.find_peaks(P)
            top = idx[np.argsort(-P[idx], kind="stable")][:p.num_peaks]
            got_f = feats[5 + len(bands)::2]
            np.testing.assert_allclose(got_f[:len(top)], f[top], rtol=1e-6)


def test_spectral_constant_axis_and_names():
    b = make_block("spectral", params=dict(sample_rate=50, fft_length=16, band_edges_hz=[0, 5, 25],
                                           num_peaks=1))
    x = np.zeros((40, 2))
    x[:, 0] = 3.0
    x[:, 1] = np.sin(np.arange(40))
    out = b(x)
    assert out.shape == b.output_shape(40, 2) == (2 * 9,)
    assert out[3] == 0 and out[4] == 0 and out[2] == 0          # constant: no skew/kurtosis
    names = b.feature_names(["ax", "ay"])
    assert len(names) == 18 and names[0] == "ax.mean" and names[-1] == "ay.peak1_psd"


@pytest.mark.parametrize("which", ["imu", "vibration"])
def test_spectral_c_matches_numpy(which):
    x = imu_windows() if which == "imu" else vibration_windows()
    params = (dict(sample_rate=25, fft_length=32, band_edges_hz=[0, 1, 3, 6, 12.5], num_peaks=3,
                   log_bands=False) if which == "imu" else
              dict(sample_rate=12000, fft_length=512, band_edges_hz=[0, 500, 1500, 3000, 6000],
                   num_peaks=4, log_bands=True))
    b = make_block("spectral", params=params)
    want = b(x).reshape(len(x), x.shape[-1], -1).astype(np.float64)
    got = DSPHostBuild(b, x.shape[1], x.shape[2], sanitize=True).run(
        x.astype(np.float32)).reshape(want.shape).astype(np.float64)
    nb = len(params["band_edges_hz"]) - 1
    scale = np.abs(want[..., :5]).max(axis=-1, keepdims=True)
    np.testing.assert_allclose(got[..., :5], want[..., :5], rtol=1e-4, atol=1e-4 * scale.max())
    if params["log_bands"]:
        np.testing.assert_allclose(got[..., 5:5 + nb], want[..., 5:5 + nb], atol=1e-4)
    else:
        np.testing.assert_allclose(got[..., 5:5 + nb], want[..., 5:5 + nb], rtol=1e-4,
                                   atol=1e-6 * want[..., 5:5 + nb].max())
    pk = want[..., 5 + nb:]
    np.testing.assert_array_equal(got[..., 5 + nb::2], pk[..., ::2])
    np.testing.assert_allclose(got[..., 6 + nb::2], pk[..., 1::2], rtol=1e-4)


# ---------------------------------------------------------------- raw


def test_raw_scale_offset_and_c():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((20, 50, 3)) * [1, 10, 100] + [0, 5, -50]
    b = make_block("raw", params=dict(scale=2.0, offset=1.0))
    np.testing.assert_allclose(b(x), ((x - 1.0) * 2.0).astype(np.float32), rtol=1e-6)
    with pytest.raises(DSPError, match="standardize"):   # removed: training normalizes
        make_block("raw", params=dict(standardize=True))
    got = DSPHostBuild(b, 50, 3, sanitize=True).run(x.astype(np.float32))
    np.testing.assert_allclose(got, b(x), rtol=1e-5, atol=1e-5)
    assert make_block("raw", params=dict(flatten=True)).output_shape(50, 3) == (150,)


def test_raw_center_removes_each_axis_mean_and_c_is_bit_exact():
    """``center``: each axis minus its mean over the window (an accelerometer's gravity); the
    C sums in frame order in float32 like the numpy spec, so the outputs are equal to the bit
    (milli-g integers as magic_wand logs them and arbitrary float32 values)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((30, 100, 3)) * [30, 300, 100] + [5, -200, 1000]
    b = make_block("raw", params=dict(center=True, scale=0.5, offset=7.0))
    y = b(x)
    want = ((x - x.mean(axis=1, keepdims=True) - 7.0) * 0.5).astype(np.float32)
    np.testing.assert_allclose(y, want, rtol=0, atol=1e-6 * np.abs(want).max())
    plain = make_block("raw", params=dict(center=True))
    assert np.abs(plain(x).mean(axis=1)).max() < 1e-3   # the gravity offset (1000) is gone
    assert not np.allclose(make_block("raw")(x).mean(axis=1), 0, atol=1)
    for xx in (np.round(x).astype(np.float32), x.astype(np.float32)):
        np.testing.assert_array_equal(DSPHostBuild(plain, 100, 3, sanitize=True).run(xx),
                                      plain(xx))
    assert b.cost(100, 3).ops["add"] == 600 and "add" not in make_block("raw").cost(100, 3).ops


# ---------------------------------------------------------------- parameters, shapes, costs


@pytest.mark.parametrize("block,params,pattern", [
    ("mfcc", dict(fft_length=500), "power of two"),
    ("mfcc", dict(frame_length=1024, fft_length=512), "exceeds fft_length"),
    ("mfcc", dict(high_hz=9000), "high_hz <= sample_rate/2"),
    ("mfcc", dict(num_coefficients=50, num_filters=40), "num_coefficients 50 exceeds"),
    ("mfcc", dict(num_filters=0), "num_filters"),
    ("mfcc", dict(windw="hann"), "windw: Extra inputs are not permitted"),
    ("mfe", dict(log="log2"), "log"),
    ("mfe", dict(num_filters=128, fft_length=64, frame_length=64), "covers no FFT bin"),
    ("spectral", dict(band_edges_hz=[5, 1]), "increasing"),
    ("spectral", dict(sample_rate=100, band_edges_hz=[0, 80]), "beyond sample_rate/2"),
    ("spectrogram", dict(low_hz=5000, high_hz=4000), "low_hz < high_hz"),
    ("raw", dict(scale=0.0), "non-zero"),
    ("radar", {}, "unknown DSP block 'radar'"),
])
def test_invalid_parameters_one_line(block, params, pattern):
    with pytest.raises(DSPError, match=pattern) as e:
        make_block(block, params=params)
    assert "\n" not in str(e.value)


def test_presets_and_overrides():
    b = make_block(preset="mlperf-kws", params={"num_coefficients": 13})
    assert b.name == "mfcc" and b.params.num_coefficients == 13 and b.params.pad_to == 16000
    with pytest.raises(DSPError, match="unknown preset"):
        make_block(preset="nope")
    with pytest.raises(DSPError, match="is a mfcc preset, not mfe"):
        make_block("mfe", preset="mlperf-kws")


@pytest.mark.parametrize("block,params,frames,channels,variant", [
    ("mfcc", {}, 16000, 1, "f32"), ("mfcc", {}, 16000, 1, "q31"), ("mfcc", {}, 16000, 1, "q15"),
    ("mfe", dict(num_filters=64, fft_length=1024, frame_length=1024, frame_step=512), 16000, 1,
     "q15"),
    ("spectrogram", dict(low_hz=100, high_hz=3000), 8000, 1, "f32"),
    ("spectral", dict(sample_rate=100, fft_length=64), 200, 3, "f32"),
    ("raw", {}, 100, 6, "f32"),
])
def test_declared_cost_is_the_generated_code(block, params, frames, channels, variant, tmp_path):
    """RAM = the scratch buffer and flash = the constant tables, as the object file says
    (the config struct of pointers, whose size depends on the target, and code are not
    part of the declared cost: code size comes from the real cross build)."""
    b = make_block(block, params=params)
    cost = b.cost(frames, channels, variant)
    files = b.c_sources("blk", frames, channels, variant)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    obj = tmp_path / "blk.o"
    r = subprocess.run([find_cc(), "-std=c99", "-O0", "-c", str(tmp_path / "blk.c"), "-o",
                        str(obj)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    nm = subprocess.run(["nm", "-S", "--size-sort", str(obj)], capture_output=True, text=True)
    sizes = {}
    for line in nm.stdout.splitlines():
        parts = line.split()
        if len(parts) == 4:
            sizes[parts[3]] = (parts[2].lower(), int(parts[1], 16))
    ram = sum(s for n, (t, s) in sizes.items() if t in "bd" and n.startswith("blk_")
              and not n.endswith("_cfg"))
    flash = sum(s for n, (t, s) in sizes.items() if t == "r" and n.startswith("blk_")
                and not n.endswith("_cfg"))
    assert (ram, flash) == (cost.ram_bytes, cost.flash_bytes)
    assert cost.total_ops > 0 and b.output_shape(frames, channels)


def test_cost_scales_with_work():
    small = make_block("mfcc", params=dict(num_filters=20, num_coefficients=10))
    big = make_block("mfcc", params=dict(num_filters=80, num_coefficients=10))
    assert big.cost(16000).flash_bytes > small.cost(16000).flash_bytes
    assert big.cost(16000).ops["mac"] > small.cost(16000).ops["mac"]
    assert small.cost(32000).total_ops > small.cost(16000).total_ops
    assert small.cost(16000, variant="q15").ram_bytes < small.cost(16000, variant="q31").ram_bytes


def test_spectral_constant_window_has_no_peaks_in_c_and_numpy():
    """A constant window's detrended PSD is float rounding noise with local maxima that the C
    (float32) and numpy place differently; below PEAK_FLOOR x the mean square they are not
    peaks, on both sides. A weak real tone on the same constant (-60 dB) still is one."""
    params = dict(sample_rate=100, fft_length=64, band_edges_hz=[0, 1, 2, 4, 8, 16, 32],
                  num_peaks=3)
    b = make_block("spectral", params=params)
    t = np.arange(100) / 100.0
    x = np.zeros((3, 100, 4), np.float32)
    x[:, :, 0] = 9.81
    x[:, :, 1] = -0.377
    x[:, :, 2] = 1234.5
    x[:, :, 3] = 9.81 + 9.81e-3 * np.sin(2 * np.pi * 12.5 * t)   # a weak 12.5 Hz tone
    x[1] *= -1.0
    x[2, :, :3] = 0.0
    P = b.psd(x[0].astype(np.float32))
    noise = [(P[a, 1:-1] > P[a, :-2]) & (P[a, 1:-1] > P[a, 2:]) for a in range(3)]
    assert any(n.any() for n in noise), "the float noise has local maxima (what is tested)"
    want = b(x).reshape(3, 4, -1).astype(np.float64)
    got = DSPHostBuild(b, 100, 4, sanitize=True).run(x).reshape(want.shape).astype(np.float64)
    nb = len(params["band_edges_hz"]) - 1
    assert (want[:, :3, 5 + nb:] == 0).all()          # constant axes: no peaks (f, h)
    np.testing.assert_array_equal(got[:, :3, 5 + nb:], want[:, :3, 5 + nb:])
    assert (want[:, 3, 5 + nb] == 12.5).all()          # the tone: the largest peak, both sides
    np.testing.assert_array_equal(got[:, 3, 5 + nb::2], want[:, 3, 5 + nb::2])
    np.testing.assert_allclose(got[:, 3, 6 + nb::2], want[:, 3, 6 + nb::2], rtol=1e-4)
