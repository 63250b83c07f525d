/* kiloml real FFT, float32: an n-point real FFT as an n/2-point complex radix-2 FFT (iterative,
 * decimation in time, in place) followed by the standard split step
 *     X[k] = E[k] - i W^k O[k],  E = (Z[k] + conj Z[m-k]) / 2,  O = (Z[k] - conj Z[m-k]) / 2,
 * where z[j] = x[2j] + i x[2j+1], Z = FFT_m(z), m = n/2 and W = exp(-2 pi i / n).
 * The complex stages take their twiddles from the same n/2-entry table with a stride.
 * The fixed-point variants are in kml_fft_q.c (a separate file so that integer-only builds
 * never see a float). */
#include "kml_dsp.h"

/* In-place bit-reversal permutation of m interleaved complex values. */
static void bit_reverse(float *b, uint32_t m)
{
    uint32_t i, j = 0, bit;
    for (i = 0; i < m; ++i) {
        if (i < j) {
            float t = b[2 * i];
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

/* ------------------------------------------------------------------ float32 */

/* The first two radix-2 stages in one pass over groups of four (twiddles 1 and -i: no
 * multiplies). */
static void first_two_stages(float *b, uint32_t m)
{
    uint32_t i;
    for (i = 0; i < m; i += 4u, b += 8) {
        const float a0r = b[0] + b[2], a0i = b[1] + b[3];
        const float a1r = b[0] - b[2], a1i = b[1] - b[3];
        const float a2r = b[4] + b[6], a2i = b[5] + b[7];
        const float a3r = b[4] - b[6], a3i = b[5] - b[7];
        /* a3 W^1 with W^1 = -i: (a3i, -a3r) */
        b[0] = a0r + a2r;
        b[1] = a0i + a2i;
        b[4] = a0r - a2r;
        b[5] = a0i - a2i;
        b[2] = a1r + a3i;
        b[3] = a1i - a3r;
        b[6] = a1r - a3i;
        b[7] = a1i + a3r;
    }
}

/* b * W with W = c - i s, then (a, b) <- (a + bW, a - bW): one radix-2 butterfly. */
#define KML_BFLY(ar, ai, br, bi, c, s)                                                        \
    do {                                                                                      \
        const float wr_ = (br) * (c) + (bi) * (s), wi_ = (bi) * (c) - (br) * (s);             \
        (br) = (ar) - wr_;                                                                    \
        (bi) = (ai) - wi_;                                                                    \
        (ar) = (ar) + wr_;                                                                    \
        (ai) = (ai) + wi_;                                                                    \
    } while (0)

/* Radix-2 stages of span len and 2 len in one pass: the four points t, t + len/2, t + len,
 * t + 3 len/2 of a group of 2 len are closed under both stages, so each is loaded and stored
 * once for the two stages, with the same arithmetic (and results) as two radix-2 passes. */
static void two_stages(float *buf, uint32_t n, uint32_t m, uint32_t len, const float *tw)
{
    const uint32_t q = len / 2u, stepa = n / len, stepb = stepa / 2u;
    uint32_t t, i;
    for (t = 0; t < q; ++t) {
        const float ca = tw[2u * t * stepa], sa = tw[2u * t * stepa + 1u];
        const float c0 = tw[2u * t * stepb], s0 = tw[2u * t * stepb + 1u];
        const float c1 = tw[2u * (t + q) * stepb], s1 = tw[2u * (t + q) * stepb + 1u];
        float *p = &buf[2u * t];
        for (i = 0; i < m; i += 2u * len, p += 4u * len) {
            float *p1 = p + 2u * q, *p2 = p + 2u * len, *p3 = p2 + 2u * q;
            float x0r = p[0], x0i = p[1], x1r = p1[0], x1i = p1[1];
            float x2r = p2[0], x2i = p2[1], x3r = p3[0], x3i = p3[1];
            KML_BFLY(x0r, x0i, x1r, x1i, ca, sa);      /* stage len */
            KML_BFLY(x2r, x2i, x3r, x3i, ca, sa);
            KML_BFLY(x0r, x0i, x2r, x2i, c0, s0);      /* stage 2 len */
            KML_BFLY(x1r, x1i, x3r, x3i, c1, s1);
            p[0] = x0r;
            p[1] = x0i;
            p1[0] = x1r;
            p1[1] = x1i;
            p2[0] = x2r;
            p2[1] = x2i;
            p3[0] = x3r;
            p3[1] = x3i;
        }
    }
}

void kml_rfft_f32(float *buf, uint32_t n, const float *tw)
{
    const uint32_t m = n / 2u;
    uint32_t len, i, t, k;
    float z0r, z0i;
    bit_reverse(buf, m);
    len = 2u;
    if (m >= 4u) {
        first_two_stages(buf, m);
        len = 8u;
    }
    for (; 2u * len <= m; len <<= 2) {
        two_stages(buf, n, m, len, tw);
    }
    for (; len <= m; len <<= 1) {   /* a last single stage (or all of them for m < 4) */
        const uint32_t half = len / 2u, step = n / len;
        for (t = 0; t < half; ++t) {
            const float c = tw[2u * t * step], s = tw[2u * t * step + 1u];
            float *a = &buf[2u * t], *b = &buf[2u * (t + half)];
            for (i = 0; i < m; i += len, a += 2u * len, b += 2u * len) {
                float ar = a[0], ai = a[1], br = b[0], bi = b[1];
                KML_BFLY(ar, ai, br, bi, c, s);
                a[0] = ar;
                a[1] = ai;
                b[0] = br;
                b[1] = bi;
            }
        }
    }
    z0r = buf[0];
    z0i = buf[1];
    buf[0] = z0r + z0i;
    buf[1] = z0r - z0i;
    for (k = 1u; k <= m / 2u; ++k) {
        const uint32_t j = m - k;
        const float ar = buf[2u * k], ai = buf[2u * k + 1u];
        const float br = buf[2u * j], bi = buf[2u * j + 1u];
        const float er = 0.5f * (ar + br), ei = 0.5f * (ai - bi);
        const float orr = 0.5f * (ar - br), oi = 0.5f * (ai + bi);
        const float c = tw[2u * k], s = tw[2u * k + 1u];
        const float p = c * orr + s * oi, q = c * oi - s * orr;   /* W^k O = p + i q */
        buf[2u * k] = er + q;
        buf[2u * k + 1u] = ei - p;
        if (j != k) {
            buf[2u * j] = er - q;
            buf[2u * j + 1u] = -ei - p;
        }
    }
}
