/* kiloml runtime (armv7em): CONV_2D (+ fused ADD) and DEPTHWISE_CONV_2D with dual 16-bit MACs.
 *
 * CONV_2D: two output pixels at a time. Their receptive fields are copied into a pair of int16
 * columns in ``scratch`` (kml_arm.h), then ``mm2`` multiplies them with the weights, two output
 * channels at a time (2 x 2 accumulators, 8 SMLAD per group of four inputs). All reads of both
 * windows happen before either pixel is written, so the portable kernel's in-place bound
 * (output pixel q is written after the windows <= q are read) still holds.
 *
 * ``packed`` (kiloml/codegen/armv7em.py, matrix_stream): per output channel pair, two biases,
 * the weight words of the pair (for each group of four inputs, the word of channel 2i then
 * that of channel 2i+1), two multipliers and a word with the two shift bytes and the
 * KML_GENERIC_PAIR flag; an odd last channel has one of each and its own weight words.
 * The pair layout of the column buffer: group g of column j is words 4g + 2j, 4g + 2j + 1.
 */
#include "kml_conv.h"

#include "kml_arm.h"

/* -- columns -------------------------------------------------------------------------------- */

/* n (> 0) groups of four inputs x[0 ..] + offset (off2 in both halves) into column words
 * dst[0], dst[1], dst[4], dst[5], ... */
static void col_quads(int32_t *dst, const int8_t *x, int32_t n, int32_t off2)
{
    if (n & 1) {
        const int32_t v = kml_ld32(x);
        dst[0] = __sxtab16(off2, v);
        dst[1] = kml_sxtab16_ror8(off2, v);
        dst += 4;
        x += 4;
    }
    n >>= 1;
    if (n > 0 && ((uintptr_t)x & 3) == 0) {
        /* two groups per step: LDRD, 4 SXTAB16, two STRD */
        int32_t v0, v1, t0, t1;
        __asm__ volatile("1:\n\t"
                         "ldrd %[v0], %[v1], [%[x]], #8\n\t"
                         "sxtab16 %[t0], %[o2], %[v0]\n\t"
                         "sxtab16 %[t1], %[o2], %[v0], ror #8\n\t"
                         "strd %[t0], %[t1], [%[d]], #16\n\t"
                         "sxtab16 %[t0], %[o2], %[v1]\n\t"
                         "sxtab16 %[t1], %[o2], %[v1], ror #8\n\t"
                         "strd %[t0], %[t1], [%[d]], #16\n\t"
                         "subs %[n], %[n], #1\n\t"
                         "bne 1b"
                         : [v0] "=&r"(v0), [v1] "=&r"(v1), [t0] "=&r"(t0), [t1] "=&r"(t1),
                           [x] "+r"(x), [d] "+r"(dst), [n] "+r"(n)
                         : [o2] "r"(off2)
                         : "cc", "memory");
        return;
    }
    for (; n > 0; --n) {
        const int32_t v0 = kml_ld32(x), v1 = kml_ld32(x + 4);
        dst[0] = __sxtab16(off2, v0);
        dst[1] = kml_sxtab16_ror8(off2, v0);
        dst[4] = __sxtab16(off2, v1);
        dst[5] = kml_sxtab16_ror8(off2, v1);
        dst += 8;
        x += 8;
    }
}

/* Zero variant of col_quads. */
static void col_quads_zero(int32_t *dst, int32_t n)
{
    do {
        dst[0] = 0;
        dst[1] = 0;
        dst += 4;
    } while (--n > 0);
}

static void bytes_fill(int8_t *d, int8_t v, int32_t n)
{
    for (; n > 0; --n) {
        *d++ = v;
    }
}

/* n bytes, four at a time (unaligned word accesses) then one at a time. */
static void bytes_copy(int8_t *d, const int8_t *s, int32_t n)
{
    for (; n >= 4; n -= 4, d += 4, s += 4) {
        memcpy(d, s, 4);
    }
    for (; n > 0; --n) {
        *d++ = *s++;
    }
}

/* Row ky of the window of output pixel (oy, ox) as bytes: the zero point where the window
 * leaves the image (it becomes 0 with the input offset). */
static void window_row(const kml_conv_params *p, const int8_t *row, int32_t ix0, int32_t lo,
                       int32_t hi, int8_t *t)
{
    const int32_t c = p->in_c;
    const int8_t zp = (int8_t)(-p->in_offset);
    int32_t kx;
    if (row == 0) {
        bytes_fill(t, zp, p->k_w * c);
    } else if (p->dil_w == 1) {
        bytes_fill(t, zp, lo * c);
        bytes_copy(t + lo * c, row + (ix0 + lo) * c, (hi - lo) * c);
        bytes_fill(t + hi * c, zp, (p->k_w - hi) * c);
    } else {
        for (kx = 0; kx < p->k_w; ++kx) {
            const int32_t ix = ix0 + kx * p->dil_w;
            if (ix < 0 || ix >= p->in_w) {
                bytes_fill(t + kx * c, zp, c);
            } else {
                bytes_copy(t + kx * c, row + (size_t)(ix * c), c);
            }
        }
    }
}

