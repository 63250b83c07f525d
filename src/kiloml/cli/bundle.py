"""``kiloml bundle keygen | create | inspect | verify``: signed, versioned model bundles for
devices with model slots, and MCUboot-signed firmware (kiloml.workflow.bundle)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from kiloml.cli.common import (PROJECT_OPT, app, command_line, emit_json, fail, fmt, guard,
                               out, project_dir, table)

bundle_app = typer.Typer(add_completion=False, no_args_is_help=True,
                         help="Signed model bundles: keygen, create, inspect, verify.")
app.add_typer(bundle_app, name="bundle")

JSON_OPT = typer.Option(False, "--json", help="Print results as JSON on stdout.")
SHOWN = ("project", "version", "counter", "board", "kernels", "abi_hash", "payload_bytes",
         "slot_bytes", "arena_bytes", "labels", "model_sha256", "algorithm", "key_id",
         "kiloml_version", "slot_image_bytes", "slot_image_sha256")


def _print(res: dict, title: str) -> None:
    t = table(title, [("field", "l"), ("value", "l")])
    for k in SHOWN:
        if k in res:
            v = res[k]
            t.add_row(k.replace("_", " "), ", ".join(v) if isinstance(v, list) else fmt(v))
    out.print(t)


@bundle_app.command("keygen")
def keygen(
    out_key: Path = typer.Option(..., "-o", "--out",
                                 help="Private key file (PEM); the public key goes beside it "
                                      "as NAME.pub.pem."),
    key_type: str = typer.Option("ed25519", "--type", help="ed25519 | ecdsa-p256"),
    force: bool = typer.Option(False, "--force", help="Replace existing key files."),
    as_json: bool = JSON_OPT,
) -> None:
    """Make a signing key pair for bundles (and for MCUboot images)."""
    from kiloml.bundle import KEY_TYPES

    if key_type not in KEY_TYPES:
        fail(f"--type must be one of {', '.join(KEY_TYPES)}, not {key_type!r}", 2)

    def go():
        from kiloml.workflow.bundle import keygen as make

        res = make(key_type, out_key, force=force)
        if as_json:
            emit_json(res)
        else:
            out.print(f"wrote the {key_type} private key {res['private_key']} (keep it secret) "
                      f"and the public key {res['public_key']} (key id {res['key_id']})",
                      highlight=False)

    guard(go)


@bundle_app.command("create")
def create(
    key: Path = typer.Option(..., "--key", help="Private key (PEM, Ed25519 or ECDSA P-256)."),
    version: str = typer.Option(..., "--version", help="Model version X.Y.Z."),
    out_file: Path = typer.Option(..., "-o", "--out", help="Bundle file (e.g. model.kmb)."),
    board: Optional[str] = typer.Option(None, "--board", help="Board id (default: the "
                                                              "project's)."),
    counter: Optional[int] = typer.Option(None, "--counter", min=1, max=2 ** 32 - 1,
                                          help="Security counter (default: from the version, "
                                               "X*2^24 + Y*2^16 + Z)."),
    fmt_: str = typer.Option("kmb", "--format", help="kmb (model bundle) | mcuboot (sign "
                                                     "--firmware with imgtool)"),
    firmware: Optional[Path] = typer.Option(None, "--firmware",
                                            help="--format mcuboot: the firmware image "
                                                 "(.bin or .hex) you built."),
    project: Optional[Path] = PROJECT_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Sign the trained project's model (weights, biases, DSP parameters, ABI hash, board,
    counter) as a bundle a device with model slots installs."""
    from kiloml.workflow.bundle import FORMATS

    if fmt_ not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}, not {fmt_!r}", 2)

    def go():
        from kiloml.workflow.bundle import create_bundle

        res = create_bundle(None if fmt_ == "mcuboot" else project_dir(project), key, version,
                            out_file, board=board, counter=counter, fmt=fmt_,
                            firmware=firmware, command=command_line())
        if as_json:
            emit_json(res)
        elif fmt_ == "mcuboot":
            out.print(f"wrote the MCUboot image {res['path']} ({res['bytes']:,} bytes, version "
                      f"{res['version']}, security counter {res['counter']})", highlight=False)
        else:
            _print(res, f"{res['path']} ({res['bytes']:,} bytes)")

    guard(go)


@bundle_app.command("inspect")
def inspect(
    bundle: Path = typer.Argument(..., help="A bundle file."),
    as_json: bool = JSON_OPT,
) -> None:
    """Show what a bundle holds (the signature is NOT checked: use verify)."""

    def go():
        from kiloml.workflow.bundle import inspect_bundle

        res = inspect_bundle(bundle)
        if as_json:
            emit_json(res)
        else:
            _print(res, f"{bundle} (signature not checked)")

    guard(go)


@bundle_app.command("verify")
def verify(
    bundle: Path = typer.Argument(..., help="A bundle file (or an MCUboot .bin/.hex)."),
    pubkey: Path = typer.Option(..., "--pubkey", help="The signer's public key (PEM)."),
    min_counter: Optional[int] = typer.Option(None, "--min-counter", min=0,
                                              help="The counter of the model the device runs: "
                                                   "the bundle's must be above it."),
    project: Optional[Path] = typer.Option(None, "--project", "-p",
                                           help="Also check the bundle fits this project's "
                                                "firmware (name and ABI hash)."),
    as_json: bool = JSON_OPT,
) -> None:
    """Check a bundle's signature (and rollback and project) before writing it to a device;
    exit 1 on any failure."""

    def go():
        from kiloml.workflow.bundle import verify_bundle_file

        res = verify_bundle_file(bundle, pubkey, project=project, min_counter=min_counter)
        if as_json:
            emit_json(res)
        elif res.get("format") == "mcuboot":
            out.print(f"{bundle}: MCUboot image verified by imgtool", highlight=False)
        else:
            out.print(f"{bundle}: signature OK ({res['algorithm']}, key id {res['key_id']}); "
                      f"{res['project']} {res['version']}, counter {res['counter']}, board "
                      f"{res['board']}", highlight=False)

    guard(go)
