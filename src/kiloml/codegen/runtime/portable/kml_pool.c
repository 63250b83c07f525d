/* kiloml runtime: portable pooling, TFLite reference semantics. */
#include "kml_pool.h"

static void pool(const kml_pool_params *p, const int8_t *input, int8_t *output, int is_max)
{
    int32_t b, oy, ox, c, ky, kx;
    for (b = 0; b < p->batches; ++b) {
        for (oy = 0; oy < p->out_h; ++oy) {
            for (ox = 0; ox < p->out_w; ++ox) {
                const int32_t y0 = oy * p->stride_h - p->pad_top;
                const int32_t x0 = ox * p->stride_w - p->pad_left;
                const int32_t ky0 = y0 < 0 ? -y0 : 0;
                const int32_t kx0 = x0 < 0 ? -x0 : 0;
                const int32_t ky1 = p->in_h - y0 < p->k_h ? p->in_h - y0 : p->k_h;
                const int32_t kx1 = p->in_w - x0 < p->k_w ? p->in_w - x0 : p->k_w;
                const int32_t count = (ky1 - ky0) * (kx1 - kx0);
                int8_t *out = output + ((size_t)(b * p->out_h + oy) * (size_t)p->out_w + (size_t)ox) * (size_t)p->channels;
                for (c = 0; c < p->channels; ++c) {
                    int32_t acc = is_max ? -128 : 0;
                    for (ky = ky0; ky < ky1; ++ky) {
                        for (kx = kx0; kx < kx1; ++kx) {
                            const int32_t v = input[((size_t)(b * p->in_h + y0 + ky) * (size_t)p->in_w + (size_t)(x0 + kx)) * (size_t)p->channels + (size_t)c];
                            if (is_max) {
                                acc = v > acc ? v : acc;
                            } else {
                                acc += v;
                            }
                        }
                    }
                    if (!is_max) {
                        acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                    }
                    out[c] = (int8_t)kml_clamp(acc, p->act_min, p->act_max);
                }
            }
        }
    }
}

void kml_avg_pool_s8(const kml_pool_params *p, const int8_t *input, int8_t *output)
{
    pool(p, input, output, 0);
}

void kml_max_pool_s8(const kml_pool_params *p, const int8_t *input, int8_t *output)
{
    pool(p, input, output, 1);
}
