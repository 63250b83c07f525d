/* kiloml runtime: portable CONV_2D (+ fused ADD epilogue), TFLite reference semantics. */
#include "kml_conv.h"

static int32_t conv_acc(const kml_conv_params *p, const int8_t *input, const int8_t *filter,
                        int32_t b, int32_t oy, int32_t ox, int32_t oc)
{
    const int32_t in_y0 = oy * p->stride_h - p->pad_top;
    const int32_t in_x0 = ox * p->stride_w - p->pad_left;
    const int8_t *w = filter + (size_t)oc * (size_t)(p->k_h * p->k_w * p->in_c);
    const int32_t in_c = p->in_c, in_offset = p->in_offset;
    int32_t acc = 0;
    int32_t ky, kx, ic;
    for (ky = 0; ky < p->k_h; ++ky) {
        const int32_t iy = in_y0 + ky * p->dil_h;
        if (iy < 0 || iy >= p->in_h) {
            continue;
        }
        for (kx = 0; kx < p->k_w; ++kx) {
            const int32_t ix = in_x0 + kx * p->dil_w;
            const int8_t *x;
            const int8_t *wk;
            if (ix < 0 || ix >= p->in_w) {
                continue;
            }
            x = input + ((size_t)(b * p->in_h + iy) * (size_t)p->in_w + (size_t)ix) * (size_t)p->in_c;
            wk = w + (size_t)(ky * p->k_w + kx) * (size_t)p->in_c;
            for (ic = 0; ic < in_c; ++ic) {
                acc += (int32_t)wk[ic] * ((int32_t)x[ic] + in_offset);
            }
        }
    }
    return acc;
}

static int32_t requant(const kml_conv_params *p, int32_t acc, const int32_t *bias,
                       const int32_t *mult, const int32_t *shift, int32_t oc)
{
    if (bias != 0) {
        acc += bias[oc];
    }
    acc = kml_mbqm(acc, mult[oc], shift[oc]) + p->out_offset;
    return kml_clamp(acc, p->act_min, p->act_max);
}

void kml_conv2d_s8(const kml_conv_params *p, const int8_t *input, const int8_t *filter,
                   const int32_t *bias, const int32_t *mult, const int32_t *shift,
                   int8_t *output, const int32_t *packed, int32_t *scratch)
{
    int32_t b, oy, ox, oc;
    (void)packed;
    (void)scratch;
    for (b = 0; b < p->batches; ++b) {
        for (oy = 0; oy < p->out_h; ++oy) {
            for (ox = 0; ox < p->out_w; ++ox) {
                int8_t *out = output + ((size_t)(b * p->out_h + oy) * (size_t)p->out_w + (size_t)ox) * (size_t)p->out_c;
                for (oc = 0; oc < p->out_c; ++oc) {
                    const int32_t acc = conv_acc(p, input, filter, b, oy, ox, oc);
                    out[oc] = (int8_t)requant(p, acc, bias, mult, shift, oc);
                }
            }
        }
    }
}

static int32_t add_scaled(int32_t v, int32_t offset, int32_t left_shift, int32_t mult, int32_t shift)
{
    const int32_t shifted = (v + offset) * (1 << left_shift);
    return kml_mbqm(shifted, mult, shift);
}

void kml_conv2d_add_s8(const kml_conv_params *p, const int8_t *input, const int8_t *filter,
                       const int32_t *bias, const int32_t *mult, const int32_t *shift,
                       const kml_add_epilogue *ep, const int8_t *residual, int8_t *output,
                       const int32_t *packed, int32_t *scratch)
{
    int32_t b, oy, ox, oc;
    (void)packed;
    (void)scratch;
    for (b = 0; b < p->batches; ++b) {
        for (oy = 0; oy < p->out_h; ++oy) {
            for (ox = 0; ox < p->out_w; ++ox) {
                const size_t pix = ((size_t)(b * p->out_h + oy) * (size_t)p->out_w + (size_t)ox) * (size_t)p->out_c;
                for (oc = 0; oc < p->out_c; ++oc) {
                    const int32_t c = requant(p, conv_acc(p, input, filter, b, oy, ox, oc),
                                              bias, mult, shift, oc);
                    const int32_t sc = add_scaled(c, ep->conv_offset, ep->left_shift,
                                                  ep->conv_mult, ep->conv_shift);
                    const int32_t sr = add_scaled((int32_t)residual[pix + (size_t)oc], ep->res_offset,
                                                  ep->left_shift, ep->res_mult, ep->res_shift);
                    const int32_t sum = ep->conv_first ? sc + sr : sr + sc;
                    const int32_t o = kml_mbqm(sum, ep->out_mult, ep->out_shift) + ep->out_offset;
                    output[pix + (size_t)oc] = (int8_t)kml_clamp(o, ep->act_min, ep->act_max);
                }
            }
        }
    }
}

