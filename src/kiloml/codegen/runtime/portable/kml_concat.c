/* kiloml runtime: portable CONCATENATION (TFLM copies int8 values unchanged). */
#include "kml_concat.h"

#include <string.h>

void kml_concat_s8(const kml_concat_params *p, const int8_t *const *inputs, const int32_t *sizes,
                   int8_t *output)
{
    int32_t o, k;
    int8_t *out = output;
    for (o = 0; o < p->outer; ++o) {
        for (k = 0; k < p->n_inputs; ++k) {
            memmove(out, inputs[k] + (size_t)o * (size_t)sizes[k], (size_t)sizes[k]);
            out += sizes[k];
        }
    }
}
