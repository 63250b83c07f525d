/* kiloml runtime (armv7em): CONV_2D with a 1x1 filter, stride 1 and no padding,
 * kml_conv2d_1x1_s8 and, for int16 weights, kml_conv2d_1x1x_s8 (declared in kml_conv.h; the matrix fragments it shares with the other
 * CONV_2D kernels are in kml_conv_mm.h). Only models with such layers link this file.
 */
#include "kml_conv_mm.h"

/* Groups per iteration of conv1x1_run's loop (more groups: fewer loop tests per channel
 * pair; only models with 1x1 layers of many channels link it). */
#define MM_UNROLL_1X1 16
#define MM_GROUP16 MM_GROUP6 MM_GROUP6 MM_GROUP2 MM_GROUP2
/* MM_SHORT for conv1x1_run_short: 31 straight groups after MM_GROUP0. */
#define MM_SHORT_1X1 32
#define MM_GROUP31 MM_GROUP MM_GROUP6 MM_GROUP6 MM_GROUP6 MM_GROUP6 MM_GROUP6

/* -- 1x1 kernel ------------------------------------------------------------------------------
 * kml_conv2d_1x1_s8: 1x1 filter, stride 1, no padding (pixel q's window is the in_c bytes at
 * q * in_c, batches included), in_c a multiple of 4, even out_c, every pair on kml_rq. One asm
 * block runs the whole layer, two pixels at a time: their columns (col_pair's layout, values
 * doubled: 2 (x + in_offset)), then every channel pair as in mm_pairs, from a leaner stream
 * (matrix_stream with lean=True in kiloml/codegen/armv7em.py): per pair the doubled biases
 * 2 b0, 2 b1, the weight words, m0, m1, k0, k1 (kml_rq_k, precomputed) and the shift word.
 * With the accumulator already doubled, kml_rq is SMMLAR, SUB, ASR, SSAT (no LSL). Variants
 * by group count: conv1x1_run_g2, _g4, _g8 (2, 4 or 8 groups, out_c a multiple of 4: no
 * jump, two channel pairs per loop step), conv1x1_run_short (up to MM_SHORT_1X1 groups as straight code),
 * conv1x1_run (a loop of MM_UNROLL_1X1 groups); an odd last pixel takes conv1x1_one. */

/* One group of a doubled column pair from A's four inputs at [x] (x advances) and B's at
 * [x + xe]; o2: the input offset in both halves. */
#define C1_GROUP_DB(DB)                                                                      \
    "ldr %[x1], [%[x], %[" DB "]]\n\t"                                                       \
    "ldr %[x0], [%[x]], #4\n\t"                                                              \
    "sxtab16 %[x2], %[wo], %[x0]\n\t"                                                        \
    "sxtab16 %[x3], %[wo], %[x0], ror #8\n\t"                                                \
    "sxtab16 %[a0], %[wo], %[x1]\n\t"                                                        \
    "sxtab16 %[x1], %[wo], %[x1], ror #8\n\t"                                                \
    "sadd16 %[x2], %[x2], %[x2]\n\t"                                                         \
    "sadd16 %[x3], %[x3], %[x3]\n\t"                                                         \
    "sadd16 %[a0], %[a0], %[a0]\n\t"                                                         \
    "sadd16 %[x1], %[x1], %[x1]\n\t"                                                         \
    "strd %[x2], %[x3], [%[w]], #8\n\t"                                                      \
    "strd %[a0], %[x1], [%[w]], #8\n\t"

#define C1_GROUP C1_GROUP_DB("xe")

/* kml_rq of the doubled accumulator A (multiplier M, k K, shift R), saturated into A. */
#define C1_RQ(A, M, K, R)                                                                    \
    "smmlar %[wo], %[" A "], %[" M "], %[" K "]\n\t"                                         \
    "sub %[wo], %[wo], %[" A "], lsr #31\n\t"                                                \
    "asr %[wo], %[wo], %[" R "]\n\t"                                                         \
    "ssat %[" A "], #8, %[wo]\n\t"

