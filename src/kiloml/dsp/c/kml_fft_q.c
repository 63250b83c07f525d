/* kiloml real FFTs in fixed point (q31, q15), integer arithmetic only: an n-point real FFT
 * as an n/2-point complex radix-2 FFT (iterative, decimation in time, in place) followed by
 * the standard split step
 *     X[k] = E[k] - i W^k O[k],  E = (Z[k] + conj Z[m-k]) / 2,  O = (Z[k] - conj Z[m-k]) / 2,
 * where z[j] = x[2j] + i x[2j+1], Z = FFT_m(z), m = n/2 and W = exp(-2 pi i / n).
 * The complex stages take their twiddles from the same n/2-entry table with a stride.
 * Every butterfly and the split halve their results (rounded), so X / n comes out; with
 * inputs below 2^30 (q31) or 2^14 (q15) per component nothing can overflow. */
#include "kml_dsp.h"

/* In-place bit-reversal permutation of m interleaved complex values. */
static void bit_reverse_q31(int32_t *b, uint32_t m)
{
    uint32_t i, j = 0, bit;
    for (i = 0; i < m; ++i) {
        if (i < j) {
            int32_t t = b[2 * i];
            b[2 * i] = b[2 * j];
            b[2 * j] = t;
            t = b[2 * i + 1];
            b[2 * i + 1] = b[2 * j + 1];
            b[2 * j + 1] = t;
        }
        bit = m >> 1;
        while (bit != 0u && (j & bit) != 0u) {
            j ^= bit;
            bit >>= 1;
        }
        j |= bit;
    }
}

static void bit_reverse_q15(int16_t *b, uint32_t m)
{
    uint32_t i, j = 0, bit;
    for (i = 0; i < m; ++i) {
        if (i < j) {
            int16_t t = b[2 * i];
            b[2 * i] = b[2 * j];
            b[2 * j] = t;
            t = b[2 * i + 1];
            b[2 * i + 1] = b[2 * j + 1];
            b[2 * j + 1] = t;
        }
        bit = m >> 1;
        while (bit != 0u && (j & bit) != 0u) {
            j ^= bit;
            bit >>= 1;
        }
        j |= bit;
    }
}

/* ------------------------------------------------------------------ q31 */

static int32_t mul_q31(int32_t a, int32_t b)
{
    return (int32_t)(((int64_t)a * b + ((int64_t)1 << 30)) >> 31);
}

static int32_t half_sum(int32_t a, int32_t b)
{
    return (int32_t)(((int64_t)a + b + 1) >> 1);
}

void kml_rfft_q31(int32_t *buf, uint32_t n, const int32_t *tw)
{
    const uint32_t m = n / 2u;
    uint32_t len, i, t, k;
    int32_t z0r, z0i;
    bit_reverse_q31(buf, m);
    for (len = 2u; len <= m; len <<= 1) {
        const uint32_t half = len / 2u, step = n / len;
        for (i = 0; i < m; i += len) {
            for (t = 0; t < half; ++t) {
                const int64_t c = tw[2u * t * step], s = tw[2u * t * step + 1u];
                int32_t *a = &buf[2u * (i + t)], *b = &buf[2u * (i + t + half)];
                /* (b * W) / 2 in one rounding, then (a / 2) +- that. */
                const int32_t wr = (int32_t)((b[0] * c + b[1] * s + ((int64_t)1 << 31)) >> 32);
                const int32_t wi = (int32_t)((b[1] * c - b[0] * s + ((int64_t)1 << 31)) >> 32);
                const int32_t ar = a[0] >> 1, ai = a[1] >> 1;
                a[0] = ar + wr;
                a[1] = ai + wi;
                b[0] = ar - wr;
                b[1] = ai - wi;
            }
        }
    }
    z0r = buf[0];
    z0i = buf[1];
    buf[0] = half_sum(z0r, z0i);
    buf[1] = half_sum(z0r, -z0i);
    for (k = 1u; k <= m / 2u; ++k) {
        const uint32_t j = m - k;
        const int32_t ar = buf[2u * k], ai = buf[2u * k + 1u];
        const int32_t br = buf[2u * j], bi = buf[2u * j + 1u];
        /* E and O halved once (their definition) and once more (the output scale). */
        const int32_t er = (int32_t)(((int64_t)ar + br + 2) >> 2);
        const int32_t ei = (int32_t)(((int64_t)ai - bi + 2) >> 2);
        const int32_t orr = (int32_t)(((int64_t)ar - br + 2) >> 2);
        const int32_t oi = (int32_t)(((int64_t)ai + bi + 2) >> 2);
        const int32_t c = tw[2u * k], s = tw[2u * k + 1u];
        const int32_t p = mul_q31(c, orr) + mul_q31(s, oi);
        const int32_t q = mul_q31(c, oi) - mul_q31(s, orr);
        buf[2u * k] = er + q;
        buf[2u * k + 1u] = ei - p;
        if (j != k) {
            buf[2u * j] = er - q;
            buf[2u * j + 1u] = -ei - p;
        }
    }
}

/* ------------------------------------------------------------------ q15 */

