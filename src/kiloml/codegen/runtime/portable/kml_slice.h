/* kiloml runtime: SLICE of an int8 tensor (up to 4-D) with constant begin and size. */
#ifndef KML_SLICE_H
#define KML_SLICE_H

#include "kml_common.h"

typedef struct {
    int32_t d1, d2, d3;              /* input shape padded to 4-D (the leading dim unused) */
    int32_t b0, b1, b2, b3;          /* first index along each axis */
    int32_t s0, s1, s2, s3;          /* output shape */
} kml_slice_params;

/* Copies the box [b, b + s) of the input, innermost rows with memmove, output in increasing
 * address order: ``output`` may start up to the op's in-place delta after ``input``. */
void kml_slice_s8(const kml_slice_params *p, const int8_t *input, int8_t *output);

#endif /* KML_SLICE_H */