/* The layer state conv1x1_run keeps in memory (the asm block needs every register). */
typedef struct {
    const int8_t *src;   /* pixel A's inputs (B's at + db) */
    int8_t *out;         /* pixel A's outputs (B's at + out_c) */
    const int32_t *w, *w_end; /* the stream's channel pairs */
    int32_t *col, *col_end;   /* the column pair, 4 words per group */
    int32_t back;        /* mm_back(groups) */
    int32_t db;          /* bytes from A's inputs to B's: in_c, or 0 (one pixel) */
    int32_t ob1;         /* bytes from A's outputs to B's (out_c, or 0), minus 1 */
    int32_t o2;          /* kml_pair16(in_offset) */
    int32_t in_groups;   /* in_c / 4 */
    int32_t n;           /* pixel pairs */
} c1_args;

static void conv1x1_run(c1_args *s)
{
    const int8_t *src = s->src;
    int8_t *out = s->out;
    const int32_t *const w_base = s->w, *const w_end = s->w_end;
    int32_t *const col = s->col, *const col_end = s->col_end;
    int32_t back = s->back, n = s->n;
    const int32_t db = s->db, ob1 = s->ob1, o2 = s->o2, ng = s->in_groups;
    const int32_t *x, *w;
    int32_t a0, a1, c0, c1, t0, t1, t2, t3, t4, t5, t6, xe;
    __asm__ volatile(
        "ldr %[w1], %[back]\n\t"            /* the channel loop's entry after the first group */
        "adr %[w0], 9f\n\t"
        "sub %[w0], %[w0], %[w1]\n\t"
        "str %[w0], %[back]\n"
        "7:\n\t"                            /* per pixel pair: the doubled columns */
        "ldr %[x], %[src]\n\t"
        "ldr %[w], %[col]\n\t"
        "ldr %[xe], %[db]\n\t"
        "ldr %[wo], %[o2]\n\t"
        "ldr %[w1], %[ng]\n\t"
        "lsrs %[w1], %[w1], #1\n\t"         /* (ng + 1) / 2 steps; ng odd: enter halfway */
        "adc %[w1], %[w1], #0\n\t"
        "bcs 5f\n"
        "4:\n\t"
        C1_GROUP
        "5:\n\t"
        C1_GROUP
        "subs %[w1], %[w1], #1\n\t"
        "bne 4b\n\t"
        "add %[x], %[x], %[xe]\n\t"         /* the next pair's inputs */
        "str %[x], %[src]\n\t"
        "ldr %[w], %[wb]\n\t"
        "ldr %[xe], %[ce]\n"
        "0:\n\t"                            /* per channel pair */
        "ldrd %[a0], %[a1], [%[w]], #8\n\t"
        "ldr %[x], %[col]\n\t"
        MM_GROUP0
        "ldr %[w0], %[back]\n\t"
        "mov pc, %[w0]\n\t"                 /* ARMv7-M: bit 0 of the address is ignored */
        ".p2align 2\n"
        "1:\n\t" MM_GROUP16
        "9:\n\t"
        "cmp %[x], %[xe]\n\t"
        "bcc 1b\n\t"
        "ldrd %[w0], %[w1], [%[w]], #8\n\t"   /* m0, m1 */
        "ldrd %[x0], %[x1], [%[w]], #8\n\t"   /* k0, k1 */
        "ldr %[x2], [%[w]], #4\n\t"           /* shift bytes: r0 in x2's low byte */
        "lsr %[x3], %[x2], #8\n\t"            /* r1 */
        C1_RQ("a0", "w0", "x0", "x2")
        C1_RQ("a1", "w1", "x1", "x3")
        C1_RQ("c0", "w0", "x0", "x2")
        C1_RQ("c1", "w1", "x1", "x3")
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
        "ldr %[w0], %[n]\n\t"
        "subs %[w0], %[w0], #1\n\t"
        "str %[w0], %[n]\n\t"
        "bne 7b"
        : [w0] "=&r"(t0), [w1] "=&r"(t1), [x0] "=&r"(t2), [x1] "=&r"(t3), [x2] "=&r"(t4),
          [x3] "=&r"(t5), [wo] "=&r"(t6), [a0] "=&r"(a0), [a1] "=&r"(a1), [c0] "=&r"(c0),
          [c1] "=&r"(c1), [x] "=&r"(x), [w] "=&r"(w), [xe] "=&r"(xe), [src] "+m"(src),
          [out] "+m"(out), [back] "+m"(back), [n] "+m"(n)
        : [col] "m"(col), [ce] "m"(col_end), [wb] "m"(w_base), [we] "m"(w_end), [db] "m"(db),
          [ob1] "m"(ob1), [o2] "m"(o2), [ng] "m"(ng)
        : "cc", "memory");
}

