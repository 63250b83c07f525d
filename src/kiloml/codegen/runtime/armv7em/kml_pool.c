/* kiloml runtime (armv7em): pooling four channels per 32-bit word.
 *
 * AVERAGE_POOL_2D: SXTAB16 adds a word's bytes 0 and 2 (and, rotated, 1 and 3) to two int16
 * lanes, so four channels take two instructions per tap; windows of up to 255 taps cannot
 * overflow a lane (255 * 128 < 2^15). MAX_POOL_2D: SSUB8 sets the GE flag of each byte lane
 * where the tap is >= the running maximum, SEL then takes those lanes from the tap (two
 * instructions per tap of four channels); the activation clamps the same way against
 * [act_min, act_max] replicated in the four lanes; layers whose channel count is not a
 * multiple of 4 take the one-channel path (as portable). Output pixels are written in
 * increasing order after their window is read (in place as the portable kernel). */
#include "kml_arm.h"
#include "kml_pool.h"

/* Per byte lane (signed): the larger of m and v. */
static inline int32_t max8x4(int32_t m, int32_t v)
{
    int32_t d;
    __asm__("ssub8 %[d], %[v], %[m]\n\t"
            "sel %[m], %[v], %[m]"
            : [d] "=&r"(d), [m] "+r"(m)
            : [v] "r"(v)
            : "cc");
    (void)d;
    return m;
}

/* Per byte lane (signed): the smaller of m and h. */
static inline int32_t min8x4(int32_t m, int32_t h)
{
    int32_t d;
    __asm__("ssub8 %[d], %[m], %[h]\n\t"
            "sel %[m], %[h], %[m]"
            : [d] "=&r"(d), [m] "+r"(m)
            : [h] "r"(h)
            : "cc");
    (void)d;
    return m;
}

/* MAX_POOL_2D of four channels (a window of rows from r): the maximum per byte lane,
 * clamped to the activation range (lo4, hi4: act_min, act_max in every lane). */
static inline int32_t max_window4(const int8_t *r, size_t row, size_t c, int32_t kx0,
                                  int32_t kx1, int32_t ky0, int32_t ky1, int32_t lo4,
                                  int32_t hi4)
{
    int32_t m = lo4, ky, kx; /* starting from act_min is the lower clamp */
    for (ky = ky0; ky < ky1; ++ky, r += row) {
        const int8_t *x = r;
        for (kx = kx0; kx < kx1; ++kx, x += c) {
            m = max8x4(m, kml_ld32(x));
        }
    }
    return min8x4(m, hi4);
}

static inline int32_t lanes(int32_t v)
{
    return (int32_t)(((uint32_t)v & 0xFFu) * 0x01010101u);
}

static KML_SMALL void pool(const kml_pool_params *p, const int8_t *input, int8_t *output,
                           int is_max)
{
    const size_t c = (size_t)p->channels;
    const size_t row = (size_t)p->in_w * c;
    int32_t b, oy, ox, g, ky, kx, i;
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
                for (g = 0; g < (int32_t)c; g += i) {
                    /* four channels in two int16 lane pairs, or one channel in e */
                    const int32_t simd = !is_max && count <= 255 && g + 4 <= (int32_t)c;
                    const int8_t *r = win + g;
                    int32_t e = is_max ? -128 : 0, o = 0, sum[4];
                    for (ky = ky0; ky < ky1; ++ky, r += row) {
                        const int8_t *x = r;
                        if (simd) { /* the hot case: no per-tap tests */
                            for (kx = kx0; kx < kx1; ++kx, x += c) {
                                const int32_t v = kml_ld32(x);
                                e = __sxtab16(e, v);
                                o = kml_sxtab16_ror8(o, v);
                            }
                            continue;
                        }
                        for (kx = kx0; kx < kx1; ++kx, x += c) {
                            e = is_max ? (*x > e ? *x : e) : e + *x;
                        }
                    }
                    sum[0] = simd ? (int16_t)e : e;
                    sum[1] = (int16_t)o;
                    sum[2] = e >> 16;
                    sum[3] = o >> 16;
                    for (i = 0; i < (simd ? 4 : 1); ++i) {
                        int32_t v = sum[i];
                        if (!is_max) {
                            v = v > 0 ? (v + count / 2) / count : (v - count / 2) / count;
                        }
                        out[g + i] = kml_clamp8(v, p->act_min, p->act_max);
                    }
                }
            }
        }
    }
}

void kml_avg_pool_s8(const kml_pool_params *p, const int8_t *input, int8_t *output)
{
    pool(p, input, output, 0);
}

/* MAX_POOL_2D with a channel count that is a multiple of 4: every channel four per word
 * (-O2: its loops run per output pixel and group). */
static void max_pool4(const kml_pool_params *p, const int8_t *input, int8_t *output)
{
    const size_t c = (size_t)p->channels;
    const size_t row = (size_t)p->in_w * c;
    const int32_t lo4 = lanes(p->act_min), hi4 = lanes(p->act_max);
    int32_t b, oy, ox, g;
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
                const int8_t *win = in + (size_t)(y0 + ky0) * row + (size_t)(x0 + kx0) * c;
                for (g = 0; g < (int32_t)c; g += 4) {
                    const int32_t v = max_window4(win + g, row, c, kx0, kx1, ky0, ky1, lo4,
                                                  hi4);
                    memcpy(out + g, &v, sizeof v);
                }
            }
        }
    }
}

void kml_max_pool_s8(const kml_pool_params *p, const int8_t *input, int8_t *output)
{
    if (p->channels % 4 == 0) {
        max_pool4(p, input, output);
    } else {
        pool(p, input, output, 1);
    }
}
