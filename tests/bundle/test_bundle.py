"""``kiloml bundle`` on a trained project: keys, signed bundles (COSE_Sign1), inspection and
verification on the host: a valid bundle verifies; a wrong public key, a modified byte
anywhere in the bundle and a re-signed older version are refused; bad input (unreadable key,
wrong key type, a bundle of another project) gives one line, exit 1 and writes nothing; a
bundle fetched from a plain static file server verifies; ``--format mcuboot`` signs a
firmware image that ``imgtool verify`` accepts, with its security counter."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import urllib.request
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cbor2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from projhelp import edit, kiloml, wand_project  # noqa: E402

from kiloml.bundle import (load_private_key, load_public_key, make_bundle,  # noqa: E402
                           verify_bundle)
from kiloml.errors import KilomlError  # noqa: E402


class Result:
    def __init__(self, r):
        self.returncode, self.stdout, self.stderr = r.exit_code, r.stdout, r.stderr


def cli(*args, cwd=None):
    """The ``kiloml`` command in this process (typer's runner: a subprocess per call costs
    seconds of imports); ``cwd`` becomes ``--project`` for the verbs that take one."""
    from typer.testing import CliRunner

    from kiloml.cli import app

    args = [str(a) for a in args]
    if cwd is not None:
        args += ["--project", str(cwd)]
    return Result(CliRunner().invoke(app, args, env={"COLUMNS": "80"}))


@pytest.fixture(scope="module")
def proj(tmp_path_factory) -> Path:
    root = wand_project(tmp_path_factory.mktemp("bundle"))
    r = kiloml("run", "--until", "compile", "-q", cwd=root)
    assert r.returncode == 0, r.stderr
    return root


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("keys")
    for name, kind in (("ed", "ed25519"), ("ec", "ecdsa-p256"), ("other", "ed25519")):
        run = kiloml if name == "ed" else cli      # one real subprocess, the rest in-process
        r = run("bundle", "keygen", "-o", d / f"{name}.pem", "--type", kind, "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["type"] == kind
    assert (d / "ed.pem").stat().st_mode & 0o077 == 0      # the private key: owner only
    return d


def _one_line_error(r, code: int = 1) -> str:
    assert r.returncode == code, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


@pytest.mark.parametrize("kind", ["ed", "ec"])
def test_create_inspect_verify(proj, keys, tmp_path, kind):
    out = tmp_path / "m.kmb"
    r = cli("bundle", "create", "--key", keys / f"{kind}.pem", "--version", "1.2.3", "-o",
               out, "--json", cwd=proj)
    assert r.returncode == 0, r.stderr
    made = json.loads(r.stdout)
    assert made["counter"] == (1 << 24) | (2 << 16) | 3 and made["board"] == "nano33ble"
    assert made["labels"] == ["ring", "wing"] and made["kernels"] == "armv7em"
    assert made["dsp"]["block"] == "spectral" and made["arena_bytes"] > 0
    assert made["slot_image_bytes"] == 128 + made["payload_bytes"]
    r = cli("bundle", "inspect", out, "--json")
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout)
    assert seen["signature_checked"] is False and seen["abi_hash"] == made["abi_hash"]
    r = cli("bundle", "verify", out, "--pubkey", keys / f"{kind}.pub.pem", "--project", proj,
               "--json")
    assert r.returncode == 0, r.stderr
    ok = json.loads(r.stdout)
    assert ok["ok"] and ok["signature_checked"] and ok["version"] == "1.2.3"
    # the envelope is COSE_Sign1 (tag 18) with the algorithm in the protected header
    env = cbor2.loads(out.read_bytes())
    assert env.tag == 18 and cbor2.loads(env.value[0])[1] == {"ed": -8, "ec": -7}[kind]
    assert len(env.value[3]) == 64
    # signature checks: the other key; an ECDSA key for an EdDSA bundle (or back)
    other = "other" if kind == "ed" else "ed"
    r = cli("bundle", "verify", out, "--pubkey", keys / f"{other}.pub.pem")
    assert str(out) in _one_line_error(r)


def test_a_modified_byte_anywhere_is_refused(proj, keys):
    from kiloml.workflow.deploy import project_spec

    key = load_private_key(keys / "ed.pem")
    pub = load_public_key(keys / "ed.pub.pem")
    data = make_bundle(project_spec(proj), key, "1.0.0")
    assert verify_bundle(data, pub)["version"] == "1.0.0"
    refused = 0
    for i in range(len(data)):                     # one bit of every byte, bit i % 8
        bad = data[:i] + bytes([data[i] ^ (1 << (i % 8))]) + data[i + 1:]
        with pytest.raises(KilomlError):
            verify_bundle(bad, pub)
        refused += 1
    assert refused == len(data) > 5_000
    with pytest.raises(KilomlError):
        verify_bundle(data + b"\0", pub)           # an appended byte
    with pytest.raises(KilomlError):
        verify_bundle(data[:-1], pub)              # a removed one


def test_a_re_signed_older_version_is_refused(proj, keys, tmp_path):
    new, old = tmp_path / "new.kmb", tmp_path / "old.kmb"
    for out, version in ((new, "1.1.0"), (old, "1.0.0")):
        r = cli("bundle", "create", "--key", keys / "ed.pem", "--version", version, "-o", out,
                   "--json", cwd=proj)
        assert r.returncode == 0, r.stderr
    running = json.loads(cli("bundle", "inspect", new, "--json").stdout)["counter"]
    # the device runs 1.1.0: the older model, validly signed again today, is a rollback
    r = cli("bundle", "verify", old, "--pubkey", keys / "ed.pub.pem", "--min-counter", running)
    assert "rollback refused" in _one_line_error(r)
    # a re-signed older model with a forged higher counter needs the key: another key fails
    from kiloml.workflow.deploy import project_spec

    forged = make_bundle(project_spec(proj), load_private_key(keys / "other.pem"), "1.0.0",
                         counter=running + 1)
    (tmp_path / "forged.kmb").write_bytes(forged)
    r = cli("bundle", "verify", tmp_path / "forged.kmb", "--pubkey", keys / "ed.pub.pem",
               "--min-counter", running)
    assert "signature does not verify" in _one_line_error(r)


def _write_key(path: Path, key) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def test_bad_input_one_line_exit_1_nothing_written(proj, keys, tmp_path):
    out = tmp_path / "m.kmb"
    cases = {
        "missing key": (tmp_path / "nope.pem", "cannot read the private key"),
        "a folder as key": (tmp_path, "cannot read the private key"),
        "not PEM": (proj / "kiloml.toml", "not a PEM private key"),
        "RSA key": (_write_key(tmp_path / "rsa.pem",
                               rsa.generate_private_key(public_exponent=65537, key_size=2048)),
                    "a bundle signing key is Ed25519 or ECDSA P-256"),
        "P-384 key": (_write_key(tmp_path / "p384.pem", ec.generate_private_key(ec.SECP384R1())),
                      "secp384r1 key"),
        "public key as signing key": (keys / "ed.pub.pem", "not a PEM private key"),
    }
    for case, (key, msg) in cases.items():
        r = cli("bundle", "create", "--key", key, "--version", "1.0.0", "-o", out, cwd=proj)
        line = _one_line_error(r)
        assert msg in line and str(key) in line, (case, line)
        assert not out.exists() and not list(tmp_path.glob(".m.kmb*")), case
    r = cli("bundle", "create", "--key", keys / "ed.pem", "--version", "1.0", "-o", out,
               cwd=proj)
    assert "expected X.Y.Z" in _one_line_error(r) and not out.exists()
    # a bundle of another project: refused by verify --project
    other = proj.parent / "q"
    shutil.copytree(proj, other)
    edit(other / "kiloml.toml", 'name = "p"', 'name = "q"')
    r = cli("bundle", "create", "--key", keys / "ed.pem", "--version", "1.0.0", "-o", out,
               cwd=other)
    assert r.returncode == 0, r.stderr
    r = cli("bundle", "verify", out, "--pubkey", keys / "ed.pub.pem", "--project", proj)
    assert "a bundle of the project 'q', not 'p'" in _one_line_error(r)
    # inspect of something that is not a bundle
    r = cli("bundle", "inspect", proj / "kiloml.toml")
    assert "COSE_Sign1 envelope" in _one_line_error(r)
    r = cli("bundle", "keygen", "-o", keys / "ed.pem")
    assert "exists" in _one_line_error(r)


def test_served_by_a_static_file_server(proj, keys, tmp_path):
    """The fleet view of docs/bundles.md: bundles and a rollout file are plain files any
    static server serves; the device's gateway fetches, verifies, then writes the slot."""
    site = tmp_path / "site"
    site.mkdir()
    r = cli("bundle", "create", "--key", keys / "ed.pem", "--version", "1.0.0", "-o",
               site / "p-1.0.0.kmb", cwd=proj)
    assert r.returncode == 0, r.stderr
    handler = partial(SimpleHTTPRequestHandler, directory=str(site))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/p-1.0.0.kmb"
        with urllib.request.urlopen(url, timeout=10) as resp:
            fetched = resp.read()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert fetched == (site / "p-1.0.0.kmb").read_bytes()
    got = verify_bundle(fetched, load_public_key(keys / "ed.pub.pem"), project="p",
                        min_counter=0)
    assert got["counter"] == 1 << 24


