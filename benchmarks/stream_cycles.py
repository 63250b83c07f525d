"""Per-stride cycles of the C streaming API (incremental features) vs recomputing the whole
window, on the emulator, for the KWS pipeline (mlperf-kws MFE, the seeded test DS-CNN-like
model of tests/deploy/deployhelp.py; a trained model has other model cycles, the same DSP).

    PYTHONPATH=src .venv/bin/python benchmarks/stream_cycles.py [board ...]
"""

import dataclasses
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "deploy"))

from deployhelp import kws_spec, speech_windows  # noqa: E402
from kiloml.deploy.c import deploy_c  # noqa: E402
from kiloml.deploy.stream import stream_cycles  # noqa: E402
from kiloml.train.streaming import StreamSettings  # noqa: E402


def main(boards):
    x = np.concatenate(list(speech_windows())).astype(np.int16)
    print("| board | variant | slices | stride ms | DSP cycles/stride incremental | full "
          "| DSP ratio | total incremental | total full | % of stride (incr.) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for board in boards:
        for variant in ("q15",):
            for slices in (4, 5):
                spec = dataclasses.replace(kws_spec(variant, direct=True, board=board),
                                           stream=StreamSettings(slices_per_window=slices))
                with tempfile.TemporaryDirectory() as tmp:
                    deploy_c(spec, Path(tmp) / "pkg")
                    r = stream_cycles(Path(tmp) / "pkg", x, windows=4)
                stride_s = round(16000 / slices) / 16000
                busy = r["stream"]["total"] / r["clock_hz"] / stride_s
                print(f"| {board} | {variant} | {slices} | {stride_s * 1000:g} | "
                      f"{r['stream']['dsp']:,.0f} | {r['full']['dsp']:,.0f} | "
                      f"{r['full']['dsp'] / r['stream']['dsp']:.2f}x | "
                      f"{r['stream']['total']:,.0f} | {r['full']['total']:,.0f} | "
                      f"{100 * busy:.1f} %{' (not real-time)' if busy > 1 else ''} |",
                      flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or ["nano33ble", "nucleo-l4r5zi", "pico"])
