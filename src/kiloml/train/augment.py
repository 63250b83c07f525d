"""Training-time augmentation driven by ``[data.augment]`` in kiloml.toml (AugmentSection).

Audio (before the DSP block, on (N, samples) clips)
    speed         each clip resampled by a uniform factor in 1 +- speed_range (linear
                  interpolation; speed and pitch change together, like a different speaker),
                  then cut or zero-padded back to its length around its centre
    time shift    each clip moved by a uniform whole number of samples in +-time_shift_ms,
                  zero filled (the TF speech-commands recipe)
    gain          uniform in +-gain_db
    noise         with probability noise_probability, a random stretch of a random
                  background-noise clip (role ``noise`` in the index) mixed in at a uniform SNR
                  in noise_snr_db (relative to the clip's RMS; a silent clip gets the noise at
                  the level it would have against full-scale speech at that SNR, 0.1 RMS)
Features (after the DSP block, on (N, frames, bins))
    SpecAugment   spec_freq_masks bands of up to spec_freq_width bins and spec_time_masks
                  spans of up to spec_time_width frames set to 0
Motion and vibration (on (N, frames, axes) windows)
    speed         each window resampled by a uniform factor in 1 +- speed_range around its
                  centre (linear interpolation, the ends held at the edge values): a machine
                  turning a few percent faster or slower (another load) moves every shaft-
                  and fault-frequency by that factor
    gain          uniform in +-gain_db per window (another mounting, sensor or load)
    jitter        additive Gaussian noise, jitter_std x the window's RMS
    scale         per-window gain uniform in 1 +- scale_range
    rotate        a random 3-D rotation of up to rotate_deg about a random axis (3-axis data)
    sensor drop   multi-sensor windows (``sensors``: each sensor's channel range): with
                  probability sensor_dropout one sensor, chosen uniformly, is set to zeros, as
                  a deployed device does for a sensor that is missing (the missing-sensor
                  policy: train with dropout, zero the sensor at run time, flag it)

Every function takes a ``numpy.random.Generator`` so a seed fixes the result.
"""

from __future__ import annotations

import numpy as np


def audio_enabled(aug) -> bool:
    return bool(aug.time_shift_ms or aug.gain_db or aug.noise_probability
                or getattr(aug, "speed_range", 0.0))


def features_enabled(aug) -> bool:
    return bool((aug.spec_freq_masks and aug.spec_freq_width)
                or (aug.spec_time_masks and aug.spec_time_width))


def motion_enabled(aug) -> bool:
    return bool(aug.jitter_std or aug.scale_range or aug.rotate_deg or aug.gain_db
                or getattr(aug, "speed_range", 0.0) or getattr(aug, "sensor_dropout", 0.0))


def augment_audio(clips: np.ndarray, aug, sample_rate: float, noise: list[np.ndarray],
                  rng: np.random.Generator) -> np.ndarray:
    """(N, samples) float clips -> augmented copies (see the module doc)."""
    x = np.array(clips, dtype=np.float64, copy=True)
    n, length = x.shape
    speed = getattr(aug, "speed_range", 0.0)
    if speed:
        x = np.stack([_resample_centred(c, rng.uniform(1 - speed, 1 + speed)) for c in x])
    shift = int(round(aug.time_shift_ms * sample_rate / 1000.0))
    if shift:
        s = rng.integers(-shift, shift + 1, n)
        out = np.zeros_like(x)
        for i in range(n):
            if s[i] >= 0:
                out[i, s[i]:] = x[i, :length - s[i]]
            else:
                out[i, :length + s[i]] = x[i, -s[i]:]
        x = out
    if aug.gain_db:
        x *= 10.0 ** (rng.uniform(-aug.gain_db, aug.gain_db, (n, 1)) / 20.0)
    if aug.noise_probability and noise:
        lo, hi = aug.noise_snr_db
        use = rng.random(n) < aug.noise_probability
        for i in np.flatnonzero(use):
            clip = noise[rng.integers(len(noise))]
            if len(clip) >= length:
                off = rng.integers(0, len(clip) - length + 1)
                seg = clip[off:off + length]
            else:
                seg = np.resize(clip, length)
            nr = np.sqrt(np.mean(seg ** 2))
            if nr <= 0:
                continue
            sr = np.sqrt(np.mean(x[i] ** 2))
            ref = sr if sr > 1e-4 else 0.1
            snr = rng.uniform(lo, hi)
            x[i] += seg * (ref / nr) / 10.0 ** (snr / 20.0)
    return np.clip(x, -1.0, 1.0)


