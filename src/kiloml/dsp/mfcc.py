"""MFCC: the MFE front end (kiloml.dsp.mfe) followed by a DCT-II and optional liftering.

Output (frames, num_coefficients), float32, or int8 when ``output_scale`` is set.

Presets
    mlperf-kws   the features the MLPerf Tiny KWS reference model (DS-CNN, 49x10 input) was
                 trained on, as its training code computes them with tf.signal: each clip
                 divided by its own maximum sample, zero-padded to 16,000 samples; 49 frames
                 of 480 samples every 320 (no end padding); periodic Hann; |512-point rfft|
                 (257 bins); 40 mel bands 20-4,000 Hz, HTK mel, triangles in mel, DC bin
                 zeroed, no area normalisation; ln(mel + 1e-6); DCT-II with sqrt(2/40) for
                 every coefficient; first 10; int8 with the model's input quantization
                 (scale 0.584703, zero point 83 in kws_ref_model.tflite).
    mlperf-kws-stream  the same without the per-clip peak normalization (a whole-window step):
                 a stream computes only its new frames (kiloml.dsp.stream).

Parameter mappings to the independent references used by the tests
    CMSIS-DSP ``arm_mfcc_f32`` (python ``cmsisdsp``) with ``cmsisdsp.mfcc.melFilterMatrix``
        and ``dctMatrix``: per frame, window = our window zero-padded to fft_length, frame =
        our frame zero-padded; equals ours with triangles="mel", zero_dc, power=1, log="ln",
        log_offset=1e-6, dct_norm="tf" (CMSIS normalises each frame by its absolute maximum
        and scales the magnitudes back, a no-op up to rounding).
    librosa ``feature.mfcc(S=log_mel, n_mfcc, dct_type=2, norm="ortho")`` equals ours with
        dct_norm="ortho" on the same log mel energies (see kiloml.dsp.mfe for the mel part).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from kiloml.dsp import common
from kiloml.dsp.base import Block, Cost
from kiloml.dsp.mfe import MelFrontEnd, MelParams

# Input quantization of ../shared/models/mlperf_tiny/kws_ref_model.tflite (input_1).
MLPERF_KWS_INPUT_SCALE = 0.584703
MLPERF_KWS_INPUT_ZERO_POINT = 83


class MFCCParams(MelParams):
    num_coefficients: int = Field(13, ge=1, le=256)
    dct_norm: Literal["tf", "ortho", "none"] = "tf"
    lifter: int = Field(0, ge=0, le=1000, description="HTK cepstral liftering, 0 = off")

    @model_validator(mode="after")
    def _coeffs(self):
        if self.num_coefficients > self.num_filters:
            raise ValueError(f"num_coefficients {self.num_coefficients} exceeds num_filters "
                             f"{self.num_filters}")
        return self


PRESETS: dict[str, dict] = {
    "mlperf-kws": dict(
        sample_rate=16000.0, normalize="peak", pad_to=16000, pre_emphasis=0.0,
        frame_length=480, frame_step=320, fft_length=512, window="hann", periodic_window=True,
        pad_end=False, power=1, num_filters=40, low_hz=20.0, high_hz=4000.0, mel_scale="htk",
        triangles="mel", filter_norm="none", zero_dc=True, log="ln", log_offset=1e-6,
        log_mode="add", num_coefficients=10, dct_norm="tf", lifter=0,
        output_scale=MLPERF_KWS_INPUT_SCALE, output_zero_point=MLPERF_KWS_INPUT_ZERO_POINT),
}
# the streaming variant: no whole-window step (each clip is not divided by its peak), so a
# stream keeps every frame's output and computes only the new frames (kiloml.dsp.stream);
# the model is trained on these features (accuracy cost: docs/streaming.md)
PRESETS["mlperf-kws-stream"] = {**PRESETS["mlperf-kws"], "normalize": "none"}


class MFCC(Block):
    """Mel-frequency cepstral coefficients, (frames, num_coefficients)."""

    name = "mfcc"
    Params = MFCCParams
    audio = True
    variants = ("f32", "q15", "q31")

    def __init__(self, params=None, **kw) -> None:
        super().__init__(params, **kw)
        p = self.params
        self.front = MelFrontEnd(p)
        d = common.dct_matrix(p.num_coefficients, p.num_filters, p.dct_norm)
        if p.lifter:
            n = np.arange(p.num_coefficients)
            d = d * (1.0 + p.lifter / 2.0 * np.sin(np.pi * n / p.lifter))[:, None]
        self.dct = d

    @classmethod
    def preset(cls, name: str, **overrides) -> "MFCC":
        from kiloml.errors import DSPError

        if name not in PRESETS:
            raise DSPError(f"unknown MFCC preset {name!r} (have: {', '.join(PRESETS)})")
        return cls({**PRESETS[name], **overrides})

    def output_shape(self, frames: int, channels: int = 1) -> tuple[int, ...]:
        return (self.front.num_frames(frames), self.params.num_coefficients)

    def float_features(self, x: np.ndarray) -> np.ndarray:
        """MFCCs before output quantization, float64."""
        return self.front.log_mel(self.check_input(x)) @ self.dct.T

    def forward(self, x: np.ndarray) -> np.ndarray:
        y = self.float_features(x)
        p = self.params
        if p.output_scale is not None:
            return common.quantize(y, p.output_scale, p.output_zero_point)
        return y.astype(np.float32)

    def cost(self, frames: int, channels: int = 1, variant: str = "f32") -> Cost:
        self.check_variant(variant)
        p = self.params
        ram, flash = self.front.cost_memory(variant)
        ops = self.front.cost_ops(frames)
        f = self.front.num_frames(frames)
        ops["mac"] += f * p.num_coefficients * p.num_filters
        return Cost(ram, flash + 4 * p.num_coefficients * p.num_filters, ops)

    def c_sources(self, prefix: str, frames: int, channels: int = 1, variant: str = "f32",
                  command: str = "kiloml dsp") -> dict[str, str]:
        from kiloml.dsp.cgen import emit_mel_block

        self.check_variant(variant)
        return emit_mel_block(self, prefix, frames, variant, command=command)
