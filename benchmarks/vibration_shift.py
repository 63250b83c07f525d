"""CWRU bearing faults under a simulated change of operating point: in-domain vs shifted.

    nice -n 10 python benchmarks/vibration_shift.py [--seeds 0,1,2,3] [--recipes before,after]
                                                     [--epochs N] [--workdir DIR]

The ``vibration`` task's project on CWRU's 0 HP recordings (10 classes, 1,024-sample windows
at 12 kHz, held-out contiguous time blocks of every recording as the test split), trained once
per seed and recipe, then its deployed int8 model is scored on the test blocks

    as recorded                   in-domain
    speed -2.6 % / +2.6 %         the block resampled (scipy.signal.resample_poly) as if the
                                  shaft turned at 1,750 instead of 1,797 rpm (0 -> 2 HP) or
                                  the other way round: every frequency moves by that factor
    gain -6 dB / +6 dB            another sensor mounting or load
    speed -2.6 % and gain +6 dB   both

Each shifted block is cut into windows again (no window crosses a block), so nothing of the
training blocks enters the test. The shifts are SIMULATED: ../shared/data holds only the 0 HP
recordings; real other-load recordings also change the fault signatures' shapes, not only
their frequencies and level.

Recipes: ``before`` = the task's defaults without augmentation and with linear band powers
(the defaults before docs/vibration_robustness.md); ``after`` = the task's defaults (speed
+-3 %, gain +-6 dB augmentation, log band powers, no label smoothing).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from fractions import Fraction
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

SHARED = Path(os.environ.get("KILOML_SHARED", Path(__file__).resolve().parents[2] / "shared"))
DATA = SHARED / "data" / "cwru_bearing_0hp"
LABELS = r"(normal|IR\d+|B\d+|OR\d+)"
SLOW = Fraction(1797, 1750)  # a block at 1,750 rpm lasts 1797/1750 times longer
SHIFTS = [("in-domain", Fraction(1), 0.0), ("rpm -2.6%", SLOW, 0.0),
          ("rpm +2.6%", 1 / SLOW, 0.0), ("-6 dB", Fraction(1), -6.0),
          ("+6 dB", Fraction(1), 6.0), ("rpm -2.6%, +6 dB", SLOW, 6.0)]

out = Console(width=160)  # whole tables when not on a terminal


# [train] settings over the task's defaults, per candidate recipe
CANDIDATES = {"after": {}, "after-60": {"epochs": 60}, "after-ema": {"ema": 0.99},
              "after-mixup": {"mixup": 0.2}, "after-ls0": {"label_smoothing": 0.0},
              "after-ls0.1": {"label_smoothing": 0.1}}


def setup(root: Path, recipe: str, seed: int, epochs: int | None):
    from kiloml.data import Dataset, import_data
    from kiloml.workflow.project import AugmentSection, Project, init_project

    p = init_project(root, "vibration", force=True)
    if recipe == "before":
        p.config.data.augment = AugmentSection()
        p.config.dsp.params["log_bands"] = False
    for k, v in CANDIDATES.get(recipe, {}).items():
        setattr(p.config.train, k, v)
    p.config.train.seed = seed
    if epochs:
        p.config.train.epochs = epochs
    p.save()
    p = Project.load(root)
    import_data(Dataset(p.root, p.index_path), p.config.data, DATA, label_regex=LABELS)
    return p


def shifted_accuracy(p, stretch: Fraction, gain_db: float) -> float:
    """The int8 model's accuracy on the test blocks resampled by ``stretch`` (time) and
    scaled by ``gain_db``."""
    from scipy.signal import resample_poly

    from kiloml.data.loader import SourceCache
    from kiloml.io.tflite_reader import read_tflite
    from kiloml.workflow.features import apply_block, dsp_block
    from kiloml.workflow.train import predict_int8, prepare, resolve_settings

    prep = prepare(p, resolve_settings(p))
    graph = read_tflite(p.root / "model" / "model.tflite")
    block = dsp_block(p)
    cache = SourceCache(p.dataset)
    n = int(round(p.config.data.window_ms * p.config.data.sample_rate / 1000))
    xs, ys = [], []
    for s in p.dataset.load_index().of_role("sample"):
        if s.split != "test":
            continue
        x = cache.load(s).astype(np.float64)
        if stretch != 1:
            x = resample_poly(x, stretch.numerator, stretch.denominator, axis=0)
        x *= 10.0 ** (gain_db / 20.0)
        k = len(x) // n
        if k:
            xs.append(x[:k * n].reshape(k, n, x.shape[1]).astype(np.float32))
            ys += [prep.labels.index(s.label)] * k
    feats = apply_block(block, np.concatenate(xs))
    pred = predict_int8(prep, graph, feats).argmax(axis=1)
    return float(np.mean(pred == np.array(ys)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--recipes", default="before,after")
    ap.add_argument("--epochs", type=int, default=None, help="default: the task's")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/kiloml-bench-vibration"))
    a = ap.parse_args()
    from kiloml.workflow.train import train_project

    seeds = [int(s) for s in a.seeds.split(",")]
    recipes = a.recipes.split(",")
    res: dict[tuple[str, int], list[float]] = {}
    val: dict[tuple[str, int], float] = {}
    for recipe in recipes:
        for seed in seeds:
            root = a.workdir / f"{recipe}-{seed}"
            t0 = time.time()
            p = setup(root, recipe, seed, a.epochs)
            s = train_project(p, progress=False, command="benchmarks/vibration_shift.py")
            meta = json.loads((Path(s["model_dir"]) / "meta.json").read_text())
            val[recipe, seed] = meta["float_train"]["best_metric"]
            res[recipe, seed] = [shifted_accuracy(p, st, g) for _, st, g in SHIFTS]
            print(f"{recipe} seed {seed}: {time.time() - t0:.0f} s", file=sys.stderr)
    t = Table(title="CWRU 0 HP: int8 accuracy (%) on held-out time blocks, as recorded and "
                    "under simulated shifts")
    t.add_column("recipe")
    t.add_column("seed", justify="right")
    t.add_column("val", justify="right")
    for name, _, _ in SHIFTS:
        t.add_column(name, justify="right")
    t.add_column("worst shift", justify="right")
    for (recipe, seed), accs in res.items():
        t.add_row(recipe, str(seed), f"{100 * val[recipe, seed]:.2f}",
                  *(f"{100 * v:.2f}" for v in accs),
                  f"{100 * min(accs[1:]):.2f}")
    out.print(t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
