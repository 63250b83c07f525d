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

void kml_rfft_f32(float *buf, uint32_t n, const float *tw)
{
    const uint32_t m = n / 2u;
    uint32_t len, i, t, k;
    float z0r, z0i;
    bit_reverse(buf, m);
    for (len = 2u; len <= m; len <<= 1) {
        const uint32_t half = len / 2u, step = n / len;
        for (i = 0; i < m; i += len) {
            for (t = 0; t < half; ++t) {
                const float c = tw[2u * t * step], s = tw[2u * t * step + 1u];
                float *a = &buf[2u * (i + t)], *b = &buf[2u * (i + t + half)];
                /* b * W^t with W^t = c - i s */
                const float wr = b[0] * c + b[1] * s, wi = b[1] * c - b[0] * s;
                b[0] = a[0] - wr;
                b[1] = a[1] - wi;
                a[0] += wr;
                a[1] += wi;
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