/* Column of output pixel (oy, ox) (the k_h x k_w x in_c window of image ``in``, k8 values)
 * into ``col``. Rows of whole groups that lie inside the image are converted straight from
 * the input; other rows go through the byte buffer ``tmp`` first (window_row). */
static void conv_column(const kml_conv_params *p, const int8_t *in, int32_t oy, int32_t ox,
                        int32_t *col, int32_t k8, int8_t *tmp)
{
    const int32_t c = p->in_c;
    const int32_t row_len = p->k_w * c;
    const int32_t iy0 = oy * p->stride_h - p->pad_top;
    const int32_t ix0 = ox * p->stride_w - p->pad_left;
    const size_t in_row = (size_t)(p->in_w * c);
    const int32_t off2 = kml_pair16(p->in_offset);
    int32_t lo = ix0 < 0 ? -ix0 : 0; /* taps [lo, hi) of a row are inside the image */
    int32_t hi = p->in_w - ix0;
    int32_t ky;
    if (lo > p->k_w) {
        lo = p->k_w;
    }
    if (hi > p->k_w) {
        hi = p->k_w;
    }
    if (hi < lo) {
        hi = lo;
    }
    if ((row_len & 3) == 0) {
        const int32_t inside = lo == 0 && hi == p->k_w && p->dil_w == 1;
        int32_t *dst = col;
        if (inside && iy0 >= 0 && iy0 + (p->k_h - 1) * p->dil_h < p->in_h) {
            /* the whole window is inside the image: one run of groups per row */
            const int8_t *src = in + (size_t)iy0 * in_row + ix0 * c;
            const size_t step = in_row * (size_t)p->dil_h;
            for (ky = 0; ky < p->k_h; ++ky, dst += row_len, src += step) {
                col_quads(dst, src, row_len >> 2, off2);
            }
            if (dst < col + k8) {
                col_quads_zero(dst, (int32_t)(col + k8 - dst) >> 2);
            }
            return;
        }
        for (ky = 0; ky < p->k_h; ++ky, dst += row_len) {
            const int32_t iy = iy0 + ky * p->dil_h;
            if (iy < 0 || iy >= p->in_h) {
                col_quads_zero(dst, row_len >> 2);
            } else if (inside) {
                col_quads(dst, in + (size_t)iy * in_row + ix0 * c, row_len >> 2, off2);
            } else {
                window_row(p, in + (size_t)iy * in_row, ix0, lo, hi, tmp);
                col_quads(dst, tmp, row_len >> 2, off2);
            }
        }
        if (dst < col + k8) {
            col_quads_zero(dst, (int32_t)(col + k8 - dst) >> 2);
        }
    } else {
        /* tmp[K .. k8) holds the zero point already (conv_run) */
        int8_t *t = tmp;
        if (lo == 0 && hi == p->k_w && p->dil_w == 1 && iy0 >= 0
            && iy0 + (p->k_h - 1) * p->dil_h < p->in_h) {
            const int8_t *src = in + (size_t)iy0 * in_row + ix0 * c;
            const size_t step = in_row * (size_t)p->dil_h;
            for (ky = 0; ky < p->k_h; ++ky, t += row_len, src += step) {
                bytes_copy(t, src, row_len);
            }
        } else {
            for (ky = 0; ky < p->k_h; ++ky, t += row_len) {
                const int32_t iy = iy0 + ky * p->dil_h;
                window_row(p, iy < 0 || iy >= p->in_h ? 0 : in + (size_t)iy * in_row, ix0, lo,
                           hi, t);
            }
        }
        col_quads(col, tmp, k8 >> 2, off2);
    }
}

/* -- matrix kernel ---------------------------------------------------------------------------- */

typedef struct {
    const int32_t *stream; /* packed */
    int32_t out_c, groups, out_offset, act_min, act_max;
} mm_args;

/* Output of accumulator ``acc`` for a channel marked generic: TFLite's arithmetic. */
static int8_t mm_generic(const mm_args *a, int32_t acc, int32_t m, int32_t shift)
{
    return kml_clamp8(kml_mbqm(acc, m, shift) + a->out_offset, a->act_min, a->act_max);
}

/* One group of four inputs for 2 columns x 2 channels: the three loads are issued back to
 * back (they pipeline), then 4 SXTB16 and 8 SMLAD. A macro rather than a function so that the
 * pointers stay in the registers the loop keeps them in. */
