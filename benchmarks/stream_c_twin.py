#!/usr/bin/env python3
"""The deploy package's C streaming API (built for the host) against the Python twin on long
streams, through the command line only: ``kiloml data stream`` (test split) and ``kiloml
simulate --stream --engine c`` / ``--engine python`` on the same recording. Prints one row per
stream: windows, detections of each engine, whether the detections are identical event for
event (label, time, score) and the scores equal, and each engine's seconds.

    PYTHONPATH=src .venv/bin/python benchmarks/stream_c_twin.py PROJECT [--minutes 20]
        [--snr 10] [--seed 0]

An audio project gets a WAV stream of keywords and unknown words over background noise; an
IMU project its test recordings back to back (``--minutes`` is then ignored). The project's
kiloml.toml [stream] settings are used (wake gate included when set). Writes
build/simulate.json of PROJECT (the last run).
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("project", type=Path)
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--snr", type=float, nargs="+", default=[10.0])
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    root = a.project.resolve()
    from kiloml.workflow.project import load_project

    audio = load_project(root).config.project.task in ("kws", "anomaly")
    print("| stream | windows | wake gate | C detections | twin detections | identical "
          "| C s | twin s |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for snr in a.snr:
            wav = Path(tmp) / (f"s{snr:g}.wav" if audio else "s.npy")
            csv = Path(tmp) / "t.csv"
            extra = ["--minutes", a.minutes, "--snr", snr] if audio else []
            kiloml("data", "stream", "-o", wav, "--truth", csv, "--split", "test", "--seed",
                   a.seed, *extra, cwd=root)
            res, secs = {}, {}
            for engine in ("c", "python"):
                t = time.perf_counter()
                res[engine] = kiloml("simulate", "--stream", wav, "--truth", csv, "--engine",
                                     engine, "--json", cwd=root)
                secs[engine] = time.perf_counter() - t
            c, py = res["c"], res["python"]
            same = (c["detections"] == py["detections"] and c["score"] == py["score"]
                    and c["windows"] == py["windows"])
            name = (f"{c['duration_s'] / 60:.1f} min, {snr:g} dB" if audio
                    else f"{c['duration_s'] / 60:.1f} min of test recordings")
            wk = c["wake"]
            gate = (f"{100 * wk['passed_fraction']:.1f} % passed" if wk["enabled"] else "off")
            print(f"| {name} | {c['windows']:,} | {gate} | {len(c['detections'])} | "
                  f"{len(py['detections'])} | {'yes' if same else 'NO'} | {secs['c']:.0f} | "
                  f"{secs['python']:.0f} |", flush=True)
            if not same:
                sys.exit("the C and the twin disagree")


if __name__ == "__main__":
    main()
