#!/usr/bin/env python3
"""MFCC feature throughput on this machine: kiloml's numpy block vs librosa, and the generated C.

Workload: the mlperf-kws preset (49 frames x 10 coefficients per one-second 16 kHz clip) on
real clips of ../shared/data/speech_commands (or seeded noise without it).

librosa runs with matching parameters: ``librosa.feature.melspectrogram(n_fft=512,
win_length=480, hop_length=320, window="hann", center=False, power=1, n_mels=40, fmin=20,
fmax=4000, htk=True, norm=None)`` on the peak-normalised clip, ``log(S + 1e-6)``, then
``librosa.feature.mfcc(S=..., n_mfcc=10, dct_type=2, norm="ortho")`` — the same amount of work
(its mel triangles are linear in Hz rather than in mel, which costs the same).

Both are timed per clip (a device or a streaming service sees one clip at a time) and in
batches of 256 clips (dataset preparation); the better of the two for each library is the
headline ratio (target >= 1x). The C figures are the generated code (float32, q31, q15) built
with gcc -O2 for this host, timed inside the harness with clock() over many clips.
Run: .venv/bin/python benchmarks/features.py [--clips N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

SHARED = Path(os.environ.get("KILOML_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def load_clips(n: int) -> tuple[np.ndarray, str]:
    from kiloml.data.wav import read_wav

    files = sorted(p for p in (SHARED / "data" / "speech_commands").glob("*/*.wav")
                   if p.parent.name != "_background_noise_")
    if not files:
        rng = np.random.default_rng(0)
        return (rng.standard_normal((n, 16000)) * 3000).astype(np.int16), "seeded noise"
    step = max(1, len(files) // n)
    out = []
    for p in files[::step][:n]:
        d = read_wav(p).data[:16000, 0]
        z = np.zeros(16000, np.int16)
        z[:len(d)] = d
        out.append(z)
    return np.stack(out), f"{len(out)} speech_commands clips"


def best_of(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def librosa_mfcc(y: np.ndarray) -> np.ndarray:
    import librosa

    y = y / np.max(y, axis=-1, keepdims=True)
    S = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=512, win_length=480, hop_length=320,
                                       window="hann", center=False, power=1.0, n_mels=40,
                                       fmin=20, fmax=4000, htk=True, norm=None)
    return librosa.feature.mfcc(S=np.log(S + 1e-6), n_mfcc=10, dct_type=2, norm="ortho")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=1024)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from kiloml.dsp.host import DSPHostBuild
    from kiloml.dsp.mfcc import MFCC

    x16, source = load_clips(args.clips)
    xf32 = x16.astype(np.float32) / 32768
    n = len(x16)
    block = MFCC.preset("mlperf-kws")
    librosa_mfcc(xf32[:2])                       # numba compilation, not timed
    block(xf32[:2])
    per = 64                                     # clips timed one by one
    res = {"source": source, "clips": n, "machine": platform.processor() or platform.machine(),
           "cpus": os.cpu_count(), "numpy": np.__version__}
    import librosa

    res["librosa_version"] = librosa.__version__
    t = best_of(lambda: [block(xf32[i]) for i in range(per)])
    res["kiloml_numpy_per_clip_clips_per_s"] = per / t
    t = best_of(lambda: [librosa_mfcc(xf32[i]) for i in range(per)])
    res["librosa_per_clip_clips_per_s"] = per / t
    t = best_of(lambda: [block(xf32[s:s + 256]) for s in range(0, n, 256)], repeat=2)
    res["kiloml_numpy_batch256_clips_per_s"] = n / t
    t = best_of(lambda: [librosa_mfcc(xf32[s:s + 256]) for s in range(0, n, 256)], repeat=2)
    res["librosa_batch256_clips_per_s"] = n / t
    res["ratio_per_clip"] = (res["kiloml_numpy_per_clip_clips_per_s"]
                             / res["librosa_per_clip_clips_per_s"])
    res["ratio_batch"] = (res["kiloml_numpy_batch256_clips_per_s"]
                          / res["librosa_batch256_clips_per_s"])
    res["ratio_best"] = max(res["kiloml_numpy_per_clip_clips_per_s"],
                            res["kiloml_numpy_batch256_clips_per_s"]) / \
        max(res["librosa_per_clip_clips_per_s"], res["librosa_batch256_clips_per_s"])
    for variant in ("f32", "q31", "q15"):
        hb = DSPHostBuild(block, 16000, variant=variant)
        inp = xf32 if variant == "f32" else x16
        k = min(n, 256)
        hb.run(inp[:k], repeat=4)
        res[f"c_{variant}_us_per_clip"] = hb.seconds / (4 * k) * 1e6
    cost = {v: block.cost(16000, 1, v).as_dict() for v in ("f32", "q31", "q15")}
    res["device_cost"] = cost
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print(f"MFCC mlperf-kws (49x10 per 1 s clip) on {res['source']}, {res['machine']}, "
          f"{res['cpus']} CPUs, numpy {res['numpy']}, librosa {res['librosa_version']}")
    print(f"{'':34}{'per clip':>14}{'batch of 256':>16}")
    print(f"{'kiloml numpy (clips/s)':34}{res['kiloml_numpy_per_clip_clips_per_s']:14,.0f}"
          f"{res['kiloml_numpy_batch256_clips_per_s']:16,.0f}")
    print(f"{'librosa (clips/s)':34}{res['librosa_per_clip_clips_per_s']:14,.0f}"
          f"{res['librosa_batch256_clips_per_s']:16,.0f}")
    print(f"{'ratio kiloml / librosa':34}{res['ratio_per_clip']:14.2f}x{res['ratio_batch']:15.2f}x")
    print(f"best vs best: {res['ratio_best']:.2f}x (target >= 1x)")
    print("generated C on this host (gcc -O2), one clip:")
    for v in ("f32", "q31", "q15"):
        c = cost[v]
        print(f"  {v:4} {res[f'c_{v}_us_per_clip']:9,.0f} us   device: RAM {c['ram_bytes']:,} B, "
              f"tables {c['flash_bytes']:,} B, {c['total_ops']:,} ops")
    return 0


if __name__ == "__main__":
    sys.exit(main())
