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
 *   length and p = 1 (magnitude) or 2 (power), the mel accumulator acc satisfies
 *       mel = acc * 2^(G0 - p*S') / D^p,    G0 = -F + p*log2(n) (+32 for q31 power),
 *   S' the buffer's shift (S, or S - 16 for q15). Hence
 *       log(mel + off) = log(acc + off * D^p * 2^(p*S' - G0)) + (G0 - p*S') log 2 - p log D,
 *   all of it computed with integer log2 (bit-by-bit squaring, 24 fraction bits). */
#include "kml_dsp.h"

uint32_t kml_isqrt64(uint64_t v)
{
    uint64_t res = 0, bit = (uint64_t)1 << 62;
    while (bit > v) {
        bit >>= 2;
    }
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
    int32_t ip = 63, i;
    uint64_t m;
    int32_t frac = 0;
    if (v == 0u) {
        return 0;
    }
    while ((v >> ip) == 0u) {
        --ip;
    }
    m = ip >= 30 ? (v >> (ip - 30)) : (v << (30 - ip));     /* Q30 in [1, 2) */
    for (i = 0; i < 24; ++i) {
        m = (m * m + ((uint64_t)1 << 29)) >> 30;
        frac <<= 1;
        if (m >= ((uint64_t)1 << 31)) {
            frac |= 1;
            m >>= 1;
        }
    }
    return ip * (1 << 24) + frac;
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

static int frontend_q(const kml_frontend_q_cfg *c, const int16_t *pcm, int32_t *scratch,
                      void *out, int is_q31)
{
    const uint32_t n = c->used_samples < c->input_samples ? c->used_samples : c->input_samples;
    const uint32_t nbins = c->fft_length / 2u + 1u;
    const uint32_t fft_words = is_q31 ? c->fft_length : (c->fft_length + 1u) / 2u;
    int32_t *buf32 = scratch;
    int16_t *buf16 = (int16_t *)(void *)scratch;
    uint32_t *spec = (uint32_t *)(scratch + fft_words);
    int32_t *mel = (int32_t *)(spec + nbins);
    const int32_t p = c->power == 2u ? 2 : 1;
    const uint32_t width = c->num_coeffs ? c->num_coeffs : c->num_filters;
    int32_t amax = 0, peak = INT32_MIN, D, S, Sb, G, log2_d;
    uint32_t f, i, k;
    uint64_t off_int = 0;

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
        D = peak > 0 ? peak : 32768;
    } else if (c->normalize == KML_NORM_PEAK_ABS) {
        D = amax > 0 ? amax : 32768;
    } else {
        D = 32768;
    }
    log2_d = log2_q24((uint64_t)D);
    for (f = 0; f < c->num_frames; ++f) {
        const uint32_t t0 = f * c->frame_step;
        int32_t famax = 0;
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
        Sb = is_q31 ? S : S - 16;
        G = -c->filter_frac_bits + p * (int32_t)c->log2_fft + ((p == 2 && is_q31) ? 32 : 0)
            - p * Sb;
        off_int = 0;
        if (c->log_mode == KML_LOGMODE_ADD) {
            uint64_t v = (uint64_t)c->log_off_mant * (uint64_t)D;
            const int32_t sh = c->log_off_exp + p * Sb;   /* offset * D^p * 2^(p S' - G0) */
            if (p == 2) {
                v *= (uint64_t)D;
            }
            if (sh >= 0) {
                if (sh >= 62 || v >= ((uint64_t)1 << (62 - sh))) {
                    off_int = (uint64_t)1 << 62;     /* saturate: the offset dominates anyway */
                } else {
                    off_int = v << sh;
                }
            } else {
                off_int = -sh >= 64 ? 0u : (v + ((uint64_t)1 << (-sh - 1))) >> (-sh);
            }
        }
        for (i = 0; i < c->frame_length; ++i) {
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
                const int32_t *w = (const int32_t *)c->window;
                buf32[i] = (int32_t)round_shift(y * w[i], 31);
            } else {
                const int16_t *w = (const int16_t *)c->window;
                const int64_t y16 = round_shift(y, 16);
                buf16[i] = (int16_t)round_shift(y16 * w[i], 15);
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
        for (k = 0; k < nbins; ++k) {
            int64_t re, im;
            uint64_t m2;
            if (k == 0u || k == nbins - 1u) {
                re = is_q31 ? buf32[k == 0u ? 0 : 1] : buf16[k == 0u ? 0 : 1];
                im = 0;
            } else {
                re = is_q31 ? buf32[2u * k] : buf16[2u * k];
                im = is_q31 ? buf32[2u * k + 1u] : buf16[2u * k + 1u];
            }
            m2 = (uint64_t)(re * re) + (uint64_t)(im * im);
            if (p == 1) {
                spec[k] = kml_isqrt64(m2);
            } else {
                spec[k] = is_q31 ? (uint32_t)((m2 + ((uint64_t)1 << 31)) >> 32) : (uint32_t)m2;
            }
        }
        {
            const uint32_t *w = c->filter_weights;
            for (k = 0; k < c->num_filters; ++k) {
                const uint32_t *s = spec + c->filter_start[k];
                uint64_t acc = 0;
                int64_t l2;
                int32_t lq;
                for (i = 0; i < c->filter_len[k]; ++i) {
                    acc += (uint64_t)s[i] * w[i];
                }
                w += c->filter_len[k];
                if (c->log_mode == KML_LOGMODE_ADD) {
                    acc = acc + off_int < acc ? UINT64_MAX : acc + off_int;
                }
                l2 = (int64_t)log2_q24(acc) + (int64_t)G * (1 << 24) - (int64_t)p * log2_d;
                lq = (int32_t)round_shift(l2 * c->log_scale_q30, 34);
                if (c->log_mode == KML_LOGMODE_CLAMP && (acc == 0u || lq < c->log_floor_q20)) {
                    lq = c->log_floor_q20;
                }
                mel[k] = lq;
            }
        }
        for (k = 0; k < width; ++k) {
            int32_t v;
            if (c->num_coeffs) {
                const int32_t *row = c->dct_q29 + k * c->num_filters;
                int64_t acc = 0;
                for (i = 0; i < c->num_filters; ++i) {
                    acc += (int64_t)row[i] * mel[i];
                }
                v = (int32_t)round_shift(acc, 29);
            } else {
                v = mel[k];
            }
            out_value(c, v, out, f * width + k);
        }
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
