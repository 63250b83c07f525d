"""``[personalize]`` in the C package end to end on raw samples: ``<name>_classify`` infers
with the head in the RAM slot, so before an update it equals the factory model (the Python
path), after ``_personalize_update`` it equals the numpy twin's personalized head applied to
the Python path's model input, and after ``_personalize_reset`` the factory again; and
``<name>_personalize_add_window`` (raw window in: the package's DSP and input quantization)
stores what ``_personalize_add`` stores for the Python path's model input, byte for byte
(``_export_samples`` against ``encode_samples``). Host gcc, ASan + UBSan, warnings as errors.

The oracle's model input is computed from the C DSP's own features (deployhelp.model_input:
the Python normalizer and quantize_input), so the f32 DSP's last-bit differences from numpy
(tests/deploy/test_deploy_c.py) do not enter; the factory scores are also checked against the
full Python path (run_python) on every window whose features agree.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import deployhelp as H  # noqa: E402

from kiloml.deploy import deploy_arduino, deploy_c, run_python  # noqa: E402
from kiloml.deploy.personalize import (Settings, encode_samples, find_head,  # noqa: E402
                                       personalize, personalized_graph, run_model,
                                       stored_samples)
from kiloml.deploy.run import NP, build_host_exe, features_from_c, load_manifest  # noqa: E402

HARNESS = """/* test harness: raw windows through classify before / after an update / after reset */
#include <stdio.h>
#include <stdlib.h>

#include "{n}.h"
#include "{fhdr}"

static {raw_t} raw[{nin}];
static {raw_t} shots[{k}][{nin}];
static {feat_t} feat[{nfeat}];
static float scores[{ncls}];
static uint8_t msg[{M}_SAMPLES_MESSAGE_MAX_BYTES];

static int classify_all(FILE *fi, FILE *fo, long n, int with_features)
{{
    long i;
    int32_t top;
    rewind(fi);
    for (i = 0; i < n; ++i) {{
        if (fread(raw, sizeof raw[0], {nin}, fi) != {nin}) {{ return 4; }}
        if (with_features) {{
            if ({ffun}(raw, feat) != 0) {{ return 5; }}
            fwrite(feat, sizeof feat[0], {nfeat}, fo);
        }}
        top = (int32_t){n}_classify(raw, scores);
        if (top < 0) {{ return 6; }}
        fwrite(scores, sizeof scores[0], {ncls}, fo);
        fwrite(&top, sizeof top, 1, fo);
    }}
    return 0;
}}

