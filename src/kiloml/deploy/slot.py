"""Model slots: the weights of a C package in one of two flash slots (A/B) instead of the
firmware, so a new model of the same architecture installs without rebuilding it.

With ``DeploySpec.model_slot`` the package's model C reads its weights, biases and
per-channel arrays from a payload (``kiloml.codegen.c.SlotLayout``), and the package gains
``slot/`` (``kml_slot.c``: the header checks and the A/B install; ``kml_sha256.c``: SHA-256)
and three functions in ``<name>.h``: ``<name>_model_boot``, ``<name>_model_update`` and
``<name>_model_counter``. The two slots are ``kml_model_slot_a`` and ``kml_model_slot_b``,
symbols of the firmware's linker script, each ``<NAME>_SLOT_BYTES`` long.

A slot image is a 128-byte header and the payload (layout in ``slot_c/kml_slot.h``;
``slot_image`` writes it, ``read_header`` reads it). Its ABI hash (``package_abi``) names
what the payload must fit: the model's code (ops, shapes, arena plan, the quantization
constants compiled into it, the kernel set), the DSP block's C and the pipeline around them.
A model whose hash differs needs a firmware update, not a slot update.
"""

from __future__ import annotations

import hashlib
import re
import struct
from importlib import resources

from kiloml.codegen.c import abi_hash
from kiloml.deploy.package import c_string
from kiloml.dsp.cgen import table
from kiloml.errors import KilomlError

MAGIC = b"KMLS"
HEADER_VERSION = 1
HEADER_BYTES = 128
HEADER = struct.Struct("<4sHHIII4x24s32s32s16x")   # see slot_c/kml_slot.h
DIGESTED = 80                                      # header bytes the SHA-256 covers
SLOT_ROUND = 4096                                  # slot capacity: a multiple of this
SLOT_FILES = ("kml_sha256.c", "kml_sha256.h", "kml_slot.c", "kml_slot.h")
VERSION_RE = re.compile(r"(\d{1,3})\.(\d{1,3})\.(\d{1,5})")
# the C functions' error codes (kml_slot.h), by name
ERRORS = {-1: "truncated", -2: "magic", -3: "board", -4: "abi", -5: "size", -6: "digest",
          -7: "counter", -8: "flash", -9: "empty"}


def slot_sources() -> dict[str, str]:
    """The slot runtime's C files (name -> text)."""
    base = resources.files("kiloml.deploy") / "slot_c"
    return {f: (base / f).read_text() for f in SLOT_FILES}


def _code(text: str) -> str:
    """``text`` without its leading frontmatter comment (which names the command and the
    model's SHA-256, not what the code does)."""
    if text.startswith("/*") and "*/\n" in text:
        return text.split("*/\n", 1)[1]
    return text


def package_abi(p, runtime: str, pipeline_c: str) -> bytes:
    """The ABI hash of the package's model slot with the ``runtime`` kernel set: SHA-256 of
    the model's ``abi_hash``, the DSP block's C and the pipeline ``pipeline_c`` (each without
    its frontmatter)."""
    h = hashlib.sha256(abi_hash(p.models[runtime]))
    for name in sorted(p.dsp_files):
        h.update(name.encode() + b"\0" + _code(p.dsp_files[name]).encode() + b"\0")
    h.update(_code(pipeline_c).encode())
    return h.digest()


