/* kiloml runtime (armv7em): CONV_2D with three window rows of 4n + 1 bytes (the RGB first
 * layer), kml_conv2d_rgb_s8 (declared in kml_conv.h; the matrix fragments and the column
 * geometry it shares with kml_conv.c are in kml_conv_mm.h). Only models with such a layer
 * link this file.
 */
#include "kml_conv_mm.h"

/* -- 3-row kernel ------------------------------------------------------------------------------
 * kml_conv2d_rgb_s8: three window rows of 4n + 1 bytes (3x3 over three channels: the RGB
 * first layer), no dilation, even out_c, every pair on kml_rq. K order as conv_rows (the n
 * groups of each row, then one group of the rows' last bytes), rows padded to a multiple of 4,
 * not 8 (K = 27: 7 groups), and the stream with k0, k1 precomputed (matrix_stream lean, biases
 * not doubled: doubling the columns would cost more per pixel pair than it saves here). Along
 * each output row, the pixel pairs whose windows lie inside the image go through one asm block
 * (rgbx_run_short with int16 weights, below; else rgb_run_short for n <= 2, i.e. up to
 * MM_SHORT groups, or rgb_run): columns, then every channel pair. Other pixels: their windows as bytes (rgb_window) in a small image of their
 * own that the same asm block then reads. */

/* The layer state the asm blocks keep in memory (they need every register). */
typedef struct {
    const int8_t *src;   /* pixel A's window (B's at + db) */
    int8_t *out, *out_end; /* pixel A's outputs (B's at + out_c), the end of the run */
    const int32_t *w, *w_end; /* the stream's channel pairs */
    int32_t *col, *col_end;   /* the column pair, 4 words per group */
    int32_t back;        /* bytes of straight groups before the requantization to run */
    int32_t db;          /* bytes from A's window to B's (0: one pixel) */
    int32_t ob1;         /* bytes from A's outputs to B's (out_c, or 0), minus 1 */
    int32_t o2;          /* kml_pair16(in_offset) */
    int32_t ng;          /* whole groups of a window row */
    int32_t step;        /* bytes between the rows of a window */
} rgb_args;

/* One group of both columns (col_pair's layout), B's four inputs at [x + DB]. */
#define RGB_GROUP(DB)                                                                        \
    "ldr %[x1], [%[x], %[" DB "]]\n\t"                                                       \
    "ldr %[x0], [%[x]], #4\n\t"                                                              \
    "sxtab16 %[x2], %[wo], %[x0]\n\t"                                                        \
    "sxtab16 %[x3], %[wo], %[x0], ror #8\n\t"                                                \
    "sxtab16 %[a0], %[wo], %[x1]\n\t"                                                        \
    "sxtab16 %[x1], %[wo], %[x1], ror #8\n\t"                                                \
    "strd %[x2], %[x3], [%[w]], #8\n\t"                                                      \
    "strd %[a0], %[x1], [%[w]], #8\n\t"

/* The group of the three rows' last bytes (x at row 2's, ST the row step, B's at + DB). */
#define RGB_REST(DB, ST)                                                                     \
    "ldrb %[c0], [%[x]]\n\t"                                                                 \
    "ldrb %[c1], [%[x], %[" DB "]]\n\t"                                                      \
    "sub %[x], %[x], %[" ST "]\n\t"                                                          \
    "ldrb %[x2], [%[x]]\n\t"                                                                 \
    "ldrb %[x3], [%[x], %[" DB "]]\n\t"                                                      \
    "sub %[x], %[x], %[" ST "]\n\t"                                                          \
    "ldrb %[x0], [%[x]]\n\t"                                                                 \
    "ldrb %[x1], [%[x], %[" DB "]]\n\t"                                                      \
    "orr %[x0], %[x0], %[x2], lsl #8\n\t"                                                    \
    "orr %[x0], %[x0], %[c0], lsl #16\n\t"                                                   \
    "orr %[x1], %[x1], %[x3], lsl #8\n\t"                                                    \
    "orr %[x1], %[x1], %[c1], lsl #16\n\t"                                                   \
    "sxtab16 %[x2], %[wo], %[x0]\n\t"                                                        \
    "sxtab16 %[x3], %[wo], %[x0], ror #8\n\t"                                                \
    "sxtab16 %[a0], %[wo], %[x1]\n\t"                                                        \
    "sxtab16 %[x1], %[wo], %[x1], ror #8\n\t"                                                \
    "strd %[x2], %[x3], [%[w]], #8\n\t"                                                      \
    "strd %[a0], %[x1], [%[w]], #8\n\t"

