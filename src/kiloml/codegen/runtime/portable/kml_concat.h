/* kiloml runtime: CONCATENATION of int8 tensors along one axis (a byte copy). */
#ifndef KML_CONCAT_H
#define KML_CONCAT_H

#include "kml_common.h"

typedef struct {
    int32_t outer;      /* product of the dims before the axis */
    int32_t n_inputs;
} kml_concat_params;

/* For each of the ``outer`` blocks, copies ``sizes[k]`` bytes of input k in turn (sizes[k] =
 * input k's axis dim x the product of the dims after the axis). Written in increasing address
 * order with memmove: ``output`` may overlap an input within the op's in-place delta. */
void kml_concat_s8(const kml_concat_params *p, const int8_t *const *inputs, const int32_t *sizes,
                   int8_t *output);

#endif /* KML_CONCAT_H */
