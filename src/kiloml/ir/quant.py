"""TFLite's integer arithmetic in numpy: fixed-point multipliers, rounding shifts, activation ranges.

These functions are the executable spec that the C runtime (``codegen/runtime/portable/kml_fixedpoint.h``) mirrors. All
array helpers work on int64 arrays holding int32 values, so intermediate products never
overflow in numpy, and they are vectorized: a per-channel multiplier broadcasts along the
last axis.
"""

from __future__ import annotations

import math

import numpy as np

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def round_half_away(x: float) -> int:
    """C's ``std::round`` (TfLiteRound): halves round away from zero."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def quantize_multiplier(real: float) -> tuple[int, int]:
    """Split a positive real multiplier into a Q31 multiplier and a power-of-two shift.

    Mirrors TFLite's ``QuantizeMultiplier``: ``real ~= m * 2**(shift - 31)`` with m in
    [2**30, 2**31). A shift below -31 flushes to zero, as TFLite does.
    """
    if real == 0.0:
        return 0, 0
    frac, shift = math.frexp(real)
    q = round_half_away(frac * (1 << 31))
    if q == (1 << 31):
        q //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return int(q), int(shift)


def quantize_multipliers(reals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pairs = [quantize_multiplier(float(r)) for r in np.asarray(reals, dtype=np.float64).reshape(-1)]
    mult = np.array([p[0] for p in pairs], dtype=np.int64)
    shift = np.array([p[1] for p in pairs], dtype=np.int64)
    return mult, shift


def srdhm(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    """gemmlowp's SaturatingRoundingDoublingHighMul on int32 values (as int64 arrays)."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    s = ab + nudge
    q = np.where(s >= 0, s >> 31, -((-s) >> 31))  # C division truncates toward zero
    overflow = (a == b) & (a == INT32_MIN)
    return np.where(overflow, INT32_MAX, q)


def rounding_divide_by_pot(x: np.ndarray, exponent: np.ndarray | int) -> np.ndarray:
    """gemmlowp's RoundingDivideByPOT: arithmetic shift right, rounding half away from zero."""
    x = np.asarray(x, dtype=np.int64)
    e = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> e) + (remainder > threshold)


def multiply_by_quantized_multiplier(
    x: np.ndarray, multiplier: np.ndarray | int, shift: np.ndarray | int
) -> np.ndarray:
    """TFLite's MultiplyByQuantizedMultiplier (double rounding, the reference-kernel default)."""
    shift = np.asarray(shift, dtype=np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    x = np.asarray(x, dtype=np.int64) << left
    # the C code computes x * (1 << left) in int32: wrap like it does
    x = ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
    return rounding_divide_by_pot(srdhm(x, multiplier), right)


def quantize_scalar_f32(f: float, scale: float, zero_point: int) -> int:
    """zero_point + round(f / scale) with the division done in float32, as TFLite does."""
    q = np.float32(f) / np.float32(scale)
    return int(zero_point) + round_half_away(float(q))


def activation_range(activation: str, scale: float, zero_point: int,
                     qmin: int = -128, qmax: int = 127) -> tuple[int, int]:
    """TFLite's CalculateActivationRangeQuantized for a fused activation on the output."""
    lo, hi = qmin, qmax
    if activation in ("RELU", "RELU6", "RELU_N1_TO_1"):
        floor = 0.0 if activation != "RELU_N1_TO_1" else -1.0
        lo = max(qmin, quantize_scalar_f32(floor, scale, zero_point))
    if activation == "RELU6":
        hi = min(qmax, quantize_scalar_f32(6.0, scale, zero_point))
    if activation == "RELU_N1_TO_1":
        hi = min(qmax, quantize_scalar_f32(1.0, scale, zero_point))
    return lo, hi


def compute_padding(in_size: int, filter_size: int, stride: int, dilation: int,
                    padding: str) -> tuple[int, int]:
    """Output size and leading padding along one axis, as TFLite computes them."""
    eff = (filter_size - 1) * dilation + 1
    if padding == "SAME":
        out = (in_size + stride - 1) // stride
    else:
        out = (in_size + stride - eff) // stride
    total = max((out - 1) * stride + eff - in_size, 0)
    return out, total // 2