def test_mcuboot_image_signed_by_imgtool(proj, keys, tmp_path):
    """A firmware built from the deployed C package (a minimal main, bare-metal), signed
    with --format mcuboot: imgtool verify accepts it with the public key, refuses it with
    another key, and its TLVs hold the security counter."""
    from kiloml.deploy.run import load_manifest
    from kiloml.deploy.spec import board_flags
    from kiloml.targets.batch import END_MARKER, END_SYMBOL, build_image
    from kiloml.targets.toolchain import arm_gcc

    r = cli("deploy", "-o", tmp_path / "pkg", cwd=proj)
    assert r.returncode == 0, r.stderr
    pkg = tmp_path / "pkg"
    b = load_manifest(pkg)["build"]
    ks = b["kernel_sets"]["armv7em"]
    main = tmp_path / "main.c"
    main.write_text('#include "p.h"\nstatic p_sample_t w[P_INPUT_SIZE];\nfloat s[P_NUM_CLASSES];\n'
                    f"int main(void);\n{END_MARKER}int main(void)\n{{\n"
                    f"    (void)p_classify(w, s);\n    {END_SYMBOL}();\n    return 0;\n}}\n")
    elf = build_image([pkg / s for s in b["sources"] + ks["sources"]] + [main],
                      [pkg, pkg / ks["include_dir"]], board_flags("nano33ble", "cortex-m4"),
                      tmp_path / "elf")
    fw = tmp_path / "fw.bin"
    subprocess.run([arm_gcc().replace("gcc", "objcopy"), "-O", "binary", str(elf.path),
                    str(fw)], check=True, timeout=60)
    signed = tmp_path / "fw.signed.bin"
    r = cli("bundle", "create", "--format", "mcuboot", "--firmware", fw, "--key",
               keys / "ec.pem", "--version", "1.2.3", "--counter", "7", "-o", signed, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["counter"] == 7
    imgtool = [sys.executable, "-m", "imgtool.main"]
    v = subprocess.run(imgtool + ["verify", "-k", str(keys / "ec.pub.pem"), str(signed)],
                       capture_output=True, text=True, timeout=120)
    assert v.returncode == 0 and "Image was correctly validated" in v.stdout, v.stdout + v.stderr
    v = subprocess.run(imgtool + ["verify", "-k", str(keys / "other.pub.pem"), str(signed)],
                       capture_output=True, text=True, timeout=120)
    assert v.returncode != 0 or "Image was correctly validated" not in v.stdout
    info = subprocess.run(imgtool + ["dumpinfo", str(signed)], capture_output=True, text=True,
                          timeout=120)
    assert info.returncode == 0, info.stderr
    assert "SEC_CNT" in info.stdout and "1.2.3" in info.stdout
    r = cli("bundle", "verify", signed, "--pubkey", keys / "ec.pub.pem")
    assert r.returncode == 0, r.stderr
    r = cli("bundle", "verify", signed, "--pubkey", keys / "other.pub.pem")
    _one_line_error(r)
