/* kiloml runtime (armv7em): FULLY_CONNECTED, four output units per pass over the input.
 *
 * Each input row is widened once to int16 in ``scratch`` (per group of four inputs the pairs
 * (x0, x1) and (x2, x3), zero padded to a multiple of 8 inputs; doubled on the fast path,
 * where kml_rq's SMMLAR takes 2 acc); the input offset is not added: the code generator folds
 * in_offset x (sum of the unit's weights) into the bias (armv7em.py, fc_stream). Then per
 * group of four units one asm loop over the row. int8 weights: two unit pairs (p, q), each
 * weight word holding for inputs i, i + 1 the halfwords 256 w_q + (w_p + 128): SMLAD with the
 * input pair accumulates 256 S_q + S_p + 128 Sx, SMLAD with its SXTB16 ROR #8 S_q, and after
 * the row S_p = acc - 256 S_q - 128 Sx modulo 2^32 (armv7em.py, fc_pair_words). Per four
 * inputs one LDRD of the input pairs and two LDRD of the weight words back to back, 4 SXTB16
 * and 8 SMLAD (16 MACs, 13 registers), 8 steps per iteration (entered at one of four steps).
 * kml_fully_connected_x_s8 takes int16 weights (flash x2): per four inputs 5 LDRD and 8
 * SMLAD, no SXTB16.
 *
 * The four accumulators are requantized in asm (fc_rq4: kml_rq with its k computed from the
 * shift; SSAT #8 when the activation range is [-128, 127], else the two clamps; with
 * act_min == out_offset (ReLU, ReLU6) an accumulator <= 0 stores act_min without
 * requantizing, one > 0 skips the lower clamp), or in C by TFLite's general path in layers
 * that need it. kml_fully_connected_u_s8 (a uniform stream, every unit on the fast path) runs
 * the whole loop over the groups in one asm block (fc_groups_u: the layer's multiplier, k and
 * shift reloaded from the stack per group, SSAT #8 or the two clamps). At -O0 (no register
 * allocation for the asm blocks) C loops do the same arithmetic.
 *
 * ``packed`` (fc_stream): a flag word (bit 0: the layer takes TFLite's requantization, the
 * shifts are TFLite's, the inputs are not doubled; bit 1: int16 weights; bit 2: uniform, one
 * multiplier and right shift for the layer in words 1 and 2), then per group of four units
 * (units padded to a multiple of 4 with zero rows): 4 initial accumulators (biases with the
 * offset folded in; int8: p's is b_p + 256 b_q; doubled on the fast path); per group of four
 * inputs the weight words (int8: pair (0, 1) inputs 0-1, 2-3, pair (2, 3) the same; int16:
 * per unit (w0, w1), (w2, w3)); unless uniform, 4 multipliers and a word of the four shifts
 * (bytes, unit 0 lowest). ``weights``, ``bias``, ``mult`` and ``shift`` are then 0;
 * ``scratch`` holds 2 x depth (rounded up to 8) bytes.
 */
#include "kml_arm.h"
#include "kml_fully_connected.h"

/* Inputs i, i + 1 (the int16 pair X) for the unit pair (p, q) of weight word W: the pair's
 * accumulators A (256 S_q + S_p + 128 Sx) and B (S_q); fc_pair_words in armv7em.py. */
#define FC_PAIR(A, B, X, W)                                                                  \
    "smlad %[" A "], %[" X "], %[" W "], %[" A "]\n\t"                                        \
    "sxtb16 %[" W "], %[" W "], ror #8\n\t"                                                  \
    "smlad %[" B "], %[" X "], %[" W "], %[" B "]\n\t"

/* Four inputs for the four units: the three loads back to back (they pipeline), then per
 * weight word 1 SXTB16 and 2 SMLAD: 15 instructions per 16 MACs. */
#define FC_STEP                                                                              \
    "ldrd %[x0], %[x1], [%[px]], #8\n\t"                                                     \
    "ldrd %[w0], %[w1], [%[pw]], #8\n\t"                                                     \
    "ldrd %[w2], %[w3], [%[pw]], #8\n\t"                                                     \
    FC_PAIR("a0", "a1", "x0", "w0") FC_PAIR("a0", "a1", "x1", "w1")                          \
    FC_PAIR("a2", "a3", "x0", "w2") FC_PAIR("a2", "a3", "x1", "w3")