/* The columns for rows of n = 1 or 2 groups, straight: the row step in w1, B's offset in
 * w0. */
#define RGB_COLS(GROUPS)                                                                     \
    "ldr %[w1], %[step]\n\t"                                                                 \
    "sub %[w1], %[w1], #(" #GROUPS " * 4)\n\t"                                               \
    RGB_ROW##GROUPS                                                                          \
    "add %[x], %[x], %[w1]\n\t"                                                              \
    RGB_ROW##GROUPS                                                                          \
    "add %[x], %[x], %[w1]\n\t"                                                              \
    RGB_ROW##GROUPS                                                                          \
    "add %[w1], %[w1], #(" #GROUPS " * 4)\n\t"                                               \
    RGB_REST("w0", "w1")
#define RGB_ROW1 RGB_GROUP("w0")
#define RGB_ROW2 RGB_GROUP("w0") RGB_GROUP("w0")

/* kml_rq of the four accumulators from the pair's m0, m1, k0, k1 and shift word (lean
 * stream), saturated in place. */
#define RGB_RQ                                                                               \
    "ldrd %[w0], %[w1], [%[w]], #8\n\t"   /* m0, m1 */                                       \
    "ldrd %[x0], %[x1], [%[w]], #8\n\t"   /* k0, k1 */                                       \
    "ldr %[x2], [%[w]], #4\n\t"           /* shift bytes: r0 in x2's low byte */             \
    "lsr %[x3], %[x2], #8\n\t"            /* r1 */                                           \
    MM_RQ("a0", "w0", "x0", "x2")                                                            \
    MM_RQ("a1", "w1", "x1", "x3")                                                            \
    MM_RQ("c0", "w0", "x0", "x2")                                                            \
    MM_RQ("c1", "w1", "x1", "x3")

/* Rows of one or two groups (MM_SHORT groups at most): MM_GROUP0, then straight groups
 * entered at s->back bytes before the requantization (computed once), no loop test; the
 * output pointer stays in a register. */
#define RGB_SHORT_ASM(GROUPS)                                                                \
    __asm__ volatile(                                                                        \
        "ldr %[w1], %[back]\n\t"                                                             \
        "adr %[w0], 9f\n\t"                                                                  \
        "sub %[w0], %[w0], %[w1]\n\t"                                                        \
        "str %[w0], %[back]\n\t"                                                             \
        "ldr %[o], %[out]\n"                                                                 \
        "7:\n\t"                            /* per pixel pair: the columns */                \
        "ldr %[x], %[src]\n\t"                                                               \
        "ldr %[w], %[col]\n\t"                                                               \
        "ldr %[w0], %[db]\n\t"                                                               \
        "ldr %[wo], %[o2]\n\t"                                                               \
        RGB_COLS(GROUPS)                                                                     \
        "ldr %[x], %[src]\n\t"              /* the next pair's windows */                    \
        "add %[x], %[x], %[w0], lsl #1\n\t"                                                  \
        "str %[x], %[src]\n\t"                                                               \
        "ldr %[w], %[wb]\n\t"                                                                \
        MM_HEAD                             /* the first channel pair */                     \
        ".p2align 2\n\t"                                                                     \
        MM_GROUP MM_GROUP6                                                                   \
        "9:\n\t"                                                                             \
        RGB_RQ                                                                               \
        "ldr %[w0], %[ob1]\n\t"                                                              \
        "strb %[a0], [%[o]], #1\n\t"                                                         \
        "strb %[c0], [%[o], %[w0]]\n\t"                                                      \
        "strb %[a1], [%[o]], #1\n\t"                                                         \
        "strb %[c1], [%[o], %[w0]]\n\t"                                                      \
        "ldr %[w0], %[we]\n\t"                                                               \
        "cmp %[w], %[w0]\n\t"                                                                \
        "beq 6f\n\t"                                                                         \
        MM_HEAD                             /* the next channel pair */                      \
        "6:\n\t"                                                                             \
        "ldr %[w0], %[ob1]\n\t"             /* past pixel B's outputs: + (ob1 + 1) */        \
        "add %[o], %[o], %[w0]\n\t"                                                          \
        "add %[o], %[o], #1\n\t"                                                             \
        "ldr %[w0], %[oe]\n\t"                                                               \
        "cmp %[o], %[w0]\n\t"                                                                \
        "bne 7b"                                                                             \
        : [w0] "=&r"(t0), [w1] "=&r"(t1), [x0] "=&r"(t2), [x1] "=&r"(t3), [x2] "=&r"(t4),    \
          [x3] "=&r"(t5), [wo] "=&r"(t6), [a0] "=&r"(a0), [a1] "=&r"(a1), [c0] "=&r"(c0),    \
          [c1] "=&r"(c1), [x] "=&r"(x), [w] "=&r"(w), [o] "=&r"(o), [src] "+m"(src),         \
          [back] "+m"(back)                                                                  \
        : [out] "m"(out), [oe] "m"(out_end), [col] "m"(col), [wb] "m"(w_base),               \
          [we] "m"(w_end), [db] "m"(db), [ob1] "m"(ob1), [o2] "m"(o2), [step] "m"(step)      \
        : "cc", "memory")

