#!/usr/bin/env python3
"""Streaming KWS with calibrated settings, through the command line only: ``kiloml simulate
--calibrate`` on a validation-split stream, then ``kiloml data stream`` (test split) and
``kiloml simulate --stream --truth`` at each SNR. Prints the calibration's choice and one row
per SNR (hits, misses, false accepts, FA/h, MLPerf Tiny's bar: <= 8 misses and <= 8 false
accepts in 20 minutes), then the DET points: the validation stream's (the calibration's sweep,
the points no other point beats on both misses and FA/h) and, with ``--det``, each test
stream's at the calibrated average window, suppression and minimum count over a range of
thresholds (the Python twin's window scores, decided again per threshold: for reporting only,
nothing is chosen on the test streams).

    PYTHONPATH=src .venv/bin/python benchmarks/stream_calibrated.py PROJECT [--fa 24]
        [--minutes 20] [--cal-minutes M] [--snr 0 10 20] [--engine python] [--det]

``--minutes`` is the test streams' length and, unless ``--cal-minutes`` is given, the
validation stream's (``kiloml simulate --calibrate --minutes M``).

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
    ap.add_argument("--minutes", type=float, default=20.0, help="the test streams' length")
    ap.add_argument("--cal-minutes", type=float, default=None,
                    help="the validation stream's length (default: --minutes)")
    ap.add_argument("--snr", type=float, nargs="+", default=[0.0, 10.0, 20.0])
    ap.add_argument("--engine", default="python")
    ap.add_argument("--det", action="store_true", help="DET points of every test stream")
    a = ap.parse_args()
    root = a.project.resolve()
    t = time.perf_counter()
    cal_minutes = a.minutes if a.cal_minutes is None else a.cal_minutes
    cal = kiloml("simulate", "--calibrate", "--target-fa-per-hour", a.fa, "--minutes",
                 cal_minutes, "--json", cwd=root)
    c, q = cal["chosen"], cal["chosen_point"]
    print(f"[stream] wake = {str(cal_wake(root)).lower()}")
    print(f"calibrated on {cal['duration_s'] / 60:.0f} min of the validation split at "
          f"{cal['snr_db']:g} dB ({len(cal['points'])} settings, {time.perf_counter() - t:.0f} s):"
          f" average window {c['average_window_ms']:g} ms, threshold "
          f"{c['detection_threshold']}, suppression {c['suppression_ms']:g} ms, minimum count "
          f"{c['minimum_count']} (validation: {q['misses']}/{q['targets']} missed, "
          f"{q['fa_per_hour']:.1f} FA/h)")
    for note in cal.get("stream_notes", []):
        print(f"validation stream: {note}")
    print()
    print("validation DET points (misses, FA/h; threshold, average window ms, suppression ms, "
          "minimum count):")
    front = []
    for p in sorted(cal["points"], key=lambda p: (p["fa_per_hour"], p["misses"])):
        if not front or p["misses"] < front[-1]["misses"]:
            front.append(p)
    print("  " + "; ".join(f"{p['misses']} / {p['fa_per_hour']:.0f} (t {p['detection_threshold']}"
                           f", {p['average_window_ms']:g}, {p['suppression_ms']:g}, "
                           f"{p['minimum_count']})" for p in front))
    print()
    dets = {}
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
            if a.det:
                dets[snr] = det_points(root, wav, csv)
    for snr, pts in dets.items():
        print(f"test DET points at {snr:g} dB (threshold: misses / false accepts): "
              + "; ".join(f"{t}: {m} / {f}" for t, m, f in pts))


def det_points(root: Path, wav: Path, csv: Path):
    """(threshold, misses, false accepts) of the test stream at the project's [stream]
    settings with the threshold swept (kiloml's Python twin; benchmarks/stream_kws.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from stream_kws import decide, window_scores

    from kiloml.train.streaming import score_stream
    from kiloml.workflow.deploy import project_spec
    from kiloml.workflow.project import load_project
    from kiloml.workflow.stream import load_truth, read_stream

    proj = load_project(root)
    spec = project_spec(proj)
    base = proj.config.stream
    rate = float(spec.sample_rate)
    x = read_stream(wav, rate, 1, True)
    truth = load_truth(csv, len(x) / rate)
    starts, scores, _, pipe = window_scores(spec, base, x)
    out = []
    for t in (70, 85, 100, 115, 130, 145, 160, 180, 200, 220):
        st = base.model_copy(update={"detection_threshold": t})
        r = score_stream(truth, decide(spec, st, starts, scores, pipe.window, rate),
                         len(x) / rate)
        out.append((t, r["misses"], r["false_accepts"]))
    return out


if __name__ == "__main__":
    main()
