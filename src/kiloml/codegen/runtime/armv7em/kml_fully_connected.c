/* kiloml runtime (armv7em): FULLY_CONNECTED with dual 16-bit MACs.
 *
 * Two output units at a time; per group of four inputs: one load of four int8 inputs split
 * into int16 lanes (0, 2) and (1, 3) with the offset added (SXTAB16), one LDRD of the two
 * units' weight words, 4 SXTB16 and 4 SMLAD. The input is read in place (no scratch: a
 * converted copy would cost as much RAM as the input and is reused only units / 2 times); the
 * last partial group comes from a small zero-padded copy on the stack. ``packed`` is the
 * matrix stream of kiloml/codegen/armv7em.py (as CONV_2D's, rows padded to a multiple of 8);
 * ``weights``, ``bias``, ``mult`` and ``shift`` are then 0.
 */
#include "kml_fully_connected.h"

#include "kml_arm.h"

/* One group of four inputs (at x) for 2 units. */
static inline void fc_mac(const int32_t **w, const int8_t *x, int32_t off2, int32_t *a0,
                          int32_t *a1)
{
    int32_t w0, w1, xv, xo, wo;
    const int32_t *pw = *w;
    __asm__("ldr %[xv], [%[x]]\n\t"
            "ldrd %[w0], %[w1], [%[pw]], #8\n\t"
            "sxtab16 %[xo], %[o2], %[xv], ror #8\n\t"
            "sxtab16 %[xv], %[o2], %[xv]\n\t"
            "sxtb16 %[wo], %[w0], ror #8\n\t"
            "sxtb16 %[w0], %[w0]\n\t"
            "smlad %[a0], %[xv], %[w0], %[a0]\n\t"
            "smlad %[a0], %[xo], %[wo], %[a0]\n\t"
            "sxtb16 %[wo], %[w1], ror #8\n\t"
            "sxtb16 %[w1], %[w1]\n\t"
            "smlad %[a1], %[xv], %[w1], %[a1]\n\t"
            "smlad %[a1], %[xo], %[wo], %[a1]"
            : [w0] "=&r"(w0), [w1] "=&r"(w1), [xv] "=&r"(xv), [xo] "=&r"(xo), [wo] "=&r"(wo),
              [pw] "+r"(pw), [a0] "+r"(*a0), [a1] "+r"(*a1)
            : [x] "r"(x), [o2] "r"(off2), "m"(*(const int32_t(*)[2])pw),
              "m"(*(const int8_t(*)[4])x));
    *w = pw;
}

static int8_t fc_generic(const kml_fc_params *p, int32_t acc, int32_t m, int32_t shift)
{
    return kml_clamp8(kml_mbqm(acc, m, shift) + p->out_offset, p->act_min, p->act_max);
}

void kml_fully_connected_s8(const kml_fc_params *p, const int8_t *input, const int8_t *weights,
                            const int32_t *bias, const int32_t *mult, const int32_t *shift,
                            int8_t *output, const int32_t *packed, int32_t *scratch)
{
    const int32_t groups = ((p->depth + 7) >> 3) * 2; /* per weight row, zero padded */
    const int32_t full = p->depth >> 2;                 /* groups read from the input */
    const int32_t off2 = kml_pair16(p->in_offset);
    const int32_t c2 = 2 * p->out_offset + 1;
    const int8_t zp = (int8_t)(-p->in_offset);
    int32_t b;
    (void)weights;
    (void)bias;
    (void)mult;
    (void)shift;
    (void)scratch;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *x0 = input + (size_t)b * (size_t)p->depth;
        const int8_t *x_full = x0 + 4 * full;
        int8_t *out = output + (size_t)b * (size_t)p->units;
        const int32_t *w = packed;
        int8_t tail[8]; /* the last partial group(s), zero point padded (0 with the offset) */
        int32_t u, i;
        for (i = 0; i < 4 * (groups - full); ++i) {
            tail[i] = 4 * full + i < p->depth ? x_full[i] : zp;
        }
        for (u = 0; u < p->units; u += 2) {
            const int32_t two = u + 1 < p->units;
            int32_t a0 = w[0], a1 = two ? w[1] : 0;
            const int8_t *x = x0;
            w += two ? 2 : 1;
            if (two) {
                for (; x < x_full; x += 4) {
                    fc_mac(&w, x, off2, &a0, &a1);
                }
                for (i = 0; i < groups - full; ++i) {
                    fc_mac(&w, tail + 4 * i, off2, &a0, &a1);
                }
            } else {
                for (i = 0; i < groups; ++i, ++w) {
                    const int32_t v = kml_ld32(i < full ? x0 + 4 * i : tail + 4 * (i - full));
                    a0 = __smlad(__sxtab16(off2, v), __sxtb16(*w), a0);
                    a0 = __smlad(kml_sxtab16_ror8(off2, v), kml_sxtb16_ror8(*w), a0);
                }
            }
            {
                const int32_t m0 = w[0], m1 = two ? w[1] : 0, rs = two ? w[2] : w[1];
                w += two ? 3 : 2;
                if ((rs & KML_GENERIC_PAIR) == 0) {
                    const int32_t r0 = rs & 0xFF, r1 = (rs >> 8) & 0xFF;
                    out[u] = (int8_t)kml_ssat8(kml_rq(a0, m0, r0, kml_rq_k(c2, r0)));
                    if (two) {
                        out[u + 1] = (int8_t)kml_ssat8(kml_rq(a1, m1, r1, kml_rq_k(c2, r1)));
                    }
                } else {
                    out[u] = fc_generic(p, a0, m0, (int8_t)rs);
                    if (two) {
                        out[u + 1] = fc_generic(p, a1, m1, (int8_t)(rs >> 8));
                    }
                }
            }
        }
    }
}
