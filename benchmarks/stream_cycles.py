"""Per-stride cycles of the C streaming API (incremental features) vs recomputing the whole
window, on the emulator, for the KWS pipeline (MFCC, the seeded test DS-CNN-like model of
tests/deploy/deployhelp.py; a trained model has other model cycles, the same DSP), for

- mlperf-kws, stride = window / slices (4 slices: 4000 samples = 12.5 frame steps, frames
  shared with every other window; the per-clip peak normalization redoes each frame's log and
  DCT every window);
- mlperf-kws-stream (no peak normalization) with ``[stream] align_stride``: the stride rounded
  to whole frame steps (4 slices: 3840 samples = 12 frames, 5 slices: 3200 = 10 frames), each
  kept frame's output row reused, so a stride computes its new frames and the window's first.

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
from kiloml.deploy.stream import stream_cycles, window_stride  # noqa: E402
from kiloml.train.streaming import StreamSettings  # noqa: E402


def main(boards):
    x = np.concatenate(list(speech_windows())).astype(np.int16)
    print("| board | preset | variant | slices | stride ms | DSP cycles/stride incremental "
          "| full | DSP ratio | total incremental | total full | % of stride (incr.) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for board in boards:
        for preset, align in (("mlperf-kws", False), ("mlperf-kws-stream", True)):
            variant = "q15"
            for slices in (4, 5):
                st = StreamSettings(slices_per_window=slices, align_stride=align)
                spec = dataclasses.replace(kws_spec(variant, direct=True, board=board,
                                                    preset=preset), stream=st)
                with tempfile.TemporaryDirectory() as tmp:
                    deploy_c(spec, Path(tmp) / "pkg")
                    r = stream_cycles(Path(tmp) / "pkg", x, windows=4)
                stride_s = window_stride(spec.block, 16000, st) / 16000
                busy = r["stream"]["total"] / r["clock_hz"] / stride_s
                print(f"| {board} | {preset} | {variant} | {slices} | {stride_s * 1000:g} | "
                      f"{r['stream']['dsp']:,.0f} | {r['full']['dsp']:,.0f} | "
                      f"{r['full']['dsp'] / r['stream']['dsp']:.2f}x | "
                      f"{r['stream']['total']:,.0f} | {r['full']['total']:,.0f} | "
                      f"{100 * busy:.1f} %{' (not real-time)' if busy > 1 else ''} |",
                      flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or ["nano33ble", "nucleo-l4r5zi", "pico"])