/* int16 weights (flag bit 1): four inputs for the four units, per unit one LDRD of its words
 * (w0, w1), (w2, w3) and two SMLAD, two units per load burst: 5 LDRD and 8 SMLAD per 16 MACs. */
#define FCX_PAIR(A, B)                                                                       \
    "ldrd %[w0], %[w1], [%[pw]], #8\n\t"                                                     \
    "ldrd %[w2], %[w3], [%[pw]], #8\n\t"                                                     \
    "smlad %[" A "], %[x0], %[w0], %[" A "]\n\t"                                             \
    "smlad %[" A "], %[x1], %[w1], %[" A "]\n\t"                                             \
    "smlad %[" B "], %[x0], %[w2], %[" B "]\n\t"                                             \
    "smlad %[" B "], %[x1], %[w3], %[" B "]\n\t"
#define FCX_STEP "ldrd %[x0], %[x1], [%[px]], #8\n\t" FCX_PAIR("a0", "a1") FCX_PAIR("a2", "a3")

/* The loops' entry: 2 steps (8 inputs, 16 scratch bytes) per label 1-4; bytes left mod 64
 * (bit 5 -> C, bit 4 -> N): 0 -> 1, 48 -> 2, 32 -> 3, 16 -> 4. */
#define FC_ENTRY                                                                             \
    "sub %[w0], %[end], %[px]\n\t"                                                           \
    "lsls %[w0], %[w0], #27\n\t"                                                             \
    "bcc 5f\n\t"                                                                             \
    "bmi 2f\n\t"                                                                             \
    "b 3f\n"                                                                                 \
    "5:\n\t"                                                                                 \
    "bmi 4f\n"

/* GCC allocates the asm blocks' 13 operands only when optimizing (at -O0 r7 is the frame
 * pointer): -O0 builds take C loops with the same arithmetic. */
#if defined(__OPTIMIZE__)
#define FC_ASM 1
#else
#define FC_ASM 0
#endif

/* Four inputs (the word v) as the scratch's int16 pairs (x0, x1), (x2, x3) at s, doubled
 * when ``dbl``; returns sum + the stored values. */
static inline __attribute__((always_inline)) int32_t fc_widen4(int32_t v, int32_t *s,
                                                                int32_t sum, const int32_t dbl)
{
    int32_t e = __sxtb16(v);         /* (x0, x2) */
    int32_t o = kml_sxtb16_ror8(v);  /* (x1, x3) */
    int32_t s0, s1;
    if (dbl) {
        e = __sadd16(e, e);
        o = __sadd16(o, o);
    }
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(s0) : "r"(e), "r"(o));
    __asm__("pkhtb %0, %1, %2, asr #16" : "=r"(s1) : "r"(o), "r"(e));
    s[0] = s0;
    s[1] = s1;
    return __smlad(__sadd16(e, o), 0x10001, sum);
}

/* fc_widen4 of the next input word (at px, unaligned) into the scratch at ps, in asm: DBL
 * doubles (x0, x2) and (x1, x3). */
#define FC_WIDEN_WORD(DBL)                                                                   \
    "ldr %[v], [%[px]], #4\n\t"                                                              \
    "sxtb16 %[e], %[v]\n\t"                                                                  \
    "sxtb16 %[o], %[v], ror #8\n\t"                                                          \
    DBL                                                                                      \
    "pkhbt %[s0], %[e], %[o], lsl #16\n\t"                                                   \
    "pkhtb %[s1], %[o], %[e], asr #16\n\t"                                                   \
    "sadd16 %[v], %[e], %[o]\n\t"                                                            \
    "strd %[s0], %[s1], [%[ps]], #8\n\t"                                                     \
    "smlad %[sum], %[v], %[one], %[sum]\n\t"
/* The whole words from px to xe: an odd one first, then two per iteration. */
#define FC_WIDEN_LOOP(DBL)                                                                   \
    "sub %[v], %[xe], %[px]\n\t"                                                             \
    "tst %[v], #4\n\t"                                                                       \
    "beq 2f\n\t"                                                                             \
    FC_WIDEN_WORD(DBL)                                                                       \
    "cmp %[px], %[xe]\n\t"                                                                   \
    "beq 3f\n"                                                                              \
    "2:\n\t"                                                                                \
    FC_WIDEN_WORD(DBL) FC_WIDEN_WORD(DBL)                                                    \
    "cmp %[px], %[xe]\n\t"                                                                   \
    "bne 2b\n"                                                                              \
    "3:\n\t"

