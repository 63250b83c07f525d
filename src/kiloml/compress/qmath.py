"""TFLite's int8 quantization arithmetic on torch tensors: the one place it is written down.

"fake" mode (``kiloml.compress.qnet``) and the exporter (``kiloml.compress.export``) both derive
every integer from these functions, so the exported model and its fake-quant evaluation cannot
disagree about a scale, a zero point or a rounding direction. Scales are float32 values (what a
.tflite file stores) carried in float64 tensors.
"""

from __future__ import annotations

import numpy as np
import torch

from kiloml.errors import KilomlError

QMIN, QMAX = -128, 127
WMAX = 127                      # symmetric weights use [-127, 127], as TFLite does
INT32_MAX = (1 << 31) - 1
SOFTMAX_SCALE, SOFTMAX_ZP = 1.0 / 256, -128


class QuantizeError(KilomlError):
    """The model uses a layer or pattern that has no TFLite int8 equivalent."""


def round_half_away(x: torch.Tensor) -> torch.Tensor:
    """C's ``round``: halves away from zero (TFLite's quantization rounding; torch.round
    rounds halves to even)."""
    return torch.sign(x) * torch.floor(torch.abs(x) + 0.5)


def ste(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Value ``y``, gradient of ``x`` (straight-through estimator): lets quantization-aware
    training see through the rounding."""
    return x + (y - x).detach()


def f32(v: float) -> float:
    """A float as the float32 a .tflite file stores."""
    return float(np.float32(v))


def qparams_from_range(lo: float, hi: float) -> tuple[float, int]:
    """Asymmetric int8 (scale, zero point) covering [lo, hi] (widened to include 0), as
    TFLite's converter derives them: scale = (hi - lo) / 255, zero point rounded and nudged
    into [-128, 127]."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo < 1e-6:
        hi = lo + 1e-6
    scale = f32((hi - lo) / (QMAX - QMIN))
    z = QMIN - lo / scale
    zp = int(np.clip(np.sign(z) * np.floor(abs(z) + 0.5), QMIN, QMAX))
    return scale, zp


def act_range(act: str, scale: float, zp: int) -> tuple[int, int]:
    """Clamp range of a fused activation in the output's quantization (TFLite's
    CalculateActivationRangeQuantized, from the IR so the two cannot differ)."""
    from kiloml.ir.quant import activation_range

    return activation_range(act, scale, zp)


def fake_quant(x: torch.Tensor, scale: float, zp: int, lo: int = QMIN, hi: int = QMAX
               ) -> torch.Tensor:
    """Quantize-dequantize with TFLite rounding; gradient 1 inside the representable range."""
    q = torch.clamp(round_half_away(x / scale) + zp, lo, hi)
    y = (q - zp) * scale
    xc = torch.clamp(x, (lo - zp) * scale, (hi - zp) * scale)
    return ste(xc, y)


def weight_scales(w: torch.Tensor, per_channel: bool, axis: int = 0) -> torch.Tensor:
    """Symmetric scales max|w| / 127 (per output channel or per tensor), as float32 values."""
    a = w.detach().abs()
    if per_channel:
        dims = [d for d in range(w.dim()) if d != axis]
        m = a.amax(dim=dims) if dims else a
    else:
        m = a.max().reshape(1)
    s = torch.clamp(m.to(torch.float64) / WMAX, min=1e-12)
    return s.to(torch.float32).to(torch.float64)


def quantize_weight(w: torch.Tensor, scales: torch.Tensor, axis: int = 0) -> torch.Tensor:
    """Integer weights (as floats) round(w / s) in [-127, 127]."""
    shape = [1] * w.dim()
    shape[axis] = -1
    s = scales.reshape(shape).to(w.dtype) if scales.numel() > 1 else scales.to(w.dtype)
    return torch.clamp(round_half_away(w / s), -WMAX, WMAX)


def quantize_bias(b: torch.Tensor, bias_scales: torch.Tensor) -> torch.Tensor:
    """Integer biases (as floats) round(b / (s_in s_w)) saturated to int32."""
    return torch.clamp(round_half_away(b / bias_scales.to(b.dtype)), -INT32_MAX, INT32_MAX)
