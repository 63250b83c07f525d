"""Model slots on the device, in the emulator with the real ELF (nano33ble: Cortex-M4, the
Arm kernels): a C package built with ``model_slot`` runs no model until a slot image is
installed; a good update switches slots and the scores equal the reference interpreter's on
the device's own features, bit for bit; every tampered image is refused with its own error
code and the old model keeps running; a power loss in the middle of writing a slot (the core
stopped at the k-th flash write, the flash kept, the core restarted) leaves the old model
running. Also: the package's C SHA-256 against the NIST CAVP vectors (cryptography-vectors,
an independent oracle) on the host under ASan/UBSan and in the emulator."""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from projhelp import kiloml, wand_project  # noqa: E402

from kiloml.codegen.host import SANITIZE, WARNINGS, find_cc  # noqa: E402
from kiloml.deploy import deploy_c  # noqa: E402
from kiloml.deploy.run import classify_features, features_from_c, load_manifest  # noqa: E402
from kiloml.deploy.slot import ERRORS, slot_image, slot_sources  # noqa: E402
from kiloml.deploy.spec import board_flags  # noqa: E402
from kiloml.targets.batch import (END_MARKER, END_SYMBOL, INPUT_BASE, build_image,  # noqa: E402
                                  run_image)

SLOT_A, SLOT_B = 0x08800000, 0x08C00000
N = 6  # windows classified per run
CODES = {v: k for k, v in ERRORS.items()}

