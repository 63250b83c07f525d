/* kiloml runtime: QUANTIZE (float32 -> int8, int8 -> int8) and DEQUANTIZE (int8 -> float32),
 * TFLite Micro's arithmetic. Float math is IEEE single precision with each operation rounded
 * once (FLT_EVAL_METHOD 0, as on Arm and x86-64). */
#ifndef KML_QUANTIZE_H
#define KML_QUANTIZE_H

#include "kml_common.h"

typedef struct {
    int32_t count;
    int32_t zero_point;
    float scale;
} kml_affine_params;

typedef struct {
    int32_t count;
    int32_t in_zp, out_zp;
    int32_t mult, shift;  /* input scale / output scale */
} kml_requantize_params;

/* clamp(zero_point + round(x / scale)) with the division in float and halves rounded away
 * from zero (std::round). NaN gives the zero point, huge values saturate. Reads each float
 * before writing its byte: ``output`` may start at ``input``. */
void kml_quantize_f32_s8(const kml_affine_params *p, const float *input, int8_t *output);

/* clamp(out_zp + MBQM(x - in_zp)); ``output`` may equal ``input``. */
void kml_requantize_s8(const kml_requantize_params *p, const int8_t *input, int8_t *output);

/* scale * (x - zero_point); written in order, ``output`` must not overlap ``input`` past the
 * op's in-place delta. */
void kml_dequantize_s8_f32(const kml_affine_params *p, const int8_t *input, float *output);

#endif /* KML_QUANTIZE_H */
