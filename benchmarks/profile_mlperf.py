#!/usr/bin/env python3
"""MLPerf Tiny models on the boards' cores: each core's kernels (and optionally portable).

Default: NUCLEO-L4R5ZI (Cortex-M4 @ 120 MHz). ``--all-cores``: one board per core the
emulator runs: NUCLEO-L4R5ZI (M4), NUCLEO-H743ZI (M7 @ 480 MHz), nRF5340 DK (M33 @ 128 MHz),
Raspberry Pi Pico (M0+ @ 133 MHz); ``--board ID`` for one board.

Each row is one real build (arm-none-eabi-gcc -O2) run for one inference in the Unicorn
emulator: executed instructions are counted, cycles are estimated with kiloml's cycle model
(src/kiloml/targets/cycles.py), the output is compared with the reference interpreter.
Anchors: TFLM + CMSIS-NN instructions measured the same way (issues 9 and 17: Cortex-M4 and
Cortex-M0+ builds; none for M7/M33), STM32Cube.AI 10.2 latency on the L4R5ZI (published
MLPerf Tiny results).
``--prefer speed|size|balanced``: the kernels' flash-for-speed choice (default balanced,
as kiloml compile / profile / deploy).
Run: .venv/bin/python benchmarks/profile_mlperf.py [--all-cores | --board ID] [--portable-too]
     [--prefer P] [--json]
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from kiloml.io.tflite_reader import read_tflite
from kiloml.targets.profile import default_runtime, load_boards, profile_graph

SHARED = Path(os.environ.get("KILOML_SHARED", Path(__file__).resolve().parents[2] / "shared"))
MODELS = ["kws_ref_model", "vww_96_int8", "pretrainedResnet_quant", "ad01_int8"]
TFLM_INSTR = {   # core -> model -> TFLM + CMSIS-NN instructions for one Invoke()
    "cortex-m4": {"kws_ref_model": 7.70e6, "vww_96_int8": 24.10e6,
                  "pretrainedResnet_quant": 29.86e6, "ad01_int8": 0.58e6},
    "cortex-m0plus": {"kws_ref_model": 28.99e6, "vww_96_int8": 86.91e6,
                      "pretrainedResnet_quant": 97.56e6, "ad01_int8": 1.76e6},
}
CUBEAI_MS = {"kws_ref_model": 43.4, "vww_96_int8": 89.4, "pretrainedResnet_quant": 165.7}
BOARD = "nucleo-l4r5zi"
ALL_CORES = ["nucleo-l4r5zi", "stm32h743", "nrf5340dk", "pico"]


def _boards() -> list[str]:
    if "--all-cores" in sys.argv:
        return ALL_CORES
    if "--board" in sys.argv:
        return [sys.argv[sys.argv.index("--board") + 1]]
    return [BOARD]


def main() -> None:
    db = load_boards()
    prefer = sys.argv[sys.argv.index("--prefer") + 1] if "--prefer" in sys.argv else "balanced"
    rows = []
    for board in _boards():
        core = db[board].core
        runtimes = [default_runtime(core)]
        if "--portable-too" in sys.argv and runtimes[0] != "portable":
            runtimes.append("portable")
        for name in MODELS:
            g = read_tflite(SHARED / "models" / "mlperf_tiny" / f"{name}.tflite")
            for rt in runtimes:
                t0 = time.time()
                r = profile_graph(g, board, runtime=rt, prefer=prefer)
                r["emulation_s"] = round(time.time() - t0, 1)
                r["model"] = name
                tflm = TFLM_INSTR.get(core, {}).get(name)
                r["tflm_instructions"] = tflm
                r["vs_tflm"] = round(r["instructions"] / tflm, 3) if tflm else None
                r["cubeai_ms"] = CUBEAI_MS.get(name) if board == "nucleo-l4r5zi" else None
                r["n_layers"] = len(r.pop("layers"))
                rows.append(r)
    if "--json" in sys.argv:
        print(json.dumps(rows, indent=2))
        return
    head = (f"{'board':14s} {'model':22s} {'kernels':8s} {'instr':>11s} {'vs TFLM':>7s} "
            f"{'cycles(est)':>12s} {'MAC/cyc':>7s} {'ms':>8s} {'CubeAI ms':>9s} {'uJ':>8s} "
            f"{'flash':>8s} {'overhead':>8s} {'RAM':>7s} {'match':>5s} {'layers':>7s} "
            f"{'emu s':>5s}")
    print(head)
    print("-" * len(head))
    for r in rows:
        cube = f"{r['cubeai_ms']:.1f}" if r["cubeai_ms"] else "-"
        vs = f"{r['vs_tflm']:.2f}" if r["vs_tflm"] is not None else "-"
        uj = f"{r['energy_uj']:.0f}" if r["energy_uj"] is not None else "n/a"
        print(f"{r['board']:14s} {r['model']:22s} {r['runtime']:8s} {r['instructions']:>11,} "
              f"{vs:>7s} {r['cycles']:>12,} {r['macs_per_cycle']:>7.3f} "
              f"{r['latency_ms']:>8.2f} {cube:>9s} {uj:>8s} {r['flash_bytes']:>8,} "
              f"{r['flash_overhead_bytes']:>8,} {r['ram_bytes']:>7,} "
              f"{str(r['output_matches_reference']):>5s} {_layers_ok(r):>7s} "
              f"{r['emulation_s']:>5.1f}")


def _layers_ok(r: dict) -> str:
    """Every checked layer's output bit-exact in the emulator: 'k/n' layers, or 'NO'."""
    return f"{r['layers_checked']}/{r['n_layers']}" if r["layers_match_reference"] else "NO"


if __name__ == "__main__":
    main()
