#!/usr/bin/env python3
"""The zoo's fully-connected and 1-D CNN models, and the MLPerf Tiny AD autoencoder, on a core.

Default board: Arduino Nano 33 BLE Sense (nRF52840, Cortex-M4 @ 64 MHz); ``--board ID`` for
another (the M7 and M33 boards run the same armv7em kernels).

Models (kiloml.train.models, built untrained with a fixed seed: speed does not depend on what
the weights learned; quantized with kiloml's PTQ on seeded random features, SOFTMAX appended
as ``kiloml train`` does for classifiers):

* dense gesture: the ``motion`` task's spectral features of a 3-axis window (band edges
  0-1-2-4-8-12 Hz) -> Dense (64, 32) -> 4 classes; dense gesture wide: hidden (128, 64);
* dense vibration: the ``vibration`` task's spectral features (fft 1024, six bands) -> Dense
  (64, 32) -> 10 classes;
* cnn1d gesture: raw 3-axis windows of 4 s at 25 Hz (100 x 3) -> CNN1D (16, 32, 64) -> 4;
* cnn1d vibration: raw 1,024-sample windows (1 axis) -> CNN1D (16, 32, 64) -> 10;
* AD: ../shared/models/mlperf_tiny/ad01_int8.tflite (ten FULLY_CONNECTED layers).

Each row is one real build (arm-none-eabi-gcc -O2) run once in the Unicorn emulator:
instructions counted, cycles from kiloml's cycle model (src/kiloml/targets/cycles.py), every
layer compared with the reference interpreter. ``x TFLM``: instructions / TFLM + CMSIS-NN's
for the same model on the Cortex-M4 (issue 17: AD 0.58 M; none for the zoo models).
``--layers`` prints each layer too.

``--prefer speed|size|balanced``: the kernels' flash-for-speed choice (default balanced; speed
gives FULLY_CONNECTED its int16-weight layout).

Run: .venv/bin/python benchmarks/profile_zoo.py [--board ID] [--prefer P] [--layers] [--json]
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

SHARED = Path(os.environ.get("KILOML_SHARED", Path(__file__).resolve().parents[2] / "shared"))
TFLM_M4 = {"AD": 0.58e6}
BOARD = "nano33ble"


def _quantized(arch: str, feature_shape: tuple[int, ...], classes: int, seed: int,
               **params) -> object:
    import torch

    from kiloml.compress.export import quantize_ptq
    from kiloml.train.models import build_model, input_layout, to_model_input

    torch.manual_seed(seed)
    model = build_model(arch, feature_shape, classes, **params).eval()
    rng = np.random.default_rng(seed)
    feats = rng.normal(0, 1, (256,) + tuple(feature_shape)).astype(np.float32)
    calib = to_model_input(feats, input_layout(arch, feature_shape))
    _, g = quantize_ptq(model, calib, append_softmax=True, name=f"{arch}_{seed}")
    return g


def models() -> list[tuple[str, object]]:
    from kiloml.dsp import make_block
    from kiloml.io.tflite_reader import read_tflite

    gesture = make_block("spectral", params={"sample_rate": 25,
                                             "band_edges_hz": [0, 1, 2, 4, 8, 12]})
    vibration = make_block("spectral", params={
        "sample_rate": 12000, "fft_length": 1024,
        "band_edges_hz": [0, 500, 1000, 2000, 3000, 4000, 6000]})
    g_shape = gesture.output_shape(50, 3)
    v_shape = vibration.output_shape(1024, 1)
    return [
        ("dense gesture", _quantized("dense", g_shape, 4, 1)),
        ("dense gesture wide", _quantized("dense", g_shape, 4, 2, hidden=(128, 64))),
        ("dense vibration", _quantized("dense", v_shape, 10, 3)),
        ("cnn1d gesture", _quantized("cnn1d", (100, 3), 4, 4)),
        ("cnn1d vibration", _quantized("cnn1d", (1024,), 10, 5)),
        ("AD", read_tflite(SHARED / "models" / "mlperf_tiny" / "ad01_int8.tflite")),
    ]


def main() -> None:
    from kiloml.targets.profile import profile_graph

    board = sys.argv[sys.argv.index("--board") + 1] if "--board" in sys.argv else BOARD
    prefer = sys.argv[sys.argv.index("--prefer") + 1] if "--prefer" in sys.argv else "balanced"
    rows = []
    for name, g in models():
        t0 = time.time()
        r = profile_graph(g, board, prefer=prefer)
        r["emulation_s"] = round(time.time() - t0, 1)
        r["model"] = name
        tflm = TFLM_M4.get(name) if r["core"] == "cortex-m4" else None
        r["vs_tflm"] = round(r["instructions"] / tflm, 3) if tflm else None
        rows.append(r)
    if "--json" in sys.argv:
        print(json.dumps(rows, indent=2))
        return
    head = (f"{'model':20s} {'kernels':8s} {'MACs':>9s} {'instr':>10s} {'x TFLM':>6s} "
            f"{'cycles(est)':>11s} {'MAC/cyc':>7s} {'ms':>7s} {'flash':>8s} {'RAM':>6s} "
            f"{'match':>5s} {'layers':>6s}")
    print(f"board {board} ({rows[0]['core']}, {rows[0]['clock_hz'] / 1e6:.0f} MHz), "
          f"prefer {prefer}")
    print(head)
    print("-" * len(head))
    for r in rows:
        vs = f"{r['vs_tflm']:.2f}" if r["vs_tflm"] is not None else "-"
        ok = (f"{r['layers_checked']}/{len(r['layers'])}" if r["layers_match_reference"]
              else "NO")
        print(f"{r['model']:20s} {r['runtime']:8s} {r['macs']:>9,} {r['instructions']:>10,} "
              f"{vs:>6s} {r['cycles']:>11,} {r['macs_per_cycle']:>7.3f} "
              f"{r['latency_ms']:>7.3f} {r['flash_bytes']:>8,} {r['ram_bytes']:>6,} "
              f"{str(r['output_matches_reference']):>5s} {ok:>6s}")
        if "--layers" in sys.argv:
            for x in r["layers"]:
                mpc = f"{x['macs_per_cycle']:.3f}" if x["macs_per_cycle"] is not None else "-"
                print(f"    {x['node']:>3d} {x['op']:22s} {x['kernel']:34s} {x['macs']:>8,} "
                      f"{x['instructions']:>9,} {x['cycles']:>9,} {mpc:>6s}")


if __name__ == "__main__":
    main()
