/* kiloml runtime (armv7em): DEPTHWISE_CONV_2D with dual 16-bit MACs (declared in kml_conv.h;
 * copied into the models that call one of its entry points).
 *
 * DEPTHWISE_CONV_2D 3x3 (depth multiplier 1): input rows are transposed into a ring of
 * per-channel lines; an output row is computed five outputs at a time for every channel
 * (dw3_row5: five accumulators, weights split once per filter row, 12 MAC instructions per
 * 15 MACs; a last group of five may overlap the previous one); at stride 2 (its own entry
 * point) three outputs at a time (dw3_row3s2: 7 MAC instructions per 9 MACs); leftovers one
 * output at a time (dw3_row1, not linked by the _w5 entries). The _w5 entry (stride 1, output
 * width 5 or 9: groups at even offsets) keeps the lines as int16 values (dw_transpose16;
 * consecutive lines share their pad columns, so a line takes pad_left + in_w values rounded
 * up to even, and the pad line two lines' length) and takes dw3_row5h: words of two
 * neighbouring inputs, no input splitting, 10 MAC instructions per 15 MACs. _w5r, for
 * layers whose activation minimum is at least the output offset (ReLU, as _g6r below), takes
 * dw3_row5hr: the requantization without kml_rq's correction for negative accumulators
 * (DW5_RQR), 4 instructions per output instead of 5.
 *
 * The _g6 entries (stride 1 with an output width that is a multiple of 3: _g6; stride 2 with
 * a width of at least 3: _g6s2; channel count a multiple of 4; kiloml/codegen/armv7em_dw.py,
 * depthwise_g6, picks them before the others, except for _w5 layers) also keep int16 lines
 * and take their own 40-byte channel records of pre-split, doubled weights (one LDRD per
 * filter row, no SXTB16 / PKHBT, and the doubled accumulator kml_rq wants without an LSL):
 * six outputs at a time (dwg_row6 / dwg_row6s2: 12 MAC instructions per 18 MACs at either
 * stride, two channels a loop step), then three (dwg_row3 / dwg_row3s2; at stride 2 the last
 * group may overlap). Their ring is filled with the zero point eight words a step, and rows
 * of 16 pixels or more are transposed channel by channel of 4 (dwg_transpose: pixel pairs at
 * even indices, four pairs a step, loads and stores back to back); narrower rows pixel pair
 * by pixel pair (dw_transpose16, fewer loop set-ups). The channel loop is inside the asm
 * blocks. _g6r and _g6s2r, for layers whose activation minimum is at least the output offset
 * (ReLU), requantize without the correction for negative accumulators (DWG_RQR: their
 * outputs clamp to the minimum either way): 3 instructions per output instead of 4.
 *
 * The innermost loops are asm blocks (see kml_conv.c for why).
 */
#include "kml_arm.h"
#include "kml_conv.h"

