/* kiloml runtime: portable int8 SLICE: one innermost row at a time (TFLM copies the values
 * unchanged). */
#include "kml_slice.h"

#include <string.h>

void kml_slice_s8(const kml_slice_params *p, const int8_t *input, int8_t *output)
{
    int32_t i0, i1, i2;
    int8_t *out = output;
    for (i0 = 0; i0 < p->s0; ++i0) {
        for (i1 = 0; i1 < p->s1; ++i1) {
            for (i2 = 0; i2 < p->s2; ++i2) {
                const int32_t row = ((p->b0 + i0) * p->d1 + p->b1 + i1) * p->d2 + p->b2 + i2;
                memmove(out, input + (size_t)row * (size_t)p->d3 + (size_t)p->b3,
                        (size_t)p->s3);
                out += p->s3;
            }
        }
    }
}
