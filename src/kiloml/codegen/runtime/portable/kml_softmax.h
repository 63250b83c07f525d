/* kiloml runtime: SOFTMAX int8 -> int8 (scale 1/256, zero point -128) over the last axis. */
#ifndef KML_SOFTMAX_H
#define KML_SOFTMAX_H

#include "kml_common.h"

typedef struct {
    int32_t rows, depth, input_multiplier, input_left_shift, diff_min;
} kml_softmax_params;

/* Each row is read in full before any of it is written: output may equal input. */
void kml_softmax_s8(const kml_softmax_params *p, const int8_t *input, int8_t *output);

#endif /* KML_SOFTMAX_H */