/* One q15 butterfly on int32 locals holding int16 values: (a, b) <- (a/2 + bW/2, a/2 - bW/2),
 * bW/2 rounded once, each result cut to 16 bits as a store to the buffer would. */
#define KML_BFLY_Q15(ar, ai, br, bi, c, s)                                                    \
    do {                                                                                      \
        const int32_t wr_ = ((br) * (c) + (bi) * (s) + (1 << 15)) >> 16;                     \
        const int32_t wi_ = ((bi) * (c) - (br) * (s) + (1 << 15)) >> 16;                      \
        const int32_t hr_ = (ar) >> 1, hi_ = (ai) >> 1;                                       \
        (ar) = (int16_t)(hr_ + wr_);                                                          \
        (ai) = (int16_t)(hi_ + wi_);                                                          \
        (br) = (int16_t)(hr_ - wr_);                                                          \
        (bi) = (int16_t)(hi_ - wi_);                                                          \
    } while (0)

/* Stages of span len and 2 len in one pass (see kml_fft.c's two_stages): the same
 * butterflies, each point loaded and stored once for the two. */
static void two_stages_q15(int16_t *buf, uint32_t n, uint32_t m, uint32_t len,
                           const int16_t *tw)
{
    const uint32_t q = len / 2u, stepa = n / len, stepb = stepa / 2u;
    uint32_t t, i;
    for (t = 0; t < q; ++t) {
        const int32_t ca = tw[2u * t * stepa], sa = tw[2u * t * stepa + 1u];
        const int32_t c0 = tw[2u * t * stepb], s0 = tw[2u * t * stepb + 1u];
        const int32_t c1 = tw[2u * (t + q) * stepb], s1 = tw[2u * (t + q) * stepb + 1u];
        int16_t *p = &buf[2u * t];
        for (i = 0; i < m; i += 2u * len, p += 4u * len) {
            int16_t *p1 = p + 2u * q, *p2 = p + 2u * len, *p3 = p2 + 2u * q;
            int32_t x0r = p[0], x0i = p[1], x1r = p1[0], x1i = p1[1];
            int32_t x2r = p2[0], x2i = p2[1], x3r = p3[0], x3i = p3[1];
            KML_BFLY_Q15(x0r, x0i, x1r, x1i, ca, sa);
            KML_BFLY_Q15(x2r, x2i, x3r, x3i, ca, sa);
            KML_BFLY_Q15(x0r, x0i, x2r, x2i, c0, s0);
            KML_BFLY_Q15(x1r, x1i, x3r, x3i, c1, s1);
            p[0] = (int16_t)x0r;
            p[1] = (int16_t)x0i;
            p1[0] = (int16_t)x1r;
            p1[1] = (int16_t)x1i;
            p2[0] = (int16_t)x2r;
            p2[1] = (int16_t)x2i;
            p3[0] = (int16_t)x3r;
            p3[1] = (int16_t)x3i;
        }
    }
}

void kml_rfft_q15(int16_t *buf, uint32_t n, const int16_t *tw)
{
    const uint32_t m = n / 2u;
    uint32_t len, i, t, k;
    int32_t z0r, z0i;
    bit_reverse_q15(buf, m);
    for (len = 2u; 2u * len <= m; len <<= 2) {
        two_stages_q15(buf, n, m, len, tw);
    }
    for (; len <= m; len <<= 1) {     /* a last single stage when log2(m) is odd */
        const uint32_t half = len / 2u, step = n / len;
        for (t = 0; t < half; ++t) {
            const int32_t c = tw[2u * t * step], s = tw[2u * t * step + 1u];
            int16_t *a = &buf[2u * t], *b = &buf[2u * (t + half)];
            for (i = 0; i < m; i += len, a += 2u * len, b += 2u * len) {
                int32_t ar = a[0], ai = a[1], br = b[0], bi = b[1];
                KML_BFLY_Q15(ar, ai, br, bi, c, s);
                a[0] = (int16_t)ar;
                a[1] = (int16_t)ai;
                b[0] = (int16_t)br;
                b[1] = (int16_t)bi;
            }
        }
    }
    z0r = buf[0];
    z0i = buf[1];
    buf[0] = (int16_t)((z0r + z0i + 1) >> 1);
    buf[1] = (int16_t)((z0r - z0i + 1) >> 1);
    for (k = 1u; k <= m / 2u; ++k) {
        const uint32_t j = m - k;
        const int32_t ar = buf[2u * k], ai = buf[2u * k + 1u];
        const int32_t br = buf[2u * j], bi = buf[2u * j + 1u];
        const int32_t er = (ar + br + 2) >> 2, ei = (ai - bi + 2) >> 2;
        const int32_t orr = (ar - br + 2) >> 2, oi = (ai + bi + 2) >> 2;
        const int32_t c = tw[2u * k], s = tw[2u * k + 1u];
        const int32_t p = (c * orr + s * oi + (1 << 14)) >> 15;
        const int32_t q = (c * oi - s * orr + (1 << 14)) >> 15;
        buf[2u * k] = (int16_t)(er + q);
        buf[2u * k + 1u] = (int16_t)(ei - p);
        if (j != k) {
            buf[2u * j] = (int16_t)(er - q);
            buf[2u * j + 1u] = (int16_t)(-ei - p);
        }
    }
}
