"""Checks of a written package: its real C on this host or on a board's core in the emulator,
and the Python path it must equal.

``run_host`` and ``run_emulator`` compile the package's own files (as its ``<name>.json``
lists them) with a small harness that feeds a batch of raw windows through
``<name>_classify``; they also call the DSP function the library uses, so a caller can compare
the features with the numpy block. ``run_python`` is the Python path: the numpy block
(kiloml.dsp.apply.apply_block), the normalizer, ``to_model_input`` and the reference
interpreter on the int8 input (kiloml.compress.quantize.run_int8). Every function returns a
``RunResult(features, scores, predictions)``. With integer audio DSP (q15 / q31) the Python
path computes the features with the block's numpy twin of the integer C
(kiloml.dsp.fixed), so features, scores and predictions equal the device's bit for bit:

    features     (N, *feature shape) float32, the values the model was trained on (int8 DSP
                 output dequantized as apply_block does, Q20 output / 2^20), or None
    scores       (N, classes) float32, the model's outputs dequantized in float32
    predictions  (N,) int64, the top class (ties: the lowest index)
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional

import numpy as np

from kiloml.codegen.host import SANITIZE, WARNINGS, find_cc
from kiloml.compress.quantize import run_int8
from kiloml.deploy.spec import (Q20, DeploySpec, board_flags, find_board, has_heads,
                                head_for_missing)
from kiloml.dsp.apply import apply_block, block_quant
from kiloml.dsp.cgen import c_array
from kiloml.errors import KilomlError, ToolchainError
from kiloml.targets.batch import END_MARKER, END_SYMBOL, INPUT_BASE, build_image, run_image
from kiloml.targets.emulator import emulate
from kiloml.targets.profile import default_runtime, elf_sizes
from kiloml.train.models import to_model_input
from kiloml.train.normalize import Normalizer

# The emulator's budget per window: a one-second KWS window (q31 MFCC in 64-bit arithmetic
# by library calls + DS-CNN) takes well over 100 M instructions on the Cortex-M0+.
MAX_INSTRUCTIONS_PER_WINDOW = 1_000_000_000

NP = {"int8_t": np.int8, "int16_t": np.int16, "int32_t": np.int32, "float": np.float32}


class RunResult(NamedTuple):
    features: Optional[np.ndarray]
    scores: np.ndarray
    predictions: np.ndarray


def load_manifest(package_dir: str | Path) -> dict:
    """The package's ``<name>.json`` (top folder, or ``extras/`` in an Arduino library)."""
    root = Path(package_dir)
    if not root.is_dir():
        raise KilomlError(f"{root}: no such package folder")
    found = []
    for f in sorted(root.glob("*.json")) + sorted((root / "extras").glob("*.json")):
        try:
            meta = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and "kiloml_version" in meta and "build" in meta:
            found.append(meta)
    if len(found) != 1:
        raise KilomlError(f"{root}: not a kiloml C or Arduino package (expected one "
                          f"<name>.json with a 'build' section, found {len(found)})")
    return found[0]


def _raw(meta: dict, raw_windows) -> np.ndarray:
    """Raw windows (N, size) of the package's sample type, checked."""
    x = np.asarray(raw_windows)
    size = int(meta["raw_input"]["size"])
    if x.ndim < 2 or int(np.prod(x.shape[1:])) != size:
        raise KilomlError(f"raw windows: expected (N, {meta['window_samples']}"
                          + ("" if meta["channels"] == 1 and meta["raw_input"]["layout"] ==
                             "samples" else f", {meta['channels']}")
                          + f") values per window, got shape {list(x.shape)}")
    ctype = meta["raw_input"]["ctype"]
    if ctype == "int16_t":
        if x.dtype.kind not in "iu" or (x.size and (x.min() < -32768 or x.max() > 32767)):
            raise KilomlError("raw windows: this package takes 16-bit PCM (integers in "
                              "[-32768, 32767])")
    elif x.dtype.kind not in "iuf":
        raise KilomlError(f"raw windows: numbers expected, got {x.dtype}")
    return np.ascontiguousarray(x.reshape(len(x), size), dtype=NP[ctype])