int main(int argc, char **argv)
{{
    FILE *fi, *fs, *fo;
    long n, k;
    int status;
    uint32_t len;
    static const int32_t labels[{k}] = {{{labels}}};
    if (argc != 5) {{ return 2; }}
    fi = fopen(argv[1], "rb");
    fs = fopen(argv[2], "rb");
    fo = fopen(argv[3], "wb");
    if (!fi || !fs || !fo) {{ return 3; }}
    n = atol(argv[4]);
    if (fread(shots, sizeof shots[0][0], {k} * {nin}, fs) != {k} * {nin}) {{ return 4; }}
    status = classify_all(fi, fo, n, 1);                 /* factory */
    if (status != 0) {{ return status; }}
    {n}_personalize_reset();
    if ({n}_personalize_add_window(shots[0], {ncls}) != -1) {{ return 7; }}  /* bad label */
    for (k = 0; k < {k}; ++k) {{
        if ({n}_personalize_add_window(shots[k], labels[k]) != 0) {{ return 8; }}
    }}
    len = {n}_personalize_export_samples(msg, sizeof msg);
    if (len == 0u) {{ return 9; }}
    fwrite(&len, sizeof len, 1, fo);
    fwrite(msg, 1, len, fo);
    if ({n}_personalize_update() != 0) {{ return 10; }}
    status = classify_all(fi, fo, n, 0);                 /* personalized */
    if (status != 0) {{ return status; }}
    {n}_personalize_reset();
    status = classify_all(fi, fo, n, 0);                 /* factory again */
    if (status != 0) {{ return status; }}
    fclose(fi);
    fclose(fs);
    fclose(fo);
    return 0;
}}
"""


def _scores(graph, q):
    t = graph.tensors[graph.outputs[0]]
    return (q.astype(np.int32) - int(t.quant.zero_point[0])).astype(np.float32) \
        * np.float32(t.quant.scale[0])


def _run(pkg: Path, raw: np.ndarray, shots: np.ndarray, labels: np.ndarray, tmp: Path):
    meta = load_manifest(pkg)
    n = meta["name"]
    f = meta["features"]
    nfeat, ncls = int(np.prod(f["shape"])), len(meta["labels"])
    text = HARNESS.format(n=n, M=n.upper(), fhdr=meta["build"]["features_header"],
                          raw_t=meta["raw_input"]["ctype"], feat_t=f["ctype"],
                          nin=int(meta["raw_input"]["size"]), nfeat=nfeat, ncls=ncls,
                          ffun=meta["build"]["features_function"], k=len(shots),
                          labels=", ".join(str(int(v)) for v in labels))
    exe = build_host_exe(pkg, meta, tmp / "harness.c", text, sanitize=True)
    raw_t = NP[meta["raw_input"]["ctype"]]
    (tmp / "raw.bin").write_bytes(raw.astype(raw_t).tobytes())
    (tmp / "shots.bin").write_bytes(shots.astype(raw_t).tobytes())
    r = subprocess.run([str(exe), str(tmp / "raw.bin"), str(tmp / "shots.bin"),
                        str(tmp / "out.bin"), str(len(raw))], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    blob = (tmp / "out.bin").read_bytes()
    fsz = np.dtype(NP[f["ctype"]]).itemsize
    per = 4 * ncls + 4
    at = len(raw) * (nfeat * fsz + per)
    first = np.frombuffer(blob[:at], np.uint8).reshape(len(raw), -1)
    feats = features_from_c(meta, first[:, :nfeat * fsz].copy().view(NP[f["ctype"]]))
    a = first[:, nfeat * fsz:nfeat * fsz + 4 * ncls].copy().view(np.float32)
    (mlen,) = np.frombuffer(blob[at:at + 4], np.uint32)
    msg = blob[at + 4:at + 4 + int(mlen)]
    rest = np.frombuffer(blob[at + 4 + int(mlen):], np.uint8).reshape(2, len(raw), per)
    b, c = (r[:, :4 * ncls].copy().view(np.float32) for r in rest)
    return feats, msg, a, b, c


@pytest.mark.parametrize("biases,fmt", [("head", "c"), ("all", "c"), ("head", "arduino")])
def test_classify_uses_the_personalized_head_and_add_window_stores_the_model_input(
        tmp_path, biases, fmt):
    """(The Arduino library for the pico: portable kernels, so its own files build on the
    host.)"""
    raw = H.imu_windows(per_label=4)                     # 4 per label + a constant window
    labels_all = np.array([i // 4 for i in range(len(raw) - 1)])
    pick = np.array([0, 1, 4, 5, 8, 9, 12, 13])         # two windows of each gesture
    s = Settings(epochs=7, lr=0.5, max_samples=16, biases=biases)
    if fmt == "c":
        spec = dataclasses.replace(H.imu_spec(), personalize=s)
        pkg = deploy_c(spec, tmp_path / "wand").path
    else:
        spec = dataclasses.replace(H.imu_spec(board="pico"), personalize=s)
        pkg = deploy_arduino(spec, tmp_path / "Wand").path
    src = next(pkg.rglob("wand.c")).read_text()
    assert "wand_personalize_invoke(wand_input, wand_output)" in src
    feats, msg, before, after, again = _run(pkg, raw, raw[pick], labels_all[pick], tmp_path)

    x = H.model_input(spec, feats)                       # the Python path's model input
    head = find_head(spec.graph)
    factory, _ = H.model_path(spec, feats)
    np.testing.assert_array_equal(before, factory)
    np.testing.assert_array_equal(again, factory)
    py = run_python(spec, raw)
    same = (H.model_input(spec, py.features) == x).all(axis=1)
    assert same.mean() >= 0.75
    np.testing.assert_array_equal(before[same], py.scores[same])

    got = personalize(head, x[pick], labels_all[pick], s)
    g = personalized_graph(head, *got[:3], *(got[5:] if biases == "all" else []))
    want = _scores(g, run_model(g, x).reshape(len(x), -1))
    np.testing.assert_array_equal(after, want)
    assert not np.array_equal(after, factory)            # the update changed the decisions
    assert msg == encode_samples(stored_samples(head, x[pick], s), labels_all[pick], head.units)


def test_without_personalize_classify_calls_the_factory_model(tmp_path):
    pkg = deploy_c(H.imu_spec(), tmp_path / "wand").path
    src, hdr = (pkg / "wand.c").read_text(), (pkg / "wand.h").read_text()
    assert "wand_model_invoke(wand_input, wand_output)" in src
    assert "personalize" not in src + hdr
    assert not any("personalize" in s for s in
                   json.loads((pkg / "wand.json").read_text())["build"]["sources"])


def test_arduino_library_carries_personalize_and_builds_for_the_nano_33_ble_sense(tmp_path):
    """Every .c of src/ (what the Arduino IDE compiles) cross-compiles warning-free for the
    Nano 33 BLE Sense and links together (the update's portable kernels renamed apart from the
    model's armv7em set, whose fully connected kernel takes packed weights), and
    the update has no fused multiply-add even under the core's -std=gnu11 (whose default
    would contract a * b + c; the source turns contraction off itself)."""
    spec = dataclasses.replace(H.imu_spec(), personalize=Settings(epochs=3))
    lib = deploy_arduino(spec, tmp_path / "Wand").path
    meta = load_manifest(lib)
    assert meta["build"]["board_kernels"] == "armv7em"
    pz = "src/wand/personalize/"
    assert meta["personalize"]["sources"] == [
        pz + "wand_pbb.c", pz + "wand_personalize.c", pz + "wand_ptail.c",
        pz + "wand_pz_kml_fully_connected.c", pz + "wand_pz_kml_softmax.c"]
    assert set(meta["personalize"]["sources"]) <= set(meta["build"]["sources"])
    assert '#include "wand/personalize/wand_personalize.h"' in \
        (lib / "src" / "wand.h").read_text()
    gcc = H.need("arm-none-eabi-gcc")
    sources = sorted((lib / "src").rglob("*.c"))
    nano = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]
    for i, folder in enumerate(sorted({s.parent for s in sources})):   # same names: apart
        H.compile_objects(gcc, nano, [s for s in sources if s.parent == folder], [lib / "src"],
                          tmp_path / "obj" / str(i))
    objs = sorted((tmp_path / "obj").rglob("*.o"))
    assert len(objs) == len(sources)
    r = subprocess.run([gcc, *nano, "-r", "-nostdlib", *map(str, objs), "-o",
                        str(tmp_path / "all.o")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr                  # no symbol defined twice
    nm = subprocess.run([H.need("arm-none-eabi-nm"), "-u", str(tmp_path / "all.o")],
                        capture_output=True, text=True).stdout
    assert "wand_personalize" not in nm and "kml_" not in nm   # all resolved inside
    defined = subprocess.run([H.need("arm-none-eabi-nm"), "--defined-only",
                              str(tmp_path / "all.o")], capture_output=True, text=True).stdout
    assert " T kml_fully_connected_s8" in defined
    assert " T wand_pz_kml_fully_connected_s8" in defined

    def fmas(std: str, extra: list[str]) -> int:
        o = tmp_path / f"pz{std}{len(extra)}.o"
        subprocess.run([gcc, *nano, f"-std={std}", "-O2", *extra, f"-I{lib / 'src'}", "-c",
                        str(lib / "src" / "wand" / "personalize" / "wand_personalize.c"),
                        "-o", str(o)],
                       check=True)
        dis = subprocess.run([H.need("arm-none-eabi-objdump"), "-d", str(o)],
                             capture_output=True, text=True, check=True).stdout
        return len(re.findall(r"\svfn?m[as]\.f32", dis))

    assert fmas("gnu11", []) == 0
    # the oracle that the check can see a contraction: the same source without its pragma
    text = (lib / "src" / "wand" / "personalize" / "wand_personalize.c").read_text()
    plain = text.replace('#pragma GCC optimize("fp-contract=off")', "")
    assert plain != text
    (lib / "src" / "wand" / "personalize" / "wand_personalize.c").write_text(plain)
    assert fmas("gnu11", []) > 0


@pytest.mark.parametrize("board", ["nano33ble", "pico"])
def test_the_package_with_personalize_classifies_in_the_emulator_as_on_the_host(tmp_path,
                                                                               board):
    """The build manifest's sources (personalize/ with its renamed portable kernels beside the
    board's kernel set: armv7em on the Cortex-M4F, armv6m on the Cortex-M0+) link bare-metal;
    classify (through the RAM slot, factory head) gives the host's scores bit for bit."""
    from kiloml.deploy import run_emulator, run_host

    spec = dataclasses.replace(H.imu_spec(board=board), personalize=Settings(epochs=3))
    pkg = deploy_c(spec, tmp_path / "wand").path
    raw = H.imu_windows(per_label=1)
    host = run_host(pkg, raw)
    emu = run_emulator(pkg, raw)
    np.testing.assert_array_equal(emu.scores, host.scores)
    np.testing.assert_array_equal(emu.predictions, host.predictions)