#define MAC_2X2(w, x, a0, a1, c0, c1)                                                        \
    do {                                                                                     \
        int32_t w0_, w1_, x0_, x1_, x2_, x3_, wo_;                                           \
        __asm__("ldrd %0, %1, [%6], #8\n\tldrd %2, %3, [%7], #8\n\tldrd %4, %5, [%7], #8"   \
                : "=&r"(w0_), "=&r"(w1_), "=&r"(x0_), "=&r"(x1_), "=&r"(x2_), "=&r"(x3_),   \
                  "+r"(w), "+r"(x)                                                           \
                : "m"(*(const int32_t(*)[2])w), "m"(*(const int32_t(*)[4])x));              \
        wo_ = kml_sxtb16_ror8(w0_);                                                          \
        w0_ = __sxtb16(w0_);                                                                 \
        a0 = __smlad(x0_, w0_, a0);                                                          \
        a0 = __smlad(x1_, wo_, a0);                                                          \
        c0 = __smlad(x2_, w0_, c0);                                                          \
        c0 = __smlad(x3_, wo_, c0);                                                          \
        wo_ = kml_sxtb16_ror8(w1_);                                                          \
        w1_ = __sxtb16(w1_);                                                                 \
        a1 = __smlad(x0_, w1_, a1);                                                          \
        a1 = __smlad(x1_, wo_, a1);                                                          \
        c1 = __smlad(x2_, w1_, c1);                                                          \
        c1 = __smlad(x3_, wo_, c1);                                                          \
    } while (0)

/* out_a[oc] and out_b[oc] (every channel) from the two columns of ``col``. */
static void mm2(const mm_args *a, const int32_t *col, int8_t *out_a, int8_t *out_b)
{
    const int32_t *w = a->stream;
    const int32_t *x_end = col + 4 * a->groups;
    const int32_t c2 = 2 * a->out_offset + 1;
    const int32_t two_more = a->groups & 2; /* groups is even; loop takes 4 at a time */
    const int32_t pairs = a->out_c >> 1;
    int32_t oc;
    for (oc = 0; oc < 2 * pairs; oc += 2) {
        int32_t a0, a1, c0, c1, m0, m1, rs;
        const int32_t *x = col;
        kml_ldrd(&w, &a0, &a1);
        c0 = a0;
        c1 = a1;
        if (two_more) {
            MAC_2X2(w, x, a0, a1, c0, c1);
            MAC_2X2(w, x, a0, a1, c0, c1);
        }
        while (x < x_end) {
            MAC_2X2(w, x, a0, a1, c0, c1);
            MAC_2X2(w, x, a0, a1, c0, c1);
            MAC_2X2(w, x, a0, a1, c0, c1);
            MAC_2X2(w, x, a0, a1, c0, c1);
        }
        kml_ldrd(&w, &m0, &m1);
        rs = *w++;
        if ((rs & KML_GENERIC_PAIR) == 0) {
            const int32_t r0 = rs & 0xFF, r1 = (rs >> 8) & 0xFF;
            const int32_t k0 = kml_rq_k(c2, r0), k1 = kml_rq_k(c2, r1);
            out_a[oc] = (int8_t)kml_ssat8(kml_rq(a0, m0, r0, k0));
            out_a[oc + 1] = (int8_t)kml_ssat8(kml_rq(a1, m1, r1, k1));
            out_b[oc] = (int8_t)kml_ssat8(kml_rq(c0, m0, r0, k0));
            out_b[oc + 1] = (int8_t)kml_ssat8(kml_rq(c1, m1, r1, k1));
        } else {
            const int32_t r0 = (int8_t)rs, r1 = (int8_t)(rs >> 8);
            out_a[oc] = mm_generic(a, a0, m0, r0);
            out_a[oc + 1] = mm_generic(a, a1, m1, r1);
            out_b[oc] = mm_generic(a, c0, m0, r0);
            out_b[oc + 1] = mm_generic(a, c1, m1, r1);
        }
    }
    if (oc < a->out_c) {
        int32_t a0 = *w++, c0 = a0, m0, r0, rs;
        const int32_t *x = col;
        do {
            const int32_t w0 = *w++;
            const int32_t w0e = __sxtb16(w0), w0o = kml_sxtb16_ror8(w0);
            a0 = __smlad(x[0], w0e, a0);
            a0 = __smlad(x[1], w0o, a0);
            c0 = __smlad(x[2], w0e, c0);
            c0 = __smlad(x[3], w0o, c0);
            x += 4;
        } while (x < x_end);
        m0 = w[0];
        rs = w[1];
        if ((rs & KML_GENERIC_PAIR) == 0) {
            r0 = rs & 0xFF;
            out_a[oc] = (int8_t)kml_ssat8(kml_rq(a0, m0, r0, kml_rq_k(c2, r0)));
            out_b[oc] = (int8_t)kml_ssat8(kml_rq(c0, m0, r0, kml_rq_k(c2, r0)));
        } else {
            out_a[oc] = mm_generic(a, a0, m0, (int8_t)rs);
            out_b[oc] = mm_generic(a, c0, m0, (int8_t)rs);
        }
    }
}

/* -- CONV_2D ---------------------------------------------------------------------------------- */

