/* kiloml runtime (armv6m): see kml_conv_m0.h. */
#include "kml_conv_m0.h"

#include <string.h>

/* On Armv6-M (Thumb-1) the innermost steps are asm blocks: GCC's register allocation for
 * them spills accumulators to the stack and copies through r12. The asm keeps the eight
 * values of a step in the eight low registers; elsewhere (host builds) the C below. */
/* Only in optimized builds other than -Os: at -O0 (r7 the frame pointer) and -Os GCC cannot
 * give the blocks their low and high registers ("inconsistent operand constraints"); those
 * builds take the C steps, bit-exact and slower. */
#if defined(__thumb__) && !defined(__thumb2__) && defined(__OPTIMIZE__) \
    && !defined(__OPTIMIZE_SIZE__)
#define KML_M0_ASM 1
/* Four accumulators += the int32 column value c[cw / 4] x the unsigned weight bytes
 * w[wb .. wb + 3]. */
#define M0_MAC4(cw, wb) { int32_t v_, t_; __asm__( \
    "ldr %[v], [%[c], #" #cw "]\n\t" \
    "ldrb %[t], [%[w], #" #wb "]\n\t" "mul %[t], %[v]\n\t" "add %[a0], %[t]\n\t" \
    "ldrb %[t], [%[w], #" #wb "+1]\n\t" "mul %[t], %[v]\n\t" "add %[a1], %[t]\n\t" \
    "ldrb %[t], [%[w], #" #wb "+2]\n\t" "mul %[t], %[v]\n\t" "add %[a2], %[t]\n\t" \
    "ldrb %[t], [%[w], #" #wb "+3]\n\t" "mul %[t], %[v]\n\t" "add %[a3], %[t]" \
    : [a0] "+l"(a0), [a1] "+l"(a1), [a2] "+l"(a2), [a3] "+l"(a3), [v] "=&l"(v_), \
      [t] "=&l"(t_) : [c] "l"(c), [w] "l"(w) : "cc", "memory"); }
/* Four accumulators += int8 inputs x[0..3] x int32 weights w[0..3]. */
#define M0_TAP4 { int32_t v_, t_; __asm__( \
    "ldrb %[v], [%[x], #0]\n\t" "sxtb %[v], %[v]\n\t" "ldr %[t], [%[w], #0]\n\t" \
    "mul %[t], %[v]\n\t" "add %[a0], %[t]\n\t" \
    "ldrb %[v], [%[x], #1]\n\t" "sxtb %[v], %[v]\n\t" "ldr %[t], [%[w], #4]\n\t" \
    "mul %[t], %[v]\n\t" "add %[a1], %[t]\n\t" \
    "ldrb %[v], [%[x], #2]\n\t" "sxtb %[v], %[v]\n\t" "ldr %[t], [%[w], #8]\n\t" \
    "mul %[t], %[v]\n\t" "add %[a2], %[t]\n\t" \
    "ldrb %[v], [%[x], #3]\n\t" "sxtb %[v], %[v]\n\t" "ldr %[t], [%[w], #12]\n\t" \
    "mul %[t], %[v]\n\t" "add %[a3], %[t]" \
    : [a0] "+l"(a0), [a1] "+l"(a1), [a2] "+l"(a2), [a3] "+l"(a3), [v] "=&l"(v_), \
      [t] "=&l"(t_) : [x] "l"(x), [w] "l"(w) : "cc", "memory"); }
/* M0_TAP4, then x += xstep (a high register) and w += 4 words. */
#define M0_TAP4S { int32_t v_, t_; __asm__( \
    "ldrb %[v], [%[x], #0]\n\t" "sxtb %[v], %[v]\n\t" "ldr %[t], [%[w], #0]\n\t" \
    "mul %[t], %[v]\n\t" "add %[a0], %[t]\n\t" \
    "ldrb %[v], [%[x], #1]\n\t" "sxtb %[v], %[v]\n\t" "ldr %[t], [%[w], #4]\n\t" \
    "mul %[t], %[v]\n\t" "add %[a1], %[t]\n\t" \
    "ldrb %[v], [%[x], #2]\n\t" "sxtb %[v], %[v]\n\t" "ldr %[t], [%[w], #8]\n\t" \
    "mul %[t], %[v]\n\t" "add %[a2], %[t]\n\t" \
    "ldrb %[v], [%[x], #3]\n\t" "sxtb %[v], %[v]\n\t" "ldr %[t], [%[w], #12]\n\t" \
    "mul %[t], %[v]\n\t" "add %[a3], %[t]\n\t" \
    "add %[x], %[xs]\n\t" "add %[w], #16" \
    : [a0] "+l"(a0), [a1] "+l"(a1), [a2] "+l"(a2), [a3] "+l"(a3), [v] "=&l"(v_), \
      [t] "=&l"(t_), [x] "+l"(x), [w] "+l"(w) : [xs] "h"(xstep) : "cc", "memory"); }
#else
#define KML_M0_ASM 0
#endif

/* kml_srdhm without 64-bit types: Armv6-M has no 32x32->64 multiply, and GCC makes
 * kml_srdhm's int64 product and division library calls (hundreds of cycles per output).
 * The 64-bit two's-complement product comes from four 16x16 products (unsigned, then
 * corrected for negative operands); adding the nudge and dividing by 2^31 rounding toward
 * zero follow on the (hi, lo) pair. Equal to kml_srdhm for every pair of int32. */
static int32_t m0_srdhm(int32_t a, int32_t b)
{
    const uint32_t ua = (uint32_t)a, ub = (uint32_t)b;
    const uint32_t al = ua & 0xFFFFu, ah = ua >> 16, bl = ub & 0xFFFFu, bh = ub >> 16;
    const uint32_t ll = al * bl, lh = al * bh, hl = ah * bl;
    const uint32_t mid = (ll >> 16) + (lh & 0xFFFFu) + (hl & 0xFFFFu);
    uint32_t lo = (ll & 0xFFFFu) | (mid << 16);
    uint32_t hi = ah * bh + (lh >> 16) + (hl >> 16) + (mid >> 16);
    uint32_t q;
    if (a == b && a == INT32_MIN) {
        return INT32_MAX;
    }
    if (a < 0) {
        hi -= ub;
    }
    if (b < 0) {
        hi -= ua;
    }
    if ((int32_t)hi >= 0) {                 /* + 2^30, then floor(x / 2^31) */
        const uint32_t l2 = lo + 0x40000000u;
        hi += l2 < lo;
        return (int32_t)((hi << 1) | (l2 >> 31));
    }
    {                                      /* + (1 - 2^30), then truncate toward zero */
        const uint32_t l2 = lo + 0xC0000001u;
        hi += (l2 < lo) ? 0u : 0xFFFFFFFFu;
        q = (hi << 1) | (l2 >> 31);
        return (int32_t)(q + ((l2 & 0x7FFFFFFFu) != 0u));
    }
}

/* kml_srdhm for b >= 0 (every requantization multiplier is): -floor((|a| b + 2^30 - 1) /
 * 2^31) for a < 0, floor((a b + 2^30) / 2^31) otherwise, which is kml_srdhm's rounding; the
 * unsigned 64-bit product from four 16x16 products. */
static inline int32_t m0_srdhm_pos(int32_t a, int32_t b)
{
#if KML_M0_ASM
    /* the C below, in 31 instructions and seven low registers */
    int32_t s_, ah_, bl_, m_, t_;
    __asm__(".syntax unified\n\t"
            "asrs %[s], %[a], #31\n\t"
            "eors %[a], %[s]\n\t"
            "subs %[a], %[a], %[s]\n\t"        /* u = |a| */
            "lsrs %[ah], %[a], #16\n\t"
            "uxth %[a], %[a]\n\t"              /* al */
            "uxth %[bl], %[b]\n\t"
            "lsrs %[b], %[b], #16\n\t"         /* bh */
            "movs %[m], %[ah]\n\t"
            "muls %[m], %[bl]\n\t"              /* ah bl */
            "movs %[t], %[a]\n\t"
            "muls %[t], %[b]\n\t"               /* al bh */
            "adds %[m], %[m], %[t]\n\t"        /* m */
            "muls %[bl], %[a]\n\t"              /* al bl */
            "muls %[b], %[ah]\n\t"              /* ah bh */
            "lsls %[t], %[m], #17\n\t"
            "lsrs %[t], %[t], #1\n\t"
            "adds %[t], %[t], %[s]\n\t"
            "movs %[ah], #1\n\t"
            "lsls %[ah], %[ah], #30\n\t"
            "adds %[t], %[t], %[ah]\n\t"       /* A */
            "adds %[bl], %[bl], %[t]\n\t"      /* X, carry */
            "movs %[ah], #0\n\t"
            "adcs %[ah], %[ah]\n\t"
            "adds %[b], %[b], %[ah]\n\t"
            "lsls %[b], %[b], #1\n\t"
            "lsrs %[m], %[m], #15\n\t"
            "adds %[b], %[b], %[m]\n\t"
            "lsrs %[bl], %[bl], #31\n\t"
            "adds %[b], %[b], %[bl]\n\t"
            "eors %[b], %[s]\n\t"
            "subs %[b], %[b], %[s]\n\t"
            ".syntax divided"
            : [a] "+l"(a), [b] "+l"(b), [s] "=&l"(s_), [ah] "=&l"(ah_), [bl] "=&l"(bl_),
              [m] "=&l"(m_), [t] "=&l"(t_) : : "cc");
    return b;
#else
    /* |a| b + nudge = ah bh 2^32 + m 2^16 + t + nudge with m = ah bl + al bh < 2^32 and
     * t = al bl; over 2^31: 2 ah bh + (m >> 15) + floor((A + t) / 2^31), A the rest of m
     * (15 bits, shifted) plus the nudge (< 2^32), the carry of A + t counting 2. */
    const uint32_t sign = (uint32_t)0 - ((uint32_t)a >> 31);      /* all ones for a < 0 */
    const uint32_t u = ((uint32_t)a ^ sign) - sign;              /* |a| */
    const uint32_t ub = (uint32_t)b;
    const uint32_t al = u & 0xFFFFu, ah = u >> 16, bl = ub & 0xFFFFu, bh = ub >> 16;
    const uint32_t m = ah * bl + al * bh;
    const uint32_t A = ((m & 0x7FFFu) << 16) + 0x40000000u + sign;   /* nudge 2^30 or 2^30-1 */
    const uint32_t X = A + al * bl;
    const uint32_t r = 2u * ah * bh + (m >> 15) + (X >> 31) + (X < A ? 2u : 0u);
    return (int32_t)((r ^ sign) - sign);
#endif
}

/* kml_mbqm(acc, mult, shift) for mult >= 0 and shift <= 0, from the channel's record
 * r = {mult, s = -shift, rnd = 2^s / 2 rounded down}. On the magnitude u = |acc|:
 * q = |kml_srdhm(acc, mult)| = floor((u mult + 2^30 - [acc < 0]) / 2^31) (kml_srdhm rounds half
 * away from zero above 0 and toward zero below), and kml_rdbp (round half away from zero)
 * of +-q is +-floor((q + rnd) / 2^s); then the sign. u mult from four 16x16 products:
 * u mult + nudge = uh bh 2^32 + m 2^16 + ul bl + nudge with m = uh bl + ul bh < 2^32; over
 * 2^31: 2 uh bh + (m >> 15) + floor((A + ul bl) / 2^31), A = (m mod 2^15) 2^16 + nudge
 * < 2^32, the carry of A + ul bl counting 2. */