static void rgb_run_short(const rgb_args *s)
{
    const int8_t *src = s->src;
    int8_t *const out = s->out, *const out_end = s->out_end;
    const int32_t *const w_base = s->w, *const w_end = s->w_end;
    int32_t *const col = s->col;
    int32_t back = s->back;
    const int32_t db = s->db, ob1 = s->ob1, o2 = s->o2, step = s->step;
    const int32_t *x, *w;
    int32_t a0, a1, c0, c1, t0, t1, t2, t3, t4, t5, t6;
    int8_t *o;
    if (s->ng == 2) {
        RGB_SHORT_ASM(2);
    } else {
        RGB_SHORT_ASM(1);
    }
}

/* Rows of three groups or more: the row loop, and mm_pairs' group loop. */
static void rgb_run(const rgb_args *s)
{
    const int8_t *src = s->src;
    int8_t *out = s->out;
    int8_t *const out_end = s->out_end;
    const int32_t *const w_base = s->w, *const w_end = s->w_end;
    int32_t *const col = s->col, *const col_end = s->col_end;
    const int32_t back = s->back, db = s->db, ob1 = s->ob1, o2 = s->o2;
    const int32_t ng = s->ng, step = s->step;
    const int32_t *x, *w;
    int32_t a0, a1, c0, c1, t0, t1, t2, t3, t4, t5, t6, xe;
    __asm__ volatile(
        "7:\n\t"                            /* per pixel pair: the columns, row by row */
        "ldr %[x], %[src]\n\t"
        "ldr %[w], %[col]\n\t"
        "ldr %[xe], %[db]\n\t"
        "ldr %[wo], %[o2]\n\t"
        "ldr %[a1], %[ng]\n\t"
        "mov %[c1], #3\n"
        "8:\n\t"
        "mov %[w1], %[a1]\n"
        "4:\n\t"
        RGB_GROUP("xe")
        "subs %[w1], %[w1], #1\n\t"
        "bne 4b\n\t"
        "ldr %[w0], %[step]\n\t"            /* the next row: + step - 4 ng */
        "add %[x], %[x], %[w0]\n\t"
        "sub %[x], %[x], %[a1], lsl #2\n\t"
        "subs %[c1], %[c1], #1\n\t"
        "bne 8b\n\t"
        "sub %[x], %[x], %[w0]\n\t"         /* row 2's last byte */
        "add %[x], %[x], %[a1], lsl #2\n\t"
        RGB_REST("xe", "w0")
        "ldr %[x], %[src]\n\t"              /* the next pair's windows */
        "add %[x], %[x], %[xe], lsl #1\n\t"
        "str %[x], %[src]\n\t"
        "ldr %[w], %[wb]\n\t"
        "ldr %[xe], %[ce]\n"
        "0:\n\t"                            /* per channel pair: mm_pairs' loop */
        "ldrd %[a0], %[a1], [%[w]], #8\n\t"
        "ldr %[x], %[col]\n\t"
        MM_GROUP0
        "ldr %[w1], %[back]\n\t"
        "adr %[w0], 9f\n\t"
        "sub %[w0], %[w0], %[w1]\n\t"
        "mov pc, %[w0]\n\t"                 /* ARMv7-M: bit 0 of the address is ignored */
        ".p2align 2\n"
        "1:\n\t" MM_GROUP6
        "9:\n\t"
        "cmp %[x], %[xe]\n\t"
        "bcc 1b\n\t"
        RGB_RQ
        "ldr %[x], %[out]\n\t"              /* the four stores back to back */
        "ldr %[w0], %[ob1]\n\t"
        "strb %[a0], [%[x]], #1\n\t"
        "strb %[c0], [%[x], %[w0]]\n\t"
        "strb %[a1], [%[x]], #1\n\t"
        "strb %[c1], [%[x], %[w0]]\n\t"
        "str %[x], %[out]\n\t"
        "ldr %[w0], %[we]\n\t"
        "cmp %[w], %[w0]\n\t"
        "bne 0b\n\t"
        "ldr %[w0], %[ob1]\n\t"             /* past pixel B's outputs: + (ob1 + 1) */
        "add %[x], %[x], %[w0]\n\t"
        "add %[x], %[x], #1\n\t"
        "str %[x], %[out]\n\t"
        "ldr %[w0], %[oe]\n\t"
        "cmp %[x], %[w0]\n\t"
        "bne 7b"
        : [w0] "=&r"(t0), [w1] "=&r"(t1), [x0] "=&r"(t2), [x1] "=&r"(t3), [x2] "=&r"(t4),
          [x3] "=&r"(t5), [wo] "=&r"(t6), [a0] "=&r"(a0), [a1] "=&r"(a1), [c0] "=&r"(c0),
          [c1] "=&r"(c1), [x] "=&r"(x), [w] "=&r"(w), [xe] "=&r"(xe), [src] "+m"(src),
          [out] "+m"(out)
        : [col] "m"(col), [ce] "m"(col_end), [wb] "m"(w_base), [we] "m"(w_end), [db] "m"(db),
          [ob1] "m"(ob1), [o2] "m"(o2), [ng] "m"(ng), [step] "m"(step),
          [oe] "m"(out_end), [back] "m"(back)
        : "cc", "memory");
}

