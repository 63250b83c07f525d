"""Training-time augmentation, seeded and reproducible.

Audio (float samples in [-1, 1]): background-noise mixing at a chosen SNR, time shift, gain.
Features: SpecAugment frequency and time masks. IMU (frames x axes): jitter, per-axis
scaling, 3-D rotation of each (x, y, z) triplet of axes.

Every function takes an explicit ``numpy.random.Generator``. :class:`Augmenter` derives one
per (seed, epoch, sample index), so a sample's augmentation does not depend on the order in
which samples are drawn or on the number of worker processes.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from kiloml.errors import DataError


def _power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64)))


def mix_noise(x: np.ndarray, noise: np.ndarray, snr_db: float,
              rng: np.random.Generator) -> np.ndarray:
    """x plus a random stretch of ``noise`` scaled so that 10 log10(P_x / P_noise) = snr_db
    (powers as mean squares over the clip). Noise shorter than x is tiled. A silent x (or
    silent noise) is returned unchanged: its SNR is undefined."""
    x = np.asarray(x, dtype=np.float64)
    noise = np.asarray(noise, dtype=np.float64).reshape(-1)
    if noise.size == 0:
        raise DataError("noise clip is empty")
    n = x.shape[0]
    if noise.size < n:
        noise = np.tile(noise, -(-n // noise.size))
    start = int(rng.integers(0, noise.size - n + 1))
    seg = noise[start:start + n]
    seg = seg.reshape(seg.shape + (1,) * (x.ndim - 1))
    px, pn = _power(x), _power(seg)
    if px == 0.0 or pn == 0.0:
        return x.copy()
    k = np.sqrt(px / (pn * 10.0 ** (snr_db / 10.0)))
    return x + k * seg


def time_shift(x: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Shift along time by a uniform integer in [-max_shift, max_shift], filling with zeros."""
    s = int(rng.integers(-max_shift, max_shift + 1)) if max_shift > 0 else 0
    out = np.zeros_like(x)
    if s > 0:
        out[s:] = x[:-s]
    elif s < 0:
        out[:s] = x[-s:]
    else:
        out[:] = x
    return out


def gain(x: np.ndarray, max_db: float, rng: np.random.Generator, clip: bool = True) -> np.ndarray:
    """Multiply by 10^(g/20), g uniform in [-max_db, max_db] dB; clipped to [-1, 1] like a
    16-bit recording would be."""
    g = float(rng.uniform(-max_db, max_db)) if max_db > 0 else 0.0
    y = x * 10.0 ** (g / 20.0)
    return np.clip(y, -1.0, 1.0) if clip else y


def spec_augment(feat: np.ndarray, freq_masks: int, freq_width: int, time_masks: int,
                 time_width: int, rng: np.random.Generator,
                 fill: float | None = None) -> np.ndarray:
    """SpecAugment masks on (frames, bins) features: ``freq_masks`` bands of 0..freq_width
    bins and ``time_masks`` spans of 0..time_width frames set to ``fill`` (default: the
    features' mean)."""
    out = np.array(feat, copy=True)
    frames, bins = out.shape[-2], out.shape[-1]
    v = float(out.mean()) if fill is None else fill
    for _ in range(freq_masks):
        w = int(rng.integers(0, min(freq_width, bins) + 1))
        f0 = int(rng.integers(0, bins - w + 1))
        out[..., f0:f0 + w] = v
    for _ in range(time_masks):
        w = int(rng.integers(0, min(time_width, frames) + 1))
        t0 = int(rng.integers(0, frames - w + 1))
        out[..., t0:t0 + w, :] = v
    return out


def jitter(x: np.ndarray, rel_std: float, rng: np.random.Generator) -> np.ndarray:
    """Add Gaussian noise whose std is ``rel_std`` times each axis's own std (unit-free, so
    the same setting suits milli-g and m/s^2)."""
    sd = np.std(x, axis=0, keepdims=True)
    return x + rng.standard_normal(x.shape) * (rel_std * sd)


