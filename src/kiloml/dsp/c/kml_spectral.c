/* kiloml spectral analysis of one (frames x axes) window, float32. Mirrors
 * kiloml/dsp/spectral.py: per axis the statistics (two-pass central moments), the Welch PSD
 * (Hann segments of seg_length every seg_step, each detrended, zero-padded to fft_length),
 * band powers and the largest local maxima of the PSD. */
#include <math.h>

#include "kml_dsp.h"

int kml_spectral_f32(const kml_spectral_cfg *c, const float *x, float *scratch, float *out)
{
    float *fft = scratch;
    float *psd = scratch + c->fft_length;
    const uint32_t nb = c->fft_length / 2u + 1u;
    const uint32_t per_axis = (c->statistics ? 5u : 0u) + c->num_bands + 2u * c->num_peaks;
    uint32_t a, i, k, s;
    float floor_h = 0.0f;
    for (a = 0; a < c->axes; ++a) {
        float *o = out + a * per_axis;
        if (c->statistics) {
            float sum = 0.0f, sq = 0.0f, m2 = 0.0f, m3 = 0.0f, m4 = 0.0f, mean;
            for (i = 0; i < c->frames; ++i) {
                const float v = x[i * c->axes + a];
                sum += v;
                sq += v * v;
            }
            mean = sum / (float)c->frames;
            for (i = 0; i < c->frames; ++i) {
                const float d = x[i * c->axes + a] - mean, d2 = d * d;
                m2 += d2;
                m3 += d2 * d;
                m4 += d2 * d2;
            }
            m2 /= (float)c->frames;
            m3 /= (float)c->frames;
            m4 /= (float)c->frames;
            o[0] = mean;
            o[1] = sqrtf(sq / (float)c->frames);
            o[2] = sqrtf(m2);
            if (m2 > 1e-12f * mean * mean + 1e-30f) {
                o[3] = m3 / (m2 * sqrtf(m2));
                o[4] = m4 / (m2 * m2) - 3.0f;
            } else {
                o[3] = 0.0f;
                o[4] = 0.0f;
            }
            o += 5;
        }
        if (c->num_bands == 0u && c->num_peaks == 0u) {
            continue;
        }
        for (k = 0; k < nb; ++k) {
            psd[k] = 0.0f;
        }
        for (s = 0; s < c->num_segments; ++s) {
            const uint32_t t0 = s * c->seg_step;
            float mean = 0.0f;
            if (c->detrend) {
                for (i = 0; i < c->seg_length; ++i) {
                    mean += x[(t0 + i) * c->axes + a];
                }
                mean /= (float)c->seg_length;
            }
            for (i = 0; i < c->seg_length; ++i) {
                fft[i] = (x[(t0 + i) * c->axes + a] - mean) * c->window[i];
            }
            for (; i < c->fft_length; ++i) {
                fft[i] = 0.0f;
            }
            kml_rfft_f32(fft, c->fft_length, c->twiddle);
            psd[0] += fft[0] * fft[0];
            psd[nb - 1u] += fft[1] * fft[1];
            for (k = 1; k + 1u < nb; ++k) {
                psd[k] += fft[2u * k] * fft[2u * k] + fft[2u * k + 1u] * fft[2u * k + 1u];
            }
        }
        for (k = 0; k < nb; ++k) {
            const float one_sided = (k == 0u || k == nb - 1u) ? 1.0f : 2.0f;
            psd[k] *= c->psd_scale * one_sided / (float)c->num_segments;
        }
        for (k = 0; k < c->num_bands; ++k) {
            float bp = 0.0f;
            for (i = c->band_lo[k]; i < c->band_hi[k]; ++i) {
                bp += psd[i];
            }
            bp *= c->bin_hz;
            *o++ = c->log_bands ? log10f(bp + 1e-20f) : bp;
        }
        if (c->num_peaks > 0u) {
            /* a peak's power must exceed 1e-10 x the window's mean square (PEAK_FLOOR in
             * spectral.py): a constant window's PSD is rounding noise, not peaks */
            float sq = 0.0f;
            for (i = 0; i < c->frames; ++i) {
                const float v = x[i * c->axes + a];
                sq += v * v;
            }
            floor_h = 1e-10f * (sq / (float)c->frames) / c->bin_hz;
        }
        for (k = 0; k < c->num_peaks; ++k) {
            /* The k-th largest local maximum: the largest peak below (height, bin) of the last
             * one taken, ties going to the lower bin as in numpy's stable sort. */
            float best_h = -1.0f;
            uint32_t best_i = 0;
            for (i = 1; i + 1u < nb; ++i) {
                const float h = psd[i];
                if (!(h > psd[i - 1u] && h > psd[i + 1u] && h > floor_h)) {
                    continue;
                }
                if (k > 0u) {
                    const float ph = o[-1];
                    const uint32_t pi = (uint32_t)(o[-2] / c->bin_hz + 0.5f);
                    if (o[-2] == 0.0f && ph == 0.0f) {
                        break;          /* no previous peak: none left */
                    }
                    if (h > ph || (h == ph && i <= pi)) {
                        continue;
                    }
                }
                if (h > best_h) {
                    best_h = h;
                    best_i = i;
                }
            }
            if (best_h < 0.0f) {
                *o++ = 0.0f;
                *o++ = 0.0f;
            } else {
                *o++ = (float)best_i * c->bin_hz;
                *o++ = best_h;
            }
        }
    }
    return 0;
}