/* Called with each finished pair of output pixels (b == a for a single last pixel) when the
 * convolution result is not the output itself. */
typedef void (*conv_sink)(const void *ctx, const int8_t *a, const int8_t *b, size_t pixel);

static void conv_run(const kml_conv_params *p, const int32_t *packed, const int8_t *input,
                     int8_t *output, int32_t *scratch, conv_sink sink, const void *sink_ctx)
{
    const int32_t k = p->k_h * p->k_w * p->in_c;
    const int32_t n = p->out_h * p->out_w;
    const size_t in_image = (size_t)(p->in_h * p->in_w * p->in_c);
    const size_t out_c = (size_t)p->out_c;
    mm_args a;
    int8_t *tmp, *gather;
    int32_t b;
    a.stream = packed;
    a.out_c = p->out_c;
    a.groups = ((k + 7) >> 3) * 2;
    a.out_offset = p->out_offset;
    a.act_min = p->act_min;
    a.act_max = p->act_max;
    gather = (int8_t *)(void *)(scratch + 4 * a.groups);
    tmp = gather + 4 * a.groups;
    bytes_fill(gather + k, (int8_t)(-p->in_offset), 4 * a.groups - k);
    for (b = 0; b < p->batches; ++b) {
        const int8_t *in = input + (size_t)b * in_image;
        const size_t first = (size_t)b * (size_t)n;
        int32_t q, oy = 0, ox = 0;
        for (q = 0; q < n; q += 2) {
            const int32_t two = q + 1 < n;
            int8_t *out = sink != 0 ? tmp : output + (first + (size_t)q) * out_c;
            conv_column(p, in, oy, ox, scratch, 4 * a.groups, gather);
            if (++ox == p->out_w) {
                ox = 0;
                ++oy;
            }
            if (two) {
                conv_column(p, in, oy, ox, scratch + 2, 4 * a.groups, gather);
                if (++ox == p->out_w) {
                    ox = 0;
                    ++oy;
                }
            } else {
                int32_t g; /* a last single pixel: both columns the same */
                for (g = 0; g < 4 * a.groups; g += 4) {
                    scratch[g + 2] = scratch[g];
                    scratch[g + 3] = scratch[g + 1];
                }
            }
            mm2(&a, scratch, out, two ? out + out_c : out);
            if (sink != 0) {
                sink(sink_ctx, tmp, two ? tmp + out_c : tmp, first + (size_t)q);
            }
        }
    }
}

void kml_conv2d_s8(const kml_conv_params *p, const int8_t *input, const int8_t *filter,
                   const int32_t *bias, const int32_t *mult, const int32_t *shift,
                   int8_t *output, const int32_t *packed, int32_t *scratch)
{
    (void)filter;
    (void)bias;
    (void)mult;
    (void)shift;
    conv_run(p, packed, input, output, scratch, 0, 0);
}

/* -- fused ADD --------------------------------------------------------------------------------
 * TFLite's ADD: each operand (v + offset) << left_shift is scaled by MultiplyByQuantizedMultiplier
 * (a right shift r >= 0), the sum is requantized to the output. With left_shift <= 21 every
 * value stays below 2^30, so each scaling is exactly
 *     (SMMLAR(2x, m, h) - ((x < 0) & (r > 0))) >> r,   h = r > 0 ? 2^(r-1) : 0
 * (kml_arm.h; for r == 0 there is no rounding shift and no sign correction), and the output
 * offset folds into the last one as in kml_rq. Other parameters take the reference path. */

typedef struct {
    const kml_add_epilogue *ep;
    const int8_t *residual;
    int8_t *output;
    int32_t channels, fast, full;
    int32_t c_off, r_off, ls1;            /* operands: offsets, left shift + 1 */
    int32_t c_m, c_h, c_r, c_cm;          /* conv operand: multiplier, half, shift, sign mask */
    int32_t r_m, r_h, r_r, r_cm;          /* residual operand */
    int32_t o_m, o_k, o_r, o_cm;          /* output: k includes the output offset */
    int32_t simple;                       /* 1: conv operand is x / 2 (m = 2^30, r = 0), 2: the
                                             residual is; the other one and the output have
                                             r >= 1 and the clamp is [-128, 127] */
} add_ctx;

static int32_t add_scaled(int32_t v, int32_t offset, int32_t left_shift, int32_t mult,
                          int32_t shift)
{
    return kml_mbqm((v + offset) * (1 << left_shift), mult, shift);
}

/* One operand of the fast path. */
static inline int32_t add_term(int32_t v, int32_t off, int32_t ls1, int32_t m, int32_t h,
                               int32_t r, int32_t cm)
{
    const int32_t x2 = (int32_t)((uint32_t)(v + off) << ls1);
    const int32_t t = kml_smmlar(x2, m, h);
    return (t - (int32_t)((uint32_t)x2 >> 31 & (uint32_t)cm)) >> r;
}

