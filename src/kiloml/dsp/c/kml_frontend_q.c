/* kiloml framed spectral front end in integer arithmetic (no float anywhere): 16-bit PCM in,
 * int8 or Q20 log-domain features out. Two variants share this file:
 *   q31  32-bit FFT buffer and Q31 window/twiddles
 *   q15  16-bit FFT buffer and Q15 window/twiddles (half the RAM, less precision)
 *
 * Scaling (exact, so the result equals the float pipeline up to rounding):
 *   x = pcm / D is the float signal (D = the clip's peak for normalize=peak/peak_abs, 32768
 *   for none or when the peak is <= 0). The clip is shifted left by the largest S that keeps
 *   every sample (after pre-emphasis) below 2^30 in a 32-bit word (block floating point), so
 *   quiet clips keep their precision. With F the filter weights' fraction bits, n the FFT
 *   length and p = 1 (magnitude) or 2 (power), the mel accumulator acc (96 bits: power
 *   spectra need twice the bits of magnitudes) satisfies
 *       mel = acc * 2^(G0 - p*S') / D^p,    G0 = -F + p*log2(n),
 *   S' the buffer's shift (S, or S - 16 for q15). Hence
 *       log(mel + off) = log(acc + off * D^p * 2^(p*S' - G0)) + (G0 - p*S') log 2 - p log D,
 *   all of it computed with integer log2 (bit-by-bit squaring, 24 fraction bits). */
#include "kml_dsp.h"

/* Number of significant bits of v (0 for 0), by binary search: six steps, no loop over bits. */
static int32_t bit_length(uint64_t v)
{
    int32_t n = 0;
    if (v >> 32) { n += 32; v >>= 32; }
    if (v >> 16) { n += 16; v >>= 16; }
    if (v >> 8) { n += 8; v >>= 8; }
    if (v >> 4) { n += 4; v >>= 4; }
    if (v >> 2) { n += 2; v >>= 2; }
    if (v >> 1) { n += 1; v >>= 1; }
    return n + (int32_t)v;
}

/* a * b of two 32-bit unsigned values as a 64-bit product: one UMULL where the core has it,
 * four 16-bit products on Armv6-M (Cortex-M0/M0+), whose 64 x 64-bit multiply is a library
 * call (__aeabi_lmul) of about 40 cycles. The same value either way. */
static inline uint64_t umul32(uint32_t a, uint32_t b)
{
#if defined(__ARM_ARCH_6M__)
    const uint32_t al = a & 0xFFFFu, ah = a >> 16, bl = b & 0xFFFFu, bh = b >> 16;
    const uint32_t ll = al * bl, lh = al * bh, hl = ah * bl, hh = ah * bh;
    const uint32_t mid = (ll >> 16) + (lh & 0xFFFFu) + (hl & 0xFFFFu);    /* < 2^18 */
    return ((uint64_t)(hh + (lh >> 16) + (hl >> 16) + (mid >> 16)) << 32)
           | (uint64_t)((mid << 16) | (ll & 0xFFFFu));
#else
    return (uint64_t)a * b;
#endif
}

/* s * w for s < 2^16: two 16-bit products on Armv6-M, umul32 elsewhere (the same value). */
static inline uint64_t umul16x32(uint32_t s, uint32_t w)
{
#if defined(__ARM_ARCH_6M__)
    return ((uint64_t)(s * (w >> 16)) << 16) + (uint64_t)(s * (w & 0xFFFFu));
#else
    return umul32(s, w);
#endif
}

/* sum of a[i] * b[i] over int32 values as an int64 (wrapping as the int64 sum would). On
 * Armv6-M each product is split into 16-bit halves, a = ah 2^16 + al with ah = a >> 16
 * (arithmetic) and al = a & 0xFFFF: a b = ah bh 2^32 + (ah bl + al bh) 2^16 + al bl, each
 * partial product within 32 bits, added into one 64-bit sum modulo 2^64 (one accumulator:
 * the core has eight low registers). */
