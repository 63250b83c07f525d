/* kiloml runtime (armv7em): CONV_2D (+ fused ADD) with dual 16-bit MACs
 * (DEPTHWISE_CONV_2D: kml_conv_dw.c).
 *
 * CONV_2D: two output pixels at a time. Their receptive fields become a pair of int16 columns
 * in ``scratch`` (kml_arm.h; col_pair reads windows inside the image in place, windows that
 * leave it are first written out as bytes), then ``mm_pairs`` multiplies them with the
 * weights, two output channels at a time (2 x 2 accumulators, 8 SMLAD per group of four
 * inputs). The K order is the weight packing's (conv_rows in kiloml/codegen/armv7em.py): the
 * whole groups of four of every window row, then the remaining bytes of all rows. All reads
 * of both windows happen before either pixel is written, so the portable kernel's in-place
 * bound (output pixel q is written after the windows <= q are read) still holds. Scratch: the
 * column pair (4 * K8 bytes), two window byte buffers (2 * K8), and for CONV_2D_ADD 2 * out_c
 * bytes. Entry points here: kml_conv2d_s8 (any stream), kml_conv2d_pairs_s8 (the generator's
 * promise: every pair fast, even channel count, window rows of whole groups; links less code),
 * kml_conv2d_pairs_inside_s8 and kml_conv2d_add_s8. Two whole-layer asm loops have files of
 * their own, copied only into the models that call them: kml_conv_1x1.c (kml_conv2d_1x1_s8,
 * 1x1 layers, doubled columns, a lean stream) and kml_conv_rgb.c (kml_conv2d_rgb_s8, three
 * window rows of 4n + 1 bytes, the RGB first layer). What the three files share is in
 * kml_conv_mm.h: the matrix asm fragments, and the column geometry (kml_conv_geometry) and
 * byte copy defined here.
 *
 * ``packed`` (kiloml/codegen/armv7em.py, matrix_stream): a word flagging generic pairs, then
 * per output channel pair two biases, the weight words of the pair (for each group of four
 * inputs, the word of channel 2i then that of channel 2i+1), two multipliers and a word with
 * the two shift bytes and the KML_GENERIC_PAIR flag; an odd last channel has one of each and
 * its own weight words. Group g of column j of the pair buffer is words 4g + 2j, 4g + 2j + 1.
 * CONV_2D_ADD's stream starts with 1 and a 256-word ADD table (add_table) or with 0. The
 * whole-layer kernels take matrix_stream's lean form (k0, k1 precomputed after the
 * multipliers), small layers with int16 weights (word 0 is 2; see "1x1 kernel, int16
 * weights" in kml_conv_1x1.c).
 *
 * The innermost loops (mm_pairs, col_pair here; conv1x1_run, rgb_run and the depthwise ones
 * in their files) are asm blocks: they need all 14 allocatable registers, and GCC otherwise
 * spills accumulators or duplicates loop bodies (measured: 10 to 40 % more instructions, and
 * more flash). Everything around them is C with ACLE intrinsics.
 */
#include "kml_conv_mm.h"

/* -- columns -------------------------------------------------------------------------------- */

static __attribute__((noinline)) void bytes_fill(int8_t *d, int8_t v, int32_t n)
{
    const uint32_t w = (uint8_t)v * 0x01010101u;
    for (; n >= 4; n -= 4, d += 4) {
        memcpy(d, &w, 4);
        __asm__("" : "+r"(d)); /* a few words: keep the loop (not a call to memset) */
    }
    for (; n > 0; --n) {
        *d++ = v;
        __asm__("" : "+r"(d)); /* a few bytes: keep the loop (not a call to memset) */
    }
}

