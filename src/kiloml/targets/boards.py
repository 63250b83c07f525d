"""The board database (``boards.toml``) as validated pydantic models.

Every figure has a source (``sources``); a power figure nobody could source is NaN and stays
NaN through energy and battery life, so it is reported as n/a rather than guessed.
"""

from __future__ import annotations

import math
from functools import lru_cache
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kiloml.errors import KilomlError

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

CORES = ("cortex-m0plus", "cortex-m4", "cortex-m7", "cortex-m33", "xtensa-lx7")


class Board(BaseModel):
    """One board: core and memory from its datasheet, SoC power figures with their sources."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=True)

    id: str
    name: str = Field(min_length=1)
    mcu: str = Field(min_length=1)
    core: Literal["cortex-m0plus", "cortex-m4", "cortex-m7", "cortex-m33", "xtensa-lx7"]
    fpu: bool
    fpu_double: bool = Field(False, description="double-precision FPU (Cortex-M7 FPv5-D16: "
                             "STM32H7, STM32F76x); else single precision (FPv4-SP / FPv5-SP)")
    dsp: bool = Field(description="Armv7E-M DSP extension (SMLAD...): armv7em kernels")
    clock_hz: int = Field(gt=0)
    flash_bytes: int = Field(gt=0)
    ram_bytes: int = Field(gt=0)
    active_power_mw: float = Field(description="NaN: not found in any source")
    idle_power_mw: float = Field(description="NaN: not found in any source")
    vdd_v: float = Field(gt=0)
    assumed_macs_per_cycle: float = Field(0.5, gt=0, description="analytic estimate only "
                                          "(cores without a cross compiler)")
    sources: list[str] = Field(min_length=1)
    note: str = ""
    caveat: str = Field("", description="one line printed beside every figure derived from "
                                        "this board's power figures (low confidence, board-level)")

    @field_validator("active_power_mw", "idle_power_mw")
    @classmethod
    def _power(cls, v: float) -> float:
        if not (math.isnan(v) or v > 0):
            raise ValueError("must be a positive mW figure or nan (not found)")
        return v

    def json_dict(self) -> dict:
        """JSON-safe: NaN figures become null."""
        return {k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in self.model_dump().items()}


@lru_cache(maxsize=1)
def _load(text: str) -> dict[str, Board]:
    try:
        raw = tomllib.loads(text)["boards"]
    except (tomllib.TOMLDecodeError, KeyError) as e:
        raise KilomlError(f"boards.toml: {e}") from None
    out = {}
    for bid, d in raw.items():
        try:
            out[bid] = Board.model_validate({"id": bid, **d})
        except ValidationError as e:
            first = e.errors()[0]
            raise KilomlError(f"boards.toml: boards.{bid}.{'.'.join(map(str, first['loc']))}: "
                              f"{first['msg']}") from None
    return out


def load_boards() -> dict[str, Board]:
    """Board id -> Board, in the file's order."""
    return dict(_load((resources.files("kiloml.targets") / "boards.toml").read_text()))