/* The common case of add_pixel (add_ctx.simple): operand a is (a + off) << (left_shift - 1)
 * exactly (the larger-scale input of ADD has multiplier 2^30 with no shift). */
static void add_pixel_simple(const int8_t *a, const int8_t *b, int8_t *out, int32_t n,
                             const add_ctx *c)
{
    const int32_t simple_conv = c->simple == 1;
    const int32_t a_off = (int32_t)((uint32_t)(simple_conv ? c->c_off : c->r_off) << (c->ls1 - 2));
    const int32_t lsm1 = c->ls1 - 2;
    const int32_t b_off = simple_conv ? c->r_off : c->c_off;
    const int32_t b_m = simple_conv ? c->r_m : c->c_m;
    const int32_t b_h = simple_conv ? c->r_h : c->c_h;
    const int32_t b_r = simple_conv ? c->r_r : c->c_r;
    const int32_t ls1 = c->ls1, o_m = c->o_m, o_k = c->o_k, o_r = c->o_r;
    int32_t i;
    for (i = 0; i < n; ++i) {
        const int32_t sa = (int32_t)((uint32_t)a[i] << lsm1) + a_off;
        const int32_t x2 = (int32_t)((uint32_t)(b[i] + b_off) << ls1);
        const int32_t sb = (kml_smmlar(x2, b_m, b_h) - (int32_t)((uint32_t)x2 >> 31)) >> b_r;
        const int32_t sum = sa + sb;
        const int32_t t = kml_smmlar((int32_t)((uint32_t)sum << 1), o_m, o_k);
        out[i] = (int8_t)kml_ssat8((t - (int32_t)((uint32_t)sum >> 31)) >> o_r);
    }
}

static void add_pixel(const add_ctx *c, const int8_t *conv, size_t pixel)
{
    const kml_add_epilogue *ep = c->ep;
    const size_t base = pixel * (size_t)c->channels;
    const int8_t *res = c->residual + base;
    int8_t *out = c->output + base;
    int32_t i;
    if (c->simple != 0) {
        if (c->simple == 1) {
            add_pixel_simple(conv, res, out, c->channels, c);
        } else {
            add_pixel_simple(res, conv, out, c->channels, c);
        }
        return;
    }
    if (c->fast) {
        /* locals: the int8 stores below may alias anything, so the struct would be reread */
        const int32_t n = c->channels, ls1 = c->ls1, full = c->full;
        const int32_t c_off = c->c_off, c_m = c->c_m, c_h = c->c_h, c_r = c->c_r, c_cm = c->c_cm;
        const int32_t r_off = c->r_off, r_m = c->r_m, r_h = c->r_h, r_r = c->r_r, r_cm = c->r_cm;
        const int32_t o_m = c->o_m, o_k = c->o_k, o_r = c->o_r, o_cm = c->o_cm;
        const int32_t lo = ep->act_min, hi = ep->act_max;
        for (i = 0; i < n; ++i) {
            const int32_t sum = add_term(conv[i], c_off, ls1, c_m, c_h, c_r, c_cm)
                                + add_term(res[i], r_off, ls1, r_m, r_h, r_r, r_cm);
            const int32_t t = kml_smmlar((int32_t)((uint32_t)sum << 1), o_m, o_k);
            const int32_t o = (t - (int32_t)((uint32_t)sum >> 31 & (uint32_t)o_cm)) >> o_r;
            out[i] = full ? (int8_t)kml_ssat8(o) : kml_clamp8(o, lo, hi);
        }
        return;
    }
    for (i = 0; i < c->channels; ++i) {
        const int32_t sc = add_scaled((int32_t)conv[i], ep->conv_offset, ep->left_shift,
                                      ep->conv_mult, ep->conv_shift);
        const int32_t sr = add_scaled((int32_t)res[i], ep->res_offset, ep->left_shift,
                                      ep->res_mult, ep->res_shift);
        const int32_t o = kml_mbqm(ep->conv_first ? sc + sr : sr + sc, ep->out_mult,
                                   ep->out_shift) + ep->out_offset;
        out[i] = kml_clamp8(o, ep->act_min, ep->act_max);
    }
}

static void add_sink(const void *ctx, const int8_t *a, const int8_t *b, size_t pixel)
{
    const add_ctx *c = (const add_ctx *)ctx;
    add_pixel(c, a, pixel);
    if (b != a) {
        add_pixel(c, b, pixel + 1);
    }
}

