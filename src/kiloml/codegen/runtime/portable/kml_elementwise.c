/* kiloml runtime: portable broadcasting ADD and MUL, TFLite reference semantics. */
#include "kml_elementwise.h"

void kml_add_s8(const kml_add_params *p, const int8_t *a, const int8_t *b, int8_t *output)
{
    int32_t i0, i1, i2, i3;
    size_t o = 0;
    for (i0 = 0; i0 < p->d0; ++i0) {
        for (i1 = 0; i1 < p->d1; ++i1) {
            for (i2 = 0; i2 < p->d2; ++i2) {
                for (i3 = 0; i3 < p->d3; ++i3) {
                    const int32_t ia = i0 * p->a_s0 + i1 * p->a_s1 + i2 * p->a_s2 + i3 * p->a_s3;
                    const int32_t ib = i0 * p->b_s0 + i1 * p->b_s1 + i2 * p->b_s2 + i3 * p->b_s3;
                    const int32_t va = ((int32_t)a[ia] + p->in1_offset) * (1 << p->left_shift);
                    const int32_t vb = ((int32_t)b[ib] + p->in2_offset) * (1 << p->left_shift);
                    const int32_t sum = kml_mbqm(va, p->in1_mult, p->in1_shift)
                                      + kml_mbqm(vb, p->in2_mult, p->in2_shift);
                    const int32_t out = kml_mbqm(sum, p->out_mult, p->out_shift) + p->out_offset;
                    output[o++] = (int8_t)kml_clamp(out, p->act_min, p->act_max);
                }
            }
        }
    }
}

void kml_mul_s8(const kml_mul_params *p, const int8_t *a, const int8_t *b, int8_t *output)
{
    int32_t i0, i1, i2, i3;
    size_t o = 0;
    for (i0 = 0; i0 < p->d0; ++i0) {
        for (i1 = 0; i1 < p->d1; ++i1) {
            for (i2 = 0; i2 < p->d2; ++i2) {
                for (i3 = 0; i3 < p->d3; ++i3) {
                    const int32_t ia = i0 * p->a_s0 + i1 * p->a_s1 + i2 * p->a_s2 + i3 * p->a_s3;
                    const int32_t ib = i0 * p->b_s0 + i1 * p->b_s1 + i2 * p->b_s2 + i3 * p->b_s3;
                    /* |product| <= 255 * 255: no overflow; check() bounds out_shift <= 15 */
                    const int32_t prod = ((int32_t)a[ia] + p->in1_offset)
                                       * ((int32_t)b[ib] + p->in2_offset);
                    const int32_t out = kml_mbqm(prod, p->out_mult, p->out_shift) + p->out_offset;
                    output[o++] = (int8_t)kml_clamp(out, p->act_min, p->act_max);
                }
            }
        }
    }
}
