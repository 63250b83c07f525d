/* kiloml real FFT, float32: an n-point real FFT as an n/2-point complex radix-2 FFT (iterative,
 * decimation in time, in place) followed by the standard split step
 *     X[k] = E[k] - i W^k O[k],  E = (Z[k] + conj Z[m-k]) / 2,  O = (Z[k] - conj Z[m-k]) / 2,
 * where z[j] = x[2j] + i x[2j+1], Z = FFT_m(z), m = n/2 and W = exp(-2 pi i / n).
 * The complex stages take their twiddles from the same n/2-entry table with a stride.
 * kml_rfft_power_f32 (the front ends' path to a power spectrum) takes another route: the
 * complex FFT by decimation in frequency (natural order in, bit-reversed order out: no
 * permutation pass) and the split step fused with |X|^2 for the bins asked for only.
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

/* ------------------------------------------------- float32, power spectrum path */

/* k reversed over its low `bits` bits (bits >= 1). */
static uint32_t kml_brev(uint32_t k, uint32_t bits)
{
#if defined(__ARM_ARCH_ISA_THUMB) && __ARM_ARCH_ISA_THUMB >= 2
    uint32_t r;
    __asm__("rbit %0, %1" : "=r"(r) : "r"(k));
    return r >> (32u - bits);
#else
    uint32_t r = 0, i;
    for (i = 0; i < bits; ++i) {
        r = (r << 1) | ((k >> i) & 1u);
    }
    return r;
#endif
}

/* (xr + i xi) (c - i s) into (xr, xi). */
#define KML_CMUL(xr, xi, c, s)                                                                \
    do {                                                                                      \
        const float r_ = (xr) * (c) + (xi) * (s);                                             \
        (xi) = (xi) * (c) - (xr) * (s);                                                       \
        (xr) = r_;                                                                            \
    } while (0)

/* The radix-4 decimation-in-frequency butterfly on the points at p0, p1, p2, p3 with the
 * twiddles (c1, s1) = W^t, (c2, s2) = W^2t, (c3, s3) = W^3t (see dif_radix4). */
#define KML_DIF4(p0, p1, p2, p3, c1, s1, c2, s2, c3, s3)                                       \
    do {                                                                                      \
        const float ar = (p0)[0], ai = (p0)[1], br = (p1)[0], bi = (p1)[1];                  \
        const float cr = (p2)[0], ci = (p2)[1], dr = (p3)[0], di = (p3)[1];                  \
        const float s0r = ar + cr, s0i = ai + ci, d0r = ar - cr, d0i = ai - ci;              \
        const float s1r = br + dr, s1i = bi + di, d1r = br - dr, d1i = bi - di;              \
        float yr = s0r - s1r, yi = s0i - s1i;                                                 \
        float ur = d0r + d1i, ui = d0i - d1r, vr = d0r - d1i, vi = d0i + d1r;                 \
        (p0)[0] = s0r + s1r;                                                                  \
        (p0)[1] = s0i + s1i;                                                                  \
        KML_CMUL(yr, yi, c2, s2);                                                             \
        KML_CMUL(ur, ui, c1, s1);                                                             \
        KML_CMUL(vr, vi, c3, s3);                                                             \
        (p1)[0] = yr;                                                                         \
        (p1)[1] = yi;                                                                         \
        (p2)[0] = ur;                                                                         \
        (p2)[1] = ui;                                                                         \
        (p3)[0] = vr;                                                                         \
        (p3)[1] = vi;                                                                         \
    } while (0)

/* The butterflies t in [t0, t1) of a pass with one group (len = m, the first pass): the
 * points and the three twiddles walk by pointer; w3 points at W^(3 t0) stored with the sign
 * sg (-1 past the table's end, see dif_radix4). */
static inline __attribute__((always_inline)) void dif_first(float *p0, uint32_t q,
                                                            const float *w1, const float *w2,
                                                            const float *w3, uint32_t step,
                                                            uint32_t t0, uint32_t t1, float sg)
{
    uint32_t t;
    for (t = t0; t < t1; ++t) {
        float *p1 = p0 + 2u * q, *p2 = p1 + 2u * q, *p3 = p2 + 2u * q;
        const float c1 = w1[0], s1 = w1[1], c2 = w2[0], s2 = w2[1];
        const float c3 = sg * w3[0], s3 = sg * w3[1];
        KML_DIF4(p0, p1, p2, p3, c1, s1, c2, s2, c3, s3);
        p0 += 2;
        w1 += 2u * step;
        w2 += 4u * step;
        w3 += 6u * step;
    }
}

/* One radix-4 decimation-in-frequency pass (the two radix-2 stages of span len and len / 2
 * in one): for each group of len points and t < len / 4, with a, b, c, d the points t,
 * t + len/4, t + len/2, t + 3 len/4:
 *     t          <- (a + c) + (b + d)
 *     t + len/4  <- ((a + c) - (b + d)) W^2t
 *     t + len/2  <- ((a - c) - i (b - d)) W^t
 *     t + 3len/4 <- ((a - c) + i (b - d)) W^3t,     W = exp(-2 pi i / len):
 * three twiddle products per four points where two radix-2 stages take four. The twiddle
 * index 3 t n / len reaches past the table's n/2 entries: there W^k = -W^(k - n/2). */