/* kml_conv2d_rgb_s8 with int16 weights (packed[0] == 2; conv_rgb_extended): rows of one or
 * two groups, so 4 or 7 groups in all, straight (MMX_GROUP: 13 cycles, not 16), no jump; the
 * output pointer in memory; two channel pairs per loop step (a forward exit between them). */
#define RGBX_G4 MMX_GROUP0 MMX_GROUP MMX_GROUP MMX_GROUP
#define RGBX_G7 RGBX_G4 MMX_GROUP MMX_GROUP MMX_GROUP

#define RGBX_PAIR(GROUPS)                                                                    \
    "ldrd %[a0], %[a1], [%[w]], #8\n\t"                                                      \
    "ldr %[x], %[col]\n\t"                                                                   \
    GROUPS                                                                                   \
    RGB_RQ                                                                                   \
    "ldr %[w3], %[out]\n\t"                                                                  \
    "ldr %[w0], %[ob1]\n\t"                                                                  \
    "strb %[a0], [%[w3]], #1\n\t"                                                            \
    "strb %[c0], [%[w3], %[w0]]\n\t"                                                         \
    "strb %[a1], [%[w3]], #1\n\t"                                                            \
    "strb %[c1], [%[w3], %[w0]]\n\t"                                                         \
    "str %[w3], %[out]\n\t"

