/* kiloml runtime (armv7em): building blocks of the kernels for Cortex-M cores with the DSP
 * extension (Cortex-M4, M7, M33): dual 16-bit MACs (SMLAD) and an exact fast requantization.
 * Everything is bit-exact with kml_common.h (TFLite's reference arithmetic).
 *
 * A few single instructions that GCC's ACLE header does not expose (SXTB16 / SXTAB16 with
 * rotation, SMMLAR, SSAT into an int32) are one-line inline assembly; the innermost loops of
 * the convolution and depthwise kernels are asm blocks (kml_conv.c says why). KML_SMALL
 * (kml_common.h) marks code that runs once per row, channel or layer, not per MAC.
 *
 * Columns. The matrix kernels multiply int8 weight rows with int16 "columns": the K inputs of
 * one output (a convolution window or a FULLY_CONNECTED row) plus the input offset, 0 for
 * padding and for the zero tail up to K8 (K rounded up to a multiple of 8). Values come in
 * groups of four, stored as two words (v0, v2) and (v1, v3) (low half first): what SXTAB16 and
 * SXTAB16 ROR #8 make of four int8 inputs, and what SXTB16 / SXTB16 ROR #8 make of a weight
 * word (four int8 weights in natural order), so SMLAD pairs each input with its weight.
 */
#ifndef KML_ARM_H
#define KML_ARM_H

/* Built for a core without the DSP extension (Cortex-M0+, M3, M23...), the inline assembly
 * below would fail with "impossible constraints" or unknown instructions: say why instead. */
#if !defined(__ARM_FEATURE_DSP) || __ARM_FEATURE_DSP != 1
#error "kiloml armv7em kernels need a core with the DSP extension (Cortex-M4, M7, M33): generate this model with the portable kernels (--kernels portable) for this core"
#endif

/* Debug builds (-O0, what STM32CubeIDE's and most IDEs' Debug configurations use): at -O0 GCC
 * keeps r7 as the frame pointer and does not allocate registers for the asm blocks' operands
 * ("'asm' operand has impossible constraints"). The kernels after this point are compiled
 * optimized whatever the command line says (GCC's optimize pragma, this translation unit
 * only): the application stays debuggable, the model runs at speed, and the arithmetic is the
 * same as at -O2 (tests/codegen/test_armv7em_debug_build.py runs a -O0 build in the emulator).
 * Every armv7em source includes this header first, before any other: with one function
 * defined ahead of the pragma, GCC still refuses the asm blocks (arm-none-eabi-gcc 12). */
#if defined(__GNUC__) && !defined(__clang__) && !defined(__OPTIMIZE__)
#pragma GCC optimize("O2")
#endif

#include <arm_acle.h>
#include <string.h>

#include "kml_common.h"


/* SXTB16 of x rotated right by 8: bytes 1 and 3 sign-extended into the two halfwords. */
static inline int32_t kml_sxtb16_ror8(int32_t x)
{
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}

/* SXTAB16 of x rotated right by 8: a + bytes 1 and 3, per halfword. */
static inline int32_t kml_sxtab16_ror8(int32_t a, int32_t x)
{
    int32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(x));
    return r;
}

/* SMMLAR: acc + ((a * b + 2^31) >> 32), the 64-bit product rounded to its high word. */
static inline int32_t kml_smmlar(int32_t a, int32_t b, int32_t acc)
{
    int32_t r;
    __asm__("smmlar %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    return r;
}

/* SSAT #8: v saturated to [-128, 127]. */
static inline int32_t kml_ssat8(int32_t v)
{
    int32_t r;
    __asm__("ssat %0, #8, %1" : "=r"(r) : "r"(v));
    return r;
}

/* Unaligned 32-bit load (LDR allows it on ARMv7-M) without aliasing trouble. */
static inline int32_t kml_ld32(const void *p)
{
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* v in both int16 halves of a word. */
static inline int32_t kml_pair16(int32_t v)
{
    return (int32_t)(((uint32_t)v & 0xFFFFu) * 0x10001u);
}

/* -- requantization ---------------------------------------------------------------------------
 * For a right shift r >= 1 (TFLite shift -r) and |acc| < 2^30 (the code generator checks both):
 *   MultiplyByQuantizedMultiplier(acc, m, -r) + out_offset
 *     == (SMMLAR(2 * acc, m, k) - (acc < 0)) >> r,   k = ((2 * out_offset + 1) << r) >> 1
 * SMMLAR(2a, m) == (a*m + 2^30) >> 31 is SaturatingRoundingDoublingHighMul (m >= 0, no
 * saturation case); k adds the rounding half and the output offset; subtracting (acc < 0)
 * gives RoundingDivideByPOT's round-half-away-from-zero (the sign of acc stands in for the
 * sign of the product: they differ only when the product rounds to 0, where both agree). */
static inline int32_t kml_rq_k(int32_t c2, int32_t r)
{
    return (int32_t)((uint32_t)c2 << r) >> 1; /* c2 = 2 * out_offset + 1 */
}

static inline int32_t kml_rq(int32_t acc, int32_t m, int32_t r, int32_t k)
{
    const int32_t v = kml_smmlar((int32_t)((uint32_t)acc << 1), m, k);
    return (v - (int32_t)((uint32_t)acc >> 31)) >> r;
}

/* Flag in the shift word of a channel pair of a matrix stream: the pair takes TFLite's general
 * requantization (its shift bytes are TFLite shifts), not kml_rq. */
#define KML_GENERIC_PAIR 0x10000

static inline int8_t kml_clamp8(int32_t v, int32_t lo, int32_t hi)
{
    return (int8_t)(v < lo ? lo : (v > hi ? hi : v));
}

#endif /* KML_ARM_H */