static inline __attribute__((always_inline)) int32_t fc_widen_rows(const int8_t *x, int32_t n,
                                                                   int32_t n8, int32_t *s,
                                                                   const int32_t dbl)
{
    int32_t i = 0, sum = 0;
#if FC_ASM
    /* the whole words in asm, two per iteration: GCC's loop took ~21 cycles a word */
    if (n >= 4) {
        const int8_t *px = x;
        const int8_t *const xe = x + (n & ~3);
        int32_t v, e, o, s0, s1;
        if (dbl) {
            __asm__ volatile(FC_WIDEN_LOOP("sadd16 %[e], %[e], %[e]\n\t"
                                           "sadd16 %[o], %[o], %[o]\n\t")
                             : [v] "=&r"(v), [e] "=&r"(e), [o] "=&r"(o), [s0] "=&r"(s0),
                               [s1] "=&r"(s1), [px] "+&r"(px), [ps] "+&r"(s), [sum] "+&r"(sum)
                             : [xe] "r"(xe), [one] "r"(0x10001)
                             : "cc", "memory");
        } else {
            __asm__ volatile(FC_WIDEN_LOOP("")
                             : [v] "=&r"(v), [e] "=&r"(e), [o] "=&r"(o), [s0] "=&r"(s0),
                               [s1] "=&r"(s1), [px] "+&r"(px), [ps] "+&r"(s), [sum] "+&r"(sum)
                             : [xe] "r"(xe), [one] "r"(0x10001)
                             : "cc", "memory");
        }
        i = n & ~3;
    }
#else
    for (; i + 4 <= n; i += 4, s += 2) {
        sum = fc_widen4(kml_ld32(x + i), s, sum, dbl);
    }
#endif
    for (; i < n8; i += 4, s += 2) {
        int8_t tail[4] = {0, 0, 0, 0};
        int32_t j;
        for (j = 0; j < 4 && i + j < n; ++j) {
            tail[j] = x[i + j];
        }
        sum = fc_widen4(kml_ld32(tail), s, sum, dbl);
    }
    return (int32_t)((uint32_t)sum << 7);
}

/* Widen ``n`` int8 inputs to the scratch's int16 pairs (x0, x1), (x2, x3), zero padded to
 * ``n8`` inputs, doubled when ``dbl`` (layers on the fast requantization: the accumulators
 * are then 2 acc, what kml_rq's SMMLAR takes); returns 128 x the sum of the stored values
 * (what the int8 stream's pair accumulators carry beside their units' sums). Compiled at
 * -O2, not KML_SMALL: once per row, but per input (AD -1.7 k cycles, the dense gesture model
 * -165, for 52 B of code). */
static int32_t fc_widen(const int8_t *x, int32_t n, int32_t n8, int32_t *s, int32_t dbl)
{
    return dbl ? fc_widen_rows(x, n, n8, s, 1) : fc_widen_rows(x, n, n8, s, 0);
}

/* The general path for one group (TFLite's requantization when ``generic``, or fewer than
 * four units left, or -O0): multipliers at w[0..3], the shift bytes in w[4]; the
 * accumulators are doubled unless ``generic``. */
static KML_SMALL __attribute__((noinline)) void fc_group_out(const kml_fc_params *p,
                                                             const int32_t *acc,
                                                             const int32_t *w, int8_t *out,
                                                             int32_t n, int32_t generic)
{
    int32_t i;
    for (i = 0; i < n; ++i) {
        const int32_t r = (int8_t)(w[4] >> (8 * i));
        const int32_t o = generic ? kml_mbqm(acc[i], w[i], r) + p->out_offset
                                  : kml_rq(acc[i] >> 1, w[i], r,
                                           kml_rq_k(2 * p->out_offset + 1, r));
        out[i] = kml_clamp8(o, p->act_min, p->act_max);
    }
}

