/* kiloml runtime: standalone int8 activations (LOGISTIC, TANH, RELU, RELU6), TFLite Micro's
 * integer schemes. All walk the tensor once in order, reading each value before writing its
 * result: ``output`` may equal ``input``. */
#ifndef KML_ACTIVATIONS_H
#define KML_ACTIVATIONS_H

#include "kml_common.h"

typedef struct {
    int32_t count;
    int32_t in_zp;
    int32_t radius;      /* |x - in_zp| at or beyond this saturates */
    int32_t mult, shift; /* input scale x 2^27 (a Q4.27 input) as mantissa and exponent */
} kml_sigmoid_params;

typedef struct {
    int32_t count;
    int32_t in_zp, out_zp;
    int32_t mult, shift; /* input scale / output scale */
    int32_t act_min, act_max;
} kml_relu_params;

/* Output scale 1/256, zero point -128. */
void kml_logistic_s8(const kml_sigmoid_params *p, const int8_t *input, int8_t *output);

/* Output scale 1/128, zero point 0. */
void kml_tanh_s8(const kml_sigmoid_params *p, const int8_t *input, int8_t *output);

/* Requantize to the output, then clamp to [act_min, act_max]. */
void kml_relu_s8(const kml_relu_params *p, const int8_t *input, int8_t *output);

/* Clamp to [lo, hi] in the input's own quantization (TFLM's RELU6). */
void kml_clamp_s8(int32_t count, int32_t lo, int32_t hi, const int8_t *input, int8_t *output);

#endif /* KML_ACTIVATIONS_H */
