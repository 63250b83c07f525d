#!/usr/bin/env python3
"""Fit armv7em_choice.FC_CYCLES: Cortex-M4 cycles of kml_fully_connected_s8 per layer.

Every FULLY_CONNECTED layer of the zoo's dense models and the MLPerf AD autoencoder
(benchmarks/profile_zoo.py's models without convolutions) is profiled in the emulator
(nano33ble, cycles from kiloml's cycle model) with each layout forced (fc: int8 weights,
fc-int16: int16 weights). Per layout, least squares of cycles on (padded MACs, padded outputs,
padded inputs, 1) with batches counted; prints each layer, the fit and its worst error.

Run: .venv/bin/python benchmarks/fc_cycles_fit.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from profile_zoo import models  # noqa: E402

from kiloml.ir.ops import REGISTRY  # noqa: E402
from kiloml.ir.passes import pipeline  # noqa: E402
from kiloml.targets.profile import profile_graph  # noqa: E402


def main() -> None:
    # the dense models' 1x1 CONV_2D become FULLY_CONNECTED in the pipeline (node indices of
    # ``options`` are the pipelined graph's)
    graphs = [(n, pipeline(g)) for n, g in models()]
    graphs = [(n, g) for n, g in graphs
              if not any(x.op in ("CONV_2D", "CONV_2D_ADD") for x in g.nodes)]
    for layout in ("fc", "fc-int16"):
        rows, ys = [], []
        print(f"layout {layout}")
        print(f"  {'model':20s} {'node':>4s} {'batches':>7s} {'units':>5s} {'depth':>5s} "
              f"{'instr':>8s} {'cycles':>8s}")
        for name, g in graphs:
            fc = [i for i, n in enumerate(g.nodes) if n.op == "FULLY_CONNECTED"]
            r = profile_graph(g, "nano33ble", options={i: layout for i in fc})
            assert r["layers_match_reference"]
            for x in r["layers"]:
                if x["op"] != "FULLY_CONNECTED":
                    continue
                node = g.nodes[x["node"]]
                p = REGISTRY["FULLY_CONNECTED"].prepare(g, node)
                units, depth = g.tensors[node.inputs[1]].shape
                u4, d8 = (units + 3) // 4 * 4, (depth + 7) // 8 * 8
                rows.append([p.batches * u4 * d8, p.batches * u4, p.batches * d8, 1])
                ys.append(x["cycles"])
                print(f"  {name:20s} {x['node']:>4d} {p.batches:>7d} {units:>5d} {depth:>5d} "
                      f"{x['instructions']:>8,} {x['cycles']:>8,}")
        a = np.array(rows, float)
        y = np.array(ys, float)
        coef = np.linalg.lstsq(a, y, rcond=None)[0]
        err = np.max(np.abs(a @ coef - y) / y)
        print(f"  fit: {tuple(round(float(c), 3) for c in coef)}  max error {100 * err:.1f}%")


if __name__ == "__main__":
    main()
