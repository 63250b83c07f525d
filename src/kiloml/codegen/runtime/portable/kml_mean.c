/* kiloml runtime: portable int8 MEAN. Each output sums its reduced slice in int32 (no scratch
 * buffer), then rescales the zero-point-corrected sum with one multiplier. */
#include "kml_mean.h"

void kml_mean_s8(const kml_mean_params *p, const int8_t *input, int8_t *output)
{
    const int32_t s3 = 1;
    const int32_t s2 = p->d3;
    const int32_t s1 = p->d2 * s2;
    const int32_t s0 = p->d1 * s1;
    /* output extents (1 on reduced axes) and inner extents (1 on kept axes) */
    const int32_t o0 = p->r0 ? 1 : p->d0, o1 = p->r1 ? 1 : p->d1;
    const int32_t o2 = p->r2 ? 1 : p->d2, o3 = p->r3 ? 1 : p->d3;
    const int32_t k0 = p->r0 ? p->d0 : 1, k1 = p->r1 ? p->d1 : 1;
    const int32_t k2 = p->r2 ? p->d2 : 1, k3 = p->r3 ? p->d3 : 1;
    int32_t a, b, c, d, i, j, k, l;
    size_t o = 0;
    for (a = 0; a < o0; ++a) {
        for (b = 0; b < o1; ++b) {
            for (c = 0; c < o2; ++c) {
                for (d = 0; d < o3; ++d) {
                    const int8_t *base = input + (a * s0 + b * s1 + c * s2 + d * s3);
                    int32_t sum = 0;
                    int32_t out;
                    for (i = 0; i < k0; ++i) {
                        for (j = 0; j < k1; ++j) {
                            for (k = 0; k < k2; ++k) {
                                for (l = 0; l < k3; ++l) {
                                    sum += base[i * s0 + j * s1 + k * s2 + l * s3];
                                }
                            }
                        }
                    }
                    /* check() bounds count so that this stays inside int32 */
                    out = kml_mbqm(sum - p->in_zp * p->count, p->mult, p->shift) + p->out_zp;
                    output[o++] = (int8_t)kml_clamp(out, -128, 127);
                }
            }
        }
    }
}
