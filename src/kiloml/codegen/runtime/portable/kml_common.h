/* kiloml runtime: TFLite's integer arithmetic, shared by every kernel.
 * Mirrors kiloml/ir/quant.py; both follow TFLite's reference kernels bit for bit. */
#ifndef KML_COMMON_H
#define KML_COMMON_H

#include <stdint.h>
#include <stddef.h>

/* Compiled for size: code that runs once per inference, layer, row or channel, not per MAC
 * (measured smaller and no slower at -O2 on the shared models). Only GCC has the attribute. */
#if defined(__GNUC__) && !defined(__clang__)
#define KML_SMALL __attribute__((optimize("Os")))
#else
#define KML_SMALL
#endif

/* gemmlowp SaturatingRoundingDoublingHighMul: (a * b * 2) >> 32, rounded. gemmlowp writes
 * it as (ab + nudge) / 2^31 truncated, nudge = 2^30 for ab >= 0 and 1 - 2^30 below; both
 * cases equal floor((ab + 2^30) / 2^31), an arithmetic shift (for ab < 0, trunc((ab + 1 -
 * 2^30) / 2^31) = floor((ab + 1 - 2^30 + 2^31 - 1) / 2^31)), which compiles to a multiply,
 * an add with carry and a funnel shift instead of a 64-bit division's sign fix-up.
 * tests/codegen/test_srdhm.py checks it against the gemmlowp form. */
static inline int32_t kml_srdhm(int32_t a, int32_t b)
{
    if (a == b && a == INT32_MIN) {
        return INT32_MAX;
    }
    return (int32_t)(((int64_t)a * (int64_t)b + ((int64_t)1 << 30)) >> 31);
}

/* gemmlowp RoundingDivideByPOT: x / 2^exponent rounded half away from zero. */
static inline int32_t kml_rdbp(int32_t x, int32_t exponent)
{
    const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* TFLite MultiplyByQuantizedMultiplier: x * multiplier * 2^(shift - 31), double rounding. */
static inline int32_t kml_mbqm(int32_t x, int32_t multiplier, int32_t shift)
{
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    const int32_t shifted = (int32_t)(uint32_t)((uint32_t)x << left);
    return kml_rdbp(kml_srdhm(shifted, multiplier), right);
}

static inline int32_t kml_clamp(int32_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

#endif /* KML_COMMON_H */