HARNESS = """/* test harness: boot, optionally install a slot image, classify N windows */
#include <stdint.h>
#include <string.h>

#include "p.h"
#include "p_dsp.h"

#define IN 0x{base:08x}u
int kml_flash_erase(const uint8_t *dst, uint32_t n)
{{
    memset((void *)(uintptr_t)dst, 0xff, n);
    return 0;
}}
int kml_flash_write(const uint8_t *dst, const uint8_t *data, uint32_t n)
{{
    memcpy((void *)(uintptr_t)dst, data, n);
    return 0;
}}
int32_t t_boot, t_update;
uint32_t t_counter;
float t_feat[{n} * P_FEATURE_SIZE];
float t_scores[{n} * P_NUM_CLASSES];
int32_t t_top[{n}];
int main(void);
{end}
int main(void)
{{
    const uint32_t len = *(const volatile uint32_t *)IN;
    const uint8_t *img = (const uint8_t *)(IN + 8u);
    const p_sample_t *raw = (const p_sample_t *)(IN + 8u + ((len + 7u) & ~7u));
    uint32_t i;
    t_boot = p_model_boot();
    t_update = len ? p_model_update(img, len) : 1000;
    t_counter = p_model_counter();
    for (i = 0; i < {n}u; ++i) {{
        (void)p_dsp_features(raw + i * P_INPUT_SIZE, &t_feat[i * P_FEATURE_SIZE]);
        t_top[i] = p_classify(raw + i * P_INPUT_SIZE, &t_scores[i * P_NUM_CLASSES]);
    }}
    {end_fn}();
    return 0;
}}
"""


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    """(spec v1, spec v2, image builder, runner) for a trained wand project deployed with
    model slots: v2 is v1 with its weights and biases negated (same quantization, so the
    same firmware ABI) and other classes."""
    from kiloml.bundle.model import bundle_payload
    from kiloml.data.windowing import load_windows
    from kiloml.workflow.deploy import project_spec
    from kiloml.workflow.project import load_project

    tmp = tmp_path_factory.mktemp("slot")
    root = wand_project(tmp)
    r = kiloml("run", "--until", "compile", "-q", cwd=root)
    assert r.returncode == 0, r.stderr
    spec1 = dataclasses.replace(project_spec(root), model_slot=True)
    g = spec1.graph
    tensors = [dataclasses.replace(t, data=np.clip(-t.data.astype(np.int64),
                                                   np.iinfo(t.dtype).min + 1,
                                                   np.iinfo(t.dtype).max).astype(t.dtype))
               if t.is_const and t.dtype in ("int8", "int32") and t.data.ndim >= 1
               and t.data.size > 4 else t for t in g.tensors]
    spec2 = dataclasses.replace(spec1, graph=dataclasses.replace(g, tensors=tensors))
    pkg = deploy_c(spec1, tmp / "pkg").path
    meta = load_manifest(pkg)
    flags = board_flags("nano33ble", "cortex-m4")
    b = meta["build"]
    ks = b["kernel_sets"]["armv7em"]
    harness = tmp / "harness.c"
    harness.write_text(HARNESS.format(base=INPUT_BASE, n=N, end=END_MARKER, end_fn=END_SYMBOL))
    image = build_image([pkg / s for s in b["sources"] + ks["sources"]] + [harness],
                        [pkg, pkg / "slot", pkg / "dsp", pkg / ks["include_dir"]], flags,
                        tmp / "elf")
    slot_bytes = meta["model_slot"]["slot_bytes"]
    p = load_project(root)
    frames, _ = load_windows(p.dataset, p.config.data, split="test")
    raw = np.ascontiguousarray(frames[:N].reshape(N, -1), np.float32)

    def make(spec, version="1.0.0", counter=None, **kw):
        pay = bundle_payload(spec, version, counter)
        if kw:
            return slot_image(kw.get("payload", pay["slot_image"][128:]),
                              kw.get("abi", pay["abi_hash"]), kw.get("board", "nano33ble"),
                              version, pay["counter"])
        assert pay["abi_hash"].hex() == meta["model_slot"]["kernel_sets"]["armv7em"][
            "abi_hash"], "the bundle's ABI hash is not the deployed firmware's"
        return pay["slot_image"]

    def run(update=b"", flash=None, power_cut=None):
        blob = np.array([len(update), 0], np.uint32).tobytes() + update \
            + bytes(-len(update) % 8) + raw.tobytes()
        erased = b"\xff" * slot_bytes
        mem = flash or {"A": erased, "B": erased}
        got = run_image(image, "cortex-m4", {"t_boot": 4, "t_update": 4, "t_counter": 4,
                                             "t_feat": 4 * N * meta_feat(meta),
                                             "t_scores": 4 * N * 2, "t_top": 4 * N},
                        fpu=True, input_data=blob, timeout_s=120,
                        memory={SLOT_A: mem["A"], SLOT_B: mem["B"]},
                        dump={"A": (SLOT_A, slot_bytes), "B": (SLOT_B, slot_bytes)},
                        power_cut=power_cut)
        if "power_cut" in got:
            return {"A": got["A"], "B": got["B"]}, None
        i32 = {k: int(np.frombuffer(got[k], np.int32)[0]) for k in ("t_boot", "t_update")}
        res = {"boot": i32["t_boot"], "update": i32["t_update"],
               "counter": int(np.frombuffer(got["t_counter"], np.uint32)[0]),
               "top": np.frombuffer(got["t_top"], np.int32).copy(),
               "scores": np.frombuffer(got["t_scores"], np.float32).reshape(N, 2).copy(),
               "features": features_from_c(meta, np.frombuffer(got["t_feat"], np.float32)
                                           .reshape(N, -1))}
        return {"A": got["A"], "B": got["B"]}, res

    return spec1, spec2, make, run


def meta_feat(meta) -> int:
    return int(np.prod(meta["features"]["shape"]))


def assert_runs(spec, res):
    """The device's scores and classes are the reference interpreter's on its features."""
    ref = classify_features(spec, res["features"])
    np.testing.assert_array_equal(res["scores"], ref.scores)
    np.testing.assert_array_equal(res["top"], ref.predictions)


@pytest.fixture(scope="module")
def installed(device):
    """The flash after v1 was installed on an empty device."""
    spec1, _spec2, make, run = device
    flash, res = run()
    assert res["boot"] == CODES["empty"] and res["counter"] == 0
    assert (res["top"] == -2).all()          # no model yet: classify refuses
    flash, res = run(make(spec1, "1.0.0"))
    assert res["update"] == 0 and res["counter"] == 1 << 24   # slot A
    assert_runs(spec1, res)
    return flash


