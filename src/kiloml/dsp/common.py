"""Building blocks shared by the audio blocks: framing, windows, FFT magnitude, mel filters,
DCT, output quantization. All numpy, batched over leading axes, float64 inside.

Conventions (units): sample rate in Hz, lengths in samples, frequencies in Hz.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from kiloml.errors import DSPError


def window(kind: str, n: int, periodic: bool = True) -> np.ndarray:
    """hann / hamming / rect of length n. ``periodic`` (the FFT convention, TF's and scipy's
    default ``fftbins=True``) divides by n, the symmetric form by n - 1."""
    if kind == "rect":
        return np.ones(n)
    d = n if periodic else max(n - 1, 1)
    k = np.arange(n)
    if kind == "hann":
        return 0.5 - 0.5 * np.cos(2 * np.pi * k / d)
    if kind == "hamming":
        return 0.54 - 0.46 * np.cos(2 * np.pi * k / d)
    raise DSPError(f"unknown window {kind!r} (hann, hamming, rect)")


def num_frames(n: int, frame_length: int, frame_step: int, pad_end: bool) -> int:
    if pad_end:
        return -(-n // frame_step) if n > 0 else 0
    return 0 if n < frame_length else 1 + (n - frame_length) // frame_step


def frame(x: np.ndarray, frame_length: int, frame_step: int, pad_end: bool = False) -> np.ndarray:
    """(..., n) -> (..., frames, frame_length) views (a copy when ``pad_end`` pads zeros)."""
    n = x.shape[-1]
    f = num_frames(n, frame_length, frame_step, pad_end)
    if f == 0:
        raise DSPError(f"{n} samples is shorter than one {frame_length}-sample frame")
    need = (f - 1) * frame_step + frame_length
    if need > n:
        x = np.concatenate([x, np.zeros(x.shape[:-1] + (need - n,), x.dtype)], axis=-1)
    v = np.lib.stride_tricks.sliding_window_view(x, frame_length, axis=-1)
    return v[..., : (f - 1) * frame_step + 1: frame_step, :]


def rfft_magnitude(frames: np.ndarray, fft_length: int, power: bool = False) -> np.ndarray:
    """|rfft| (or |rfft|^2) of zero-padded frames: (..., frame_length) -> (..., fft_length/2+1)."""
    spec = scipy.fft.rfft(frames, n=fft_length, axis=-1)
    mag2 = spec.real ** 2 + spec.imag ** 2
    return mag2 if power else np.sqrt(mag2)


def hz_to_mel(f, scale: str = "htk"):
    f = np.asarray(f, dtype=np.float64)
    if scale == "htk":
        return 1127.0 * np.log1p(f / 700.0)
    # Slaney (librosa's default): linear below 1 kHz, log above.
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    logstep = np.log(6.4) / 27.0
    lin = f / f_sp
    return np.where(f >= min_log_hz, min_log_hz / f_sp + np.log(np.maximum(f, 1e-10) / min_log_hz)
                    / logstep, lin)


def mel_to_hz(m, scale: str = "htk"):
    m = np.asarray(m, dtype=np.float64)
    if scale == "htk":
        return 700.0 * np.expm1(m / 1127.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filterbank(num_filters: int, fft_length: int, sample_rate: float, low_hz: float,
                   high_hz: float, scale: str = "htk", triangles: str = "mel",
                   norm: str = "none", zero_dc: bool = True) -> np.ndarray:
    """(fft_length/2+1, num_filters) weights.

    ``triangles="mel"`` (TensorFlow's ``linear_to_mel_weight_matrix``, CMSIS-DSP's
    ``melFilterMatrix``): each bin's weight is linear in its mel value between band edges
    equally spaced in mel. ``triangles="hz"`` (librosa, Slaney): linear in Hz between the same
    edges converted to Hz. ``norm="slaney"`` scales each triangle to unit area (2 / width in
    Hz). ``zero_dc`` gives the DC bin no weight (TF's ``bands_to_zero=1``)."""
    nbins = fft_length // 2 + 1
    freqs = np.linspace(0.0, sample_rate / 2.0, nbins)
    edges_mel = np.linspace(hz_to_mel(low_hz, scale), hz_to_mel(high_hz, scale), num_filters + 2)
    lo, ce, hi = edges_mel[:-2], edges_mel[1:-1], edges_mel[2:]
    if triangles == "mel":
        m = hz_to_mel(freqs, scale)[:, None]
        w = np.maximum(0.0, np.minimum((m - lo) / (ce - lo), (hi - m) / (hi - ce)))
    elif triangles == "hz":
        e = mel_to_hz(edges_mel, scale)
        flo, fce, fhi = e[:-2], e[1:-1], e[2:]
        f = freqs[:, None]
        w = np.maximum(0.0, np.minimum((f - flo) / (fce - flo), (fhi - f) / (fhi - fce)))
    else:
        raise DSPError(f"unknown triangles {triangles!r} (mel, hz)")
    if norm == "slaney":
        e = mel_to_hz(edges_mel, scale)
        w = w * (2.0 / (e[2:] - e[:-2]))[None, :]
    elif norm != "none":
        raise DSPError(f"unknown filter norm {norm!r} (none, slaney)")
    if zero_dc:
        w[0, :] = 0.0
    return w


def sparse_filters(w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per filter: first non-zero bin, count of bins (including inner zeros) and the packed
    weights; the form the C code uses (flash = sum of counts)."""
    starts, lens, packed = [], [], []
    for j in range(w.shape[1]):
        nz = np.flatnonzero(w[:, j])
        if nz.size == 0:
            starts.append(0)
            lens.append(0)
            continue
        a, b = int(nz[0]), int(nz[-1]) + 1
        starts.append(a)
        lens.append(b - a)
        packed.append(w[a:b, j])
    flat = np.concatenate(packed) if packed else np.zeros(0)
    return np.asarray(starts), np.asarray(lens), flat


def dct_matrix(num_coefficients: int, n: int, norm: str = "tf") -> np.ndarray:
    """(num_coefficients, n) DCT-II. ``tf``: sqrt(2/n) for every coefficient, c0 included
    (``tf.signal.mfccs_from_log_mel_spectrograms``, CMSIS-DSP ``dctMatrix``); ``ortho``:
    c0 scaled by sqrt(1/n) instead (scipy/librosa ``norm='ortho'``); ``none``: 2 * sum
    (scipy's unnormalised type 2)."""
    k = np.arange(num_coefficients)[:, None]
    i = np.arange(n)[None, :]
    c = np.cos(np.pi / n * (i + 0.5) * k)
    if norm == "tf":
        return c * np.sqrt(2.0 / n)
    if norm == "ortho":
        s = np.full((num_coefficients, 1), np.sqrt(2.0 / n))
        s[0, 0] = np.sqrt(1.0 / n)
        return c * s
    if norm == "none":
        return 2.0 * c
    raise DSPError(f"unknown DCT norm {norm!r} (tf, ortho, none)")


def apply_log(x: np.ndarray, kind: str, offset: float, mode: str = "add") -> np.ndarray:
    """``ln``/``log10``/``db`` (10*log10) of ``x + offset`` (mode ``add``, TF) or of
    ``max(x, offset)`` (mode ``clamp``, librosa's ``amin``); ``none`` returns x."""
    if kind == "none":
        return x
    y = x + offset if mode == "add" else np.maximum(x, offset)
    if kind == "ln":
        return np.log(y)
    if kind == "log10":
        return np.log10(y)
    if kind == "db":
        return 10.0 * np.log10(y)
    raise DSPError(f"unknown log {kind!r} (ln, log10, db, none)")


def quantize(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """int8 quantization as TFLite's QUANTIZE does it: x / scale rounded half away from zero
    (``std::round``), plus the zero point, saturated to [-128, 127]."""
    v = x / scale
    q = np.sign(v) * np.floor(np.abs(v) + 0.5) + zero_point
    return np.clip(q, -128, 127).astype(np.int8)


def normalize(x: np.ndarray, kind: str) -> np.ndarray:
    """``peak``: divide each signal by its largest sample (signed maximum, as the MLPerf Tiny
    KWS training code does); ``peak_abs``: by its largest absolute sample; ``none``. A signal
    whose divisor is <= 0 (digital silence) is left unscaled instead of becoming inf/NaN."""
    if kind == "none":
        return x
    if kind == "peak":
        m = x.max(axis=-1, keepdims=True)
    elif kind == "peak_abs":
        m = np.abs(x).max(axis=-1, keepdims=True)
    else:
        raise DSPError(f"unknown normalize {kind!r} (none, peak, peak_abs)")
    return x / np.where(m > 0, m, 1.0)
