/* kiloml runtime (armv7em): internal to the CONV_2D kernels, not part of the API.
 *
 * What the CONV_2D entry points share: kml_conv.c (kml_conv2d_s8, _pairs, _pairs_inside,
 * _add), kml_conv_1x1.c (kml_conv2d_1x1_s8) and kml_conv_rgb.c (kml_conv2d_rgb_s8). The asm
 * fragments of the matrix kernel (one group of four inputs for 2 columns x 2 channels with
 * int8 weights, MM_GROUP, or int16 weights, MMX_GROUP; the requantization MM_RQ; the entry of
 * the straight-code kernels MM_HEAD), and the column geometry (col_geo, kml_conv_geometry)
 * and byte copy (kml_bytes_copy) that kml_conv.c and kml_conv_rgb.c both use: defined once,
 * in kml_conv.c, so a model that links both carries one copy.
 */
#ifndef KML_CONV_MM_H
#define KML_CONV_MM_H

#include "kml_arm.h"
#include "kml_conv.h"

/* One group of four inputs for 2 columns x 2 channels: the three loads are issued back to
 * back (they pipeline), then 4 SXTB16 and 8 SMLAD. */
#define MM_GROUP                                                                             \
    "ldrd %[w0], %[w1], [%[w]], #8\n\t"                                                      \
    "ldrd %[x0], %[x1], [%[x]], #8\n\t"                                                      \
    "ldrd %[x2], %[x3], [%[x]], #8\n\t"                                                      \
    "sxtb16 %[wo], %[w0], ror #8\n\t"                                                        \
    "sxtb16 %[w0], %[w0]\n\t"                                                                \
    "smlad %[a0], %[x0], %[w0], %[a0]\n\t"                                                   \
    "smlad %[a0], %[x1], %[wo], %[a0]\n\t"                                                   \
    "smlad %[c0], %[x2], %[w0], %[c0]\n\t"                                                   \
    "smlad %[c0], %[x3], %[wo], %[c0]\n\t"                                                   \
    "sxtb16 %[wo], %[w1], ror #8\n\t"                                                        \
    "sxtb16 %[w1], %[w1]\n\t"                                                                \
    "smlad %[a1], %[x0], %[w1], %[a1]\n\t"                                                   \
    "smlad %[a1], %[x1], %[wo], %[a1]\n\t"                                                   \
    "smlad %[c1], %[x2], %[w1], %[c1]\n\t"                                                   \
    "smlad %[c1], %[x3], %[wo], %[c1]\n\t"

/* The first group of a channel pair: the accumulators of the second column start from the
 * biases in a0, a1 (no copies). */
#define MM_GROUP0                                                                            \
    "ldrd %[w0], %[w1], [%[w]], #8\n\t"                                                      \
    "ldrd %[x0], %[x1], [%[x]], #8\n\t"                                                      \
    "ldrd %[x2], %[x3], [%[x]], #8\n\t"                                                      \
    "sxtb16 %[wo], %[w0], ror #8\n\t"                                                        \
    "sxtb16 %[w0], %[w0]\n\t"                                                                \
    "smlad %[c0], %[x2], %[w0], %[a0]\n\t"                                                   \
    "smlad %[c0], %[x3], %[wo], %[c0]\n\t"                                                   \
    "smlad %[a0], %[x0], %[w0], %[a0]\n\t"                                                   \
    "smlad %[a0], %[x1], %[wo], %[a0]\n\t"                                                   \
    "sxtb16 %[wo], %[w1], ror #8\n\t"                                                        \
    "sxtb16 %[w1], %[w1]\n\t"                                                                \
    "smlad %[c1], %[x2], %[w1], %[a1]\n\t"                                                   \
    "smlad %[c1], %[x3], %[wo], %[c1]\n\t"                                                   \
    "smlad %[a1], %[x0], %[w1], %[a1]\n\t"                                                   \
    "smlad %[a1], %[x1], %[wo], %[a1]\n\t"

/* Requantize accumulator A with multiplier M, k K and shift R (kml_rq), saturated into A. */
#define MM_RQ(A, M, K, R)                                                                    \
    "lsl %[wo], %[" A "], #1\n\t"                                                            \
    "smmlar %[wo], %[wo], %[" M "], %[" K "]\n\t"                                            \
    "sub %[wo], %[wo], %[" A "], lsr #31\n\t"                                                \
    "asr %[wo], %[wo], %[" R "]\n\t"                                                         \
    "ssat %[" A "], #8, %[wo]\n\t"

/* Groups of four inputs per iteration of mm_pairs' loop (its body is MM_UNROLL copies of
 * MM_GROUP, MM_GROUP_BYTES of code each). */
#define MM_UNROLL 6
#define MM_GROUP_BYTES 60
/* Groups up to which the whole-layer kernels run the groups as straight code (MM_GROUP and
 * MM_GROUP6: seven groups after MM_GROUP0), without a loop test. */
