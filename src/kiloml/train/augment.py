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
Stream negatives (``stream_negatives`` > 0; audio projects with an unknown and/or a silence
class; ``stream_negative_counts`` / ``stream_negatives``)
    An always-on stream shows the model windows that a clip-by-clip training set never has:
    unknown words anywhere in the window and cut by its edges, the first or last third of a
    keyword, and stretches of background noise alone. Each augmented bank gets
    ``round(stream_negatives x N)`` extra windows (N: training windows), half unknown-word clips
    moved by a uniform shift of up to half a window (labelled unknown), a quarter keyword
    clips moved so that at most 40 % of the word's active part (its 20 ms frames within 20 dB
    of its loudest) stays inside the window (labelled unknown), a quarter background-noise
    windows at a uniform level of -50..-10 dBFS RMS (labelled silence); with only one of the
    two classes, all of them get that class's kinds. The labels are fixed per bank (same count
    of each kind); which clips, shifts and noise stretches are drawn per bank. The extra
    windows then go through the same audio augmentation as the training clips (noise at
    noise_snr_db, gain, speed).
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
                or getattr(aug, "speed_range", 0.0) or getattr(aug, "stream_negatives", 0.0))


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


NEG_WORD_INSIDE = 0.4          # keyword negatives: at most this part of the word in the window
NEG_ACTIVE_DB = 20.0           # a word's active part: 20 ms frames within this of its loudest
NEG_NOISE_DBFS = (-50.0, -10.0)


def stream_negative_counts(n_train: int, fraction: float, has_unknown: bool,
                           has_silence: bool) -> tuple[int, int, int]:
    """(unknown-word windows, keyword-edge windows, noise windows) added to each bank."""
    total = int(round(fraction * n_train))
    if total <= 0 or not (has_unknown or has_silence):
        return 0, 0, 0
    if not has_silence:
        return total - total // 3, total // 3, 0
    if not has_unknown:
        return 0, 0, total
    unk = total // 2
    kw = total // 4
    return unk, kw, total - unk - kw


def active_span(clip: np.ndarray, sample_rate: float) -> tuple[int, int]:
    """[start, end) samples of the clip's active part (see the module doc); (0, 0) if silent."""
    hop = max(1, int(round(0.020 * sample_rate)))
    nf = len(clip) // hop
    if nf == 0:
        return 0, 0
    e = np.mean(clip[:nf * hop].reshape(nf, hop) ** 2, axis=1)
    top = float(e.max())
    if top <= 0:
        return 0, 0
    on = np.flatnonzero(e >= top * 10 ** (-NEG_ACTIVE_DB / 10))
    return int(on[0] * hop), int((on[-1] + 1) * hop)


def _shifted(clip: np.ndarray, s: int) -> np.ndarray:
    out = np.zeros_like(clip)
    n = len(clip)
    if s >= n or -s >= n:
        return out
    if s >= 0:
        out[s:] = clip[:n - s]
    else:
        out[:n + s] = clip[-s:]
    return out


def edge_shift(span: tuple[int, int], length: int, rng: np.random.Generator) -> int:
    """A shift that leaves at most NEG_WORD_INSIDE of the word [a, b) inside [0, length)."""
    a, b = span
    keep = int(NEG_WORD_INSIDE * (b - a))
    right = max(0, length - a - keep)       # word starts at a + s: inside = length - (a + s)
    left = max(0, b - keep)                 # word ends at b - s: inside = b - s
    if rng.random() < 0.5:
        return int(rng.integers(right, max(right, length - a) + 1))
    return -int(rng.integers(left, max(left, b) + 1))


def stream_negatives(clips: np.ndarray, labels: np.ndarray, counts: tuple[int, int, int],
                     unknown_id: int, keyword_ids: np.ndarray, noise: list[np.ndarray],
                     sample_rate: float, rng: np.random.Generator) -> np.ndarray:
    """(N, samples) training clips with their label ids -> the (sum(counts), samples) extra
    windows of one bank, in the order unknown words, keyword edges, noise (see the module
    doc). Kinds without a source (no unknown clip, no keyword clip, no noise) are silence."""
    n_unk, n_kw, n_sil = counts
    length = clips.shape[1]
    out = np.zeros((n_unk + n_kw + n_sil, length))
    unk = np.flatnonzero(labels == unknown_id) if unknown_id >= 0 else np.zeros(0, int)
    kws = np.flatnonzero(np.isin(labels, keyword_ids))
    half = length // 2
    for i in range(n_unk):
        if len(unk):
            c = clips[unk[rng.integers(len(unk))]]
            out[i] = _shifted(c, int(rng.integers(-half, half + 1)))
    for i in range(n_unk, n_unk + n_kw):
        if len(kws):
            c = clips[kws[rng.integers(len(kws))]]
            span = active_span(c, sample_rate)
            if span[1] > span[0]:
                out[i] = _shifted(c, edge_shift(span, length, rng))
    for i in range(n_unk + n_kw, len(out)):
        if noise:
            clip = noise[rng.integers(len(noise))]
            seg = clip[(o := int(rng.integers(0, max(1, len(clip) - length + 1)))):o + length] \
                if len(clip) >= length else np.resize(clip, length)
            r = float(np.sqrt(np.mean(seg ** 2)))
            if r > 0:
                out[i] = seg / r * 10 ** (rng.uniform(*NEG_NOISE_DBFS) / 20.0)
    return np.clip(out, -1.0, 1.0)


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
