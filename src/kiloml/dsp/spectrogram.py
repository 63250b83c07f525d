"""Spectrogram: |STFT| (or power, optionally in dB) of framed audio, (frames, bins).

``low_hz``/``high_hz`` keep only the bins in that band (fewer model inputs). Parameter
mapping to scipy (used by the tests): ``scipy.signal.stft(x, nperseg=frame_length,
noverlap=frame_length - frame_step, nfft=fft_length, window=("hann" periodic), boundary=None,
padded=False, detrend=False, scaling="spectrum")`` times ``sum(window)`` equals our complex
spectrum frame by frame (scipy scales by 1/sum(window)).
"""

from __future__ import annotations

from typing import Literal, Optional

import numpy as np
from pydantic import Field, model_validator

from kiloml.dsp import common
from kiloml.dsp.base import Block, BlockParams, Cost


class SpectrogramParams(BlockParams):
    sample_rate: float = Field(16000.0, gt=0, le=1e6)
    normalize: Literal["none", "peak", "peak_abs"] = "none"
    frame_length: int = Field(256, ge=8, le=8192)
    frame_step: int = Field(128, ge=1, le=8192)
    fft_length: int = Field(256, ge=16, le=8192)
    window: Literal["hann", "hamming", "rect"] = "hann"
    periodic_window: bool = True
    pad_end: bool = False
    power: Literal[1, 2] = 1
    low_hz: float = Field(0.0, ge=0)
    high_hz: Optional[float] = Field(None, gt=0, description="default: sample_rate / 2")
    log: Literal["none", "db", "ln", "log10"] = "none"
    log_offset: float = Field(1e-10, gt=0)
    log_mode: Literal["add", "clamp"] = "clamp"

    @model_validator(mode="after")
    def _check(self):
        n = self.fft_length
        if n & (n - 1):
            raise ValueError(f"fft_length {n} must be a power of two")
        if self.frame_length > n:
            raise ValueError(f"frame_length {self.frame_length} exceeds fft_length {n}")
        hi = self.sample_rate / 2 if self.high_hz is None else self.high_hz
        if not self.low_hz < hi <= self.sample_rate / 2 + 1e-9:
            raise ValueError("need low_hz < high_hz <= sample_rate/2")
        return self

    def bin_range(self) -> tuple[int, int]:
        """[first, last) FFT bins kept."""
        n = self.fft_length
        hz = self.sample_rate / n
        hi = self.sample_rate / 2 if self.high_hz is None else self.high_hz
        a = int(np.ceil(self.low_hz / hz - 1e-9))
        b = int(np.floor(hi / hz + 1e-9)) + 1
        return a, min(b, n // 2 + 1)


class Spectrogram(Block):
    name = "spectrogram"
    Params = SpectrogramParams
    audio = True
    variants = ("f32",)

    def __init__(self, params=None, **kw) -> None:
        super().__init__(params, **kw)
        p = self.params
        self.win = common.window(p.window, p.frame_length, p.periodic_window)

    def num_frames(self, n: int) -> int:
        from kiloml.errors import DSPError

        p = self.params
        f = common.num_frames(n, p.frame_length, p.frame_step, p.pad_end)
        if f == 0:
            raise DSPError(f"{n} samples is shorter than one {p.frame_length}-sample frame")
        return f

    def output_shape(self, frames: int, channels: int = 1) -> tuple[int, ...]:
        a, b = self.params.bin_range()
        return (self.num_frames(frames), b - a)

    def forward(self, x: np.ndarray) -> np.ndarray:
        p = self.params
        x = common.normalize(self.check_input(x), p.normalize)
        fr = common.frame(x, p.frame_length, p.frame_step, p.pad_end) * self.win
        a, b = p.bin_range()
        s = common.rfft_magnitude(fr, p.fft_length, power=p.power == 2)[..., a:b]
        return common.apply_log(s, p.log, p.log_offset, p.log_mode).astype(np.float32)

    def cost(self, frames: int, channels: int = 1, variant: str = "f32") -> Cost:
        self.check_variant(variant)
        p = self.params
        f = self.num_frames(frames)
        m = p.fft_length // 2
        bf = (m // 2) * int(np.log2(m))
        a, b = p.bin_range()
        ops = {"mul": f * (p.frame_length + 4 * bf + 4 * m + 2 * (b - a)),
               "add": f * (6 * bf + 6 * m + (b - a)),
               "sqrt": f * (b - a) if p.power == 1 else 0,
               "log": f * (b - a) if p.log != "none" else 0}
        if p.normalize != "none":
            ops["div"] = 1
            ops["mul"] += frames
        nbins = p.fft_length // 2 + 1
        return Cost(4 * (p.fft_length + nbins + (b - a)), 4 * (p.frame_length + p.fft_length), ops)

    def c_sources(self, prefix: str, frames: int, channels: int = 1, variant: str = "f32",
                  command: str = "kiloml dsp") -> dict[str, str]:
        from kiloml.dsp.cgen import emit_spectrogram

        self.check_variant(variant)
        return emit_spectrogram(self, prefix, frames, command=command)
