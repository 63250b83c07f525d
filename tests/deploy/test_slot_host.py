"""The model-slot C (kml_slot.c, kml_sha256.c) on the host under ASan/UBSan with the strict
warnings: a driver with two RAM "flash" slots installs a sequence of images; each tampered
image is refused with its own code and leaves the active slot byte for byte as it was, a
good one switches slots, and boot selection picks the highest valid counter. The emulator
tests (test_model_slot.py) run the same C inside a real firmware; this run adds the
sanitizers, which the emulator does not have."""

from __future__ import annotations

import subprocess

import pytest

from kiloml.codegen.host import SANITIZE, WARNINGS, find_cc
from kiloml.deploy.slot import ERRORS, slot_image, slot_sources

SLOT = 4096
PAYLOAD = 1000
BOARD = "nano33ble"
ABI = bytes(range(32))

DRIVER = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kml_slot.h"

#define SLOT_BYTES 4096u
static uint8_t flash[2][SLOT_BYTES];
static long writes_left = -1; /* a power cut after this many writes (-1: none) */

static uint8_t *writable(const uint8_t *p)
{
    int s;
    for (s = 0; s < 2; s++) {
        if (p >= flash[s] && p < flash[s] + SLOT_BYTES) {
            return flash[s] + (p - flash[s]);
        }
    }
    fprintf(stderr, "write outside the slots\n");
    exit(3);
}

int kml_flash_erase(const uint8_t *dst, uint32_t n)
{
    memset(writable(dst), 0xFF, n);
    return 0;
}

int kml_flash_write(const uint8_t *dst, const uint8_t *data, uint32_t n)
{
    if (writes_left == 0) {
        return -1;
    }
    if (writes_left > 0) {
        writes_left--;
    }
    memcpy(writable(dst), data, n);
    return 0;
}

static uint8_t *load(const char *path, uint32_t *n)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf;
    long len;
    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0) {
        exit(4);
    }
    rewind(f);
    buf = malloc((size_t)len + 1u);
    if (buf == NULL || fread(buf, 1, (size_t)len, f) != (size_t)len) {
        exit(4);
    }
    fclose(f);
    *n = (uint32_t)len;
    return buf;
}

/* argv: abi-file, then per step "image-file power-cut-writes"; prints per step the install
 * result, the selected slot and a checksum of each slot's bytes */
int main(int argc, char **argv)
{
    uint32_t abi_n;
    uint8_t *abi = load(argv[1], &abi_n);
    kml_slot_config cfg;
    int i, active;
    memset(flash, 0xFF, sizeof flash);
    cfg.slot[0] = flash[0];
    cfg.slot[1] = flash[1];
    cfg.slot_bytes = SLOT_BYTES;
    cfg.abi_hash = abi;
    cfg.board = "nano33ble";
    cfg.payload_bytes = 1000u;
    for (i = 2; i + 1 < argc; i += 2) {
        uint32_t n, s, k;
        uint8_t *img = load(argv[i], &n);
        int r;
        unsigned long sum[2] = {0ul, 0ul};
        active = kml_slot_select(&cfg);
        writes_left = strtol(argv[i + 1], NULL, 10);
        r = kml_slot_install(&cfg, active < 0 ? -1 : active, img, n);
        writes_left = -1;
        for (s = 0; s < 2u; s++) {
            for (k = 0; k < SLOT_BYTES; k++) {
                sum[s] = sum[s] * 31ul + flash[s][k];
            }
        }
        printf("%d %d %lu %lu\n", r, kml_slot_select(&cfg), sum[0], sum[1]);
        free(img);
    }
    free(abi);
    return 0;
}
"""


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    d = tmp_path_factory.mktemp("slot")
    for name, text in slot_sources().items():
        (d / name).write_text(text)
    (d / "driver.c").write_text(DRIVER)
    (d / "abi.bin").write_bytes(ABI)
    exe = d / "driver"
    cmd = [find_cc(), *SANITIZE, *WARNINGS, "-O1", "-I", str(d), str(d / "driver.c"),
           str(d / "kml_slot.c"), str(d / "kml_sha256.c"), "-o", str(exe)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return d, exe


def run(driver, steps):
    d, exe = driver
    args = [str(exe), str(d / "abi.bin")]
    for i, (image, cut) in enumerate(steps):
        f = d / f"img{i}.bin"
        f.write_bytes(image)
        args += [str(f), str(cut)]
    p = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "runtime error" not in p.stderr and "AddressSanitizer" not in p.stderr, p.stderr
    return [tuple(int(x) for x in line.split()) for line in p.stdout.splitlines()]


def image(counter=1, payload=None, board=BOARD, abi=ABI, version="1.0.0"):
    return slot_image(payload if payload is not None else bytes([counter]) * PAYLOAD, abi, board,
                      version, counter)


def flip(b: bytes, at: int) -> bytes:
    return b[:at] + bytes([b[at] ^ 0x10]) + b[at + 1:]


def code(name: str) -> int:
    return next(k for k, v in ERRORS.items() if v == name)


def test_the_tamper_matrix_on_the_host_under_the_sanitizers(driver):
    v1, v2 = image(1), image(2, version="1.1.0")
    cases = [   # (image, expected install result)
        (v2[:-100], code("truncated")),
        (b"XXXX" + v2[4:], code("magic")),
        (image(2, board="pico"), code("board")),
        (image(2, abi=bytes(32)), code("abi")),
        (image(2, payload=bytes(PAYLOAD + 4)), code("size")),
        (flip(v2, 128 + 500), code("digest")),          # a payload bit
        (flip(v2, 12), code("digest")),                 # the header's counter
        (image(1, payload=bytes(PAYLOAD)), code("counter")),   # a replayed counter
    ]
    out = run(driver, [(v1, -1)] + [(img, -1) for img, _ in cases] + [(v2, -1)])
    first, rest, last = out[0], out[1:-1], out[-1]
    assert first[:2] == (0, 0)                          # v1 into slot A, booted from A
    for (img, want), got in zip(cases, rest):
        assert got[0] == want, (ERRORS.get(got[0]), ERRORS[want])
        assert got[1:] == first[1:]                     # A still runs, both slots unchanged
    assert last[0] == 1 and last[1] == 1                # v2 into B, selected
    assert last[2] == first[2] and last[3] != first[3]  # A kept for roll-back


def test_a_power_cut_mid_install_leaves_the_old_model(driver):
    v1, v2 = image(1), image(2)
    for cut in (0, 1, 2):           # before the first payload write, mid-payload, before header
        out = run(driver, [(v1, -1), (v2, cut)])
        assert out[1][0] == code("flash") and out[1][1] == 0, (cut, out)
    out = run(driver, [(v1, -1), (v2, -1), (image(3), -1)])
    assert [r[:2] for r in out] == [(0, 0), (1, 1), (0, 0)]   # A, B, then A again (v3)