static void add_setup(add_ctx *c, const kml_add_epilogue *ep)
{
    const int32_t cr = -ep->conv_shift, rr = -ep->res_shift, orr = -ep->out_shift;
    c->fast = ep->left_shift >= 0 && ep->left_shift <= 21 && cr >= 0 && cr <= 31 && rr >= 0
              && rr <= 31 && orr >= 0 && orr <= 22 && ep->conv_mult >= 0 && ep->res_mult >= 0
              && ep->out_mult >= 0;
    c->full = ep->act_min == -128 && ep->act_max == 127;
    c->simple = 0;
    if (!c->fast) {
        return;
    }
    c->c_off = ep->conv_offset;
    c->r_off = ep->res_offset;
    c->ls1 = ep->left_shift + 1;
    c->c_m = ep->conv_mult;
    c->c_r = cr;
    c->c_h = cr > 0 ? (int32_t)(1u << (cr - 1)) : 0;
    c->c_cm = cr > 0;
    c->r_m = ep->res_mult;
    c->r_r = rr;
    c->r_h = rr > 0 ? (int32_t)(1u << (rr - 1)) : 0;
    c->r_cm = rr > 0;
    c->o_m = ep->out_mult;
    c->o_r = orr;
    c->o_k = orr > 0 ? kml_rq_k(2 * ep->out_offset + 1, orr) : ep->out_offset;
    c->o_cm = orr > 0;
    c->simple = 0;
    if (c->full && ep->left_shift >= 1 && orr >= 1) {
        if (ep->conv_mult == 0x40000000 && cr == 0 && rr >= 1) {
            c->simple = 1;
        } else if (ep->res_mult == 0x40000000 && rr == 0 && cr >= 1) {
            c->simple = 2;
        }
    }
}

void kml_conv2d_add_s8(const kml_conv_params *p, const int8_t *input, const int8_t *filter,
                       const int32_t *bias, const int32_t *mult, const int32_t *shift,
                       const kml_add_epilogue *ep, const int8_t *residual, int8_t *output,
                       const int32_t *packed, int32_t *scratch)
{
    add_ctx c;
    (void)filter;
    (void)bias;
    (void)mult;
    (void)shift;
    c.ep = ep;
    c.residual = residual;
    c.output = output;
    c.channels = p->out_c;
    add_setup(&c, ep);
    conv_run(p, packed, input, output, scratch, add_sink, &c);
}

/* -- DEPTHWISE_CONV_2D ------------------------------------------------------------------------
 * Depth multiplier 1 and channels a multiple of 4 (``packed`` != 0, depthwise_stream in
 * kiloml/codegen/armv7em.py): four channels at a time. One 32-bit load gives four inputs,
 * SXTAB16 / SXTAB16 ROR #8 add the offset and split them into channels (0, 2) and (1, 3),
 * the filter word of the tap splits the same way, and SMLABB / SMLATT accumulate per channel.
 * Per group of four channels the stream holds 4 biases, one word per tap, 4 multipliers and a
 * word of 4 shift bytes. Pixels whose window is all inside the image and 3x3 take an unrolled
 * path; the others loop over their valid taps only (TFLite skips padded taps). Each output
 * pixel is written after its window is read, in increasing order (in-place as portable). */

/* acc (channels 0..3) += one tap: four inputs at x and the tap's filter word at w. One asm
 * block per tap keeps the temporaries in four registers (GCC otherwise hoists loads and
 * spills the accumulators). */
static inline void dw_tap(const int8_t *x, const int32_t *w, int32_t off2, int32_t *a0,
                          int32_t *a1, int32_t *a2, int32_t *a3)
{
    int32_t xv, wv, xe, we;
    __asm__("ldr %[xv], [%[x]]\n\t"
            "ldr %[wv], [%[w]]\n\t"
            "sxtab16 %[xe], %[o2], %[xv]\n\t"
            "sxtab16 %[xv], %[o2], %[xv], ror #8\n\t"
            "sxtb16 %[we], %[wv]\n\t"
            "sxtb16 %[wv], %[wv], ror #8\n\t"
            "smlabb %[a0], %[xe], %[we], %[a0]\n\t"
            "smlatt %[a2], %[xe], %[we], %[a2]\n\t"
            "smlabb %[a1], %[xv], %[wv], %[a1]\n\t"
            "smlatt %[a3], %[xv], %[wv], %[a3]"
            : [xv] "=&r"(xv), [wv] "=&r"(wv), [xe] "=&r"(xe), [we] "=&r"(we), [a0] "+r"(*a0),
              [a1] "+r"(*a1), [a2] "+r"(*a2), [a3] "+r"(*a3)
            : [x] "r"(x), [w] "r"(w), [o2] "r"(off2), "m"(*w), "m"(*(const int8_t(*)[4])x));
}

/* dw_tap for the three taps of a 3-wide filter row: inputs at r, r + c, r + 2c, filter
 * words w[0..2]. */
