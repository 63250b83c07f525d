/* kiloml runtime: CONV_2D and DEPTHWISE_CONV_2D, int8 NHWC, per-channel requantization. */
#ifndef KML_CONV_H
#define KML_CONV_H

#include "kml_common.h"

/* Sizes are int32; filter geometry, padding, offsets and clamps fit int16 (the ops check it),
 * which keeps the per-layer constant small in flash. */
typedef struct {
    int32_t batches, in_h, in_w, in_c, out_h, out_w, out_c;
    int16_t k_h, k_w, stride_h, stride_w, dil_h, dil_w, pad_top, pad_left;
    int16_t in_offset, out_offset, act_min, act_max;
} kml_conv_params;

/* An ADD fused behind a convolution: out = add(conv, residual), TFLite's ADD arithmetic.
 * ``conv_first`` is 1 when the convolution result is ADD's first operand. */
typedef struct {
    int32_t conv_first, conv_offset, res_offset, out_offset, left_shift;
    int32_t conv_mult, conv_shift, res_mult, res_shift, out_mult, out_shift;
    int32_t act_min, act_max;
} kml_add_epilogue;

/* The last two arguments of every kernel carry data only the optimized runtimes use (the
 * portable kernels take 0 and ignore them): ``packed``, the weights, biases and requantization
 * parameters rearranged for the target's SIMD instructions (``filter``, ``bias``, ``mult`` and
 * ``shift`` are then 0), and ``scratch``, the kernel's temporary buffer in the arena. */

/* Output pixels are written in increasing address order, each after all reads of the window
 * that produces it, so the output may overlap the input as the planner allows. */
void kml_conv2d_s8(const kml_conv_params *p, const int8_t *input, const int8_t *filter,
                   const int32_t *bias, const int32_t *mult, const int32_t *shift,
                   int8_t *output, const int32_t *packed, int32_t *scratch);

/* CONV_2D whose weights the generator found to need no general case: optimized runtimes may
 * link less code for it (armv7em: every channel pair takes the fast requantization, even
 * channel count); otherwise kml_conv2d_s8. */
void kml_conv2d_pairs_s8(const kml_conv_params *p, const int8_t *input, const int8_t *filter,
                         const int32_t *bias, const int32_t *mult, const int32_t *shift,
                         int8_t *output, const int32_t *packed, int32_t *scratch);

/* kml_conv2d_pairs_s8 whose windows all lie inside the image or, for a single-channel input,
 * inside its padded copy (optimized runtimes: no code for windows that leave the image). */
void kml_conv2d_pairs_inside_s8(const kml_conv_params *p, const int8_t *input,
                                const int8_t *filter, const int32_t *bias, const int32_t *mult,
                                const int32_t *shift, int8_t *output, const int32_t *packed,
                                int32_t *scratch);

/* CONV_2D with a 1x1 filter, stride 1 and no padding, input channels a multiple of 4, and
 * the promise of kml_conv2d_pairs_s8 (optimized runtimes: one loop over the whole layer with
 * its own ``packed`` layout); the portable one is kml_conv2d_s8. */
void kml_conv2d_1x1_s8(const kml_conv_params *p, const int8_t *input, const int8_t *filter,
                       const int32_t *bias, const int32_t *mult, const int32_t *shift,
                       int8_t *output, const int32_t *packed, int32_t *scratch);

/* kml_conv2d_1x1_s8 with int16 weights (optimized runtimes: 2, 4 or 8 groups of input
 * channels, out_c a multiple of 4; its own entry, so models without such layers do not link
 * its code). */
void kml_conv2d_1x1x_s8(const kml_conv_params *p, const int8_t *input, const int8_t *filter,
                        const int32_t *bias, const int32_t *mult, const int32_t *shift,
                        int8_t *output, const int32_t *packed, int32_t *scratch);

/* CONV_2D with three window rows of 4n + 1 bytes (n >= 1; 3x3 over three channels), no
 * dilation, and the promise of kml_conv2d_pairs_s8 (optimized runtimes: a dedicated column
 * builder); the portable one is kml_conv2d_s8. */
void kml_conv2d_rgb_s8(const kml_conv_params *p, const int8_t *input, const int8_t *filter,
                       const int32_t *bias, const int32_t *mult, const int32_t *shift,
                       int8_t *output, const int32_t *packed, int32_t *scratch);