static int64_t dot32(const int32_t *a, const int32_t *b, uint32_t n)
{
    uint32_t i;
#if defined(__ARM_ARCH_6M__)
    uint64_t acc = 0;
    for (i = 0; i < n; ++i) {
        const int32_t ah = a[i] >> 16, bh = b[i] >> 16;
        const uint32_t al = (uint32_t)a[i] & 0xFFFFu, bl = (uint32_t)b[i] & 0xFFFFu;
        acc += (uint64_t)(uint32_t)(ah * bh) << 32;
        acc += (uint64_t)(int64_t)(ah * (int32_t)bl) << 16;
        acc += (uint64_t)(int64_t)((int32_t)al * bh) << 16;
        acc += al * bl;
    }
    return (int64_t)acc;
#else
    int64_t acc = 0;
    for (i = 0; i < n; ++i) {
        acc += (int64_t)a[i] * b[i];
    }
    return acc;
#endif
}

/* round(sqrt(v)) for v < 2^32: kml_isqrt64's steps in 32-bit words (the same result). */
static uint32_t isqrt32(uint32_t v)
{
    uint32_t res = 0, bit;
    if (v == 0u) {
        return 0;
    }
    bit = (uint32_t)1 << ((bit_length(v) - 1) & ~1);
    while (bit != 0u) {
        if (v >= res + bit) {
            v -= res + bit;
            res = (res >> 1) + bit;
        } else {
            res >>= 1;
        }
        bit >>= 2;
    }
    return v > res ? res + 1u : res;
}

/* round_shift (below) of an int32 whose magnitude stays below 2^31 - 2^(sh-1), in 32 bits. */
static int32_t round_shift32(int32_t v, int32_t sh)
{
    const int32_t half = (int32_t)1 << (sh - 1);
    return v >= 0 ? (v + half) >> sh : -((-v + half) >> sh);
}

uint32_t kml_isqrt64(uint64_t v)
{
    uint64_t res = 0, bit;
    const int32_t nb = bit_length(v);
    if (nb == 0) {
        return 0;
    }
    bit = (uint64_t)1 << ((nb - 1) & ~1);      /* the largest power of four <= v */
    while (bit != 0u) {
        if (v >= res + bit) {
            v -= res + bit;
            res = (res >> 1) + bit;
        } else {
            res >>= 1;
        }
        bit >>= 2;
    }
    if (v > res) { /* round to nearest: remainder > res means x > (res + 1/2)^2 */
        ++res;
    }
    return res > 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint32_t)res;
}

/* log2(v) in Q24 for v >= 1 (v = 0 is treated as 1). */
static int32_t log2_q24(uint64_t v)
{
    int32_t ip, i;
    uint64_t m;
    int32_t frac = 0;
    if (v == 0u) {
        return 0;
    }
    ip = bit_length(v) - 1;
    m = ip >= 30 ? (v >> (ip - 30)) : (v << (30 - ip));     /* Q30 in [1, 2) */
    for (i = 0; i < 24; ++i) {
        m = (umul32((uint32_t)m, (uint32_t)m) + ((uint64_t)1 << 29)) >> 30;   /* m < 2^31 */
        frac <<= 1;
        if (m >= ((uint64_t)1 << 31)) {
            frac |= 1;
            m >>= 1;
        }
    }
    return ip * (1 << 24) + frac;
}

/* log2(hi * 2^32 + lo) in Q24 (0 for 0): the top 64 bits and the exponent of the rest. */
static int64_t log2_q24_96(uint64_t hi, uint32_t lo)
{
    int32_t bh;
    if (hi >> 32 == 0u) {
        return log2_q24((hi << 32) | lo);
    }
    bh = bit_length(hi);
    /* total has bh + 32 bits: keep its top 64, e = bh - 32 dropped. */
    return (int64_t)log2_q24((hi << (64 - bh)) | ((uint64_t)lo >> (bh - 32)))
           + (int64_t)(bh - 32) * (1 << 24);
}

static int64_t round_shift(int64_t v, int32_t sh)
{
    if (sh <= 0) {
        return v;
    }
    if (sh >= 63) {
        return 0;
    }
    return v >= 0 ? (v + ((int64_t)1 << (sh - 1))) >> sh
                  : -((-v + ((int64_t)1 << (sh - 1))) >> sh);
}

