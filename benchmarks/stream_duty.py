"""Duty cycle and battery life of the streaming KWS pipeline, always on and with the wake
gate, on a stream that is 90 % quiet (kiloml.deploy.stream.stream_duty: per-stride cycles
from the emulator, the gate's pass fraction from the whole stream).

The stream: 5 minutes of a quiet room (`_background_noise_/pink_noise.wav` scaled to RMS 60)
with 30 one-second keyword clips of speech_commands (RMS 3,000) at random times: words take
10 % of the time. A last row for nano33ble uses all six `_background_noise_` recordings end to
end (dishes, a cat, a running tap, an exercise bike: the gate wakes on them too).
The model: the seeded test DS-CNN-like model of tests/deploy/deployhelp.py with mlperf-kws
MFE q15 (a trained model has other model cycles, the same DSP and gate), 4 slices per window,
the default [stream] wake settings.

IMU rows (``--imu``: only them): the motion gate (summed per-channel variance of the last
stride, default [stream] wake settings, wake_imu_scale 1 for milli-g) on 10 minutes at 25 Hz
of a still sensor (gravity on z, 2 milli-g noise) with a magic_wand gesture (2 s) every 20 s:
motion 10 % of the time; the magic_wand test pipeline of tests/deploy/deployhelp.py (spectral
f32 features, dense model, 2 s window, 4 slices).

    PYTHONPATH=src .venv/bin/python benchmarks/stream_duty.py [--imu] [board ...]
"""

import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "deploy"))

from deployhelp import SPEECH, imu_spec, imu_windows, kws_spec  # noqa: E402
from kiloml.data.wav import read_wav  # noqa: E402
from kiloml.deploy.stream import stream_duty  # noqa: E402
from kiloml.train.streaming import StreamSettings  # noqa: E402

RATE = 16000


def quiet_stream(bed_glob: str = "pink_noise.wav", minutes: float = 5.0, words: int = 30,
                 seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(minutes * 60 * RATE)
    bed = np.concatenate([read_wav(f).data[:, 0].astype(np.float64)
                          for f in sorted((SPEECH / "_background_noise_").glob(bed_glob))])
    while len(bed) <= n:
        bed = np.concatenate([bed, bed])
    start = int(rng.integers(0, len(bed) - n))
    x = bed[start:start + n]
    x = x / np.sqrt(np.mean(x ** 2)) * 60.0
    clips = [f for lab in ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
             for f in sorted((SPEECH / lab).glob("*.wav"))[:3]]
    slot = n // words
    for k, f in enumerate(clips[:words]):
        c = read_wav(f).data[:RATE, 0].astype(np.float64)
        c = c / np.sqrt(np.mean(c ** 2) + 1e-9) * 3000.0
        at = k * slot + int(rng.integers(0, slot - len(c)))
        x[at:at + len(c)] += c
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def imu_stream(minutes: float = 10.0, seed: int = 0) -> np.ndarray:
    """(n, 3) float32 milli-g: 18 s still, 2 s gesture, repeated."""
    w = imu_windows()
    rng = np.random.default_rng(seed)
    parts, n = [], 0
    while n < minutes * 60 * 25:
        still = np.array([0.0, 0.0, 1000.0]) + rng.standard_normal((450, 3)) * 2.0
        parts += [still.astype(np.float32), w[int(rng.integers(len(w)))].astype(np.float32)]
        n += 450 + len(parts[-1])
    return np.concatenate(parts)


def main(boards, imu_only=False):
    quiet = None if imu_only else quiet_stream()
    print("| board | bed | stride ms | gate only cycles/stride | gate cost | "
          "active cycles/stride | wake window | passed | always-on duty | gated duty | always-on mW | gated mW | "
          "always-on days | gated days |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    runs = [] if imu_only else [(b, "pink", quiet) for b in boards]
    if "nano33ble" in boards and not imu_only:
        runs.append(("nano33ble", "household", quiet_stream("*.wav")))
    imu = imu_stream()
    runs += [(b, "IMU still 90 %", imu) for b in boards]
    for board, bed, x in runs:
        base = imu_spec(board=board) if bed.startswith("IMU") else \
            kws_spec("q15", direct=True, board=board)
        spec = dataclasses.replace(base, stream=StreamSettings(wake=True))
        r = stream_duty(spec, x, battery_mah=1000.0)
        a, g, c = r["always_on"], r["gated"], r["cycles"]

        def days(v):
            return "n/a" if v is None else f"{v:,.1f}"

        def rt(row):
            return "" if row["real_time"] else " (not real-time)"

        print(f"| {board} | {bed} | {r['stride_ms']:g} | {c['gate_only']:,} | "
              f"{100 * r['gate_cost']:.2f} % | {c['active']:,} | {c['wake_window']:,} | "
              f"{100 * r['passed_fraction']:.1f} % ({r['windows_passed']}/{r['windows_seen']}, "
              f"{r['wakes']} wakes) | {100 * a['duty']:.1f} %{rt(a)} | "
              f"{100 * g['duty']:.1f} %{rt(g)} | {a['average_power_mw']:.3f} | "
              f"{g['average_power_mw']:.3f} | {days(a['battery_days'])} | "
              f"{days(g['battery_days'])} |", flush=True)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--imu"]
    main(args or ["nano33ble", "nucleo-l4r5zi", "pico"], imu_only="--imu" in sys.argv[1:])