#if defined(__GNUC__)
__attribute__((always_inline))
#endif
static inline int32_t m0_rq(int32_t acc, const int32_t *r)
{
#if KML_M0_ASM
    int32_t b_, s_, ah_, bl_, m_;
    __asm__(".syntax unified\n\t"
            "ldr %[b], [%[r], #0]\n\t"          /* mult */
            "asrs %[s], %[a], #31\n\t"
            "eors %[a], %[s]\n\t"
            "subs %[a], %[a], %[s]\n\t"        /* u = |acc| */
            "lsrs %[ah], %[a], #16\n\t"
            "uxth %[a], %[a]\n\t"              /* ul */
            "uxth %[bl], %[b]\n\t"
            "lsrs %[b], %[b], #16\n\t"         /* bh */
            "movs %[m], %[ah]\n\t"
            "muls %[m], %[bl], %[m]\n\t"       /* uh bl */
            "muls %[bl], %[a], %[bl]\n\t"      /* ul bl */
            "muls %[a], %[b], %[a]\n\t"        /* ul bh */
            "muls %[b], %[ah], %[b]\n\t"       /* uh bh */
            "adds %[m], %[m], %[a]\n\t"        /* m */
            "lsls %[a], %[m], #17\n\t"
            "lsrs %[a], %[a], #1\n\t"
            "adds %[a], %[a], %[s]\n\t"
            "movs %[ah], #1\n\t"
            "lsls %[ah], %[ah], #30\n\t"
            "adds %[a], %[a], %[ah]\n\t"       /* A */
            "movs %[ah], #0\n\t"               /* (flags but C) */
            "adds %[bl], %[bl], %[a]\n\t"      /* X = A + ul bl, carry */
            "adcs %[b], %[ah]\n\t"             /* uh bh + carry */
            "lsls %[b], %[b], #1\n\t"
            "lsrs %[m], %[m], #15\n\t"
            "adds %[b], %[b], %[m]\n\t"
            "lsrs %[bl], %[bl], #31\n\t"
            "adds %[b], %[b], %[bl]\n\t"       /* q */
            "ldr %[a], [%[r], #8]\n\t"
            "adds %[b], %[b], %[a]\n\t"        /* + rnd */
            "ldr %[a], [%[r], #4]\n\t"
            "lsrs %[b], %[a]\n\t"              /* >> s */
            "eors %[b], %[s]\n\t"
            "subs %[a], %[b], %[s]\n\t"        /* the sign */
            ".syntax divided"
            : [a] "+l"(acc), [b] "=&l"(b_), [s] "=&l"(s_), [ah] "=&l"(ah_), [bl] "=&l"(bl_),
              [m] "=&l"(m_) : [r] "l"(r) : "cc", "memory");
    return acc;
#else
    const uint32_t sign = (uint32_t)0 - ((uint32_t)acc >> 31);  /* all ones for acc < 0 */
    const uint32_t u = ((uint32_t)acc ^ sign) - sign;
    const uint32_t ub = (uint32_t)r[0];
    const uint32_t al = u & 0xFFFFu, ah = u >> 16, bl = ub & 0xFFFFu, bh = ub >> 16;
    const uint32_t m = ah * bl + al * bh;
    const uint32_t A = ((m & 0x7FFFu) << 16) + 0x40000000u + sign;
    const uint32_t X = A + al * bl;
    const uint32_t q = 2u * (ah * bh + (X < A ? 1u : 0u)) + (m >> 15) + (X >> 31);
    const uint32_t v = (q + (uint32_t)r[2]) >> (uint32_t)r[1];
    return (int32_t)((v ^ sign) - sign);
#endif
}

