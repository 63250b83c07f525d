#!/usr/bin/env python3
"""Flash against speed: the MLPerf Tiny models built with each ``prefer`` (speed, size,
balanced) for the armv7em kernels.

``prefer`` (kiloml.codegen.c.generate_c, kiloml.targets.profile.profile_graph) decides the
kernel choices that trade flash for speed: "speed" links kml_conv2d_1x1_s8 (straight code)
for every 1x1 layer it fits and gives int16 weights to every layer that can take them, "size"
neither, nor the depthwise _g6 entries (40-byte records per channel, not 18) nor
kml_conv2d_rgb_s8, "balanced" follows armv7em.MIN_WEIGHTS_1X1 (64 KB of weights) and
EXTENDED_MAX_WEIGHTS (4 KB per layer). Each row is one real build run once in the emulator
(cycles from the cycle model, every layer checked against the reference interpreter); flash
overhead = flash - weights.

Run: .venv/bin/python benchmarks/prefer.py [--board ID]   (default nucleo-l4r5zi, Cortex-M4)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from kiloml.io.tflite_reader import read_tflite
from kiloml.targets.profile import profile_graph

SHARED = Path(os.environ.get("KILOML_SHARED", Path(__file__).resolve().parents[2] / "shared"))
MODELS = ["kws_ref_model", "vww_96_int8", "pretrainedResnet_quant", "ad01_int8"]
PREFER = ("speed", "balanced", "size")


def main() -> None:
    board = sys.argv[sys.argv.index("--board") + 1] if "--board" in sys.argv else "nucleo-l4r5zi"
    head = (f"{'model':22s} {'prefer':8s} {'flash':>8s} {'overhead':>8s} {'cycles(est)':>12s} "
            f"{'vs speed':>8s} {'MAC/cyc':>7s} {'1x1 layers':>10s} {'match':>5s}")
    print(f"board {board}")
    print(head)
    print("-" * len(head))
    for name in MODELS:
        g = read_tflite(SHARED / "models" / "mlperf_tiny" / f"{name}.tflite")
        rows = {pr: profile_graph(g, board, prefer=pr) for pr in PREFER}
        for pr, r in rows.items():
            n1 = sum(x["kernel"] == "kml_conv2d_1x1_s8" for x in r["layers"])
            ok = r["output_matches_reference"] and r["layers_match_reference"]
            print(f"{name:22s} {pr:8s} {r['flash_bytes']:>8,} {r['flash_overhead_bytes']:>8,} "
                  f"{r['cycles']:>12,} {r['cycles'] / rows['speed']['cycles']:>8.3f} "
                  f"{r['macs_per_cycle']:>7.3f} {n1:>10d} {str(ok):>5s}")


if __name__ == "__main__":
    main()