/* kml_rq of the doubled accumulator A (2 acc) with multiplier M, unit I of the group (right
 * shift in byte I of sw, kml_rq_k from c2 = 2 out_offset + 1), into t (out_offset included,
 * not clamped). */
#define FC_RQ(A, M, I)                                                                       \
    "ubfx %[r], %[sw], #" #I " * 8, #8\n\t"                                                   \
    "lsl %[k], %[c2], %[r]\n\t"                                                              \
    "asr %[k], %[k], #1\n\t"                                                                 \
    "smmlar %[t], %[" A "], %[" M "], %[k]\n\t"                                              \
    "sub %[t], %[t], %[" A "], lsr #31\n\t"                                                  \
    "asr %[t], %[t], %[r]\n\t"

/* The activation clamps of t, and t stored to out[I]. */
#define FC_LO                                                                                \
    "cmp %[t], %[lo]\n\t"                                                                    \
    "it lt\n\t"                                                                              \
    "movlt %[t], %[lo]\n\t"
#define FC_HI                                                                                \
    "cmp %[t], %[hi]\n\t"                                                                    \
    "it gt\n\t"                                                                              \
    "movgt %[t], %[hi]\n\t"
#define FC_ST(I) "strb %[t], [%[out], #" #I "]\n\t"

/* ReLU shortcut (act_min == out_offset, multipliers >= 0): an accumulator A <= 0 requantizes
 * to at most out_offset, so its output is act_min (stored out of line at label 1I), and one
 * > 0 to at least out_offset (no lower clamp). Resumes at label 2I. */
#define FC_SKIP(A, I)                                                                        \
    "cmp %[" A "], #0\n\t"                                                                   \
    "ble 1" #I "f\n\t"
#define FC_DEAD(I) "1" #I ":\n\t" "strb %[lo], [%[out], #" #I "]\n\t"

/* Units I0 and I0 + 1 (accumulators A0, A1): one LDRD of their multipliers; BODY is the asm. */
#define FC_RQ2(A0, A1, I0, BODY)                                                             \
    __asm__ volatile("ldrd %[m0], %[m1], [%[w], #" #I0 " * 4]\n\t" BODY                    \
                     : [m0] "=&r"(m0), [m1] "=&r"(m1), [k] "=&r"(k), [r] "=&r"(r),           \
                       [t] "=&r"(t)                                                          \
                     : [a0] "r"(A0), [a1] "r"(A1), [w] "r"(w), [out] "r"(o),                 \
                       [sw] "r"(sw), [c2] "r"(c2), [lo] "r"(lo), [hi] "r"(hi)                \
                     : "cc", "memory")

/* The four bodies: clamps to [lo, hi] or SSAT #8 (lo = -128, hi = 127), with or without the
 * ReLU shortcut; units I and I + 1 requantized by R0 and R1 (FC_RQ or FC_RQU). */
#define FC_CLAMP_B(R0, R1, I, J) R0 FC_LO FC_HI FC_ST(I) R1 FC_LO FC_HI FC_ST(J)
#define FC_SAT_B(R0, R1, I, J)                                                               \
    R0 "ssat %[t], #8, %[t]\n\t" FC_ST(I) R1 "ssat %[t], #8, %[t]\n\t" FC_ST(J)
#define FC_CLAMP_RELU_B(R0, R1, I, J)                                                        \
    FC_SKIP("a0", I) R0 FC_HI FC_ST(I) "2" #I ":\n\t"                                        \
    FC_SKIP("a1", J) R1 FC_HI FC_ST(J) "b 2" #J "f\n\t"                                      \
    FC_DEAD(I) "b 2" #I "b\n\t" FC_DEAD(J) "2" #J ":\n\t"
#define FC_SAT_RELU_B(R0, R1, I, J)                                                          \
    FC_SKIP("a0", I) R0 "ssat %[t], #8, %[t]\n\t" FC_ST(I) "2" #I ":\n\t"                   \
    FC_SKIP("a1", J) R1 "ssat %[t], #8, %[t]\n\t" FC_ST(J) "b 2" #J "f\n\t"                 \
    FC_DEAD(I) "b 2" #I "b\n\t" FC_DEAD(J) "2" #J ":\n\t"
