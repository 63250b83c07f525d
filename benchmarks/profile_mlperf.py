#!/usr/bin/env python3
"""MLPerf Tiny models on NUCLEO-L4R5ZI (Cortex-M4 @ 120 MHz): optimized vs portable kernels.

Each row is one real build (arm-none-eabi-gcc -O2) run for one inference in the Unicorn
emulator: executed instructions are counted, cycles are estimated with kiloml's cycle model
(src/kiloml/targets/cycles.py), the output is compared with the reference interpreter.
Anchors: TFLM + CMSIS-NN instructions measured the same way (from the issue), STM32Cube.AI
10.2 latency on this board (published MLPerf Tiny results).
Run: .venv/bin/python benchmarks/profile_mlperf.py [--portable-too] [--json]
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from kiloml.io.tflite_reader import read_tflite
from kiloml.targets.profile import profile_graph

SHARED = Path(os.environ.get("KILOML_SHARED", Path(__file__).resolve().parents[2] / "shared"))
MODELS = ["kws_ref_model", "vww_96_int8", "pretrainedResnet_quant", "ad01_int8"]
TFLM_INSTR = {"kws_ref_model": 7.70e6, "vww_96_int8": 24.10e6, "pretrainedResnet_quant": 29.86e6,
              "ad01_int8": 0.58e6}
CUBEAI_MS = {"kws_ref_model": 43.4, "vww_96_int8": 89.4, "pretrainedResnet_quant": 165.7}
BOARD = "nucleo-l4r5zi"


def main() -> None:
    runtimes = ["armv7em"] + (["portable"] if "--portable-too" in sys.argv else [])
    rows = []
    for name in MODELS:
        g = read_tflite(SHARED / "models" / "mlperf_tiny" / f"{name}.tflite")
        for rt in runtimes:
            t0 = time.time()
            r = profile_graph(g, BOARD, runtime=rt)
            r["emulation_s"] = round(time.time() - t0, 1)
            r["model"] = name
            r["tflm_instructions"] = TFLM_INSTR[name]
            r["vs_tflm"] = round(r["instructions"] / TFLM_INSTR[name], 3)
            r["cubeai_ms"] = CUBEAI_MS.get(name)
            r["n_layers"] = len(r.pop("layers"))
            rows.append(r)
    if "--json" in sys.argv:
        print(json.dumps(rows, indent=2))
        return
    head = (f"{'model':22s} {'kernels':8s} {'instr':>11s} {'vs TFLM':>7s} {'cycles(est)':>12s} "
            f"{'MAC/cyc':>7s} {'ms@120MHz':>9s} {'CubeAI ms':>9s} {'uJ':>8s} {'flash':>8s} "
            f"{'overhead':>8s} {'RAM':>7s} {'match':>5s} {'layers':>7s} {'emu s':>5s}")
    print(head)
    print("-" * len(head))
    for r in rows:
        cube = f"{r['cubeai_ms']:.1f}" if r["cubeai_ms"] else "-"
        print(f"{r['model']:22s} {r['runtime']:8s} {r['instructions']:>11,} {r['vs_tflm']:>7.2f} "
              f"{r['cycles']:>12,} {r['macs_per_cycle']:>7.3f} {r['latency_ms']:>9.2f} {cube:>9s} "
              f"{r['energy_uj']:>8.0f} {r['flash_bytes']:>8,} {r['flash_overhead_bytes']:>8,} "
              f"{r['ram_bytes']:>7,} {str(r['output_matches_reference']):>5s} "
              f"{_layers_ok(r):>7s} {r['emulation_s']:>5.1f}")


def _layers_ok(r: dict) -> str:
    """Every checked layer's output bit-exact in the emulator: 'k/n' layers, or 'NO'."""
    return f"{r['layers_checked']}/{r['n_layers']}" if r["layers_match_reference"] else "NO"


if __name__ == "__main__":
    main()
