"""Augmentation: exact SNR, reproducibility, rotation geometry, SpecAugment masks."""

from __future__ import annotations

import numpy as np
import pytest

from datahelp import DATA
from kiloml.data import augment as A
from kiloml.errors import DataError
from kiloml.workflow.project import AugmentSection


def rng(seed=0):
    return np.random.default_rng(seed)


def snr_db(clean, mixed):
    n = mixed - clean
    return 10 * np.log10(np.mean(clean ** 2) / np.mean(n ** 2))


@pytest.mark.parametrize("snr", [-5.0, 0.0, 10.0, 30.0])
def test_noise_mixing_hits_the_snr(snr):
    from kiloml.data.wav import read_wav

    p = DATA / "speech_commands" / "_background_noise_" / "running_tap.wav"
    noise = read_wav(p).as_float()[:, 0] if p.is_file() else rng(9).standard_normal(50000)
    x = np.sin(np.arange(16000) * 0.07) * 0.3
    y = A.mix_noise(x, noise, snr, rng(1))
    assert snr_db(x, y) == pytest.approx(snr, abs=1e-9)
    short = A.mix_noise(x, noise[:1000], snr, rng(2))        # tiled
    assert snr_db(x, short) == pytest.approx(snr, abs=1e-9)
    assert np.array_equal(A.mix_noise(np.zeros(100), noise, snr, rng()), np.zeros(100))


def test_time_shift_and_gain():
    x = np.arange(1.0, 11.0)
    for seed in range(20):
        y = A.time_shift(x, 3, rng(seed))
        nz = y[y != 0]
        assert 7 <= len(nz) <= 10 and np.all(np.diff(nz) == 1)   # contiguous, order kept
    g = A.gain(np.full(10, 0.1), 6.0, rng(3))
    assert 0.1 * 10 ** (-6 / 20) - 1e-12 <= g[0] <= 0.1 * 10 ** (6 / 20) + 1e-12
    assert A.gain(np.full(3, 0.9), 20, rng(4)).max() <= 1.0


def test_spec_augment_masks():
    f = np.arange(49 * 10, dtype=float).reshape(49, 10)
    out = A.spec_augment(f, 2, 3, 2, 5, rng(0), fill=-1.0)
    masked = out == -1
    cols = masked.all(axis=0).sum()
    rows = masked.all(axis=1).sum()
    assert cols <= 6 and rows <= 10 and masked.any()
    assert np.array_equal(out[~masked], f[~masked])
    assert np.array_equal(out, A.spec_augment(f, 2, 3, 2, 5, rng(0), fill=-1.0))


def test_rotation_preserves_norms_and_angle_bound():
    x = rng(5).standard_normal((100, 6))
    for seed in range(10):
        y = A.rotate(x, 20.0, rng(seed))
        for k in (0, 3):
            np.testing.assert_allclose(np.linalg.norm(y[:, k:k + 3], axis=1),
                                       np.linalg.norm(x[:, k:k + 3], axis=1), rtol=1e-12)
        # the same rotation for both triplets; angle from the trace of R
        R = np.linalg.lstsq(x[:, :3], y[:, :3], rcond=None)[0].T
        np.testing.assert_allclose(y[:, 3:], x[:, 3:] @ R.T, atol=1e-9)
        ang = np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1)))
        assert ang <= 20.0 + 1e-6
    with pytest.raises(DataError, match="triplets"):
        A.rotate(np.zeros((5, 4)), 10, rng())


def test_jitter_and_scale_are_relative():
    x = rng(6).standard_normal((20000, 2)) * [1.0, 1000.0]
    d = A.jitter(x, 0.1, rng(7)) - x
    np.testing.assert_allclose(d.std(axis=0) / x.std(axis=0), 0.1, rtol=0.03)
    s = A.scale(x, 0.2, rng(8)) / x
    assert np.all((s > 0.8) & (s < 1.2))
    assert np.allclose(s, s[0])                       # one factor per axis


def test_augmenter_is_reproducible_per_sample():
    p = AugmentSection(noise_probability=1.0, noise_snr_db=(5, 5), time_shift_ms=50, gain_db=3,
                       spec_freq_masks=1, spec_freq_width=2, jitter_std=0.05, scale_range=0.1,
                       rotate_deg=10)
    noise = [rng(1).standard_normal(30000) * 0.1]
    a = A.Augmenter(p, seed=42, sample_rate=16000, noise=noise)
    b = A.Augmenter(p, seed=42, sample_rate=16000, noise=noise)
    c = A.Augmenter(p, seed=43, sample_rate=16000, noise=noise)
    x = np.sin(np.arange(16000) * 0.05) * 0.5
    assert np.array_equal(a.audio(x, 7, epoch=1), b.audio(x, 7, epoch=1))
    assert not np.array_equal(a.audio(x, 7, epoch=1), a.audio(x, 7, epoch=2))
    assert not np.array_equal(a.audio(x, 7), c.audio(x, 7))
    imu = rng(2).standard_normal((128, 3))
    assert np.array_equal(a.imu(imu, 3), b.imu(imu, 3))
    f = rng(3).standard_normal((49, 10))
    assert np.array_equal(a.features(f, 3), b.features(f, 3))
    with pytest.raises(DataError, match="no background-noise clips"):
        A.Augmenter(p, seed=0, sample_rate=16000)