def capacity(p) -> int:
    """Bytes of each slot: the header and the largest payload of the package's kernel sets,
    rounded up to ``SLOT_ROUND`` (a common flash erase-sector multiple)."""
    need = HEADER_BYTES + max(m.slot.payload_bytes for m in p.models.values())
    return -(-need // SLOT_ROUND) * SLOT_ROUND


def abi_header(p, runtime: str, pipeline_c: str) -> str:
    """``<name>_model_abi.h`` of one kernel set's folder: its ABI hash as a C array."""
    digest = package_abi(p, runtime, pipeline_c)
    return "\n".join([f"/* ABI hash of this model slot build ({runtime} kernels): a slot image "
                      "must carry it. */", f"#ifndef {p.macro}_MODEL_ABI_H",
                      f"#define {p.macro}_MODEL_ABI_H", "", "#include <stdint.h>", "",
                      table(f"{p.name}_model_abi_hash", "uint8_t", list(digest)), "#endif", ""])


def header_api(p) -> list[str]:
    """Lines of the public header declaring the slot functions."""
    n, M = p.name, p.macro
    return [f"#define {M}_SLOT_BYTES {capacity(p)}u /* bytes of each model slot "
            "(kml_model_slot_a, _b) */", "",
            "/* Model slots (A/B; see slot/kml_slot.h). Call <name>_model_boot once at start: it",
            " * picks the valid slot with the highest security counter and returns it (0 = A,",
            " * 1 = B) or a negative KML_SLOT_E_* code (no model: classify then returns -2).",
            " * <name>_model_update checks a slot image (truncation, magic, board, ABI hash, size,",
            " * SHA-256, counter above the running model's), writes it to the other slot with",
            " * kml_flash_erase / kml_flash_write (yours to provide), reads it back and only then",
            " * switches; it returns the new slot or a negative code and leaves the running",
            " * model as it was. Verify the bundle's signature before (`kiloml bundle verify`). */",
            f"int {n}_model_boot(void);",
            f"int {n}_model_update(const uint8_t *image, uint32_t length);",
            f"uint32_t {n}_model_counter(void); /* the running model's counter, 0: none */", ""]


def pipeline_api(p) -> list[str]:
    """Lines of ``<name>.c`` implementing the slot functions."""
    n = p.name
    return [f"extern const uint8_t kml_model_slot_a[{p.macro}_SLOT_BYTES];",
            f"extern const uint8_t kml_model_slot_b[{p.macro}_SLOT_BYTES];",
            f"static const kml_slot_config {n}_slots = {{",
            f"    {{kml_model_slot_a, kml_model_slot_b}}, {p.macro}_SLOT_BYTES, "
            f"{n}_model_abi_hash, {c_string(p.board_id)},",
            f"    {p.macro.upper()}_MODEL_SLOT_BYTES", "};",
            f"static int {n}_active = -1;", "",
            f"int {n}_model_boot(void)", "{",
            f"    {n}_active = kml_slot_select(&{n}_slots);",
            f"    {n}_model_use_slot({n}_active < 0 ? 0 : {n}_slots.slot[{n}_active] + "
            "KML_SLOT_HEADER_BYTES);",
            f"    return {n}_active;", "}", "",
            f"int {n}_model_update(const uint8_t *image, uint32_t length)", "{",
            f"    int slot = kml_slot_install(&{n}_slots, {n}_active, image, length);",
            "    if (slot < 0) {", "        return slot;", "    }",
            f"    {n}_active = slot;",
            f"    {n}_model_use_slot({n}_slots.slot[slot] + KML_SLOT_HEADER_BYTES);",
            "    return slot;", "}", "",
            f"uint32_t {n}_model_counter(void)", "{",
            f"    return {n}_active < 0 ? 0u : kml_slot_counter({n}_slots.slot[{n}_active]);",
            "}", ""]


def parse_version(version: str) -> tuple[int, int, int]:
    """``X.Y.Z`` -> (X, Y, Z), each within the header's fields (X, Y < 256, Z < 65536)."""
    m = VERSION_RE.fullmatch(str(version))
    if not m or int(m[1]) > 255 or int(m[2]) > 255 or int(m[3]) > 65535:
        raise KilomlError(f"version {version!r}: expected X.Y.Z with X, Y < 256 and Z < 65536")
    return int(m[1]), int(m[2]), int(m[3])


def slot_image(payload: bytes, abi: bytes, board: str, version: str, counter: int) -> bytes:
    """The bytes a device writes to a slot: the header (see the module doc) and ``payload``."""
    major, minor, patch = parse_version(version)
    if not 0 < int(counter) < 2 ** 32:
        raise KilomlError(f"security counter {counter}: expected 1 .. {2 ** 32 - 1}")
    b = board.encode()
    if len(b) > 23:
        raise KilomlError(f"board id {board!r}: a slot header holds at most 23 bytes")
    head = HEADER.pack(MAGIC, HEADER_VERSION, HEADER_BYTES, len(payload), int(counter),
                       (major << 24) | (minor << 16) | patch, b, abi, bytes(32))
    digest = hashlib.sha256(head[:DIGESTED] + payload).digest()
    return head[:DIGESTED] + digest + head[DIGESTED + 32:] + payload


def read_header(image: bytes) -> dict:
    """The fields of a slot image's header (no checks beyond its size and magic)."""
    if len(image) < HEADER_BYTES or image[:4] != MAGIC:
        raise KilomlError("not a kiloml model slot image (no KMLS header)")
    magic, hv, hs, size, counter, ver, board, abi, digest = HEADER.unpack(image[:HEADER_BYTES])
    return {"header_version": hv, "header_bytes": hs, "payload_bytes": size,
            "counter": counter, "version": f"{ver >> 24}.{(ver >> 16) & 255}.{ver & 65535}",
            "board": board.rstrip(b"\0").decode("ascii", "replace"), "abi_hash": abi.hex(),
            "sha256": digest.hex()}