#define FC_CLAMP(I, J) FC_CLAMP_B(FC_RQ("a0", "m0", I), FC_RQ("a1", "m1", J), I, J)
#define FC_SAT(I, J) FC_SAT_B(FC_RQ("a0", "m0", I), FC_RQ("a1", "m1", J), I, J)
#define FC_CLAMP_RELU(I, J) FC_CLAMP_RELU_B(FC_RQ("a0", "m0", I), FC_RQ("a1", "m1", J), I, J)
#define FC_SAT_RELU(I, J) FC_SAT_RELU_B(FC_RQ("a0", "m0", I), FC_RQ("a1", "m1", J), I, J)

/* The fast requantization of one full group of four units (multipliers at w[0..3], shift
 * bytes in w[4]); mode: bit 0 SSAT (lo = -128, hi = 127), bit 1 the ReLU shortcut. */
static inline __attribute__((always_inline)) void fc_rq4(const int32_t *w, int8_t *o,
                                                         int32_t a0, int32_t a1, int32_t a2,
                                                         int32_t a3, int32_t c2, int32_t lo,
                                                         int32_t hi, int32_t mode)
{
    const int32_t sw = w[4];
    int32_t m0, m1, k, r, t;
    /* the most frequent mode first: ReLU into output zero point -128, the converter's usual
     * hidden layer (a switch tested it last, after three compares), laid out in line */
    if (__builtin_expect(mode == 3, 1)) {
        FC_RQ2(a0, a1, 0, FC_SAT_RELU(0, 1));
        FC_RQ2(a2, a3, 2, FC_SAT_RELU(2, 3));
    } else if (mode == 1) {
        FC_RQ2(a0, a1, 0, FC_SAT(0, 1));
        FC_RQ2(a2, a3, 2, FC_SAT(2, 3));
    } else if (mode == 2) {
        FC_RQ2(a0, a1, 0, FC_CLAMP_RELU(0, 1));
        FC_RQ2(a2, a3, 2, FC_CLAMP_RELU(2, 3));
    } else {
        FC_RQ2(a0, a1, 0, FC_CLAMP(0, 1));
        FC_RQ2(a2, a3, 2, FC_CLAMP(2, 3));
    }
}

/* One unit's output in the uniform groups' loop: kml_rq of the doubled accumulator A into
 * x0 (m, k, r in w0, w1, w2), then SSAT #8 (CLAMP: and the clamps to w3, px), stored to byte
 * I of the group's output x1. */
#define FCU_RQ(A)                                                                            \
    "smmlar %[x0], %[" A "], %[w0], %[w1]\n\t"                                               \
    "sub %[x0], %[x0], %[" A "], lsr #31\n\t"                                                \
    "asr %[x0], %[x0], %[w2]\n\t"                                                            \
    "ssat %[x0], #8, %[x0]\n\t"
#define FCU_CLAMP                                                                            \
    "cmp %[x0], %[w3]\n\t"                                                                   \
    "it lt\n\t"                                                                              \
    "movlt %[x0], %[w3]\n\t"                                                                 \
    "cmp %[x0], %[px]\n\t"                                                                   \
    "it gt\n\t"                                                                              \
    "movgt %[x0], %[px]\n\t"
#define FCU_ST(I) "strb %[x0], [%[x1], #" #I "]\n\t"
/* The next group while the output is below its end (st[6]). */
#define FCU_NEXT                                                                             \
    "ldr %[w3], [sp, #24]\n\t"                                                              \
    "add %[x1], %[x1], #4\n\t"                                                              \
    "str %[x1], [sp, #20]\n\t"                                                              \
    "cmp %[x1], %[w3]\n\t"                                                                  \
    "blo 0b\n\t"

/* The groups of four units of a uniform int8 layer (kml_fully_connected_u_s8, every unit on
 * the fast requantization), from the output st[5] to st[6], the groups' loop in one asm block:
 * around the MAC loop's 13 registers GCC spilled and reloaded its state per group (~85 cycles
 * a group beside the MACs; here ~50). st: [0] the scratch (first input pair), [1] m, [2] k,
 * [3] r, [4] 128 Sx, [5] the output, [6] its end (a multiple of 4 bytes past [5]), [7] act_min,
 * [8] act_max, [9] 1 when SSAT #8 is the whole clamp (act_min -128 and act_max 127; with
 * ReLU into output zero point -128 an accumulator <= 0 requantizes to at most -128), copied
 * below sp for the block. Per group: the 4 initial accumulators, the loop (FC_ENTRY, 8 steps
 * per iteration), the pair correction, then per unit kml_rq and the clamps. Returns the
 * stream past the last group. Not in line: the kernel calls it for its full groups and for a
 * partial last one (into a 4-byte buffer), one copy of the code. */