#define RGBX_ASM(NG, GROUPS)                                                                 \
    __asm__ volatile(                                                                        \
        "7:\n\t"                            /* per pixel pair: the columns */                \
        "ldr %[x], %[src]\n\t"                                                               \
        "ldr %[w], %[col]\n\t"                                                               \
        "ldr %[w0], %[db]\n\t"                                                               \
        "ldr %[wo], %[o2]\n\t"                                                               \
        RGB_COLS(NG)                                                                         \
        "ldr %[x], %[src]\n\t"              /* the next pair's windows */                    \
        "add %[x], %[x], %[w0], lsl #1\n\t"                                                  \
        "str %[x], %[src]\n\t"                                                               \
        "ldr %[w], %[wb]\n"                                                                  \
        "0:\n\t"                                                                             \
        RGBX_PAIR(GROUPS)                                                                    \
        "ldr %[w0], %[we]\n\t"                                                               \
        "cmp %[w], %[w0]\n\t"                                                                \
        "beq 6f\n\t"                                                                         \
        RGBX_PAIR(GROUPS)                                                                    \
        "ldr %[w0], %[we]\n\t"                                                               \
        "cmp %[w], %[w0]\n\t"                                                                \
        "bne 0b\n"                                                                           \
        "6:\n\t"                                                                             \
        "ldr %[w0], %[ob1]\n\t"             /* past pixel B's outputs: + (ob1 + 1) */        \
        "add %[w3], %[w3], %[w0]\n\t"                                                        \
        "add %[w3], %[w3], #1\n\t"                                                           \
        "str %[w3], %[out]\n\t"                                                              \
        "ldr %[w0], %[oe]\n\t"                                                               \
        "cmp %[w3], %[w0]\n\t"                                                               \
        "bne 7b"                                                                             \
        : [w0] "=&r"(t0), [w1] "=&r"(t1), [x0] "=&r"(t2), [x1] "=&r"(t3), [x2] "=&r"(t4),    \
          [x3] "=&r"(t5), [wo] "=&r"(t6), [w3] "=&r"(t7), [a0] "=&r"(a0), [a1] "=&r"(a1),    \
          [c0] "=&r"(c0), [c1] "=&r"(c1), [x] "=&r"(x), [w] "=&r"(w), [src] "+m"(src),       \
          [out] "+m"(out)                                                                    \
        : [oe] "m"(out_end), [col] "m"(col), [wb] "m"(w_base), [we] "m"(w_end),              \
          [db] "m"(db), [ob1] "m"(ob1), [o2] "m"(o2), [step] "m"(step)                       \
        : "cc", "memory")

static void rgbx_run_short(const rgb_args *s)
{
    const int8_t *src = s->src;
    int8_t *out = s->out;
    int8_t *const out_end = s->out_end;
    const int32_t *const w_base = s->w, *const w_end = s->w_end;
    int32_t *const col = s->col;
    const int32_t db = s->db, ob1 = s->ob1, o2 = s->o2, step = s->step;
    const int32_t *x, *w;
    int32_t a0, a1, c0, c1, t0, t1, t2, t3, t4, t5, t6, t7;
    if (s->ng == 2) {
        RGBX_ASM(2, RGBX_G7);
    } else {
        RGBX_ASM(1, RGBX_G4);
    }
}

/* The window of output pixel (oy, ox) as 3 rows of row_len bytes at t (window_bytes for
 * kml_conv2d_rgb_s8's edge pixels, without its per-row calls): the zero point, then the
 * bytes inside the image over it. */
static KML_SMALL void rgb_window(const col_geo *G, int32_t oy, int32_t ox, int8_t *t)
{
    const kml_conv_params *p = G->p;
    const int32_t c = p->in_c, n = G->row_len;
    const int32_t iy0 = oy * p->stride_h - p->pad_top, x0 = (ox * p->stride_w - p->pad_left) * c;
    const uint32_t zp4 = (uint8_t)(-p->in_offset) * 0x01010101u;
    int32_t lo = x0 < 0 ? -x0 : 0, hi = G->in_row - x0, ky, i;
    if (hi > n) {
        hi = n;
    }
    for (i = 0; i < 3 * n; i += 4) {
        memcpy(t + i, &zp4, 4); /* up to 4 * groups bytes: the window's slot */
    }
    for (ky = 0; ky < 3; ++ky, t += n) {
        const int32_t iy = iy0 + ky;
        if (iy >= 0 && iy < p->in_h && hi > lo) {
            kml_bytes_copy(t + lo, G->in + (size_t)iy * (size_t)G->in_row + x0 + lo, hi - lo);
        }
    }
}

