"""Accuracy cost of the streaming MFCC preset: the same short KWS recipe trained on
``mlperf-kws`` (each clip divided by its peak) and on ``mlperf-kws-stream`` (no per-clip
normalization, so a stream computes only its new frames), on ../shared speech_commands with
the kws task's speaker-disjoint split; float and int8 accuracy on the test clips.

    PYTHONPATH=src .venv/bin/python benchmarks/stream_preset_accuracy.py [--epochs 10]
                                           [--banks 2] [--seed 0] [--workdir DIR]

Short on purpose (a shared 2-core machine): the kws task's default recipe (DS-CNN-S, noise
mixing, time shift, SpecAugment) with ``--epochs`` instead of its 80 and ``--banks``
augmented copies instead of its 20; both presets get the same seed, epochs and banks.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def run(preset: str, root: Path, epochs: int, banks: int, data: Path, seed: int) -> dict:
    from kiloml.data import Dataset, import_data
    from kiloml.workflow.project import Project, init_project
    from kiloml.workflow.train import train_project

    shutil.rmtree(root, ignore_errors=True)      # a fresh project: no stale checkpoints
    p = init_project(root, "kws", force=True)
    import_data(Dataset(p.root, p.index_path), p.config.data, data / "speech_commands")
    p = Project.load(root)
    p.config.dsp.preset = preset
    p.config.train.epochs = epochs
    p.config.train.augment_banks = banks
    p.config.train.seed = seed
    p.save()
    t0 = time.time()
    s = train_project(root, progress=False, command="benchmarks/stream_preset_accuracy.py")
    return {"preset": preset, "float": s["float_accuracy"], "int8": s["int8_accuracy"],
            "s": time.time() - t0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--banks", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="[train] seed (both presets)")
    ap.add_argument("--workdir", default="/tmp/kiloml-bench-stream-preset")
    ap.add_argument("--data", default=str(DATA))
    a = ap.parse_args()
    rows = [run(pr, Path(a.workdir) / pr, a.epochs, a.banks, Path(a.data), a.seed)
            for pr in ("mlperf-kws", "mlperf-kws-stream")]
    print(f"kws task recipe, {a.epochs} epochs, {a.banks} augmentation banks, seed {a.seed}, "
          "speech_commands (speaker-disjoint test split)")
    print("| preset | float test accuracy | int8 test accuracy | train time |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['preset']} | {100 * r['float']:.2f} % | {100 * r['int8']:.2f} % | "
              f"{r['s']:.0f} s |")


if __name__ == "__main__":
    main()