static __attribute__((noinline)) const int32_t *fc_groups_u(const int32_t *w, const int32_t *end,
                                                           const int32_t *st)
{
    int32_t a0, a1, a2, a3, x0, x1, w0, w1, w2, w3;
    const int32_t *px = st;
    const int32_t *pw = w;
    __asm__ volatile("sub sp, sp, #40\n\t"
                     "ldrd %[a0], %[a1], [%[px], #0]\n\t"
                     "ldrd %[a2], %[a3], [%[px], #8]\n\t"
                     "ldrd %[x0], %[x1], [%[px], #16]\n\t"
                     "ldrd %[w0], %[w1], [%[px], #24]\n\t"
                     "ldrd %[w2], %[w3], [%[px], #32]\n\t"
                     "strd %[a0], %[a1], [sp, #0]\n\t"
                     "strd %[a2], %[a3], [sp, #8]\n\t"
                     "strd %[x0], %[x1], [sp, #16]\n\t"
                     "strd %[w0], %[w1], [sp, #24]\n\t"
                     "strd %[w2], %[w3], [sp, #32]\n"
                     "0:\n\t"
                     "ldrd %[a0], %[a1], [%[pw]], #8\n\t"
                     "ldrd %[a2], %[a3], [%[pw]], #8\n\t"
                     "ldr %[px], [sp, #0]\n\t"
                     FC_ENTRY
                     "1:\n\t" FC_STEP FC_STEP "2:\n\t" FC_STEP FC_STEP
                     "3:\n\t" FC_STEP FC_STEP "4:\n\t" FC_STEP FC_STEP
                     "cmp %[px], %[end]\n\t"
                     "bne 1b\n\t"
                     /* the pair accumulators hold 256 S_q + S_p + 128 Sx (modulo 2^32) */
                     "ldr %[x0], [sp, #16]\n\t"
                     "sub %[a0], %[a0], %[a1], lsl #8\n\t"
                     "sub %[a2], %[a2], %[a3], lsl #8\n\t"
                     "sub %[a0], %[a0], %[x0]\n\t"
                     "sub %[a2], %[a2], %[x0]\n\t"
                     "ldrd %[w0], %[w1], [sp, #4]\n\t"
                     "ldr %[w2], [sp, #12]\n\t"
                     "ldr %[x1], [sp, #20]\n\t"
                     "ldr %[x0], [sp, #36]\n\t"
                     "cbz %[x0], 6f\n\t"
                     FCU_RQ("a0") FCU_ST(0) FCU_RQ("a1") FCU_ST(1)
                     FCU_RQ("a2") FCU_ST(2) FCU_RQ("a3") FCU_ST(3)
                     FCU_NEXT
                     "b 7f\n"
                     "6:\n\t"
                     "ldrd %[w3], %[px], [sp, #28]\n\t"
                     FCU_RQ("a0") FCU_CLAMP FCU_ST(0) FCU_RQ("a1") FCU_CLAMP FCU_ST(1)
                     FCU_RQ("a2") FCU_CLAMP FCU_ST(2) FCU_RQ("a3") FCU_CLAMP FCU_ST(3)
                     FCU_NEXT
                     "7:\n\t"
                     "add sp, sp, #40"
                     : [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3),
                       [x0] "=&r"(x0), [x1] "=&r"(x1), [w0] "=&r"(w0), [w1] "=&r"(w1),
                       [w2] "=&r"(w2), [w3] "=&r"(w3), [px] "+&r"(px), [pw] "+&r"(pw)
                     : [end] "r"(end)
                     : "cc", "memory");
    return pw;
}

/* The kernel; ``wide`` and ``uniform`` (constants in each entry point): the int16-weight
 * stream; a uniform stream (flag bit 2). */