def scale(x: np.ndarray, rel_range: float, rng: np.random.Generator) -> np.ndarray:
    """Multiply each axis by its own factor, uniform in [1 - r, 1 + r]."""
    return x * rng.uniform(1.0 - rel_range, 1.0 + rel_range, size=(1, x.shape[1]))


def rotation_matrix(axis: np.ndarray, angle_rad: float) -> np.ndarray:
    """Rodrigues' formula: rotation by ``angle_rad`` about the unit vector ``axis``."""
    a = axis / np.linalg.norm(axis)
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle_rad) * K + (1 - np.cos(angle_rad)) * (K @ K)


def rotate(x: np.ndarray, max_deg: float, rng: np.random.Generator) -> np.ndarray:
    """Rotate every (x, y, z) triplet of axes (accelerometer, gyroscope...) by the same
    random rotation: a uniform random axis and an angle uniform in [0, max_deg] — the sensor
    worn slightly differently."""
    if x.shape[1] % 3:
        raise DataError(f"rotation needs axes in (x, y, z) triplets, got {x.shape[1]} axes")
    v = rng.standard_normal(3)
    R = rotation_matrix(v, np.deg2rad(rng.uniform(0.0, max_deg)))
    out = np.empty_like(x, dtype=np.float64)
    for k in range(0, x.shape[1], 3):
        out[:, k:k + 3] = x[:, k:k + 3] @ R.T
    return out


class Augmenter:
    """Applies the transforms enabled in ``kiloml.toml`` [data.augment] (an AugmentSection).

    ``audio(x, index, epoch)`` for 1-D audio, ``imu(x, index, epoch)`` for (frames, axes),
    ``features(f, index, epoch)`` for (frames, bins). ``sample_rate`` converts the time shift
    from ms to samples; ``noise`` is the list of background clips (role ``noise``)."""

    def __init__(self, params, seed: int = 0, sample_rate: float | None = None,
                 noise: Sequence[np.ndarray] = ()) -> None:
        self.p = params
        self.seed = int(seed)
        self.sample_rate = sample_rate
        self.noise = list(noise)
        if self.p.noise_probability > 0 and not self.noise:
            raise DataError("noise mixing is enabled but the project has no background-noise "
                            "clips (import a _background_noise_ folder)")

    def rng(self, index: int, epoch: int, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, epoch, index, stream])

    def audio(self, x: np.ndarray, index: int, epoch: int = 0) -> np.ndarray:
        p = self.p
        rng = self.rng(index, epoch, 0)
        y = np.asarray(x, dtype=np.float64)
        if p.time_shift_ms > 0:
            if self.sample_rate is None:
                raise DataError("time shift needs the sample rate")
            y = time_shift(y, int(round(p.time_shift_ms * self.sample_rate / 1000)), rng)
        if p.gain_db > 0:
            y = gain(y, p.gain_db, rng)
        if p.noise_probability > 0 and rng.uniform() < p.noise_probability:
            clip = self.noise[int(rng.integers(0, len(self.noise)))]
            y = mix_noise(y, clip, float(rng.uniform(*p.noise_snr_db)), rng)
            y = np.clip(y, -1.0, 1.0)
        return y

    def features(self, f: np.ndarray, index: int, epoch: int = 0) -> np.ndarray:
        p = self.p
        return spec_augment(f, p.spec_freq_masks, p.spec_freq_width, p.spec_time_masks,
                            p.spec_time_width, self.rng(index, epoch, 1))

    def imu(self, x: np.ndarray, index: int, epoch: int = 0) -> np.ndarray:
        p = self.p
        rng = self.rng(index, epoch, 2)
        y = np.asarray(x, dtype=np.float64)
        if p.rotate_deg > 0:
            y = rotate(y, p.rotate_deg, rng)
        if p.scale_range > 0:
            y = scale(y, p.scale_range, rng)
        if p.jitter_std > 0:
            y = jitter(y, p.jitter_std, rng)
        return y
