/* kiloml runtime: AVERAGE_POOL_2D and MAX_POOL_2D, int8 NHWC. */
#ifndef KML_POOL_H
#define KML_POOL_H

#include "kml_common.h"

typedef struct {
    int32_t batches, in_h, in_w, channels, out_h, out_w, k_h, k_w;
    int32_t stride_h, stride_w, pad_top, pad_left, act_min, act_max;
} kml_pool_params;

/* Output pixels are written in increasing order after their window is read (may overlap
 * the input as the planner allows). */
void kml_avg_pool_s8(const kml_pool_params *p, const int8_t *input, int8_t *output);
void kml_max_pool_s8(const kml_pool_params *p, const int8_t *input, int8_t *output);

#endif /* KML_POOL_H */