/* Three window rows of 4n + 1 bytes (the generator's promise; see the block comment above). */
void kml_conv2d_rgb_s8(const kml_conv_params *p, const int8_t *input, const int8_t *filter,
                       const int32_t *bias, const int32_t *mult, const int32_t *shift,
                       int8_t *output, const int32_t *packed, int32_t *scratch)
{
    const int32_t k = p->k_h * p->k_w * p->in_c;
    const int32_t groups = (k + 3) >> 2; /* rows padded to a multiple of 4, not 8 */
    const int32_t full = p->act_min == -128 && p->act_max == 127;
    const size_t in_image = (size_t)(p->in_h * p->in_w * p->in_c);
    const size_t out_c = (size_t)p->out_c;
    void (*const run)(const rgb_args *) = packed[0] == 2 ? rgbx_run_short
                                          : groups <= MM_SHORT ? rgb_run_short : rgb_run;
    int8_t *const tmp = (int8_t *)(void *)(scratch + 4 * groups);
    col_geo G;
    rgb_args s, e;
    int32_t b, oy, oy_lo, ox_lo, x_hi, in_row;
    int8_t *out = output;
    uint32_t ny;
    (void)filter;
    (void)bias;
    (void)mult;
    (void)shift;
    kml_conv_geometry(&G, p, 4 * groups);
    /* the geometry the row loop reads most, in locals: G's address leaves this file
     * (kml_conv_geometry is in kml_conv.c), so the compiler would reload G's fields after
     * every call; the output row pointer steps row by row */
    oy_lo = G.oy_lo;
    ny = G.ny;
    ox_lo = G.ox_lo;
    x_hi = G.ox_lo + (int32_t)G.nx;
    in_row = G.in_row;
    s.w = packed + 1;
    s.w_end = s.w + (p->out_c >> 1) * (7 + (packed[0] == 2 ? 4 : 2) * groups);
    s.col = scratch;
    s.col_end = scratch + 4 * groups;
    s.back = (groups <= MM_SHORT ? groups - 1 : (groups - 1) % MM_UNROLL) * MM_GROUP_BYTES;
    s.db = G.xstep;
    s.ob1 = p->out_c - 1;
    s.o2 = G.off2;
    s.ng = G.row_groups;
    s.step = G.step;
    e = s; /* windows written out as bytes: rows at row_len, B's window at + k4 */
    e.src = tmp;
    e.step = G.row_len;
    for (b = 0; b < p->batches; ++b) {
        G.in = input + (size_t)b * in_image;
        for (oy = 0; oy < p->out_h; ++oy, out += (size_t)p->out_w * out_c) {
            const int32_t row_ok = (uint32_t)(oy - oy_lo) < ny;
            int32_t ox = 0;
            while (ox < p->out_w) {
                if (row_ok && ox >= ox_lo && ox + 1 < x_hi) { /* a run of pairs inside */
                    const int32_t pairs = (x_hi - ox) >> 1;
                    s.src = G.in + (oy * p->stride_h - p->pad_top) * in_row
                            + (ox * p->stride_w - p->pad_left) * p->in_c;
                    s.out = out + (size_t)ox * out_c;
                    s.out_end = s.out + (size_t)(2 * pairs) * out_c;
                    run(&s);
                    ox += 2 * pairs;
                } else { /* one or two pixels whose windows leave the image */
                    const int32_t two = ox + 1 < p->out_w;
                    rgb_window(&G, oy, ox, tmp);
                    if (two) {
                        rgb_window(&G, oy, ox + 1, tmp + G.k8);
                    }
                    e.src = tmp;
                    e.db = two ? G.k8 : 0;
                    e.ob1 = two ? p->out_c - 1 : -1;
                    e.out = out + (size_t)ox * out_c;
                    e.out_end = e.out + (size_t)(1 + two) * out_c;
                    run(&e);
                    ox += 1 + two;
                }
            }
        }
    }
    if (!full) {
        const int32_t n = p->batches * p->out_h * p->out_w * p->out_c;
        int32_t i;
        for (i = 0; i < n; ++i) {
            output[i] = kml_clamp8(output[i], p->act_min, p->act_max);
        }
    }
}
