"""Augmentation: seeded, shape-preserving, and doing what its parameters say."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kiloml.workflow.project import AugmentSection  # noqa: E402
from kiloml.train import augment as A  # noqa: E402


def _clips(n=8, length=16000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(length) / 16000
    return 0.3 * np.sin(2 * np.pi * rng.uniform(200, 800, (n, 1)) * t)


def test_time_shift_moves_and_zero_fills():
    aug = AugmentSection(time_shift_ms=100)
    x = _clips(4)
    y = A.augment_audio(x, aug, 16000, [], np.random.default_rng(1))
    assert y.shape == x.shape
    for a, b in zip(x, y):
        # the shifted clip equals the original moved by s samples, |s| <= 1600
        best = max(range(-1600, 1601, 1), key=lambda s: -np.abs(np.roll(a, s)[1600:-1600]
                                                                 - b[1600:-1600]).max())
        assert np.allclose(np.roll(a, best)[1600:-1600], b[1600:-1600])
        assert (b[:best] == 0).all() if best > 0 else (b[len(b) + best:] == 0).all()


def test_noise_is_mixed_at_the_requested_snr():
    aug = AugmentSection(noise_probability=1.0, noise_snr_db=(10.0, 10.0))
    noise = [np.random.default_rng(2).normal(0, 0.5, 48000)]
    x = _clips(6)
    y = A.augment_audio(x, aug, 16000, noise, np.random.default_rng(3))
    for a, b in zip(x, y):
        snr = 10 * np.log10(np.mean(a ** 2) / np.mean((b - a) ** 2))
        assert abs(snr - 10.0) < 0.5


def test_no_augmentation_is_identity_and_seeds_repeat():
    x = _clips(3)
    assert np.array_equal(A.augment_audio(x, AugmentSection(), 16000, [],
                                          np.random.default_rng(0)), x)
    aug = AugmentSection(time_shift_ms=50, gain_db=3, noise_probability=0.5)
    noise = [np.random.default_rng(5).normal(0, 0.1, 20000)]
    a = A.augment_audio(x, aug, 16000, noise, np.random.default_rng(7))
    b = A.augment_audio(x, aug, 16000, noise, np.random.default_rng(7))
    assert np.array_equal(a, b) and not np.array_equal(a, x)


def test_spec_augment_masks_bands_and_spans():
    aug = AugmentSection(spec_freq_masks=1, spec_freq_width=3, spec_time_masks=1,
                         spec_time_width=6)
    f = np.ones((200, 49, 10), np.float32)
    m = A.spec_augment(f, aug, np.random.default_rng(0))
    zero_cols = (m == 0).all(axis=1).sum(axis=1)          # fully masked coefficients
    zero_rows = (m == 0).all(axis=2).sum(axis=1)          # fully masked frames
    assert zero_cols.max() <= 3 and zero_rows.max() <= 6
    assert zero_cols.mean() > 0.5 and zero_rows.mean() > 1
    assert (f == 1).all()                                 # input untouched


def test_motion_rotation_keeps_norms_and_scale_changes_them():
    x = np.random.default_rng(0).normal(0, 1, (10, 50, 3)).astype(np.float32)
    r = A.augment_motion(x, AugmentSection(rotate_deg=30), np.random.default_rng(1))
    assert np.allclose(np.linalg.norm(r, axis=2), np.linalg.norm(x, axis=2), atol=1e-4)
    assert not np.allclose(r, x)
    s = A.augment_motion(x, AugmentSection(scale_range=0.2), np.random.default_rng(1))
    ratio = np.linalg.norm(s, axis=(1, 2)) / np.linalg.norm(x, axis=(1, 2))
    assert ((ratio >= 0.8 - 1e-6) & (ratio <= 1.2 + 1e-6)).all() and ratio.std() > 0.01


def test_speed_perturbation_scales_frequency_and_keeps_length():
    t = np.arange(16000) / 16000
    x = np.sin(2 * np.pi * 500 * t)[None].repeat(20, 0)
    y = A.augment_audio(x, AugmentSection(speed_range=0.2), 16000, [], np.random.default_rng(0))
    assert y.shape == x.shape
    peaks = [np.argmax(np.abs(np.fft.rfft(c * np.hanning(16000)))) for c in y]   # 1 Hz bins
    assert 400 <= min(peaks) and max(peaks) <= 600 and np.std(peaks) > 20
    assert np.array_equal(A._resample_centred(x[0], 1.0), x[0])


def test_motion_speed_and_gain_move_frequency_and_level():
    """Vibration windows (another shaft speed, another level): a 1,000 Hz tone at 12 kHz
    comes back within 1 +- speed_range of its frequency and within +-gain_db of its level,
    and both transforms are drawn (not constant)."""
    fs = 12000.0
    t = np.arange(8192) / fs
    x = np.sin(2 * np.pi * 1000.0 * t)[None, :, None].repeat(40, 0).astype(np.float32)
    y = A.augment_motion(x, AugmentSection(speed_range=0.05), np.random.default_rng(0))
    assert y.shape == x.shape and y.dtype == np.float32
    spec = np.abs(np.fft.rfft(y[:, :, 0] * np.hanning(8192), axis=1))
    f = np.argmax(spec, axis=1) * fs / 8192
    assert (f >= 1000 * 0.95 - 2).all() and (f <= 1000 * 1.05 + 2).all() and f.std() > 10
    g = A.augment_motion(x, AugmentSection(gain_db=6.0), np.random.default_rng(0))
    db = 20 * np.log10(np.sqrt((g ** 2).mean(axis=(1, 2))) / np.sqrt((x ** 2).mean(axis=(1, 2))))
    assert (np.abs(db) <= 6.0 + 1e-4).all() and db.std() > 1.0
    assert A.motion_enabled(AugmentSection(gain_db=1.0))
    assert A.motion_enabled(AugmentSection(speed_range=0.01))


def test_stream_negative_counts():
    assert A.stream_negative_counts(100, 0.4, True, True) == (20, 10, 10)
    assert A.stream_negative_counts(100, 0.4, True, False) == (27, 13, 0)
    assert A.stream_negative_counts(100, 0.4, False, True) == (0, 0, 40)
    assert A.stream_negative_counts(100, 0.4, False, False) == (0, 0, 0)
    assert A.stream_negative_counts(100, 0.0, True, True) == (0, 0, 0)


def test_stream_negatives_cut_keywords_shift_unknown_words_and_add_noise():
    """Keyword clips: a 200 ms tone burst at 400..600 ms; unknown clips: a constant level
    that names the clip; one noise recording. Every keyword negative keeps at most 40 % of
    its burst inside the window, every unknown one is its clip moved by at most half a window
    (zero filled), every noise window a stretch of the recording at -50..-10 dBFS."""
    n, hop = 16000, 320
    t = np.arange(n)
    burst = np.where((t >= 6400) & (t < 9600), 0.5 * np.sin(2 * np.pi * 1000 * t / n), 0.0)
    assert A.active_span(burst, 16000) == (6400, 9600)
    assert A.active_span(np.zeros(n), 16000) == (0, 0)
    unknown = [np.full(n, 0.01 * (k + 1)) for k in range(3)]
    clips = np.stack([burst, burst] + unknown)
    labels = np.array([2, 3, 1, 1, 1])
    noise = [np.random.default_rng(5).normal(0, 0.2, 5 * n)]
    rng = np.random.default_rng(0)
    out = A.stream_negatives(clips, labels, (30, 40, 20), 1, np.array([2, 3, 4]), noise,
                             16000, rng)
    assert out.shape == (90, n)
    for w in out[:30]:
        levels = np.unique(np.round(w[w != 0], 6))
        assert len(levels) == 1 and levels[0] in {0.01, 0.02, 0.03}
        kept = np.count_nonzero(w)
        assert kept >= n // 2 and (w[0] == 0 or w[-1] == 0 or kept == n)
    inside = [np.count_nonzero(w) / 3200 for w in out[30:70]]
    assert max(inside) <= 0.4 + 1e-9 and min(inside) >= 0.0
    assert len({round(v, 3) for v in inside}) > 5                 # shifts drawn, not fixed
    for w in out[70:]:
        dbfs = 20 * np.log10(np.sqrt(np.mean(w ** 2)))
        assert -50 - 1e-6 <= dbfs <= -10 + 1e-6
        z = noise[0]
        c = w[0] / z[:4 * n + 1]                       # w = c x z[o:o + n], c > 0
        o = np.flatnonzero((c > 0) & (np.abs(c * z[1:4 * n + 2] - w[1]) < 1e-12))
        assert len(o)
        want = np.clip(c[o[0]] * z[o[0]:o[0] + n], -1, 1)        # full scale clips
        assert np.allclose(want, w, rtol=0, atol=1e-9)
    again = A.stream_negatives(clips, labels, (30, 40, 20), 1, np.array([2, 3, 4]), noise,
                               16000, np.random.default_rng(0))
    assert np.array_equal(out, again)
