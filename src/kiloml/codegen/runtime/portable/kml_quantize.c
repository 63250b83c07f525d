/* kiloml runtime: portable QUANTIZE / DEQUANTIZE. */
#include "kml_quantize.h"

/* std::round for a float already limited to [-1024, 1024]: truncate, then look at the exact
 * fractional part (x - trunc(x) is representable, so no double rounding can occur). */
static int32_t round_half_away(float x)
{
    int32_t t = (int32_t)x;
    const float frac = x - (float)t;
    if (frac >= 0.5f) {
        ++t;
    } else if (frac <= -0.5f) {
        --t;
    }
    return t;
}

void kml_quantize_f32_s8(const kml_affine_params *p, const float *input, int8_t *output)
{
    int32_t i;
    for (i = 0; i < p->count; ++i) {
        float q = input[i] / p->scale;
        if (q != q) {
            q = 0.0f;
        } else if (q > 1024.0f) {
            q = 1024.0f;
        } else if (q < -1024.0f) {
            q = -1024.0f;
        }
        output[i] = (int8_t)kml_clamp(round_half_away(q) + p->zero_point, -128, 127);
    }
}

void kml_requantize_s8(const kml_requantize_params *p, const int8_t *input, int8_t *output)
{
    int32_t i;
    for (i = 0; i < p->count; ++i) {
        const int32_t out = p->out_zp + kml_mbqm((int32_t)input[i] - p->in_zp, p->mult, p->shift);
        output[i] = (int8_t)kml_clamp(out, -128, 127);
    }
}

void kml_dequantize_s8_f32(const kml_affine_params *p, const int8_t *input, float *output)
{
    int32_t i;
    for (i = 0; i < p->count; ++i) {
        /* TFLM multiplies in double and rounds to float; (x - zp) has at most 9 significant
         * bits and scale 24, so the double product is exact and one float multiply rounds
         * it identically */
        output[i] = p->scale * (float)((int32_t)input[i] - p->zero_point);
    }
}
