/* kiloml framed spectral front end, float32: normalise -> pad/truncate -> pre-emphasis ->
 * frame -> window -> real FFT -> |X| or |X|^2 -> mel filters (or a bin range) -> log ->
 * DCT -> int8 quantization. Mirrors kiloml/dsp/mfe.py, mfcc.py and spectrogram.py. */
#include <math.h>

#include "kml_dsp.h"

/* Sample t of the normalised, padded and pre-emphasised signal; n real samples. */
static float sample_at(const kml_frontend_f32_cfg *c, const float *x, uint32_t n, uint32_t t,
                       float gain)
{
    float v;
    if (t >= c->used_samples) {
        return 0.0f;
    }
    v = t < n ? x[t] * gain : 0.0f;
    if (c->pre_emphasis != 0.0f && t > 0u && t - 1u < n) {
        v -= c->pre_emphasis * (x[t - 1u] * gain);
    }
    return v;
}

/* Natural logarithm, float32, for the log of the filter energies: newlib's logf costs ~90
 * instructions on a Cortex-M4F, this ~30. x = 2^e (1 + s) with 1 + s in [sqrt(1/2), sqrt(2));
 * with f = s / (2 + s) (|f| <= 0.1716), ln(1 + s) = 2 atanh(f) = 2f + f R, R = f^2 (2/3 +
 * 2/5 f^2 + 2/7 f^4 + 2/9 f^6) (the next term is below 3e-9 relative), and 2f = s - f s is
 * rearranged as s - (s^2/2 - f (s^2/2 + R)) so that s, exact, carries the result; e ln 2 in
 * two parts (the first exact in float). Error measured against the exact logarithm on every
 * float in [0.5, 2) and 4 M random positive floats: tests/dsp/test_dsp_fastlog.py. */
float kml_logf(float x)
{
    union { float f; uint32_t u; } v;
    int32_t e;
    float s, f, z, r, hfsq, fe;
    v.f = x;
    if (!(x > 0.0f) || v.u >= 0x7f800000u) {   /* 0, negative, NaN, +inf: as logf */
        return x == 0.0f ? -HUGE_VALF : (x > 0.0f ? x : (x - x) / (x - x));
    }
    e = 0;
    if (v.u < 0x00800000u) {                     /* subnormal: scale by 2^25 */
        v.f = x * 33554432.0f;
        e = -25;
    }
    e += (int32_t)(v.u >> 23) - 127;
    v.u = (v.u & 0x007fffffu) | 0x3f800000u;     /* 1 + s in [1, 2) */
    if (v.f > 1.41421356f) {
        v.f *= 0.5f;
        ++e;
    }
    s = v.f - 1.0f;
    f = s / (2.0f + s);
    z = f * f;
    r = z * (0.66666669f + z * (0.40000001f + z * (0.28571430f + z * 0.22222222f)));
    hfsq = 0.5f * s * s;
    fe = (float)e;
    return fe * 0.693145752f - ((hfsq - (f * (hfsq + r) + fe * 1.42860677e-06f)) - s);
}

static float apply_log(const kml_frontend_f32_cfg *c, float v)
{
    float y;
    if (c->log_kind == KML_LOG_NONE) {
        return v;
    }
    y = c->log_mode == KML_LOGMODE_ADD ? v + c->log_offset
                                      : (v > c->log_offset ? v : c->log_offset);
    if (c->log_kind == KML_LOG_LN) {
        return kml_logf(y);
    }
    if (c->log_kind == KML_LOG_LOG10) {
        return log10f(y);
    }
    return 10.0f * log10f(y);
}

static int8_t quantize(const kml_frontend_f32_cfg *c, float v)
{
    float r = v * c->out_inv_scale;
    int32_t q;
    r = r >= 0.0f ? floorf(r + 0.5f) : -floorf(-r + 0.5f);   /* half away from zero */
    if (r > 1000.0f) {
        r = 1000.0f;
    } else if (r < -1000.0f) {
        r = -1000.0f;
    }
    q = (int32_t)r + c->out_zero_point;
    if (q > 127) {
        q = 127;
    } else if (q < -128) {
        q = -128;
    }
    return (int8_t)q;
}

