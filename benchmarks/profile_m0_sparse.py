#!/usr/bin/env python3
"""Cortex-M0+ (Raspberry Pi Pico): what skipping zero column values is worth, and its worst case.

The armv6m conv kernel skips a pixel's window values equal to the input zero point (x + offset
= 0) in layers whose input is a fused ReLU / ReLU6 output (``armv6m_backend.sparse_input``):
how many instructions that saves depends on the data. Per MLPerf Tiny model, one inference
on seeded random inputs (as benchmarks/profile_mlperf.py), three builds:

* skip: the default kernels (pairs of the non-zero values only);
* off: the dense loop everywhere (no zero skipping; the layers that pass --prefer's rate take
  the packed weight pairs over the whole column);
* all: the sparse loop with a pair for every value, zeros too: the skipping kernels' worst
  case (an input for which no value of those layers is at the zero point).

Then KWS on real speech: ``--clips N`` clips per label of speech_commands (test release, the
first N files of each of the 12 label folders), features from the mlperf-kws MFCC preset
(kiloml's, ~92 % with this model on unseen speakers), quantized to the model input; min /
median / max over the clips, every output compared with the reference interpreter.

Each row is a real arm-none-eabi-gcc -O2 build run in the Unicorn emulator (instructions
counted, cycles from kiloml's cycle model: an estimate).
``--prefer speed|size|balanced`` (default balanced, kiloml's default) builds every row with
that flash-for-speed preference (`kiloml profile --prefer`), e.g. the packed weight pairs on
every layer under ``speed``.

Run: .venv/bin/python benchmarks/profile_m0_sparse.py [--clips N] [--models a,b] [--prefer P]
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from kiloml.codegen.armv6m_backend import Armv6mBackend
from kiloml.codegen.c import io_specs
from kiloml.io.tflite_reader import read_tflite
from kiloml.ir.graph import DTYPES
from kiloml.ir.interpreter import Interpreter
from kiloml.ir.ops import REGISTRY
from kiloml.targets.emulator import emulate
from kiloml.targets.profile import build_elf, profile_graph

SHARED = Path(os.environ.get("KILOML_SHARED", Path(__file__).resolve().parents[2] / "shared"))
MODELS = ["kws_ref_model", "vww_96_int8", "pretrainedResnet_quant", "ad01_int8"]
LABELS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "_silence_",
          "_unknown_"]


def _arg(flag: str, default: str) -> str:
    return sys.argv[sys.argv.index(flag) + 1] if flag in sys.argv else default


def _mode_rows(models: list[str], prefer: str) -> None:
    print(f"{'model':24s} {'mode':5s} {'instructions':>13s} {'cycles(est)':>12s} {'MAC/cyc':>8s} "
          f"{'ms@133':>8s} {'RAM':>7s} match")
    for name in models:
        g = read_tflite(SHARED / "models" / "mlperf_tiny" / f"{name}.tflite")
        for mode in ("skip", "off", "all"):
            Armv6mBackend.sparse_columns = mode
            try:
                r = profile_graph(g, "pico", prefer=prefer)
            finally:
                Armv6mBackend.sparse_columns = "skip"
            ok = r["output_matches_reference"] and r["layers_match_reference"]
            print(f"{name:24s} {mode:5s} {r['instructions']:>13,} {r['cycles']:>12,} "
                  f"{r['macs_per_cycle']:>8.3f} {r['latency_ms']:>8.2f} {r['ram_bytes']:>7,} {ok}")


def _speech_inputs(g, clips: int) -> list[tuple[str, np.ndarray]]:
    from kiloml.data.wav import read_wav
    from kiloml.dsp import make_block
    from kiloml.dsp.apply import apply_block

    t = g.tensors[g.inputs[0]]
    scale, zp = float(t.quant.scale[0]), int(t.quant.zero_point[0])
    block = make_block(preset="mlperf-kws")
    out = []
    for lab in LABELS:
        for p in sorted((SHARED / "data" / "speech_commands" / lab).glob("*.wav"))[:clips]:
            d = read_wav(p).data[:16000, 0]
            z = np.zeros(16000, np.float64)
            z[:len(d)] = d / 32768.0
            f = apply_block(block, z[None, :, None])[0]
            q = np.clip(np.round(f / scale) + zp, -128, 127).astype(np.int8)
            out.append((f"{lab}/{p.name}", q.reshape(t.shape)))
    return out


def _speech_rows(clips: int, prefer: str) -> None:
    g = read_tflite(SHARED / "models" / "mlperf_tiny" / "kws_ref_model.tflite")
    macs = sum(REGISTRY[n.op].macs(g, n) for n in g.nodes)
    inputs = _speech_inputs(g, clips)
    print(f"\nkws_ref_model on real speech ({len(inputs)} clips, {clips} per label), pico:")
    print(f"{'mode':5s} {'instr min':>11s} {'median':>11s} {'max':>11s} {'cycles max':>11s} "
          f"{'MAC/cyc min':>11s} {'ms max':>7s} all match")
    for mode in ("skip", "off", "all"):
        Armv6mBackend.sparse_columns = mode
        ins, cyc, ok = [], [], True
        try:
            for _, x in inputs:
                with tempfile.TemporaryDirectory(prefix="kiloml_sparse_") as wd:
                    b = build_elf(g, "cortex-m0plus", [x], Path(wd), prefer=prefer)
                    _, outs = io_specs(b.result.graph)
                    emu = emulate(b.elf, "cortex-m0plus", read_back={
                        f"kml_profile_{s.name}": s.tensor.nbytes for s in outs})
                want = Interpreter(g).run(x)
                for s, w in zip(outs, want):
                    got = np.frombuffer(emu.memory[f"kml_profile_{s.name}"],
                                        DTYPES[s.tensor.dtype]).reshape(s.tensor.shape)
                    ok = ok and bool(np.array_equal(got, w))
                ins.append(emu.instructions)
                cyc.append(emu.cycles)
        finally:
            Armv6mBackend.sparse_columns = "skip"
        print(f"{mode:5s} {min(ins):>11,} {int(np.median(ins)):>11,} {max(ins):>11,} "
              f"{int(max(cyc)):>11,} {macs / max(cyc):>11.3f} {max(cyc) / 133e3:>7.2f} {ok}")


def main() -> None:
    models = _arg("--models", ",".join(MODELS)).split(",")
    prefer = _arg("--prefer", "balanced")
    print(f"--prefer {prefer}")
    _mode_rows(models, prefer)
    if "kws_ref_model" in models and int(_arg("--clips", "2")) > 0:
        _speech_rows(int(_arg("--clips", "2")), prefer)


if __name__ == "__main__":
    main()