/* UXTB16 of x rotated right by 8: bytes 1 and 3 zero-extended into the two halfwords. */
static inline uint32_t dw_uxtb16_ror8(uint32_t x)
{
    uint32_t r;
    __asm__("uxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}

/* PKHBT: low half of a, high half from b's low half; PKHTB: high half of a, low from b's high. */
static inline uint32_t dw_pkhbt(uint32_t a, uint32_t b)
{
    uint32_t r;
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

static inline uint32_t dw_pkhtb(uint32_t a, uint32_t b)
{
    uint32_t r;
    __asm__("pkhtb %0, %1, %2, asr #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

static inline void dw_st32(int8_t *d, uint32_t v)
{
    memcpy(d, &v, sizeof v);
}

/* Input row ``row`` (in_w pixels x C channels) into the C lines at ``slot`` (values from
 * index pad_left on): 4 pixels x 4 channels at a time as a 4x4 byte transpose. */
static void dw_transpose(const kml_conv_params *p, const int8_t *row, int8_t *slot, int32_t lw)
{
    const int32_t c = p->in_c, w = p->in_w;
    int8_t *dst = slot + p->pad_left;
    int32_t x = 0, ch;
    if ((c & 3) == 0) {
        for (; x + 4 <= w; x += 4, row += 4 * c, dst += 4) {
            int8_t *d = dst;
            for (ch = 0; ch < c; ch += 4, d += 4 * lw) {
                const uint32_t r0 = (uint32_t)kml_ld32(row + ch);
                const uint32_t r1 = (uint32_t)kml_ld32(row + c + ch);
                const uint32_t r2 = (uint32_t)kml_ld32(row + 2 * c + ch);
                const uint32_t r3 = (uint32_t)kml_ld32(row + 3 * c + ch);
                const uint32_t e01 = __uxtb16(r0) | __uxtb16(r1) << 8;
                const uint32_t o01 = dw_uxtb16_ror8(r0) | dw_uxtb16_ror8(r1) << 8;
                const uint32_t e23 = __uxtb16(r2) | __uxtb16(r3) << 8;
                const uint32_t o23 = dw_uxtb16_ror8(r2) | dw_uxtb16_ror8(r3) << 8;
                dw_st32(d, dw_pkhbt(e01, e23));
                dw_st32(d + lw, dw_pkhbt(o01, o23));
                dw_st32(d + 2 * lw, dw_pkhtb(e23, e01));
                dw_st32(d + 3 * lw, dw_pkhtb(o23, o01));
            }
        }
    }
    for (; x < w; ++x, row += c, ++dst) { /* the last pixels: one word of 4 channels each */
        int8_t *d = dst;
        ch = 0;
        if ((c & 3) == 0) {
            for (; ch < c; ch += 4, d += 4 * lw) {
                const uint32_t r0 = (uint32_t)kml_ld32(row + ch);
                d[0] = (int8_t)r0;
                d[lw] = (int8_t)(r0 >> 8);
                d[2 * lw] = (int8_t)(r0 >> 16);
                d[3 * lw] = (int8_t)(r0 >> 24);
            }
        }
        for (; ch < c; ++ch, d += lw) {
            *d = row[ch];
        }
    }
}

/* Pixels x and x + 1 of the input row (``rb``: x + 1's channels, or the zero point in every
 * byte of ``zp4`` when x is the last pixel: the pad value right of the image) into the int16
 * lines at d (channel ch's at d + ch * lw): per 4 channels, the two words' low and high
 * halves packed together (PKHBT, PKHTB), each split by SXTB16 into two channels' (x, x + 1)
 * words. */
static inline __attribute__((always_inline)) void dw_t16(const int8_t *ra, const int8_t *rb,
                                                         int32_t zp4, int32_t c, int16_t *d,
                                                         int32_t lw, int32_t last)
{
    int32_t ch;
    if (!last) { /* the same in asm: the loads and the stores back to back */
        const int8_t *end = ra + c;
        const int32_t lw2 = 2 * lw, lw6 = 6 * lw;
        int32_t r0, r1, t0, t1;
        __asm__ volatile("1:\n\t"
                         "ldr %[r0], [%[ra]], #4\n\t"
                         "ldr %[r1], [%[rb]], #4\n\t"
                         "pkhbt %[t0], %[r0], %[r1], lsl #16\n\t"
                         "pkhtb %[r1], %[r1], %[r0], asr #16\n\t"
                         "sxtb16 %[t1], %[t0], ror #8\n\t"
                         "sxtb16 %[t0], %[t0]\n\t"
                         "sxtb16 %[r0], %[r1], ror #8\n\t"
                         "sxtb16 %[r1], %[r1]\n\t"
                         "str %[t0], [%[d]]\n\t"
                         "str %[t1], [%[d], %[lw2]]\n\t"
                         "str %[r1], [%[d], %[lw2], lsl #1]\n\t"
                         "str %[r0], [%[d], %[lw6]]\n\t"
                         "add %[d], %[d], %[lw2], lsl #2\n\t"
                         "cmp %[ra], %[end]\n\t"
                         "bne 1b"
                         : [r0] "=&r"(r0), [r1] "=&r"(r1), [t0] "=&r"(t0), [t1] "=&r"(t1),
                           [ra] "+&r"(ra), [rb] "+&r"(rb), [d] "+&r"(d)
                         : [lw2] "r"(lw2), [lw6] "r"(lw6), [end] "r"(end)
                         : "cc", "memory");
        return;
    }
    for (ch = 0; ch < c; ch += 4, d += 4 * lw) {
        const int32_t r0 = kml_ld32(ra + ch), r1 = last ? zp4 : kml_ld32(rb + ch);
        /* bytes (c0, c1, c0', c1') and (c2, c3, c2', c3'): SXTB16 gives the (x, x + 1) pairs */
        const int32_t lo = (int32_t)dw_pkhbt((uint32_t)r0, (uint32_t)r1);
        const int32_t hi = (int32_t)dw_pkhtb((uint32_t)r1, (uint32_t)r0);
        dw_st32((int8_t *)(void *)d, (uint32_t)__sxtb16(lo));
        dw_st32((int8_t *)(void *)(d + lw), (uint32_t)kml_sxtb16_ror8(lo));
        dw_st32((int8_t *)(void *)(d + 2 * lw), (uint32_t)__sxtb16(hi));
        dw_st32((int8_t *)(void *)(d + 3 * lw), (uint32_t)kml_sxtb16_ror8(hi));
    }
}

/* Input row ``row`` into the C int16 lines (lw values each) at ``slot``, values from index
 * pad_left on (channel count a multiple of 4; an odd last pixel also writes the zero point
 * right of the image, which the line holds there anyway). */
static void dw_transpose16(const kml_conv_params *p, const int8_t *row, int16_t *slot,
                           int32_t lw, int32_t zp4)
{
    const int32_t c = p->in_c, w = p->in_w;
    int16_t *dst = slot + p->pad_left;
    int32_t x = 0;
    for (; x + 2 <= w; x += 2, row += 2 * c, dst += 2) {
        dw_t16(row, row + c, zp4, c, dst, lw, 0);
    }
    if (x < w) {
        dw_t16(row, row, zp4, c, dst, lw, 1);
    }
}

/* Two pixels' words of 4 channels (at src and src + c; src steps on by 2 c) into the four
 * channels' (x, x + 1) int16 words at d0..d3 (each steps on by a word): the words' low and
 * high halves packed together, each split by SXTB16 into two channels' words; the loads and
 * the stores back to back. */
#define DWG_T2                                                                               \
    "ldr %[r0], [%[src]]\n\t"                                                                \
    "ldr %[r1], [%[src], %[c]]\n\t"                                                          \
    "add %[src], %[src], %[c], lsl #1\n\t"                                                   \
    "pkhbt %[t0], %[r0], %[r1], lsl #16\n\t" /* bytes c0, c1, c0', c1' */                     \
    "pkhtb %[r1], %[r1], %[r0], asr #16\n\t" /* bytes c2, c3, c2', c3' */                     \
    "sxtb16 %[t1], %[t0], ror #8\n\t"                                                        \
    "sxtb16 %[t0], %[t0]\n\t"                                                                \
    "sxtb16 %[r0], %[r1], ror #8\n\t"                                                        \
    "sxtb16 %[r1], %[r1]\n\t"                                                                \
    "str %[t0], [%[d0]], #4\n\t"                                                             \
    "str %[t1], [%[d1]], #4\n\t"                                                             \
    "str %[r1], [%[d2]], #4\n\t"                                                             \
    "str %[r0], [%[d3]], #4\n\t"

/* The four channels' (x, x + 1) int16 words of two words of 4 channels (x's a, x + 1's b)
 * at d0..d3, as DWG_T2. */
static inline __attribute__((always_inline)) void dwg_t4(uint32_t a, uint32_t b, int16_t *d0,
                                                         int16_t *d1, int16_t *d2, int16_t *d3)
{
    const int32_t lo = (int32_t)dw_pkhbt(a, b), hi = (int32_t)dw_pkhtb(b, a);
    dw_st32((int8_t *)(void *)d0, (uint32_t)__sxtb16(lo));
    dw_st32((int8_t *)(void *)d1, (uint32_t)kml_sxtb16_ror8(lo));
    dw_st32((int8_t *)(void *)d2, (uint32_t)__sxtb16(hi));
    dw_st32((int8_t *)(void *)d3, (uint32_t)kml_sxtb16_ror8(hi));
}

/* The _g6 entries' transposition: input row ``row`` into the C int16 lines (lw values each)
 * at ``slot``, channel by channel of 4, pixels in pairs at even indices: with an odd
 * pad_left the first word is (zero point, pixel 0); an odd pixel left over is paired with the
 * zero point (z4: in every byte; depthwise_g6 checks that it fits in the line). */
static void dwg_transpose(const kml_conv_params *p, const int8_t *row, int16_t *slot,
                          int32_t lw, uint32_t z4)
{
    const int32_t c = p->in_c, odd = p->pad_left & 1;
    const int32_t pairs = (p->in_w - odd) >> 1, last = (p->in_w - odd) & 1;
    int32_t ch;
    for (ch = 0; ch < c; ch += 4, row += 4) {
        const int8_t *src = row;
        int16_t *d0 = slot + ch * lw + (p->pad_left - odd), *d1 = d0 + lw, *d2 = d1 + lw;
        int16_t *d3 = d2 + lw;
        if (odd) { /* (zero point, pixel 0) */
            dwg_t4(z4, (uint32_t)kml_ld32(src), d0, d1, d2, d3);
            src += c;
            d0 += 2;
            d1 += 2;
            d2 += 2;
            d3 += 2;
        }
        if (pairs > 0) { /* four pairs a step; the first step enters for pairs mod 4 */
            const int8_t *end = src + pairs * 2 * c;
            const int32_t rem = pairs & 3;
            uint32_t r0, r1, t0, t1;
            __asm__ volatile("cmp %[rem], #2\n\t"
                             "beq 3f\n\t"
                             "bhi 2f\n\t"
                             "cmp %[rem], #1\n\t"
                             "beq 4f\n"
                             "1:\n\t" DWG_T2
                             "2:\n\t" DWG_T2
                             "3:\n\t" DWG_T2
                             "4:\n\t" DWG_T2
                             "cmp %[src], %[end]\n\t"
                             "bne 1b"
                             : [r0] "=&r"(r0), [r1] "=&r"(r1), [t0] "=&r"(t0), [t1] "=&r"(t1),
                               [src] "+&r"(src), [d0] "+&r"(d0), [d1] "+&r"(d1),
                               [d2] "+&r"(d2), [d3] "+&r"(d3)
                             : [c] "r"(c), [end] "r"(end), [rem] "r"(rem)
                             : "cc", "memory");
        }
        if (last) { /* (last pixel, zero point) */
            dwg_t4((uint32_t)kml_ld32(src), z4, d0, d1, d2, d3);
        }
    }
}

/* Values the row routines read from memory (all registers are taken): dw3_row5's steps to
 * the next channel's lines, dw3_row1's from the end of a channel's row to the next one. */
typedef struct {
    int32_t c2, c, d5[3], s, n, d1[3], dout;
    const int8_t *end; /* the end of the channel records */
    int32_t cc[3];     /* dwg_row6: c, 3 c, 5 c (output offsets) */
} dw3_row_args;

/* One filter row of five outputs (stride 1): x0..x7 at P (x7 unused), weights at rec + OFF,
 * with four temporaries: W02 = (w0, w2) in t0, W1 in t1, the even and odd inputs of each
 * word in t3, t2. 12 MAC instructions for 15 MACs. The first MAC of accumulator i adds
 * register Si (the accumulator itself, or for the first filter row the bias, held in a4 until
 * a4's own first MAC). */
#define DW5_ROWS(P, OFF, S0, S1, S2, S3)                                                     \
    "ldr %[t0], [%[rec], #" OFF "]\n\t"                                                      \
    "ldr %[t2], [%[" P "]]\n\t"                                                              \
    "sxtb16 %[t1], %[t0], ror #8\n\t"                                                        \
    "sxtb16 %[t0], %[t0]\n\t"                                                                \
    "sxtb16 %[t3], %[t2]\n\t"                                                                \
    "sxtb16 %[t2], %[t2], ror #8\n\t"                                                        \
    "smlad %[a0], %[t3], %[t0], %[" S0 "]\n\t"                                               \
    "smlabb %[a0], %[t2], %[t1], %[a0]\n\t"                                                  \
    "smlad %[a1], %[t2], %[t0], %[" S1 "]\n\t"                                               \
    "smlatb %[a1], %[t3], %[t1], %[a1]\n\t"                                                  \
    "smlatb %[a2], %[t3], %[t0], %[" S2 "]\n\t"                                              \
    "smlatb %[a2], %[t2], %[t1], %[a2]\n\t"                                                  \
    "smlatb %[a3], %[t2], %[t0], %[" S3 "]\n\t"                                              \
    "ldr %[t2], [%[" P "], #4]\n\t"                                                          \
    "sxtb16 %[t3], %[t2]\n\t"                                                                \
    "sxtb16 %[t2], %[t2], ror #8\n\t"                                                        \
    "smlabt %[a2], %[t3], %[t0], %[a2]\n\t"                                                  \
    "smlabb %[a3], %[t3], %[t1], %[a3]\n\t"                                                  \
    "smlabt %[a3], %[t2], %[t0], %[a3]\n\t"                                                  \
    "smlad %[a4], %[t3], %[t0], %[a4]\n\t"                                                   \
    "smlabb %[a4], %[t2], %[t1], %[a4]\n\t"
#define DW5_ROW(P, OFF) DW5_ROWS(P, OFF, "a0", "a1", "a2", "a3")

/* kml_rq of accumulator A (multiplier t0, shift t1, k t2), saturated into A. */
#define DW5_RQ(A)                                                                            \
    "lsl %[t3], %[" A "], #1\n\t"                                                            \
    "smmlar %[t3], %[t3], %[t0], %[t2]\n\t"                                                  \
    "sub %[t3], %[t3], %[" A "], lsr #31\n\t"                                                \
    "asr %[t3], %[t3], %[t1]\n\t"                                                            \
    "ssat %[" A "], #8, %[t3]\n\t"

/* DW5_RQ without kml_rq's correction for a negative accumulator (dw3_row5hr, the _w5r entry:
 * layers whose activation minimum is at least the output offset; exact as DWG_RQR, which
 * takes the same doubled accumulator and k). */
#define DW5_RQR(A)                                                                           \
    "lsl %[t3], %[" A "], #1\n\t"                                                            \
    "smmlar %[t3], %[t3], %[t0], %[t2]\n\t"                                                  \
    "asr %[t3], %[t3], %[t1]\n\t"                                                            \
    "ssat %[" A "], #8, %[t3]\n\t"

/* Five outputs of one output row, every channel: lines p0, p1, p2 of channel 0 at the first
 * window (channel ch's lines follow at ch * L->d5[ky]: the line width, or 0 for the pad line),
 * the channels' 18-byte records from rec (bias with the input offset folded in, multiplier,
 * 9 weights, shift; the lines hold raw inputs and the zero point where the window leaves the
 * image, whose products with the folded offset cancel), outputs at o + 1, o + 1 + c, ...
 * Five accumulators and four temporaries; the five results are saturated in place and stored
 * back to back. Per channel 63 MAC-phase instructions for 45 MACs, 111 in all. */
static inline __attribute__((always_inline)) void dw3_row5(const int8_t *p0, const int8_t *p1,
                                                           const int8_t *p2, const int8_t *rec,
                                                           int8_t *o, dw3_row_args *L)
{
    int32_t a0, a1, a2, a3, a4, t0, t1, t2, t3;
    __asm__ volatile(
        "0:\n\t"
        "ldr %[a4], [%[rec]]\n\t" /* the bias */
        DW5_ROWS("p0", "8", "a4", "a4", "a4", "a4") DW5_ROW("p1", "11") DW5_ROW("p2", "14")
        "ldr %[t0], [%[rec], #4]\n\t"
        "ldrb %[t1], [%[rec], #17]\n\t"
        "ldr %[t2], %[c2]\n\t"
        "lsl %[t2], %[t2], %[t1]\n\t"
        "asr %[t2], %[t2], #1\n\t"
        DW5_RQ("a0") DW5_RQ("a1") DW5_RQ("a2") DW5_RQ("a3") DW5_RQ("a4")
        "ldr %[t0], %[c]\n\t"             /* the five stores back to back (they pipeline) */
        "add %[o], %[o], #1\n\t"
        "add %[t1], %[o], %[t0], lsl #1\n\t"
        "add %[t2], %[t1], %[t0], lsl #1\n\t"
        "strb %[a0], [%[o]]\n\t"
        "strb %[a1], [%[o], %[t0]]\n\t"
        "strb %[a2], [%[t1]]\n\t"
        "strb %[a3], [%[t1], %[t0]]\n\t"
        "strb %[a4], [%[t2]]\n\t"
        "ldrd %[t0], %[t1], %[d01]\n\t"
        "ldr %[t2], %[d2]\n\t"
        "ldr %[t3], %[end]\n\t"
        "add %[p0], %[p0], %[t0]\n\t"
        "add %[p1], %[p1], %[t1]\n\t"
        "add %[p2], %[p2], %[t2]\n\t"
        "add %[rec], %[rec], #18\n\t"
        "cmp %[rec], %[t3]\n\t"
        "bne 0b"
        : [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3), [a4] "=&r"(a4),
          [t0] "=&r"(t0), [t1] "=&r"(t1), [t2] "=&r"(t2), [t3] "=&r"(t3), [p0] "+r"(p0),
          [p1] "+r"(p1), [p2] "+r"(p2), [o] "+r"(o), [rec] "+r"(rec)
        : [c2] "m"(L->c2), [c] "m"(L->c), [d01] "m"(L->d5), [d2] "m"(L->d5[2]),
          [end] "m"(L->end)
        : "cc", "memory");
}

/* One filter row of five outputs on int16 lines: (x0, x1) .. (x6, x7) in four words at P
 * (word aligned), weights at rec + OFF: W12 = (w1, w2) in t1, W01 = (w0, w1) in t0 (from
 * SXTB16's (w0, w2) and (w1, -)), inputs in t2, t3. 10 MAC instructions for 15 MACs, no
 * input splitting. The first MAC of accumulator i adds register Si (as DW5_ROWS). */
#define DW16_ROWS(P, OFF, S0, S1, S2, S3, S4)                                                \
    "ldr %[t0], [%[rec], #" OFF "]\n\t"                                                      \
    "ldrd %[t2], %[t3], [%[" P "]]\n\t"                                                      \
    "sxtb16 %[t1], %[t0], ror #8\n\t"                                                        \
    "sxtb16 %[t0], %[t0]\n\t"                                                                \
    "pkhbt %[t1], %[t1], %[t0]\n\t"                                                          \
    "pkhbt %[t0], %[t0], %[t1], lsl #16\n\t"                                                 \
    "smlad %[a0], %[t2], %[t0], %[" S0 "]\n\t"  /* x0 w0 + x1 w1 */                         \
    "smlabt %[a0], %[t3], %[t1], %[a0]\n\t"     /* x2 w2 */                                 \
    "smlatb %[a1], %[t2], %[t0], %[" S1 "]\n\t" /* x1 w0 */                                 \
    "smlad %[a1], %[t3], %[t1], %[a1]\n\t"      /* x2 w1 + x3 w2 */                         \
    "smlad %[a2], %[t3], %[t0], %[" S2 "]\n\t"  /* x2 w0 + x3 w1 */                         \
    "smlatb %[a3], %[t3], %[t0], %[" S3 "]\n\t" /* x3 w0 */                                 \
    "ldrd %[t2], %[t3], [%[" P "], #8]\n\t"                                                  \
    "smlabt %[a2], %[t2], %[t1], %[a2]\n\t"     /* x4 w2 */                                 \
    "smlad %[a3], %[t2], %[t1], %[a3]\n\t"      /* x4 w1 + x5 w2 */                         \
    "smlad %[a4], %[t2], %[t0], %[" S4 "]\n\t"  /* x4 w0 + x5 w1 */                         \
    "smlabt %[a4], %[t3], %[t1], %[a4]\n\t"     /* x6 w2 */
#define DW16_ROW(P, OFF) DW16_ROWS(P, OFF, "a0", "a1", "a2", "a3", "a4")

/* DW16_ROWS for a group at an odd offset: P is the word before it, (x-1, x0), (x1, x2) ..
 * (x5, x6). */
#define DW16O_ROWS(P, OFF, S0, S1, S2, S3, S4)                                               \
    "ldr %[t0], [%[rec], #" OFF "]\n\t"                                                      \
    "ldrd %[t2], %[t3], [%[" P "]]\n\t"                                                      \
    "sxtb16 %[t1], %[t0], ror #8\n\t"                                                        \
    "sxtb16 %[t0], %[t0]\n\t"                                                                \
    "pkhbt %[t1], %[t1], %[t0]\n\t"                                                          \
    "pkhbt %[t0], %[t0], %[t1], lsl #16\n\t"                                                 \
    "smlatb %[a0], %[t2], %[t0], %[" S0 "]\n\t" /* x0 w0 */                                 \
    "smlad %[a0], %[t3], %[t1], %[a0]\n\t"      /* x1 w1 + x2 w2 */                         \
    "smlad %[a1], %[t3], %[t0], %[" S1 "]\n\t"  /* x1 w0 + x2 w1 */                         \
    "smlatb %[a2], %[t3], %[t0], %[" S2 "]\n\t" /* x2 w0 */                                 \
    "ldrd %[t2], %[t3], [%[" P "], #8]\n\t"                                                  \
    "smlabt %[a1], %[t2], %[t1], %[a1]\n\t"     /* x3 w2 */                                 \
    "smlad %[a2], %[t2], %[t1], %[a2]\n\t"      /* x3 w1 + x4 w2 */                         \
    "smlad %[a3], %[t2], %[t0], %[" S3 "]\n\t"  /* x3 w0 + x4 w1 */                         \
    "smlabt %[a3], %[t3], %[t1], %[a3]\n\t"     /* x5 w2 */                                 \
    "smlatb %[a4], %[t2], %[t0], %[" S4 "]\n\t" /* x4 w0 */                                 \
    "smlad %[a4], %[t3], %[t1], %[a4]\n\t"      /* x5 w1 + x6 w2 */
#define DW16O_ROW(P, OFF) DW16O_ROWS(P, OFF, "a0", "a1", "a2", "a3", "a4")

/* dw3_row5 on int16 lines (the _w5, _w5r and _h entries): p0, p1, p2 word aligned (the
 * group's first input, or for dw3_row5ho at an odd offset the one before it). Per channel 54
 * MAC-phase instructions for 45 MACs; RQ is DW5_RQ, or DW5_RQR for dw3_row5hr (_w5r). */
#define DW3_ROW5H(NAME, ROWS, ROW, RQ)                                                        \
static inline __attribute__((always_inline)) void NAME(const int8_t *p0, const int8_t *p1,    \
                                                       const int8_t *p2, const int8_t *rec,   \
                                                       int8_t *o, dw3_row_args *L)            \
{                                                                                            \
    int32_t a0, a1, a2, a3, a4, t0, t1, t2, t3;                                              \
    __asm__ volatile(                                                                        \
        "0:\n\t"                                                                             \
        "ldr %[a4], [%[rec]]\n\t" /* the bias */                                             \
        ROWS("p0", "8", "a4", "a4", "a4", "a4", "a4") ROW("p1", "11") ROW("p2", "14")        \
        "ldr %[t0], [%[rec], #4]\n\t"                                                        \
        "ldrb %[t1], [%[rec], #17]\n\t"                                                      \
        "ldr %[t2], %[c2]\n\t"                                                               \
        "lsl %[t2], %[t2], %[t1]\n\t"                                                        \
        "asr %[t2], %[t2], #1\n\t"                                                           \
        RQ("a0") RQ("a1") RQ("a2") RQ("a3") RQ("a4")                                          \
        "ldr %[t0], %[c]\n\t"             /* the five stores back to back (they pipeline) */ \
        "add %[o], %[o], #1\n\t"                                                             \
        "add %[t1], %[o], %[t0], lsl #1\n\t"                                                 \
        "add %[t2], %[t1], %[t0], lsl #1\n\t"                                                \
        "strb %[a0], [%[o]]\n\t"                                                             \
        "strb %[a1], [%[o], %[t0]]\n\t"                                                      \
        "strb %[a2], [%[t1]]\n\t"                                                            \
        "strb %[a3], [%[t1], %[t0]]\n\t"                                                     \
        "strb %[a4], [%[t2]]\n\t"                                                            \
        "ldrd %[t0], %[t1], %[d01]\n\t"                                                      \
        "ldr %[t2], %[d2]\n\t"                                                               \
        "ldr %[t3], %[end]\n\t"                                                              \
        "add %[p0], %[p0], %[t0]\n\t"                                                        \
        "add %[p1], %[p1], %[t1]\n\t"                                                        \
        "add %[p2], %[p2], %[t2]\n\t"                                                        \
        "add %[rec], %[rec], #18\n\t"                                                        \
        "cmp %[rec], %[t3]\n\t"                                                              \
        "bne 0b"                                                                             \
        : [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3), [a4] "=&r"(a4),    \
          [t0] "=&r"(t0), [t1] "=&r"(t1), [t2] "=&r"(t2), [t3] "=&r"(t3), [p0] "+r"(p0),     \
          [p1] "+r"(p1), [p2] "+r"(p2), [o] "+r"(o), [rec] "+r"(rec)                         \
        : [c2] "m"(L->c2), [c] "m"(L->c), [d01] "m"(L->d5), [d2] "m"(L->d5[2]),              \
          [end] "m"(L->end)                                                                  \
        : "cc", "memory");                                                                   \
}
DW3_ROW5H(dw3_row5h, DW16_ROWS, DW16_ROW, DW5_RQ)
DW3_ROW5H(dw3_row5ho, DW16O_ROWS, DW16O_ROW, DW5_RQ)
DW3_ROW5H(dw3_row5hr, DW16_ROWS, DW16_ROW, DW5_RQR)

/* One filter row of three outputs at stride 2: x0..x7 at P (x7 unused), weights at rec + OFF.
 * W02 = (w0, w2) in t0, W1 in t1, the even and odd inputs of the two words in t2, t3 and t4,
 * t5: 7 MAC instructions for 9 MACs. The first MAC of accumulator i adds register Si (the
 * accumulator itself, or for the first filter row the bias, held in a2 until a2's own first
 * MAC). */
#define DW3S2_ROWS(P, OFF, S0, S1)                                                           \
    "ldr %[t0], [%[rec], #" OFF "]\n\t"                                                      \
    "ldr %[t2], [%[" P "]]\n\t"                                                              \
    "ldr %[t4], [%[" P "], #4]\n\t"                                                          \
    "sxtb16 %[t1], %[t0], ror #8\n\t"                                                        \
    "sxtb16 %[t0], %[t0]\n\t"                                                                \
    "sxtb16 %[t3], %[t2], ror #8\n\t"                                                        \
    "sxtb16 %[t2], %[t2]\n\t"                                                                \
    "sxtb16 %[t5], %[t4], ror #8\n\t"                                                        \
    "sxtb16 %[t4], %[t4]\n\t"                                                                \
    "smlad %[a0], %[t2], %[t0], %[" S0 "]\n\t"   /* x0 w0 + x2 w2 */                        \
    "smlabb %[a0], %[t3], %[t1], %[a0]\n\t"      /* x1 w1 */                                \
    "smlatb %[a1], %[t2], %[t0], %[" S1 "]\n\t"  /* x2 w0 */                                \
    "smlatb %[a1], %[t3], %[t1], %[a1]\n\t"      /* x3 w1 */                                \
    "smlabt %[a1], %[t4], %[t0], %[a1]\n\t"      /* x4 w2 */                                \
    "smlad %[a2], %[t4], %[t0], %[a2]\n\t"       /* x4 w0 + x6 w2 */                        \
    "smlabb %[a2], %[t5], %[t1], %[a2]\n\t"      /* x5 w1 */
#define DW3S2_ROW(P, OFF) DW3S2_ROWS(P, OFF, "a0", "a1")

/* Three outputs of one output row at stride 2, every channel; otherwise as dw3_row5 (outputs
 * at o + 1, o + 1 + c, o + 1 + 2c). Per channel 48 MAC-phase instructions for 27 MACs. */
static inline __attribute__((always_inline)) void dw3_row3s2(const int8_t *p0, const int8_t *p1,
                                                             const int8_t *p2,
                                                             const int8_t *rec, int8_t *o,
                                                             dw3_row_args *L)
{
    int32_t a0, a1, a2, t0, t1, t2, t3, t4, t5;
    __asm__ volatile(
        "0:\n\t"
        "ldr %[a2], [%[rec]]\n\t" /* the bias */
        DW3S2_ROWS("p0", "8", "a2", "a2") DW3S2_ROW("p1", "11") DW3S2_ROW("p2", "14")
        "ldr %[t0], [%[rec], #4]\n\t"
        "ldrb %[t1], [%[rec], #17]\n\t"
        "ldr %[t2], %[c2]\n\t"
        "lsl %[t2], %[t2], %[t1]\n\t"
        "asr %[t2], %[t2], #1\n\t"
        DW5_RQ("a0") DW5_RQ("a1") DW5_RQ("a2")
        "ldr %[t0], %[c]\n\t"
        "add %[o], %[o], #1\n\t"
        "add %[t1], %[o], %[t0], lsl #1\n\t"
        "strb %[a0], [%[o]]\n\t"
        "strb %[a1], [%[o], %[t0]]\n\t"
        "strb %[a2], [%[t1]]\n\t"
        "ldrd %[t0], %[t1], %[d01]\n\t"
        "ldr %[t2], %[d2]\n\t"
        "ldr %[t3], %[end]\n\t"
        "add %[p0], %[p0], %[t0]\n\t"
        "add %[p1], %[p1], %[t1]\n\t"
        "add %[p2], %[p2], %[t2]\n\t"
        "add %[rec], %[rec], #18\n\t"
        "cmp %[rec], %[t3]\n\t"
        "bne 0b"
        : [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [t0] "=&r"(t0), [t1] "=&r"(t1),
          [t2] "=&r"(t2), [t3] "=&r"(t3), [t4] "=&r"(t4), [t5] "=&r"(t5), [p0] "+r"(p0),
          [p1] "+r"(p1), [p2] "+r"(p2), [o] "+r"(o), [rec] "+r"(rec)
        : [c2] "m"(L->c2), [c] "m"(L->c), [d01] "m"(L->d5), [d2] "m"(L->d5[2]),
          [end] "m"(L->end)
        : "cc", "memory");
}

/* One filter row of one output: x0..x2 at P, weights at rec + OFF. */
#define DW1_ROW(P, OFF)                                                                      \
    "ldr %[t0], [%[" P "]]\n\t"                                                              \
    "ldr %[t1], [%[rec], #" OFF "]\n\t"                                                      \
    "sxtb16 %[t2], %[t0]\n\t"                                                                \
    "sxtb16 %[t0], %[t0], ror #8\n\t"                                                        \
    "sxtb16 %[t3], %[t1]\n\t"                                                                \
    "sxtb16 %[t1], %[t1], ror #8\n\t"                                                        \
    "smlad %[a0], %[t2], %[t3], %[a0]\n\t"                                                   \
    "smlabb %[a0], %[t0], %[t1], %[a0]\n\t"

/* L->n single outputs (window step L->s) of one output row, every channel, otherwise as
 * dw3_row5 (rows narrower than five outputs, stride 2). */
static inline __attribute__((always_inline)) void dw3_row1(const int8_t *p0, const int8_t *p1,
                                                           const int8_t *p2, const int8_t *rec,
                                                           int32_t c, int8_t *o,
                                                           dw3_row_args *L)
{
    int32_t a0, t0, t1, t2, t3, kk, n;
    __asm__ volatile(
        "0:\n\t"
        "ldrb %[t2], [%[rec], #17]\n\t"
        "ldr %[kk], %[c2]\n\t"
        "lsl %[kk], %[kk], %[t2]\n\t"
        "asr %[kk], %[kk], #1\n\t"
        "ldr %[n], %[nn]\n"
        "1:\n\t"
        "ldr %[a0], [%[rec]]\n\t"
        DW1_ROW("p0", "8") DW1_ROW("p1", "11") DW1_ROW("p2", "14")
        "ldr %[t3], [%[rec], #4]\n\t"
        "ldrb %[t2], [%[rec], #17]\n\t"
        "lsl %[t0], %[a0], #1\n\t"
        "smmlar %[t0], %[t0], %[t3], %[kk]\n\t"
        "sub %[t0], %[t0], %[a0], lsr #31\n\t"
        "asr %[t0], %[t0], %[t2]\n\t"
        "ssat %[t0], #8, %[t0]\n\t"
        "strb %[t0], [%[o]]\n\t"
        "add %[o], %[o], %[c]\n\t"
        "ldr %[t2], %[s]\n\t"
        "add %[p0], %[p0], %[t2]\n\t"
        "add %[p1], %[p1], %[t2]\n\t"
        "add %[p2], %[p2], %[t2]\n\t"
        "subs %[n], %[n], #1\n\t"
        "bne 1b\n\t"
        "ldrd %[t0], %[t1], %[d01]\n\t"
        "ldr %[t2], %[d2]\n\t"
        "ldr %[t3], %[dout]\n\t"
        "add %[p0], %[p0], %[t0]\n\t"
        "add %[p1], %[p1], %[t1]\n\t"
        "add %[p2], %[p2], %[t2]\n\t"
        "add %[o], %[o], %[t3]\n\t"
        "add %[rec], %[rec], #18\n\t"
        "ldr %[t0], %[end]\n\t"
        "cmp %[rec], %[t0]\n\t"
        "bne 0b"
        : [a0] "=&r"(a0), [t0] "=&r"(t0), [t1] "=&r"(t1), [t2] "=&r"(t2), [t3] "=&r"(t3),
          [kk] "=&r"(kk), [n] "=&r"(n), [p0] "+r"(p0), [p1] "+r"(p1), [p2] "+r"(p2),
          [o] "+r"(o), [rec] "+r"(rec)
        : [c] "r"(c), [c2] "m"(L->c2), [s] "m"(L->s), [nn] "m"(L->n), [d01] "m"(L->d1),
          [d2] "m"(L->d1[2]), [dout] "m"(L->dout), [end] "m"(L->end)
        : "cc", "memory");
}

/* The _g6 entries: int16 lines and 40-byte channel records of pre-split weights (kiloml/
 * codegen/armv7em_dw.py, depthwise_stream_g6): +0 the bias (input offset folded in) doubled,
 * +4 + 8 ky: W01 = (2 w0, 2 w1) and W12 = (2 w1, 2 w2) of filter row ky as int16 pairs,
 * +28 multiplier, +32 kml_rq_k, +36 right shift. Doubled weights make the accumulator the
 * doubled one kml_rq takes (no LSL); one LDRD fetches a filter row (no SXTB16 / PKHBT). */

/* One filter row of six outputs at stride 1: (x0, x1) .. (x6, x7) in four words at P, W01,
 * W12 in w0, w1, inputs in x0, x1. 12 MAC instructions for 18 MACs. The first MAC of
 * accumulator i adds register Si (as DW5_ROWS: the bias in a5 for the first filter row). */
#define DWG6_ROWS(P, OFF, S0, S1, S2, S3, S4)                                                \
    "ldrd %[w0], %[w1], [%[rec], #" OFF "]\n\t"                                              \
    "ldrd %[x0], %[x1], [%[" P "]]\n\t"                                                      \
    "smlad %[a0], %[x0], %[w0], %[" S0 "]\n\t"  /* x0 w0 + x1 w1 */                         \
    "smlabt %[a0], %[x1], %[w1], %[a0]\n\t"     /* x2 w2 */                                 \
    "smlatb %[a1], %[x0], %[w0], %[" S1 "]\n\t" /* x1 w0 */                                 \
    "smlad %[a1], %[x1], %[w1], %[a1]\n\t"      /* x2 w1 + x3 w2 */                         \
    "smlad %[a2], %[x1], %[w0], %[" S2 "]\n\t"  /* x2 w0 + x3 w1 */                         \
    "smlatb %[a3], %[x1], %[w0], %[" S3 "]\n\t" /* x3 w0 */                                 \
    "ldrd %[x0], %[x1], [%[" P "], #8]\n\t"                                                  \
    "smlabt %[a2], %[x0], %[w1], %[a2]\n\t"     /* x4 w2 */                                 \
    "smlad %[a3], %[x0], %[w1], %[a3]\n\t"      /* x4 w1 + x5 w2 */                         \
    "smlad %[a4], %[x0], %[w0], %[" S4 "]\n\t"  /* x4 w0 + x5 w1 */                         \
    "smlatb %[a5], %[x0], %[w0], %[a5]\n\t"     /* x5 w0 */                                 \
    "smlabt %[a4], %[x1], %[w1], %[a4]\n\t"     /* x6 w2 */                                 \
    "smlad %[a5], %[x1], %[w1], %[a5]\n\t"      /* x6 w1 + x7 w2 */

/* The same at stride 2: (x0, x1) .. (x12, x13) in seven words at P; output i takes word i
 * with W01 and word i + 1's low half with w2. */
#define DWG6S2_ROWS(P, OFF, S0, S1, S2, S3, S4)                                              \
    "ldrd %[w0], %[w1], [%[rec], #" OFF "]\n\t"                                              \
    "ldrd %[x0], %[x1], [%[" P "]]\n\t"                                                      \
    "smlad %[a0], %[x0], %[w0], %[" S0 "]\n\t"                                               \
    "smlabt %[a0], %[x1], %[w1], %[a0]\n\t"                                                  \
    "smlad %[a1], %[x1], %[w0], %[" S1 "]\n\t"                                               \
    "ldrd %[x0], %[x1], [%[" P "], #8]\n\t"                                                  \
    "smlabt %[a1], %[x0], %[w1], %[a1]\n\t"                                                  \
    "smlad %[a2], %[x0], %[w0], %[" S2 "]\n\t"                                               \
    "smlabt %[a2], %[x1], %[w1], %[a2]\n\t"                                                  \
    "smlad %[a3], %[x1], %[w0], %[" S3 "]\n\t"                                               \
    "ldrd %[x0], %[x1], [%[" P "], #16]\n\t"                                                 \
    "smlabt %[a3], %[x0], %[w1], %[a3]\n\t"                                                  \
    "smlad %[a4], %[x0], %[w0], %[" S4 "]\n\t"                                               \
    "smlabt %[a4], %[x1], %[w1], %[a4]\n\t"                                                  \
    "smlad %[a5], %[x1], %[w0], %[a5]\n\t"                                                   \
    "ldr %[x0], [%[" P "], #24]\n\t"                                                         \
    "smlabt %[a5], %[x0], %[w1], %[a5]\n\t"

/* Exact kml_rq of the doubled accumulator A (multiplier w0, k w1, shift x0), saturated into
 * A. */
#define DWG_RQ(A)                                                                            \
    "smmlar %[x1], %[" A "], %[w0], %[w1]\n\t"                                               \
    "sub %[x1], %[x1], %[" A "], lsr #31\n\t"                                                \
    "asr %[x1], %[x1], %[x0]\n\t"                                                            \
    "ssat %[" A "], #8, %[x1]\n\t"

/* DWG_RQ without kml_rq's correction for a negative accumulator (the _g6r entries: layers
 * whose activation minimum is at least the output offset). A negative accumulator A gives
 * SMMLAR <= 0 (the multiplier is not negative), so with k = out_offset 2^r + 2^(r-1) the
 * shifted value is at most out_offset with or without the correction, and both clamp to the
 * activation minimum. */
#define DWG_RQR(A)                                                                           \
    "smmlar %[x1], %[" A "], %[w0], %[w1]\n\t"                                               \
    "asr %[x1], %[x1], %[x0]\n\t"                                                            \
    "ssat %[" A "], #8, %[x1]\n\t"

/* One channel of dwg_row6: its record at rec + B (B, B + 4, .., B + 36 in OB, O1 .. OS),
 * outputs at *o, *o + c, ..; *o is advanced by one, the line pointers by the steps to the
 * next channel's lines. */
#define DWG_CH6(ROWS, RQ, OB, O1, O2, O3, OM, OS)                                            \
    "ldr %[a5], [%[rec], #" OB "]\n\t" /* the bias */                                        \
    ROWS("p0", O1, "a5", "a5", "a5", "a5", "a5")                                             \
    ROWS("p1", O2, "a0", "a1", "a2", "a3", "a4")                                             \
    ROWS("p2", O3, "a0", "a1", "a2", "a3", "a4")                                             \
    "ldrd %[w0], %[w1], [%[rec], #" OM "]\n\t"                                               \
    "ldr %[x0], [%[rec], #" OS "]\n\t"                                                       \
    RQ("a0") RQ("a1") RQ("a2") RQ("a3") RQ("a4") RQ("a5")                                    \
    "ldr %[w0], %[o]\n\t"             /* the loads and stores back to back */              \
    "ldrd %[w1], %[x0], %[cc]\n\t"    /* c, 3 c */                                           \
    "ldr %[x1], %[c5]\n\t"            /* 5 c */                                              \
    "strb %[a1], [%[w0], %[w1]]\n\t"                                                         \
    "strb %[a2], [%[w0], %[w1], lsl #1]\n\t"                                                 \
    "strb %[a3], [%[w0], %[x0]]\n\t"                                                         \
    "strb %[a4], [%[w0], %[w1], lsl #2]\n\t"                                                 \
    "strb %[a5], [%[w0], %[x1]]\n\t"                                                         \
    "strb %[a0], [%[w0]], #1\n\t"                                                            \
    "str %[w0], %[o]\n\t"                                                                    \
    "ldrd %[w0], %[w1], %[d01]\n\t"                                                          \
    "ldr %[x0], %[d2]\n\t"                                                                   \
    "add %[p0], %[p0], %[w0]\n\t"                                                            \
    "add %[p1], %[p1], %[w1]\n\t"                                                            \
    "add %[p2], %[p2], %[x0]\n\t"

/* Six outputs of one output row, every channel (lines and steps as dw3_row5, records as
 * above), two channels a step (the channel count is a multiple of 4). Six accumulators, two
 * weight and two input registers, the three line pointers and rec take all fourteen
 * registers: the output pointer lives in memory (the caller's stack). */
#define DWG_ROW6(NAME, ROWS, RQ)                                                             \
static inline __attribute__((always_inline)) void NAME(const int8_t *p0, const int8_t *p1,    \
                                                       const int8_t *p2, const int8_t *rec,   \
                                                       int8_t **o, dw3_row_args *L)           \
{                                                                                            \
    int32_t a0, a1, a2, a3, a4, a5, w0, w1, x0, x1;                                          \
    __asm__ volatile(                                                                        \
        "0:\n\t"                                                                             \
        DWG_CH6(ROWS, RQ, "0", "4", "12", "20", "28", "36")                                  \
        DWG_CH6(ROWS, RQ, "40", "44", "52", "60", "68", "76")                                \
        "ldr %[x1], %[end]\n\t"                                                              \
        "add %[rec], %[rec], #80\n\t"                                                        \
        "cmp %[rec], %[x1]\n\t"                                                              \
        "bne 0b"                                                                             \
        : [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3), [a4] "=&r"(a4),    \
          [a5] "=&r"(a5), [w0] "=&r"(w0), [w1] "=&r"(w1), [x0] "=&r"(x0), [x1] "=&r"(x1),    \
          [p0] "+r"(p0), [p1] "+r"(p1), [p2] "+r"(p2), [rec] "+r"(rec), [o] "+m"(*o)         \
        : [cc] "m"(L->cc), [c5] "m"(L->cc[2]), [d01] "m"(L->d5), [d2] "m"(L->d5[2]),         \
          [end] "m"(L->end)                                                                  \
        : "cc", "memory");                                                                   \
}
DWG_ROW6(dwg_row6, DWG6_ROWS, DWG_RQ)
DWG_ROW6(dwg_row6s2, DWG6S2_ROWS, DWG_RQ)
DWG_ROW6(dwg_row6r, DWG6_ROWS, DWG_RQR)
DWG_ROW6(dwg_row6s2r, DWG6S2_ROWS, DWG_RQR)

/* One filter row of three outputs at stride 1: (x0, x1) .. (x4, x5) in three words at P. */
#define DWG3_ROWS(P, OFF, S0, S1)                                                            \
    "ldrd %[w0], %[w1], [%[rec], #" OFF "]\n\t"                                              \
    "ldrd %[x0], %[x1], [%[" P "]]\n\t"                                                      \
    "ldr %[x2], [%[" P "], #8]\n\t"                                                          \
    "smlad %[a0], %[x0], %[w0], %[" S0 "]\n\t"                                               \
    "smlabt %[a0], %[x1], %[w1], %[a0]\n\t"                                                  \
    "smlatb %[a1], %[x0], %[w0], %[" S1 "]\n\t"                                              \
    "smlad %[a1], %[x1], %[w1], %[a1]\n\t"                                                   \
    "smlad %[a2], %[x1], %[w0], %[a2]\n\t"                                                   \
    "smlabt %[a2], %[x2], %[w1], %[a2]\n\t"

/* At stride 2: (x0, x1) .. (x6, x7) in four words at P. */
#define DWG3S2_ROWS(P, OFF, S0, S1)                                                          \
    "ldrd %[w0], %[w1], [%[rec], #" OFF "]\n\t"                                              \
    "ldrd %[x0], %[x1], [%[" P "]]\n\t"                                                      \
    "ldrd %[x2], %[x3], [%[" P "], #8]\n\t"                                                  \
    "smlad %[a0], %[x0], %[w0], %[" S0 "]\n\t"                                               \
    "smlabt %[a0], %[x1], %[w1], %[a0]\n\t"                                                  \
    "smlad %[a1], %[x1], %[w0], %[" S1 "]\n\t"                                               \
    "smlabt %[a1], %[x2], %[w1], %[a1]\n\t"                                                  \
    "smlad %[a2], %[x2], %[w0], %[a2]\n\t"                                                   \
    "smlabt %[a2], %[x3], %[w1], %[a2]\n\t"

/* Three outputs of one output row, every channel, as dwg_row6 but with the output pointer o
 * in a register (outputs at o, o + c, o + 2 c). */
#define DWG_ROW3(NAME, ROWS, RQ)                                                             \
static inline __attribute__((always_inline)) void NAME(const int8_t *p0, const int8_t *p1,    \
                                                       const int8_t *p2, const int8_t *rec,   \
                                                       int8_t *o, dw3_row_args *L)            \
{                                                                                            \
    int32_t a0, a1, a2, w0, w1, x0, x1, x2, x3;                                              \
    __asm__ volatile(                                                                        \
        "0:\n\t"                                                                             \
        "ldr %[a2], [%[rec]]\n\t" /* the bias */                                             \
        ROWS("p0", "4", "a2", "a2") ROWS("p1", "12", "a0", "a1") ROWS("p2", "20", "a0", "a1") \
        "ldrd %[w0], %[w1], [%[rec], #28]\n\t"                                               \
        "ldr %[x0], [%[rec], #36]\n\t"                                                       \
        RQ("a0") RQ("a1") RQ("a2")                                                           \
        "ldr %[w1], %[c]\n\t"                                                                \
        "strb %[a1], [%[o], %[w1]]\n\t"                                                      \
        "strb %[a2], [%[o], %[w1], lsl #1]\n\t"                                              \
        "strb %[a0], [%[o]], #1\n\t"                                                         \
        "ldrd %[w0], %[w1], %[d01]\n\t"                                                      \
        "ldr %[x0], %[d2]\n\t"                                                               \
        "ldr %[x1], %[end]\n\t"                                                              \
        "add %[p0], %[p0], %[w0]\n\t"                                                        \
        "add %[p1], %[p1], %[w1]\n\t"                                                        \
        "add %[p2], %[p2], %[x0]\n\t"                                                        \
        "add %[rec], %[rec], #40\n\t"                                                        \
        "cmp %[rec], %[x1]\n\t"                                                              \
        "bne 0b"                                                                             \
        : [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [w0] "=&r"(w0), [w1] "=&r"(w1),    \
          [x0] "=&r"(x0), [x1] "=&r"(x1), [x2] "=&r"(x2), [x3] "=&r"(x3), [p0] "+r"(p0),     \
          [p1] "+r"(p1), [p2] "+r"(p2), [o] "+r"(o), [rec] "+r"(rec)                         \
        : [c] "m"(L->c), [d01] "m"(L->d5), [d2] "m"(L->d5[2]), [end] "m"(L->end)             \
        : "cc", "memory");                                                                   \
}
DWG_ROW3(dwg_row3, DWG3_ROWS, DWG_RQ)
DWG_ROW3(dwg_row3s2, DWG3S2_ROWS, DWG_RQ)
DWG_ROW3(dwg_row3r, DWG3_ROWS, DWG_RQR)
DWG_ROW3(dwg_row3s2r, DWG3S2_ROWS, DWG_RQR)

/* Values per line of the ring (kiloml/codegen/armv7em_dw.py, line_width, computes the same;
 * the _w5 entries' lines are shorter, see dw3). */
static inline __attribute__((always_inline)) int32_t dw3_line(const kml_conv_params *p)
{
    return ((p->out_w - 1) * p->stride_w + 4 + 3) & ~3;
}


/* The depthwise 3x3 kernel. ``s2``, ``w5``, ``h16`` and ``g6`` are constants in each entry
 * point, so that a model links only the row routines it uses: ``s2``, stride 2, rows in steps
 * of three outputs (six then three with ``g6``); ``w5``, no dw3_row1 (_w5: rows of 5 or 9
 * outputs, groups at offsets 0 and out_w - 5, both even; 2: _w5r, dw3_row5hr; _h: steps of
 * five cover the rows);
 * ``h16``, int16 lines (2: _h, groups at odd offsets too); ``g6``, the _g6 records and row
 * routines (kiloml/codegen/armv7em_dw.py: depthwise_w5, depthwise_h, depthwise_g6,
 * depthwise_scratch). */
static inline __attribute__((always_inline)) void dw3(const kml_conv_params *p,
                                                      const int8_t *input,
                                                      const int32_t *packed, int8_t *output,
                                                      int8_t *ring, int32_t s2, int32_t w5,
                                                      int32_t h16, int32_t g6)
{
    const int32_t c = p->in_c;
    /* _w5: lines overlap by their pad columns (a line's right pad is the next one's left pad,
     * both the zero point), so a line holds only pad_left + in_w values, rounded up to even */
    const int32_t lw = w5 && h16 == 1 ? (p->pad_left + p->in_w + 1) & ~1 : dw3_line(p);
    const int32_t h = h16 ? 2 : 1; /* bytes per line value: _w5 and _h keep int16 lines */
    const int32_t slot_bytes = c * lw * h;
    int8_t *const pad = ring + 3 * slot_bytes;
    const int8_t zp = (int8_t)(-p->in_offset);
    const size_t in_row = (size_t)(p->in_w * c);
    dw3_row_args L;
    int32_t b, oy, i;
    L.c2 = 2 * p->out_offset + 1;
    L.c = c;
    L.end = (const int8_t *)(const void *)packed + (g6 ? 40 : 18) * c;
    L.s = p->stride_w;
    if (g6) { /* eight words a step, then two: (3 * c + 1) * lw / 2 words, an even count */
        const uint32_t z2 = (uint32_t)(uint16_t)zp * 0x10001u;
        uint32_t *r32 = (uint32_t *)(void *)ring;
        for (i = (3 * c + 1) * lw / 2; i >= 8; i -= 8, r32 += 8) {
            r32[0] = z2; /* padding columns stay the zero point; rows overwrite the middle */
            r32[1] = z2;
            r32[2] = z2;
            r32[3] = z2;
            r32[4] = z2;
            r32[5] = z2;
            r32[6] = z2;
            r32[7] = z2;
        }
        for (; i > 0; i -= 2, r32 += 2) {
            r32[0] = z2;
            r32[1] = z2;
        }
    } else if (h16) { /* two words a step: (3 * c + 1) * lw values, lw a multiple of 4 */
        const uint32_t z2 = (uint32_t)(uint16_t)zp * 0x10001u;
        uint32_t *r32 = (uint32_t *)(void *)ring;
        for (i = 0; i < (3 * c + 1 + (w5 && h16 == 1)) * lw; i += 4, r32 += 2) {
            r32[0] = z2; /* padding columns stay the zero point; rows overwrite the middle */
            r32[1] = z2;
        }
    } else {
        for (i = 0; i < 3 * slot_bytes + lw; ++i) {
            ring[i] = zp; /* padding columns stay the zero point; rows overwrite the middle */
        }
    }
    for (b = 0; b < p->batches; ++b) {
        const int8_t *in = input + (size_t)b * (size_t)p->in_h * in_row;
        int32_t held[3] = {-1, -1, -1}; /* input row in each ring slot (row iy: slot iy % 3) */
        int8_t *out = output + (size_t)b * (size_t)(p->out_h * p->out_w * c);
        for (oy = 0; oy < p->out_h; ++oy, out += (size_t)(p->out_w * c)) {
            const int8_t *line[3];
            int32_t cs[3], ky, x;
            const int8_t *rec = (const int8_t *)(const void *)packed;
            for (ky = 0; ky < 3; ++ky) {
                const int32_t iy = oy * p->stride_h - p->pad_top + ky;
                int32_t k;
                line[ky] = pad;
                cs[ky] = 0;
                if (iy < 0 || iy >= p->in_h) {
                    continue;
                }
                k = iy % 3;
                if (held[k] != iy) {
                    held[k] = iy;
                    if (g6 && p->in_w >= 16) {
                        dwg_transpose(p, in + (size_t)iy * in_row,
                                      (int16_t *)(void *)(ring + k * slot_bytes), lw,
                                      (uint32_t)(uint8_t)zp * 0x01010101u);
                    } else if (h16) {
                        dw_transpose16(p, in + (size_t)iy * in_row,
                                       (int16_t *)(void *)(ring + k * slot_bytes), lw,
                                       (int32_t)((uint8_t)zp * 0x01010101u));
                    } else {
                        dw_transpose(p, in + (size_t)iy * in_row, ring + k * slot_bytes, lw);
                    }
                }
                line[ky] = ring + k * slot_bytes;
                cs[ky] = lw * h;
            }
            x = 0; /* outputs [x, out_w) are left for dw3_row1 */
            L.d5[0] = cs[0];
            L.d5[1] = cs[1];
            L.d5[2] = cs[2];
            if (g6) { /* groups of six, then of three (the last may overlap) */
                L.cc[0] = c;
                L.cc[1] = 3 * c;
                L.cc[2] = 5 * c;
                const int32_t xs = 2 * p->stride_w; /* bytes per output in a line */
                for (; p->out_w - x >= 6; x += 6) {
                    int8_t *o6 = out + x * c;
                    const int8_t *q0 = line[0] + xs * x, *q1 = line[1] + xs * x;
                    const int8_t *q2 = line[2] + xs * x;
                    if (s2 && g6 == 2) {
                        dwg_row6s2r(q0, q1, q2, rec, &o6, &L);
                    } else if (s2) {
                        dwg_row6s2(q0, q1, q2, rec, &o6, &L);
                    } else if (g6 == 2) {
                        dwg_row6r(q0, q1, q2, rec, &o6, &L);
                    } else {
                        dwg_row6(q0, q1, q2, rec, &o6, &L);
                    }
                }
                for (; x < p->out_w; x += 3) {
                    if (x > p->out_w - 3) {
                        x = p->out_w - 3;
                    }
                    const int8_t *q0 = line[0] + xs * x, *q1 = line[1] + xs * x;
                    const int8_t *q2 = line[2] + xs * x;
                    if (s2 && g6 == 2) {
                        dwg_row3s2r(q0, q1, q2, rec, out + x * c, &L);
                    } else if (s2) {
                        dwg_row3s2(q0, q1, q2, rec, out + x * c, &L);
                    } else if (g6 == 2) {
                        dwg_row3r(q0, q1, q2, rec, out + x * c, &L);
                    } else {
                        dwg_row3(q0, q1, q2, rec, out + x * c, &L);
                    }
                }
            } else if (s2) {
                for (; p->out_w - x >= 3; x += 3) {
                    dw3_row3s2(line[0] + 2 * x, line[1] + 2 * x, line[2] + 2 * x, rec,
                               out + x * c - 1, &L);
                }
            } else if (p->stride_w == 1 && p->out_w >= 5) {
                for (; p->out_w - x >= 3; x += 5) { /* the last five may overlap: cheaper
                                                      * than three singles */
                    if (x > p->out_w - 5) {
                        x = p->out_w - 5;
                    }
                    if (h16 == 2 && (x & 1)) { /* _h: odd offsets from the word before */
                        dw3_row5ho(line[0] + 2 * x - 2, line[1] + 2 * x - 2,
                                   line[2] + 2 * x - 2, rec, out + x * c - 1, &L);
                    } else if (h16 && w5 == 2) { /* _w5r */
                        dw3_row5hr(line[0] + 2 * x, line[1] + 2 * x, line[2] + 2 * x, rec,
                                   out + x * c - 1, &L);
                    } else if (h16) {
                        dw3_row5h(line[0] + 2 * x, line[1] + 2 * x, line[2] + 2 * x, rec,
                                  out + x * c - 1, &L);
                    } else {
                        dw3_row5(line[0] + x, line[1] + x, line[2] + x, rec, out + x * c - 1,
                                 &L);
                    }
                }
            }
            if (!w5 && !g6 && x < p->out_w) {
                const int32_t n = p->out_w - x, sx = x * p->stride_w;
                L.n = n;
                L.dout = 1 - n * c;
                for (ky = 0; ky < 3; ++ky) {
                    L.d1[ky] = cs[ky] - n * p->stride_w;
                }
                dw3_row1(line[0] + sx, line[1] + sx, line[2] + sx, rec, c, out + x * c, &L);
            }
            if (p->act_min != -128 || p->act_max != 127) {
                /* the kernel saturated to [-128, 127]; narrow to the activation */
                for (i = 0; i < p->out_w * c; ++i) {
                    out[i] = kml_clamp8(out[i], p->act_min, p->act_max);
                }
            }
        }
    }
}

/* The 3x3 entry points: dw3 with the entry's constant s2, w5, h16 and g6 (see dw3); the
 * weights and requantization parameters are all in ``packed``. */
#define KML_DW3_ENTRY(name, s2, w5, h16, g6)                                                   \
    KML_SMALL void name(const kml_conv_params *p, const int8_t *input, const int8_t *filter, \
                        const int32_t *bias, const int32_t *mult, const int32_t *shift,      \
                        int8_t *output, const int32_t *packed, int32_t *scratch)             \
    {                                                                                        \
        (void)filter;                                                                        \
        (void)bias;                                                                          \
        (void)mult;                                                                          \
        (void)shift;                                                                         \
        dw3(p, input, packed, output, (int8_t *)(void *)scratch, s2, w5, h16, g6);           \
    }

KML_DW3_ENTRY(kml_depthwise_conv2d_3x3_s8, 0, 0, 0, 0)
KML_DW3_ENTRY(kml_depthwise_conv2d_3x3_w5_s8, 0, 1, 1, 0)
/* _w5 for layers whose activation minimum is at least the output offset (ReLU): the
 * requantization without the correction for negative accumulators (DW5_RQR). */
KML_DW3_ENTRY(kml_depthwise_conv2d_3x3_w5r_s8, 0, 2, 1, 0)
/* Stride 1, output width at least 5 and not 1 or 2 mod 5 (steps of five cover the rows),
 * channel count a multiple of 4: int16 lines, groups at even and odd offsets. */
KML_DW3_ENTRY(kml_depthwise_conv2d_3x3_h_s8, 0, 1, 2, 0)
KML_DW3_ENTRY(kml_depthwise_conv2d_3x3_s2_s8, 1, 0, 0, 0)
/* Stride 1, output width a multiple of 3, channel count a multiple of 4: int16 lines,
 * pre-split weights, groups of six then three outputs (dwg_row6, dwg_row3). */
KML_DW3_ENTRY(kml_depthwise_conv2d_3x3_g6_s8, 0, 0, 1, 1)
/* Stride 2, output width at least 3, channel count a multiple of 4: as _g6 (dwg_row6s2,
 * dwg_row3s2; a last group of three may overlap the previous one). */
KML_DW3_ENTRY(kml_depthwise_conv2d_3x3_g6s2_s8, 1, 0, 1, 1)
/* _g6 and _g6s2 for layers whose activation minimum is at least the output offset (ReLU):
 * the requantization without the correction for negative accumulators (DWG_RQR). */
KML_DW3_ENTRY(kml_depthwise_conv2d_3x3_g6r_s8, 0, 0, 1, 2)
KML_DW3_ENTRY(kml_depthwise_conv2d_3x3_g6s2r_s8, 1, 0, 1, 2)


/* Any other geometry. Four output channels at a time when the channel count allows it and
 * the depth multiplier is 1 (four consecutive inputs in one word) or a multiple of 4 (one
 * input broadcast to both halves): per tap one word of inputs split by SXTAB16 (offset added),
 * the filter word of the 4 channels split by SXTB16, and SMLABB / SMLATT per channel; only the
 * taps inside the image are visited (TFLite skips padded taps). Otherwise one channel at a
 * time. TFLite's requantization. Output pixels are written in order after their window is
 * read (in place as portable). */
void kml_depthwise_conv2d_s8(const kml_conv_params *p, const int8_t *input,
                             const int8_t *filter, const int32_t *bias, const int32_t *mult,
                             const int32_t *shift, int8_t *output, const int32_t *packed,
                             int32_t *scratch)
{
    const int32_t c = p->in_c, oc_n = p->out_c;
    const int32_t m = oc_n / c;
    const int32_t off2 = kml_pair16(p->in_offset);
    const int32_t step = (oc_n & 3) == 0 && (m == 1 || (m & 3) == 0) ? 4 : 1;
    int32_t b, oy, ox, oc, ky, kx, i;
    int8_t *out = output;
    (void)packed;
    (void)scratch;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *in = input + (size_t)b * (size_t)(p->in_h * p->in_w * c);
        for (oy = 0; oy < p->out_h; ++oy) {
            const int32_t iy0 = oy * p->stride_h - p->pad_top;
            for (ox = 0; ox < p->out_w; ++ox, out += oc_n) {
                const int32_t ix0 = ox * p->stride_w - p->pad_left;
                int32_t kx0 = 0, kx1 = p->k_w, ky0 = 0, ky1 = p->k_h;
                while (kx0 < kx1 && ix0 + kx0 * p->dil_w < 0) {
                    ++kx0;
                }
                while (kx1 > kx0 && ix0 + (kx1 - 1) * p->dil_w >= p->in_w) {
                    --kx1;
                }
                while (ky0 < ky1 && iy0 + ky0 * p->dil_h < 0) {
                    ++ky0;
                }
                while (ky1 > ky0 && iy0 + (ky1 - 1) * p->dil_h >= p->in_h) {
                    --ky1;
                }
                for (oc = 0; oc < oc_n; oc += step) {
                    int32_t acc[4], a0 = 0, a1 = 0, a2 = 0, a3 = 0;
                    for (ky = ky0; ky < ky1; ++ky) {
                        const int8_t *x = in + ((size_t)(iy0 + ky * p->dil_h) * (size_t)p->in_w
                                                + (size_t)(ix0 + kx0 * p->dil_w)) * (size_t)c + (size_t)(oc / m);
                        const int8_t *w = filter + (size_t)(ky * p->k_w + kx0) * (size_t)oc_n + (size_t)oc;
                        const size_t xs = (size_t)(p->dil_w * c);
                        if (step == 1) {
                            for (kx = kx0; kx < kx1; ++kx, x += xs, w += oc_n) {
                                a0 += (int32_t)*w * ((int32_t)*x + p->in_offset);
                            }
                        } else if (m == 1) { /* four consecutive inputs */
                            for (kx = kx0; kx < kx1; ++kx, x += xs, w += oc_n) {
                                const int32_t wv = kml_ld32(w), xv = kml_ld32(x);
                                const int32_t xe = __sxtab16(off2, xv);
                                const int32_t xo = kml_sxtab16_ror8(off2, xv);
                                const int32_t we = __sxtb16(wv), wo = kml_sxtb16_ror8(wv);
                                a0 = __smlabb(xe, we, a0);
                                a2 = __smlatt(xe, we, a2);
                                a1 = __smlabb(xo, wo, a1);
                                a3 = __smlatt(xo, wo, a3);
                            }
                        } else { /* one input for all four channels */
                            for (kx = kx0; kx < kx1; ++kx, x += xs, w += oc_n) {
                                const int32_t wv = kml_ld32(w);
                                const int32_t xx = kml_pair16((int32_t)*x + p->in_offset);
                                const int32_t we = __sxtb16(wv), wo = kml_sxtb16_ror8(wv);
                                a0 = __smlabb(xx, we, a0);
                                a2 = __smlatt(xx, we, a2);
                                a1 = __smlabb(xx, wo, a1);
                                a3 = __smlatt(xx, wo, a3);
                            }
                        }
                    }
                    acc[0] = a0;
                    acc[1] = a1;
                    acc[2] = a2;
                    acc[3] = a3;
                    for (i = 0; i < step; ++i) {
                        const int32_t a = acc[i] + (bias != 0 ? bias[oc + i] : 0);
                        out[oc + i] = kml_clamp8(kml_mbqm(a, mult[oc + i], shift[oc + i]) + p->out_offset,
                                                 p->act_min, p->act_max);
                    }
                }
            }
        }
    }
}
