/* kiloml runtime (armv7em): FULLY_CONNECTED with dual 16-bit MACs.
 *
 * Two output units at a time; per group of four inputs: one load of four int8 inputs split
 * into int16 lanes (0, 2) and (1, 3) with the offset added (SXTAB16), one LDRD of the two
 * units' weight words, 4 SXTB16 and 4 SMLAD. The input is read in place (no scratch: a
 * converted copy would cost as much RAM as the input and is reused only units / 2 times); the
 * last partial group comes from a small zero-padded copy on the stack. ``packed`` is the
 * matrix stream of kiloml/codegen/armv7em.py (as CONV_2D's, rows padded to a multiple of 8,
 * units padded to an even count); ``weights``, ``bias``, ``mult`` and ``shift`` are then 0.
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

void kml_fully_connected_s8(const kml_fc_params *p, const int8_t *input, const int8_t *weights,
                            const int32_t *bias, const int32_t *mult, const int32_t *shift,
                            int8_t *output, const int32_t *packed, int32_t *scratch)
{
    const int32_t groups = ((p->depth + 7) >> 3) * 2; /* per weight row, zero padded */
    const int32_t whole = p->depth >> 2;                /* groups read from the input */
    const int32_t off2 = kml_pair16(p->in_offset);
    const int32_t c2 = 2 * p->out_offset + 1;
    int32_t b;
    (void)weights;
    (void)bias;
    (void)mult;
    (void)shift;
    (void)scratch;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *x0 = input + (size_t)b * (size_t)p->depth;
        const int8_t *x_end = x0 + 4 * whole;
        int8_t *out = output + (size_t)b * (size_t)p->units;
        const int32_t *w = packed + 1; /* past the stream's generic flag */
        int8_t tail[8]; /* the last partial group(s), zero point padded (0 with the offset) */
        int32_t u, i;
        for (i = 0; i < 4 * (groups - whole); ++i) {
            tail[i] = 4 * whole + i < p->depth ? x_end[i] : (int8_t)(-p->in_offset);
        }
        for (u = 0; u < p->units; u += 2) {
            int32_t a0 = w[0], a1 = w[1], m0, m1, rs, o;
            const int8_t *x;
            w += 2;
            for (x = x0; x < x_end; x += 4) {
                fc_mac(&w, x, off2, &a0, &a1);
            }
            for (i = 0; i < groups - whole; ++i) {
                fc_mac(&w, tail + 4 * i, off2, &a0, &a1);
            }
            m0 = w[0];
            m1 = w[1];
            rs = w[2];
            w += 3;
            for (i = 0; i < 2 && u + i < p->units; ++i) {
                const int32_t acc = i == 0 ? a0 : a1, m = i == 0 ? m0 : m1;
                if ((rs & KML_GENERIC_PAIR) == 0) {
                    const int32_t r = (rs >> (8 * i)) & 0xFF;
                    o = kml_rq(acc, m, r, kml_rq_k(c2, r));
                } else {
                    o = kml_mbqm(acc, m, (int8_t)(rs >> (8 * i))) + p->out_offset;
                }
                out[u + i] = kml_clamp8(o, p->act_min, p->act_max);
            }
        }
    }
}