def _resample_centred(clip: np.ndarray, factor: float) -> np.ndarray:
    """Play ``clip`` ``factor`` times faster (linear interpolation), keep its length: the
    centre stays in place, the ends are cut or zero-padded."""
    n = len(clip)
    m = max(2, int(round(n / factor)))
    y = np.interp(np.arange(m) * factor, np.arange(n), clip, right=0.0)
    out = np.zeros(n)
    if m >= n:
        s = (m - n) // 2
        out[:] = y[s:s + n]
    else:
        s = (n - m) // 2
        out[s:s + m] = y
    return out


def spec_augment(feats: np.ndarray, aug, rng: np.random.Generator) -> np.ndarray:
    """(N, frames, bins) -> copies with frequency and time masks set to 0."""
    x = np.array(feats, copy=True)
    if x.ndim != 3:
        return x
    n, frames, bins = x.shape
    for _ in range(aug.spec_freq_masks if aug.spec_freq_width else 0):
        w = rng.integers(0, aug.spec_freq_width + 1, n)
        f0 = rng.integers(0, np.maximum(bins - w, 0) + 1)
        x[_band(np.arange(bins)[None], f0, w, frames)] = 0
    for _ in range(aug.spec_time_masks if aug.spec_time_width else 0):
        w = rng.integers(0, aug.spec_time_width + 1, n)
        t0 = rng.integers(0, np.maximum(frames - w, 0) + 1)
        idx = np.arange(frames)[None]
        m = (idx >= t0[:, None]) & (idx < (t0 + w)[:, None])
        x[np.broadcast_to(m[:, :, None], x.shape)] = 0
    return x


def _band(idx: np.ndarray, f0: np.ndarray, w: np.ndarray, frames: int) -> np.ndarray:
    m = (idx >= f0[:, None]) & (idx < (f0 + w)[:, None])          # (N, bins)
    return np.broadcast_to(m[:, None, :], (m.shape[0], frames, m.shape[1]))


def augment_motion(windows: np.ndarray, aug, rng: np.random.Generator,
                   sensors: list[tuple[int, int]] | None = None) -> np.ndarray:
    """(N, frames, axes) -> resampled, (for 3 axes) rotated, scaled, gained and jittered
    copies, with sensor dropout over the ``sensors`` channel ranges."""
    x = np.array(windows, dtype=np.float64, copy=True)
    n, frames, axes = x.shape
    speed = getattr(aug, "speed_range", 0.0)
    if speed:
        t = np.arange(frames) - (frames - 1) / 2.0
        for i, f in enumerate(rng.uniform(1 - speed, 1 + speed, n)):
            pos = t * f + (frames - 1) / 2.0
            x[i] = np.stack([np.interp(pos, np.arange(frames), x[i, :, a])
                             for a in range(axes)], axis=1)
    if aug.rotate_deg and axes == 3:
        for i in range(n):
            x[i] = x[i] @ _rotation(rng, np.deg2rad(aug.rotate_deg)).T
    if aug.scale_range:
        x *= rng.uniform(1 - aug.scale_range, 1 + aug.scale_range, (n, 1, 1))
    if aug.gain_db:
        x *= 10.0 ** (rng.uniform(-aug.gain_db, aug.gain_db, (n, 1, 1)) / 20.0)
    if aug.jitter_std:
        rms = np.sqrt(np.mean(x ** 2, axis=(1, 2), keepdims=True))
        x += rng.normal(0, 1, x.shape) * aug.jitter_std * rms
    drop = getattr(aug, "sensor_dropout", 0.0)
    if drop and sensors and len(sensors) > 1:
        hit = np.flatnonzero(rng.random(n) < drop)
        which = rng.integers(0, len(sensors), hit.size)
        for i, k in zip(hit, which):
            a, b = sensors[k]
            x[i, :, a:b] = 0.0
    return x.astype(np.float32)


def _rotation(rng: np.random.Generator, max_angle: float) -> np.ndarray:
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis) or 1.0
    a = rng.uniform(-max_angle, max_angle)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * (k @ k)
