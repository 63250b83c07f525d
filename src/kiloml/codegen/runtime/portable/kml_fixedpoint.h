/* kiloml runtime: gemmlowp-style Q-format math (exp, 1/(1+x), logistic, tanh), mirroring
 * kiloml/ir/fixedpoint.py one function for one. A value with ib integer bits is an int32
 * raw meaning raw / 2^(31 - ib). */
#ifndef KML_FIXEDPOINT_H
#define KML_FIXEDPOINT_H

#include "kml_common.h"

static inline int32_t kml_wrap_add(int32_t a, int32_t b)
{
    return (int32_t)(uint32_t)((uint32_t)a + (uint32_t)b);
}

static inline int32_t kml_wrap_sub(int32_t a, int32_t b)
{
    return (int32_t)(uint32_t)((uint32_t)a - (uint32_t)b);
}

/* SaturatingRoundingMultiplyByPOT. */
static inline int32_t kml_sat_shift(int32_t x, int32_t exponent)
{
    int32_t threshold;
    if (exponent == 0) {
        return x;
    }
    if (exponent < 0) {
        return kml_rdbp(x, -exponent);
    }
    threshold = (int32_t)(((int64_t)1 << (31 - exponent)) - 1);
    if (x > threshold) {
        return INT32_MAX;
    }
    if (x < -threshold) {
        return INT32_MIN;
    }
    return (int32_t)(uint32_t)((uint32_t)x << exponent);
}

static inline int32_t kml_rounding_half_sum(int32_t a, int32_t b)
{
    const int64_t sum = (int64_t)a + (int64_t)b;
    const int64_t sign = sum >= 0 ? 1 : -1;
    return (int32_t)((sum + sign) / 2);
}

/* exp(a) for a in [-1/4, 0), Q0.31 in and out. */
static inline int32_t kml_exp_quarter(int32_t a)
{
    const int32_t constant_term = 1895147668;
    const int32_t constant_1_over_3 = 715827883;
    const int32_t x = kml_wrap_add(a, 1 << 28);
    const int32_t x2 = kml_srdhm(x, x);
    const int32_t x3 = kml_srdhm(x2, x);
    const int32_t x4 = kml_srdhm(x2, x2);
    const int32_t x4_over_4 = kml_sat_shift(x4, -2);
    const int32_t poly = kml_sat_shift(
        kml_wrap_add(kml_srdhm(kml_wrap_add(x4_over_4, x3), constant_1_over_3), x2), -1);
    return kml_wrap_add(constant_term, kml_srdhm(constant_term, kml_wrap_add(x, poly)));
}

/* exp(a) for a <= 0 with ib integer bits (ib <= 5); result Q0.31. */
static inline int32_t kml_exp_on_negative_values(int32_t a, int32_t ib)
{
    static const int32_t barrel[7] = {1672461947, 1302514674, 790015084, 290630308,
                                      39332535, 720401, 242};
    const int32_t frac_bits = 31 - ib;
    const int32_t one_quarter = (int32_t)1 << (frac_bits - 2);
    const int32_t mask = one_quarter - 1;
    const int32_t a_mod = kml_wrap_sub(a & mask, one_quarter);
    const int32_t remainder = kml_wrap_sub(a_mod, a);
    int32_t result = kml_exp_quarter(kml_sat_shift(a_mod, ib));
    int32_t e;
    for (e = -2; e <= 4; ++e) {
        if (ib > e && (remainder & (int32_t)((uint32_t)1 << (frac_bits + e))) != 0) {
            result = kml_srdhm(result, barrel[e + 2]);
        }
    }
    return a == 0 ? INT32_MAX : result;
}

/* Newton-Raphson 1 / half_denominator in Q2.29 for half_denominator in [1/2, 1). */
static inline int32_t kml_reciprocal_half(int32_t half_denominator)
{
    int32_t x = kml_wrap_add(1515870810, kml_srdhm(half_denominator, -1010580540));
    int i;
    for (i = 0; i < 3; ++i) {
        const int32_t hdx = kml_srdhm(half_denominator, x);
        const int32_t one_minus = kml_wrap_sub((int32_t)1 << 29, hdx);
        x = kml_wrap_add(x, kml_sat_shift(kml_srdhm(x, one_minus), 2));
    }
    return x;
}

/* 1 / (1 + a) for a in [0, 1), Q0.31. */
static inline int32_t kml_one_over_one_plus_x(int32_t a)
{
    return kml_sat_shift(kml_reciprocal_half(kml_rounding_half_sum(a, INT32_MAX)), 1);
}

/* (1 - a) / (1 + a) for a in [0, 1), Q0.31. */
static inline int32_t kml_one_minus_x_over_one_plus_x(int32_t a)
{
    const int32_t x = kml_reciprocal_half(kml_rounding_half_sum(a, INT32_MAX));
    return kml_sat_shift(kml_wrap_sub(x, (int32_t)1 << 29), 2);
}

/* Sigmoid of a Q(ib) value, Q0.31 result. */
static inline int32_t kml_logistic(int32_t a, int32_t ib)
{
    int32_t r;
    if (a == 0) {
        return (int32_t)1 << 30;
    }
    r = kml_one_over_one_plus_x(kml_exp_on_negative_values(a > 0 ? -a : a, ib));
    return a > 0 ? r : kml_wrap_sub(INT32_MAX, r);
}

/* tanh of a Q(ib) value, Q0.31 result. */
static inline int32_t kml_tanh(int32_t a, int32_t ib)
{
    int32_t t;
    if (a == 0) {
        return 0;
    }
    t = kml_one_minus_x_over_one_plus_x(kml_exp_on_negative_values(a < 0 ? a : -a, ib + 1));
    return a < 0 ? -t : t;
}

static inline int32_t kml_clz32(uint32_t x)
{
    if (x == 0) {
        return 32;
    }
#if defined(__ARM_FEATURE_CLZ) && defined(__GNUC__)
    /* one CLZ instruction (Armv7-M, Armv8-M Mainline) */
    return (int32_t)__builtin_clz(x);
#else
    {
        int32_t n = 0;
        while ((x & 0x80000000u) == 0) {
            x <<= 1;
            ++n;
        }
        return n;
    }
#endif
}

#endif /* KML_FIXEDPOINT_H */
