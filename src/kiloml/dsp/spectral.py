"""Spectral analysis for motion and vibration windows, per axis:

    mean, rms, std, skewness, kurtosis      time-domain statistics of the raw window
    band powers                             integral of the Welch PSD over each band
    top peaks                               (frequency Hz, PSD height) of the largest local
                                            maxima of the PSD, largest first

Output (axes * features,) in axis-major order; ``feature_names()`` lists them.

Definitions and the independent references the tests compare with
    statistics   population moments (ddof 0): skewness m3 / m2^1.5 and excess kurtosis
                 m4 / m2^2 - 3 are ``scipy.stats.skew`` / ``kurtosis`` with their defaults
                 (bias=True, fisher=True); an axis whose variance is below 1e-12 mean^2 (float32
                 resolution) counts as constant and gives 0 and 0 (scipy: NaN or noise).
    PSD          ``scipy.signal.welch(x, fs=sample_rate, window="hann", nperseg=min(fft_length,
                 frames), noverlap=nperseg // 2, nfft=fft_length, detrend="constant" or False,
                 scaling="density")``: mean of |rfft(segment * hann)|^2 / (fs * sum(hann^2))
                 over segments, one-sided (bins other than DC and Nyquist doubled).
    band power   sum of PSD[k] * fs / fft_length over bins with lo <= f_k < hi (rectangle rule);
                 ``log_bands`` gives log10(power + 1e-20).
    peaks        bins k (1 <= k < nbins - 1) with PSD[k] > PSD[k-1] and PSD[k] > PSD[k+1],
                 which is ``scipy.signal.find_peaks`` except on exact plateaus, and with
                 PSD[k] * fs / fft_length > 1e-10 x the window's mean square (``PEAK_FLOOR``:
                 a constant window's detrended PSD is float rounding noise, whose local maxima
                 the C and numpy would place differently; real peaks are far above it);
                 missing peaks are (0, 0).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from kiloml.dsp import common
from kiloml.dsp.base import Block, BlockParams, Cost

STATS = ("mean", "rms", "std", "skewness", "kurtosis")
PEAK_FLOOR = 1e-10   # a peak's power (PSD x bin width) over the window's mean square, at least


class SpectralParams(BlockParams):
    sample_rate: float = Field(100.0, gt=0, le=1e6, description="Hz")
    fft_length: int = Field(128, ge=8, le=8192, description="Welch segment / FFT length")
    detrend: Literal["constant", "none"] = "constant"
    band_edges_hz: list[float] = Field(default_factory=lambda: [0.0, 2.0, 5.0, 10.0, 20.0, 50.0])
    log_bands: bool = False
    num_peaks: int = Field(3, ge=0, le=32)
    statistics: bool = True

    @field_validator("band_edges_hz")
    @classmethod
    def _edges(cls, v: list[float]) -> list[float]:
        if len(v) == 1 or any(b <= a for a, b in zip(v, v[1:])) or any(x < 0 for x in v):
            raise ValueError("band_edges_hz must be empty or >= 2 increasing, non-negative Hz")
        return v

    @model_validator(mode="after")
    def _check(self):
        n = self.fft_length
        if n & (n - 1):
            raise ValueError(f"fft_length {n} must be a power of two")
        if self.band_edges_hz and self.band_edges_hz[-1] > self.sample_rate / 2 + 1e-9:
            raise ValueError(f"band edges beyond sample_rate/2 ({self.sample_rate / 2:g} Hz)")
        return self


class Spectral(Block):
    name = "spectral"
    Params = SpectralParams
    audio = False
    variants = ("f32",)

    def feature_names(self, axes: list[str] | None = None, channels: int = 1) -> list[str]:
        p = self.params
        axes = axes or [f"ax{i}" for i in range(channels)]
        per = list(STATS) if p.statistics else []
        e = p.band_edges_hz
        per += [f"band_{e[i]:g}_{e[i + 1]:g}hz" for i in range(len(e) - 1)]
        for k in range(p.num_peaks):
            per += [f"peak{k + 1}_hz", f"peak{k + 1}_psd"]
        return [f"{a}.{f}" for a in axes for f in per]

    def features_per_axis(self) -> int:
        p = self.params
        return (len(STATS) if p.statistics else 0) + max(len(p.band_edges_hz) - 1, 0) \
            + 2 * p.num_peaks

    def output_shape(self, frames: int, channels: int = 1) -> tuple[int, ...]:
        return (channels * self.features_per_axis(),)

    def segments(self, frames: int) -> tuple[int, int, int]:
        """(segment length, step, count) of the Welch average."""
        seg = min(self.params.fft_length, frames)
        step = seg - seg // 2
        return seg, step, 1 + (frames - seg) // step

    def psd(self, x: np.ndarray) -> np.ndarray:
        """Welch PSD of (..., frames, axes) -> (..., axes, bins), units^2 / Hz."""
        p = self.params
        xt = np.swapaxes(x, -1, -2)
        seg, step, _ = self.segments(xt.shape[-1])
        fr = common.frame(xt, seg, step)
        if p.detrend == "constant":
            fr = fr - fr.mean(axis=-1, keepdims=True)
        w = common.window("hann", seg, periodic=True)
        P = common.rfft_magnitude(fr * w, p.fft_length, power=True)
        P = P / (p.sample_rate * np.sum(w * w))
        P = P.mean(axis=-2)
        P[..., 1:] *= 2.0
        if p.fft_length % 2 == 0:
            P[..., -1] /= 2.0
        return P

    def forward(self, x: np.ndarray) -> np.ndarray:
        p = self.params
        x = self.check_input(x)
        from kiloml.errors import DSPError

        if x.shape[-2] < 2:
            raise DSPError("spectral: a window needs at least two frames")
        parts = []
        if p.statistics:
            mean = x.mean(axis=-2)
            d = x - mean[..., None, :]
            m2 = (d ** 2).mean(axis=-2)
            m3 = (d ** 3).mean(axis=-2)
            m4 = (d ** 4).mean(axis=-2)
            ok = m2 > 1e-12 * mean ** 2 + 1e-30     # below float32 resolution: constant
            safe = np.where(ok, m2, 1.0)
            skew = np.where(ok, m3 / safe ** 1.5, 0.0)
            kurt = np.where(ok, m4 / safe ** 2 - 3.0, 0.0)
            rms = np.sqrt((x ** 2).mean(axis=-2))
            parts += [mean, rms, np.sqrt(m2), skew, kurt]
        P = self.psd(x) if (p.band_edges_hz or p.num_peaks) else None
        df = p.sample_rate / p.fft_length
        freqs = np.arange(p.fft_length // 2 + 1) * df
        e = p.band_edges_hz
        for lo, hi in zip(e, e[1:]):
            sel = (freqs >= lo - 1e-9 * df) & (freqs < hi - 1e-9 * df)
            bp = P[..., sel].sum(axis=-1) * df
            parts.append(np.log10(bp + 1e-20) if p.log_bands else bp)
        if p.num_peaks:
            pk_f, pk_h = self._peaks(P, freqs, (np.asarray(x, np.float64) ** 2).mean(axis=-2))
            for k in range(p.num_peaks):
                parts += [pk_f[..., k], pk_h[..., k]]
        out = np.stack(parts, axis=-1)          # (..., axes, features)
        return out.reshape(out.shape[:-2] + (-1,)).astype(np.float32)

    def _peaks(self, P: np.ndarray, freqs: np.ndarray,
               mean_square: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = self.params.num_peaks
        mid = P[..., 1:-1]
        df = self.params.sample_rate / self.params.fft_length
        floor = np.asarray(PEAK_FLOOR * mean_square / df)[..., None]
        is_pk = (mid > P[..., :-2]) & (mid > P[..., 2:]) & (mid > floor)
        h = np.where(is_pk, mid, -np.inf)
        # Largest first; ties resolved towards the lower frequency (as the C does).
        order = np.argsort(-h, axis=-1, kind="stable")[..., :k]
        hh = np.take_along_axis(h, order, axis=-1)
        ff = freqs[1:-1][order]
        valid = np.isfinite(hh)
        pad = k - hh.shape[-1]
        hh = np.where(valid, hh, 0.0)
        ff = np.where(valid, ff, 0.0)
        if pad > 0:
            z = np.zeros(hh.shape[:-1] + (pad,))
            hh, ff = np.concatenate([hh, z], -1), np.concatenate([ff, z], -1)
        return ff, hh

    def cost(self, frames: int, channels: int = 1, variant: str = "f32") -> Cost:
        self.check_variant(variant)
        p = self.params
        seg, step, nseg = self.segments(frames)
        m = p.fft_length // 2
        bf = (m // 2) * int(np.log2(m)) if m > 1 else 0
        nb = m + 1
        per_axis = {"add": 6 * frames + nseg * (seg + 6 * bf + 6 * m + nb),
                    "mul": 4 * frames + nseg * (seg + 4 * bf + 4 * m + 2 * nb),
                    "sqrt": 2, "div": 4, "log": len(p.band_edges_hz) if p.log_bands else 0}
        ops = {k: v * channels for k, v in per_axis.items()}
        ram = 4 * (p.fft_length + nb)
        flash = 4 * (seg + p.fft_length) + 2 * 2 * max(len(p.band_edges_hz) - 1, 0)
        return Cost(ram, flash, ops)

    def c_sources(self, prefix: str, frames: int, channels: int = 1, variant: str = "f32",
                  command: str = "kiloml dsp") -> dict[str, str]:
        from kiloml.dsp.cgen import emit_spectral

        self.check_variant(variant)
        return emit_spectral(self, prefix, frames, channels, command=command)
