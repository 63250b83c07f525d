/* kiloml runtime: portable int8 PAD: whole output rows (innermost axis) at a time. */
#include "kml_pad.h"

#include <string.h>

void kml_pad_s8(const kml_pad_params *p, const int8_t *input, int8_t *output)
{
    const int32_t o0 = p->b0 + p->d0 + p->a0, o1 = p->b1 + p->d1 + p->a1;
    const int32_t o2 = p->b2 + p->d2 + p->a2, o3 = p->b3 + p->d3 + p->a3;
    const int value = (int)(int8_t)p->pad_value;
    int32_t i0, i1, i2;
    int8_t *out = output;
    for (i0 = 0; i0 < o0; ++i0) {
        const int32_t x0 = i0 - p->b0;
        for (i1 = 0; i1 < o1; ++i1) {
            const int32_t x1 = i1 - p->b1;
            for (i2 = 0; i2 < o2; ++i2) {
                const int32_t x2 = i2 - p->b2;
                if (x0 < 0 || x0 >= p->d0 || x1 < 0 || x1 >= p->d1 || x2 < 0 || x2 >= p->d2) {
                    memset(out, value, (size_t)o3);
                } else {
                    const int8_t *row = input + ((size_t)((x0 * p->d1 + x1) * p->d2 + x2)
                                                 * (size_t)p->d3);
                    memset(out, value, (size_t)p->b3);
                    memmove(out + p->b3, row, (size_t)p->d3);
                    memset(out + p->b3 + p->d3, value, (size_t)p->a3);
                }
                out += o3;
            }
        }
    }
}