/* conv1x1_run for at most MM_SHORT_1X1 groups: the groups are straight code entered at
 * (groups - 1) * MM_GROUP_BYTES before the requantization (s->back), no loop test; the
 * register the loop's end held keeps the output pointer (B's offset is in c1 meanwhile). */
static void conv1x1_run_short(c1_args *s)
{
    const int8_t *src = s->src;
    int8_t *const out = s->out;
    const int32_t *const w_base = s->w, *const w_end = s->w_end;
    int32_t *const col = s->col;
    int32_t back = s->back, n = s->n;
    const int32_t db = s->db, ob1 = s->ob1, o2 = s->o2, ng = s->in_groups;
    const int32_t *x, *w;
    int32_t a0, a1, c0, c1, t0, t1, t2, t3, t4, t5, t6;
    int8_t *o;
    __asm__ volatile(
        "ldr %[w1], %[back]\n\t"
        "adr %[w0], 9f\n\t"
        "sub %[w0], %[w0], %[w1]\n\t"
        "str %[w0], %[back]\n\t"
        "ldr %[o], %[out]\n"
        "7:\n\t"
        "ldr %[x], %[src]\n\t"
        "ldr %[w], %[col]\n\t"
        "ldr %[c1], %[db]\n\t"
        "ldr %[wo], %[o2]\n\t"
        "ldr %[w1], %[ng]\n\t"
        "lsrs %[w1], %[w1], #1\n\t"
        "adc %[w1], %[w1], #0\n\t"
        "bcs 5f\n"
        "4:\n\t"
        C1_GROUP_DB("c1")
        "5:\n\t"
        C1_GROUP_DB("c1")
        "subs %[w1], %[w1], #1\n\t"
        "bne 4b\n\t"
        "add %[x], %[x], %[c1]\n\t"
        "str %[x], %[src]\n\t"
        "ldr %[w], %[wb]\n\t"
        MM_HEAD
        ".p2align 2\n\t"
        MM_GROUP31
        "9:\n\t"
        "ldrd %[w0], %[w1], [%[w]], #8\n\t"   /* m0, m1 */
        "ldrd %[x0], %[x1], [%[w]], #8\n\t"   /* k0, k1 */
        "ldr %[x2], [%[w]], #4\n\t"           /* shift bytes: r0 in x2's low byte */
        "lsr %[x3], %[x2], #8\n\t"            /* r1 */
        C1_RQ("a0", "w0", "x0", "x2")
        C1_RQ("a1", "w1", "x1", "x3")
        C1_RQ("c0", "w0", "x0", "x2")
        C1_RQ("c1", "w1", "x1", "x3")
        "ldr %[w0], %[ob1]\n\t"
        "strb %[a0], [%[o]], #1\n\t"
        "strb %[c0], [%[o], %[w0]]\n\t"
        "strb %[a1], [%[o]], #1\n\t"
        "strb %[c1], [%[o], %[w0]]\n\t"
        "ldr %[w0], %[we]\n\t"
        "cmp %[w], %[w0]\n\t"
        "beq 6f\n\t"
        MM_HEAD
        "6:\n\t"
        "ldr %[w0], %[ob1]\n\t"             /* past pixel B's outputs: + (ob1 + 1) */
        "add %[o], %[o], %[w0]\n\t"
        "add %[o], %[o], #1\n\t"
        "ldr %[w0], %[n]\n\t"
        "subs %[w0], %[w0], #1\n\t"
        "str %[w0], %[n]\n\t"
        "bne 7b"
        : [w0] "=&r"(t0), [w1] "=&r"(t1), [x0] "=&r"(t2), [x1] "=&r"(t3), [x2] "=&r"(t4),
          [x3] "=&r"(t5), [wo] "=&r"(t6), [a0] "=&r"(a0), [a1] "=&r"(a1), [c0] "=&r"(c0),
          [c1] "=&r"(c1), [x] "=&r"(x), [w] "=&r"(w), [o] "=&r"(o), [src] "+m"(src),
          [back] "+m"(back), [n] "+m"(n)
        : [out] "m"(out), [col] "m"(col), [wb] "m"(w_base), [we] "m"(w_end), [db] "m"(db),
          [ob1] "m"(ob1), [o2] "m"(o2), [ng] "m"(ng)
        : "cc", "memory");
}

/* One channel pair of conv1x1_run_g (GROUPS: MM_GROUP0 and the other groups, straight):
 * biases, the groups, kml_rq, the four stores. */
