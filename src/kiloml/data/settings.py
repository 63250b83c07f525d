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
    speed_range: float = Field(0.0, ge=0, lt=0.5, description="audio speed/pitch change, +-")
    spec_freq_masks: int = Field(0, ge=0)
    spec_freq_width: int = Field(0, ge=0)
    spec_time_masks: int = Field(0, ge=0)
    spec_time_width: int = Field(0, ge=0)
    jitter_std: float = Field(0.0, ge=0)
    scale_range: float = Field(0.0, ge=0, lt=1)
    rotate_deg: float = Field(0.0, ge=0, le=180)

    @field_validator("noise_snr_db")
    @classmethod
    def _snr(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not (math.isfinite(v[0]) and math.isfinite(v[1]) and v[0] <= v[1]):
            raise ValueError("must be [low, high] dB with low <= high")
        return v


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

    @model_validator(mode="after")
    def _fractions(self) -> "DataSettings":
        if self.validation + self.test >= 1:
            raise ValueError("validation + test must be < 1")
        return self