def test_the_readme_builds_of_a_personalize_package_work(tmp_path):
    """The README's host build (personalize/*.c included) links and the example runs; its
    cross build (`-c` of every folder into one directory) gives no two objects of one name
    (the update's kernel copies are <name>_pz_kml_*.c) and links with nothing unresolved."""
    import shlex

    spec = dataclasses.replace(H.imu_spec(), personalize=Settings(epochs=3))
    pkg = deploy_c(spec, tmp_path / "wand").path
    readme = (pkg / "README.md").read_text()
    host = next(ln for ln in readme.splitlines() if ln.startswith("gcc -std=c99"))
    assert "personalize/*.c" in host
    r = subprocess.run(host + " -Wall -Wextra -Wconversion -Werror && ./example_main",
                       shell=True, cwd=pkg, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.split()[0] in H.IMU_LABELS, r.stderr
    lines = readme.splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.startswith("arm-none-eabi-gcc"))
    cross = lines[at].rstrip("\\ ") + " " + lines[at + 1].strip()
    assert "personalize/*.c" in cross
    out = tmp_path / "obj"
    out.mkdir()
    srcs = [str(p) for g in shlex.split(cross) if "*" in g for p in sorted(pkg.glob(g))]
    flags = [a for a in shlex.split(cross) if "*" not in a and a != "-c"][1:]
    r = subprocess.run([H.need("arm-none-eabi-gcc"), *flags, "-Wall", "-Wextra", "-Wconversion",
                        "-Werror", f"-I{pkg}", f"-I{pkg / 'model' / 'armv7em'}", "-c", *srcs],
                       cwd=out, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    objs = sorted(out.glob("*.o"))
    assert len(objs) == len(srcs)                         # no object overwritten
    r = subprocess.run([H.need("arm-none-eabi-ld"), "-r", *map(str, objs), "-o", "all.o"],
                       cwd=out, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    nm = subprocess.run([H.need("arm-none-eabi-nm"), "-u", "all.o"], cwd=out,
                        capture_output=True, text=True).stdout
    assert "kml_" not in nm and "wand_" not in nm