#define C1_PAIR_G(GROUPS)                                                                    \
    "ldrd %[a0], %[a1], [%[w]], #8\n\t"                                                      \
    "ldr %[x], %[col]\n\t"                                                                   \
    GROUPS                                                                                   \
    "ldrd %[w0], %[w1], [%[w]], #8\n\t"   /* m0, m1 */                                       \
    "ldrd %[x0], %[x1], [%[w]], #8\n\t"   /* k0, k1 */                                       \
    "ldr %[x2], [%[w]], #4\n\t"           /* shift bytes: r0 in x2's low byte */             \
    "lsr %[x3], %[x2], #8\n\t"            /* r1 */                                           \
    C1_RQ("a0", "w0", "x0", "x2")                                                            \
    C1_RQ("a1", "w1", "x1", "x3")                                                            \
    C1_RQ("c0", "w0", "x0", "x2")                                                            \
    C1_RQ("c1", "w1", "x1", "x3")                                                            \
    "ldr %[w0], %[ob1]\n\t"                                                                  \
    "strb %[a0], [%[o]], #1\n\t"                                                             \
    "strb %[c0], [%[o], %[w0]]\n\t"                                                          \
    "strb %[a1], [%[o]], #1\n\t"                                                             \
    "strb %[c1], [%[o], %[w0]]\n\t"

#define C1_G2 MM_GROUP0 MM_GROUP
#define C1_G4 MM_GROUP0 MM_GROUP MM_GROUP2
#define C1_G8 MM_GROUP0 MM_GROUP MM_GROUP6

/* The doubled column pair from ng (in w1) groups per pixel: C1_COLS12 for one or two groups
 * straight, C1_COLS the loop of two groups per step (ng odd: entered halfway). */
#define C1_COLS12                                                                            \
    "cmp %[w1], #1\n\t"                                                                      \
    "beq 5f\n\t"                                                                             \
    C1_GROUP_DB("c1")                                                                        \
    "5:\n\t"                                                                                 \
    C1_GROUP_DB("c1")
#define C1_COLS                                                                              \
    "lsrs %[w1], %[w1], #1\n\t"                                                              \
    "adc %[w1], %[w1], #0\n\t"                                                               \
    "bcs 5f\n"                                                                               \
    "4:\n\t"                                                                                 \
    C1_GROUP_DB("c1")                                                                        \
    "5:\n\t"                                                                                 \
    C1_GROUP_DB("c1")                                                                        \
    "subs %[w1], %[w1], #1\n\t"                                                              \
    "bne 4b\n\t"

/* conv1x1_run for exactly 2, 4 or 8 groups (GROUPS: C1_G2, C1_G4, C1_G8) and a channel
 * count that is a multiple of 4: the groups straight without the computed jump, two channel
 * pairs per loop step. */
#define C1_RUN_G(NAME, GROUPS, COLS)                                                         \
    static void NAME(c1_args *s)                                                             \
    {                                                                                        \
        const int8_t *src = s->src;                                                          \
        int8_t *const out = s->out;                                                          \
        const int32_t *const w_base = s->w, *const w_end = s->w_end;                         \
        int32_t *const col = s->col;                                                         \
        int32_t n = s->n;                                                                    \
        const int32_t db = s->db, ob1 = s->ob1, o2 = s->o2, ng = s->in_groups;               \
        const int32_t *x, *w;                                                                \
        int32_t a0, a1, c0, c1, t0, t1, t2, t3, t4, t5, t6;                                  \
        int8_t *o;                                                                           \
        __asm__ volatile(                                                                    \
            "ldr %[o], %[out]\n"                                                             \
            "7:\n\t"                                                                         \
            "ldr %[x], %[src]\n\t"                                                           \
            "ldr %[w], %[col]\n\t"                                                           \
            "ldr %[c1], %[db]\n\t"                                                           \
            "ldr %[wo], %[o2]\n\t"                                                           \
            "ldr %[w1], %[ng]\n\t"                                                           \
            COLS                                                                             \
            "add %[x], %[x], %[c1]\n\t"                                                      \
            "str %[x], %[src]\n\t"                                                           \
            "ldr %[w], %[wb]\n"                                                              \
            "0:\n\t"                                                                         \
            C1_PAIR_G(GROUPS)                                                                \
            C1_PAIR_G(GROUPS)                                                                \
            "ldr %[w0], %[we]\n\t"                                                           \
            "cmp %[w], %[w0]\n\t"                                                            \
            "bne 0b\n\t"                                                                     \
            "ldr %[w0], %[ob1]\n\t"         /* past pixel B's outputs: + (ob1 + 1) */        \
            "add %[o], %[o], %[w0]\n\t"                                                      \
            "add %[o], %[o], #1\n\t"                                                         \
            "ldr %[w0], %[n]\n\t"                                                            \
            "subs %[w0], %[w0], #1\n\t"                                                      \
            "str %[w0], %[n]\n\t"                                                            \
            "bne 7b"                                                                         \
            : [w0] "=&r"(t0), [w1] "=&r"(t1), [x0] "=&r"(t2), [x1] "=&r"(t3),                \
              [x2] "=&r"(t4), [x3] "=&r"(t5), [wo] "=&r"(t6), [a0] "=&r"(a0),                \
              [a1] "=&r"(a1), [c0] "=&r"(c0), [c1] "=&r"(c1), [x] "=&r"(x), [w] "=&r"(w),    \
              [o] "=&r"(o), [src] "+m"(src), [n] "+m"(n)                                     \
            : [out] "m"(out), [col] "m"(col), [wb] "m"(w_base), [we] "m"(w_end),             \
              [db] "m"(db), [ob1] "m"(ob1), [o2] "m"(o2), [ng] "m"(ng)                       \
            : "cc", "memory");                                                               \
    }

