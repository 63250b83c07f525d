#!/usr/bin/env python3
"""Streaming KWS at the full default recipe, with or without ``[data.augment]
stream_negatives``: one training seed per run, scored on the calibrated streams.

    PYTHONPATH=src .venv/bin/python benchmarks/stream_full.py WORKDIR --seed S
        [--negatives F] [--data DIR] [--results FILE] [--fa 24] [--minutes 20]
        [--snr 0 10 20] [--cal-minutes M] [--no-det] [--fresh]

Through the command line, as docs/streaming.md's default recipe does it:

1. ``kiloml init WORKDIR/seed<S>_neg<F> --task kws``; kiloml.toml then gets ``[source] path``
   = the speech_commands folder, ``[train] seed = S`` and, when F > 0 (F differs from the
   task's default), ``[data.augment] stream_negatives = F`` (nothing else changes: 80
   epochs, 20 banks, DS-CNN, mlperf-kws);
2. ``kiloml run --until train`` (import, features, train; an existing project folder is
   reused, so a finished step is cached; ``--fresh`` starts from an empty folder);
3. ``benchmarks/stream_calibrated.py PROJECT --det`` (calibration at ``--fa`` FA/h on the
   validation stream, ``--cal-minutes`` long (default ``--minutes``), then the test streams
   at each SNR and their DET points; ``--no-det``: without the DET points, a twin pass per
   stream less).

The block appended to ``--results`` (default benchmarks/stream_full_results.txt) holds the
seed, F, the float and int8 accuracy on the test clips, the training and scoring wall times
and stream_calibrated.py's output verbatim (the calibration's choice, the validation DET
front, the SNR table, the test DET points). Keep WORKDIR outside the repository (/tmp).
Wall times are this shared 2-core machine's, not a device's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "shared" / "data" / "speech_commands"


def kiloml(*args, cwd=None) -> str:
    r = subprocess.run([sys.executable, "-m", "kiloml", *map(str, args)], cwd=cwd,
                       capture_output=True, text=True, env=dict(os.environ, COLUMNS="100"))
    if r.returncode != 0:
        sys.exit(f"kiloml {' '.join(map(str, args))}: {(r.stderr or r.stdout).strip()}")
    return r.stdout


def make_project(root: Path, seed: int, negatives: float, data: Path, fresh: bool) -> None:
    """The kws task's project with only the source, the seed and the negatives set."""
    from kiloml.workflow.project import Project

    if fresh and root.exists():
        shutil.rmtree(root)
    if not (root / "kiloml.toml").exists():
        kiloml("init", root, "--task", "kws")
    p = Project.load(root)
    p.config.source.path = str(data)
    p.config.train.seed = seed
    if p.config.data.augment.stream_negatives != negatives:   # F > 0 (or a changed default)
        p.config.data.augment.stream_negatives = negatives
    p.save()
    # what the run trains on, checked rather than assumed
    q = Project.load(root)
    got = (q.config.train.seed, q.config.data.augment.stream_negatives, q.config.source.path)
    if got != (seed, negatives, str(data)):
        sys.exit(f"{root / 'kiloml.toml'}: the settings did not stick ({got})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--seed", type=int, required=True, help="[train] seed")
    ap.add_argument("--negatives", type=float, default=0.0,
                    help="[data.augment] stream_negatives (0: the task's default, not set)")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--results", type=Path, default=HERE / "stream_full_results.txt")
    ap.add_argument("--fa", type=float, default=24.0)
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--snr", type=float, nargs="+", default=[0.0, 10.0, 20.0])
    ap.add_argument("--cal-minutes", type=float, default=None,
                    help="the validation stream's length (default: --minutes)")
    ap.add_argument("--no-det", action="store_true", help="no test-stream DET points")
    ap.add_argument("--fresh", action="store_true", help="delete the project folder first")
    a = ap.parse_args()
    if a.negatives < 0:
        sys.exit("--negatives must be >= 0")
    if not a.data.is_dir():
        sys.exit(f"{a.data}: no such folder")
    root = (a.workdir / f"seed{a.seed}_neg{a.negatives:g}").resolve()
    if HERE.parent in root.parents:
        sys.exit(f"{root}: keep the project folders outside the repository")
    root.parent.mkdir(parents=True, exist_ok=True)
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    make_project(root, a.seed, a.negatives, a.data.resolve(), a.fresh)
    t = time.perf_counter()
    kiloml("run", "-p", root, "--until", "train", "--quiet")
    t_train = time.perf_counter() - t
    meta = json.loads((root / "model" / "meta.json").read_text())
    recipe, test = meta["recipe"], meta["test"]
    head = (f"seed {a.seed}, stream_negatives = {a.negatives:g}: {recipe['epochs']} epochs, "
            f"{recipe['augment_banks']} banks, batch {recipe['batch_size']}, "
            f"{meta['arch']}; test clips (n = {test['int8']['n']}): float "
            f"{100 * test['float']['accuracy']:.2f} %, int8 {100 * test['int8']['accuracy']:.2f}"
            f" %; best epoch {meta['float_train']['best_epoch']} of "
            f"{meta['float_train']['epochs_run']}; training {meta['train_seconds'] / 60:.1f} min"
            f" (kiloml run --until train: {t_train / 60:.1f} min, cached steps included)")
    print(head, flush=True)

    t = time.perf_counter()
    extra = ([] if a.no_det else ["--det"]) + ([] if a.cal_minutes is None else
                                                ["--cal-minutes", f"{a.cal_minutes:g}"])
    r = subprocess.run([sys.executable, str(HERE / "stream_calibrated.py"), str(root), *extra,
                        "--fa", str(a.fa), "--minutes", str(a.minutes),
                        "--snr", *map(str, a.snr)], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"stream_calibrated.py {root}: {(r.stderr or r.stdout).strip()}")
    t_score = time.perf_counter() - t
    print(r.stdout, flush=True)

    block = [f"## seed {a.seed}, stream_negatives = {a.negatives:g} (started {started}; "
             f"project {root})", "", head, "",
             f"benchmarks/stream_calibrated.py {root} {' '.join(extra)} --fa {a.fa:g} --minutes "
             f"{a.minutes:g} --snr {' '.join(f'{s:g}' for s in a.snr)} "
             f"({t_score / 60:.1f} min):", "", r.stdout.rstrip(), "", ""]
    new = not a.results.exists()
    with a.results.open("a") as f:
        if new:
            f.write("# benchmarks/stream_full.py output: the kws task's default recipe on "
                    "speech_commands, calibrated at 24 FA/h on the validation stream (10 dB), "
                    "20-minute test streams (50 keywords + 50 unknown words, stream seed 0)\n\n")
        f.write("\n".join(block))


if __name__ == "__main__":
    main()
