#!/usr/bin/env python3
"""Calibrate the flash-for-speed choice (kiloml.codegen.armv7em_choice): the code bytes of each
optional kernel function (CODE_BYTES) and the per-kernel cycle formulas (CYCLES).

Code bytes: every runtime source of the armv7em kernels (the portable ones beneath) compiled
with the Cortex-M4 profiling flags at -O2 and linked with --gc-sections and the function as
the entry point; the flash sections of that ELF are the function with everything only it
needs (its share of helpers other functions also use is counted with each).

Cycles: the MLPerf Tiny KWS, VWW and ResNet-8 models are profiled in the emulator
(``profile_graph``, NUCLEO-L4R5ZI) once with every node that has a choice forced to each
option in turn ("base", the int8 lean stream of the 1x1/RGB kernels, "fast"); each layer's
measured cycles, keyed by kernel function (and "/int16" for the RGB kernel's int16
weights), are fitted by non-negative least squares (relative errors) to cycles = a MACs +
b outputs + c pixels + d (rows x channels) + e: no coefficient below zero, so a formula
never predicts fewer cycles for more work on layers unlike the measured ones. Single-layer
models with random weights and quantization are no substitute: the kernels' paths depend on
the data (one 48x48x8 depthwise layer runs 1.9x the instructions of VWW's layer of the same
shape), so the formulas come from real models' layers only.

Run: .venv/bin/python benchmarks/prefer_calibrate.py     (prints both tables as Python)
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

from kiloml.codegen.armv7em_backend import CONV_1X1, CONV_1X1X, CONV_RGB, DEPTHWISE_3X3
from kiloml.codegen.armv7em_choice import geometry
from kiloml.io.tflite_reader import read_tflite
from kiloml.ir.ops import REGISTRY
from kiloml.ir.passes import pipeline
from kiloml.targets.emulator import ElfImage
from kiloml.targets.profile import PROFILE_FLAGS, elf_sizes, profile_graph
from kiloml.targets.toolchain import arm_gcc

SHARED = Path(os.environ.get("KILOML_SHARED", Path(__file__).resolve().parents[2] / "shared"))
MODELS = ["kws_ref_model", "vww_96_int8", "pretrainedResnet_quant"]
FUNCTIONS = [CONV_1X1, CONV_1X1X, CONV_RGB, *DEPTHWISE_3X3]
COLUMN = ["kml_conv2d_pairs_inside_s8", "kml_conv2d_pairs_s8", "kml_conv2d_s8"]


def code_bytes() -> dict[str, int]:
    rt = resources.files("kiloml.codegen") / "runtime"
    with tempfile.TemporaryDirectory(prefix="kiloml_code_") as d:
        wd = Path(d)
        for sub in ("portable", "armv7em"):
            for f in (rt / sub).iterdir():
                if f.name.endswith((".c", ".h")):
                    (wd / f.name).write_text(f.read_text())
        srcs = sorted(str(p) for p in wd.glob("*.c"))
        out = {}
        for fn in FUNCTIONS + COLUMN:
            elf = wd / f"{fn}.elf"
            cmd = [arm_gcc(), *PROFILE_FLAGS["cortex-m4"], "-std=c99", "-O2",
                   "-ffunction-sections", "-fdata-sections", "-nostartfiles",
                   "--specs=nano.specs", "-Wl,--gc-sections", f"-Wl,-e,{fn}", "-I", str(wd),
                   *srcs, "-o", str(elf)]
            subprocess.run(cmd, check=True, capture_output=True)
            img = ElfImage(elf)  # no link script: every allocated section with contents
            out[fn] = sum(size for addr, size, flags, stype in img.sections.values()
                          if flags & 0x2 and stype != "SHT_NOBITS")
    return out


def samples() -> dict[str, list[tuple[tuple[int, int, int], int]]]:
    graphs = [read_tflite(SHARED / "models" / "mlperf_tiny" / f"{n}.tflite") for n in MODELS]
    data: dict[str, list] = {}
    for g in graphs:
        lg = pipeline(g)
        for force in ("base", "1x1", "rgb", "fast"):
            opts = {n: force for n in range(len(lg.nodes))}
            r = profile_graph(g, "nucleo-l4r5zi", options=opts)
            assert r["output_matches_reference"] and r["layers_match_reference"]
            cyc = {x["node"]: x["cycles"] for x in r["layers"]}
            for c in r["choices"]:
                node = lg.nodes[c["node"]]
                p = REGISTRY[node.op].prepare(lg, node)
                key = c["kernel"] + ("/int16" if c["layout"] == "int16 weights"
                                     and c["kernel"] == CONV_RGB else "")
                data.setdefault(key, []).append((geometry(p, node.op == "DEPTHWISE_CONV_2D"),
                                                 cyc[c["node"]]))
    return data


def fit(points) -> tuple[tuple[float, ...], float]:
    uniq = dict(points)  # same geometry measured twice: one point
    x = np.array([[*gm, 1.0] for gm in uniq], float)
    y = np.array(list(uniq.values()), float)
    coef, _ = nnls(x / y[:, None], np.ones_like(y))
    err = np.abs(x @ coef - y) / y
    return tuple(float(round(c, 3)) for c in coef), float(err.max())


def main() -> None:
    print("CODE_BYTES = {")
    for fn, b in code_bytes().items():
        print(f"    {fn!r}: {b},")
    print("}")
    print("CYCLES = {  # key: (MACs, outputs, pixels, rows x channels, 1); points, max error")
    for key, pts in sorted(samples().items()):
        coef, err = fit(pts)
        print(f"    {key!r}: {coef},  # {len(dict(pts))} layers, max error {err:.1%}")
    print("}")


if __name__ == "__main__":
    main()