int kml_frontend_f32(const kml_frontend_f32_cfg *c, const float *x, float *scratch, void *out)
{
    float *fft = scratch;
    float *spec = scratch + c->fft_length;
    float *mel = spec + c->fft_length / 2u + 1u;
    const uint32_t nbins = c->fft_length / 2u + 1u;
    const uint32_t n = c->used_samples < c->input_samples ? c->used_samples : c->input_samples;
    const uint32_t width = c->num_coeffs ? c->num_coeffs
                           : (c->num_filters ? c->num_filters : (uint32_t)(c->bin_hi - c->bin_lo));
    float gain = 1.0f;
    uint32_t f, i, k, bin_lo = c->bin_lo, bin_hi = c->bin_hi;

    if (c->num_filters) {   /* only the bins some filter uses need a square root */
        bin_lo = nbins;
        bin_hi = 0;
        for (k = 0; k < c->num_filters; ++k) {
            if (c->filter_len[k] != 0u && c->filter_start[k] < bin_lo) {
                bin_lo = c->filter_start[k];
            }
            if ((uint32_t)c->filter_start[k] + c->filter_len[k] > bin_hi) {
                bin_hi = (uint32_t)c->filter_start[k] + c->filter_len[k];
            }
        }
    }

    if (c->normalize != KML_NORM_NONE && n > 0u) {
        float m = c->normalize == KML_NORM_PEAK ? x[0] : fabsf(x[0]);
        if (c->normalize == KML_NORM_PEAK) {   /* one loop per kind: no test per sample */
            float m1 = m;
            for (i = 1; i + 2u <= n; i += 2u) {   /* two running maxima */
                m = x[i] > m ? x[i] : m;
                m1 = x[i + 1u] > m1 ? x[i + 1u] : m1;
            }
            for (; i < n; ++i) {
                m = x[i] > m ? x[i] : m;
            }
            m = m1 > m ? m1 : m;
        } else {
            for (i = 1; i < n; ++i) {
                const float v = fabsf(x[i]);
                m = v > m ? v : m;
            }
        }
        if (m > 0.0f) {
            gain = 1.0f / m;
        }
    }
    for (f = 0; f < c->num_frames; ++f) {
        const uint32_t t0 = f * c->frame_step;
        if (c->pre_emphasis == 0.0f && t0 + c->frame_length <= n
            && t0 + c->frame_length <= c->used_samples) {
            /* the frame lies inside the signal: sample_at's arithmetic without its tests */
            const float *xs = x + t0, *win = c->window;
            for (i = 0; i + 4u <= c->frame_length; i += 4u) {   /* four per pass */
                const float a = xs[i], b = xs[i + 1u], d = xs[i + 2u], e = xs[i + 3u];
                const float wa = win[i], wb = win[i + 1u], wd = win[i + 2u], we = win[i + 3u];
                fft[i] = (a * gain) * wa;
                fft[i + 1u] = (b * gain) * wb;
                fft[i + 2u] = (d * gain) * wd;
                fft[i + 3u] = (e * gain) * we;
            }
            for (; i < c->frame_length; ++i) {
                fft[i] = (xs[i] * gain) * win[i];
            }
        } else {
            for (i = 0; i < c->frame_length; ++i) {
                fft[i] = sample_at(c, x, n, t0 + i, gain) * c->window[i];
            }
        }
        for (; i < c->fft_length; ++i) {
            fft[i] = 0.0f;
        }
        /* |X|^2 of the bins some filter or the bin range uses ([bin_lo, bin_hi)) */
        kml_rfft_power_f32(fft, c->fft_length, c->twiddle, spec, bin_lo, bin_hi);
        if (c->power == 1u) {
            for (k = bin_lo; k < bin_hi; ++k) {
                spec[k] = sqrtf(spec[k]);
            }
        }
        if (c->num_filters) {
            const float *w = c->filter_weights;
            for (k = 0; k < c->num_filters; ++k) {
                const float *s = spec + c->filter_start[k];
                float acc = 0.0f;
                for (i = 0; i < c->filter_len[k]; ++i) {
                    acc += s[i] * w[i];
                }
                w += c->filter_len[k];
                mel[k] = apply_log(c, acc);
            }
        } else {
            for (k = c->bin_lo; k < c->bin_hi; ++k) {
                mel[k - c->bin_lo] = apply_log(c, spec[k]);
            }
        }
        for (k = 0; k < width; ++k) {
            float v;
            if (c->num_coeffs) {
                const float *row = c->dct + k * c->num_filters;
                v = 0.0f;
                for (i = 0; i < c->num_filters; ++i) {
                    v += row[i] * mel[i];
                }
            } else {
                v = mel[k];
            }
            if (c->quantize) {
                ((int8_t *)out)[f * width + k] = quantize(c, v);
            } else {
                ((float *)out)[f * width + k] = v;
            }
        }
    }
    return 0;
}