def test_good_update_switches_and_equals_the_reference(device, installed):
    spec1, spec2, make, run = device
    flash, res = run(make(spec2, "1.1.0"), flash=installed)
    assert res["boot"] == 0 and res["update"] == 1          # booted A, installed into B
    assert res["counter"] == (1 << 24) | (1 << 16)
    assert_runs(spec2, res)
    old = classify_features(spec1, res["features"])
    assert (old.predictions != res["top"]).any()            # really another model
    # after a restart the newer slot is chosen; slot A still holds v1 for a rollback
    flash2, res = run(flash=flash)
    assert res["boot"] == 1
    assert_runs(spec2, res)
    assert flash2["A"] == installed["A"]


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x10]) + data[at + 1:]


TAMPER = [  # (case, expected code)
    ("payload bit flipped", "digest"),
    ("header counter bit flipped", "digest"),
    ("truncated", "truncated"),
    ("wrong magic", "magic"),
    ("wrong board", "board"),
    ("wrong ABI hash", "abi"),
    ("wrong payload size", "size"),
    ("older counter", "counter"),
    ("same counter replayed", "counter"),
]


@pytest.mark.parametrize("case,code", TAMPER, ids=[c for c, _ in TAMPER])
def test_tampered_update_is_refused_and_the_old_model_runs(device, installed, case, code):
    spec1, spec2, make, run = device
    good = make(spec2, "1.1.0")
    img = {"payload bit flipped": lambda: _flip(good, 128 + 1000),
           "header counter bit flipped": lambda: _flip(good, 14),
           "truncated": lambda: good[:-100],
           "wrong magic": lambda: b"KMLX" + good[4:],
           "wrong board": lambda: make(spec2, "1.1.0", board="pico"),
           "wrong ABI hash": lambda: make(spec2, "1.1.0", abi=bytes(32)),
           "wrong payload size": lambda: make(spec2, "1.1.0",
                                              payload=good[128:] + bytes(8)),
           "older counter": lambda: make(spec2, "0.9.0"),
           "same counter replayed": lambda: make(spec2, "1.0.0")}[case]()
    flash, res = run(img, flash=installed)
    assert res["update"] == CODES[code]
    assert res["counter"] == 1 << 24
    assert_runs(spec1, res)
    assert flash == installed                # nothing written to either slot


