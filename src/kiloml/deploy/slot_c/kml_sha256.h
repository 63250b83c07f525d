/* SHA-256 (FIPS 180-4), incremental: kiloml's model slot checks use it to compare a slot's
 * payload with the digest in its header. Checked against the NIST CAVP byte vectors
 * (SHA256ShortMsg / SHA256LongMsg) and the FIPS 180-4 examples. No malloc, no stdio. */
#ifndef KML_SHA256_H
#define KML_SHA256_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    uint32_t state[8];
    uint32_t bytes_lo, bytes_hi; /* message length in bytes, 64-bit */
    uint8_t block[64];
    uint32_t used;               /* bytes in block */
} kml_sha256_ctx;

void kml_sha256_init(kml_sha256_ctx *c);
void kml_sha256_update(kml_sha256_ctx *c, const uint8_t *data, uint32_t n);
void kml_sha256_final(kml_sha256_ctx *c, uint8_t digest[32]);
/* One-shot: digest of data[0..n). */
void kml_sha256(const uint8_t *data, uint32_t n, uint8_t digest[32]);

#ifdef __cplusplus
}
#endif

#endif /* KML_SHA256_H */
