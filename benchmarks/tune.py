"""``kiloml tune`` on the real data: the Pareto front against the task's default settings.

    nice -n 10 python benchmarks/tune.py [--workdir DIR] [--tasks wand] [--trials 40]
                                          [--board ID] [--timeout MIN]

Tasks
    wand     magic_wand (4 classes, 8 people; the project of benchmarks/train.py's ``wand``:
             gestures split by person, negative streams by recording) with the ``motion``
             task's defaults (spectral features of 2 s windows, dense model, 60 epochs) as
             the reference, searched over the task's default space (window, FFT length,
             peaks, hidden layers, calibration).
    kws      Speech Commands with the ``kws`` defaults (DS-CNN-S on MFCC 49x10) at a low
             fidelity so that 40 trials fit in about an hour on 2 shared cores: every trial
             (and the defaults reference) trains ``--kws-epochs`` epochs (default 8 of the
             recipe's 80) on 2 augmented banks (not 20), rungs at epochs 2 and 4 keeping the
             better half (reduction 2). Accuracies are therefore those of short trainings,
             the same schedule for the defaults and every trial (not run by default).

Every figure is measured: validation accuracy of the int8 model, latency / RAM / flash of the
DSP block + model from a real compile and an emulator run on the board. The study is kept in
the project (--workdir, default /tmp/kiloml-bench-tune): a rerun resumes it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import train as bench_train  # noqa: E402  (the data set setups of benchmarks/train.py)


KWS_BANKS = 2


def setup(task: str, root: Path, kws_epochs: int = 8):
    from kiloml.workflow.project import Project, task_defaults

    if (root / "dataset" / "index.csv").is_file():
        return Project.load(root)
    if task == "wand":
        p = bench_train.setup_wand(root)
        d = task_defaults("motion", p.config.project.name)
        p.config.dsp, p.config.model = d.dsp, d.model
        p.config.data.window_ms, p.config.data.stride_ms = d.data.window_ms, d.data.stride_ms
        p.save()
        return Project.load(root)
    p = bench_train.setup_kws(root)
    p.config.train.augment_banks = KWS_BANKS
    p.config.tune.epochs = kws_epochs
    p.config.tune.reduction = 2
    p.config.tune.min_epochs = 2
    p.save()
    return Project.load(root)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/kiloml-bench-tune"))
    ap.add_argument("--tasks", default="wand")
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--board", default=None)
    ap.add_argument("--timeout", type=float, default=None, help="minutes")
    ap.add_argument("--kws-epochs", type=int, default=8,
                    help="kws: epochs of one trial's full training (low fidelity)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    from kiloml.workflow.tune import tune

    for task in a.tasks.split(","):
        root = a.workdir / task
        root.mkdir(parents=True, exist_ok=True)
        p = setup(task, root, a.kws_epochs)
        t0 = time.time()
        res = tune(p, a.board, trials=a.trials, timeout_min=a.timeout,
                   log_fn=lambda m: print(f"  {m}", file=sys.stderr, flush=True))
        res["seconds"] = round(time.time() - t0, 1)
        if a.json:
            print(json.dumps(res, indent=1))
            continue
        print_front(task, res)
    return 0


def _row(name: str, r: dict) -> str:
    acc = "n/a" if r.get("accuracy") is None else f"{100 * r['accuracy']:.2f}"
    params = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in r["params"].items()) or \
        "(task defaults)"
    return (f"| {name} | {acc} | {r['latency_ms']:.3f} | {r['ram_kb']:.2f} | "
            f"{r['flash_kb']:.1f} | {params} |")


def print_front(task: str, res: dict) -> None:
    rows = res["trials"]
    states = {s: sum(r["state"] == s for r in rows) for s in
              ("complete", "pruned", "infeasible", "failed")}
    print(f"\n## {task}: {len(rows)} trials on {res['limits']}, {res['seconds'] / 60:.1f} min "
          f"({', '.join(f'{v} {k}' for k, v in states.items())}); rungs at epochs "
          f"{res['rungs']} of {res['epochs']}\n")
    print("| trial | val acc % (int8) | latency ms | RAM KB | flash KB | settings |")
    print("|---|---:|---:|---:|---:|---|")
    if res["defaults"]:
        print(_row("defaults", res["defaults"]))
    for r in sorted((r for r in rows if r["pareto"]), key=lambda r: -r["accuracy"]):
        print(_row(f"{r['number']}{' (dominates)' if r['number'] in res['better_than_defaults'] else ''}", r))
    print(f"\nPareto front: {len(res['pareto'])} trials; more accurate than the defaults at no "
          f"more latency and RAM: {res['better_than_defaults'] or 'none'}")


if __name__ == "__main__":
    sys.exit(main())
