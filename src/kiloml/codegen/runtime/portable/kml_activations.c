/* kiloml runtime: portable int8 LOGISTIC, TANH, RELU and RELU6. */
#include "kml_activations.h"
#include "kml_fixedpoint.h"

#define KML_SIGMOID_INPUT_BITS 4

void kml_logistic_s8(const kml_sigmoid_params *p, const int8_t *input, int8_t *output)
{
    int32_t i;
    for (i = 0; i < p->count; ++i) {
        const int32_t x = (int32_t)input[i] - p->in_zp;
        int32_t out;
        if (x <= -p->radius) {
            out = -128;
        } else if (x >= p->radius) {
            out = 127;
        } else {
            /* inside the radius the left shift cannot overflow (radius << shift < 2^31) */
            const int32_t q4 = kml_mbqm(x, p->mult, p->shift);
            out = kml_clamp(kml_rdbp(kml_logistic(q4, KML_SIGMOID_INPUT_BITS), 31 - 8) - 128,
                            -128, 127);
        }
        output[i] = (int8_t)out;
    }
}

void kml_tanh_s8(const kml_sigmoid_params *p, const int8_t *input, int8_t *output)
{
    int32_t i;
    for (i = 0; i < p->count; ++i) {
        const int32_t x = (int32_t)input[i] - p->in_zp;
        int32_t out;
        if (x <= -p->radius) {
            out = -128;
        } else if (x >= p->radius) {
            out = 127;
        } else {
            const int32_t q4 = kml_mbqm(x, p->mult, p->shift);
            out = kml_clamp(kml_rdbp(kml_tanh(q4, KML_SIGMOID_INPUT_BITS), 31 - 7), -128, 127);
        }
        output[i] = (int8_t)out;
    }
}

void kml_relu_s8(const kml_relu_params *p, const int8_t *input, int8_t *output)
{
    int32_t i;
    for (i = 0; i < p->count; ++i) {
        const int32_t out = p->out_zp + kml_mbqm((int32_t)input[i] - p->in_zp, p->mult, p->shift);
        output[i] = (int8_t)kml_clamp(out, p->act_min, p->act_max);
    }
}

void kml_clamp_s8(int32_t count, int32_t lo, int32_t hi, const int8_t *input, int8_t *output)
{
    int32_t i;
    for (i = 0; i < count; ++i) {
        output[i] = (int8_t)kml_clamp((int32_t)input[i], lo, hi);
    }
}
