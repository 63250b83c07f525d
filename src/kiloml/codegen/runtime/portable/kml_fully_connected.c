/* kiloml runtime: portable FULLY_CONNECTED, TFLite reference semantics. */
#include "kml_fully_connected.h"

void kml_fully_connected_s8(const kml_fc_params *p, const int8_t *input, const int8_t *weights,
                            const int32_t *bias, const int32_t *mult, const int32_t *shift,
                            int8_t *output, const int32_t *packed, int32_t *scratch)
{
    int32_t b, u, d;
    (void)packed;
    (void)scratch;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *x = input + (size_t)b * (size_t)p->depth;
        for (u = 0; u < p->units; ++u) {
            const int8_t *w = weights + (size_t)u * (size_t)p->depth;
            int32_t acc = 0;
            for (d = 0; d < p->depth; ++d) {
                acc += (int32_t)w[d] * ((int32_t)x[d] + p->in_offset);
            }
            if (bias != 0) {
                acc += bias[u];
            }
            acc = kml_mbqm(acc, mult[u], shift[u]) + p->out_offset;
            output[(size_t)b * (size_t)p->units + (size_t)u] = (int8_t)kml_clamp(acc, p->act_min, p->act_max);
        }
    }
}

/* The specialised entry points of the armv7em runtime (int16 weights, uniform streams) are
 * the general kernel here (as kml_conv.c's entries). */
void kml_fully_connected_x_s8(const kml_fc_params *p, const int8_t *input,
                              const int8_t *weights, const int32_t *bias, const int32_t *mult,
                              const int32_t *shift, int8_t *output, const int32_t *packed,
                              int32_t *scratch)
{
    kml_fully_connected_s8(p, input, weights, bias, mult, shift, output, packed, scratch);
}

void kml_fully_connected_u_s8(const kml_fc_params *p, const int8_t *input,
                              const int8_t *weights, const int32_t *bias, const int32_t *mult,
                              const int32_t *shift, int8_t *output, const int32_t *packed,
                              int32_t *scratch)
{
    kml_fully_connected_s8(p, input, weights, bias, mult, shift, output, packed, scratch);
}