C1_RUN_G(conv1x1_run_g2, C1_G2, C1_COLS12)
C1_RUN_G(conv1x1_run_g4, C1_G4, C1_COLS)
C1_RUN_G(conv1x1_run_g8, C1_G8, C1_COLS)

/* -- 1x1 kernel, int16 weights ----------------------------------------------------------------
 * For small 1x1 layers the generator may store the weights sign-extended (matrix_stream with
 * extended=True, ``packed[0]`` == 2): per group the pair's words E0 = (w0, w2) and E1 =
 * (w1, w3) of channel 2i, then those of channel 2i + 1, the halves SXTB16 and SXTB16 ROR #8
 * would make. A group is then four back-to-back LDRD and 8 SMLAD (13 cycles, not 16); the
 * output pointer goes to memory to free the fourth weight register.
 * (MMX_GROUP, MMX_GROUP0: kml_conv_mm.h.) */

#define C1X_G2 MMX_GROUP0 MMX_GROUP
#define C1X_G4 MMX_GROUP0 MMX_GROUP MMX_GROUP MMX_GROUP
#define C1X_G8 C1X_G4 MMX_GROUP MMX_GROUP MMX_GROUP MMX_GROUP

/* One channel pair: biases, the groups, kml_rq, the four stores through the output pointer
 * in memory. */
#define C1X_PAIR(GROUPS)                                                                     \
    "ldrd %[a0], %[a1], [%[w]], #8\n\t"                                                      \
    "ldr %[x], %[col]\n\t"                                                                   \
    GROUPS                                                                                   \
    "ldrd %[w0], %[w1], [%[w]], #8\n\t"   /* m0, m1 */                                       \
    "ldrd %[x0], %[x1], [%[w]], #8\n\t"   /* k0, k1 */                                       \
    "ldr %[x2], [%[w]], #4\n\t"           /* shift bytes: r0 in x2's low byte */             \
    "lsr %[x3], %[x2], #8\n\t"            /* r1 */                                           \
    C1_RQ("a0", "w0", "x0", "x2")                                                            \
    C1_RQ("a1", "w1", "x1", "x3")                                                            \
    C1_RQ("c0", "w0", "x0", "x2")                                                            \
    C1_RQ("c1", "w1", "x1", "x3")                                                            \
    "ldr %[w3], %[out]\n\t"                                                                  \
    "ldr %[w0], %[ob1]\n\t"                                                                  \
    "strb %[a0], [%[w3]], #1\n\t"                                                            \
    "strb %[c0], [%[w3], %[w0]]\n\t"                                                         \
    "strb %[a1], [%[w3]], #1\n\t"                                                            \
    "strb %[c1], [%[w3], %[w0]]\n\t"                                                         \
    "str %[w3], %[out]\n\t"