@pytest.mark.parametrize("cut", ["mid-payload", "before-header"])
def test_power_loss_mid_write_keeps_the_old_model(device, installed, cut):
    spec1, spec2, make, run = device
    img = make(spec2, "1.1.0")
    chunks = -(-(len(img) - 128) // 256)     # payload chunks of 256 bytes, then the header
    assert chunks > 4                        # (the image's size follows the kernels' streams)
    # the power fails in the third flash write (inside the payload), or in the header's
    # write after every payload chunk has been written
    writes = 3 if cut == "mid-payload" else chunks + 1
    flash, res = run(img, flash=installed, power_cut=("kml_flash_write", writes))
    assert res is None and flash["A"] == installed["A"] and flash["B"] != installed["B"]
    _, res = run(flash=flash)                # power back: boot, no update
    assert res["boot"] == 0 and res["counter"] == 1 << 24
    assert_runs(spec1, res)


def _nist(name: str) -> list[tuple[bytes, bytes]]:
    import cryptography_vectors

    text = Path(cryptography_vectors.__file__).with_name("hashes").joinpath(
        "SHA2", name).read_text()
    out, length, msg = [], None, None
    for line in text.splitlines():
        if line.startswith("Len ="):
            length = int(line.split("=")[1])
        elif line.startswith("Msg ="):
            msg = bytes.fromhex(line.split("=")[1].strip())[:length // 8]
        elif line.startswith("MD ="):
            out.append((msg, bytes.fromhex(line.split("=")[1].strip())))
    return out


SHA_MAIN = """#include <stdio.h>
#include <stdlib.h>
#include "kml_sha256.h"
static uint8_t buf[1 << 16];
int main(void)
{
    uint32_t n;
    uint8_t d[32];
    while (fread(&n, 4, 1, stdin) == 1) {
        if (n > sizeof buf || fread(buf, 1, n, stdin) != n) { return 2; }
        kml_sha256(buf, n, d);
        fwrite(d, 1, 32, stdout);
    }
    return 0;
}
"""


def test_c_sha256_matches_the_nist_vectors_on_the_host(tmp_path):
    vectors = _nist("SHA256ShortMsg.rsp") + _nist("SHA256LongMsg.rsp")
    assert len(vectors) == 65 + 64          # ShortMsg: 0..64 bytes; LongMsg: 64 long ones
    assert vectors[1][1].hex().startswith("28969cdf")  # the first non-empty ShortMsg vector
    for name, text in slot_sources().items():
        (tmp_path / name).write_text(text)
    (tmp_path / "main.c").write_text(SHA_MAIN)
    exe = tmp_path / "sha"
    subprocess.run([find_cc(), *WARNINGS, "-O1", *SANITIZE, "-I", str(tmp_path),
                    str(tmp_path / "main.c"), str(tmp_path / "kml_sha256.c"), "-o", str(exe)],
                   check=True, timeout=120)
    feed = b"".join(len(m).to_bytes(4, "little") + m for m, _ in vectors)
    out = subprocess.run([str(exe)], input=feed, capture_output=True, timeout=120, check=True)
    got = [out.stdout[i:i + 32] for i in range(0, len(out.stdout), 32)]
    assert got == [d for _, d in vectors]


def test_incremental_sha256_in_the_emulator(tmp_path):
    """The Cortex-M0+ build (no DSP, no FPU): update in uneven pieces across block
    boundaries gives the NIST digests of the long messages."""
    vectors = _nist("SHA256LongMsg.rsp")[:8]
    for name, text in slot_sources().items():
        (tmp_path / name).write_text(text)
    total = sum(len(m) for m, _ in vectors)
    (tmp_path / "main.c").write_text(
        "#include <stdint.h>\n#include \"kml_sha256.h\"\n"
        f"uint8_t t_out[{len(vectors)} * 32];\nint main(void);\n{END_MARKER}"
        "int main(void)\n{\n"
        "    const uint32_t *lens = (const uint32_t *)0x%08xu;\n" % INPUT_BASE
        + f"    const uint8_t *p = (const uint8_t *)(0x{INPUT_BASE:08x}u + {4 * len(vectors)}u);\n"
        "    uint32_t i, at, step;\n    kml_sha256_ctx c;\n"
        f"    for (i = 0; i < {len(vectors)}u; ++i) {{\n"
        "        kml_sha256_init(&c);\n"
        "        for (at = 0, step = 1; at < lens[i]; at += step, step = step * 3u + 1u) {\n"
        "            if (step > lens[i] - at) { step = lens[i] - at; }\n"
        "            kml_sha256_update(&c, p + at, step);\n        }\n"
        "        kml_sha256_final(&c, &t_out[i * 32u]);\n        p += lens[i];\n    }\n"
        f"    {END_SYMBOL}();\n    return 0;\n}}\n")
    image = build_image([tmp_path / "main.c", tmp_path / "kml_sha256.c"], [tmp_path],
                        board_flags("pico", "cortex-m0plus"), tmp_path)
    data = b"".join(len(m).to_bytes(4, "little") for m, _ in vectors) \
        + b"".join(m for m, _ in vectors)
    got = run_image(image, "cortex-m0plus", {"t_out": 32 * len(vectors)}, input_data=data,
                    timeout_s=120)["t_out"]
    assert [got[i:i + 32] for i in range(0, len(got), 32)] == [d for _, d in vectors]
    assert min(len(m) for m, _ in vectors) > 128 and total > 4000  # many blocks each
    assert hashlib.sha256(vectors[0][0]).digest() == vectors[0][1]  # the parser reads them