static inline __attribute__((always_inline)) void fc_run(const kml_fc_params *p,
                                                         const int8_t *input, int8_t *output,
                                                         const int32_t *packed,
                                                         int32_t *scratch, const int32_t wide,
                                                         const int32_t uniform)
{
    const int32_t n8 = (p->depth + 7) & ~7;
    const int32_t units = p->units, lo = p->act_min, hi = p->act_max;
    const int32_t c2 = 2 * p->out_offset + 1, generic = packed[0] & 1;
    /* uniform (flag bit 2): one multiplier and right shift for the layer (words 1 and 2) */
    const int32_t um = uniform ? packed[1] : 0, ur = uniform ? packed[2] : 1;
    const int32_t uw[5] = {um, um, um, um, (int32_t)((uint32_t)ur * 0x01010101u)};
    /* fc_rq4's mode; the stream sends layers with a negative multiplier to the general path */
    const int32_t mode = (lo == -128 && hi == 127 ? 1 : 0) | (lo == p->out_offset ? 2 : 0);
    const int32_t *const end = scratch + n8 / 2;
    int32_t b;
    for (b = 0; b < p->batches; ++b) {
        int8_t *out = output + (size_t)b * (size_t)units;
        const int32_t *w = packed + (uniform ? 3 : 1); /* past the layer's header */
        int8_t *o;
        int8_t *const o_end = out + units;
        /* groups before o_fast: four units on the fast requantization in asm */
        int8_t *const o_fast = FC_ASM && !generic ? out + (units & ~3) : out;
        const int32_t sx = fc_widen(input + (size_t)b * (size_t)p->depth, p->depth, n8,
                                    scratch, !generic);
        for (o = out; o < o_end; o += 4) {
            int32_t a0 = w[0], a1 = w[1], a2 = w[2], a3 = w[3];
            int32_t x0, x1, w0, w1, w2, w3;
            const int32_t *px = scratch;
            const int32_t *pw = w + 4;
#if FC_ASM
            /* 8 steps (32 inputs) per iteration, entered at step 8 - (steps left mod 8) */
            if (wide) {
                __asm__ volatile(FC_ENTRY
                                 "1:\n\t" FCX_STEP FCX_STEP "2:\n\t" FCX_STEP FCX_STEP
                                 "3:\n\t" FCX_STEP FCX_STEP "4:\n\t" FCX_STEP FCX_STEP
                                 "cmp %[px], %[end]\n\t"
                                 "bne 1b"
                                 : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3),
                                   [x0] "=&r"(x0), [x1] "=&r"(x1), [w0] "=&r"(w0),
                                   [w1] "=&r"(w1), [w2] "=&r"(w2), [w3] "=&r"(w3),
                                   [px] "+r"(px), [pw] "+r"(pw)
                                 : [end] "r"(end)
                                 : "cc", "memory");
            } else {
                __asm__ volatile(FC_ENTRY
                                 "1:\n\t" FC_STEP FC_STEP "2:\n\t" FC_STEP FC_STEP
                                 "3:\n\t" FC_STEP FC_STEP "4:\n\t" FC_STEP FC_STEP
                                 "cmp %[px], %[end]\n\t"
                                 "bne 1b"
                                 : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3),
                                   [x0] "=&r"(x0), [x1] "=&r"(x1), [w0] "=&r"(w0),
                                   [w1] "=&r"(w1), [w2] "=&r"(w2), [w3] "=&r"(w3),
                                   [px] "+r"(px), [pw] "+r"(pw)
                                 : [end] "r"(end)
                                 : "cc", "memory");
            }
#else
            for (; px < end; px += 2) {
                int32_t u;
                int32_t *const acc[4] = {&a0, &a1, &a2, &a3};
                x0 = px[0];
                x1 = px[1];
                for (u = 0; u < 4; u += 2) {
                    w0 = pw[wide ? 2 * u : u];
                    w1 = pw[wide ? 2 * u + 1 : u + 1];
                    if (wide) {
                        w2 = pw[2 * u + 2];
                        w3 = pw[2 * u + 3];
                        *acc[u] = __smlad(x1, w1, __smlad(x0, w0, *acc[u]));
                        *acc[u + 1] = __smlad(x1, w3, __smlad(x0, w2, *acc[u + 1]));
                    } else {
                        *acc[u] = __smlad(x1, w1, __smlad(x0, w0, *acc[u]));
                        *acc[u + 1] = __smlad(x1, kml_sxtb16_ror8(w1),
                                              __smlad(x0, kml_sxtb16_ror8(w0), *acc[u + 1]));
                    }
                }
                pw += wide ? 8 : 4;
            }
#endif
            if (!wide) {
                /* the pair accumulators hold 256 S_q + S_p + 128 Sx (modulo 2^32) */
                a0 = (int32_t)((uint32_t)a0 - ((uint32_t)a1 << 8) - (uint32_t)sx);
                a2 = (int32_t)((uint32_t)a2 - ((uint32_t)a3 << 8) - (uint32_t)sx);
            }
            w = pw; /* 4 multipliers, the shift bytes (none when uniform) */
            if (o < o_fast) {
                fc_rq4(uniform ? uw : w, o, a0, a1, a2, a3, c2, lo, hi, mode);
            } else {
                const int32_t acc[4] = {a0, a1, a2, a3};
                fc_group_out(p, acc, uniform ? uw : w, o,
                             o_end - o < 4 ? (int32_t)(o_end - o) : 4, generic);
            }
            w += uniform ? 0 : 5;
        }
    }
}