/* conv1x1_run_g2/4/8 for int16 weights. */
#define C1X_RUN_G(NAME, GROUPS, COLS)                                                        \
    static void NAME(c1_args *s)                                                             \
    {                                                                                        \
        const int8_t *src = s->src;                                                          \
        int8_t *out = s->out;                                                                \
        const int32_t *const w_base = s->w, *const w_end = s->w_end;                         \
        int32_t *const col = s->col;                                                         \
        int32_t n = s->n;                                                                    \
        const int32_t db = s->db, ob1 = s->ob1, o2 = s->o2, ng = s->in_groups;               \
        const int32_t *x, *w;                                                                \
        int32_t a0, a1, c0, c1, t0, t1, t2, t3, t4, t5, t6, t7;                              \
        __asm__ volatile(                                                                    \
            "7:\n\t"                                                                         \
            "ldr %[x], %[src]\n\t"                                                           \
            "ldr %[w], %[col]\n\t"                                                           \
            "ldr %[c1], %[db]\n\t"                                                           \
            "ldr %[wo], %[o2]\n\t"                                                           \
            "ldr %[w1], %[ng]\n\t"                                                           \
            COLS                                                                             \
            "add %[x], %[x], %[c1]\n\t"                                                      \
            "str %[x], %[src]\n\t"                                                           \
            "ldr %[w], %[wb]\n"                                                              \
            "0:\n\t"                                                                         \
            C1X_PAIR(GROUPS)                                                                 \
            C1X_PAIR(GROUPS)                                                                 \
            "ldr %[w0], %[we]\n\t"                                                           \
            "cmp %[w], %[w0]\n\t"                                                            \
            "bne 0b\n\t"                                                                     \
            "ldr %[w0], %[ob1]\n\t"         /* past pixel B's outputs: + (ob1 + 1) */        \
            "add %[w3], %[w3], %[w0]\n\t"                                                    \
            "add %[w3], %[w3], #1\n\t"                                                       \
            "str %[w3], %[out]\n\t"                                                          \
            "ldr %[w0], %[n]\n\t"                                                            \
            "subs %[w0], %[w0], #1\n\t"                                                      \
            "str %[w0], %[n]\n\t"                                                            \
            "bne 7b"                                                                         \
            : [w0] "=&r"(t0), [w1] "=&r"(t1), [x0] "=&r"(t2), [x1] "=&r"(t3),                \
              [x2] "=&r"(t4), [x3] "=&r"(t5), [wo] "=&r"(t6), [w3] "=&r"(t7),                \
              [a0] "=&r"(a0), [a1] "=&r"(a1), [c0] "=&r"(c0), [c1] "=&r"(c1), [x] "=&r"(x),  \
              [w] "=&r"(w), [src] "+m"(src), [n] "+m"(n), [out] "+m"(out)                    \
            : [col] "m"(col), [wb] "m"(w_base), [we] "m"(w_end), [db] "m"(db),               \
              [ob1] "m"(ob1), [o2] "m"(o2), [ng] "m"(ng)                                     \
            : "cc", "memory");                                                               \
    }

C1X_RUN_G(conv1x1x_run_g2, C1X_G2, C1_COLS12)
C1X_RUN_G(conv1x1x_run_g4, C1X_G4, C1_COLS)
C1X_RUN_G(conv1x1x_run_g8, C1X_G8, C1_COLS)

/* The last pixel of an odd count with int16 weights, in C (once per layer). */
static KML_SMALL void conv1x1x_one(const c1_args *s, int32_t groups)
{
    const int32_t *w = s->w;
    int8_t *out = s->out;
    int32_t g;
    while (w != s->w_end) {
        int32_t acc0 = w[0], acc1 = w[1];
        w += 2;
        for (g = 0; g < groups; ++g, w += 4) {
            int32_t lo = 0, hi = 0;
            if (g < s->in_groups) {
                const int32_t v = kml_ld32(s->src + 4 * g);
                lo = __sxtab16(s->o2, v);
                hi = kml_sxtab16_ror8(s->o2, v);
                lo = __sadd16(lo, lo);
                hi = __sadd16(hi, hi);
            }
            acc0 = __smlad(lo, w[0], __smlad(hi, w[1], acc0));
            acc1 = __smlad(lo, w[2], __smlad(hi, w[3], acc1));
        }
        {
            const int32_t r0 = w[4] & 0xFF, r1 = (w[4] >> 8) & 0xFF;
            const int32_t v0 = kml_smmlar(acc0, w[0], w[2]), v1 = kml_smmlar(acc1, w[1], w[3]);
            out[0] = (int8_t)kml_ssat8((v0 - (int32_t)((uint32_t)acc0 >> 31)) >> r0);
            out[1] = (int8_t)kml_ssat8((v1 - (int32_t)((uint32_t)acc1 >> 31)) >> r1);
        }
        out += 2;
        w += 5;
    }
}

