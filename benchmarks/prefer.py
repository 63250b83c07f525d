#!/usr/bin/env python3
"""Flash against speed: the MLPerf Tiny models built with each ``prefer`` (speed, size,
balanced) for the armv7em kernels.

``prefer`` (``kiloml compile/profile/deploy --prefer``, kiloml.codegen.armv7em_choice) picks
per node the kernel and weight layout that minimize estimated cycles + rate x flash bytes
(rate: speed 0, balanced 32, size 128 cycles per byte; a kernel's code counted once however
many nodes call it). Each row is one real build run once in the emulator (cycles from the
cycle model, every layer checked against the reference interpreter); flash overhead = flash -
weights; "est. err" is the largest error of the cycle formulas over the layers that had a
choice (estimate vs measured); "choices" counts the options taken (column / dw18: the
smaller ones; 1x1, rgb, dw40: the faster kernels or records; -int16: int16 weights).

Run: .venv/bin/python benchmarks/prefer.py [--board ID]   (default nucleo-l4r5zi, Cortex-M4)
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path

from kiloml.io.tflite_reader import read_tflite
from kiloml.targets.profile import profile_graph

SHARED = Path(os.environ.get("KILOML_SHARED", Path(__file__).resolve().parents[2] / "shared"))
MODELS = ["kws_ref_model", "vww_96_int8", "pretrainedResnet_quant", "ad01_int8"]
PREFER = ("speed", "balanced", "size")


def main() -> None:
    board = sys.argv[sys.argv.index("--board") + 1] if "--board" in sys.argv else "nucleo-l4r5zi"
    head = (f"{'model':22s} {'prefer':8s} {'flash':>8s} {'overhead':>8s} {'cycles(est)':>12s} "
            f"{'vs speed':>8s} {'MAC/cyc':>7s} {'est.err':>7s} {'match':>5s}  choices")
    print(f"board {board}")
    print(head)
    print("-" * len(head))
    rows = {}
    for name in MODELS:
        g = read_tflite(SHARED / "models" / "mlperf_tiny" / f"{name}.tflite")
        rows[name] = {pr: profile_graph(g, board, prefer=pr) for pr in PREFER}
        for pr, r in rows[name].items():
            ok = r["output_matches_reference"] and r["layers_match_reference"]
            ch = r["choices"]
            err = max((abs(c["cycles_est"] - c["cycles"]) / c["cycles"] for c in ch),
                      default=0.0)
            names = " ".join(f"{k}:{v}" for k, v in sorted(Counter(c["option"]
                                                                    for c in ch).items()))
            print(f"{name:22s} {pr:8s} {r['flash_bytes']:>8,} {r['flash_overhead_bytes']:>8,} "
                  f"{r['cycles']:>12,} {r['cycles'] / rows[name]['speed']['cycles']:>8.3f} "
                  f"{r['macs_per_cycle']:>7.3f} {err:>7.1%} {str(ok):>5s}  {names or '-'}")
    vww, kws = rows["vww_96_int8"], rows["kws_ref_model"]
    slow = vww["size"]["cycles"] / vww["speed"]["cycles"] - 1
    print()
    size_ok = vww["size"]["flash_overhead_bytes"] <= 40960 and slow <= 0.15
    bal_ok = kws["balanced"]["flash_overhead_bytes"] <= 10240
    print(f"goal VWW size: overhead {vww['size']['flash_overhead_bytes']:,} B (<= 40,960) at "
          f"{slow:+.1%} cycles vs speed (<= +15 %): {'met' if size_ok else 'NOT met'}")
    print(f"goal KWS balanced: overhead {kws['balanced']['flash_overhead_bytes']:,} B "
          f"(<= 10,240): {'met' if bal_ok else 'NOT met'}")
    print("VWW per layer (node option: measured cycles):")
    for pr in PREFER:
        print(f"  {pr:8s} " + ", ".join(f"{c['node']} {c['option']}: {c['cycles']:,}"
                                        for c in vww[pr]["choices"]))


if __name__ == "__main__":
    main()