static void dif_radix4(float *buf, uint32_t n, uint32_t m, uint32_t len, const float *tw)
{
    const uint32_t q = len / 4u, step = n / len, half = n / 2u;
    uint32_t t, i;
    for (i = 0; i < m; i += len) {   /* t = 0: every twiddle is 1 */
        float *p0 = &buf[2u * i], *p1 = p0 + 2u * q, *p2 = p1 + 2u * q, *p3 = p2 + 2u * q;
        const float ar = p0[0], ai = p0[1], br = p1[0], bi = p1[1];
        const float cr = p2[0], ci = p2[1], dr = p3[0], di = p3[1];
        const float s0r = ar + cr, s0i = ai + ci, d0r = ar - cr, d0i = ai - ci;
        const float s1r = br + dr, s1i = bi + di, d1r = br - dr, d1i = bi - di;
        p0[0] = s0r + s1r;
        p0[1] = s0i + s1i;
        p1[0] = s0r - s1r;
        p1[1] = s0i - s1i;
        p2[0] = d0r + d1i;
        p2[1] = d0i - d1r;
        p3[0] = d0r - d1i;
        p3[1] = d0i + d1r;
    }
    if (q <= 1u) {
        return;
    }
    if (len == m) {   /* one group: t walks, twiddles by pointer, split where 3t wraps */
        const uint32_t tw3 = (half + 3u * step - 1u) / (3u * step);   /* first t with 3t >= half */
        const uint32_t tsplit = tw3 < q ? tw3 : q;
        dif_first(&buf[2u], q, &tw[2u * step], &tw[4u * step], &tw[6u * step], step, 1u,
                  tsplit, 1.0f);
        if (tsplit < q) {
            dif_first(&buf[2u * tsplit], q, &tw[2u * tsplit * step],
                      &tw[4u * tsplit * step], &tw[2u * (3u * tsplit * step - half)], step,
                      tsplit, q, -1.0f);
        }
        return;
    }
    for (t = 1; t < q; ++t) {
        const uint32_t k3 = 3u * t * step;
        const float c1 = tw[2u * t * step], s1 = tw[2u * t * step + 1u];
        const float c2 = tw[4u * t * step], s2 = tw[4u * t * step + 1u];
        const float c3 = k3 < half ? tw[2u * k3] : -tw[2u * (k3 - half)];
        const float s3 = k3 < half ? tw[2u * k3 + 1u] : -tw[2u * (k3 - half) + 1u];
        for (i = t; i < m; i += len) {
            float *p0 = &buf[2u * i], *p1 = p0 + 2u * q, *p2 = p1 + 2u * q, *p3 = p2 + 2u * q;
            KML_DIF4(p0, p1, p2, p3, c1, s1, c2, s2, c3, s3);
        }
    }
}

/* The complex FFT of the m = n/2 points z[j] = buf[2j] + i buf[2j+1], in place, by
 * decimation in frequency: Z[k] ends at position brev(k) (log2 m bits). */
static void cfft_dif(float *buf, uint32_t n, uint32_t m, const float *tw)
{
    uint32_t len = m, i;
    for (; len >= 4u; len >>= 2) {
        dif_radix4(buf, n, m, len, tw);
    }
    if (len == 2u) {   /* a last radix-2 stage of span 2: twiddle 1 */
        for (i = 0; i < m; i += 2u) {
            float *a = &buf[2u * i];
            const float ar = a[0], ai = a[1], br = a[2], bi = a[3];
            a[0] = ar + br;
            a[1] = ai + bi;
            a[2] = ar - br;
            a[3] = ai - bi;
        }
    }
}

void kml_rfft_power_f32(float *buf, uint32_t n, const float *tw, float *power, uint32_t lo,
                        uint32_t hi)
{
    const uint32_t m = n / 2u;
    const uint32_t k1 = lo > 1u ? lo : 1u, k2 = hi < m ? hi : m;
    uint32_t bits = 0, k;
    while ((1u << bits) < m) {
        ++bits;
    }
    cfft_dif(buf, n, m, tw);
    if (lo == 0u && hi > 0u) {   /* X[0] = Re Z[0] + Im Z[0] */
        power[0] = (buf[0] + buf[1]) * (buf[0] + buf[1]);
    }
    if (lo <= m && hi > m) {     /* X[m] = Re Z[0] - Im Z[0] */
        power[m] = (buf[0] - buf[1]) * (buf[0] - buf[1]);
    }
    for (k = k1; k < k2; ++k) {
        /* kml_rfft_f32's split step with the halves taken out: X = (xr + i xi) / 2 */
        const float *a = &buf[2u * kml_brev(k, bits)];
        const float *b = &buf[2u * kml_brev(m - k, bits)];
        const float sr = a[0] + b[0], di = a[1] - b[1];   /* 2 E */
        const float dr = a[0] - b[0], si = a[1] + b[1];   /* 2 O */
        const float c = tw[2u * k], s = tw[2u * k + 1u];
        const float xr = sr + (c * si - s * dr), xi = di - (c * dr + s * si);
        power[k] = 0.25f * (xr * xr + xi * xi);
    }
}
