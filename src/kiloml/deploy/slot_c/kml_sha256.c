/* SHA-256 after FIPS 180-4 sections 4.1.2, 4.2.2, 5.1.1, 5.3.3 and 6.2. */
#include "kml_sha256.h"

static const uint32_t kml_sha256_k[64] = {
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u,
    0xab1c5ed5u, 0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu,
    0x9bdc06a7u, 0xc19bf174u, 0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu,
    0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau, 0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u,
    0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u, 0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu,
    0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u, 0xa2bfe8a1u, 0xa81a664bu,
    0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u, 0x19a4c116u,
    0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
    0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u,
    0xc67178f2u,
};

static uint32_t kml_rotr(uint32_t x, uint32_t n)
{
    return (x >> n) | (x << (32u - n));
}

static void kml_sha256_block(kml_sha256_ctx *c, const uint8_t *p)
{
    uint32_t w[64];
    uint32_t a, b, cc, d, e, f, g, h, t1, t2;
    uint32_t i;
    for (i = 0; i < 16u; ++i) {
        w[i] = ((uint32_t)p[4u * i] << 24) | ((uint32_t)p[4u * i + 1u] << 16)
               | ((uint32_t)p[4u * i + 2u] << 8) | (uint32_t)p[4u * i + 3u];
    }
    for (i = 16; i < 64u; ++i) {
        uint32_t s0 = kml_rotr(w[i - 15u], 7) ^ kml_rotr(w[i - 15u], 18) ^ (w[i - 15u] >> 3);
        uint32_t s1 = kml_rotr(w[i - 2u], 17) ^ kml_rotr(w[i - 2u], 19) ^ (w[i - 2u] >> 10);
        w[i] = w[i - 16u] + s0 + w[i - 7u] + s1;
    }
    a = c->state[0]; b = c->state[1]; cc = c->state[2]; d = c->state[3];
    e = c->state[4]; f = c->state[5]; g = c->state[6]; h = c->state[7];
    for (i = 0; i < 64u; ++i) {
        t1 = h + (kml_rotr(e, 6) ^ kml_rotr(e, 11) ^ kml_rotr(e, 25)) + ((e & f) ^ (~e & g))
             + kml_sha256_k[i] + w[i];
        t2 = (kml_rotr(a, 2) ^ kml_rotr(a, 13) ^ kml_rotr(a, 22)) + ((a & b) ^ (a & cc) ^ (b & cc));
        h = g; g = f; f = e; e = d + t1;
        d = cc; cc = b; b = a; a = t1 + t2;
    }
    c->state[0] += a; c->state[1] += b; c->state[2] += cc; c->state[3] += d;
    c->state[4] += e; c->state[5] += f; c->state[6] += g; c->state[7] += h;
}

void kml_sha256_init(kml_sha256_ctx *c)
{
    static const uint32_t h0[8] = {0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au,
                                   0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u};
    uint32_t i;
    for (i = 0; i < 8u; ++i) {
        c->state[i] = h0[i];
    }
    c->bytes_lo = 0;
    c->bytes_hi = 0;
    c->used = 0;
}

void kml_sha256_update(kml_sha256_ctx *c, const uint8_t *data, uint32_t n)
{
    uint32_t i;
    if (c->bytes_lo + n < c->bytes_lo) {
        c->bytes_hi += 1u;
    }
    c->bytes_lo += n;
    for (i = 0; i < n; ++i) {
        c->block[c->used++] = data[i];
        if (c->used == 64u) {
            kml_sha256_block(c, c->block);
            c->used = 0;
        }
    }
}

void kml_sha256_final(kml_sha256_ctx *c, uint8_t digest[32])
{
    uint32_t hi = (c->bytes_hi << 3) | (c->bytes_lo >> 29);
    uint32_t lo = c->bytes_lo << 3;
    uint32_t i;
    c->block[c->used++] = 0x80u;
    if (c->used > 56u) {
        while (c->used < 64u) {
            c->block[c->used++] = 0;
        }
        kml_sha256_block(c, c->block);
        c->used = 0;
    }
    while (c->used < 56u) {
        c->block[c->used++] = 0;
    }
    for (i = 0; i < 4u; ++i) {
        c->block[56u + i] = (uint8_t)(hi >> (24u - 8u * i));
        c->block[60u + i] = (uint8_t)(lo >> (24u - 8u * i));
    }
    kml_sha256_block(c, c->block);
    for (i = 0; i < 32u; ++i) {
        digest[i] = (uint8_t)(c->state[i / 4u] >> (24u - 8u * (i % 4u)));
    }
}

void kml_sha256(const uint8_t *data, uint32_t n, uint8_t digest[32])
{
    kml_sha256_ctx c;
    kml_sha256_init(&c);
    kml_sha256_update(&c, data, n);
    kml_sha256_final(&c, digest);
}