/* n bytes, four at a time (unaligned word accesses) then one at a time (kml_conv_mm.h). */
__attribute__((noinline)) void kml_bytes_copy(int8_t *d, const int8_t *s, int32_t n)
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
static KML_SMALL void window_row(const kml_conv_params *p, const int8_t *row, int32_t ix0,
                                 int32_t lo, int32_t hi, int8_t *t)
{
    const int32_t c = p->in_c;
    const int8_t zp = (int8_t)(-p->in_offset);
    int32_t kx;
    if (row == 0 || lo > 0 || hi < p->k_w || p->dil_w != 1) {
        bytes_fill(t, zp, p->k_w * c); /* then the taps inside the image over it */
    }
    if (row == 0) {
        return;
    }
    if (p->dil_w == 1) {
        kml_bytes_copy(t + lo * c, row + (ix0 + lo) * c, (hi - lo) * c);
    } else {
        for (kx = 0; kx < p->k_w; ++kx) {
            const int32_t ix = ix0 + kx * p->dil_w;
            if (ix >= 0 && ix < p->in_w) {
                kml_bytes_copy(t + kx * c, row + (size_t)(ix * c), c);
            }
        }
    }
}

/* The column builder's per-layer constants (kml_conv_mm.h). */
KML_SMALL void kml_conv_geometry(col_geo *G, const kml_conv_params *p, int32_t k8)
{
    const int32_t span_w = (p->k_w - 1) * p->dil_w, span_h = (p->k_h - 1) * p->dil_h;
    const int32_t top_x = p->in_w - 1 - span_w + p->pad_left;
    const int32_t top_y = p->in_h - 1 - span_h + p->pad_top;
    const int32_t x_lo = (p->pad_left + p->stride_w - 1) / p->stride_w;
    const int32_t y_lo = (p->pad_top + p->stride_h - 1) / p->stride_h;
    int32_t x_hi = top_x < 0 ? 0 : top_x / p->stride_w + 1;
    int32_t y_hi = top_y < 0 ? 0 : top_y / p->stride_h + 1;
    if (x_hi > p->out_w) {
        x_hi = p->out_w;
    }
    if (y_hi > p->out_h) {
        y_hi = p->out_h;
    }
    G->p = p;
    G->ox_lo = x_lo;
    G->oy_lo = y_lo;
    G->nx = p->dil_w == 1 && x_hi > x_lo ? (uint32_t)(x_hi - x_lo) : 0u;
    G->ny = y_hi > y_lo ? (uint32_t)(y_hi - y_lo) : 0u;
    G->in_row = p->in_w * p->in_c;
    G->step = G->in_row * p->dil_h;
    G->row_len = p->k_w * p->in_c;
    G->row_groups = G->row_len >> 2;
    G->row_rest = G->row_len & 3;
    G->off2 = kml_pair16(p->in_offset);
    G->k8 = k8;
    G->xstep = p->stride_w * p->in_c;
    G->ystep = p->stride_h * G->in_row;
    G->col0 = -p->pad_left * p->in_c;
}

/* The walk at the image's first pixel. */
static void walk_start(col_geo *G, const int8_t *in)
{
    G->in = in;
    G->oy = 0;
    G->ox = 0;
    G->row_ok = (uint32_t)(0 - G->oy_lo) < G->ny;
    G->row = -G->p->pad_top * G->in_row;
    G->col = G->col0;
}

/* The window of the walk's pixel when it lies inside the image with contiguous rows, else 0;
 * the walk moves to the next pixel. */
static inline const int8_t *walk_next(col_geo *G)
{
    const int8_t *src = 0;
    if (G->row_ok && (uint32_t)(G->ox - G->ox_lo) < G->nx) {
        src = G->in + G->row + G->col;
    }
    G->col += G->xstep;
    if (++G->ox == G->p->out_w) {
        G->ox = 0;
        G->col = G->col0;
        ++G->oy;
        G->row += G->ystep;
        G->row_ok = (uint32_t)(G->oy - G->oy_lo) < G->ny;
    }
    return src;
}

/* One group of both columns of a pair: B's four inputs at [a + db], A's at [a] (a advances),
 * stored as A's two column words then B's. */
