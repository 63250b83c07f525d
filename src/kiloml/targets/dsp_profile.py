"""Profile a DSP block's generated C on a board's core, like ``profile_graph`` does a model.

The block's C (``block.c_sources``) is cross-compiled with arm-none-eabi-gcc -O2 together with
a harness holding one real input window; one call of ``<prefix>_features`` runs in the
emulator between the profiling markers. Instructions are counted and cycles estimated with
the same cycle model as the model's kernels, and the output is compared with the same C built
for the host (``DSPHostBuild``): bit for bit for integer outputs, within float rounding for
float outputs (the Arm build uses newlib's ``logf``/``sqrtf`` and the FPU, the host glibc).

Variant: ``f32`` with the hardware FPU on cores that have one (hard-float build, the FPU
enabled as a device's startup code does), the block's integer ``q15`` variant otherwise when
it has one (MFCC / MFE), else ``f32`` in software floating point.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from kiloml.targets.boards import Board
from kiloml.targets import harness
from kiloml.targets.emulator import emulate

PREFIX = "kml_dsp_block"
HARD_FLOAT = {
    "cortex-m4": ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"],
    "cortex-m7": ["-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-sp-d16"],
    "cortex-m33": ["-mcpu=cortex-m33", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-sp-d16"],
}
# A Cortex-M7 with the double-precision FPU (boards.toml fpu_double: STM32H7, F76x) is built
# as its vendor's projects build it: doubles (and newlib's float math, which computes in
# double) use the FPU; the emulator executes those instructions in a hook (vfp_double.py).
HARD_FLOAT_DOUBLE = {
    "cortex-m7": ["-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-d16"],
}


def hard_float_flags(board: Board) -> list[str]:
    """The hard-float flags of ``board``: its core's, for its FPU's precision."""
    if board.fpu_double and board.core in HARD_FLOAT_DOUBLE:
        return HARD_FLOAT_DOUBLE[board.core]
    return HARD_FLOAT[board.core]


def choose_variant(block, board: Board) -> str:
    if board.fpu and board.core in HARD_FLOAT:
        return "f32"
    return "q15" if "q15" in block.variants else "f32"


def harness_source(in_type: str, out_type: str, window: np.ndarray, n_out: int) -> str:
    """The profiling harness of a DSP block's C: ``window`` as ``kml_dsp_input``, the
    features into ``kml_dsp_output`` (``n_out`` values), one ``<prefix>_features`` call
    between the markers."""
    buffers = [harness.Buffer("kml_dsp_input", in_type, np.asarray(window)),
               harness.Buffer("kml_dsp_output", out_type, None, n_out)]
    return harness.harness_source(
        "kiloml DSP profiling harness: one fixed window, markers around one call",
        f"{PREFIX}.h", buffers, f"{PREFIX}_features(kml_dsp_input, kml_dsp_output)")


def profile_dsp(block, frames: int, channels: int, window: np.ndarray, board: Board,
                variant: str | None = None, workdir: str | Path | None = None) -> dict:
    """One window of ``block`` on ``board`` (a boards.toml entry); see the module doc.

    ``window``: (frames,) audio (float in [-1, 1) for f32, int16 PCM for q15/q31) or
    (frames, channels) float32 sensor data."""
    from kiloml.dsp.host import NP, DSPHostBuild
    from kiloml.targets.profile import PROFILE_FLAGS, energy_uj, elf_sizes

    core = board.core
    variant = variant or choose_variant(block, board)
    block.check_variant(variant)
    in_type, out_type = DSPHostBuild.types(block, variant)
    window = np.ascontiguousarray(window, dtype=NP[in_type])
    out_shape = tuple(block.output_shape(frames, channels))
    n_out = int(np.prod(out_shape))
    out: dict = {"block": block.name, "variant": variant, "frames": frames,
                 "channels": channels, "output_shape": list(out_shape)}
    if core not in PROFILE_FLAGS:
        c = block.cost(frames, channels, variant)
        out.update({"runtime": "analytic-estimate", "estimate": "no cross compiler for this "
                    "core: DSP latency not measured", "ops": c.total_ops, "latency_ms": None,
                    "cycles": None, "instructions": None, "energy_uj": None,
                    "flash_bytes": c.flash_bytes, "ram_bytes": c.ram_bytes,
                    "stack_bytes": None, "output_matches_host": None})
        return out
    hard = variant == "f32" and bool(board.fpu) and core in HARD_FLOAT
    flags = hard_float_flags(board) if hard else PROFILE_FLAGS[core]
    tmp = None if workdir else tempfile.TemporaryDirectory(prefix="kiloml_dspprof_")
    wd = Path(workdir or tmp.name)
    wd.mkdir(parents=True, exist_ok=True)
    try:
        for name, text in block.c_sources(PREFIX, frames, channels, variant,
                                          command="kiloml profile").items():
            (wd / name).write_text(text)
        (wd / "dsp_main.c").write_text(harness_source(in_type, out_type, window, n_out))
        image = harness.build_elf(wd, flags, "dsp.elf", libs=["-lm"])
        nbytes = n_out * np.dtype(NP[out_type]).itemsize
        emu = emulate(image, core, read_back={"kml_dsp_output": nbytes}, fpu=hard)
        host = DSPHostBuild(block, frames, channels, variant).run(window[None])[0]
    finally:
        if tmp is not None:
            tmp.cleanup()
    got = np.frombuffer(emu.memory["kml_dsp_output"], NP[out_type]).reshape(out_shape)
    diff = np.abs(got.astype(np.float64) - host.astype(np.float64))
    if out_type == "float":
        scale = max(float(np.max(np.abs(host))), 1e-30)
        match = bool(np.all(diff <= 1e-4 * scale + 1e-5 * np.abs(host)))
    else:
        match = bool(np.array_equal(got, host))
    sizes = elf_sizes(image)
    harness_flash = sum(image.symbols.get(s, (0, 0))[1] for s in harness.HARNESS_SYMBOLS)
    flash = sizes["flash"] - window.nbytes - harness_flash
    ram = sizes["ram"] + emu.stack_bytes
    lat = emu.cycles / float(board.clock_hz) * 1e3
    out.update({
        "runtime": "hard-float" if hard else ("integer" if variant != "f32" else "soft-float"),
        "instructions": emu.instructions, "cycles": int(round(emu.cycles)),
        "cycles_estimated": True, "latency_ms": round(lat, 4),
        "energy_uj": energy_uj(lat, board), "flash_bytes": int(flash), "ram_bytes": int(ram),
        "stack_bytes": emu.stack_bytes, "output_matches_host": match,
        "max_abs_diff_vs_host": float(diff.max()) if diff.size else 0.0,
    })
    return out


def c_input(block, window: np.ndarray, variant: str) -> np.ndarray:
    """A (frames, channels) float window as the generated C takes it: mono float audio for
    f32, 16-bit PCM for q15/q31 (audio read from 16-bit WAV is exactly k / 32768)."""
    w = window[:, 0] if block.audio else window
    if variant in ("q15", "q31"):
        return np.clip(np.round(np.asarray(w, np.float64) * 32768.0), -32768, 32767).astype(np.int16)
    return np.asarray(w, np.float32)
