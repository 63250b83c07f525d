/* kiloml runtime: FULLY_CONNECTED, int8, weights [units][depth]. */
#ifndef KML_FULLY_CONNECTED_H
#define KML_FULLY_CONNECTED_H

#include "kml_common.h"

typedef struct {
    int32_t batches, depth, units, in_offset, out_offset, act_min, act_max;
} kml_fc_params;

/* ``packed`` and ``scratch``: data of the optimized runtimes (see kml_conv.h); the portable
 * kernel takes 0 and ignores them. */
void kml_fully_connected_s8(const kml_fc_params *p, const int8_t *input, const int8_t *weights,
                            const int32_t *bias, const int32_t *mult, const int32_t *shift,
                            int8_t *output, const int32_t *packed, int32_t *scratch);

/* armv7em: the int16-weight stream (--prefer speed); elsewhere the general kernel. */
void kml_fully_connected_x_s8(const kml_fc_params *p, const int8_t *input,
                              const int8_t *weights, const int32_t *bias, const int32_t *mult,
                              const int32_t *shift, int8_t *output, const int32_t *packed,
                              int32_t *scratch);

/* armv7em: a uniform int8 stream (one multiplier and shift per layer); elsewhere the general
 * kernel. */
void kml_fully_connected_u_s8(const kml_fc_params *p, const int8_t *input,
                              const int8_t *weights, const int32_t *bias, const int32_t *mult,
                              const int32_t *shift, int8_t *output, const int32_t *packed,
                              int32_t *scratch);

#endif /* KML_FULLY_CONNECTED_H */