static int32_t out_value(const kml_frontend_q_cfg *c, int32_t v_q20, void *out, uint32_t idx)
{
    if (c->quantize) {
        int64_t q = round_shift((int64_t)v_q20 * c->out_mult, c->out_shift) + c->out_zero_point;
        q = q > 127 ? 127 : (q < -128 ? -128 : q);
        ((int8_t *)out)[idx] = (int8_t)q;
    } else {
        ((int32_t *)out)[idx] = v_q20;
    }
    return 0;
}

int32_t kml_frontend_q_divisor(const kml_frontend_q_cfg *c, const int16_t *pcm)
{
    const uint32_t n = c->used_samples < c->input_samples ? c->used_samples : c->input_samples;
    int32_t amax = 0, peak = INT32_MIN;
    uint32_t i;
    for (i = 0; i < n; ++i) {
        const int32_t v = pcm[i];
        const int32_t a = v < 0 ? -v : v;
        if (a > amax) {
            amax = a;
        }
        if (v > peak) {
            peak = v;
        }
    }
    if (c->normalize == KML_NORM_PEAK) {
        return peak > 0 ? peak : 32768;
    }
    if (c->normalize == KML_NORM_PEAK_ABS) {
        return amax > 0 ? amax : 32768;
    }
    return 32768;
}

