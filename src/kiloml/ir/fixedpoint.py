"""gemmlowp-style Q-format fixed-point math in numpy, as TFLite's integer kernels use it.

A value with ``ib`` integer bits is an int32 ``raw`` meaning ``raw / 2**(31 - ib)``. Products
of two Q values use SaturatingRoundingDoublingHighMul; constants are the Q31 literals the
reference kernels use. Arrays are int64 holding int32 values. ``kml_fixedpoint.h`` in the C
runtime mirrors every function here one for one.
"""

from __future__ import annotations

import numpy as np

from kiloml.ir.quant import INT32_MAX, INT32_MIN, rounding_divide_by_pot, srdhm


def wrap32(x: np.ndarray) -> np.ndarray:
    return ((np.asarray(x, np.int64) + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def sat_shift(x: np.ndarray, exponent: int) -> np.ndarray:
    """SaturatingRoundingMultiplyByPOT: left shift with saturation, or rounding right shift."""
    x = np.asarray(x, np.int64)
    if exponent == 0:
        return x
    if exponent < 0:
        return rounding_divide_by_pot(x, -exponent)
    threshold = (1 << (31 - exponent)) - 1
    out = x << exponent
    out = np.where(x > threshold, INT32_MAX, out)
    return np.where(x < -threshold, INT32_MIN, out)


def rescale(x: np.ndarray, src_ib: int, dst_ib: int) -> np.ndarray:
    return sat_shift(x, src_ib - dst_ib)


def rounding_half_sum(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    s = np.asarray(a, np.int64) + np.asarray(b, np.int64)
    sign = np.where(s >= 0, 1, -1)
    t = s + sign
    return np.where(t >= 0, t // 2, -((-t) // 2))  # C division truncates toward zero


def exp_on_interval_between_negative_one_quarter_and_0_excl(a: np.ndarray) -> np.ndarray:
    """exp(a) for a in [-1/4, 0), a and result in Q0.31 (Taylor series around -1/8)."""
    constant_term = 1895147668  # exp(-1/8)
    constant_1_over_3 = 715827883
    x = wrap32(np.asarray(a, np.int64) + (1 << 28))
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_over_4 = sat_shift(x4, -2)
    poly = sat_shift(wrap32(srdhm(wrap32(x4_over_4 + x3), constant_1_over_3) + x2), -1)
    return wrap32(constant_term + srdhm(constant_term, wrap32(x + poly)))


_EXP_BARREL = [(-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
               (2, 39332535), (3, 720401), (4, 242)]


def exp_on_negative_values(a: np.ndarray, ib: int) -> np.ndarray:
    """exp(a) for a <= 0 with ``ib`` integer bits; result in Q0.31 (1.0 saturates to INT32_MAX)."""
    a = np.asarray(a, np.int64)
    frac_bits = 31 - ib
    one_quarter = 1 << (frac_bits - 2)
    mask = one_quarter - 1
    a_mod = wrap32((a & mask) - one_quarter)
    result = exp_on_interval_between_negative_one_quarter_and_0_excl(rescale(a_mod, ib, 0))
    remainder = wrap32(a_mod - a)
    for exponent, multiplier in _EXP_BARREL:
        if ib > exponent:
            bit = 1 << (frac_bits + exponent)
            result = np.where((remainder & bit) != 0, srdhm(result, multiplier), result)
    if ib > 5:
        clamp = -(1 << (frac_bits + 5))  # exp(-32) rounds to 0
        result = np.where(a < clamp, 0, result)
    return np.where(a == 0, INT32_MAX, result)


def _newton_reciprocal_half(half_denominator: np.ndarray) -> np.ndarray:
    """x ~= 1 / half_denominator in Q2.29, for half_denominator in [1/2, 1) (Q0.31)."""
    c48_17 = 1515870810
    cneg32_17 = -1010580540
    one_q2 = 1 << 29
    x = wrap32(c48_17 + srdhm(half_denominator, cneg32_17))
    for _ in range(3):
        hdx = srdhm(half_denominator, x)
        one_minus = wrap32(one_q2 - hdx)
        x = wrap32(x + rescale(srdhm(x, one_minus), 4, 2))
    return x


def one_over_one_plus_x_for_x_in_0_1(a: np.ndarray) -> np.ndarray:
    """1 / (1 + a) for a in [0, 1), Q0.31 in and out."""
    half_den = rounding_half_sum(a, INT32_MAX)
    x = _newton_reciprocal_half(half_den)
    return rescale(x, 1, 0)  # ExactMulByPot<-1> reinterprets Q2 as Q1


def one_minus_x_over_one_plus_x_for_x_in_0_1(a: np.ndarray) -> np.ndarray:
    """(1 - a) / (1 + a) for a in [0, 1), Q0.31 in and out."""
    half_den = rounding_half_sum(a, INT32_MAX)
    x = _newton_reciprocal_half(half_den)
    return rescale(wrap32(x - (1 << 29)), 2, 0)


def logistic(a: np.ndarray, ib: int) -> np.ndarray:
    """Sigmoid of a Q(ib) value; result Q0.31."""
    a = np.asarray(a, np.int64)
    pos = a > 0
    abs_a = np.where(pos, a, -a)
    r_pos = one_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(-abs_a, ib))
    r_neg = wrap32(INT32_MAX - r_pos)
    out = np.where(pos, r_pos, r_neg)
    return np.where(a == 0, 1 << 30, out)


def tanh(a: np.ndarray, ib: int) -> np.ndarray:
    """tanh of a Q(ib) value; result Q0.31."""
    a = np.asarray(a, np.int64)
    neg = a < 0
    n = np.where(neg, a, -a)  # -|a|
    t = one_minus_x_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(n, ib + 1))
    out = np.where(neg, -t, t)
    return np.where(a == 0, 0, out)


def count_leading_zeros32(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.int64) & 0xFFFFFFFF
    out = np.full(x.shape, 32, np.int64)
    nz = x != 0
    out[nz] = 31 - np.floor(np.log2(x[nz].astype(np.float64))).astype(np.int64)
    return out


def get_reciprocal(x: np.ndarray, x_integer_digits: int) -> tuple[np.ndarray, np.ndarray]:
    """TFLite's GetReciprocal: 1/x as a Q0.31 mantissa and the number of bits over unit."""
    x = np.asarray(x, np.int64)
    headroom_plus_one = count_leading_zeros32(x)
    num_bits_over_unit = x_integer_digits - headroom_plus_one
    shifted = ((x << headroom_plus_one) & 0xFFFFFFFF) - (1 << 31)
    shifted_sum_minus_one = wrap32(shifted)
    return one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one), num_bits_over_unit
