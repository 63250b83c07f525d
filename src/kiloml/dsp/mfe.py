"""MFE: log mel-filterbank energies of framed audio.

Pipeline (each step a parameter): truncate to ``pad_to`` samples -> optional peak
normalisation (over the real samples) -> zero-pad to ``pad_to`` -> optional pre-emphasis ->
frames of ``frame_length`` every
``frame_step`` samples -> window -> |rfft| (or |rfft|^2) of ``fft_length`` points -> mel
filters -> log -> optional int8 quantization. Output (frames, num_filters).

Parameter mapping to librosa (used by the tests):
``librosa.feature.melspectrogram(y=concat(zeros((fft_length - frame_length) // 2), x), sr,
n_fft=fft_length, win_length=frame_length, hop_length=frame_step, window="hann",
center=False, power=1 (magnitude) or 2 (power), n_mels=num_filters, fmin=low_hz,
fmax=high_hz, htk=(mel_scale == "htk"), norm=None or "slaney")`` equals ours with
``triangles="hz"`` and ``zero_dc=False``: librosa centres the window inside the FFT frame,
which for the magnitude is a circular shift, compensated by the leading zeros.
"""

from __future__ import annotations

from typing import Literal, Optional

import numpy as np
import scipy.fft
from pydantic import Field, model_validator

from kiloml.dsp import common
from kiloml.dsp.base import Block, BlockParams, Cost
from kiloml.errors import DSPError


class MelParams(BlockParams):
    sample_rate: float = Field(16000.0, gt=0, le=1e6, description="Hz")
    normalize: Literal["none", "peak", "peak_abs"] = "none"
    pad_to: Optional[int] = Field(None, ge=1, le=1 << 22,
                                  description="zero-pad / truncate the input to this many samples")
    pre_emphasis: float = Field(0.0, ge=0.0, lt=1.0, description="y[n] = x[n] - a x[n-1]")
    frame_length: int = Field(480, ge=8, le=8192, description="samples")
    frame_step: int = Field(320, ge=1, le=8192, description="samples")
    fft_length: int = Field(512, ge=16, le=8192, description="power of two >= frame_length")
    window: Literal["hann", "hamming", "rect"] = "hann"
    periodic_window: bool = True
    pad_end: bool = False
    power: Literal[1, 2] = Field(1, description="1: magnitude, 2: power spectrum")
    num_filters: int = Field(40, ge=1, le=256)
    low_hz: float = Field(20.0, ge=0.0)
    high_hz: float = Field(4000.0, gt=0.0)
    mel_scale: Literal["htk", "slaney"] = "htk"
    triangles: Literal["mel", "hz"] = "mel"
    filter_norm: Literal["none", "slaney"] = "none"
    zero_dc: bool = True
    log: Literal["ln", "log10", "db", "none"] = "ln"
    log_offset: float = Field(1e-6, gt=0.0)
    log_mode: Literal["add", "clamp"] = "add"
    output_scale: Optional[float] = Field(None, gt=0.0, description="int8 output quantization")
    output_zero_point: int = Field(0, ge=-128, le=127)

    @model_validator(mode="after")
    def _check(self):
        n = self.fft_length
        if n & (n - 1):
            raise ValueError(f"fft_length {n} must be a power of two")
        if self.frame_length > n:
            raise ValueError(f"frame_length {self.frame_length} exceeds fft_length {n}")
        if not (self.low_hz < self.high_hz <= self.sample_rate / 2 + 1e-9):
            raise ValueError(f"need low_hz < high_hz <= sample_rate/2 ({self.sample_rate / 2:g})")
        return self

    @property
    def num_bins(self) -> int:
        return self.fft_length // 2 + 1


