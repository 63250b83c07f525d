#!/usr/bin/env python3
"""Arena memory: kiloml's planner vs TensorFlow Lite Micro, per reference model.

For every .tflite under ../shared/models prints kiloml's arena (in-place execution and fusion
on), the op-level lower bound of plain planning, kiloml without in-place execution, TFLM's
"Arena allocation total" and "head" (activations) from ``print_allocations()`` (captured from
file descriptor 2; an x86-64 figure), weights bytes and MACs. "arm7em" is the arena with the
Cortex-M DSP kernels, whose im2col columns and depthwise row rings need scratch. For the
MLPerf Tiny models it adds TFLM's arena_used_bytes on a Cortex-M4 with CMSIS-NN (figures given in the issue) and the
target ratio 0.6.
Run: .venv/bin/python benchmarks/compare_tflm.py [--json]
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from pathlib import Path

from kiloml.workflow.compile import model_macs
from kiloml.codegen.c import generate_c
from kiloml.io.tflite_reader import read_tflite

SHARED = Path(os.environ.get("KILOML_SHARED", Path(__file__).resolve().parents[2] / "shared"))
TFLM_M4 = {"kws_ref_model": 22_820, "vww_96_int8": 100_708, "pretrainedResnet_quant": 54_996,
           "ad01_int8": 2_580}
TARGET = 0.6


def tflm_allocations(path: Path) -> dict[str, int]:
    from tflite_micro.python.tflite_micro import runtime

    it = runtime.Interpreter.from_bytes(path.read_bytes())
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+") as f:
        os.dup2(f.fileno(), 2)
        try:
            it.print_allocations()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        text = f.read()
    out = {}
    for key in ("total", "head", "tail"):
        m = re.search(rf"Arena allocation {key} (\d+) bytes", text)
        out[key] = int(m.group(1)) if m else -1
    return out


def main() -> None:
    rows = []
    for path in sorted((SHARED / "models").glob("*/*.tflite")):
        g = read_tflite(path)
        ours = generate_c(g, "m").plan
        arm = generate_c(g, "m", runtime="armv7em").plan
        plain = generate_c(g, "m", inplace=False).plan
        tflm = tflm_allocations(path)
        m4 = TFLM_M4.get(path.stem)
        rows.append({
            "model": path.stem, "arena_bytes": ours.arena_bytes,
            "arena_armv7em_bytes": arm.arena_bytes,
            "ratio_armv7em_vs_m4": round(arm.arena_bytes / m4, 3) if m4 else None,
            "lower_bound_bytes": ours.lower_bound_bytes, "no_inplace_bytes": plain.arena_bytes,
            "tflm_total_x86": tflm["total"], "tflm_head_x86": tflm["head"],
            "tflm_m4_cmsis": m4, "ratio_vs_m4": round(ours.arena_bytes / m4, 3) if m4 else None,
            "meets_0_6": (ours.arena_bytes <= TARGET * m4) if m4 else None,
            "weights_bytes": g.weights_bytes(), "macs": model_macs(g),
        })
    if "--json" in sys.argv:
        print(json.dumps(rows, indent=2))
        return
    head = (f"{'model':24s} {'arena':>8s} {'arm7em':>8s} {'lowerbd':>8s} {'no-inpl':>8s} {'TFLM x86':>9s} "
            f"{'TFLM head':>9s} {'TFLM M4':>8s} {'ours/M4':>8s} {'arm/M4':>7s} {'<=0.6':>6s} {'weights':>8s} {'MACs':>11s}")
    print(head)
    print("-" * len(head))
    for r in rows:
        m4 = f"{r['tflm_m4_cmsis']:,}" if r["tflm_m4_cmsis"] else "-"
        ratio = f"{r['ratio_vs_m4']:.3f}" if r["ratio_vs_m4"] else "-"
        ok = {True: "yes", False: "NO", None: "-"}[r["meets_0_6"]]
        ratio_arm = f"{r['ratio_armv7em_vs_m4']:.3f}" if r["ratio_armv7em_vs_m4"] else "-"
        print(f"{r['model']:24s} {r['arena_bytes']:>8,} {r['arena_armv7em_bytes']:>8,} "
              f"{r['lower_bound_bytes']:>8,} "
              f"{r['no_inplace_bytes']:>8,} {r['tflm_total_x86']:>9,} {r['tflm_head_x86']:>9,} "
              f"{m4:>8s} {ratio:>8s} {ratio_arm:>7s} {ok:>6s} {r['weights_bytes']:>8,} {r['macs']:>11,}")


if __name__ == "__main__":
    main()