/* The last pixel of an odd count alone: its doubled column (compact: group g at words 2g,
 * 2g + 1), then per channel pair two accumulators, two groups per loop step (four
 * back-to-back loads, 8 SXTB16, 8 SMLAD), kml_rq as in conv1x1_run. A pair pass spends the
 * same loads and MACs on a copy of the pixel. */
static void conv1x1_one(const c1_args *s, int32_t groups)
{
    int32_t *const col = s->col;
    int32_t *const col_end = col + 2 * groups;
    const int32_t *const w_base = s->w, *const w_end = s->w_end;
    int8_t *out = s->out;
    const int32_t *x, *w;
    int32_t g, a0, a1, c0, c1, t0, t1, t2, t3, t4, t5, t6, xe;
    for (g = 0; g < s->in_groups; ++g) {
        const int32_t v = kml_ld32(s->src + 4 * g);
        const int32_t lo = __sxtab16(s->o2, v), hi = kml_sxtab16_ror8(s->o2, v);
        col[2 * g] = __sadd16(lo, lo);
        col[2 * g + 1] = __sadd16(hi, hi);
    }
    for (g *= 2; g < 2 * groups; ++g) {
        col[g] = 0; /* the zero padding up to K8 (zero weights too) */
    }
    __asm__ volatile(
        "ldr %[w], %[wb]\n\t"
        "ldr %[xe], %[ce]\n"
        "0:\n\t"
        "ldrd %[a0], %[a1], [%[w]], #8\n\t"   /* doubled biases */
        "ldr %[x], %[col]\n"
        "1:\n\t"
        "ldrd %[w0], %[w1], [%[w]], #8\n\t"
        "ldrd %[c0], %[c1], [%[w]], #8\n\t"
        "ldrd %[x0], %[x1], [%[x]], #8\n\t"
        "ldrd %[x2], %[x3], [%[x]], #8\n\t"
        "sxtb16 %[wo], %[w0], ror #8\n\t"
        "sxtb16 %[w0], %[w0]\n\t"
        "smlad %[a0], %[x0], %[w0], %[a0]\n\t"
        "smlad %[a0], %[x1], %[wo], %[a0]\n\t"
        "sxtb16 %[wo], %[w1], ror #8\n\t"
        "sxtb16 %[w1], %[w1]\n\t"
        "smlad %[a1], %[x0], %[w1], %[a1]\n\t"
        "smlad %[a1], %[x1], %[wo], %[a1]\n\t"
        "sxtb16 %[wo], %[c0], ror #8\n\t"
        "sxtb16 %[c0], %[c0]\n\t"
        "smlad %[a0], %[x2], %[c0], %[a0]\n\t"
        "smlad %[a0], %[x3], %[wo], %[a0]\n\t"
        "sxtb16 %[wo], %[c1], ror #8\n\t"
        "sxtb16 %[c1], %[c1]\n\t"
        "smlad %[a1], %[x2], %[c1], %[a1]\n\t"
        "smlad %[a1], %[x3], %[wo], %[a1]\n\t"
        "cmp %[x], %[xe]\n\t"
        "bcc 1b\n\t"
        "ldrd %[w0], %[w1], [%[w]], #8\n\t"   /* m0, m1 */
        "ldrd %[x0], %[x1], [%[w]], #8\n\t"   /* k0, k1 */
        "ldr %[x2], [%[w]], #4\n\t"           /* shift bytes: r0 in x2's low byte */
        "lsr %[x3], %[x2], #8\n\t"            /* r1 */
        C1_RQ("a0", "w0", "x0", "x2")
        C1_RQ("a1", "w1", "x1", "x3")
        "ldr %[x], %[out]\n\t"
        "strb %[a0], [%[x]], #1\n\t"
        "strb %[a1], [%[x]], #1\n\t"
        "str %[x], %[out]\n\t"
        "ldr %[w0], %[we]\n\t"
        "cmp %[w], %[w0]\n\t"
        "bne 0b"
        : [w0] "=&r"(t0), [w1] "=&r"(t1), [x0] "=&r"(t2), [x1] "=&r"(t3), [x2] "=&r"(t4),
          [x3] "=&r"(t5), [wo] "=&r"(t6), [a0] "=&r"(a0), [a1] "=&r"(a1), [c0] "=&r"(c0),
          [c1] "=&r"(c1), [x] "=&r"(x), [w] "=&r"(w), [xe] "=&r"(xe), [out] "+m"(out)
        : [col] "m"(col), [ce] "m"(col_end), [wb] "m"(w_base), [we] "m"(w_end)
        : "cc", "memory");
}

