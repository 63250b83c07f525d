"""DSP feature blocks: one module per block, each with validated parameters, a numpy forward
pass, its output shape and device cost, and a C emitter (sources in ``dsp/c``).

    make_block("mfcc", preset="mlperf-kws")      make_block("spectral", params={...})
"""

from __future__ import annotations

from typing import Any

from kiloml.errors import DSPError

BLOCKS = ("mfcc", "mfe", "spectrogram", "spectral", "raw", "sensors")


def block_class(name: str):
    if name == "mfcc":
        from kiloml.dsp.mfcc import MFCC as cls
    elif name == "mfe":
        from kiloml.dsp.mfe import MFE as cls
    elif name == "spectrogram":
        from kiloml.dsp.spectrogram import Spectrogram as cls
    elif name == "spectral":
        from kiloml.dsp.spectral import Spectral as cls
    elif name == "raw":
        from kiloml.dsp.raw import Raw as cls
    elif name == "sensors":   # one block per sensor ([data.sensors.dsp])
        from kiloml.dsp.sensors import Sensors as cls
    else:
        raise DSPError(f"unknown DSP block {name!r} (have: {', '.join(BLOCKS)})")
    return cls


def presets() -> dict[str, tuple[str, dict]]:
    """Named parameter sets: name -> (block, params)."""
    from kiloml.dsp.mfcc import PRESETS as MFCC_PRESETS

    return {name: ("mfcc", dict(p)) for name, p in MFCC_PRESETS.items()}


def make_block(block: str | None = None, preset: str | None = None,
               params: dict[str, Any] | None = None):
    """A block from a name and/or a preset; ``params`` override the preset's values."""
    base: dict[str, Any] = {}
    if preset is not None:
        ps = presets()
        if preset not in ps:
            raise DSPError(f"unknown preset {preset!r} (have: {', '.join(sorted(ps))})")
        pb, base = ps[preset]
        if block is not None and block != pb:
            raise DSPError(f"preset {preset!r} is a {pb} preset, not {block}")
        block = pb
    if block is None:
        raise DSPError("give a block name or a preset")
    return block_class(block)({**base, **(params or {})})