static inline void dw_row3(const int8_t *r, int32_t c, const int32_t *w, int32_t off2,
                           int32_t *a0, int32_t *a1, int32_t *a2, int32_t *a3)
{
    int32_t xv, wv, xe, we;
    __asm__("ldr %[xv], [%[r]]\n\t"
            "ldr %[wv], [%[w]]\n\t"
            "sxtab16 %[xe], %[o2], %[xv]\n\t"
            "sxtab16 %[xv], %[o2], %[xv], ror #8\n\t"
            "sxtb16 %[we], %[wv]\n\t"
            "sxtb16 %[wv], %[wv], ror #8\n\t"
            "smlabb %[a0], %[xe], %[we], %[a0]\n\t"
            "smlatt %[a2], %[xe], %[we], %[a2]\n\t"
            "smlabb %[a1], %[xv], %[wv], %[a1]\n\t"
            "smlatt %[a3], %[xv], %[wv], %[a3]\n\t"
            "ldr %[xv], [%[r], %[c]]\n\t"
            "ldr %[wv], [%[w], #4]\n\t"
            "sxtab16 %[xe], %[o2], %[xv]\n\t"
            "sxtab16 %[xv], %[o2], %[xv], ror #8\n\t"
            "sxtb16 %[we], %[wv]\n\t"
            "sxtb16 %[wv], %[wv], ror #8\n\t"
            "smlabb %[a0], %[xe], %[we], %[a0]\n\t"
            "smlatt %[a2], %[xe], %[we], %[a2]\n\t"
            "smlabb %[a1], %[xv], %[wv], %[a1]\n\t"
            "smlatt %[a3], %[xv], %[wv], %[a3]\n\t"
            "ldr %[xv], [%[r], %[c], lsl #1]\n\t"
            "ldr %[wv], [%[w], #8]\n\t"
            "sxtab16 %[xe], %[o2], %[xv]\n\t"
            "sxtab16 %[xv], %[o2], %[xv], ror #8\n\t"
            "sxtb16 %[we], %[wv]\n\t"
            "sxtb16 %[wv], %[wv], ror #8\n\t"
            "smlabb %[a0], %[xe], %[we], %[a0]\n\t"
            "smlatt %[a2], %[xe], %[we], %[a2]\n\t"
            "smlabb %[a1], %[xv], %[wv], %[a1]\n\t"
            "smlatt %[a3], %[xv], %[wv], %[a3]"
            : [xv] "=&r"(xv), [wv] "=&r"(wv), [xe] "=&r"(xe), [we] "=&r"(we), [a0] "+r"(*a0),
              [a1] "+r"(*a1), [a2] "+r"(*a2), [a3] "+r"(*a3)
            : [r] "r"(r), [c] "r"(c), [w] "r"(w), [o2] "r"(off2), "m"(*(const int32_t(*)[3])w),
              "m"(*r));
}

/* The four channels of a group requantized into out[0..3]; t: multipliers, shift bytes.
 * The fast requantization with the [-128, 127] clamp (SSAT). */
static inline __attribute__((always_inline)) void dw_store4(const int32_t *t, int32_t a0,
                                                            int32_t a1, int32_t a2, int32_t a3,
                                                            int8_t *out, int32_t c2)
{
    const int32_t rs = t[4];
    const int32_t r0 = rs & 0xFF, r1 = (rs >> 8) & 0xFF, r2 = (rs >> 16) & 0xFF;
    const int32_t r3 = (int32_t)((uint32_t)rs >> 24);
    out[0] = (int8_t)kml_ssat8(kml_rq(a0, t[0], r0, kml_rq_k(c2, r0)));
    out[1] = (int8_t)kml_ssat8(kml_rq(a1, t[1], r1, kml_rq_k(c2, r1)));
    out[2] = (int8_t)kml_ssat8(kml_rq(a2, t[2], r2, kml_rq_k(c2, r2)));
    out[3] = (int8_t)kml_ssat8(kml_rq(a3, t[3], r3, kml_rq_k(c2, r3)));
}

/* dw_store4 for any requantization mode and clamp. */
static void dw_store4_any(const int32_t *t, const int32_t *acc, int8_t *out,
                          const kml_conv_params *p, int32_t fast_mode)
{
    int32_t i;
    for (i = 0; i < 4; ++i) {
        out[i] = kml_rq_any(fast_mode, acc[i], t[i], (int8_t)(t[4] >> (8 * i)), p->out_offset,
                            p->act_min, p->act_max);
    }
}

