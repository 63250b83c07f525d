/* kiloml runtime (armv6m): CONV_2D, FULLY_CONNECTED (as a 1x1 convolution) and
 * DEPTHWISE_CONV_2D for cores without the DSP extension (Cortex-M0+). Plain C99, bit-exact
 * with the portable kernels (TFLite's reference arithmetic).
 *
 * The signatures are the portable kernels' (kml_conv.h); ``filter`` and ``bias`` are 0:
 * ``packed`` holds them, arranged by the generator (codegen/armv6m_backend.py). ``mult`` is 0
 * or, for a layer whose every channel's accumulator the generator bounded by |acc| < 2^21,
 * the bounded requantization's records, four words per channel (kml_conv_m0.c, m0_rqb);
 * the stream's groups then carry no records (bias[G], then the weights). ``shift`` is 0 or,
 * for kml_conv2d_m0_s8 / kml_conv2d_add_m0_s8 on a layer fed by a fused ReLU, {1}: a pixel's
 * zero column values are skipped (the pairs after the scratch's other parts; {2}: the cost of
 * a column without zeros, for measurements); with bounded records, {3} / {4}: the same on the
 * packed weight pairs (m0_dot8p: two unsigned weights per word as 16-bit lanes, one MULS per
 * two MACs; {4} keeps every value), {5}: the packed weight pairs on a dense layer (column
 * values x + 128, padding 128 - input offset, the bias corrected by the generator). The
 * packed stream's layout is in kml_conv_m0.c (m0_dot8p).
 *
 * kml_conv2d_m0_s8: per output pixel, the window is copied once into ``scratch`` as int32
 * values x + input offset (0 for padding) with their sum S; then groups of four output
 * channels multiply it with weights stored as unsigned bytes w + 128, four per word (one
 * LDRB per weight with an immediate offset, no sign extension):
 *     sum(c * w) = sum(c * (w + 128)) - 128 * S.
 * Groups of eight output channels while more than four remain (m0_dot8: the accumulators in
 * eight registers, one LDR of the column value per eight MACs), then one of four.
 * Stream, per group of G channels: bias[G], G requantization records {mult, s, rnd} (where
 * mult >= 0 and shift <= 0: s = -shift and rnd = 2^s / 2, the rounding of the one shift of
 * m0_rq; else s = shift and rnd = -1: the general form), then K x G bytes: the G channels'
 * weights at window position k (a missing channel has weights 0, i.e. 128), K the window size
 * rounded up to a multiple of 4 (the extra positions: weights 0, column values 0).
 *
 * kml_depthwise_conv2d_m0_s8 (depth multiplier 1, channels a multiple of 4): per output pixel
 * and group of four channels, the window's taps; the input offset is folded into the bias
 * (bias + offset x sum of the channel's weights, in the stream); at the border the taps come
 * from a copy of the window in ``scratch`` (k_h x k_w x C bytes) padded with the input zero
 * point, whose x + offset is 0. Stream, per group: folded bias[4], 4 records, then for
 * each of the k_h x k_w taps the four channels' weights as int32 (one LDR each, no sign extension;
 * depthwise weights are few). */
#ifndef KML_CONV_M0_H
#define KML_CONV_M0_H

#include "kml_conv.h"

void kml_conv2d_m0_s8(const kml_conv_params *p, const int8_t *input, const int8_t *filter,
                      const int32_t *bias, const int32_t *mult, const int32_t *shift,
                      int8_t *output, const int32_t *packed, int32_t *scratch);

/* CONV_2D fused with the ADD behind it (kml_conv2d_add_s8's epilogue), same stream. */
void kml_conv2d_add_m0_s8(const kml_conv_params *p, const int8_t *input,
                          const int8_t *filter, const int32_t *bias, const int32_t *mult,
                          const int32_t *shift, const kml_add_epilogue *ep,
                          const int8_t *residual, int8_t *output, const int32_t *packed,
                          int32_t *scratch);

void kml_depthwise_conv2d_m0_s8(const kml_conv_params *p, const int8_t *input,
                                const int8_t *filter, const int32_t *bias,
                                const int32_t *mult, const int32_t *shift, int8_t *output,
                                const int32_t *packed, int32_t *scratch);

#endif /* KML_CONV_M0_H */