def features_from_c(meta: dict, q: np.ndarray) -> np.ndarray:
    """The DSP function's output (N, size) -> float32 features (N, *shape) as the Python
    path computes them (see the module doc)."""
    f = meta["features"]
    n = len(q)
    if f["quantization"] is not None:
        y = (q.astype(np.float32) - f["quantization"]["zero_point"]) \
            * np.float32(f["quantization"]["scale"])
    elif f["ctype"] == "int32_t":
        y = q.astype(np.float32) * np.float32(2.0 ** -int(f["frac_bits"]))
    else:
        y = q.astype(np.float32)
    return y.reshape((n,) + tuple(f["shape"]))


def _kernel_set(meta: dict, wanted: str, where: str) -> str:
    sets = meta["build"]["kernel_sets"]
    if wanted in sets:
        return wanted
    for c_everywhere in ("portable", "armv6m"):  # plain C99 (armv6m: its asm is Thumb-1 only)
        if c_everywhere in sets:
            return c_everywhere
    raise KilomlError(f"this package has the model only with the {', '.join(sets)} kernels, "
                      f"which do not build for {where}; deploy the C package (it also holds "
                      "the portable kernels) or a package for a board with this core")


def _c_names(meta: dict) -> dict[str, Any]:
    n = meta["name"]
    f = meta["features"]
    return {"n": n, "raw_t": meta["raw_input"]["ctype"], "feat_t": f["ctype"],
            "nin": int(meta["raw_input"]["size"]), "nfeat": int(np.prod(f["shape"])),
            "ncls": len(meta["labels"]), "ffun": meta["build"]["features_function"],
            "fhdr": meta["build"]["features_header"]}


def _compile_list(root: Path, meta: dict, kset: str) -> tuple[list[Path], list[Path]]:
    b = meta["build"]
    ks = b["kernel_sets"][kset]
    sources = [root / s for s in b["sources"] + ks["sources"]]
    includes = [root] + [root / d for d in b["include_dirs"]] + [root / ks["include_dir"]]
    missing = [str(s) for s in sources if not s.is_file()]
    if missing:
        raise KilomlError(f"{root}: package file missing: {missing[0]}")
    return sources, includes


HOST_HARNESS = """/* kiloml deploy check harness (host): not part of the package */
#include <stdio.h>
#include <stdlib.h>

#include "{n}.h"
#include "{fhdr}"

static {raw_t} raw[{nin}];
static {feat_t} feat[{nfeat}];
static float scores[{ncls}];

int main(int argc, char **argv)
{{
    FILE *fi, *fo;
    long n, i;
    int32_t top;
    if (argc != 5) {{ return 2; }}
    fi = fopen(argv[1], "rb");
    fo = fopen(argv[2], "wb");
    if (!fi || !fo) {{ return 3; }}
    n = atol(argv[3]);
    for (i = 0; i < n; ++i) {{
        if (fread(raw, sizeof raw[0], {nin}, fi) != {nin}) {{ return 4; }}
        if (argv[4][0] == '1') {{
            if ({ffun}(raw, feat) != 0) {{ return 5; }}
            fwrite(feat, sizeof feat[0], {nfeat}, fo);
        }}
        top = (int32_t){n}_classify(raw, scores);
        if (top < 0) {{ return 6; }}
        fwrite(scores, sizeof scores[0], {ncls}, fo);
        fwrite(&top, sizeof top, 1, fo);
    }}
    fclose(fi);
    fclose(fo);
    return 0;
}}
"""


def _split(meta: dict, blob: bytes, n: int, with_features: bool) -> RunResult:
    c = _c_names(meta)
    fbytes = c["nfeat"] * np.dtype(NP[c["feat_t"]]).itemsize if with_features else 0
    per = fbytes + 4 * c["ncls"] + 4
    if len(blob) != n * per:
        raise ToolchainError(f"the package's harness wrote {len(blob)} bytes, expected {n * per}")
    rows = np.frombuffer(blob, np.uint8).reshape(n, per)
    feats = None
    if with_features:
        q = rows[:, :fbytes].copy().view(NP[c["feat_t"]]).reshape(n, c["nfeat"])
        feats = features_from_c(meta, q)
    scores = rows[:, fbytes:fbytes + 4 * c["ncls"]].copy().view(np.float32)
    top = rows[:, fbytes + 4 * c["ncls"]:].copy().view(np.int32).reshape(n)
    return RunResult(feats, scores.reshape(n, c["ncls"]), top.astype(np.int64))