static void dw_fast(const kml_conv_params *p, const int8_t *input, const int32_t *packed,
                    int8_t *output)
{
    const int32_t fast_mode = packed[0];
    const int32_t full = fast_mode && p->act_min == -128 && p->act_max == 127;
    const int32_t c = p->in_c;
    const int32_t taps = p->k_h * p->k_w;
    const int32_t gwords = taps + 9;
    const int32_t off2 = kml_pair16(p->in_offset);
    const int32_t c2 = 2 * p->out_offset + 1;
    const size_t row = (size_t)(p->in_w * c);
    const int32_t k33 = p->k_h == 3 && p->k_w == 3 && p->dil_w == 1;
    const size_t row3 = row * (size_t)p->dil_h;
    int32_t b, oy, ox, g;
    int8_t *out = output;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *in = input + (size_t)b * (size_t)p->in_h * row;
        for (oy = 0; oy < p->out_h; ++oy) {
            const int32_t iy0 = oy * p->stride_h - p->pad_top;
            int32_t ky0 = 0, ky1 = p->k_h;
            while (ky0 < ky1 && iy0 + ky0 * p->dil_h < 0) {
                ++ky0;
            }
            while (ky1 > ky0 && iy0 + (ky1 - 1) * p->dil_h >= p->in_h) {
                --ky1;
            }
            for (ox = 0; ox < p->out_w; ++ox, out += c) {
                const int32_t ix0 = ox * p->stride_w - p->pad_left;
                const int32_t *t = packed + 1;
                int32_t kx0 = 0, kx1 = p->k_w;
                while (kx0 < kx1 && ix0 + kx0 * p->dil_w < 0) {
                    ++kx0;
                }
                while (kx1 > kx0 && ix0 + (kx1 - 1) * p->dil_w >= p->in_w) {
                    --kx1;
                }
                if (k33 && ky0 == 0 && ky1 == 3 && kx0 == 0 && kx1 == 3) {
                    const int8_t *x = in + (size_t)iy0 * row + (size_t)(ix0 * c);
                    for (g = 0; g < c; g += 4, t += gwords, x += 4) {
                        int32_t a0 = t[0], a1 = t[1], a2 = t[2], a3 = t[3];
                        dw_row3(x, c, t + 4, off2, &a0, &a1, &a2, &a3);
                        dw_row3(x + row3, c, t + 7, off2, &a0, &a1, &a2, &a3);
                        dw_row3(x + 2 * row3, c, t + 10, off2, &a0, &a1, &a2, &a3);
                        if (full) {
                            dw_store4(t + 13, a0, a1, a2, a3, out + g, c2);
                        } else {
                            const int32_t acc[4] = {a0, a1, a2, a3};
                            dw_store4_any(t + 13, acc, out + g, p, fast_mode);
                        }
                    }
                    continue;
                }
                for (g = 0; g < c; g += 4, t += gwords) {
                    int32_t a0 = t[0], a1 = t[1], a2 = t[2], a3 = t[3];
                    int32_t ky, kx;
                    for (ky = ky0; ky < ky1; ++ky) {
                        const int8_t *r = in + (size_t)(iy0 + ky * p->dil_h) * row + g;
                        const int32_t *w = t + 4 + ky * p->k_w;
                        for (kx = kx0; kx < kx1; ++kx) {
                            dw_tap(r + (ix0 + kx * p->dil_w) * c, w + kx, off2, &a0, &a1, &a2,
                                   &a3);
                        }
                    }
                    if (full) {
                        dw_store4(t + 4 + taps, a0, a1, a2, a3, out + g, c2);
                    } else {
                        const int32_t acc[4] = {a0, a1, a2, a3};
                        dw_store4_any(t + 4 + taps, acc, out + g, p, fast_mode);
                    }
                }
            }
        }
    }
}

void kml_depthwise_conv2d_s8(const kml_conv_params *p, const int8_t *input,
                             const int8_t *filter, const int32_t *bias, const int32_t *mult,
                             const int32_t *shift, int8_t *output, const int32_t *packed,
                             int32_t *scratch)
{
    const int32_t depth_mult = p->out_c / p->in_c;
    int32_t b, oy, ox, oc;
    (void)scratch;
    if (packed != 0) {
        dw_fast(p, input, packed, output);
        return;
    }
    for (b = 0; b < p->batches; ++b) {
        for (oy = 0; oy < p->out_h; ++oy) {
            for (ox = 0; ox < p->out_w; ++ox) {
                int8_t *out = output + ((size_t)(b * p->out_h + oy) * (size_t)p->out_w + (size_t)ox) * (size_t)p->out_c;
                for (oc = 0; oc < p->out_c; ++oc) {
                    const int32_t ic = oc / depth_mult;
                    int32_t acc = bias != 0 ? bias[oc] : 0;
                    int32_t ky, kx;
                    for (ky = 0; ky < p->k_h; ++ky) {
                        const int32_t iy = oy * p->stride_h - p->pad_top + ky * p->dil_h;
                        if (iy < 0 || iy >= p->in_h) {
                            continue;
                        }
                        for (kx = 0; kx < p->k_w; ++kx) {
                            const int32_t ix = ox * p->stride_w - p->pad_left + kx * p->dil_w;
                            int32_t xv;
                            if (ix < 0 || ix >= p->in_w) {
                                continue;
                            }
                            xv = input[((size_t)(b * p->in_h + iy) * (size_t)p->in_w + (size_t)ix) * (size_t)p->in_c + (size_t)ic];
                            acc += (int32_t)filter[(size_t)(ky * p->k_w + kx) * (size_t)p->out_c + (size_t)oc] * (xv + p->in_offset);
                        }
                    }
                    acc = kml_mbqm(acc, mult[oc], shift[oc]) + p->out_offset;
                    out[oc] = kml_clamp8(acc, p->act_min, p->act_max);
                }
            }
        }
    }
}
