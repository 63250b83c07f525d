/* kiloml model slots: a model's weights in one of two flash slots (A/B), checked before use.
 *
 * A slot image is a 128-byte header followed by the payload (the model's weights, biases and
 * per-channel arrays, as `kiloml bundle create` lays them out), all integers little-endian:
 *
 *   0   magic "KMLS"          4   header version (1), u16   6   header size (128), u16
 *   8   payload bytes, u32    12  security counter, u32     16  model version, u32
 *                                                              (major << 24 | minor << 16 | patch)
 *   20  reserved (0), u32     24  board id, 24 bytes, NUL-padded
 *   48  ABI hash, 32 bytes    80  SHA-256 of bytes 0..79 of the header and the payload
 *   112 reserved (0), 16 bytes
 *
 * The device checks an image in this order and stops at the first failure, each with its own
 * code: truncated, magic, board, ABI hash, size, SHA-256, security counter. Signatures are
 * checked before the image reaches the device (the gateway runs `kiloml bundle verify`, or
 * MCUboot / an integrator hook verifies them): the SHA-256 here catches corruption, not
 * forgery. */
#ifndef KML_SLOT_H
#define KML_SLOT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KML_SLOT_HEADER_BYTES 128u

enum {
    KML_SLOT_OK = 0,
    KML_SLOT_E_TRUNCATED = -1, /* fewer bytes than the header and its payload size */
    KML_SLOT_E_MAGIC = -2,     /* not a kiloml slot image (magic, header version or size) */
    KML_SLOT_E_BOARD = -3,     /* made for another board */
    KML_SLOT_E_ABI = -4,       /* made for another firmware (ops, shapes, quantization) */
    KML_SLOT_E_SIZE = -5,      /* payload size is not this firmware's, or exceeds the slot */
    KML_SLOT_E_DIGEST = -6,    /* SHA-256 mismatch: corrupted bytes */
    KML_SLOT_E_COUNTER = -7,   /* security counter not above the running model's: rollback */
    KML_SLOT_E_FLASH = -8,     /* the integrator's flash write failed or read back wrong */
    KML_SLOT_E_EMPTY = -9      /* no slot holds a valid model */
};

/* What the firmware expects of a slot image, and where its two slots are. */
typedef struct {
    const uint8_t *slot[2];    /* slot A and B in flash (memory-mapped, readable) */
    uint32_t slot_bytes;       /* capacity of each slot */
    const uint8_t *abi_hash;   /* 32 bytes */
    const char *board;         /* board id */
    uint32_t payload_bytes;    /* the model's payload size */
} kml_slot_config;

/* Checks an image of `length` bytes in memory; `running`: the running model's security
 * counter, which the image's must exceed (0: no running model, any counter passes). Returns
 * KML_SLOT_OK or the first failing check's code. */
int kml_slot_check(const kml_slot_config *cfg, const uint8_t *image, uint32_t length,
                   const uint32_t *running);

/* The security counter of a checked image. */
uint32_t kml_slot_counter(const uint8_t *image);

/* The valid slot with the highest security counter (0 = A, 1 = B), or KML_SLOT_E_EMPTY. */
int kml_slot_select(const kml_slot_config *cfg);

/* Provided by the integrator: erase `n` bytes of flash at `dst` (to 0xFF) and program
 * `n` bytes of `data` to `dst`. Return 0 on success. */
int kml_flash_erase(const uint8_t *dst, uint32_t n);
int kml_flash_write(const uint8_t *dst, const uint8_t *data, uint32_t n);

/* Installs an image into the slot other than `active` (0 or 1; -1: none running) when every
 * check passes and its counter is above the active slot's: erases the slot, writes the
 * payload, then the header, reads it back and checks it again. Returns the new slot (0 or 1)
 * or an error code; on any error the active slot is untouched. */
int kml_slot_install(const kml_slot_config *cfg, int active, const uint8_t *image,
                     uint32_t length);

#ifdef __cplusplus
}
#endif

#endif /* KML_SLOT_H */
