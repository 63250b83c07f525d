"""Model bundles: a trained pipeline's model slot image and its description, signed.

A bundle is a COSE_Sign1 envelope (``kiloml.bundle.envelope``) whose payload is a CBOR map
(text keys; docs/bundles.md has the CDDL)::

    kind "kiloml.model-bundle", format 1, project, version "X.Y.Z", counter (security
    counter), board, kernels, abi_hash (32 bytes), payload_bytes, arena_bytes, labels,
    dsp {block, variant, params}, model_sha256, kiloml_version, command,
    slot_image (the bytes the device writes to a model slot: kiloml.deploy.slot)

``make_bundle`` takes stage objects (a ``DeploySpec``), never a project.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Optional

import cbor2

from kiloml.bundle.envelope import SignatureError, open_envelope, sign, verify
from kiloml.deploy.c import pipeline_source
from kiloml.deploy.slot import (capacity, package_abi, parse_version, read_header,
                                slot_image)
from kiloml.deploy.spec import DeploySpec, resolve
from kiloml.errors import KilomlError

KIND = "kiloml.model-bundle"
FORMAT = 1
FIELDS = ("kind", "format", "project", "version", "counter", "board", "kernels", "abi_hash",
          "payload_bytes", "slot_bytes", "arena_bytes", "labels", "dsp", "model_sha256",
          "kiloml_version", "command", "slot_image")
TYPES = {"project": str, "version": str, "counter": int, "board": str, "kernels": str,
         "abi_hash": bytes, "payload_bytes": int, "slot_bytes": int, "arena_bytes": int,
         "labels": (list, tuple), "dsp": dict, "model_sha256": str, "kiloml_version": str,
         "command": str, "slot_image": bytes}


def version_counter(version: str) -> int:
    """The default security counter of ``X.Y.Z``: X * 2^24 + Y * 2^16 + Z (so a later
    version always has a larger counter)."""
    x, y, z = parse_version(version)
    return (x << 24) | (y << 16) | z


def bundle_payload(spec: DeploySpec, version: str, counter: Optional[int] = None) -> dict:
    """The bundle's content for ``spec`` built with model slots (its board's kernel set)."""
    parse_version(version)
    counter = version_counter(version) if counter is None else int(counter)
    p = resolve(dataclasses.replace(spec, model_slot=True))
    pipeline_c = pipeline_source(p, f"dsp/{p.dsp_prefix}.h", f"{p.model_prefix}.h")
    model = p.models[p.runtime]
    abi = package_abi(p, p.runtime, pipeline_c)
    image = slot_image(model.slot.payload, abi, p.board_id, version, counter)
    return {
        "kind": KIND, "format": FORMAT, "project": p.name, "version": version,
        "counter": counter, "board": p.board_id, "kernels": p.runtime, "abi_hash": abi,
        "payload_bytes": model.slot.payload_bytes, "slot_bytes": capacity(p),
        "arena_bytes": p.arena_bytes, "labels": list(p.labels),
        "dsp": {"block": p.block.name, "variant": p.variant,
                "params": p.block.params.model_dump(mode="json")},
        "model_sha256": p.model_sha256, "kiloml_version": p.version, "command": p.command,
        "slot_image": image}


def make_bundle(spec: DeploySpec, key, version: str, counter: Optional[int] = None) -> bytes:
    """The signed bundle (COSE_Sign1 bytes) of ``spec``'s model, signed with ``key``."""
    return sign(cbor2.dumps(bundle_payload(spec, version, counter)), key)


def _check_content(content, where: str) -> dict:
    if not isinstance(content, dict) or content.get("kind") != KIND:
        raise SignatureError(f"{where}: not a kiloml model bundle")
    if content.get("format") != FORMAT:
        raise KilomlError(f"{where}: bundle format {content.get('format')!r}; this kiloml "
                          f"reads format {FORMAT}")
    missing = [f for f in FIELDS if f not in content]
    if missing:
        raise KilomlError(f"{where}: bundle lacks {', '.join(missing)}")
    for f, kind in TYPES.items():
        if not isinstance(content[f], kind) or isinstance(content[f], bool):
            raise KilomlError(f"{where}: bundle field {f} is a {type(content[f]).__name__}")
    image = content["slot_image"]
    if not isinstance(image, bytes):
        raise KilomlError(f"{where}: slot_image is not a byte string")
    head = read_header(image)
    for k in ("counter", "version", "board", "payload_bytes"):
        if head[k] != content[k]:
            raise KilomlError(f"{where}: the slot image's {k} {head[k]!r} differs from the "
                              f"bundle's {content[k]!r}")
    if head["abi_hash"] != content["abi_hash"].hex():
        raise KilomlError(f"{where}: the slot image's ABI hash differs from the bundle's")
    if len(image) != 128 + head["payload_bytes"]:
        raise KilomlError(f"{where}: the slot image holds {len(image)} bytes, its header says "
                          f"{128 + head['payload_bytes']}")
    digest = hashlib.sha256(image[:80] + image[128:]).hexdigest()
    if digest != head["sha256"]:
        raise KilomlError(f"{where}: the slot image's SHA-256 does not match its header")
    return content


def read_bundle(data: bytes, where: str = "bundle") -> dict:
    """The content of a bundle WITHOUT checking its signature (for ``inspect``), plus
    ``key_id`` and ``algorithm`` from the envelope."""
    header, _p, payload, _s = open_envelope(data, where)
    try:
        content = cbor2.loads(payload)
    except (cbor2.CBORDecodeError, ValueError, TypeError):
        raise SignatureError(f"{where}: the payload is not CBOR") from None
    return _with_envelope(_check_content(content, where), header)


def _with_envelope(content: dict, header: dict) -> dict:
    """``content`` and the envelope's key id and algorithm."""
    out = dict(content)
    out["key_id"] = header.get(4, b"").hex()
    out["algorithm"] = {-8: "EdDSA (Ed25519)", -7: "ES256 (ECDSA P-256)"}.get(
        header.get(1), str(header.get(1)))
    return out


def verify_bundle(data: bytes, public_key, where: str = "bundle",
                  project: Optional[str] = None, min_counter: Optional[int] = None,
                  board: Optional[str] = None) -> dict:
    """The bundle's content if its signature verifies with ``public_key`` and, when given,
    it is for ``project`` and ``board`` and its counter is above ``min_counter`` (the
    counter of the model the device runs); KilomlError naming the first failure."""
    content = _with_envelope(_check_content(cbor2.loads(verify(data, public_key, where)),
                                            where), open_envelope(data, where)[0])
    if project is not None and content["project"] != project:
        raise KilomlError(f"{where}: a bundle of the project {content['project']!r}, not "
                          f"{project!r}")
    if board is not None and content["board"] != board:
        raise KilomlError(f"{where}: made for the board {content['board']!r}, not {board!r}")
    if min_counter is not None and content["counter"] <= int(min_counter):
        raise KilomlError(f"{where}: security counter {content['counter']} is not above "
                          f"{min_counter}: an older or replayed model (rollback refused)")
    return content


def summary(content: dict) -> dict:
    """The bundle's description for people and JSON (no image bytes)."""
    out = {k: v for k, v in content.items() if k != "slot_image"}
    out["abi_hash"] = content["abi_hash"].hex() if isinstance(content["abi_hash"], bytes) \
        else content["abi_hash"]
    out["slot_image_bytes"] = len(content["slot_image"])
    out["slot_image_sha256"] = hashlib.sha256(content["slot_image"]).hexdigest()
    return out

