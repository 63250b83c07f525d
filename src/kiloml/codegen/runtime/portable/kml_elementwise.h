/* kiloml runtime: broadcasting element-wise ops on int8 (ADD, MUL; both share the
 * 4-D shape/stride fields). */
#ifndef KML_ELEMENTWISE_H
#define KML_ELEMENTWISE_H

#include "kml_common.h"

typedef struct {
    int32_t d0, d1, d2, d3;          /* output shape, padded to 4-D */
    int32_t a_s0, a_s1, a_s2, a_s3;  /* element strides of input a (0 = broadcast) */
    int32_t b_s0, b_s1, b_s2, b_s3;
    int32_t in1_offset, in2_offset, out_offset, left_shift;
    int32_t in1_mult, in1_shift, in2_mult, in2_shift, out_mult, out_shift;
    int32_t act_min, act_max;
} kml_add_params;

typedef struct {
    int32_t d0, d1, d2, d3;          /* output shape, padded to 4-D */
    int32_t a_s0, a_s1, a_s2, a_s3;  /* element strides of input a (0 = broadcast) */
    int32_t b_s0, b_s1, b_s2, b_s3;
    int32_t in1_offset, in2_offset, out_offset;
    int32_t out_mult, out_shift;
    int32_t act_min, act_max;
} kml_mul_params;

/* Output elements are written in order after their inputs are read: ``output`` may be an
 * input of the output's shape. */
void kml_add_s8(const kml_add_params *p, const int8_t *a, const int8_t *b, int8_t *output);

/* (a + in1_offset) * (b + in2_offset), requantized to the output; same in-place rule. */
void kml_mul_s8(const kml_mul_params *p, const int8_t *a, const int8_t *b, int8_t *output);

#endif /* KML_ELEMENTWISE_H */