class MelFrontEnd:
    """The part MFE and MFCC share; computes and caches the filterbank."""

    def __init__(self, p: MelParams) -> None:
        self.p = p
        self.win = common.window(p.window, p.frame_length, p.periodic_window)
        self.filters = common.mel_filterbank(p.num_filters, p.fft_length, p.sample_rate, p.low_hz,
                                             p.high_hz, p.mel_scale, p.triangles, p.filter_norm,
                                             p.zero_dc)
        if not self.filters.any(axis=0).all():
            empty = int(np.flatnonzero(~self.filters.any(axis=0))[0])
            raise DSPError(f"mel filter {empty} covers no FFT bin: use fewer filters, a wider "
                           "band or a longer fft_length")

    def prepare(self, x: np.ndarray) -> np.ndarray:
        """Truncate to ``pad_to``, normalise over the real samples, zero-pad to ``pad_to``,
        pre-emphasise."""
        p = self.p
        if p.pad_to is not None and x.shape[-1] > p.pad_to:
            x = x[..., :p.pad_to]
        x = common.normalize(x, p.normalize)
        if p.pad_to is not None and x.shape[-1] < p.pad_to:
            x = np.concatenate([x, np.zeros(x.shape[:-1] + (p.pad_to - x.shape[-1],))], axis=-1)
        if p.pre_emphasis:
            x = np.concatenate([x[..., :1], x[..., 1:] - p.pre_emphasis * x[..., :-1]], axis=-1)
        return x

    def input_samples(self, n: int) -> int:
        return self.p.pad_to if self.p.pad_to is not None else n

    def num_frames(self, n: int) -> int:
        p = self.p
        f = common.num_frames(self.input_samples(n), p.frame_length, p.frame_step, p.pad_end)
        if f == 0:
            raise DSPError(f"{n} samples is shorter than one {p.frame_length}-sample frame")
        return f

    CHUNK = 32   # signals per step: keeps the frames and spectra of a step in cache

    def mel(self, x: np.ndarray) -> np.ndarray:
        """(..., samples) -> linear mel energies (..., frames, num_filters)."""
        p = self.p
        lead = x.shape[:-1]
        flat = x.reshape((-1, x.shape[-1]))
        # Bins above the last filter's reach carry no weight: skip them in the product.
        top = int(np.flatnonzero(self.filters.any(axis=1))[-1]) + 1
        w = self.filters[:top]
        out = np.empty((flat.shape[0], self.num_frames(x.shape[-1]), p.num_filters))
        for s in range(0, flat.shape[0], self.CHUNK):
            fr = common.frame(self.prepare(flat[s:s + self.CHUNK]), p.frame_length,
                              p.frame_step, p.pad_end) * self.win
            spec = scipy.fft.rfft(fr, n=p.fft_length, axis=-1)[..., :top]
            mag = spec.real ** 2 + spec.imag ** 2 if p.power == 2 else np.abs(spec)
            out[s:s + self.CHUNK] = mag @ w
        return out.reshape(lead + out.shape[1:])

    def log_mel(self, x: np.ndarray) -> np.ndarray:
        p = self.p
        return common.apply_log(self.mel(x), p.log, p.log_offset, p.log_mode)

    def cost_ops(self, n: int) -> dict[str, int]:
        """Operation counts per window (see Cost): radix-2 complex FFT of fft_length/2 points
        (4 mul + 6 add per butterfly) plus the real-FFT split (per bin 4 mul + 6 add)."""
        p = self.p
        f = self.num_frames(n)
        m = p.fft_length // 2
        stages = int(np.log2(m)) if m > 1 else 0
        bf = (m // 2) * stages
        nnz = int(np.count_nonzero(self.filters))
        ops = {"mul": f * (p.frame_length + 4 * bf + 4 * m + 2 * p.num_bins),
               "add": f * (6 * bf + 6 * m + p.num_bins),
               "mac": f * nnz,
               "sqrt": f * self.used_bins() if p.power == 1 else 0,
               "log": f * p.num_filters if p.log != "none" else 0}
        if p.pre_emphasis:
            ops["mac"] += self.input_samples(n)
        if p.normalize != "none":
            ops["div"] = 1
            ops["mul"] += self.input_samples(n)
        return ops

    def used_bins(self) -> int:
        """Bins some filter touches (the C computes magnitudes only for these)."""
        nz = np.flatnonzero(self.filters.any(axis=1))
        return int(nz[-1] - nz[0] + 1)

    def sparse(self):
        return common.sparse_filters(self.filters)

    def cost_memory(self, variant: str) -> tuple[int, int]:
        """(RAM, flash) bytes of the generated C (kiloml.dsp.cgen), exactly: the scratch
        buffer (FFT buffer, spectrum, mel energies) and the constant tables (window,
        twiddles, filter starts/lengths, packed weights). Code size is not included."""
        p = self.p
        _, lens, _ = self.sparse()
        nbins = p.num_bins
        es = 2 if variant == "q15" else 4
        if variant == "f32":
            ram = 4 * (p.fft_length + nbins + p.num_filters)
        else:   # int32 FFT words (int16 pairs for q15), uint64 spectrum, 96-bit mel sums,
            # int32 mel energies
            fft_words = (p.fft_length + 1) // 2 if variant == "q15" else p.fft_length
            ram = 4 * (fft_words + (fft_words & 1) + 2 * nbins + 4 * p.num_filters)
        flash = es * p.frame_length + es * p.fft_length + 4 * p.num_filters + 4 * int(lens.sum())
        return ram, flash

class MFE(Block):
    """Log mel-filterbank energies, (frames, num_filters)."""

    name = "mfe"
    Params = MelParams
    audio = True
    variants = ("f32", "q15", "q31")

    def __init__(self, params=None, **kw) -> None:
        super().__init__(params, **kw)
        self.front = MelFrontEnd(self.params)

    def output_shape(self, frames: int, channels: int = 1) -> tuple[int, ...]:
        return (self.front.num_frames(frames), self.params.num_filters)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = self.check_input(x)
        y = self.front.log_mel(x)
        p = self.params
        if p.output_scale is not None:
            return common.quantize(y, p.output_scale, p.output_zero_point)
        return y.astype(np.float32)

    def cost(self, frames: int, channels: int = 1, variant: str = "f32") -> Cost:
        self.check_variant(variant)
        ram, flash = self.front.cost_memory(variant)
        return Cost(ram, flash, self.front.cost_ops(frames))

    def c_sources(self, prefix: str, frames: int, channels: int = 1, variant: str = "f32",
                  command: str = "kiloml dsp") -> dict[str, str]:
        from kiloml.dsp.cgen import emit_mel_block

        self.check_variant(variant)
        return emit_mel_block(self, prefix, frames, variant, command=command)
