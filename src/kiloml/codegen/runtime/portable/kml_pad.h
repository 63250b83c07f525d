/* kiloml runtime: constant PAD of an int8 tensor (up to 4-D). */
#ifndef KML_PAD_H
#define KML_PAD_H

#include "kml_common.h"

typedef struct {
    int32_t d0, d1, d2, d3;          /* input shape, padded to 4-D */
    int32_t b0, b1, b2, b3;          /* padding before each axis */
    int32_t a0, a1, a2, a3;          /* padding after each axis */
    int32_t pad_value;               /* the output zero point */
} kml_pad_params;

/* The output is written in increasing address order and each input row is moved with
 * memmove: ``output`` may start up to the op's in-place delta before ``input``. */
void kml_pad_s8(const kml_pad_params *p, const int8_t *input, int8_t *output);

#endif /* KML_PAD_H */
