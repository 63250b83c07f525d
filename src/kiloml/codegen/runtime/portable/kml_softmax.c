/* kiloml runtime: portable int8 SOFTMAX, TFLite reference semantics (gemmlowp exp).
 *
 * The exp of each class is gemmlowp's exp_on_negative_values with 5 integer bits
 * (kml_fixedpoint.h's kml_exp_on_negative_values(a, 5)), written out for that case: the
 * barrel shifter stops at the remainder's highest bit, and the doubling high multiplications
 * skip the INT32_MIN x INT32_MIN case and the roundings the sign fix-up where the operands'
 * ranges exclude them (each noted below). Same results bit for bit (tests/codegen/
 * test_softmax_exp.py compares the two over the whole input range on the host, and the
 * Thumb-2 multiplication in the emulator); 40 % fewer cycles per class on the Cortex-M4. */
#include "kml_softmax.h"
#include "kml_fixedpoint.h"

#define KML_SCALED_DIFF_BITS 5
#define KML_ACCUM_BITS 12
/* exp of the first KML_SOFTMAX_KEEP values of a row is kept from the sum for the outputs (a
 * classifier's row fits: each exp is computed once); later values compute it again */
#define KML_SOFTMAX_KEEP 32

/* kml_srdhm for operands that are never both INT32_MIN (one of them is >= 0 here). On
 * Thumb-2 in four instructions: of the product (hi, lo) the result is 2 hi + bit 31 of lo +
 * bit 30 of lo (the rounding), i.e. LSLS puts bit 31 in the carry for ADC, and bit 30 becomes
 * the shifted lo's bit 31; GCC's form takes five with two constants to set up. */
static inline int32_t srdhm_nm(int32_t a, int32_t b)
{
#if defined(__thumb2__) && defined(__OPTIMIZE__)
    int32_t lo, hi, r;
    __asm__("smull %[lo], %[hi], %[a], %[b]\n\t"
            "lsls %[lo], %[lo], #1\n\t"
            "adc %[r], %[hi], %[hi]\n\t"
            "add %[r], %[r], %[lo], lsr #31"
            : [lo] "=&r"(lo), [hi] "=&r"(hi), [r] "=&r"(r)
            : [a] "r"(a), [b] "r"(b)
            : "cc");
    return r;
#else
    return (int32_t)(((int64_t)a * (int64_t)b + ((int64_t)1 << 30)) >> 31);
#endif
}

/* exp(-2^(i - 2)) in Q0.31, the barrel shifter's factor for bit 24 + i of the remainder */
static const int32_t kml_exp_barrel[7] = {1672461947, 1302514674, 790015084, 290630308,
                                          39332535, 720401, 242};

/* kml_exp_on_negative_values(a, 5) for a <= 0 (one copy: called per class). */
static __attribute__((noinline)) int32_t exp_neg5(int32_t a)
{
    /* a_mod = (a mod 1/4) - 1/4 in Q5.26, in [-2^24, 0); the remainder a_mod - a is the
     * multiple of 1/4 that the barrel shifter takes out, for a < 0 in bits 24..30 (rem: those
     * bits at 0..6) */
    const int32_t a_mod = (a & 0xFFFFFF) - 0x1000000;
    uint32_t rem = ((uint32_t)a_mod - (uint32_t)a) >> 24;
    /* kml_exp_quarter of a_mod in Q0.31 (x 2^5, exact: |a_mod| <= 2^24): x in [-2^28, 2^28),
     * so x2, x4 >= 0 and |x3| <= x2 / 8 + 1; x4 / 4 rounds as a non-negative value, and the
     * polynomial's sum v = x2 + (x4 / 4 + x3) / 3 >= 0 (x2 - x2 / 24 - 1, and 0 when x2 = 0),
     * halved rounding half up */
    const int32_t x = (int32_t)((uint32_t)a_mod << 5) + (1 << 28);
    const int32_t x2 = srdhm_nm(x, x);
    const int32_t x3 = srdhm_nm(x2, x);
    const int32_t x4 = srdhm_nm(x2, x2);
    const int32_t v = srdhm_nm(((x4 + 2) >> 2) + x3, 715827883) + x2;
    int32_t r = 1895147668 + srdhm_nm(1895147668, x + ((v + 1) >> 1));
    const int32_t *f = kml_exp_barrel;
    if (a == 0) {
        return INT32_MAX;
    }
    /* r > 0 from here on, the factors too */
    for (; rem != 0u; rem >>= 1, ++f) {
        if (rem & 1u) {
            r = srdhm_nm(r, *f);
        }
    }
    return r;
}

/* exp of diff (int8 x - row max, <= 0) scaled by the layer's beta: the multiplier is
 * positive, so the product is never INT32_MIN x INT32_MIN. */
static inline int32_t scaled_exp(int32_t multiplier, int32_t left_shift, int32_t diff)
{
    const int32_t shifted = (int32_t)(uint32_t)((uint32_t)diff << left_shift);
    return exp_neg5(srdhm_nm(shifted, multiplier));
}

void kml_softmax_s8(const kml_softmax_params *p, const int8_t *input, int8_t *output)
{
    /* the parameters in locals: the int8 stores could alias them */
    const int32_t rows = p->rows, depth = p->depth, diff_min = p->diff_min;
    const int32_t multiplier = p->input_multiplier, left_shift = p->input_left_shift;
    int32_t r, c;
    for (r = 0; r < rows; ++r) {
        const int8_t *x = input + (size_t)r * (size_t)depth;
        int8_t *y = output + (size_t)r * (size_t)depth;
        int32_t max_v = -128;
        int32_t sum = 0;
        int32_t headroom, bits, scale, shift;
        uint32_t half;
        int32_t kept[KML_SOFTMAX_KEEP];
        for (c = 0; c < depth; ++c) {
            max_v = x[c] > max_v ? x[c] : max_v;
        }
        for (c = 0; c < depth; ++c) {
            const int32_t diff = (int32_t)x[c] - max_v;
            if (diff >= diff_min) {
                const int32_t e = scaled_exp(multiplier, left_shift, diff);
                if (c < KML_SOFTMAX_KEEP) {
                    kept[c] = e;
                }
                /* e >= 0: kml_sat_shift(e, -12) rounds half up */
                sum = kml_wrap_add(sum, (int32_t)(((uint32_t)e + 2048u) >> KML_ACCUM_BITS));
            }
        }
        headroom = kml_clz32((uint32_t)sum);
        bits = KML_ACCUM_BITS - headroom;
        scale = kml_one_over_one_plus_x(
            (int32_t)(uint32_t)(((uint32_t)sum << headroom) - 0x80000000u));
        /* scale > 0 and e >= 0: the product rounds as a non-negative value, half up, in
         * unsigned arithmetic while the shift is below 32 (rows whose sum leaves 4 bits of
         * headroom: up to 512 classes at their largest); larger rows take kml_rdbp */
        shift = bits + 31 - 8;
        half = shift < 32 ? 1u << (shift - 1) : 0u;
        for (c = 0; c < depth; ++c) {
            const int32_t diff = (int32_t)x[c] - max_v;
            int32_t out = -128;
            if (diff >= diff_min) {
                const int32_t e = c < KML_SOFTMAX_KEEP
                                      ? kept[c]
                                      : scaled_exp(multiplier, left_shift, diff);
                const int32_t v = srdhm_nm(scale, e);
                out = (half != 0u ? (int32_t)(((uint32_t)v + half) >> shift)
                                  : kml_rdbp(v, shift)) - 128;
                out = out > 127 ? 127 : out;
            }
            y[c] = (int8_t)out;
        }
    }
}
