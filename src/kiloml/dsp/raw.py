"""Raw: the window itself, per axis ``(x - offset) * scale``; output (frames, axes), flattened
to (frames * axes,) when ``flatten``.

``center``: each axis's mean over the window is subtracted first (for an accelerometer: the
gravity vector, i.e. how the device is held, leaves the window). The mean is the float32 sum
of the frames in order divided by the frame count in float32, as the C computes it, so C and
numpy agree to the last bit before the affine step.

Standardization fitted on training data is not the block's job: training fits it once for
every block (kiloml.train.normalize, recorded in the model's meta.json), so the block has no
fitted state.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from kiloml.dsp.base import Block, BlockParams, Cost
from kiloml.errors import DSPError


class RawParams(BlockParams):
    scale: float = Field(1.0, description="multiplies (x - offset)")
    offset: float = 0.0
    flatten: bool = False
    center: bool = Field(False, description="subtract each axis's mean over the window")


class Raw(Block):
    name = "raw"
    Params = RawParams
    audio = False
    variants = ("f32",)

    def __init__(self, params=None, **kw) -> None:
        super().__init__(params, **kw)
        if not np.isfinite(self.params.scale) or self.params.scale == 0:
            raise DSPError("raw: scale must be finite and non-zero")

    def _affine(self, channels: int) -> tuple[np.ndarray, np.ndarray]:
        """out = x * a + b per axis."""
        p = self.params
        a = np.full(channels, p.scale)
        b = np.full(channels, -p.offset * p.scale)
        return a, b

    def output_shape(self, frames: int, channels: int = 1) -> tuple[int, ...]:
        return (frames * channels,) if self.params.flatten else (frames, channels)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = self.check_input(x)
        if self.params.center:
            x = center_frames(x)
        a, b = self._affine(x.shape[-1])
        y = x * a + b
        if self.params.flatten:
            y = y.reshape(y.shape[:-2] + (-1,))
        return y.astype(np.float32)

    def cost(self, frames: int, channels: int = 1, variant: str = "f32") -> Cost:
        self.check_variant(variant)
        ops = {"mac": frames * channels}
        if self.params.center:
            ops.update(add=2 * frames * channels, div=channels)
        return Cost(0, 8 * channels, ops)

    def c_sources(self, prefix: str, frames: int, channels: int = 1, variant: str = "f32",
                  command: str = "kiloml dsp") -> dict[str, str]:
        from kiloml.dsp.cgen import emit_raw

        self.check_variant(variant)
        return emit_raw(self, prefix, frames, channels, command=command)


def center_frames(x: np.ndarray) -> np.ndarray:
    """(..., frames, axes) minus each axis's mean over the frames, in float32 as the C does
    it: the frames summed in order, the sum divided by the frame count, the difference."""
    x32 = np.asarray(x, np.float32)
    s = np.zeros(x32.shape[:-2] + x32.shape[-1:], np.float32)
    for i in range(x32.shape[-2]):
        s += x32[..., i, :]
    m = s / np.float32(x32.shape[-2])
    return (x32 - m[..., None, :]).astype(np.float64)