#define COL_PAIR_GROUP                                                                       \
    "ldr %[vb], [%[a], %[db]]\n\t"                                                           \
    "ldr %[va], [%[a]], #4\n\t"                                                              \
    "sxtab16 %[t0], %[o2], %[va]\n\t"                                                        \
    "sxtab16 %[t1], %[o2], %[va], ror #8\n\t"                                                \
    "sxtab16 %[t2], %[o2], %[vb]\n\t"                                                        \
    "sxtab16 %[vb], %[o2], %[vb], ror #8\n\t"                                                \
    "strd %[t0], %[t1], [%[d]], #8\n\t"                                                      \
    "strd %[t2], %[vb], [%[d]], #8\n\t"

/* Group words of both columns from four input bytes each. */
static inline void col_put2(int32_t *dst, uint32_t xa, uint32_t xb, int32_t o2)
{
    dst[0] = __sxtab16(o2, (int32_t)xa);
    dst[1] = kml_sxtab16_ror8(o2, (int32_t)xa);
    dst[2] = __sxtab16(o2, (int32_t)xb);
    dst[3] = kml_sxtab16_ror8(o2, (int32_t)xb);
}

/* The remaining bytes of every window row (k_w * in_c not a multiple of 4) of both windows of
 * a pair, packed four to a group, at dst (col_pair's layout); A's first one at s, rows at
 * ``step``, B's at the same + db. Reached through col_geo.rest, which only kml_conv2d_s8 sets:
 * a model whose layers all take kml_conv2d_pairs_s8 does not link it. */
static void col_rest(const col_geo *G, int32_t *dst, const int8_t *s, int32_t db,
                     int32_t step)
{
    const int32_t r = G->row_rest, o2 = G->off2;
    uint32_t xa = 0, xb = 0;
    int32_t sh = 0, ky, j;
    if (r == 1 && G->p->k_h == 3) { /* the common RGB 3x3 case, straight */
        const int8_t *s2 = s + 2 * step;
        xa = (uint32_t)(uint8_t)s[0] | (uint32_t)(uint8_t)s[step] << 8
             | (uint32_t)(uint8_t)s2[0] << 16;
        xb = (uint32_t)(uint8_t)s[db] | (uint32_t)(uint8_t)s[step + db] << 8
             | (uint32_t)(uint8_t)s2[db] << 16;
        col_put2(dst, xa, xb, o2);
        return;
    }
    if (r == 1 && G->p->k_h <= 4) { /* one byte a row, one group */
        for (; sh < 8 * G->p->k_h; sh += 8, s += step) {
            xa |= (uint32_t)(uint8_t)s[0] << sh;
            xb |= (uint32_t)(uint8_t)s[db] << sh;
        }
        col_put2(dst, xa, xb, o2);
        return;
    }
    for (ky = G->p->k_h; ky > 0; --ky, s += step) {
        for (j = 0; j < r; ++j) {
            xa |= (uint32_t)(uint8_t)s[j] << sh;
            xb |= (uint32_t)(uint8_t)s[j + db] << sh;
            sh += 8;
            if (sh == 32) {
                col_put2(dst, xa, xb, o2);
                dst += 4;
                xa = 0;
                xb = 0;
                sh = 0;
            }
        }
    }
    if (sh != 0) {
        col_put2(dst, xa, xb, o2);
    }
}

/* Both columns of a pixel pair (group g at dst[4g], dst[4g + 1] for A, dst[4g + 2],
 * dst[4g + 3] for B) from their windows: A's rows at a + ky * step, B's at the same + db.
 * The kernel's K order (conv_rows in kiloml/codegen/armv7em.py): the whole groups of every
 * row (LDR, which takes unaligned addresses; two per loop step, an odd count entering the
 * loop halfway), then the remaining bytes of all rows (col_rest). Weights past K are zero
 * (pack_rows), so whatever a partial last group and the padding groups hold does not
 * matter. */
