/* kiloml model slots: see kml_slot.h. */
#include "kml_slot.h"

#include "kml_sha256.h"

#define KML_SLOT_CHUNK 256u /* bytes per flash write call */

static uint32_t kml_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16)
           | ((uint32_t)p[3] << 24);
}

static int kml_same(const uint8_t *a, const uint8_t *b, uint32_t n)
{
    uint8_t diff = 0;
    uint32_t i;
    for (i = 0; i < n; ++i) {
        diff = (uint8_t)(diff | (a[i] ^ b[i]));
    }
    return diff == 0;
}

uint32_t kml_slot_counter(const uint8_t *image)
{
    return kml_le32(image + 12);
}

int kml_slot_check(const kml_slot_config *cfg, const uint8_t *image, uint32_t length,
                   const uint32_t *running)
{
    uint8_t board[24];
    uint8_t digest[32];
    kml_sha256_ctx sha;
    uint32_t i, payload;
    int ended = 0;
    if (length < KML_SLOT_HEADER_BYTES) {
        return KML_SLOT_E_TRUNCATED;
    }
    if (!(image[0] == 'K' && image[1] == 'M' && image[2] == 'L' && image[3] == 'S')
        || image[4] != 1u || image[5] != 0u || image[6] != KML_SLOT_HEADER_BYTES
        || image[7] != 0u) {
        return KML_SLOT_E_MAGIC;
    }
    payload = kml_le32(image + 8);
    if (payload > length - KML_SLOT_HEADER_BYTES) {
        return KML_SLOT_E_TRUNCATED;
    }
    for (i = 0; i < 24u; ++i) {
        board[i] = ended ? 0u : (uint8_t)cfg->board[i];
        ended = ended || cfg->board[i] == '\0';
    }
    if (!ended || !kml_same(board, image + 24, 24u)) {
        return KML_SLOT_E_BOARD;
    }
    if (!kml_same(cfg->abi_hash, image + 48, 32u)) {
        return KML_SLOT_E_ABI;
    }
    if (payload != cfg->payload_bytes || payload > cfg->slot_bytes - KML_SLOT_HEADER_BYTES) {
        return KML_SLOT_E_SIZE;
    }
    kml_sha256_init(&sha);
    kml_sha256_update(&sha, image, 80u);
    kml_sha256_update(&sha, image + KML_SLOT_HEADER_BYTES, payload);
    kml_sha256_final(&sha, digest);
    if (!kml_same(digest, image + 80, 32u)) {
        return KML_SLOT_E_DIGEST;
    }
    if (running != 0 && kml_slot_counter(image) <= *running) {
        return KML_SLOT_E_COUNTER;
    }
    return KML_SLOT_OK;
}

int kml_slot_select(const kml_slot_config *cfg)
{
    int best = KML_SLOT_E_EMPTY;
    uint32_t best_counter = 0;
    int s;
    for (s = 0; s < 2; ++s) {
        const uint8_t *img = cfg->slot[s];
        if (kml_slot_check(cfg, img, cfg->slot_bytes, 0) == KML_SLOT_OK
            && (best < 0 || kml_slot_counter(img) > best_counter)) {
            best = s;
            best_counter = kml_slot_counter(img);
        }
    }
    return best;
}

int kml_slot_install(const kml_slot_config *cfg, int active, const uint8_t *image,
                     uint32_t length)
{
    uint32_t running = active >= 0 ? kml_slot_counter(cfg->slot[active]) : 0u;
    const uint32_t *floor = active >= 0 ? &running : 0;
    int target = active == 0 ? 1 : 0;
    const uint8_t *dst = cfg->slot[target];
    uint32_t total, at, n;
    int rc = kml_slot_check(cfg, image, length, floor);
    if (rc != KML_SLOT_OK) {
        return rc;
    }
    total = KML_SLOT_HEADER_BYTES + kml_le32(image + 8);
    if (kml_flash_erase(dst, cfg->slot_bytes) != 0) {
        return KML_SLOT_E_FLASH;
    }
    /* payload first, header last: until the header is complete the slot has no magic */
    for (at = KML_SLOT_HEADER_BYTES; at < total; at += n) {
        n = total - at < KML_SLOT_CHUNK ? total - at : KML_SLOT_CHUNK;
        if (kml_flash_write(dst + at, image + at, n) != 0) {
            return KML_SLOT_E_FLASH;
        }
    }
    if (kml_flash_write(dst, image, KML_SLOT_HEADER_BYTES) != 0
        || kml_slot_check(cfg, dst, cfg->slot_bytes, floor) != KML_SLOT_OK) {
        return KML_SLOT_E_FLASH;
    }
    return target;
}
