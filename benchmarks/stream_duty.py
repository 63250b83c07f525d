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

    PYTHONPATH=src .venv/bin/python benchmarks/stream_duty.py [board ...]
"""

import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "deploy"))

from deployhelp import SPEECH, kws_spec  # noqa: E402
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


def main(boards):
    quiet = quiet_stream()
    print("| board | bed | stride ms | gate only cycles/stride | gate cost | "
          "active cycles/stride | wake window | passed | always-on duty | gated duty | always-on mW | gated mW | "
          "always-on days | gated days |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    runs = [(b, "pink", quiet) for b in boards]
    if "nano33ble" in boards:
        runs.append(("nano33ble", "household", quiet_stream("*.wav")))
    for board, bed, x in runs:
        spec = dataclasses.replace(kws_spec("q15", direct=True, board=board),
                                   stream=StreamSettings(wake=True))
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
    main(sys.argv[1:] or ["nano33ble", "nucleo-l4r5zi", "pico"])