static void col_pair(const col_geo *G, int32_t *dst, const int8_t *a, int32_t db, int32_t step)
{
    const int32_t n = G->row_groups, skip = step - 4 * n, o2 = G->off2;
    const int8_t *const a0 = a;
    int32_t rows = G->p->k_h, va, vb, t0, t1, t2, k;
    if (n > 0) {
        __asm__ volatile(
            "0:\n\t"
            "lsrs %[k], %[n], #1\n\t" /* (n + 1) / 2 steps; n odd: enter at the second group */
            "adc %[k], %[k], #0\n\t"
            "bcs 3f\n"
            "2:\n\t"
            COL_PAIR_GROUP
            "3:\n\t"
            COL_PAIR_GROUP
            "subs %[k], %[k], #1\n\t"
            "bne 2b\n\t"
            "add %[a], %[a], %[skip]\n\t"
            "subs %[rows], %[rows], #1\n\t"
            "bne 0b"
            : [va] "=&r"(va), [vb] "=&r"(vb), [t0] "=&r"(t0), [t1] "=&r"(t1), [t2] "=&r"(t2),
              [k] "=&r"(k), [a] "+r"(a), [d] "+r"(dst), [rows] "+r"(rows)
            : [db] "r"(db), [n] "r"(n), [skip] "r"(skip), [o2] "r"(o2)
            : "cc", "memory");
    }
    if (G->rest != 0) {
        G->rest(G, dst, a0 + 4 * n, db, step);
    }
}

/* The window of output pixel (oy, ox) as K bytes in natural order at t: the zero point where
 * it leaves the image (it becomes 0 with the input offset). */
static KML_SMALL void window_bytes(const col_geo *G, int32_t oy, int32_t ox, int8_t *t)
{
    const kml_conv_params *p = G->p;
    const int32_t iy0 = oy * p->stride_h - p->pad_top;
    const int32_t ix0 = ox * p->stride_w - p->pad_left;
    int32_t lo = ix0 < 0 ? -ix0 : 0; /* taps [lo, hi) of a row are inside the image */
    int32_t hi = p->in_w - ix0, ky;
    if (lo > p->k_w) {
        lo = p->k_w;
    }
    if (hi > p->k_w) {
        hi = p->k_w;
    }
    if (hi < lo) {
        hi = lo;
    }
    for (ky = 0; ky < p->k_h; ++ky, t += G->row_len) {
        const int32_t iy = iy0 + ky * p->dil_h;
        window_row(p, iy < 0 || iy >= p->in_h ? 0 : G->in + (size_t)iy * (size_t)G->in_row,
                   ix0, lo, hi, t);
    }
}

/* The columns of the walk's next two pixels (of one when ``two`` is 0: both columns are
 * that pixel's) into ``col``; the walk moves past them. Windows inside the image are read in
 * place, others are first written out as bytes (window_bytes) in ``tmp`` (2 * k8 bytes). */
static void conv_columns(col_geo *G, int32_t *col, int8_t *tmp, int32_t two)
{
    const int32_t oy = G->oy, ox = G->ox;
    const int8_t *src_a = walk_next(G);
    int32_t db = 0;
    if (two) {
        const int32_t oy_b = G->oy, ox_b = G->ox;
        const int8_t *src_b = walk_next(G);
        if (src_a != 0 && src_b != 0) {
            col_pair(G, col, src_a, (int32_t)(src_b - src_a), G->step);
            return;
        }
        db = G->k8;
        window_bytes(G, oy_b, ox_b, tmp + db);
    }
    window_bytes(G, oy, ox, tmp);
    col_pair(G, col, tmp, db, G->row_len);
}

/* -- matrix kernel ---------------------------------------------------------------------------- */

typedef struct {
    const int32_t *stream; /* packed */
    int32_t out_c, groups, out_offset, back; /* back: mm_back(groups) */
} mm_args;


/* Bytes of mm_pairs' loop body before its test that the first pass skips: the groups after
 * the first one (``groups`` is even, groups - 1 odd) not a multiple of MM_UNROLL. */
static KML_SMALL int32_t mm_back(int32_t groups)
{
    return ((groups - 1) % MM_UNROLL) * MM_GROUP_BYTES;
}

