"""``kiloml bundle``: signing keys, signed model bundles of a trained project, their
inspection and verification, and MCUboot-signed firmware (kiloml.bundle does the work; this
step hands it the project's parts). Every writer checks its inputs first and writes its
output atomically: on an error nothing is written."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from kiloml.bundle import (generate_key, key_id, load_private_key, load_public_key,
                           make_bundle, private_pem, public_pem, read_bundle, summary,
                           verify_bundle, version_counter)
from kiloml.bundle.model import bundle_payload
from kiloml.bundle.mcuboot import sign_mcuboot, verify_mcuboot
from kiloml.deploy.slot import parse_version
from kiloml.errors import KilomlError
from kiloml.fileio import atomic_write_bytes
from kiloml.workflow.deploy import package_name, project_spec
from kiloml.workflow.project import Project, as_project

FORMATS = ("kmb", "mcuboot")
MAX_BUNDLE_BYTES = 64 << 20


def public_path(key_path: Path) -> Path:
    """``key.pem`` -> ``key.pub.pem``."""
    name = key_path.name[:-4] if key_path.name.endswith(".pem") else key_path.name
    return key_path.with_name(name + ".pub.pem")


def keygen(kind: str, out: str | Path, force: bool = False) -> dict:
    """A new key pair: the private key at ``out`` (readable by its owner only) and the public
    key beside it (``<name>.pub.pem``)."""
    out = Path(out)
    pub = public_path(out)
    key = generate_key(kind)
    for p in (out, pub):
        if p.exists() and not force:
            raise KilomlError(f"{p}: exists (force replaces it)")
        if not p.parent.is_dir():
            raise KilomlError(f"{p.parent}: no such folder")
    mask = os.umask(0o077)
    try:
        atomic_write_bytes(out, private_pem(key))
    finally:
        os.umask(mask)
    try:
        atomic_write_bytes(pub, public_pem(key))
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return {"type": kind, "private_key": str(out), "public_key": str(pub),
            "key_id": key_id(key.public_key()).hex()}


def create_bundle(project: Project | str | Path | None, key: str | Path, version: str,
                  out: str | Path, board: Optional[str] = None, counter: Optional[int] = None,
                  fmt: str = "kmb", firmware: Optional[Path] = None,
                  command: str = "kiloml bundle create") -> dict:
    """Write the project's signed model bundle (``kmb``) or, for ``mcuboot``, the signed
    ``firmware`` image to ``out``."""
    if fmt not in FORMATS:
        raise KilomlError(f"unknown bundle format {fmt!r} (have: {', '.join(FORMATS)})")
    parse_version(version)
    counter = version_counter(version) if counter is None else int(counter)
    if fmt == "mcuboot":
        if firmware is None:
            raise KilomlError("--format mcuboot signs your firmware image: give --firmware "
                              "FILE (.bin or .hex)")
        return sign_mcuboot(firmware, key, version, counter, out)
    signing_key = load_private_key(key)
    p = as_project(project)
    spec = project_spec(p, board, command=command)
    data = make_bundle(spec, signing_key, version, counter)
    atomic_write_bytes(out, data)
    res = summary(read_bundle(data, str(out)))
    res.update({"path": str(out), "bytes": len(data), "format": "kmb"})
    return res


def _read(path: str | Path) -> bytes:
    path = Path(path)
    try:
        if path.stat().st_size > MAX_BUNDLE_BYTES:
            raise KilomlError(f"{path}: {path.stat().st_size} bytes is too large for a bundle")
        return path.read_bytes()
    except OSError as e:
        raise KilomlError(f"{path}: cannot read the bundle ({e.strerror or e})") from None


def inspect_bundle(path: str | Path) -> dict:
    """What a bundle holds; its signature is NOT checked (``verify_bundle_file`` does)."""
    res = summary(read_bundle(_read(path), str(path)))
    res["signature_checked"] = False
    return res


def verify_bundle_file(path: str | Path, pubkey: str | Path,
                       project: Project | str | Path | None = None,
                       min_counter: Optional[int] = None) -> dict:
    """Check the bundle's signature with ``pubkey``, its counter above ``min_counter`` and,
    with a ``project``, that it is this project's bundle for the firmware its deploy builds
    (same package name and ABI hash); KilomlError naming the first failure."""
    if Path(path).suffix.lower() in (".bin", ".hex"):
        return {"format": "mcuboot", "path": str(path), "ok": True,
                "imgtool": verify_mcuboot(path, pubkey)}
    public_key = load_public_key(pubkey)
    data = _read(path)
    name = None
    if project is not None:
        p = as_project(project)
        name = package_name(p)
    content = verify_bundle(data, public_key, str(path), project=name, min_counter=min_counter)
    if project is not None:
        want = bundle_payload(project_spec(p, content["board"]), content["version"],
                              content["counter"])
        if want["abi_hash"] != content["abi_hash"]:
            raise KilomlError(f"{path}: made for another firmware of {name!r} (ABI hash "
                              f"{content['abi_hash'].hex()[:16]}..., the project's deploy "
                              f"{want['abi_hash'].hex()[:16]}...): redeploy the firmware")
    res = summary(content)
    res.update({"path": str(path), "ok": True, "signature_checked": True})
    return res


__all__ = ["FORMATS", "create_bundle", "inspect_bundle", "keygen", "public_path",
           "verify_bundle_file"]