/* The layer, shared by both entry points: pairs of pixels through ``run`` (one of the
 * conv1x1_run* variants), an odd last pixel through ``one``, then the activation range when
 * it is narrower than int8 (the kernels saturate to int8). ``wide``: int16 weights (4 words
 * per group and channel pair, else 2). */
static void conv1x1_layer(const kml_conv_params *p, const int8_t *input, int8_t *output,
                          const int32_t *packed, int32_t *scratch, int32_t groups,
                          int32_t wide, void (*run)(c1_args *),
                          void (*one)(const c1_args *, int32_t))
{
    const int32_t n = p->batches * p->out_h * p->out_w;
    c1_args s;
    s.w = packed + 1;
    s.w_end = s.w + (p->out_c >> 1) * (7 + (wide ? 4 : 2) * groups);
    s.col = scratch;
    s.col_end = scratch + 4 * groups;
    s.back = (groups <= MM_SHORT_1X1 ? groups - 1 : (groups - 1) % MM_UNROLL_1X1)
             * MM_GROUP_BYTES;
    s.o2 = kml_pair16(p->in_offset);
    s.in_groups = p->in_c >> 2;
    s.db = p->in_c;
    s.ob1 = p->out_c - 1;
    if (n >= 2) {
        s.src = input;
        s.out = output;
        s.n = n >> 1;
        run(&s);
    }
    if (n & 1) { /* the last pixel alone */
        s.src = input + (size_t)(n - 1) * (size_t)p->in_c;
        s.out = output + (size_t)(n - 1) * (size_t)p->out_c;
        one(&s, groups);
    }
    if (p->act_min != -128 || p->act_max != 127) {
        int32_t i;
        for (i = 0; i < n * p->out_c; ++i) {
            output[i] = kml_clamp8(output[i], p->act_min, p->act_max);
        }
    }
}

/* 1x1, stride 1, no padding (the generator's promise; see the block comment above), int8
 * weights (packed[0] 0: matrix_stream's lean form). */
void kml_conv2d_1x1_s8(const kml_conv_params *p, const int8_t *input, const int8_t *filter,
                       const int32_t *bias, const int32_t *mult, const int32_t *shift,
                       int8_t *output, const int32_t *packed, int32_t *scratch)
{
    const int32_t groups = ((p->in_c + 7) >> 3) * 2;
    const int32_t by_g = (groups == 2 || groups == 4 || groups == 8) && (p->out_c & 3) == 0;
    (void)filter;
    (void)bias;
    (void)mult;
    (void)shift;
    conv1x1_layer(p, input, output, packed, scratch, groups, 0,
                  by_g ? (groups == 2 ? conv1x1_run_g2 : groups == 4 ? conv1x1_run_g4
                                                                      : conv1x1_run_g8)
                       : groups <= MM_SHORT_1X1 ? conv1x1_run_short : conv1x1_run,
                  conv1x1_one);
}

/* kml_conv2d_1x1_s8 with int16 weights (packed[0] 2: matrix_stream's extended form): 2, 4
 * or 8 groups, out_c a multiple of 4. A separate entry point, so that a model links only
 * the variants its layers use. */
void kml_conv2d_1x1x_s8(const kml_conv_params *p, const int8_t *input, const int8_t *filter,
                        const int32_t *bias, const int32_t *mult, const int32_t *shift,
                        int8_t *output, const int32_t *packed, int32_t *scratch)
{
    const int32_t groups = ((p->in_c + 7) >> 3) * 2;
    (void)filter;
    (void)bias;
    (void)mult;
    (void)shift;
    conv1x1_layer(p, input, output, packed, scratch, groups, 1,
                  groups == 2 ? conv1x1x_run_g2 : groups == 4 ? conv1x1x_run_g4
                                                              : conv1x1x_run_g8,
                  conv1x1x_one);
}