void kml_depthwise_conv2d_s8(const kml_conv_params *p, const int8_t *input,
                             const int8_t *filter, const int32_t *bias, const int32_t *mult,
                             const int32_t *shift, int8_t *output, const int32_t *packed,
                             int32_t *scratch)
{
    const int32_t depth_mult = p->out_c / p->in_c;
    int32_t b, oy, ox, oc;
    (void)packed;
    (void)scratch;
    for (b = 0; b < p->batches; ++b) {
        for (oy = 0; oy < p->out_h; ++oy) {
            for (ox = 0; ox < p->out_w; ++ox) {
                int8_t *out = output + ((size_t)(b * p->out_h + oy) * (size_t)p->out_w + (size_t)ox) * (size_t)p->out_c;
                for (oc = 0; oc < p->out_c; ++oc) {
                    const int32_t ic = oc / depth_mult;
                    int32_t acc = 0;
                    int32_t ky, kx;
                    for (ky = 0; ky < p->k_h; ++ky) {
                        const int32_t iy = oy * p->stride_h - p->pad_top + ky * p->dil_h;
                        if (iy < 0 || iy >= p->in_h) {
                            continue;
                        }
                        for (kx = 0; kx < p->k_w; ++kx) {
                            const int32_t ix = ox * p->stride_w - p->pad_left + kx * p->dil_w;
                            int32_t xv;
                            if (ix < 0 || ix >= p->in_w) {
                                continue;
                            }
                            xv = input[((size_t)(b * p->in_h + iy) * (size_t)p->in_w + (size_t)ix) * (size_t)p->in_c + (size_t)ic];
                            acc += (int32_t)filter[(size_t)(ky * p->k_w + kx) * (size_t)p->out_c + (size_t)oc] * (xv + p->in_offset);
                        }
                    }
                    out[oc] = (int8_t)requant(p, acc, bias, mult, shift, oc);
                }
            }
        }
    }
}

/* The specialised entry points of the optimized runtimes are the general kernels here. */
#define KML_ENTRY(name, general)                                                          \
    void name(const kml_conv_params *p, const int8_t *input, const int8_t *filter,      \
              const int32_t *bias, const int32_t *mult, const int32_t *shift,           \
              int8_t *output, const int32_t *packed, int32_t *scratch)                  \
    {                                                                                   \
        general(p, input, filter, bias, mult, shift, output, packed, scratch);          \
    }
#define KML_DEPTHWISE_ENTRY(name) KML_ENTRY(name, kml_depthwise_conv2d_s8)
#define KML_CONV_ENTRY(name) KML_ENTRY(name, kml_conv2d_s8)

KML_CONV_ENTRY(kml_conv2d_pairs_s8)
KML_CONV_ENTRY(kml_conv2d_pairs_inside_s8)
KML_CONV_ENTRY(kml_conv2d_1x1_s8)
KML_CONV_ENTRY(kml_conv2d_1x1x_s8)
KML_CONV_ENTRY(kml_conv2d_rgb_s8)

KML_DEPTHWISE_ENTRY(kml_depthwise_conv2d_3x3_s8)
KML_DEPTHWISE_ENTRY(kml_depthwise_conv2d_3x3_w5_s8)
KML_DEPTHWISE_ENTRY(kml_depthwise_conv2d_3x3_w5r_s8)
KML_DEPTHWISE_ENTRY(kml_depthwise_conv2d_3x3_h_s8)
KML_DEPTHWISE_ENTRY(kml_depthwise_conv2d_3x3_s2_s8)
KML_DEPTHWISE_ENTRY(kml_depthwise_conv2d_3x3_g6_s8)
KML_DEPTHWISE_ENTRY(kml_depthwise_conv2d_3x3_g6s2_s8)
KML_DEPTHWISE_ENTRY(kml_depthwise_conv2d_3x3_g6r_s8)
KML_DEPTHWISE_ENTRY(kml_depthwise_conv2d_3x3_g6s2r_s8)