int32_t kml_frontend_q_frame(const kml_frontend_q_cfg *c, const int16_t *pcm, uint32_t t0,
                             int32_t *scratch, uint64_t *mel_hi, uint32_t *mel_lo, int is_q31)
{
    const uint32_t n = c->used_samples < c->input_samples ? c->used_samples : c->input_samples;
    const uint32_t nbins = c->fft_length / 2u + 1u;
    const uint32_t fft_words = is_q31 ? c->fft_length : (c->fft_length + 1u) / 2u;
    int32_t *buf32 = scratch;
    int16_t *buf16 = (int16_t *)(void *)scratch;
    uint64_t *spec = (uint64_t *)(void *)(scratch + fft_words + (fft_words & 1u));
    const int32_t p = c->power == 2u ? 2 : 1;
    int32_t famax = 0, S;
    uint32_t i, k, bin_lo = nbins, bin_hi = 0;
    const uint32_t *w = c->filter_weights;

    /* Only the bins some filter uses need a magnitude (e.g. 1..128 of 257 for 20-4000 Hz). */
    for (k = 0; k < c->num_filters; ++k) {
        if (c->filter_len[k] != 0u && c->filter_start[k] < bin_lo) {
            bin_lo = c->filter_start[k];
        }
        if ((uint32_t)c->filter_start[k] + c->filter_len[k] > bin_hi) {
            bin_hi = (uint32_t)c->filter_start[k] + c->filter_len[k];
        }
    }
    /* Block floating point per frame: the largest S with famax * 2^S < 2^30 (one bit
     * less with pre-emphasis, which can nearly double a sample), so quiet frames keep
     * their precision. */
    for (i = t0 > 0u ? t0 - 1u : 0u; i < t0 + c->frame_length && i < n; ++i) {
        const int32_t a = pcm[i] < 0 ? -(int32_t)pcm[i] : (int32_t)pcm[i];
        if (a > famax) {
            famax = a;
        }
    }
    S = 30;
    if (famax > 0) {
        S = 0;
        while (S < 30 && ((int64_t)famax << (S + 1)) < ((int64_t)1 << 30)) {
            ++S;
        }
        if (c->pre_emphasis_q15 != 0 && S > 0) {
            --S;
        }
    }
    if (!is_q31 && c->pre_emphasis_q15 == 0) {
        /* q15 without pre-emphasis in 32 bits: |pcm 2^S| < 2^30 (S above), |y16| <= 2^14,
         * |y16 win| <= 2^29; the same roundings as the general loop below */
        const int16_t *win = (const int16_t *)c->window;
        for (i = 0; i < c->frame_length; ++i) {
            const uint32_t t = t0 + i;
            const int32_t y = t < c->used_samples && t < n ? (int32_t)pcm[t] * ((int32_t)1 << S)
                                                           : 0;
            buf16[i] = (int16_t)round_shift32(round_shift32(y, 16) * win[i], 15);
        }
    }
    for (i = (!is_q31 && c->pre_emphasis_q15 == 0) ? c->frame_length : 0u;
         i < c->frame_length; ++i) {
        const uint32_t t = t0 + i;
        int64_t y = 0;
        if (t < c->used_samples) {
            y = t < n ? (int64_t)pcm[t] * ((int64_t)1 << S) : 0;
            if (c->pre_emphasis_q15 != 0 && t > 0u && t - 1u < n) {
                y -= round_shift((int64_t)c->pre_emphasis_q15 * pcm[t - 1u] *
                                 ((int64_t)1 << S), 15);
            }
        }
        if (is_q31) {
            const int32_t *win = (const int32_t *)c->window;
            buf32[i] = (int32_t)round_shift(y * win[i], 31);
        } else {
            const int16_t *win = (const int16_t *)c->window;
            const int64_t y16 = round_shift(y, 16);
            buf16[i] = (int16_t)round_shift(y16 * win[i], 15);
        }
    }
    for (; i < c->fft_length; ++i) {
        if (is_q31) {
            buf32[i] = 0;
        } else {
            buf16[i] = 0;
        }
    }
    if (is_q31) {
        kml_rfft_q31(buf32, c->fft_length, (const int32_t *)c->twiddle);
    } else {
        kml_rfft_q15(buf16, c->fft_length, (const int16_t *)c->twiddle);
    }
    for (k = bin_lo; k < bin_hi; ++k) {
        int64_t re, im;
        uint64_t m2;
        if (k == 0u || k == nbins - 1u) {
            re = is_q31 ? buf32[k == 0u ? 0 : 1] : buf16[k == 0u ? 0 : 1];
            im = 0;
        } else {
            re = is_q31 ? buf32[2u * k] : buf16[2u * k];
            im = is_q31 ? buf32[2u * k + 1u] : buf16[2u * k + 1u];
        }
        {
            const uint32_t ar = re < 0 ? (uint32_t)-re : (uint32_t)re;
            const uint32_t ai = im < 0 ? (uint32_t)-im : (uint32_t)im;
            if (!is_q31) {      /* |re|, |im| <= 2^15: the sum of squares fits 32 bits */
                const uint32_t s2 = ar * ar + ai * ai;
                spec[k] = p == 1 ? isqrt32(s2) : s2;
                continue;
            }
            m2 = umul32(ar, ar) + umul32(ai, ai);
        }
        spec[k] = p == 1 ? kml_isqrt64(m2) : m2;
    }
    for (k = 0; k < c->num_filters; ++k) {
        const uint64_t *s = spec + c->filter_start[k];
        uint64_t hi = 0, lo = 0;       /* 96-bit accumulator: hi * 2^32 + lo */
        if (is_q31 && p == 2) {        /* power spectrum of q31: bins up to 63 bits */
            for (i = 0; i < c->filter_len[k]; ++i) {
                const uint64_t plo = umul32((uint32_t)(s[i] & 0xFFFFFFFFu), w[i]);
                hi += umul32((uint32_t)(s[i] >> 32), w[i]);
                lo += plo;
                if (lo < plo) {
                    hi += (uint64_t)1 << 32;
                }
            }
        } else if (!is_q31 && p == 1) {   /* q15 magnitudes: every bin below 2^16 */
            for (i = 0; i < c->filter_len[k]; ++i) {
                const uint64_t plo = umul16x32((uint32_t)s[i], w[i]);
                lo += plo;
                if (lo < plo) {
                    hi += (uint64_t)1 << 32;
                }
            }
        } else {                       /* every bin below 2^32: no high product */
            for (i = 0; i < c->filter_len[k]; ++i) {
                const uint64_t plo = umul32((uint32_t)s[i], w[i]);
                lo += plo;
                if (lo < plo) {
                    hi += (uint64_t)1 << 32;
                }
            }
        }
        w += c->filter_len[k];
        mel_hi[k] = hi + (lo >> 32);   /* the same 96-bit value, lo < 2^32 */
        mel_lo[k] = (uint32_t)(lo & 0xFFFFFFFFu);
    }
    return is_q31 ? S : S - 16;
}