/* kml_rdbp with a 32-bit mask (exponent 0..31). */
static inline int32_t m0_rdbp(int32_t x, int32_t exponent)
{
    const int32_t mask = (int32_t)((1u << exponent) - 1u);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (int32_t)((uint32_t)x >> 31);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* kml_clamp(kml_mbqm(acc, ...) + off, lo, hi) for a record that takes m0_rq: m0_rq's asm
 * with 2^30 in a high register, then the offset and the clamp (ADD, CMP and MOV take high
 * registers). */
#if defined(__GNUC__)
__attribute__((always_inline))
#endif
static inline int32_t m0_rqc(int32_t acc, const int32_t *r, int32_t off, int32_t lo,
                             int32_t hi)
{
#if KML_M0_ASM
    const int32_t k30 = 0x40000000;
    int32_t b_, s_, ah_, bl_, m_;
    __asm__(".syntax unified\n\t"
            "ldr %[b], [%[r], #0]\n\t"
            "asrs %[s], %[a], #31\n\t"
            "eors %[a], %[s]\n\t"
            "subs %[a], %[a], %[s]\n\t"
            "lsrs %[ah], %[a], #16\n\t"
            "uxth %[a], %[a]\n\t"
            "uxth %[bl], %[b]\n\t"
            "lsrs %[b], %[b], #16\n\t"
            "movs %[m], %[ah]\n\t"
            "muls %[m], %[bl], %[m]\n\t"
            "muls %[bl], %[a], %[bl]\n\t"
            "muls %[a], %[b], %[a]\n\t"
            "muls %[b], %[ah], %[b]\n\t"
            "adds %[m], %[m], %[a]\n\t"
            "lsls %[a], %[m], #17\n\t"
            "lsrs %[a], %[a], #1\n\t"
            "adds %[a], %[a], %[s]\n\t"
            "add %[a], %[k]\n\t"              /* A */
            "movs %[ah], #0\n\t"
            "adds %[bl], %[bl], %[a]\n\t"
            "adcs %[b], %[ah]\n\t"
            "lsls %[b], %[b], #1\n\t"
            "lsrs %[m], %[m], #15\n\t"
            "adds %[b], %[b], %[m]\n\t"
            "lsrs %[bl], %[bl], #31\n\t"
            "adds %[b], %[b], %[bl]\n\t"       /* q */
            "ldr %[a], [%[r], #8]\n\t"
            "adds %[b], %[b], %[a]\n\t"
            "ldr %[a], [%[r], #4]\n\t"
            "lsrs %[b], %[a]\n\t"
            "eors %[b], %[s]\n\t"
            "subs %[a], %[b], %[s]\n\t"        /* kml_mbqm */
            "add %[a], %[off]\n\t"
            "cmp %[a], %[lo]\n\t"
            "bge 1f\n\t"
            "mov %[a], %[lo]\n"
            "1:\n\t"
            "cmp %[a], %[hi]\n\t"
            "ble 2f\n\t"
            "mov %[a], %[hi]\n"
            "2:\n\t"
            ".syntax divided"
            : [a] "+l"(acc), [b] "=&l"(b_), [s] "=&l"(s_), [ah] "=&l"(ah_),
              [bl] "=&l"(bl_), [m] "=&l"(m_)
            : [r] "l"(r), [k] "h"(k30), [off] "h"(off), [lo] "h"(lo), [hi] "h"(hi)
            : "cc", "memory");
    return acc;
#else
    return kml_clamp(m0_rq(acc, r) + off, lo, hi);
#endif
}

/* m0_rqc for a layer whose clamp starts at or above the output offset (lo >= off: a fused
 * ReLU, ReLU6 or ReLU-N): acc <= 0 gives kml_mbqm(acc, mult >= 0, ...) <= 0, so the output
 * is lo without the multiply; acc > 0 skips m0_rqc's sign steps. With acc > 0 the two
 * roundings are one: floor((floor((u M + 2^30) / 2^31) + rnd) / 2^s) = floor((u M + C) /
 * 2^(31+s)), C = 2^30 + rnd 2^31 (a multiple of 2^16); for u < 2^16 and s <= 16 that is
 * (u bh + floor(u bl / 2^16) + C / 2^16) >> (15 + s), M = bh 2^16 + bl, the sum < 2^32: two
 * products instead of four. */
#if defined(__GNUC__)
__attribute__((always_inline))
#endif
static inline int32_t m0_rqcz(int32_t acc, const int32_t *r, int32_t off, int32_t lo,
                              int32_t hi)
{
#if KML_M0_ASM
    const int32_t k30 = 0x40000000;
    int32_t b_, ah_, bl_, m_;
    __asm__(".syntax unified\n\t"
            "cmp %[a], #0\n\t"
            "bgt 3f\n\t"
            "mov %[a], %[lo]\n\t"            /* acc <= 0 */
            "b 2f\n"
            "3:\n\t"
            "lsrs %[ah], %[a], #16\n\t"
            "bne 4f\n\t"                      /* u >= 2^16: the four products */
            "ldr %[m], [%[r], #4]\n\t"
            "cmp %[m], #16\n\t"
            "bhi 4f\n\t"                      /* s > 16 */
            "ldr %[b], [%[r], #0]\n\t"        /* u < 2^16, s <= 16: two products */
            "uxth %[bl], %[b]\n\t"
            "lsrs %[b], %[b], #16\n\t"
            "muls %[b], %[a], %[b]\n\t"       /* u bh */
            "muls %[a], %[bl], %[a]\n\t"      /* u bl */
            "lsrs %[a], %[a], #16\n\t"
            "adds %[b], %[b], %[a]\n\t"
            "ldr %[a], [%[r], #8]\n\t"
            "lsls %[a], %[a], #1\n\t"
            "adds %[a], #1\n\t"
            "lsls %[a], %[a], #14\n\t"        /* (2^30 + rnd 2^31) / 2^16 */
            "adds %[b], %[b], %[a]\n\t"
            "adds %[m], #15\n\t"
            "lsrs %[b], %[m]\n\t"             /* kml_mbqm */
            "b 5f\n"
            "4:\n\t"
            "ldr %[b], [%[r], #0]\n\t"
            "uxth %[a], %[a]\n\t"
            "uxth %[bl], %[b]\n\t"
            "lsrs %[b], %[b], #16\n\t"
            "movs %[m], %[ah]\n\t"
            "muls %[m], %[bl], %[m]\n\t"
            "muls %[bl], %[a], %[bl]\n\t"
            "muls %[a], %[b], %[a]\n\t"
            "muls %[b], %[ah], %[b]\n\t"
            "adds %[m], %[m], %[a]\n\t"
            "lsls %[a], %[m], #17\n\t"
            "lsrs %[a], %[a], #1\n\t"
            "add %[a], %[k]\n\t"              /* A (nudge 2^30: acc > 0) */
            "movs %[ah], #0\n\t"
            "adds %[bl], %[bl], %[a]\n\t"
            "adcs %[b], %[ah]\n\t"
            "lsls %[b], %[b], #1\n\t"
            "lsrs %[m], %[m], #15\n\t"
            "adds %[b], %[b], %[m]\n\t"
            "lsrs %[bl], %[bl], #31\n\t"
            "adds %[b], %[b], %[bl]\n\t"       /* q */
            "ldr %[a], [%[r], #8]\n\t"
            "adds %[b], %[b], %[a]\n\t"
            "ldr %[a], [%[r], #4]\n\t"
            "lsrs %[b], %[a]\n"                /* kml_mbqm */
            "5:\n\t"
            "add %[b], %[off]\n\t"
            "mov %[a], %[b]\n\t"
            "cmp %[a], %[lo]\n\t"
            "bge 1f\n\t"
            "mov %[a], %[lo]\n"
            "1:\n\t"
            "cmp %[a], %[hi]\n\t"
            "ble 2f\n\t"
            "mov %[a], %[hi]\n"
            "2:\n\t"
            ".syntax divided"
            : [a] "+l"(acc), [b] "=&l"(b_), [ah] "=&l"(ah_), [bl] "=&l"(bl_), [m] "=&l"(m_)
            : [r] "l"(r), [k] "h"(k30), [off] "h"(off), [lo] "h"(lo), [hi] "h"(hi)
            : "cc", "memory");
    return acc;
#else
    if (acc <= 0) {
        return lo;
    }
    return kml_clamp(m0_rq(acc, r) + off, lo, hi);
#endif
}

/* out[i] = m0_rqc(a[i], ...) for n channels whose records at r (three words each) all take
 * m0_rq; m0_rqcz where lo >= off. */
static void m0_store(const int32_t *a, const int32_t *r, int32_t n, int8_t *out, int32_t off,
                     int32_t lo, int32_t hi)
{
    const int8_t *end = out + n;
    if (lo >= off) {
        while (out != end) {
            *out++ = (int8_t)m0_rqcz(*a++, r, off, lo, hi);
            r += 3;
        }
        return;
    }
    while (out != end) {
        *out++ = (int8_t)m0_rqc(*a++, r, off, lo, hi);
        r += 3;
    }
}


/* Requantize, add the output offset, clamp: kml_mbqm + kml_clamp, for the channel's record
 * r = {mult, s, rnd}: m0_rq where rnd >= 0, else the general form with shift = s. */
static inline int8_t m0_out(int32_t acc, const int32_t *r, int32_t out_offset, int32_t lo,
                            int32_t hi)
{
    if (r[2] >= 0) {    /* mult >= 0, shift <= 0: every layer TFLite's converter writes */
        return (int8_t)kml_clamp(m0_rq(acc, r) + out_offset, lo, hi);
    }
    {
        const int32_t mult = r[0], shift = r[1];
        const int32_t left = shift > 0 ? shift : 0;
        const int32_t right = shift > 0 ? 0 : -shift;
        const int32_t shifted = (int32_t)((uint32_t)acc << left);
        const int32_t m = mult >= 0 ? m0_srdhm_pos(shifted, mult) : m0_srdhm(shifted, mult);
        return (int8_t)kml_clamp(m0_rdbp(m, right) + out_offset, lo, hi);
    }
}

/* kml_mbqm without 64-bit types. */
static inline int32_t m0_mbqm(int32_t x, int32_t mult, int32_t shift)
{
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    const int32_t shifted = (int32_t)((uint32_t)x << left);
    return m0_rdbp(mult >= 0 ? m0_srdhm_pos(shifted, mult) : m0_srdhm(shifted, mult), right);
}

/* m0_column of a 1x1 window without stride or padding: the pixel's n values at x. */
static inline int32_t m0_column1(const int8_t *x, int32_t n, int32_t off, int32_t *col)
{
    const int8_t *end4 = x + (n & ~3), *end = x + n;
    int32_t sum = 0;
    while (x != end4) {
        const int32_t v0 = (int32_t)x[0] + off, v1 = (int32_t)x[1] + off;
        const int32_t v2 = (int32_t)x[2] + off, v3 = (int32_t)x[3] + off;
        col[0] = v0;
        col[1] = v1;
        col[2] = v2;
        col[3] = v3;
        sum += v0 + v1 + v2 + v3;
        x += 4;
        col += 4;
    }
    while (x != end) {
        const int32_t v = (int32_t)*x++ + off;
        sum += v;
        *col++ = v;
    }
    return sum;
}

/* The window of output pixel (b, oy, ox) as int32 x + off (pad outside the image: 0 with
 * off the input offset; the packed dense layers shift both, off = 128); returns their sum. A window row inside the image without dilation is one run of
 * k_w x in_c bytes. */
static int32_t m0_column(const kml_conv_params *p, const int8_t *input, int32_t b,
                         int32_t oy, int32_t ox, int32_t *col, int32_t off, int32_t pad)
{
    const int32_t in_c = p->in_c, kw = p->k_w, dw = p->dil_w;
    const int32_t y0 = oy * p->stride_h - p->pad_top, x0 = ox * p->stride_w - p->pad_left;
    const int row_inside = x0 >= 0 && x0 + (kw - 1) * dw < p->in_w;
    int32_t ky, kx, ic, sum = 0;
    for (ky = 0; ky < p->k_h; ++ky) {
        const int32_t iy = y0 + ky * p->dil_h;
        if ((iy < 0 || iy >= p->in_h || !row_inside) && dw == 1) {
            /* a row at the border: the padding before and after one run inside */
            const int32_t n = kw * in_c;
            int32_t a = x0 < 0 ? -x0 : 0, e = p->in_w - x0 < kw ? p->in_w - x0 : kw;
            int32_t i;
            if (iy < 0 || iy >= p->in_h || e <= a) {
                a = e = 0;
            }
            a *= in_c;
            e *= in_c;
            for (i = 0; i < a; ++i) {
                col[i] = pad;
            }
            if (e > a) {
                const int8_t *x = input + ((size_t)(b * p->in_h + iy) * (size_t)p->in_w
                                           + (size_t)(x0 + a / in_c)) * (size_t)in_c;
                for (i = a; i < e; ++i) {
                    const int32_t v = (int32_t)*x++ + off;
                    sum += v;
                    col[i] = v;
                }
            }
            for (i = e; i < n; ++i) {
                col[i] = pad;
            }
            sum += pad * (n - (e - a));
            col += n;
            continue;
        }
        if (iy >= 0 && iy < p->in_h && row_inside && dw == 1) {
            const int8_t *x = input + ((size_t)(b * p->in_h + iy) * (size_t)p->in_w
                                       + (size_t)x0) * (size_t)in_c;
            const int32_t run = kw * in_c;
            if (run >= 8 && (run & 3) == 0) {
                sum += m0_column1(x, run, off, col);    /* four values per step */
                col += run;
            } else {
                const int8_t *end = x + run;
                while (x != end) {
                    const int32_t v = (int32_t)*x++ + off;
                    sum += v;
                    *col++ = v;
                }
            }
            continue;
        }
        for (kx = 0; kx < kw; ++kx) {
            const int32_t ix = x0 + kx * dw;
            if (iy < 0 || iy >= p->in_h || ix < 0 || ix >= p->in_w) {
                for (ic = 0; ic < in_c; ++ic) {
                    *col++ = pad;
                }
                sum += pad * in_c;
            } else {
                const int8_t *x = input + ((size_t)(b * p->in_h + iy) * (size_t)p->in_w
                                           + (size_t)ix) * (size_t)in_c;
                for (ic = 0; ic < in_c; ++ic) {
                    const int32_t v = (int32_t)x[ic] + off;
                    sum += v;
                    *col++ = v;
                }
            }
        }
    }
    return sum;
}

/* Pointwise layers (and FULLY_CONNECTED): output pixel i's window is input pixel i. */
static int m0_pointwise(const kml_conv_params *p)
{
    return p->k_h == 1 && p->k_w == 1 && p->stride_h == 1 && p->stride_w == 1
        && p->pad_top == 0 && p->pad_left == 0 && p->out_h == p->in_h && p->out_w == p->in_w;
}

/* acc[0..3] += the column c[0..K) x a group's weight bytes w (K words): the inner product. */
#if defined(__GNUC__)
__attribute__((always_inline))
#endif
static inline void m0_group(const int32_t *c, int32_t K, const uint8_t *w, int32_t *acc)
{
    const int32_t *c4 = c + (K & ~3), *cend = c + K;
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    while (c != c4) {
#if KML_M0_ASM
        M0_MAC4(0, 0) M0_MAC4(4, 4) M0_MAC4(8, 8) M0_MAC4(12, 12)
#else
        int32_t v = c[0];
        a0 += v * w[0]; a1 += v * w[1]; a2 += v * w[2]; a3 += v * w[3];
        v = c[1];
        a0 += v * w[4]; a1 += v * w[5]; a2 += v * w[6]; a3 += v * w[7];
        v = c[2];
        a0 += v * w[8]; a1 += v * w[9]; a2 += v * w[10]; a3 += v * w[11];
        v = c[3];
        a0 += v * w[12]; a1 += v * w[13]; a2 += v * w[14]; a3 += v * w[15];
#endif
        c += 4;
        w += 16;
    }
    while (c != cend) {
        const int32_t v = *c++;
        a0 += v * w[0]; a1 += v * w[1]; a2 += v * w[2]; a3 += v * w[3];
        w += 4;
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

#if KML_M0_ASM
#define M0_D8_PRO \
    "push {r4, r5, r6, r7, lr}\n\t" \
    "mov r4, r8\n\t" "mov r5, r9\n\t" "mov r6, r10\n\t" "mov r7, r11\n\t" \
    "push {r3, r4, r5, r6, r7}\n\t" \
    "mov r12, r1\n\t" \
    "ldr r1, [r3, #4]\n\t"              /* the group's bias */ \
    "ldr r3, [r3, #0]\n\t"              /* the correction */ \
    "adds r1, #16\n\t"                  /* bias[4..7] */ \
    "ldm r1!, {r4, r5, r6, r7}\n\t" \
    "adds r4, r4, r3\n\t" "mov r8, r4\n\t" "adds r5, r5, r3\n\t" "mov r9, r5\n\t" \
    "adds r6, r6, r3\n\t" "mov r10, r6\n\t" "adds r7, r7, r3\n\t" "mov r11, r7\n\t" \
    "subs r1, #32\n\t"                  /* bias[0..3] */ \
    "ldm r1!, {r4, r5, r6, r7}\n\t" \
    "adds r4, r4, r3\n\t" "adds r5, r5, r3\n\t" "adds r6, r6, r3\n\t" \
    "adds r7, r7, r3\n\t"
#define M0_D8_EPI \
    "2:\n\t" \
    "pop {r3}\n\t" \
    "stm r3!, {r4, r5, r6, r7}\n\t" \
    "mov r4, r8\n\t" "mov r5, r9\n\t" "mov r6, r10\n\t" "mov r7, r11\n\t" \
    "stm r3!, {r4, r5, r6, r7}\n\t" \
    "pop {r4, r5, r6, r7}\n\t" \
    "mov r8, r4\n\t" "mov r9, r5\n\t" "mov r10, r6\n\t" "mov r11, r7\n\t" \
    "pop {r4, r5, r6, r7, pc}\n\t"
#endif

/* acc[0..7] = bias[0..7] + acc[0] (the correction) + c[0 .. cend) x the weight bytes w (eight
 * per column value; cend - c a multiple of 4), bias the eight words at the address in acc[1]
 * (the group's stream): four column values per pass, the eight accumulators in r4-r7 and
 * r8-r11 (ADD takes a high register), LDRB + MULS + ADD per MAC and one LDR per eight:
 * 104 instructions per 32 MACs. */
#if KML_M0_ASM
__attribute__((naked, noinline))
static void m0_dot8(const int32_t *c __attribute__((unused)),
                    const int32_t *cend __attribute__((unused)),
                    const uint8_t *w __attribute__((unused)),
                    int32_t *acc __attribute__((unused)))
{
#define M0_D8(cw, wb) \
    "ldr r1, [r0, #" #cw "]\n\t" M0_D8W(wb)
#define M0_D8W(wb) \
    "ldrb r3, [r2, #" #wb "+0]\n\t" "muls r3, r1, r3\n\t" "adds r4, r4, r3\n\t" \
    "ldrb r3, [r2, #" #wb "+1]\n\t" "muls r3, r1, r3\n\t" "adds r5, r5, r3\n\t" \
    "ldrb r3, [r2, #" #wb "+2]\n\t" "muls r3, r1, r3\n\t" "adds r6, r6, r3\n\t" \
    "ldrb r3, [r2, #" #wb "+3]\n\t" "muls r3, r1, r3\n\t" "adds r7, r7, r3\n\t" \
    "ldrb r3, [r2, #" #wb "+4]\n\t" "muls r3, r1, r3\n\t" "add r8, r3\n\t" \
    "ldrb r3, [r2, #" #wb "+5]\n\t" "muls r3, r1, r3\n\t" "add r9, r3\n\t" \
    "ldrb r3, [r2, #" #wb "+6]\n\t" "muls r3, r1, r3\n\t" "add r10, r3\n\t" \
    "ldrb r3, [r2, #" #wb "+7]\n\t" "muls r3, r1, r3\n\t" "add r11, r3\n\t"
    __asm__(".syntax unified\n\t"
            M0_D8_PRO
            "cmp r0, r12\n\t"
            "beq 2f\n"
            "1:\n\t"
            M0_D8(0, 0) M0_D8(4, 8) M0_D8(8, 16) M0_D8(12, 24)
            "adds r0, #16\n\t"
            "adds r2, #32\n\t"
            "cmp r0, r12\n\t"
            "bne 1b\n"
            M0_D8_EPI
            ".syntax divided");
}

/* m0_dot8 over a pixel's sparse column (the layers whose input is a ReLU's output, where
 * many values equal the zero point: x + offset = 0): pairs {c, 8 (k - k')} of its non-zero
 * values c at window position k (k' the previous one's, 0 first) from p to pend; per pair
 * one LDM and the step to the weights of position k, then the eight MACs: 28 instructions
 * per non-zero value (the dense loop: 26 per value). */
__attribute__((naked, noinline))
static void m0_dot8s(const int32_t *p __attribute__((unused)),
                     const int32_t *pend __attribute__((unused)),
                     const uint8_t *w __attribute__((unused)),
                     int32_t *acc __attribute__((unused)))
{
    __asm__(".syntax unified\n\t"
            M0_D8_PRO
            "cmp r0, r12\n\t"
            "beq 2f\n"
            "1:\n\t"
            "ldm r0!, {r1, r3}\n\t"
            "adds r2, r2, r3\n\t"
            M0_D8W(0)
            "cmp r0, r12\n\t"
            "bne 1b\n"
            M0_D8_EPI
            ".syntax divided");
}
#undef M0_D8
#undef M0_D8W
#undef M0_D8_PRO
#undef M0_D8_EPI
#endif

/* m0_group for eight channels (weights: eight bytes per column value). */
static void m0_group8(const int32_t *c, int32_t K, const uint8_t *w, int32_t *acc)
{
    const int32_t *cend = c + K;
    int32_t j;
#if KML_M0_ASM
    m0_dot8(c, c + (K & ~3), w, acc);
    w += 8 * (K & ~3);
    c += K & ~3;
#endif
    while (c != cend) {
        const int32_t v = *c++;
        for (j = 0; j < 8; ++j) {
            acc[j] += v * w[j];
        }
        w += 8;
    }
}

/* A pixel's column col[0..K) (K a multiple of 4) as pairs {c, 8 (k - k')} of its non-zero
 * values (k' the previous pair's position, 0 first) at p; returns the end of the pairs. */
#if KML_M0_ASM
/* Four values per pass: LDM, ADDS (the step), CMP, BEQ per value, then STM of the pair. */
__attribute__((naked, noinline))
static int32_t *m0_pairs_nz(const int32_t *col __attribute__((unused)),
                            const int32_t *cend __attribute__((unused)),
                            int32_t *p __attribute__((unused)))
{
#define M0_PV(n) \
    "ldm r0!, {r3}\n\t" "adds r4, #8\n\t" "cmp r3, #0\n\t" "beq " #n "f\n\t" \
    "stm r2!, {r3, r4}\n\t" "movs r4, #0\n" #n ":\n\t"
    __asm__(".syntax unified\n\t"
            "push {r4, lr}\n\t"
            "movs r4, #8\n\t"
            "rsbs r4, r4, #0\n"                  /* the step before the first value */
            "1:\n\t"
            M0_PV(2) M0_PV(3) M0_PV(4) M0_PV(5)
            "cmp r0, r1\n\t"
            "bne 1b\n\t"
            "movs r0, r2\n\t"
            "pop {r4, pc}\n\t"
            ".syntax divided");
#undef M0_PV
}
#endif

static int32_t *m0_pairs(const int32_t *col, int32_t K, int32_t *p)
{
#if KML_M0_ASM
    return m0_pairs_nz(col, col + K, p);
#else
    int32_t k, prev = 0;
    for (k = 0; k < K; ++k) {
        const int32_t v = col[k];
        if (v != 0) {
            p[0] = v;
            p[1] = 8 * (k - prev);
            prev = k;
            p += 2;
        }
    }
    return p;
#endif
}

/* The pairs of a pixel's column (pend: their end) are worth the sparse loop (28 instructions
 * per pair and group of eight channels) over the dense one (26 per value) where
 * 14 pairs < 13 K; else 0 (the dense loop). */
static inline const int32_t *m0_sparse_or_dense(const int32_t *pbuf, const int32_t *pend,
                                                int32_t K)
{
    return 7 * (int32_t)(pend - pbuf) < 13 * K ? pbuf : 0;
}

/* Whether a pixel's pairs (n of them, K values) paid for themselves: building them costs
 * 4.5 instructions per zero value and 6.5 per other (m0_pairs_nz), and each of the g8 groups
 * of eight channels saves 26 K - 28 n (dense loop: 26 per value; sparse: 28 per pair). After
 * a pixel where they did not (the dense loop taken, or a saving below their cost), the next
 * M0_DENSE_RUN pixels take the dense loop without building pairs: in every run of
 * M0_DENSE_RUN + 1 pixels at most one costs more than the dense loop, by at most the pairs'
 * cost, which bounds the worst case (measured with mode {2}: no pixel pays). */
#define M0_DENSE_RUN 7
static inline int m0_pairs_paid(const int32_t *pbuf, const int32_t *pend, int32_t K,
                                int32_t g8)
{
    const int32_t n = (int32_t)(pend - pbuf) / 2;
    return 2 * g8 * (26 * K - 28 * n) >= 9 * K + 4 * n;
}

/* Mode {2} (measurements only): the cost of a column without zero values, whatever the
 * input: the pairs of K ones (``ones``, filled once per call), then the dense loop. */
static const int32_t *m0_pixel_pairs(const int32_t *col, int32_t K, int32_t *pbuf,
                                     const int32_t *ones, const int32_t **pend)
{
    *pend = m0_pairs(ones ? ones : col, K, pbuf);    /* ones: K pairs, the dense loop */
    return m0_sparse_or_dense(pbuf, *pend, K);
}

/* One output pixel's accumulators for the group at stream s (width G, 4 or 8; hdr words per
 * channel before the weights: 4 with the group's records, 1 without): bias plus the
 * correction, then the inner product with the column. */
#if defined(__GNUC__)
__attribute__((always_inline))
#endif
static inline void m0_acc(const int32_t *s, int32_t G, int32_t hdr, int32_t K, int32_t corr,
                          const int32_t *col, int32_t *a)
{
    int32_t i;
    const uint8_t *w = (const uint8_t *)(s + G * hdr);
    if (G == 8) {
#if KML_M0_ASM
        a[0] = corr;     /* m0_dot8 adds the biases, at the address in a[1] */
        a[1] = (int32_t)(intptr_t)s;
#else
        for (i = 0; i < 8; ++i) {
            a[i] = s[i] + corr;
        }
#endif
        m0_group8(col, K, w, a);
    } else {
        for (i = 0; i < 4; ++i) {
            a[i] = s[i] + corr;
        }
        m0_group(col, K, w, a);
    }
}

/* m0_acc with the column's non-zero values: the pairs from pairs to pend (m0_pairs); a
 * group of four (the last of a layer) takes the dense loop in the Thumb-1 builds. */
static void m0_acc_sparse(const int32_t *s, int32_t G, int32_t hdr, int32_t K, int32_t corr,
                          const int32_t *col, int32_t *a, const int32_t *pairs,
                          const int32_t *pend)
{
    int32_t i, j;
    const uint8_t *w = (const uint8_t *)(s + G * hdr);
#if KML_M0_ASM
    if (G == 8) {
        a[0] = corr;
        a[1] = (int32_t)(intptr_t)s;
        m0_dot8s(pairs, pend, w, a);
    } else {
        m0_acc(s, G, hdr, K, corr, col, a);
    }
    (void)i;
    (void)j;
    return;
#else
    (void)K;
    (void)col;
#endif
    for (i = 0; i < G; ++i) {
        a[i] = s[i] + corr;
    }
    for (; pairs != pend; pairs += 2) {   /* weights: G bytes per window position */
        const int32_t v = pairs[0];
        w += pairs[1] / (8 / G);
        for (j = 0; j < G; ++j) {
            a[j] += v * w[j];
        }
    }
}

/* Bounded requantization, for layers where the generator proved at compile time that every
 * channel's accumulator satisfies |acc| < 2^21 (its range over every int8 input, from the
 * weights and the bias), with a multiplier M > 0 and a right shift s <= 22 (channels whose
 * output is constant are rewritten to a small bias). Per channel a record of four words
 * {m0, m1, m2, W}: M = m2 2^22 + m1 2^11 + m0 (m0 >= 1), W = c2 + sh with the nudge
 * c2 = (2^30 + rnd 2^31) / 2^22 (rnd = 2^s / 2, so c2 is a multiple of 2^8) and the shift
 * sh = 9 + s (< 2^8) in its low byte. m0_rq's two roundings in one, on u = |acc| < 2^21 and
 * n = [acc < 0]: kml_mbqm's magnitude is floor((u M + 2^30 - n + rnd 2^31) / 2^(31 + s)),
 * and with three 32-bit products (no carries between words):
 *     P0 = u m0 - n, P1 = u m1 + (P0 >> 11), P2 = u m2 + (P1 >> 11),
 *     v = floor((P2 + c2) / 2^sh) = ((P2 >> 8 << 8) + W) >> (W mod 2^8)
 * (u m0 <= (2^21 - 1) 2^11 and P1 <= (2^21 - 1) 2^11 < 2^32, P2 < 2^30 + 2^21; P2's low
 * byte cannot change the quotient since c2 and 2^sh are multiples of 2^8, and sh < 2^8 in
 * the low byte cannot carry). Then the output offset and the clamp: off + v for acc >= 0,
 * off - v below. */
#if !KML_M0_ASM
static void m0_rqb_c(const int32_t *acc, const int32_t *rec, int8_t *out, int32_t n,
                     int32_t off, int32_t lo, int32_t hi)
{
    int32_t i;
    for (i = 0; i < n; ++i, rec += 4) {
        const int32_t a = acc[i];
        const uint32_t neg = a < 0 ? 1u : 0u;
        const uint32_t u = neg ? (uint32_t)0 - (uint32_t)a : (uint32_t)a;
        const uint32_t w = (uint32_t)rec[3];
        uint32_t t = u * (uint32_t)rec[0] - neg;
        t = u * (uint32_t)rec[1] + (t >> 11);
        t = u * (uint32_t)rec[2] + (t >> 11);
        t = (((t >> 8) << 8) + w) >> (w & 0xFFu);
        out[i] = (int8_t)kml_clamp(neg ? off - (int32_t)t : off + (int32_t)t, lo, hi);
    }
}
#endif

#if KML_M0_ASM
/* m0_rqb_c in Thumb-1: par = {n, off, lo, hi}. One LDM loads a record; where lo == off (a
 * fused ReLU, ReLU6 or ReLU-N clamp starting at the offset) acc <= 0 gives lo without the
 * products. 22 instructions per output above 0, 10 at or below (ReLU). */
#define M0_RQB_CHAIN(neg) \
    "ldm r1!, {r4, r5, r6, r7}\n\t" \
    "muls r4, r3, r4\n\t" neg "lsrs r4, r4, #11\n\t" \
    "muls r5, r3, r5\n\t" "adds r4, r4, r5\n\t" "lsrs r4, r4, #11\n\t" \
    "muls r6, r3, r6\n\t" "adds r4, r4, r6\n\t" \
    "lsrs r4, r4, #8\n\t" "lsls r4, r4, #8\n\t" "adds r4, r4, r7\n\t" "lsrs r4, r4, r7\n\t"
/* Output k of four (lo == off): acc <= 0 goes to label z (lo, the record skipped), which
 * comes back to label st, the store. */
#define M0_RQB4(k, z, st) \
    "ldr r3, [r0, #4 * " k "]\n\t" \
    "cmp r3, #0\n\t" \
    "ble " z "f\n\t" \
    M0_RQB_CHAIN("") \
    "add r4, r8\n\t" \
    "cmp r4, r10\n\t" \
    "ble " st "f\n\t" \
    "mov r4, r10\n" \
    st ":\n\t" \
    "strb r4, [r2, #" k "]\n\t"
__attribute__((naked, noinline))
static void m0_rqb(const int32_t *acc __attribute__((unused)),
                   const int32_t *rec __attribute__((unused)),
                   int8_t *out __attribute__((unused)),
                   const int32_t *par __attribute__((unused)))
{
    __asm__(".syntax unified\n\t"
            "push {r4, r5, r6, r7, lr}\n\t"
            "mov r4, r8\n\t" "mov r5, r9\n\t" "mov r6, r10\n\t" "mov r7, r11\n\t"
            "push {r4, r5, r6, r7}\n\t"
            "ldm r3!, {r4, r5, r6, r7}\n\t"          /* n, off, lo, hi */
            "adds r3, r2, r4\n\t"
            "mov r11, r3\n\t"                        /* the end of the output */
            "mov r8, r5\n\t" "mov r9, r6\n\t" "mov r10, r7\n\t"
            "cmp r5, r6\n\t"
            "bne 5f\n\t"
            "lsls r4, r4, #30\n\t"
            "beq 10f\n"                              /* n a multiple of 4: unrolled */
            "1:\n\t"                                 /* lo == off */
            "ldm r0!, {r3}\n\t"
            "cmp r3, #0\n\t"
            "ble 4f\n\t"
            M0_RQB_CHAIN("")
            "add r4, r8\n\t"
            "cmp r4, r10\n\t"
            "ble 2f\n\t"
            "mov r4, r10\n"
            "2:\n\t"
            "strb r4, [r2, #0]\n\t"
            "adds r2, #1\n\t"
            "cmp r2, r11\n\t"
            "bne 1b\n\t"
            "b 9f\n"
            "4:\n\t"                                 /* acc <= 0: lo */
            "mov r4, r9\n\t"
            "adds r1, #16\n\t"
            "b 2b\n"
            "5:\n\t"                                 /* any clamp: both signs */
            "ldm r0!, {r3}\n\t"
            "cmp r3, #0\n\t"
            "blt 7f\n\t"
            M0_RQB_CHAIN("")
            "add r4, r8\n"                           /* off + v */
            "6:\n\t"
            "cmp r4, r10\n\t"
            "ble 8f\n\t"
            "mov r4, r10\n"
            "8:\n\t"
            "cmp r4, r9\n\t"
            "bge 3f\n\t"
            "mov r4, r9\n"
            "3:\n\t"
            "strb r4, [r2, #0]\n\t"
            "adds r2, #1\n\t"
            "cmp r2, r11\n\t"
            "bne 5b\n\t"
            "b 9f\n"
            "7:\n\t"                                 /* acc < 0 */
            "rsbs r3, r3, #0\n\t"
            M0_RQB_CHAIN("subs r4, #1\n\t")
            "mov r5, r8\n\t"
            "subs r4, r5, r4\n\t"                    /* off - v */
            "b 6b\n"
            "10:\n\t"                                /* lo == off, four per pass */
            M0_RQB4("0", "20", "30") M0_RQB4("1", "21", "31")
            M0_RQB4("2", "22", "32") M0_RQB4("3", "23", "33")
            "adds r0, #16\n\t"
            "adds r2, #4\n\t"
            "cmp r2, r11\n\t"
            "bne 10b\n\t"
            "b 9f\n"
            "20:\n\t" "mov r4, r9\n\t" "adds r1, #16\n\t" "b 30b\n"
            "21:\n\t" "mov r4, r9\n\t" "adds r1, #16\n\t" "b 31b\n"
            "22:\n\t" "mov r4, r9\n\t" "adds r1, #16\n\t" "b 32b\n"
            "23:\n\t" "mov r4, r9\n\t" "adds r1, #16\n\t" "b 33b\n"
            "9:\n\t"
            "pop {r4, r5, r6, r7}\n\t"
            "mov r8, r4\n\t" "mov r9, r5\n\t" "mov r10, r6\n\t" "mov r11, r7\n\t"
            "pop {r4, r5, r6, r7, pc}\n\t"
            ".syntax divided");
}
#undef M0_RQB4
#undef M0_RQB_CHAIN
#endif

/* One output pixel's n accumulators -> n int8 outputs with the bounded records rec;
 * par = {n, off, lo, hi}. */
static inline void m0_rqb_run(const int32_t *acc, const int32_t *rec, int8_t *out,
                              const int32_t *par)
{
#if KML_M0_ASM
    m0_rqb(acc, rec, out, par);
#else
    m0_rqb_c(acc, rec, out, par[0], par[1], par[2], par[3]);
#endif
}

/* Packed weight pairs, for a bounded layer fed by a fused ReLU or ReLU6 (every column value
 * c = x + offset in 0..255: the clamp starts at the input's zero point) with at least 16
 * output channels. Two channels' unsigned weights share a word: W = lo + hi 2^16 (lo, hi =
 * w + 128 in 0..255), so one MULS gives both products, c W = c lo + c hi 2^16 with
 * c lo < 2^16 and c W < 2^32: no carry between the lanes. The accumulator of the low lane
 * adds all of c W (one ADD), LSRS #16 leaves c hi for the high lane's; at the end of the
 * group the low lane subtracts the high lane's sum x 2^16 (exact modulo 2^32). Per non-zero
 * column value and group of eight channels: LDM of the pair, the step, two LDMs of two words,
 * four MULS, twelve ALU steps: 28 cycles for 8 MACs (m0_dot8s: 39).
 *
 * Stream per group of eight channels (out_c padded to 8, weights 0 for the padding): eight
 * init words {A4, B5, A6, B7, B1, B3, A0, A2}, Bj = bias[j] (j odd), Aj = bias[j] +
 * bias[j + 1] 2^16 mod 2^32 (j even), then K x 4 words: the lane pairs (0, 1), (2, 3),
 * (4, 5), (6, 7) of window position k. The pixel's pairs {c, 16 (k - k') - 16} (k' the
 * previous pair's position, -1 first: the byte step from the weights after the previous
 * position's to position k's), ended by {0, INT32_MIN} (the step that makes the weight
 * pointer negative: the weights lie below 0x80000000, as every Cortex-M0+ flash and SRAM
 * region does). par = {corr, 32 x groups (bytes of accumulators), 16 K (the bytes of a
 * group's weights)}. */
#if !KML_M0_ASM
static int32_t *m0_pairs16_c(const int32_t *col, int32_t K, int32_t *p, int all)
{
    int32_t k, prev = -1;
    for (k = 0; k < K; ++k) {
        const int32_t v = col[k];
        if (v != 0 || all) {
            p[0] = v;
            p[1] = 16 * (k - prev) - 16;
            prev = k;
            p += 2;
        }
    }
    p[0] = 0;
    p[1] = INT32_MIN;
    return p + 2;
}
#endif

#if KML_M0_ASM
/* m0_pairs16_c in Thumb-1: four values per pass (LDM, ADDS, CMP, BEQ per value, then STM of
 * the pair); the "all" variant compares the column pointer (never 0) instead of the value:
 * the same instructions, every value kept. */
#define M0_P16V(reg, n) \
    "ldm r0!, {r3}\n\t" "adds r4, #16\n\t" "cmp " reg ", #0\n\t" "beq " #n "f\n\t" \
    "stm r2!, {r3, r4}\n\t" "mov r4, r5\n" #n ":\n\t"
#define M0_P16(reg) \
    __asm__(".syntax unified\n\t" \
            "push {r4, r5, lr}\n\t" \
            "movs r5, #16\n\t" \
            "rsbs r5, r5, #0\n\t" \
            "mov r4, r5\n" \
            "1:\n\t" \
            M0_P16V(reg, 2) M0_P16V(reg, 3) M0_P16V(reg, 4) M0_P16V(reg, 5) \
            "cmp r0, r1\n\t" \
            "bne 1b\n\t" \
            "movs r3, #0\n\t" \
            "movs r4, #1\n\t" \
            "lsls r4, r4, #31\n\t" \
            "stm r2!, {r3, r4}\n\t" \
            "movs r0, r2\n\t" \
            "pop {r4, r5, pc}\n\t" \
            ".syntax divided")
__attribute__((naked, noinline))
static int32_t *m0_pairs16_nz(const int32_t *col __attribute__((unused)),
                              const int32_t *cend __attribute__((unused)),
                              int32_t *p __attribute__((unused)))
{
    M0_P16("r3");
}

__attribute__((naked, noinline))
static int32_t *m0_pairs16_all(const int32_t *col __attribute__((unused)),
                               const int32_t *cend __attribute__((unused)),
                               int32_t *p __attribute__((unused)))
{
    M0_P16("r0");
}
#undef M0_P16
#undef M0_P16V

/* m0_column1 and m0_pairs16_nz in one pass for a pointwise layer (n = xend - x a multiple
 * of 4): the pairs of the non-zero values x + off from the int8 input; returns the end of the
 * pairs, their sum (the zero values add nothing) in the end marker's value (which m0_dot8p
 * does not read). */
#define M0_PX(k, n) \
    "ldrb r4, [r0, #" #k "]\n\t" "sxtb r4, r4\n\t" "adds r6, #16\n\t" \
    "adds r4, r4, r3\n\t" "beq " #n "f\n\t" \
    "stm r2!, {r4, r6}\n\t" "adds r7, r7, r4\n\t" "mov r6, r5\n" #n ":\n\t"
__attribute__((naked, noinline))
static int32_t *m0_pairs16_x(const int8_t *x __attribute__((unused)),
                            const int8_t *xend __attribute__((unused)),
                            int32_t *p __attribute__((unused)),
                            int32_t off __attribute__((unused)))
{
    __asm__(".syntax unified\n\t"
            "push {r4, r5, r6, r7, lr}\n\t"
            "movs r5, #16\n\t"
            "rsbs r5, r5, #0\n\t"
            "mov r6, r5\n\t"
            "movs r7, #0\n"
            "1:\n\t"
            M0_PX(0, 2) M0_PX(1, 3) M0_PX(2, 4) M0_PX(3, 5)
            "adds r0, #4\n\t"
            "cmp r0, r1\n\t"
            "bne 1b\n\t"
            "movs r3, r7\n\t"
            "movs r6, #1\n\t"
            "lsls r6, r6, #31\n\t"
            "stm r2!, {r3, r6}\n\t"
            "movs r0, r2\n\t"
            "pop {r4, r5, r6, r7, pc}\n\t"
            ".syntax divided");
}
#undef M0_PX

/* Every group of a pixel: acc[0 .. 8 groups) from the pairs. The pair loop holds the pointer
 * to the pairs (r0), c (r1), the weight pointer (r2), two weight words (r3, r4) and the eight
 * accumulators (r5, r6, r8-r12, lr: low lanes r5, r6, r10, r12 of channels 0, 2, 4, 6); the
 * frame: [sp] pairs, [4] corr, [8] corr x 65537, [12] acc, [16] acc end, [20] 16 K,
 * [24] the group's weights. */
#define M0_P8(n) \
    "ldm r0!, {r1, r3}\n\t" \
    "adds r2, r2, r3\n\t" \
    "bmi 9f\n\t" M0_P8B
#define M0_P8B \
    "ldm r2!, {r3, r4}\n\t" \
    "muls r3, r1, r3\n\t" "muls r4, r1, r4\n\t" \
    "adds r5, r5, r3\n\t" "lsrs r3, r3, #16\n\t" "add r8, r3\n\t" \
    "adds r6, r6, r4\n\t" "lsrs r4, r4, #16\n\t" "add r9, r4\n\t" \
    "ldm r2!, {r3, r4}\n\t" \
    "muls r3, r1, r3\n\t" "muls r4, r1, r4\n\t" \
    "add r10, r3\n\t" "lsrs r3, r3, #16\n\t" "add r11, r3\n\t" \
    "add r12, r4\n\t" "lsrs r4, r4, #16\n\t" "add lr, r4\n\t"
__attribute__((naked, noinline))
static void m0_dot8p(const int32_t *pairs __attribute__((unused)),
                     const int32_t *s __attribute__((unused)),
                     int32_t *acc __attribute__((unused)),
                     const int32_t *par __attribute__((unused)))
{
    __asm__(".syntax unified\n\t"
            "push {r4, r5, r6, r7, lr}\n\t"
            "mov r4, r8\n\t" "mov r5, r9\n\t" "mov r6, r10\n\t" "mov r7, r11\n\t"
            "push {r4, r5, r6, r7}\n\t"
            "sub sp, #32\n\t"
            "str r0, [sp, #0]\n\t"
            "ldm r3!, {r4, r5, r6, r7}\n\t"        /* corr, bytes of acc, 16 K, dense */
            "cmp r7, #0\n\t"
            "beq 6f\n\t"
            "lsrs r7, r6, #2\n\t"
            "adds r7, r0, r7\n"                   /* dense: the column's end */
            "6:\n\t"
            "str r7, [sp, #28]\n\t"
            "str r4, [sp, #4]\n\t"
            "lsls r7, r4, #16\n\t"
            "adds r7, r7, r4\n\t"
            "str r7, [sp, #8]\n\t"
            "str r2, [sp, #12]\n\t"
            "adds r5, r2, r5\n\t"
            "str r5, [sp, #16]\n\t"
            "str r6, [sp, #20]\n\t"
            "movs r2, r1\n"
            "7:\n\t"                               /* a group: the accumulators */
            "ldr r1, [sp, #8]\n\t"
            "ldr r0, [sp, #4]\n\t"
            "ldm r2!, {r3, r4, r5, r6}\n\t"        /* A4 B5 A6 B7 */
            "adds r3, r3, r1\n\t" "mov r10, r3\n\t"
            "adds r4, r4, r0\n\t" "mov r11, r4\n\t"
            "adds r5, r5, r1\n\t" "mov r12, r5\n\t"
            "adds r6, r6, r0\n\t" "mov lr, r6\n\t"
            "ldm r2!, {r3, r4, r5, r6}\n\t"        /* B1 B3 A0 A2 */
            "adds r3, r3, r0\n\t" "mov r8, r3\n\t"
            "adds r4, r4, r0\n\t" "mov r9, r4\n\t"
            "adds r5, r5, r1\n\t"
            "adds r6, r6, r1\n\t"
            "str r2, [sp, #24]\n\t"
            "ldr r0, [sp, #0]\n\t"
            "ldr r7, [sp, #28]\n\t"
            "cmp r7, #0\n\t"
            "bne 5f\n"
            "1:\n\t"
            M0_P8(0) M0_P8(1)
            "b 1b\n"
            "5:\n\t"                               /* dense: four positions per pass */
            "ldr r1, [r0, #0]\n\t" M0_P8B
            "ldr r1, [r0, #4]\n\t" M0_P8B
            "ldr r1, [r0, #8]\n\t" M0_P8B
            "ldr r1, [r0, #12]\n\t" M0_P8B
            "adds r0, #16\n\t"
            "cmp r0, r7\n\t"
            "bne 5b\n"
            "9:\n\t"                               /* the sentinel: store the group */
            "ldr r7, [sp, #12]\n\t"
            "mov r3, r8\n\t"
            "lsls r1, r3, #16\n\t"
            "subs r1, r5, r1\n\t"
            "mov r5, r9\n\t"
            "lsls r4, r5, #16\n\t"
            "subs r4, r6, r4\n\t"
            "stm r7!, {r1, r3, r4, r5}\n\t"
            "mov r3, r11\n\t"
            "mov r1, r10\n\t"
            "lsls r4, r3, #16\n\t"
            "subs r1, r1, r4\n\t"
            "mov r5, lr\n\t"
            "mov r6, r12\n\t"
            "lsls r4, r5, #16\n\t"
            "subs r4, r6, r4\n\t"
            "stm r7!, {r1, r3, r4, r5}\n\t"
            "str r7, [sp, #12]\n\t"
            "ldr r3, [sp, #16]\n\t"
            "cmp r7, r3\n\t"
            "beq 8f\n\t"
            "ldr r2, [sp, #24]\n\t"
            "ldr r3, [sp, #20]\n\t"
            "adds r2, r2, r3\n\t"
            "b 7b\n"
            "8:\n\t"
            "add sp, #32\n\t"
            "pop {r4, r5, r6, r7}\n\t"
            "mov r8, r4\n\t" "mov r9, r5\n\t" "mov r10, r6\n\t" "mov r11, r7\n\t"
            "pop {r4, r5, r6, r7, pc}\n\t"
            ".syntax divided");
}
#undef M0_P8
#undef M0_P8B
#else
/* m0_dot8p's arithmetic in C (the same lanes, modulo 2^32). */
static void m0_dot8p_c(const int32_t *pairs, const int32_t *s, int32_t *acc,
                       const int32_t *par)
{
    const uint32_t corr = (uint32_t)par[0], corr2 = corr + (corr << 16);
    const int32_t groups = par[1] / 32, words = par[2] / 4;
    int32_t g, j, k;
    for (g = 0; g < groups; ++g, s += 8 + words, acc += 8) {
        const uint32_t *w = (const uint32_t *)(s + 8);
        const int32_t *q;
        uint32_t a[8];
        a[4] = (uint32_t)s[0] + corr2;
        a[5] = (uint32_t)s[1] + corr;
        a[6] = (uint32_t)s[2] + corr2;
        a[7] = (uint32_t)s[3] + corr;
        a[1] = (uint32_t)s[4] + corr;
        a[3] = (uint32_t)s[5] + corr;
        a[0] = (uint32_t)s[6] + corr2;
        a[2] = (uint32_t)s[7] + corr2;
        for (k = 0; par[3] && k < words / 4; ++k, w += 4) {   /* dense: the column */
            const uint32_t c = (uint32_t)pairs[k];
            for (j = 0; j < 4; ++j) {
                const uint32_t t = c * w[j];
                a[2 * j] += t;
                a[2 * j + 1] += t >> 16;
            }
        }
        for (q = pairs; !par[3] && q[1] != INT32_MIN; q += 2) {
            const uint32_t c = (uint32_t)q[0];
            w += q[1] / 4;
            for (j = 0; j < 4; ++j) {
                const uint32_t t = c * w[j];
                a[2 * j] += t;
                a[2 * j + 1] += t >> 16;
            }
            w += 4;
        }
        for (j = 0; j < 4; ++j) {
            a[2 * j] -= a[2 * j + 1] << 16;
        }
        for (j = 0; j < 8; ++j) {
            acc[j] = (int32_t)a[j];
        }
    }
}
#endif

/* The pixel's pairs for m0_dot8p (all: every value kept, the measurements' worst case);
 * returns their end (after the end marker). */
static inline const int32_t *m0_pairs16(const int32_t *col, int32_t K, int32_t *p, int all)
{
#if KML_M0_ASM
    return all ? m0_pairs16_all(col, col + K, p) : m0_pairs16_nz(col, col + K, p);
#else
    return m0_pairs16_c(col, K, p, all);
#endif
}

/* Whether a pixel's pairs (from p to pend, with the end marker) beat m0_dot8p's dense loop:
 * per value and group of eight channels 31 cycles per pair against 27 per column value (the
 * cycle model). Otherwise the next M0_DENSE_RUN pixels take the dense loop without pairs (as
 * m0_pairs_paid): an input without zero values then costs about the dense loop plus an
 * eighth of the pairs. */
static inline int m0_packed_paid(const int32_t *p, const int32_t *pend, int32_t K)
{
    return 31 * ((int32_t)(pend - p) / 2 - 1) <= 27 * K;
}

static inline void m0_dot8p_run(const int32_t *pairs, const int32_t *s, int32_t *acc,
                                const int32_t *par)
{
#if KML_M0_ASM
    m0_dot8p(pairs, s, acc, par);
#else
    m0_dot8p_c(pairs, s, acc, par);
#endif
}

void kml_conv2d_m0_s8(const kml_conv_params *p, const int8_t *input, const int8_t *filter,
                      const int32_t *bias, const int32_t *mult, const int32_t *shift,
                      int8_t *output, const int32_t *packed, int32_t *scratch)
{
    const int32_t Kw = p->k_h * p->k_w * p->in_c, K = (Kw + 3) & ~3, out_c = p->out_c;
    const int32_t out_off = p->out_offset, lo = p->act_min, hi = p->act_max;
    const int pw = m0_pointwise(p);
    const int8_t *px = input;
    const int32_t *const rq = mult;    /* the bounded records, or 0 */
    int32_t *const acc = scratch + K;  /* with rq: one pixel's accumulators */
    const int32_t par[4] = {out_c, out_off, lo, hi};
    /* shift = {1}: the column's non-zero values as pairs, after the accumulators ({2}: all
     * its values, the worst case of {1}) */
    int32_t *const pbuf = shift && shift[0] != 0 && shift[0] != 5 ? acc + (rq ? (out_c + 7) & ~7 : 0) : 0;
    int32_t *const ones = shift && shift[0] == 2 ? pbuf + 2 * K : 0;
    /* {3}: the packed weight pairs (m0_dot8p, rq only; {4}: every value kept) */
    const int packed2 = shift && shift[0] >= 3 && shift[0] <= 4 && rq;
    /* {5}: the packed weight pairs on a dense layer: column values x + 128 (0..255), padding
     * 128 - input offset (x = the zero point), the bias corrected at compile time */
    const int dense2 = shift && shift[0] == 5 && rq;
    const int32_t coff = dense2 ? 128 : p->in_offset, cpad = dense2 ? 128 - p->in_offset : 0;
    const int32_t dpar0[3] = {0, 32 * ((out_c + 7) / 8), 16 * K};
    const int32_t *pairs = 0, *pend = 0;
    int32_t rest = 0;   /* pixels left to run dense without building their pairs */
    const int32_t g8 = (out_c + 3) / 8;   /* groups of eight channels */
    int32_t b, oy, ox, oc, i;
    (void)filter;
    (void)bias;
    for (i = Kw; i < K; ++i) {    /* the window padded to a multiple of 4: weights 0 */
        scratch[i] = 0;
    }
    for (i = 0; ones && i < K; ++i) {
        ones[i] = 1;
    }
    for (b = 0; b < p->batches; ++b) {
        for (oy = 0; oy < p->out_h; ++oy) {
            for (ox = 0; ox < p->out_w; ++ox) {
                int32_t corr;
#if KML_M0_ASM
                if (pw && packed2 && shift[0] == 3 && (Kw & 3) == 0 && rest == 0) {
                    /* the pairs straight from the input, in one pass */
                    int32_t dpar[4] = {0, dpar0[1], dpar0[2], 0};
                    const int32_t *e = m0_pairs16_x(px, px + Kw, pbuf, coff);
                    dpar[0] = -128 * e[-2];
                    px += Kw;
                    m0_dot8p_run(pbuf, packed, acc, dpar);
                    rest = m0_packed_paid(pbuf, e, K) ? 0 : M0_DENSE_RUN;
                    m0_rqb_run(acc, rq, output, par);
                    output += out_c;
                    continue;
                }
#endif
                if (pw) {
                    corr = -128 * m0_column1(px, Kw, coff, scratch);
                    px += Kw;
                } else {
                    corr = -128 * m0_column(p, input, b, oy, ox, scratch, coff, cpad);
                }
                if (dense2 || (packed2 && rest > 0)) {   /* the packed dense loop */
                    const int32_t dpar[4] = {corr, dpar0[1], dpar0[2], 1};
                    rest -= packed2 ? 1 : 0;
                    m0_dot8p_run(scratch, packed, acc, dpar);
                    m0_rqb_run(acc, rq, output, par);
                    output += out_c;
                    continue;
                }
                if (packed2) {   /* every pixel: the pairs, then all groups in one call */
                    const int32_t dpar[4] = {corr, dpar0[1], dpar0[2], 0};
                    const int32_t *e = m0_pairs16(scratch, K, pbuf, shift[0] == 4);
                    m0_dot8p_run(pbuf, packed, acc, dpar);
                    rest = m0_packed_paid(pbuf, e, K) ? 0 : M0_DENSE_RUN;
                    m0_rqb_run(acc, rq, output, par);
                    output += out_c;
                    continue;
                }
                if (pbuf && rest == 0) {
                    pairs = m0_pixel_pairs(scratch, K, pbuf, ones, &pend);
                    rest = m0_pairs_paid(pbuf, pend, K, g8) ? 0 : M0_DENSE_RUN;
                } else if (pbuf) {
                    pairs = 0;
                    --rest;
                }
                const int32_t *s = packed;
                if (rq) {   /* the stream without records, then the pixel's requantization */
                    for (oc = 0; oc < out_c;) {
                        const int32_t G = out_c - oc > 4 ? 8 : 4;
                        if (pairs) {
                            m0_acc_sparse(s, G, 1, K, corr, scratch, acc + oc, pairs, pend);
                        } else {
                            m0_acc(s, G, 1, K, corr, scratch, acc + oc);
                        }
                        oc += G;
                        s += G + K * (G / 4);
                    }
                    m0_rqb_run(acc, rq, output, par);
                    output += out_c;
                    continue;
                }
                for (oc = 0; oc < out_c;) {
                    const int32_t G = out_c - oc > 4 ? 8 : 4;
                    const int32_t n = out_c - oc < G ? out_c - oc : G;
                    int32_t a[8];
                    if (pairs) {
                        m0_acc_sparse(s, G, 4, K, corr, scratch, a, pairs, pend);
                    } else {
                        m0_acc(s, G, 4, K, corr, scratch, a);
                    }
                    if (s[G + 2] >= 0) {   /* the layer takes m0_rq (all channels or none) */
                        m0_store(a, s + G, n, output, out_off, lo, hi);
                    } else {
                        for (i = 0; i < n; ++i) {
                            output[i] = m0_out(a[i], s + G + 3 * i, out_off, lo, hi);
                        }
                    }
                    output += n;
                    oc += n;
                    s += 4 * G + K * (G / 4);
                }
            }
        }
    }
}

/* The record {mult, s, rnd} of one multiplier (as the generator writes them, per layer). */
static void m0_record(int32_t mult, int32_t shift, int32_t *r)
{
    const int fast = mult >= 0 && shift <= 0 && shift >= -31;
    r[0] = mult;
    r[1] = fast ? -shift : shift;
    r[2] = fast ? (int32_t)((1u << (uint32_t)-shift) >> 1) : -1;
}

/* kml_mbqm for a record. */
static inline int32_t m0_mbqm_r(int32_t x, const int32_t *r)
{
    return r[2] >= 0 ? m0_rq(x, r) : m0_mbqm(x, r[0], r[1]);
}

void kml_conv2d_add_m0_s8(const kml_conv_params *p, const int8_t *input,
                          const int8_t *filter, const int32_t *bias, const int32_t *mult,
                          const int32_t *shift, const kml_add_epilogue *ep,
                          const int8_t *residual, int8_t *output, const int32_t *packed,
                          int32_t *scratch)
{
    const int32_t Kw = p->k_h * p->k_w * p->in_c, K = (Kw + 3) & ~3, out_c = p->out_c;
    const int32_t out_off = p->out_offset, lo = p->act_min, hi = p->act_max;
    const int32_t lshift = ep->left_shift;
    const int pw = m0_pointwise(p);
    const int8_t *px = input;
    int32_t b, oy, ox, oc, i, rc[3], rr[3], ro[3];
    size_t at = 0;
    (void)filter;
    (void)bias;
    (void)mult;
    int32_t *const tc = scratch + K, *const tr = tc + 256;
    /* shift = {1}: the column's non-zero values as pairs, after the two tables ({2}: all) */
    int32_t *const pbuf = shift && shift[0] != 0 ? tr + 256 : 0;
    int32_t *const ones = shift && shift[0] == 2 ? pbuf + 2 * K : 0;
    const int32_t *pairs = 0, *pend = 0;
    int32_t rest = 0;   /* pixels left to run dense without building their pairs */
    const int32_t g8 = (out_c + 3) / 8;   /* groups of eight channels */
    int relu;
    m0_record(ep->conv_mult, ep->conv_shift, rc);
    m0_record(ep->res_mult, ep->res_shift, rr);
    m0_record(ep->out_mult, ep->out_shift, ro);
    /* an ADD activation starting at or above its output offset and a multiplier >= 0: a sum
     * <= 0 requantizes to <= 0, the output is act_min */
    relu = ep->act_min >= ep->out_offset && ep->out_mult >= 0;
    for (i = Kw; i < K; ++i) {    /* the window padded to a multiple of 4: weights 0 */
        scratch[i] = 0;
    }
    for (i = 0; ones && i < K; ++i) {
        ones[i] = 1;
    }
    for (i = 0; i < 256; ++i) {   /* the two int8 operands of the ADD, rescaled: 256 values each */
        tc[i] = m0_mbqm_r((i - 128 + ep->conv_offset) * (1 << lshift), rc);
        tr[i] = m0_mbqm_r((i - 128 + ep->res_offset) * (1 << lshift), rr);
    }
    for (b = 0; b < p->batches; ++b) {
        for (oy = 0; oy < p->out_h; ++oy) {
            for (ox = 0; ox < p->out_w; ++ox) {
                int32_t corr;
                if (pw) {
                    corr = -128 * m0_column1(px, Kw, p->in_offset, scratch);
                    px += Kw;
                } else {
                    corr = -128 * m0_column(p, input, b, oy, ox, scratch, p->in_offset, 0);
                }
                if (pbuf && rest == 0) {
                    pairs = m0_pixel_pairs(scratch, K, pbuf, ones, &pend);
                    rest = m0_pairs_paid(pbuf, pend, K, g8) ? 0 : M0_DENSE_RUN;
                } else if (pbuf) {
                    pairs = 0;
                    --rest;
                }
                const int32_t *s = packed;
                for (oc = 0; oc < out_c;) {
                    const int32_t G = out_c - oc > 4 ? 8 : 4;
                    const int32_t n = out_c - oc < G ? out_c - oc : G;
                    int32_t a[8];
                    if (pairs) {
                        m0_acc_sparse(s, G, 4, K, corr, scratch, a, pairs, pend);
                    } else {
                        m0_acc(s, G, 4, K, corr, scratch, a);
                    }
                    for (i = 0; i < n; ++i, ++at) {
                        const int32_t c = m0_out(a[i], s + G + 3 * i, out_off, lo, hi);
                        const int32_t sc = tc[c + 128];
                        const int32_t sr = tr[(int32_t)residual[at] + 128];
                        const int32_t sum = ep->conv_first ? sc + sr : sr + sc;
                        if (relu && sum <= 0) {
                            output[at] = (int8_t)ep->act_min;
                        } else {
                            const int32_t o = m0_mbqm_r(sum, ro) + ep->out_offset;
                            output[at] = (int8_t)kml_clamp(o, ep->act_min, ep->act_max);
                        }
                    }
                    oc += n;
                    s += 4 * G + K * (G / 4);
                }
            }
        }
    }
}

#if KML_M0_ASM
/* A 3x3 depthwise window for four channels: acc[0..3] = bias[0..3] (the four words at the
 * address in acc[1] on entry, the group's stream) + the nine taps x (int8, channels
 * adjacent; x += xstep between taps of a row, x += acc[0] (on entry: ystep - 3 xstep) between rows) times the
 * int32 weights w (four per tap). LDRSB with the offsets 0..3 kept in r4-r7, the
 * accumulators in r8-r11: LDRSB + LDR + MULS + ADD per MAC, 17 instructions per tap. */
__attribute__((naked, noinline))
static void m0_dw3x3(const int8_t *x __attribute__((unused)),
                     const int32_t *w __attribute__((unused)),
                     int32_t xstep __attribute__((unused)),
                     int32_t *acc __attribute__((unused)))
{
#define M0_DWT(wo) \
    "ldrsb r2, [r0, r4]\n\t" "ldr r3, [r1, #" #wo "]\n\t" "muls r3, r2, r3\n\t" \
    "add r8, r3\n\t" \
    "ldrsb r2, [r0, r5]\n\t" "ldr r3, [r1, #" #wo "+4]\n\t" "muls r3, r2, r3\n\t" \
    "add r9, r3\n\t" \
    "ldrsb r2, [r0, r6]\n\t" "ldr r3, [r1, #" #wo "+8]\n\t" "muls r3, r2, r3\n\t" \
    "add r10, r3\n\t" \
    "ldrsb r2, [r0, r7]\n\t" "ldr r3, [r1, #" #wo "+12]\n\t" "muls r3, r2, r3\n\t" \
    "add r11, r3\n\t"
    __asm__(".syntax unified\n\t"
            "push {r4, r5, r6, r7, lr}\n\t"
            "mov r4, r8\n\t" "mov r5, r9\n\t" "mov r6, r10\n\t" "mov r7, r11\n\t"
            "push {r3, r4, r5, r6, r7}\n\t"
            "mov r12, r2\n\t"                      /* xstep */
            "ldr r2, [r3, #0]\n\t"
            "mov lr, r2\n\t"                       /* ystep - 3 xstep */
            "ldr r2, [r3, #4]\n\t"
            "ldm r2!, {r4, r5, r6, r7}\n\t"        /* bias */
            "mov r8, r4\n\t" "mov r9, r5\n\t" "mov r10, r6\n\t" "mov r11, r7\n\t"
            "movs r4, #0\n\t" "movs r5, #1\n\t" "movs r6, #2\n\t" "movs r7, #3\n\t"
            M0_DWT(0) "add r0, r12\n\t" M0_DWT(16) "add r0, r12\n\t" M0_DWT(32)
            "add r0, r12\n\t" "add r0, lr\n\t"
            M0_DWT(48) "add r0, r12\n\t" M0_DWT(64) "add r0, r12\n\t" M0_DWT(80)
            "add r0, r12\n\t" "add r0, lr\n\t"
            M0_DWT(96) "add r0, r12\n\t" M0_DWT(112) "add r0, r12\n\t"
            "adds r1, #128\n\t" M0_DWT(0)
            "pop {r3}\n\t"
            "mov r4, r8\n\t" "mov r5, r9\n\t" "mov r6, r10\n\t" "mov r7, r11\n\t"
            "stm r3!, {r4, r5, r6, r7}\n\t"
            "pop {r4, r5, r6, r7}\n\t"
            "mov r8, r4\n\t" "mov r9, r5\n\t" "mov r10, r6\n\t" "mov r11, r7\n\t"
            "pop {r4, r5, r6, r7, pc}\n\t"
            ".syntax divided");
}

/* m0_dw3x3 for every group of four channels of a pixel of a layer with bounded records (the
 * stream's groups: bias[4] then the nine taps' weights, 40 words): the accumulators of the
 * whole pixel to acc, in one call. par = {xstep, ystep - 3 xstep, back, acc end}, back =
 * 2 ystep + 2 xstep - 4 (x after a group's taps, less the next group's x). */
__attribute__((naked, noinline))
static void m0_dw3x3_all(const int8_t *x __attribute__((unused)),
                         const int32_t *s __attribute__((unused)),
                         int32_t *acc __attribute__((unused)),
                         const int32_t *par __attribute__((unused)))
{
    __asm__(".syntax unified\n\t"
            "push {r4, r5, r6, r7, lr}\n\t"
            "mov r4, r8\n\t" "mov r5, r9\n\t" "mov r6, r10\n\t" "mov r7, r11\n\t"
            "push {r4, r5, r6, r7}\n\t"
            "ldm r3!, {r4, r5, r6, r7}\n\t"
            "mov r12, r4\n\t"                      /* xstep */
            "mov lr, r5\n\t"                       /* ystep - 3 xstep */
            "push {r2, r6, r7}\n\t"                /* [sp] acc, [sp, 4] back, [sp, 8] end */
            "1:\n\t"
            "ldm r1!, {r4, r5, r6, r7}\n\t"        /* bias */
            "mov r8, r4\n\t" "mov r9, r5\n\t" "mov r10, r6\n\t" "mov r11, r7\n\t"
            "movs r4, #0\n\t" "movs r5, #1\n\t" "movs r6, #2\n\t" "movs r7, #3\n\t"
            M0_DWT(0) "add r0, r12\n\t" M0_DWT(16) "add r0, r12\n\t" M0_DWT(32)
            "add r0, r12\n\t" "add r0, lr\n\t"
            M0_DWT(48) "add r0, r12\n\t" M0_DWT(64) "add r0, r12\n\t" M0_DWT(80)
            "add r0, r12\n\t" "add r0, lr\n\t"
            M0_DWT(96) "add r0, r12\n\t" M0_DWT(112) "add r0, r12\n\t"
            "adds r1, #128\n\t" M0_DWT(0)
            "adds r1, #16\n\t"                     /* the next group */
            "ldr r2, [sp, #4]\n\t"
            "subs r0, r0, r2\n\t"                  /* its x */
            "mov r4, r8\n\t" "mov r5, r9\n\t" "mov r6, r10\n\t" "mov r7, r11\n\t"
            "ldr r2, [sp, #0]\n\t"
            "stm r2!, {r4, r5, r6, r7}\n\t"
            "str r2, [sp, #0]\n\t"
            "ldr r3, [sp, #8]\n\t"
            "cmp r2, r3\n\t"
            "beq 2f\n\t"
            "b 1b\n"
            "2:\n\t"
            "add sp, #12\n\t"
            "pop {r4, r5, r6, r7}\n\t"
            "mov r8, r4\n\t" "mov r9, r5\n\t" "mov r10, r6\n\t" "mov r11, r7\n\t"
            "pop {r4, r5, r6, r7, pc}\n\t"
            ".syntax divided");
}
#undef M0_DWT

#endif

#if KML_M0_ASM
/* One output pixel of a 3x3 depthwise layer whose records all take m0_rq: every group of four
 * channels (stream s, ``words`` per group) in one tight loop, m0_dw3x3 then the four
 * requantizations (m0_rqcz where lo >= off). */
__attribute__((noinline))
static void m0_dw3x3_pixel(const int8_t *x, const int32_t *s, const int32_t *end, int32_t words,
                           int32_t xstep, int32_t yadj, int8_t *out, int32_t off, int32_t lo,
                           int32_t hi)
{
    int32_t a[4];
    if (lo >= off) {
        for (; s != end; s += words, x += 4, out += 4) {
            a[0] = yadj;
            a[1] = (int32_t)(intptr_t)s;
            m0_dw3x3(x, s + 16, xstep, a);
            out[0] = (int8_t)m0_rqcz(a[0], s + 4, off, lo, hi);
            out[1] = (int8_t)m0_rqcz(a[1], s + 7, off, lo, hi);
            out[2] = (int8_t)m0_rqcz(a[2], s + 10, off, lo, hi);
            out[3] = (int8_t)m0_rqcz(a[3], s + 13, off, lo, hi);
        }
        return;
    }
    for (; s != end; s += words, x += 4, out += 4) {
        a[0] = yadj;
        a[1] = (int32_t)(intptr_t)s;
        m0_dw3x3(x, s + 16, xstep, a);
        out[0] = (int8_t)m0_rqc(a[0], s + 4, off, lo, hi);
        out[1] = (int8_t)m0_rqc(a[1], s + 7, off, lo, hi);
        out[2] = (int8_t)m0_rqc(a[2], s + 10, off, lo, hi);
        out[3] = (int8_t)m0_rqc(a[3], s + 13, off, lo, hi);
    }
}
#endif


/* The window of a depthwise output pixel at the border, k_h x k_w x C bytes in win: the
 * input where the tap is inside the image, the input zero point (-in_offset, whose x + offset
 * is 0: TFLite's padding) where it is not. */
#if KML_M0_ASM
/* n bytes (a multiple of 16, > 0) from src to dst, both word-aligned: LDM / STM of four
 * words per pass. */
__attribute__((naked, noinline))
static void m0_copy16(int8_t *dst __attribute__((unused)),
                      const int8_t *src __attribute__((unused)),
                      int32_t n __attribute__((unused)))
{
    __asm__(".syntax unified\n\t"
            "push {r4, r5, r6, lr}\n"
            "1:\n\t"
            "ldm r1!, {r3, r4, r5, r6}\n\t"
            "stm r0!, {r3, r4, r5, r6}\n\t"
            "subs r2, #16\n\t"
            "bne 1b\n\t"
            "pop {r4, r5, r6, pc}\n\t"
            ".syntax divided");
}

/* n bytes (a multiple of 16, > 0) at dst (word-aligned) set to the word v: STM of four
 * words per pass. */
__attribute__((naked, noinline))
static void m0_fill16(int8_t *dst __attribute__((unused)),
                      int32_t v __attribute__((unused)),
                      int32_t n __attribute__((unused)))
{
    __asm__(".syntax unified\n\t"
            "push {r4, r5, lr}\n\t"
            "movs r3, r1\n\t"
            "movs r4, r1\n\t"
            "movs r5, r1\n"
            "1:\n\t"
            "stm r0!, {r1, r3, r4, r5}\n\t"
            "subs r2, #16\n\t"
            "bne 1b\n\t"
            "pop {r4, r5, pc}\n\t"
            ".syntax divided");
}
#endif

static void m0_window(const kml_conv_params *p, const int8_t *input, int32_t b, int32_t y0,
                      int32_t x0, int8_t *win)
{
    const int32_t C = p->in_c;
    const int zp = (int)-p->in_offset;
    int32_t ky, kx;
#if KML_M0_ASM
    /* channels a multiple of 16 and the input word-aligned (win is): every tap's C bytes
     * by words */
    const int words = (C & 15) == 0 && ((uintptr_t)input & 3u) == 0;
    const int32_t zw = (int32_t)((uint32_t)(uint8_t)zp * 0x01010101u);
#endif
    for (ky = 0; ky < p->k_h; ++ky) {
        const int32_t iy = y0 + ky * p->dil_h;
        for (kx = 0; kx < p->k_w; ++kx, win += C) {
            const int32_t ix = x0 + kx * p->dil_w;
            if (iy < 0 || iy >= p->in_h || ix < 0 || ix >= p->in_w) {
#if KML_M0_ASM
                if (words) {
                    m0_fill16(win, zw, C);
                    continue;
                }
#endif
                memset(win, zp, (size_t)C);
            } else {
                const int8_t *src = input + ((size_t)(b * p->in_h + iy) * (size_t)p->in_w
                                             + (size_t)ix) * (size_t)C;
#if KML_M0_ASM
                if (words) {
                    m0_copy16(win, src, C);
                    continue;
                }
#endif
                memcpy(win, src, (size_t)C);
            }
        }
    }
}

void kml_depthwise_conv2d_m0_s8(const kml_conv_params *p, const int8_t *input,
                                const int8_t *filter, const int32_t *bias,
                                const int32_t *mult, const int32_t *shift, int8_t *output,
                                const int32_t *packed, int32_t *scratch)
{
    const int32_t C = p->in_c, taps = p->k_h * p->k_w;
    const int32_t kh = p->k_h, kw = p->k_w, dh = p->dil_h, dw = p->dil_w;
    const int32_t in_h = p->in_h, in_w = p->in_w, out_h = p->out_h, out_w = p->out_w;
    const int32_t out_off = p->out_offset, lo = p->act_min, hi = p->act_max;
    int8_t *win = (int8_t *)scratch;
    const int32_t *const rq = mult;          /* the bounded records, or 0 */
    const int32_t hdr = rq ? 1 : 4;          /* words per channel before the taps */
    const int32_t words = 4 * hdr + 4 * taps;
    int32_t *const acc = scratch + (taps * C + 3) / 4;   /* with rq: one pixel's */
    const int32_t par[4] = {C, out_off, lo, hi};
    int32_t b, oy, ox, ch, ky, kx;
    (void)filter;
    (void)bias;
    (void)shift;
    for (b = 0; b < p->batches; ++b) {
        for (oy = 0; oy < out_h; ++oy) {
            const int32_t y0 = oy * p->stride_h - p->pad_top;
            for (ox = 0; ox < out_w; ++ox) {
                const int32_t x0 = ox * p->stride_w - p->pad_left;
                const int inside = y0 >= 0 && x0 >= 0 && y0 + (kh - 1) * dh < in_h
                    && x0 + (kw - 1) * dw < in_w;
                const int8_t *base;
                size_t xstep, ystep;
                const int32_t *s = packed;
                if (inside) {
                    base = input + ((size_t)(b * in_h + y0) * (size_t)in_w + (size_t)x0)
                                   * (size_t)C;
                    xstep = (size_t)dw * (size_t)C;
                    ystep = (size_t)dh * (size_t)in_w * (size_t)C;
                } else {   /* at the border: the zero-point padded window */
                    m0_window(p, input, b, y0, x0, win);
                    base = win;
                    xstep = (size_t)C;
                    ystep = (size_t)kw * (size_t)C;
                }
#if KML_M0_ASM
                if (kw == 3 && kh == 3 && rq) {   /* 3x3, bounded: two calls */
                    const int32_t xs = (int32_t)xstep, ys = (int32_t)ystep;
                    const int32_t dpar[4] = {xs, ys - 3 * xs, 2 * ys + 2 * xs - 4,
                                             (int32_t)(intptr_t)(acc + C)};
                    m0_dw3x3_all(base, packed, acc, dpar);
                    m0_rqb(acc, rq, output, par);
                    output += C;
                    continue;
                }
                if (kw == 3 && kh == 3 && packed[6] >= 0) {   /* 3x3, m0_rq: one call */
                    m0_dw3x3_pixel(base, packed, packed + (C / 4) * words, words,
                                   (int32_t)xstep, (int32_t)ystep - 3 * (int32_t)xstep,
                                   output, out_off, lo, hi);
                    output += C;
                    continue;
                }
#endif
                for (ch = 0; ch < C; ch += 4) {
                    const int32_t *w = s + 4 * hdr;
                    const int8_t *xr = base + ch;
                    int32_t a0 = s[0], a1 = s[1], a2 = s[2], a3 = s[3];
#if KML_M0_ASM
                    if (kw == 3 && kh == 3) {   /* the usual window: one call */
                        int32_t a[4];
                        a[0] = (int32_t)ystep - 3 * (int32_t)xstep;
                        a[1] = (int32_t)(intptr_t)s;
                        m0_dw3x3(xr, w, (int32_t)xstep, a);
                        a0 = a[0]; a1 = a[1]; a2 = a[2]; a3 = a[3];
                    } else if (kw == 3) {      /* 3-wide: no tap loop */
                        for (ky = 0; ky < kh; ++ky) {
                            const int8_t *x = xr;
                            M0_TAP4S M0_TAP4S M0_TAP4S
                            xr += ystep;
                        }
                    } else
#endif
                    for (ky = 0; ky < kh; ++ky) {
                        const int8_t *x = xr;
                        for (kx = 0; kx < kw; ++kx) {
#if KML_M0_ASM
                            M0_TAP4
#else
                            a0 += x[0] * w[0]; a1 += x[1] * w[1];
                            a2 += x[2] * w[2]; a3 += x[3] * w[3];
#endif
                            x += xstep;
                            w += 4;
                        }
                        xr += ystep;
                    }
                    if (rq) {                           /* requantized per pixel */
                        acc[ch] = a0;
                        acc[ch + 1] = a1;
                        acc[ch + 2] = a2;
                        acc[ch + 3] = a3;
                    } else if (s[6] >= 0 && lo >= out_off) {   /* m0_rq and a fused ReLU */
                        output[0] = (int8_t)m0_rqcz(a0, s + 4, out_off, lo, hi);
                        output[1] = (int8_t)m0_rqcz(a1, s + 7, out_off, lo, hi);
                        output[2] = (int8_t)m0_rqcz(a2, s + 10, out_off, lo, hi);
                        output[3] = (int8_t)m0_rqcz(a3, s + 13, out_off, lo, hi);
                    } else if (s[6] >= 0) {   /* the layer takes m0_rq (all or none) */
                        output[0] = (int8_t)m0_rqc(a0, s + 4, out_off, lo, hi);
                        output[1] = (int8_t)m0_rqc(a1, s + 7, out_off, lo, hi);
                        output[2] = (int8_t)m0_rqc(a2, s + 10, out_off, lo, hi);
                        output[3] = (int8_t)m0_rqc(a3, s + 13, out_off, lo, hi);
                    } else {
                        output[0] = m0_out(a0, s + 4, out_off, lo, hi);
                        output[1] = m0_out(a1, s + 7, out_off, lo, hi);
                        output[2] = m0_out(a2, s + 10, out_off, lo, hi);
                        output[3] = m0_out(a3, s + 13, out_off, lo, hi);
                    }
                    if (!rq) {
                        output += 4;
                    }
                    s += words;
                }
                if (rq) {
                    m0_rqb_run(acc, rq, output, par);
                    output += C;
                }
            }
        }
    }
}