/* out_a[oc], out_b[oc] for every channel pair of the stream: the two columns at col times
 * the pair's weights (MM_UNROLL groups per loop iteration, the first pass entered at ``back``
 * bytes before the test so that it ends the groups: three back-to-back loads, 4 SXTB16,
 * 8 SMLAD per group), kml_rq, SSAT, four back-to-back stores.
 * Pairs flagged KML_GENERIC_PAIR are not told apart: their (meaningless) results are
 * stored like the others and mm2 overwrites them (the outputs are written after every read
 * of the columns, and nothing reads them in between); no test per pair. One asm block: the
 * loop needs all 14 allocatable registers (everything else lives in memory operands), and
 * GCC must not split, duplicate or spill it. */
static void mm_pairs(const int32_t *w, const int32_t *col, const int32_t *x_end, int32_t back,
                     int32_t c2, int8_t *out_a, int32_t ob_off, int32_t pairs)
{
    const int32_t *const w_end = w + pairs * (5 + 2 * ((x_end - col) >> 2));
    const int32_t *x;
    int32_t a0, a1, c0, c1, t0, t1, t2, t3, t4, t5, t6;
    __asm__ volatile(
        "ldr %[w1], %[back]\n\t"            /* the loop entry after the first group, once */
        "adr %[w0], 9f\n\t"
        "sub %[w0], %[w0], %[w1]\n\t"
        "str %[w0], %[back]\n"
        "0:\n\t"
        "ldrd %[a0], %[a1], [%[w]], #8\n\t"
        "ldr %[x], %[col]\n\t"
        MM_GROUP0
        "ldr %[w0], %[back]\n\t"
        "mov pc, %[w0]\n\t"                 /* ARMv7-M: bit 0 of the address is ignored */
        ".p2align 2\n"
        "1:\n\t" MM_GROUP6
        "9:\n\t"
        "cmp %[x], %[xe]\n\t"
        "bcc 1b\n\t"
        "ldrd %[w0], %[w1], [%[w]], #8\n\t"   /* m0, m1 */
        "ldr %[x0], [%[w]], #4\n\t"           /* shift bytes and flag */
        "ldr %[x1], %[c2]\n\t"              /* (after a load: pipelined) */
        "lsr %[x2], %[x0], #8\n\t"            /* register shifts read the low byte: */
                                               /* r0 in x0, r1 in x2 */
        "lsl %[x3], %[x1], %[x0]\n\t"
        "asr %[x3], %[x3], #1\n\t"            /* k0 */
        "lsl %[x1], %[x1], %[x2]\n\t"
        "asr %[x1], %[x1], #1\n\t"            /* k1 */
        MM_RQ("a0", "w0", "x3", "x0")
        MM_RQ("a1", "w1", "x1", "x2")
        MM_RQ("c0", "w0", "x3", "x0")
        MM_RQ("c1", "w1", "x1", "x2")
        "ldr %[x], %[oa]\n\t"             /* the four stores back to back (they pipeline) */
        "ldr %[w0], %[ob]\n\t"
        "add %[w0], %[w0], %[x]\n\t"
        "strb %[a0], [%[x]], #2\n\t"
        "strb %[a1], [%[x], #-1]\n\t"
        "strb %[c0], [%[w0]]\n\t"
        "strb %[c1], [%[w0], #1]\n\t"
        "str %[x], %[oa]\n\t"
        "ldr %[w0], %[we]\n\t"
        "cmp %[w], %[w0]\n\t"
        "bne 0b"
        : [w0] "=&r"(t0), [w1] "=&r"(t1), [x0] "=&r"(t2), [x1] "=&r"(t3), [x2] "=&r"(t4),
          [x3] "=&r"(t5), [wo] "=&r"(t6), [a0] "=&r"(a0), [a1] "=&r"(a1), [c0] "=&r"(c0),
          [c1] "=&r"(c1), [x] "=&r"(x), [w] "+r"(w), [oa] "+m"(out_a), [back] "+m"(back)
        : [xe] "r"(x_end), [col] "m"(col), [c2] "m"(c2), [ob] "m"(ob_off), [we] "m"(w_end)
        : "cc", "memory");
}

/* One channel (an odd last one) or the two channels of a generic pair, in C: dot products
 * with both columns, then kml_rq or, for a generic pair, TFLite's arithmetic. Returns the
 * stream past the channels. */