def build_host_exe(root: Path, meta: dict, harness: Path, text: str, opt: str = "-O2",
                   sanitize: bool = False) -> Path:
    """The package at ``root`` (portable kernels) and the harness ``text`` (written to
    ``harness``) built with the host gcc, warnings as errors (``sanitize``: ASan/UBSan);
    the executable beside the harness."""
    sources, includes = _compile_list(root, meta, _kernel_set(meta, "portable", "the host"))
    harness.write_text(text)
    exe = harness.with_suffix("")
    cmd = [find_cc(), *WARNINGS, opt, *(SANITIZE if sanitize else [])]
    for inc in includes:
        cmd += ["-I", str(inc)]
    cmd += [str(s) for s in sources] + [str(harness), "-o", str(exe), "-lm"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise ToolchainError(f"gcc failed on the package:\n{proc.stderr.strip()[:3000]}")
    return exe


def run_host(package_dir: str | Path, raw_windows, sanitize: bool = False,
             features: bool = True, opt: str = "-O2") -> RunResult:
    """The package's C (portable kernels) built with the host gcc, warnings as errors
    (``sanitize``: under ASan/UBSan), run on ``raw_windows`` (N windows of raw samples in the
    package's sample type); see the module doc."""
    root = Path(package_dir)
    meta = load_manifest(root)
    raw = _raw(meta, raw_windows)
    with tempfile.TemporaryDirectory(prefix="kiloml_deploy_host_") as tmp:
        d = Path(tmp)
        exe = build_host_exe(root, meta, d / "kml_deploy_harness.c",
                             HOST_HARNESS.format(**_c_names(meta)), opt=opt, sanitize=sanitize)
        fin, fout = d / "in.bin", d / "out.bin"
        fin.write_bytes(raw.tobytes())
        proc = subprocess.run([str(exe), str(fin), str(fout), str(len(raw)),
                               "1" if features else "0"], capture_output=True, text=True,
                              timeout=1800)
        if proc.returncode != 0:
            raise ToolchainError(f"the package failed on the host (exit {proc.returncode}):\n"
                                 f"{proc.stderr.strip()[:2000]}")
        return _split(meta, fout.read_bytes(), len(raw), features)


def _emulator_harness(meta: dict, chunk: int, with_features: bool) -> str:
    """Reads ``n`` (a uint32 at INPUT_BASE, at most ``chunk``) raw windows from INPUT_BASE + 8
    and writes features, scores and classes to arrays the runner reads back."""
    c = _c_names(meta)
    lines = ["/* kiloml deploy check harness (bare metal): not part of the package */",
             "#include <stdint.h>", "", f'#include "{c["n"]}.h"', f'#include "{c["fhdr"]}"', "",
             f"#define KML_BATCH_BASE 0x{INPUT_BASE:08x}u",
             f"{c['feat_t']} kml_batch_features[{chunk * c['nfeat'] if with_features else 1}];",
             f"float kml_batch_scores[{chunk * c['ncls']}];", f"int32_t kml_batch_top[{chunk}];",
             "int32_t kml_batch_status;", "int main(void);", END_MARKER,
             "int main(void)", "{",
             "    const uint32_t n = *(const volatile uint32_t *)KML_BATCH_BASE;",
             f"    const {c['raw_t']} *raw = (const {c['raw_t']} *)(KML_BATCH_BASE + 8u);",
             "    uint32_t i;",
             f"    if (n > {chunk}u) {{", "        kml_batch_status = 2;",
             f"        {END_SYMBOL}();", "        return 1;", "    }",
             "    for (i = 0; i < n; ++i) {"]
    if with_features:
        lines += [f"        if ({c['ffun']}(raw, &kml_batch_features[i * {c['nfeat']}u]) != 0) {{",
                  "            kml_batch_status = 1;", "        }"]
    lines += ["        kml_batch_top[i] = (int32_t)" + c["n"] + "_classify(raw, "
              f"&kml_batch_scores[i * {c['ncls']}u]);",
              f"        raw += {c['nin']}u;", "    }", f"    {END_SYMBOL}();", "    return 0;",
              "}", ""]
    return "\n".join(lines)


def _fpu(flags: list[str]) -> bool:
    return any(f.startswith("-mfpu") for f in flags)


def _board(meta: dict, board) -> tuple[str, dict, list[str]]:
    board_id, b = find_board(board if board is not None else meta["board"]["id"])
    flags = board_flags(board_id, str(b["core"]))
    if flags is None:
        raise KilomlError(f"board {board_id}: kiloml has no cross compiler or emulator for its "
                          f"{b['core']} core")
    return board_id, b, flags


def run_emulator(package_dir: str | Path, raw_windows, board: Any = None,
                 features: bool = True, timeout_s: float = 600.0, chunk: int = 32,
                 workdir: str | Path | None = None,
                 on_progress: Optional[Callable[[int], None]] = None) -> RunResult:
    """The package's C cross-compiled for ``board``'s core (an id of boards.toml or a board
    dict; default: the package's board) with its compiler flags and the kernel set that core
    uses, linked bare-metal once and run in the emulator on ``raw_windows``, ``chunk`` windows
    per run, each run bounded by ``timeout_s`` seconds (``on_progress(windows done)`` after each);
    see the module doc."""
    root = Path(package_dir)
    meta = load_manifest(root)
    raw = _raw(meta, raw_windows)
    board_id, b, flags = _board(meta, board)
    core = str(b["core"])
    kset = _kernel_set(meta, default_runtime(core), f"{board_id} ({core})")
    sources, includes = _compile_list(root, meta, kset)
    c = _c_names(meta)
    chunk = max(1, min(int(chunk), len(raw)))
    fsize = np.dtype(NP[c["feat_t"]]).itemsize
    read_back = {"kml_batch_features": (chunk * c["nfeat"] if features else 1) * fsize,
                 "kml_batch_scores": 4 * chunk * c["ncls"], "kml_batch_top": 4 * chunk,
                 "kml_batch_status": 4}
    tmp = None if workdir else tempfile.TemporaryDirectory(prefix="kiloml_deploy_emu_")
    d = Path(workdir or tmp.name)
    feats, scores, tops = [], [], []
    try:
        d.mkdir(parents=True, exist_ok=True)
        harness = d / "kml_deploy_harness.c"
        harness.write_text(_emulator_harness(meta, chunk, features))
        image = build_image(sources + [harness], includes, flags, d)
        for at in range(0, len(raw), chunk):
            part = raw[at:at + chunk]
            n = len(part)
            got = run_image(image, core, read_back, fpu=_fpu(flags), timeout_s=timeout_s,
                            input_data=np.array([n, 0], np.uint32).tobytes() + part.tobytes(),
                            max_instructions=n * MAX_INSTRUCTIONS_PER_WINDOW)
            if np.frombuffer(got["kml_batch_status"], np.int32)[0] != 0:
                raise ToolchainError(f"{board_id}: the DSP function reported an error in the "
                                     "emulator")
            top = np.frombuffer(got["kml_batch_top"], np.int32)[:n].astype(np.int64)
            if (top < 0).any():
                raise ToolchainError(f"{board_id}: {c['n']}_classify returned {int(top.min())} "
                                     "in the emulator")
            tops.append(top)
            scores.append(np.frombuffer(got["kml_batch_scores"], np.float32)[:n * c["ncls"]]
                          .reshape(n, c["ncls"]))
            if features:
                q = np.frombuffer(got["kml_batch_features"], NP[c["feat_t"]])[:n * c["nfeat"]]
                feats.append(features_from_c(meta, q.reshape(n, c["nfeat"])))
            if on_progress is not None:
                on_progress(at + n)
    finally:
        if tmp is not None:
            tmp.cleanup()
    return RunResult(np.concatenate(feats) if features else None, np.concatenate(scores),
                     np.concatenate(tops))


FOOTPRINT_HARNESS = """/* kiloml footprint harness: one classification between the markers */
#include <stdint.h>

#include "{n}.h"

static const {raw_t} kml_footprint_raw[{nin}] = {{
{values}
}};
float kml_footprint_scores[{ncls}];
int32_t kml_footprint_top;
int main(void);
__attribute__((noinline)) void kml_profile_begin(void);
__attribute__((noinline)) void kml_profile_end(void);
void kml_profile_begin(void) {{ __asm volatile ("" ::: "memory"); }}
void kml_profile_end(void) {{ __asm volatile ("" ::: "memory"); }}
int main(void)
{{
    kml_profile_begin();
    kml_footprint_top = (int32_t){n}_classify(kml_footprint_raw, kml_footprint_scores);
    kml_profile_end();
    return 0;
}}
"""


def footprint(package_dir: str | Path, board: Any = None, window=None,
              run: bool = True) -> dict:
    """What the package costs on ``board`` (its flags and kernel set), linked bare-metal with a
    minimal ``main`` and the profiler's startup code: ``flash_bytes`` and ``static_ram_bytes``
    measured from the ELF's sections (the window the harness holds excluded, its few bytes of
    code included). With ``run``, one ``<name>_classify`` on ``window`` (one raw window; zeros
    by default) runs in the profiling emulator: ``stack_bytes`` measured, ``instructions``
    counted, ``cycles`` and ``latency_ms`` estimated with kiloml's cycle model
    (kiloml.targets.cycles) and the board's clock."""
    root = Path(package_dir)
    meta = load_manifest(root)
    board_id, b, flags = _board(meta, board)
    core = str(b["core"])
    kset = _kernel_set(meta, default_runtime(core), f"{board_id} ({core})")
    sources, includes = _compile_list(root, meta, kset)
    c = _c_names(meta)
    raw = _raw(meta, np.zeros((1, c["nin"])) if window is None else np.asarray(window)[None])
    with tempfile.TemporaryDirectory(prefix="kiloml_deploy_size_") as tmp:
        d = Path(tmp)
        harness = d / "kml_footprint.c"
        harness.write_text(FOOTPRINT_HARNESS.format(values=c_array(raw[0], c["raw_t"]), **c))
        image = build_image(sources + [harness], includes, flags, d)
        sizes = elf_sizes(image)
        out = {"board": board_id, "core": core, "kernels": kset, "flags": flags,
               "flash_bytes": int(sizes["flash"]) - raw.nbytes,
               "static_ram_bytes": int(sizes["ram"])}
        if run:
            emu = emulate(image, core, fpu=_fpu(flags), read_back={"kml_footprint_top": 4})
            top = int(np.frombuffer(emu.memory["kml_footprint_top"], np.int32)[0])
            if top < 0:
                raise ToolchainError(f"{board_id}: {c['n']}_classify returned {top}")
            out.update({"stack_bytes": int(emu.stack_bytes),
                        "ram_bytes": int(sizes["ram"]) + int(emu.stack_bytes),
                        "instructions": int(emu.instructions),
                        "cycles": int(round(emu.cycles)), "cycles_estimated": True,
                        "latency_ms": round(emu.cycles / float(b["clock_hz"]) * 1e3, 3)})
    return out


def run_python(spec: DeploySpec, raw_windows, missing: int = 0) -> RunResult:
    """The Python path on the same raw windows as the C (see the module doc): 16-bit PCM is
    k / 32768 as the WAV reader gives it, float samples are taken as they are.

    ``missing`` (multi-sensor): the twin of ``<name>_classify_sensors`` with the sensors of
    that bit mask NULL (bit k: sensor k of ``spec.sensors``): their channels are zeroed and,
    under the branch-head policy, the head ``head_for_missing`` picks answers; 0 is
    ``<name>_classify``."""
    block = spec.block
    x = np.asarray(raw_windows)
    if missing:
        x = zero_sensors(spec, x, missing)
    n = len(x)
    if block.audio and spec.dsp_variant in ("q15", "q31"):
        # the integer DSP's numpy twin: the C's int8 / Q20 output bit for bit
        feats = block_output_features(spec, block.features(x.reshape(n, int(spec.frames)),
                                                           spec.dsp_variant))
    else:
        if block.audio:
            frames = x.reshape(n, int(spec.frames)).astype(np.float32)[..., None]
        else:
            frames = x.reshape(n, int(spec.frames), int(spec.channels)).astype(np.float32)
        feats = apply_block(block, frames)
    return classify_features(spec, feats, missing)


def sensors_to_grid(spec: DeploySpec, buffers) -> np.ndarray:
    """The twin of ``<name>_classify_sensors`` / ``_stream_push_sensors`` on buffers at the
    sensors' own rates: ``buffers`` (one per sensor of ``spec.sensors``, in order) of shape
    (..., frames / k, axes) for a sensor at ``sample_rate / k``, None for a missing one ->
    the (..., frames, channels) grid frames the C assembles: each sample held for its k grid
    frames (the DSP reads one frame in k, from the window's first), a missing sensor's
    channels zeros. Run ``run_python`` (with the missing mask) or the stream twin on them."""
    from kiloml.deploy.spec import sensor_decimation

    dec = sensor_decimation(spec)
    if len(buffers) != len(spec.sensors):
        raise KilomlError(f"{len(buffers)} buffers for the sensors "
                          f"{[nm for nm, _ in spec.sensors]}")
    ref = next(np.asarray(b) for b in buffers if b is not None)
    d0 = dec[next(k for k, b in enumerate(buffers) if b is not None)]
    lead, frames = ref.shape[:-2], ref.shape[-2] * d0
    parts = []
    for (nm, axes), d, b in zip(spec.sensors, dec, buffers):
        if b is None:
            parts.append(np.zeros(lead + (frames, axes), np.float32))
            continue
        b = np.asarray(b, np.float32)
        if b.shape[:-2] != lead or b.shape[-2] * d != frames or b.shape[-1] != axes:
            raise KilomlError(f"sensor {nm}: buffer {b.shape}, expected "
                              f"{lead + (frames // d, axes)}")
        parts.append(np.repeat(b, d, axis=-2))
    return np.concatenate(parts, axis=-1)


def zero_sensors(spec: DeploySpec, raw_windows, missing: int) -> np.ndarray:
    """Raw windows (N, frames, channels) or (N, frames x channels) with the channels of the
    sensors in the bit mask ``missing`` set to zeros, as ``<name>_classify_sensors`` does for
    a NULL buffer."""
    if not spec.sensors or not 0 <= int(missing) < (1 << len(spec.sensors)):
        raise KilomlError(f"missing mask {missing}: the model has sensors "
                          f"{[nm for nm, _ in spec.sensors]}")
    x = np.array(raw_windows, copy=True)
    v = x.reshape(len(x), int(spec.frames), int(spec.channels))
    first = 0
    for k, (_, axes) in enumerate(spec.sensors):
        if int(missing) >> k & 1:
            v[:, :, first:first + axes] = 0
        first += axes
    return x


def block_output_features(spec: DeploySpec, q: np.ndarray) -> np.ndarray:
    """The integer DSP's int8 / Q20 output -> float32 features as training computed them."""
    bq = block_quant(spec.block)
    return ((q.astype(np.float32) - bq[1]) * np.float32(bq[0]) if bq is not None
            else q.astype(np.float32) * np.float32(2.0 ** -Q20))


def classify_features(spec: DeploySpec, feats: np.ndarray, missing: int = 0) -> RunResult:
    """Float32 features (N, *shape) through the normalizer, the layout and the int8 model
    (reference interpreter): the second half of ``run_python``. A model with a head per
    sensor (``spec.missing`` = ``branch-head`` or ``fallback``) answers with the head that
    ``head_for_missing`` picks for the bit mask ``missing`` (the fused head for 0)."""
    n = len(feats)
    norm = spec.normalizer if isinstance(spec.normalizer, Normalizer) else \
        Normalizer.from_state({"mean": 0.0, "std": 1.0, **spec.normalizer})
    q = run_int8(spec.graph, to_model_input(norm(feats), spec.layout), dequantize=False)
    h = head_for_missing(len(spec.sensors), missing) if has_heads(spec) else 0
    if isinstance(q, list):     # several outputs: the heads, the fused one first
        q = q[h]
    q = q.reshape(n, -1)
    tout = spec.graph.tensors[spec.graph.outputs[h]]
    scores = (q.astype(np.int32) - tout.zero_point).astype(np.float32) * np.float32(tout.scale)
    return RunResult(feats, scores, q.argmax(axis=1).astype(np.int64))