/* CONV_2D whose result goes straight into an ADD with ``residual``; ``output`` may be
 * ``residual`` itself (each element is read before it is written). */
void kml_conv2d_add_s8(const kml_conv_params *p, const int8_t *input, const int8_t *filter,
                       const int32_t *bias, const int32_t *mult, const int32_t *shift,
                       const kml_add_epilogue *ep, const int8_t *residual, int8_t *output,
                       const int32_t *packed, int32_t *scratch);

void kml_depthwise_conv2d_s8(const kml_conv_params *p, const int8_t *input,
                             const int8_t *filter, const int32_t *bias, const int32_t *mult,
                             const int32_t *shift, int8_t *output, const int32_t *packed,
                             int32_t *scratch);

/* DEPTHWISE_CONV_2D for 3x3 filters, stride 1 (_3x3; _3x3_w5 when the output width is 5 or
 * 9 and the channel count a multiple of 4) or 2 (_3x3_s2) both ways, no dilation, depth
 * multiplier 1:
 * optimized runtimes have dedicated kernels (their ``scratch`` and ``packed`` layouts are the
 * runtime's); the portable ones are kml_depthwise_conv2d_s8. */
void kml_depthwise_conv2d_3x3_s8(const kml_conv_params *p, const int8_t *input,
                                 const int8_t *filter, const int32_t *bias, const int32_t *mult,
                                 const int32_t *shift, int8_t *output, const int32_t *packed,
                                 int32_t *scratch);

void kml_depthwise_conv2d_3x3_w5_s8(const kml_conv_params *p, const int8_t *input,
                                    const int8_t *filter, const int32_t *bias,
                                    const int32_t *mult, const int32_t *shift, int8_t *output,
                                    const int32_t *packed, int32_t *scratch);

/* Stride 1, output width at least 5 and not 1 or 2 mod 5, channel count a multiple of 4. */
void kml_depthwise_conv2d_3x3_h_s8(const kml_conv_params *p, const int8_t *input,
                                   const int8_t *filter, const int32_t *bias,
                                   const int32_t *mult, const int32_t *shift, int8_t *output,
                                   const int32_t *packed, int32_t *scratch);

void kml_depthwise_conv2d_3x3_s2_s8(const kml_conv_params *p, const int8_t *input,
                                    const int8_t *filter, const int32_t *bias,
                                    const int32_t *mult, const int32_t *shift, int8_t *output,
                                    const int32_t *packed, int32_t *scratch);

/* Groups of six (then three) outputs on int16 lines with pre-split weights (``packed``: 40
 * bytes per channel), channel count a multiple of 4: _g6 stride 1, output width a multiple
 * of 3; _g6s2 stride 2, output width at least 3. */
void kml_depthwise_conv2d_3x3_g6_s8(const kml_conv_params *p, const int8_t *input,
                                    const int8_t *filter, const int32_t *bias,
                                    const int32_t *mult, const int32_t *shift, int8_t *output,
                                    const int32_t *packed, int32_t *scratch);

void kml_depthwise_conv2d_3x3_g6s2_s8(const kml_conv_params *p, const int8_t *input,
                                      const int8_t *filter, const int32_t *bias,
                                      const int32_t *mult, const int32_t *shift,
                                      int8_t *output, const int32_t *packed,
                                      int32_t *scratch);

/* _w5 for layers whose activation minimum is at least the output offset (ReLU). */
void kml_depthwise_conv2d_3x3_w5r_s8(const kml_conv_params *p, const int8_t *input,
                                     const int8_t *filter, const int32_t *bias,
                                     const int32_t *mult, const int32_t *shift, int8_t *output,
                                     const int32_t *packed, int32_t *scratch);

/* _g6, _g6s2 for layers whose activation minimum is at least the output offset (ReLU). */
void kml_depthwise_conv2d_3x3_g6r_s8(const kml_conv_params *p, const int8_t *input,
                                     const int8_t *filter, const int32_t *bias,
                                     const int32_t *mult, const int32_t *shift, int8_t *output,
                                     const int32_t *packed, int32_t *scratch);

void kml_depthwise_conv2d_3x3_g6s2r_s8(const kml_conv_params *p, const int8_t *input,
                                       const int8_t *filter, const int32_t *bias,
                                       const int32_t *mult, const int32_t *shift,
                                       int8_t *output, const int32_t *packed,
                                       int32_t *scratch);

#endif /* KML_CONV_H */