static KML_SMALL const int32_t *mm_slow(const mm_args *a, const int32_t *w, int32_t nch,
                                       const int32_t *col, int8_t *out_a, int8_t *out_b)
{
    const int32_t *wm = w + nch + nch * a->groups; /* the multipliers */
    const int32_t rs = wm[nch];
    int32_t ch, i, g;
    for (ch = 0; ch < nch; ++ch) {
        const int32_t r = (int8_t)(rs >> (8 * ch));
        for (i = 0; i < 2; ++i) {
            int32_t acc = w[ch];
            for (g = 0; g < a->groups; ++g) {
                const int32_t wv = w[nch + g * nch + ch];
                acc = __smlad(col[4 * g + 2 * i], __sxtb16(wv), acc);
                acc = __smlad(col[4 * g + 2 * i + 1], kml_sxtb16_ror8(wv), acc);
            }
            acc = (rs & KML_GENERIC_PAIR) == 0
                      ? kml_rq(acc, wm[ch], r & 0xFF, kml_rq_k(2 * a->out_offset + 1, r & 0xFF))
                      : kml_mbqm(acc, wm[ch], r) + a->out_offset;
            (i == 0 ? out_a : out_b)[ch] = kml_clamp8(acc, -128, 127);
        }
    }
    return wm + nch + 1;
}

/* out_a[oc] and out_b[oc] (every channel) from the two columns of ``col``. */
static KML_SMALL void mm2(const mm_args *a, const int32_t *col, int8_t *out_a, int8_t *out_b)
{
    const int32_t *w = a->stream + 1;
    const int32_t pairs = a->out_c >> 1;
    if (pairs > 0) {
        mm_pairs(w, col, col + 4 * a->groups, a->back, 2 * a->out_offset + 1, out_a,
                 (int32_t)(out_b - out_a), pairs);
    }
    if (a->stream[0] != 0) { /* some pairs take the general requantization: redo them */
        int32_t oc;
        for (oc = 0; oc < 2 * pairs; oc += 2) {
            const int32_t *next = w + 5 + 2 * a->groups;
            if ((next[-1] & KML_GENERIC_PAIR) != 0) {
                mm_slow(a, w, 2, col, out_a + oc, out_b + oc);
            }
            w = next;
        }
    } else {
        w += pairs * (5 + 2 * a->groups);
    }
    if (a->out_c & 1) {
        mm_slow(a, w, 1, col, out_a + a->out_c - 1, out_b + a->out_c - 1);
    }
}

/* -- CONV_2D ---------------------------------------------------------------------------------- */

struct add_ctx;
static void add_pixel(const struct add_ctx *c, const int8_t *conv, size_t pixel);

/* Bytes of the padded image (pad_image) when a layer takes it, else 0; the generator
 * reserves as much after the column buffers (kiloml/codegen/armv7em.py, pad_image_bytes). A
 * single-channel input with padding (the first layer of audio models): most windows leave
 * the image and would each go through window_bytes row by row. */
static int32_t pad_image_bytes(const kml_conv_params *p)
{
    const int32_t hp = (p->out_h - 1) * p->stride_h + p->k_h;
    const int32_t wp = (p->out_w - 1) * p->stride_w + p->k_w;
    if (p->in_c != 1 || p->dil_h != 1 || p->dil_w != 1
        || (p->pad_top == 0 && p->pad_left == 0 && hp <= p->in_h && wp <= p->in_w)) {
        return 0;
    }
    return hp * wp;
}

/* The image of one batch at ``in`` copied into ``img`` with its padding (the zero point) as
 * an image of its own that every window lies in; ``q``: p with that image's geometry. */
