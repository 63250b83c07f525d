"""Raw / normalize: the window itself, per axis ``(x - offset) * scale``, optionally
standardised with a per-axis mean and standard deviation fitted on training data.

``fit`` (scikit-learn style) sets ``mean_`` and ``std_``; the parameters stay untouched.
Output (frames, axes) flattened to (frames * axes,) when ``flatten``.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from kiloml.dsp.base import Block, BlockParams, Cost
from kiloml.errors import DSPError


class RawParams(BlockParams):
    scale: float = Field(1.0, description="multiplies (x - offset)")
    offset: float = 0.0
    standardize: bool = Field(False, description="subtract fitted mean_, divide by std_ per axis")
    flatten: bool = False


class Raw(Block):
    name = "raw"
    Params = RawParams
    audio = False
    variants = ("f32",)

    def __init__(self, params=None, **kw) -> None:
        super().__init__(params, **kw)
        if not np.isfinite(self.params.scale) or self.params.scale == 0:
            raise DSPError("raw: scale must be finite and non-zero")
        self.mean_: np.ndarray | None = None
        self.std_: np.ndarray | None = None

    def fit(self, x: np.ndarray) -> "Raw":
        """Per-axis mean and std of ``(x - offset) * scale`` over all leading axes."""
        y = (self.check_input(x) - self.params.offset) * self.params.scale
        y = y.reshape(-1, y.shape[-1])
        self.mean_ = y.mean(axis=0)
        sd = y.std(axis=0)
        self.std_ = np.where(sd > 0, sd, 1.0)
        return self

    def _affine(self, channels: int) -> tuple[np.ndarray, np.ndarray]:
        """out = x * a + b per axis."""
        p = self.params
        a = np.full(channels, p.scale)
        b = np.full(channels, -p.offset * p.scale)
        if p.standardize:
            if self.mean_ is None:
                raise DSPError("raw: standardize=true needs fit() on training data first")
            if len(self.mean_) != channels:
                raise DSPError(f"raw: fitted on {len(self.mean_)} axes, input has {channels}")
            a, b = a / self.std_, (b - self.mean_) / self.std_
        return a, b

    def output_shape(self, frames: int, channels: int = 1) -> tuple[int, ...]:
        return (frames * channels,) if self.params.flatten else (frames, channels)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = self.check_input(x)
        a, b = self._affine(x.shape[-1])
        y = x * a + b
        if self.params.flatten:
            y = y.reshape(y.shape[:-2] + (-1,))
        return y.astype(np.float32)

    def cost(self, frames: int, channels: int = 1, variant: str = "f32") -> Cost:
        self.check_variant(variant)
        return Cost(0, 8 * channels, {"mac": frames * channels})

    def c_sources(self, prefix: str, frames: int, channels: int = 1, variant: str = "f32",
                  command: str = "kiloml dsp") -> dict[str, str]:
        from kiloml.dsp.cgen import emit_raw

        self.check_variant(variant)
        return emit_raw(self, prefix, frames, channels, command=command)
