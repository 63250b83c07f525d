/* kiloml runtime: MEAN of int8 over any subset of 4 axes, TFLite Micro's integer scheme. */
#ifndef KML_MEAN_H
#define KML_MEAN_H

#include "kml_common.h"

typedef struct {
    int32_t d0, d1, d2, d3;  /* input shape, padded to 4-D */
    int32_t r0, r1, r2, r3;  /* 1: the axis is reduced */
    int32_t count;           /* values per mean (product of the reduced dims) */
    int32_t in_zp, out_zp;
    int32_t mult, shift;     /* in_scale / (out_scale * count) */
} kml_mean_params;

/* Outputs are produced in order, each after all of its inputs are read: ``output`` may start
 * at ``input`` (every input an output reads lies at or after that output's own index). */
void kml_mean_s8(const kml_mean_params *p, const int8_t *input, int8_t *output);

#endif /* KML_MEAN_H */
