/* kiloml runtime (armv7em): AVERAGE_POOL_2D four channels per 32-bit word; MAX_POOL_2D and the
 * remaining channels one at a time as portable.
 *
 * SXTAB16 adds a word's bytes 0 and 2 (and, rotated, 1 and 3) to two int16 lanes, so four
 * channels take two instructions per tap; windows of up to 255 taps cannot overflow a lane
 * (255 * 128 < 2^15). Output pixels are written in increasing order after their window is
 * read (in place as the portable kernel). */
#include "kml_pool.h"

#include "kml_arm.h"

static int8_t pool_out(const kml_pool_params *p, int32_t acc, int32_t count, int is_max)
{
    if (!is_max) {
        acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
    }
    return kml_clamp8(acc, p->act_min, p->act_max);
}

static void pool(const kml_pool_params *p, const int8_t *input, int8_t *output, int is_max)
{
    const size_t c = (size_t)p->channels;
    const size_t row = (size_t)p->in_w * c;
    int32_t b, oy, ox, g, ky, kx, i, sum[4];
    int8_t *out = output;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *in = input + (size_t)b * (size_t)p->in_h * row;
        for (oy = 0; oy < p->out_h; ++oy) {
            const int32_t y0 = oy * p->stride_h - p->pad_top;
            const int32_t ky0 = y0 < 0 ? -y0 : 0;
            const int32_t ky1 = p->in_h - y0 < p->k_h ? p->in_h - y0 : p->k_h;
            for (ox = 0; ox < p->out_w; ++ox, out += c) {
                const int32_t x0 = ox * p->stride_w - p->pad_left;
                const int32_t kx0 = x0 < 0 ? -x0 : 0;
                const int32_t kx1 = p->in_w - x0 < p->k_w ? p->in_w - x0 : p->k_w;
                const int32_t count = (ky1 - ky0) * (kx1 - kx0);
                const int8_t *win = in + (size_t)(y0 + ky0) * row + (size_t)(x0 + kx0) * c;
                g = 0;
                if (!is_max && count <= 255) {
                    for (; g + 4 <= (int32_t)c; g += 4) {
                        const int8_t *r = win + g;
                        int32_t e = 0, o = 0; /* int16 lane sums of channels (0, 2), (1, 3) */
                        for (ky = ky0; ky < ky1; ++ky, r += row) {
                            const int8_t *x = r;
                            for (kx = kx0; kx < kx1; ++kx, x += c) {
                                const int32_t v = kml_ld32(x);
                                e = __sxtab16(e, v);
                                o = kml_sxtab16_ror8(o, v);
                            }
                        }
                        sum[0] = (int16_t)e;
                        sum[1] = (int16_t)o;
                        sum[2] = e >> 16;
                        sum[3] = o >> 16;
                        for (i = 0; i < 4; ++i) {
                            out[g + i] = pool_out(p, sum[i], count, 0);
                        }
                    }
                }
                for (; g < (int32_t)c; ++g) {
                    const int8_t *r = win + g;
                    int32_t acc = is_max ? -128 : 0;
                    for (ky = ky0; ky < ky1; ++ky, r += row) {
                        const int8_t *x = r;
                        for (kx = kx0; kx < kx1; ++kx, x += c) {
                            acc = is_max ? (*x > acc ? *x : acc) : acc + *x;
                        }
                    }
                    out[g] = pool_out(p, acc, count, is_max);
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