void kml_fully_connected_s8(const kml_fc_params *p, const int8_t *input, const int8_t *weights,
                            const int32_t *bias, const int32_t *mult, const int32_t *shift,
                            int8_t *output, const int32_t *packed, int32_t *scratch)
{
    (void)weights;
    (void)bias;
    (void)mult;
    (void)shift;
    fc_run(p, input, output, packed, scratch, 0, 0);
}

/* A uniform int8 stream (flag bit 2: per-tensor weights): its own entry point, so that models
 * without such layers link no uniform requantization. */
void kml_fully_connected_u_s8(const kml_fc_params *p, const int8_t *input,
                              const int8_t *weights, const int32_t *bias, const int32_t *mult,
                              const int32_t *shift, int8_t *output, const int32_t *packed,
                              int32_t *scratch)
{
    (void)weights;
    (void)bias;
    (void)mult;
    (void)shift;
#if FC_ASM
    {
        /* the groups' loop in asm (fc_groups_u); a partial last group into a buffer */
        const int32_t depth = p->depth, units = p->units, lo = p->act_min, hi = p->act_max;
        const int32_t n8 = (depth + 7) & ~7, full = units & ~3;
        const int32_t *const end = scratch + n8 / 2;
        int32_t st[10];
        int32_t b;
        st[0] = (int32_t)(uintptr_t)scratch;
        st[1] = packed[1];
        st[2] = kml_rq_k(2 * p->out_offset + 1, packed[2]);
        st[3] = packed[2];
        st[7] = lo;
        st[8] = hi;
        st[9] = lo == -128 && hi == 127;
        for (b = 0; b < p->batches; ++b) {
            int8_t *const out = output + (size_t)b * (size_t)units;
            const int32_t *w = packed + 3; /* past the layer's header */
            st[4] = fc_widen_rows(input + (size_t)b * (size_t)depth, depth, n8, scratch, 1);
            if (full > 0) {
                st[5] = (int32_t)(uintptr_t)out;
                st[6] = (int32_t)(uintptr_t)(out + full);
                w = fc_groups_u(w, end, st);
            }
            if (units > full) {
                int8_t last[4];
                st[5] = (int32_t)(uintptr_t)last;
                st[6] = (int32_t)(uintptr_t)(last + 4);
                (void)fc_groups_u(w, end, st);
                memcpy(out + full, last, (size_t)(units - full));
            }
        }
    }
#else
    fc_run(p, input, output, packed, scratch, 0, 1);
#endif
}

/* The int16-weight stream (fc_stream extended: flag bit 1): a separate entry point, so that
 * models without it link no int16 loop. */
void kml_fully_connected_x_s8(const kml_fc_params *p, const int8_t *input,
                              const int8_t *weights, const int32_t *bias, const int32_t *mult,
                              const int32_t *shift, int8_t *output, const int32_t *packed,
                              int32_t *scratch)
{
    (void)weights;
    (void)bias;
    (void)mult;
    (void)shift;
    fc_run(p, input, output, packed, scratch, 1, 0);
}
