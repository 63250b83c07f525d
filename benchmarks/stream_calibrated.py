#!/usr/bin/env python3
"""Streaming KWS with calibrated settings, through the command line only: ``kiloml simulate
--calibrate`` on a validation-split stream, then ``kiloml data stream`` (test split) and
``kiloml simulate --stream --truth`` at each SNR. Prints the calibration's choice and one row
per SNR (hits, misses, false accepts, FA/h, MLPerf Tiny's bar: <= 8 misses and <= 8 false
accepts in 20 minutes).

    PYTHONPATH=src .venv/bin/python benchmarks/stream_calibrated.py PROJECT [--fa 24]
        [--minutes 20] [--snr 0 10 20] [--engine python]

Writes kiloml.toml's [stream] (the calibration's choice) and build/calibrate.json,
build/simulate.json of PROJECT; the streams go to a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def kiloml(*args, cwd):
    r = subprocess.run([sys.executable, "-m", "kiloml", *map(str, args)], cwd=cwd,
                       capture_output=True, text=True, env=dict(os.environ, COLUMNS="100"))
    if r.returncode != 0:
        sys.exit(f"kiloml {' '.join(map(str, args))}: {r.stderr.strip()}")
    return json.loads(r.stdout) if "--json" in args else r.stdout


def cal_wake(root: Path) -> bool:
    from kiloml.workflow.project import load_project

    return load_project(root).config.stream.wake


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("project", type=Path)
    ap.add_argument("--fa", type=float, default=24.0, help="target FA/h (8 in 20 minutes)")
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--snr", type=float, nargs="+", default=[0.0, 10.0, 20.0])
    ap.add_argument("--engine", default="python")
    a = ap.parse_args()
    root = a.project.resolve()
    t = time.perf_counter()
    cal = kiloml("simulate", "--calibrate", "--target-fa-per-hour", a.fa, "--minutes",
                 a.minutes, "--json", cwd=root)
    c, q = cal["chosen"], cal["chosen_point"]
    print(f"[stream] wake = {str(cal_wake(root)).lower()}")
    print(f"calibrated on {cal['duration_s'] / 60:.0f} min of the validation split at "
          f"{cal['snr_db']:g} dB ({len(cal['points'])} settings, {time.perf_counter() - t:.0f} s):"
          f" average window {c['average_window_ms']:g} ms, threshold "
          f"{c['detection_threshold']}, suppression {c['suppression_ms']:g} ms, minimum count "
          f"{c['minimum_count']} (validation: {q['misses']}/{q['targets']} missed, "
          f"{q['fa_per_hour']:.1f} FA/h)")
    print()
    print("| SNR | keywords | hits | misses | false accepts | FA/h | MLPerf bar (<= 8, <= 8) "
          "| windows let through | seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for snr in a.snr:
            wav, csv = Path(tmp) / f"s{snr:g}.wav", Path(tmp) / f"s{snr:g}.csv"
            kiloml("data", "stream", "-o", wav, "--truth", csv, "--minutes", a.minutes,
                   "--snr", snr, "--split", "test", "--seed", 0, cwd=root)
            t = time.perf_counter()
            r = kiloml("simulate", "--stream", wav, "--truth", csv, "--engine", a.engine,
                       "--json", cwd=root)
            sc = r["score"]
            bar = "met" if sc["misses"] <= 8 and sc["false_accepts"] <= 8 else "not met"
            print(f"| {snr:g} dB | {sc['targets']} | {sc['hits']} | {sc['misses']} | "
                  f"{sc['false_accepts']} | {sc['fa_per_hour']:.1f} | {bar} | "
                  f"{100 * r['wake']['passed_fraction']:.1f} % | {time.perf_counter() - t:.0f} |",
                  flush=True)


if __name__ == "__main__":
    main()
