"""Running a block over many windows, as training and evaluation need it."""

from __future__ import annotations

from typing import Optional

import numpy as np


def block_quant(block) -> Optional[tuple[float, int]]:
    """(scale, zero point) when the DSP block outputs int8, else None."""
    p = block.params
    scale = getattr(p, "output_scale", None)
    if scale is None:
        return None
    return float(np.float32(scale)), int(p.output_zero_point)


def apply_block(block, frames: np.ndarray, batch: int = 512) -> np.ndarray:
    """(N, window, channels) frames -> (N, *feature_shape) float32 (int8 outputs dequantized,
    so a model trains on exactly the values the device feeds it)."""
    q = block_quant(block)
    out = []
    for i in range(0, len(frames), batch):
        f = frames[i:i + batch]
        y = block(f[..., 0] if block.audio else f)
        if q is not None:
            y = (y.astype(np.float32) - q[1]) * np.float32(q[0])
        out.append(np.asarray(y, np.float32))
    if not out:
        return np.zeros((0,), np.float32)
    return np.concatenate(out)
