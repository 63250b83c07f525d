/* kiloml runtime: portable int8 SOFTMAX, TFLite reference semantics (gemmlowp exp). */
#include "kml_softmax.h"
#include "kml_fixedpoint.h"

#define KML_SCALED_DIFF_BITS 5
#define KML_ACCUM_BITS 12
/* exp of the first KML_SOFTMAX_KEEP values of a row is kept from the sum for the outputs (a
 * classifier's row fits: each exp is computed once); later values compute it again */
#define KML_SOFTMAX_KEEP 32

static KML_SMALL int32_t scaled_exp(const kml_softmax_params *p, int32_t diff)
{
    const int32_t shifted = (int32_t)(uint32_t)((uint32_t)diff << p->input_left_shift);
    return kml_exp_on_negative_values(kml_srdhm(shifted, p->input_multiplier), KML_SCALED_DIFF_BITS);
}

KML_SMALL void kml_softmax_s8(const kml_softmax_params *p, const int8_t *input, int8_t *output)
{
    int32_t r, c;
    for (r = 0; r < p->rows; ++r) {
        const int8_t *x = input + (size_t)r * (size_t)p->depth;
        int8_t *y = output + (size_t)r * (size_t)p->depth;
        int32_t max_v = -128;
        int32_t sum = 0;
        int32_t headroom, bits, scale;
        int32_t kept[KML_SOFTMAX_KEEP];
        for (c = 0; c < p->depth; ++c) {
            max_v = x[c] > max_v ? x[c] : max_v;
        }
        for (c = 0; c < p->depth; ++c) {
            const int32_t diff = (int32_t)x[c] - max_v;
            if (diff >= p->diff_min) {
                const int32_t e = scaled_exp(p, diff);
                if (c < KML_SOFTMAX_KEEP) {
                    kept[c] = e;
                }
                sum = kml_wrap_add(sum, kml_sat_shift(e, -KML_ACCUM_BITS));
            }
        }
        headroom = kml_clz32((uint32_t)sum);
        bits = KML_ACCUM_BITS - headroom;
        scale = kml_one_over_one_plus_x(
            (int32_t)(uint32_t)(((uint32_t)sum << headroom) - 0x80000000u));
        for (c = 0; c < p->depth; ++c) {
            const int32_t diff = (int32_t)x[c] - max_v;
            int32_t out = -128;
            if (diff >= p->diff_min) {
                const int32_t e = c < KML_SOFTMAX_KEEP ? kept[c] : scaled_exp(p, diff);
                out = kml_rdbp(kml_srdhm(scale, e), bits + 31 - 8) - 128;
                out = kml_clamp(out, -128, 127);
            }
            y[c] = (int8_t)out;
        }
    }
}
