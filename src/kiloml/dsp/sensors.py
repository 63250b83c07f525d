"""Sensors: one DSP block per sensor of a multi-sensor window, features concatenated.

A multi-sensor window is (frames, channels) with each sensor's axes side by side, in
declaration order (kiloml.data.fusion). This composite block runs each sensor's own block
(``spectral`` or ``raw``, with its own parameters) on that sensor's channels and concatenates
the flattened outputs, sensor by sensor: output (sum of the parts' output sizes,).

    Sensors({"sensors": [{"name": "phone", "axes": 6, "block": "spectral", "params": {...}},
                         {"name": "watch", "axes": 6, "block": "raw", "params": {...}}]})

The C (``c_sources``) is each part's own generated C under the prefix ``<prefix>_<name>``
plus an entry point ``<prefix>_features(input, output)`` that copies each sensor's channels
out of the interleaved window into one static buffer (frames x the largest sensor's axes) and
calls that sensor's ``_features`` on it, writing its output at the sensor's offset. The
output is therefore the parts' own C outputs, bit for bit, and each part keeps its block's
stated tolerance against ``forward``.

A sensor at its own rate (``data.sample_rate / k``, ``"decimate": k``; docs/fusion.md) has
one sample every k frames of the window: its block (at the sensor's rate) runs on frames 0,
k, 2k, ... of its channels, in numpy and in C.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field, field_validator, model_serializer

from kiloml.dsp.base import Block, BlockParams, Cost

PART_BLOCKS = ("spectral", "raw")


class SensorPart(BlockParams):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=32)
    axes: int = Field(ge=1, le=64)
    block: str
    params: dict[str, Any] = {}
    # a sensor at its own rate, data.sample_rate / decimate: its block runs on every
    # decimate-th frame of the window, from the first (written only when > 1)
    decimate: int = Field(1, ge=1, le=1000)

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        out = handler(self)
        if isinstance(out, dict) and out.get("decimate") == 1:
            del out["decimate"]   # single-rate parts dump as before
        return out

    @field_validator("block")
    @classmethod
    def _block(cls, v: str) -> str:
        if v not in PART_BLOCKS:
            raise ValueError(f"a sensor's block must be one of {', '.join(PART_BLOCKS)}, "
                             f"not {v!r}")
        return v


class SensorsParams(BlockParams):
    sensors: list[SensorPart] = Field(min_length=1, max_length=16)

    @field_validator("sensors")
    @classmethod
    def _unique(cls, v: list[SensorPart]) -> list[SensorPart]:
        names = [s.name for s in v]
        if len(set(names)) != len(names):
            raise ValueError("sensor names must be unique")
        return v


class Sensors(Block):
    name = "sensors"
    Params = SensorsParams
    audio = False
    variants = ("f32",)

    def __init__(self, params=None, **kw) -> None:
        super().__init__(params, **kw)
        from kiloml.dsp import make_block
        from kiloml.errors import DSPError

        self.parts: list[tuple[str, int, int, Block]] = []
        self.decimate: dict[str, int] = {s.name: s.decimate for s in self.params.sensors}
        first = 0
        for s in self.params.sensors:
            try:
                blk = make_block(s.block, params=s.params)
            except DSPError as e:
                raise DSPError(f"sensors: {s.name}: {e}") from None
            self.parts.append((s.name, first, first + s.axes, blk))
            first += s.axes
        self.channels = first

    def _check_channels(self, channels: int) -> None:
        if channels != self.channels:
            from kiloml.errors import DSPError

            raise DSPError(f"sensors: the window has {channels} channels, the sensors' axes "
                           f"add up to {self.channels}")

    def part_frames(self, frames: int) -> list[int]:
        """Each part's input frames for a window of ``frames`` grid frames (a sensor at its
        own rate: every ``decimate``-th frame)."""
        out = []
        for nm, *_ in self.parts:
            d = self.decimate[nm]
            if frames % d:
                from kiloml.errors import DSPError

                raise DSPError(f"sensors: {nm}: a window of {frames} frames is not a whole "
                               f"number of its samples (one every {d} frames)")
            out.append(frames // d)
        return out

    def part_sizes(self, frames: int) -> list[int]:
        """Each part's number of output values, in order."""
        return [int(np.prod(b.output_shape(f, e - a)))
                for (_, a, e, b), f in zip(self.parts, self.part_frames(frames))]

    def part_slices(self, frames: int) -> dict[str, slice]:
        """Each sensor's range in the output vector."""
        out, k = {}, 0
        for (nm, *_), n in zip(self.parts, self.part_sizes(frames)):
            out[nm] = slice(k, k + n)
            k += n
        return out

    def output_shape(self, frames: int, channels: int = 1) -> tuple[int, ...]:
        self._check_channels(channels)
        return (sum(self.part_sizes(frames)),)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = self.check_input(x)
        self._check_channels(x.shape[-1])
        lead = x.shape[:-2]
        self.part_frames(x.shape[-2])
        outs = [b.forward(x[..., ::self.decimate[nm], a:e]).reshape(lead + (-1,))
                for nm, a, e, b in self.parts]
        return np.concatenate(outs, axis=-1).astype(np.float32)

    def _buffer(self, frames: int) -> int:
        """Floats of the static per-sensor input buffer."""
        return max(f * (e - a) for (_, a, e, _), f in zip(self.parts, self.part_frames(frames)))

    def cost(self, frames: int, channels: int = 1, variant: str = "f32") -> Cost:
        self.check_variant(variant)
        self._check_channels(channels)
        ram, flash, ops = 4 * self._buffer(frames), 0, {}
        for (_, a, e, b), f in zip(self.parts, self.part_frames(frames)):
            c = b.cost(f, e - a, variant)
            ram += c.ram_bytes
            flash += c.flash_bytes
            for k, v in c.ops.items():
                ops[k] = ops.get(k, 0) + v
        return Cost(ram, flash, ops)

    def c_sources(self, prefix: str, frames: int, channels: int = 1, variant: str = "f32",
                  command: str = "kiloml dsp") -> dict[str, str]:
        from kiloml.dsp.cgen import emit_sensors

        self.check_variant(variant)
        self._check_channels(channels)
        return emit_sensors(self, prefix, frames, command=command)