static KML_SMALL void pad_image(kml_conv_params *q, const kml_conv_params *p, const int8_t *in,
                                int8_t *img)
{
    const int32_t hp = (p->out_h - 1) * p->stride_h + p->k_h;
    const int32_t wp = (p->out_w - 1) * p->stride_w + p->k_w;
    int32_t n = p->in_w, y;
    *q = *p;
    q->in_h = hp;
    q->in_w = wp;
    q->pad_top = 0;
    q->pad_left = 0;
    if (n > wp - p->pad_left) {
        n = wp - p->pad_left;
    }
    bytes_fill(img, (int8_t)(-p->in_offset), hp * wp);
    for (y = 0; y < hp; ++y) {
        const int32_t iy = y - p->pad_top;
        if (iy >= 0 && iy < p->in_h && n > 0) {
            kml_bytes_copy(img + y * wp + p->pad_left, in + iy * p->in_w, n);
        }
    }
}

/* The convolution, two output pixels at a time; with ``add`` (CONV_2D_ADD) each pair of
 * convolution results goes into a small buffer and through the ADD epilogue. Inlined into its
 * two callers so that a model without fused ADDs carries no epilogue code. */
static inline __attribute__((always_inline)) void conv_run(
    const kml_conv_params *p, const int32_t *packed, const int8_t *input, int8_t *output,
    int32_t *scratch, const struct add_ctx *add, int32_t fast, int32_t inside)
{
    const int32_t k = p->k_h * p->k_w * p->in_c;
    const int32_t n = p->out_h * p->out_w;
    const size_t in_image = (size_t)(p->in_h * p->in_w * p->in_c);
    const size_t out_c = (size_t)p->out_c;
    const int32_t full = p->act_min == -128 && p->act_max == 127;
    const int32_t flat = p->k_h == 1 && p->k_w == 1 && p->stride_h == 1 && p->stride_w == 1
                         && p->pad_top == 0 && p->pad_left == 0 && p->in_h == p->out_h
                         && p->in_w == p->out_w;
    mm_args a;
    col_geo G;
    int8_t *tmp, *gather;
    int32_t b, direct;
    a.stream = packed;
    a.out_c = p->out_c;
    a.groups = ((k + 7) >> 3) * 2;
    a.back = mm_back(a.groups);
    a.out_offset = p->out_offset;
    gather = (int8_t *)(void *)(scratch + 4 * a.groups);
    tmp = gather + 8 * a.groups;
    const int32_t padded = add == 0 ? pad_image_bytes(p) : 0;
    kml_conv_params pq;
    kml_conv_geometry(&G, p, 4 * a.groups);
    if (padded != 0) { /* windows read from the padded image: tmp (no ADD) holds it */
        pad_image(&pq, p, input, tmp);
        kml_conv_geometry(&G, &pq, 4 * a.groups);
    }
    G.rest = !fast && G.row_rest != 0 ? col_rest : 0;
    direct = fast || (packed[0] == 0 && (p->out_c & 1) == 0);
    for (b = 0; b < p->batches; ++b) {
        const size_t first = (size_t)b * (size_t)n;
        int32_t q;
        if (padded != 0 && b > 0) {
            pad_image(&pq, p, input + (size_t)b * in_image, tmp);
        }
        walk_start(&G, padded != 0 ? tmp : input + (size_t)b * in_image);
        for (q = 0; q < n; q += 2) {
            const int32_t two = q + 1 < n;
            int8_t *out = add != 0 ? tmp : output + (first + (size_t)q) * out_c;
            if (inside) { /* every window in the (padded) image: read in place */
                const int8_t *src_a = flat ? G.in + q * p->in_c : walk_next(&G);
                const int8_t *src_b = !two ? src_a : flat ? src_a + p->in_c : walk_next(&G);
                col_pair(&G, scratch, src_a, (int32_t)(src_b - src_a), G.step);
            } else if (flat && two) { /* 1x1, stride 1, no padding: pixel q's window at q * in_c */
                col_pair(&G, scratch, G.in + q * p->in_c, p->in_c, p->in_c);
            } else {
                if (flat) {
                    G.oy = q / p->out_w;
                    G.ox = q % p->out_w;
                }
                conv_columns(&G, scratch, gather, two);
            }
            if (direct) { /* every pair takes kml_rq, even channel count: no mm_slow */
                mm_pairs(packed + 1, scratch, scratch + 4 * a.groups, a.back,
                         2 * a.out_offset + 1, out, two ? p->out_c : 0, p->out_c >> 1);
            } else {
                mm2(&a, scratch, out, two ? out + out_c : out);
            }
            if (!full) { /* mm2 saturated to [-128, 127]; narrow to the activation */
                size_t i;
                for (i = 0; i < (two ? 2 : 1) * out_c; ++i) {
                    out[i] = kml_clamp8(out[i], p->act_min, p->act_max);
                }
            }
            if (add != 0) {
                add_pixel(add, tmp, first + (size_t)q);
                if (two) {
                    add_pixel(add, tmp + out_c, first + (size_t)q + 1);
                }
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
    conv_run(p, packed, input, output, scratch, 0, 0, 0);
}

void kml_conv2d_pairs_s8(const kml_conv_params *p, const int8_t *input, const int8_t *filter,
                         const int32_t *bias, const int32_t *mult, const int32_t *shift,
                         int8_t *output, const int32_t *packed, int32_t *scratch)
{
    (void)filter;
    (void)bias;
    (void)mult;
    (void)shift;
    conv_run(p, packed, input, output, scratch, 0, 1, 0);
}

/* kml_conv2d_pairs_s8 whose windows all lie in the image, or in its padded copy (the
 * generator's promise): no code for windows that leave it (window_bytes). */
void kml_conv2d_pairs_inside_s8(const kml_conv_params *p, const int8_t *input,
                                const int8_t *filter, const int32_t *bias, const int32_t *mult,
                                const int32_t *shift, int8_t *output, const int32_t *packed,
                                int32_t *scratch)
{
    (void)filter;
    (void)bias;
    (void)mult;
    (void)shift;
    conv_run(p, packed, input, output, scratch, 0, 1, 1);
}

/* -- fused ADD --------------------------------------------------------------------------------
 * TFLite's ADD: each operand (v + offset) << left_shift is scaled by MultiplyByQuantizedMultiplier
 * (a right shift r >= 0), the sum is requantized to the output. With left_shift <= 21 every
 * value stays below 2^30, so each scaling is exactly
 *     (SMMLAR(2x, m, h) - ((x < 0) & (r > 0))) >> r,   h = r > 0 ? 2^(r-1) : 0
 * (kml_arm.h; for r == 0 there is no rounding shift and no sign correction), and the output
 * offset folds into the last one as in kml_rq. Other parameters take the reference path. */

typedef struct add_ctx {
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
    const int32_t *tab;                   /* simple: twice the scaled other operand plus the
                                             scaled offset of the first, for each int8 value
                                             (index: the value as uint8) */
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
 * exactly (the larger-scale input of ADD has multiplier 2^30 with no shift); the other
 * operand's scaled value plus a's scaled offset, doubled, comes from add_ctx.tab (a constant
 * in flash: add_table in kiloml/codegen/armv7em.py). Every sum stays below 2^30, so the
 * doubled sum keeps its sign in bit 31. */
static void add_pixel_simple(const int8_t *a, const int8_t *b, int8_t *out, int32_t n,
                             const add_ctx *c)
{
    const int32_t *tab = c->tab;
    const int32_t ls = c->ls1 - 1, o_m = c->o_m, o_k = c->o_k, o_r = c->o_r;
    int32_t i;
    for (i = 0; i < n; ++i) {
        const int32_t sum2 = (int32_t)((uint32_t)a[i] << ls) + tab[(uint8_t)b[i]];
        const int32_t t = kml_smmlar(sum2, o_m, o_k);
        out[i] = (int8_t)kml_ssat8((t - (int32_t)((uint32_t)sum2 >> 31)) >> o_r);
    }
}

static KML_SMALL void add_pixel(const struct add_ctx *c, const int8_t *conv, size_t pixel)
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
    /* packed: 1 and the table when the generator took the table path (add_table in
     * kiloml/codegen/armv7em.py decides as add_setup does), else 0; then the matrix stream */
    c.tab = packed + 1;
    if (packed[0] == 0) {
        c.simple = 0;
    } else {
        packed += 256;
    }
    ++packed;
    conv_run(p, packed, input, output, scratch, &c, 0, 0);
}
