"""The settings of the data stage: what the data must look like, how it is split and windowed,
and how it is augmented for training.

Plain pydantic models with no knowledge of where they are stored: a project keeps them as the
``[data]`` section of its kiloml.toml, a script builds them directly. Unknown keys are errors,
so a typo never passes silently.
"""

from __future__ import annotations

import math
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class AugmentSettings(_Strict):
    """Training-time augmentation (applied by kiloml.train.augment); 0 disables a transform."""

    noise_probability: float = Field(0.0, ge=0, le=1)
    noise_snr_db: tuple[float, float] = (5.0, 20.0)
    time_shift_ms: float = Field(0.0, ge=0)
    gain_db: float = Field(0.0, ge=0)
    speed_range: float = Field(0.0, ge=0, lt=0.5, description="speed change, +- (audio: speed and "
                               "pitch; motion/vibration: the window resampled)")
    spec_freq_masks: int = Field(0, ge=0)
    spec_freq_width: int = Field(0, ge=0)
    spec_time_masks: int = Field(0, ge=0)
    spec_time_width: int = Field(0, ge=0)
    jitter_std: float = Field(0.0, ge=0)
    scale_range: float = Field(0.0, ge=0, lt=1)
    rotate_deg: float = Field(0.0, ge=0, le=180)
    sensor_dropout: float = Field(0.0, ge=0, le=1, description="multi-sensor: probability "
                                  "that a training window loses one random sensor (zeros)")
    stream_negatives: float = Field(0.0, ge=0, le=4, description="audio with unknown/silence "
                                    "classes: extra training windows per augmented bank, as a "
                                    "fraction of the training split, that look like an always-on"
                                    " stream's negatives (kiloml.train.augment.stream_negatives)")

    @field_validator("noise_snr_db")
    @classmethod
    def _snr(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not (math.isfinite(v[0]) and math.isfinite(v[1]) and v[0] <= v[1]):
            raise ValueError("must be [low, high] dB with low <= high")
        return v


class SensorDSPSettings(_Strict):
    """A sensor's own DSP block (``[data.sensors.dsp]``): ``spectral`` or ``raw`` and its
    parameters (kiloml.dsp; ``sample_rate`` comes from ``data.sample_rate``, or the sensor's
    ``rate`` when it has its own). Sensors without
    one use the project's ``[dsp]`` block; the features are concatenated sensor by sensor
    (kiloml.dsp.sensors)."""

    block: Literal["spectral", "raw"]
    params: dict = Field(default_factory=dict)


class SensorSettings(_Strict):
    """One sensor of a multi-sensor project (``[[data.sensors]]``; see kiloml.data.fusion).

    Each recording is one CSV file per sensor, named ``<recording><suffix>.csv`` (e.g.
    ``s01_01_sp.csv`` and ``s01_01_sw.csv`` for ``suffix = "_sp"`` / ``"_sw"``), with a
    timestamp column (ms), the ``axes`` columns and optionally a per-sample label column.
    Sensors with the same ``suffix`` share one file (one device logging several sensors:
    ``ax, ay, az, gx, gy, gz``), each taking its own ``axes`` columns; an empty suffix makes
    every CSV file a recording. Every sensor is resampled to the grid at ``data.sample_rate``,
    shared by all sensors, and its axes take the next ``len(axes)`` channels, in declaration
    order. ``rate`` (default ``data.sample_rate``) is the sensor's nominal rate: it must be
    ``data.sample_rate / k`` for a whole k, and such a sensor's samples are every k-th grid
    frame of a window (its own DSP block runs on them; the deployed C takes its buffer at
    its rate; docs/fusion.md, "Sensors at their own rates")."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=32)
    suffix: str = Field(description="file name ending before .csv (shared: one file)")
    axes: list[str] = Field(min_length=1, max_length=32, description="CSV columns, in order")
    units: str = ""
    rate: Optional[float] = Field(None, gt=0, description="nominal Hz; default data.sample_rate")
    dsp: Optional[SensorDSPSettings] = None


class DataSettings(_Strict):
    """What the data must look like and how it is split and windowed.

    ``sample_rate`` is the one rate of the data set: rate-less files (serial logs, CSV without
    timestamps, .mat, .npy) take it, and a file that states its own rate (WAV header,
    timestamps) must agree with it."""

    sample_rate: Optional[float] = Field(None, gt=0, description="Hz; null accepts any rate")
    channels: Optional[int] = Field(None, ge=1, le=64, description="null accepts any count")
    window_ms: float = Field(gt=0, description="model input window")
    stride_ms: float = Field(gt=0, description="window stride over longer recordings")
    pad: Literal["zero", "drop"] = "zero"
    validation: float = Field(0.1, ge=0, lt=1)
    test: float = Field(0.1, ge=0, lt=1)
    split_by: Literal["auto", "group", "time", "sample"] = "auto"
    seed: int = 0
    balance: Literal["none", "undersample", "oversample", "weights"] = "none"
    units: Optional[Literal["g", "mg", "m/s2"]] = Field(
        None, description="accelerometer data's units: deployed IMU sketches scale the "
                          "sensor's g to them")
    augment: AugmentSettings = AugmentSettings()
    sensors: list[SensorSettings] = Field(
        default_factory=list, description="several sensors per recording (kiloml.data.fusion)")
    label_column: str = Field("label", description="multi-sensor CSV: per-sample label column")
    align_tolerance_ms: float = Field(
        2000.0, gt=0, description="multi-sensor: largest start/end difference between sensors")
    min_run_ms: float = Field(
        100.0, ge=0, description="multi-sensor: a label run shorter than this joins the run "
                                 "before it")

    @model_validator(mode="after")
    def _fractions(self) -> "DataSettings":
        if self.validation + self.test >= 1:
            raise ValueError("validation + test must be < 1")
        return self

    @model_validator(mode="after")
    def _sensors(self) -> "DataSettings":
        if not self.sensors:
            return self
        names = [s.name for s in self.sensors]
        if len(set(names)) != len(names):
            raise ValueError("sensors: names must be unique")
        for i, a in enumerate(self.sensors):
            for b in self.sensors[:i]:
                both = [c for c in a.axes if c in b.axes]
                if a.suffix == b.suffix and both:
                    raise ValueError(f"sensors {b.name!r} and {a.name!r} share the file suffix "
                                     f"{a.suffix!r} and the column {both[0]!r}: each sensor of "
                                     "a file takes its own columns")
            if len(set(a.axes)) != len(a.axes):
                raise ValueError(f"sensor {a.name!r}: a column is listed twice in axes")
        if self.sample_rate is None:
            raise ValueError("sensors: data.sample_rate is required (the shared grid's rate)")
        for s in self.sensors:
            self._check_rate(s)
        total = sum(len(s.axes) for s in self.sensors)
        if self.channels is not None and self.channels != total:
            raise ValueError(f"channels {self.channels} != {total}, the sensors' axes")
        return self

    def _check_rate(self, s: SensorSettings) -> None:
        """A sensor at its own rate: a whole divisor of the grid's rate, whole samples per
        window and stride, and its own DSP block (run at its rate)."""
        if s.rate is None or abs(s.rate - self.sample_rate) <= 1e-9 * self.sample_rate:
            return
        k = self.sample_rate / s.rate
        if s.rate > self.sample_rate or abs(k - round(k)) > 1e-9 * k:
            raise ValueError(f"sensor {s.name!r}: rate {s.rate:g} Hz does not divide "
                             f"data.sample_rate {self.sample_rate:g} Hz (the shared grid): a "
                             "sensor's rate must be data.sample_rate / k for a whole k")
        for what, ms in (("window_ms", self.window_ms), ("stride_ms", self.stride_ms)):
            n = ms * s.rate / 1000.0
            if abs(n - round(n)) > 1e-6:
                raise ValueError(f"sensor {s.name!r}: data.{what} {ms:g} ms at its rate "
                                 f"{s.rate:g} Hz is {n:g} samples, not a whole number")
        if s.dsp is None:
            raise ValueError(f"sensor {s.name!r}: rate {s.rate:g} Hz differs from "
                             f"data.sample_rate {self.sample_rate:g} Hz, so it needs its own "
                             "DSP block ([data.sensors.dsp]): the shared [dsp] block cannot "
                             "span sensors at different rates")

    def sensor_decimation(self) -> dict[str, int]:
        """Each sensor's grid frames per sample of its own: k = data.sample_rate / rate (1
        for a sensor at the grid's rate). Its samples are every k-th grid frame of a window
        from the window's first frame."""
        return {s.name: 1 if s.rate is None else max(1, int(round(self.sample_rate / s.rate)))
                for s in self.sensors}

    def sensor_rate(self, name: str) -> float:
        """A sensor's nominal rate in Hz (data.sample_rate when it states none)."""
        s = next(x for x in self.sensors if x.name == name)
        return float(self.sample_rate if s.rate is None else s.rate)

    def sensor_channels(self) -> dict[str, tuple[int, int]]:
        """Each sensor's [first, end) channel range in the aligned frames."""
        out, k = {}, 0
        for s in self.sensors:
            out[s.name] = (k, k + len(s.axes))
            k += len(s.axes)
        return out
