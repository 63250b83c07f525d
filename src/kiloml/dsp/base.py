"""What every DSP block provides.

A block has validated parameters (a pydantic model: unknown keys and out-of-range values are
errors), a numpy forward pass (the executable spec its C is tested against), its output shape,
its cost on the device (RAM for buffers, flash for tables, operations per window) and a C
emitter. Blocks hold no learned state except ``raw``'s optional fitted mean/std.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from kiloml.errors import DSPError


class BlockParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Cost:
    """Device cost of one window, for the profiler to add to the model's figures.

    ``ram_bytes``: the generated code's static scratch buffer (the input and output arrays
    belong to the caller); ``flash_bytes``: its constant tables (window, twiddles, filters,
    DCT) — the small config struct and the code itself come from the real cross build;
    ``ops``: counts per window by kind (``mac`` multiply-accumulates, ``mul``, ``add``,
    ``sqrt``, ``log``, ``div``) of the float32 algorithm."""

    ram_bytes: int
    flash_bytes: int
    ops: dict[str, int] = field(default_factory=dict)

    @property
    def total_ops(self) -> int:
        return int(sum(self.ops.values()))

    def as_dict(self) -> dict:
        return {"ram_bytes": self.ram_bytes, "flash_bytes": self.flash_bytes,
                "ops": dict(self.ops), "total_ops": self.total_ops}


def format_param_error(block: str, e: ValidationError) -> str:
    first = e.errors()[0]
    loc = ".".join(str(x) for x in first["loc"]) or "(params)"
    msg = first["msg"].removeprefix("Value error, ")
    return f"{block}: {loc}: {msg}"


class Block:
    """Base class; subclasses set ``name``, ``Params``, ``audio`` and implement the rest."""

    name: ClassVar[str] = ""
    Params: ClassVar[type[BlockParams]] = BlockParams
    audio: ClassVar[bool] = True          # input (..., samples) mono audio vs (..., frames, axes)
    variants: ClassVar[tuple[str, ...]] = ("f32",)

    def __init__(self, params: BlockParams | dict | None = None, **kw: Any) -> None:
        if isinstance(params, BlockParams):
            if kw:
                params = params.model_copy(update=kw)
                params = self.Params.model_validate(params.model_dump())
        else:
            try:
                params = self.Params.model_validate({**(params or {}), **kw})
            except ValidationError as e:
                raise DSPError(format_param_error(self.name, e)) from None
        self.params = params

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params!r})"

    # --- to implement
    def output_shape(self, frames: int, channels: int = 1) -> tuple[int, ...]:
        raise NotImplementedError

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def cost(self, frames: int, channels: int = 1, variant: str = "f32") -> Cost:
        raise NotImplementedError

    def c_sources(self, prefix: str, frames: int, channels: int = 1, variant: str = "f32",
                  command: str = "kiloml dsp") -> dict[str, str]:
        """C files (name -> text) computing this block on ``frames`` input frames."""
        raise NotImplementedError

    # --- shared
    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    def features(self, x: np.ndarray, variant: str = "f32") -> np.ndarray:
        """The features the ``variant`` C computes on the device: ``forward`` (float64,
        within the stated tolerance of the f32 C) for f32; for the integer variants
        (q15 / q31, MFE / MFCC) ``kiloml.dsp.fixed.fixed_features``, bit for bit the C's
        int8 / int32 Q20 output. Audio ``x`` is (N, samples) int16 PCM or float in [-1, 1)
        (PCM / 32768, exact for 16-bit WAV); either is converted to what the variant takes."""
        self.check_variant(variant)
        x = np.asarray(x)
        if variant == "f32":
            return self.forward(x / 32768.0 if self.audio and x.dtype.kind in "iu" else x)
        from kiloml.dsp.fixed import fixed_features

        if x.dtype.kind == "f":
            x = np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)
        return fixed_features(self, x, variant)

    def check_input(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.dtype.kind not in "iuf":
            raise DSPError(f"{self.name}: input must be numeric, got {x.dtype}")
        if self.audio and x.ndim < 1:
            raise DSPError(f"{self.name}: input must be (..., samples)")
        if not self.audio and x.ndim < 2:
            raise DSPError(f"{self.name}: input must be (..., frames, axes)")
        x = x.astype(np.float64)
        if not np.isfinite(x).all():
            raise DSPError(f"{self.name}: input has NaN or infinite values")
        return x

    def check_variant(self, variant: str) -> None:
        if variant not in self.variants:
            raise DSPError(f"{self.name}: no {variant!r} C variant "
                           f"(has {', '.join(self.variants)})")

    def describe(self, frames: int, channels: int = 1) -> dict:
        """Everything the profiler and `kiloml dsp --json` report about this block."""
        return {
            "block": self.name,
            "params": self.params.model_dump(mode="json"),
            "input": [frames, channels] if not self.audio else [frames],
            "output_shape": list(self.output_shape(frames, channels)),
            "cost": {v: self.cost(frames, channels, v).as_dict() for v in self.variants},
        }
