"""A firmware image signed for MCUboot with MCUboot's own ``imgtool`` (the PyPI package).

kiloml writes libraries, not firmware: the user builds the firmware (the deployed C package
linked into their application) and ``sign_mcuboot`` signs that binary or Intel HEX file with
``imgtool sign``: a header of ``header_size`` bytes is prepended (``--pad-header``), the
version and the security counter go into the image (the counter as the
IMAGE_TLV_SEC_CNT TLV MCUboot's hardware rollback protection reads) and the image is signed
with the same Ed25519 or ECDSA P-256 key as the model bundles. ``verify_mcuboot`` runs
``imgtool verify``. The firmware must be linked for the MCUboot slot it will run from (its
vector table ``header_size`` bytes into the slot); imgtool does not relink.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from kiloml.bundle.envelope import load_private_key, load_public_key
from kiloml.deploy.slot import parse_version
from kiloml.errors import KilomlError, ToolchainError
from kiloml.fileio import atomic_write_bytes

IMGTOOL = [sys.executable, "-m", "imgtool.main"]


def _imgtool(args: list[str], what: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(IMGTOOL + args, capture_output=True, text=True, timeout=300)
    except FileNotFoundError:
        raise ToolchainError(f"imgtool is not installed (pip install imgtool): {what}") from None


def sign_mcuboot(firmware: str | Path, key: str | Path, version: str, counter: int,
                 out: str | Path, header_size: int = 0x200, slot_size: int = 0x80000) -> dict:
    """Sign ``firmware`` (.bin or .hex) into ``out`` (same kind) for MCUboot; nothing is
    written on an error. Returns what was signed."""
    firmware, out = Path(firmware), Path(out)
    load_private_key(key)   # one clear line for an unreadable or unsuitable key
    parse_version(version)
    if not firmware.is_file():
        raise KilomlError(f"{firmware}: no such firmware image")
    if firmware.suffix.lower() != out.suffix.lower() and ".hex" in (firmware.suffix.lower(),
                                                                    out.suffix.lower()):
        raise KilomlError(f"{out}: give the signed image the firmware's suffix "
                          f"({firmware.suffix})")
    with tempfile.TemporaryDirectory(prefix="kiloml_mcuboot_") as tmp:
        signed = Path(tmp) / ("signed" + out.suffix)
        r = _imgtool(["sign", "--key", str(key), "--version", str(version),
                      "--security-counter", str(int(counter)), "--header-size",
                      str(header_size), "--pad-header", "--slot-size", str(slot_size),
                      str(firmware), str(signed)], str(firmware))
        if r.returncode != 0:
            msg = (r.stderr.strip() or r.stdout.strip()).splitlines()
            raise KilomlError(f"{firmware}: imgtool sign failed: "
                              f"{msg[-1] if msg else r.returncode}")
        data = signed.read_bytes()
    atomic_write_bytes(out, data)
    return {"format": "mcuboot", "path": str(out), "firmware": str(firmware),
            "version": version, "counter": int(counter), "header_size": header_size,
            "slot_size": slot_size, "bytes": len(data)}


def verify_mcuboot(image: str | Path, pubkey: str | Path) -> str:
    """``imgtool verify`` of a signed image with the public key; its report, or KilomlError."""
    load_public_key(pubkey)
    r = _imgtool(["verify", "--key", str(pubkey), str(image)], str(image))
    text = (r.stdout + r.stderr).strip()
    if r.returncode != 0 or "Image was correctly validated" not in text:
        raise KilomlError(f"{image}: imgtool verify failed: "
                          f"{text.splitlines()[-1] if text else r.returncode}")
    return text