#define MM_SHORT 8
/* The start of a channel pair in the straight-code kernels: the biases, MM_GROUP0, the jump
 * into the straight groups (entry address at [back]). It stands twice in each: at the top and
 * behind the requantization, where the loop goes on through a forward branch that is taken
 * once per pixel pair (no backward branch per channel pair). */
#define MM_HEAD                                                                              \
    "ldrd %[a0], %[a1], [%[w]], #8\n\t"                                                      \
    "ldr %[x], %[col]\n\t"                                                                   \
    MM_GROUP0                                                                                \
    "ldr %[w0], %[back]\n\t"                                                                 \
    "mov pc, %[w0]\n\t"                 /* ARMv7-M: bit 0 of the address is ignored */

#define MM_GROUP2 MM_GROUP MM_GROUP
#define MM_GROUP6 MM_GROUP2 MM_GROUP2 MM_GROUP2

/* One group of four inputs, 2 columns x 2 channels, int16 weights (the int16 weight streams
 * of kml_conv_1x1.c and kml_conv_rgb.c). */
#define MMX_GROUP                                                                            \
    "ldrd %[w0], %[w1], [%[w]], #8\n\t"                                                      \
    "ldrd %[wo], %[w3], [%[w]], #8\n\t"                                                      \
    "ldrd %[x0], %[x1], [%[x]], #8\n\t"                                                      \
    "ldrd %[x2], %[x3], [%[x]], #8\n\t"                                                      \
    "smlad %[a0], %[x0], %[w0], %[a0]\n\t"                                                   \
    "smlad %[a0], %[x1], %[w1], %[a0]\n\t"                                                   \
    "smlad %[c0], %[x2], %[w0], %[c0]\n\t"                                                   \
    "smlad %[c0], %[x3], %[w1], %[c0]\n\t"                                                   \
    "smlad %[a1], %[x0], %[wo], %[a1]\n\t"                                                   \
    "smlad %[a1], %[x1], %[w3], %[a1]\n\t"                                                   \
    "smlad %[c1], %[x2], %[wo], %[c1]\n\t"                                                   \
    "smlad %[c1], %[x3], %[w3], %[c1]\n\t"

/* The first group: the second column's accumulators start from the biases in a0, a1. */
#define MMX_GROUP0                                                                           \
    "ldrd %[w0], %[w1], [%[w]], #8\n\t"                                                      \
    "ldrd %[wo], %[w3], [%[w]], #8\n\t"                                                      \
    "ldrd %[x0], %[x1], [%[x]], #8\n\t"                                                      \
    "ldrd %[x2], %[x3], [%[x]], #8\n\t"                                                      \
    "smlad %[c0], %[x2], %[w0], %[a0]\n\t"                                                   \
    "smlad %[c0], %[x3], %[w1], %[c0]\n\t"                                                   \
    "smlad %[a0], %[x0], %[w0], %[a0]\n\t"                                                   \
    "smlad %[a0], %[x1], %[w1], %[a0]\n\t"                                                   \
    "smlad %[c1], %[x2], %[wo], %[a1]\n\t"                                                   \
    "smlad %[c1], %[x3], %[w3], %[c1]\n\t"                                                   \
    "smlad %[a1], %[x0], %[wo], %[a1]\n\t"                                                   \
    "smlad %[a1], %[x1], %[w3], %[a1]\n\t"

/* Per-layer constants of the column builder (kml_conv_geometry). Windows of outputs in
 * [ox_lo, ox_lo + nx) x [oy_lo, oy_lo + ny) lie inside the image with contiguous rows. */
typedef struct col_geo {
    const kml_conv_params *p;
    const int8_t *in;         /* the current image */
    int32_t ox_lo, oy_lo;
    uint32_t nx, ny;
    int32_t in_row;           /* bytes of an input row */
    int32_t step;             /* bytes between the rows of a window */
    int32_t row_len;          /* bytes of a window row: row_groups groups of four + row_rest */
    int32_t row_groups, row_rest;
    int32_t off2, k8;
    int32_t xstep, ystep;     /* window offset steps per output column, per output row */
    int32_t col0;             /* column part of the window offset at ox = 0 */
    /* the walk over output pixels: the next pixel (oy, ox), whether row oy has windows
     * inside the image, the window's byte offset in the image (row part + column part) */
    int32_t oy, ox, row_ok, row, col;
    /* col_rest when window rows are not whole groups (kml_conv2d_s8 only), else 0 */
    void (*rest)(const struct col_geo *, int32_t *, const int8_t *, int32_t, int32_t);
} col_geo;

/* n bytes from s to d, four at a time (unaligned word accesses) then one at a time. */
void kml_bytes_copy(int8_t *d, const int8_t *s, int32_t n);

/* The per-layer constants of the column builder for the convolution p whose columns hold
 * k8 values (K rounded up to a multiple of 8, or of 4 for kml_conv2d_rgb_s8). */
void kml_conv_geometry(col_geo *G, const kml_conv_params *p, int32_t k8);

#endif /* KML_CONV_MM_H */