void kml_frontend_q_finish(const kml_frontend_q_cfg *c, const uint64_t *mel_hi,
                           const uint32_t *mel_lo, int32_t Sb, int32_t D, int32_t *mel,
                           void *out, uint32_t f)
{
    const int32_t p = c->power == 2u ? 2 : 1;
    const uint32_t width = c->num_coeffs ? c->num_coeffs : c->num_filters;
    const int32_t G = -c->filter_frac_bits + p * (int32_t)c->log2_fft - p * Sb;
    const int64_t log2_d = log2_q24((uint64_t)D);
    uint64_t off_hi = 0, off_lo = 0;
    uint32_t k;
    if (c->log_mode == KML_LOGMODE_ADD) {
        /* offset * D^p * 2^(p S' - G0) = v * 2^sh as a 96-bit off_hi * 2^32 + off_lo */
        uint64_t v = (uint64_t)c->log_off_mant * (uint64_t)D;
        const int32_t sh = c->log_off_exp + p * Sb;
        if (p == 2) {
            v *= (uint64_t)D;
        }
        if (sh < 0) {
            off_lo = -sh >= 64 ? 0u : (v + ((uint64_t)1 << (-sh - 1))) >> (-sh);
        } else if (sh < 32) {
            off_hi = v >> (32 - sh);
            off_lo = (v << sh) & 0xFFFFFFFFu;
        } else if (sh - 32 < 62 && v < ((uint64_t)1 << (62 - (sh - 32)))) {
            off_hi = v << (sh - 32);
        } else {
            off_hi = (uint64_t)1 << 62;      /* saturate: the offset dominates anyway */
        }
    }
    for (k = 0; k < c->num_filters; ++k) {
        uint64_t hi = mel_hi[k], lo = mel_lo[k];
        int64_t l2;
        int32_t lq;
        if (c->log_mode == KML_LOGMODE_ADD) {
            lo += off_lo;
            if (lo < off_lo) {
                hi += (uint64_t)1 << 32;
            }
            hi += off_hi;
        }
        l2 = log2_q24_96(hi + (lo >> 32), (uint32_t)(lo & 0xFFFFFFFFu));
        l2 += (int64_t)G * (1 << 24) - (int64_t)p * log2_d;
        lq = (int32_t)round_shift(l2 * c->log_scale_q30, 34);
        if (c->log_mode == KML_LOGMODE_CLAMP && ((hi | lo) == 0u || lq < c->log_floor_q20)) {
            lq = c->log_floor_q20;
        }
        mel[k] = lq;
    }
    for (k = 0; k < width; ++k) {
        int32_t v;
        if (c->num_coeffs) {
            v = (int32_t)round_shift(dot32(c->dct_q29 + k * c->num_filters, mel,
                                           c->num_filters), 29);
        } else {
            v = mel[k];
        }
        out_value(c, v, out, f * width + k);
    }
}

static int frontend_q(const kml_frontend_q_cfg *c, const int16_t *pcm, int32_t *scratch,
                      void *out, int is_q31)
{
    const uint32_t nbins = c->fft_length / 2u + 1u;
    const uint32_t fft_words = is_q31 ? c->fft_length : (c->fft_length + 1u) / 2u;
    int32_t *after = scratch + fft_words + (fft_words & 1u) + 2u * nbins;
    uint64_t *mel_hi = (uint64_t *)(void *)after;
    int32_t *mel = after + 2u * c->num_filters;
    uint32_t *mel_lo = (uint32_t *)(void *)(mel + c->num_filters);
    const int32_t D = kml_frontend_q_divisor(c, pcm);
    uint32_t f;
    for (f = 0; f < c->num_frames; ++f) {
        const int32_t Sb = kml_frontend_q_frame(c, pcm, f * c->frame_step, scratch, mel_hi,
                                                mel_lo, is_q31);
        kml_frontend_q_finish(c, mel_hi, mel_lo, Sb, D, mel, out, f);
    }
    return 0;
}

int kml_frontend_q31(const kml_frontend_q_cfg *c, const int16_t *pcm, int32_t *scratch, void *out)
{
    return frontend_q(c, pcm, scratch, out, 1);
}

int kml_frontend_q15(const kml_frontend_q_cfg *c, const int16_t *pcm, int32_t *scratch, void *out)
{
    return frontend_q(c, pcm, scratch, out, 0);
}
