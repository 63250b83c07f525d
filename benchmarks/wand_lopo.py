"""magic_wand leave-one-person-out: each of the 8 people is the test set once, per recipe.

    nice -n 10 python benchmarks/wand_lopo.py [--recipes defaults,strong] [--people N]
                                              [--workdir DIR]

The project of benchmarks/train.py's ``wand`` task (the magic_wand example's settings: raw
3-axis windows of 4 s every 2 s at 25 Hz, 1-D CNN, the ``motion`` task's training recipe);
for each person: that person's gestures are the test split, the next person's validation, the
other six train (the person-less negative streams keep their fixed splits). The int8 test
accuracy per held-out person, mean and worst, per recipe:

    defaults   the example's settings as they are now (``strong`` augmentation, the motion
               task's 60 epochs); every other recipe pins the 60 epochs (FORMER) unless it
               sets its own
    before     the motion task's former augmentation: jitter 0.01, scale +-10 %, rotation
               up to 15 degrees
    strong     jitter 0.03, scale +-20 %, rotation up to 30 degrees, speed +-10 % (each
               window resampled: people draw gestures at different speeds), gain +-1 dB

    mid, strong-mixup (mixup 0.2), strong-long (120 epochs), strong-wide (channels 24/48/96),
    mid-long   the candidates of docs/wand_lopo.md
    strong-ema (exponential moving average of the weights, decay 0.995), strong-ema-mixup
    (the same + mixup 0.2), strong-drop (dropout 0.4 before the pool, was 0.2), strong-ls0
    (no label smoothing, was 0.1), strong-center (the raw block subtracts each axis's mean
    over the window: gravity and how the wand is held leave the input), strong-center-drop
    (both; strong-ema-mixup and strong-center-drop were not run)
    strong-distill, strong-distill-mix, strong-distill-wide (issue 15): the student (the
    example's model) trained as ``strong``, then distilled from the int8 models of the same
    fold of ``strong`` (``strong-wide`` for -wide: 1-D CNN channels 24/48/96) trained with
    the other three of seeds 0-3, the teachers seeing every batch as the student does (-mix:
    mixup 0.2 while distilling). They need those runs first, with the same --workdir (kept
    under DIR/models/RECIPE-SEED/PERSON/); the student's first phase resumes the stored
    ``strong`` checkpoint of its seed and fold instead of training it again;
    strong-restart (a control): the same two phases with distill_alpha 0 (no teacher signal)

``--seed S`` trains every fold with seed S. ``--json F`` also writes the rows to F;
``--summarize F...`` prints, without training, one row per recipe and seed of such files and
each recipe's means over its seeds (the tables of docs/wand_lopo.md). ``--people N`` holds
out only the first N people (a quicker, partial run: say so when quoting it). ``--threads T``:
torch threads of training (issue 15's runs: 1; the figures are not those of 2 threads,
``strong`` seed 0: 92.33 vs 92.14 %, one person 4.8 points apart, so compare recipes at one
setting). Each fold's row holds ``val`` (the
best epoch's validation accuracy), ``val_last`` (the mean of the last LAST_N epochs': issue
15's figure for choosing), ``val_int8`` (the deployed model on the validation split),
``float`` (the float model on the test person) and ``val_hist`` (every epoch's), of the
training phase that made the deployed model (the distillation phase for a student).
``--summarize F... --per-person R1,R2``: also each named recipe's per-person table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from train import resplit_wand, setup_wand, wand_people  # noqa: E402

# every recipe but ``defaults`` is stated against the example as it was before the epochs
# change (60 epochs, the motion default), so its figures stay the ones measured before
FORMER = {"train.epochs": 60}
_STRONG = {"jitter_std": 0.03, "scale_range": 0.2, "rotate_deg": 30.0, "speed_range": 0.1,
           "gain_db": 1.0}
# [data.augment] settings; "train.*" keys set [train], "model.*" keys [model.params],
# "dsp.*" keys [dsp.params]
RECIPES = {"defaults": {},
           "before": {"jitter_std": 0.01, "scale_range": 0.1, "rotate_deg": 15.0,
                      "speed_range": 0.0, "gain_db": 0.0},
           "strong": _STRONG,
           "mid": {"jitter_std": 0.02, "scale_range": 0.15, "rotate_deg": 25.0,
                   "speed_range": 0.1},
           "strong-long": {**_STRONG, "train.epochs": 120},
           "strong-mixup": {**_STRONG, "train.mixup": 0.2},
           "strong-wide": {**_STRONG, "model.channels": [24, 48, 96]},
           "mid-long": {"jitter_std": 0.02, "scale_range": 0.15, "rotate_deg": 25.0,
                        "speed_range": 0.1, "train.epochs": 120},
           "strong-ema": {**_STRONG, "train.ema": 0.995},
           "strong-ema-mixup": {**_STRONG, "train.ema": 0.995, "train.mixup": 0.2},
           "strong-drop": {**_STRONG, "model.dropout": 0.4},
           "strong-ls0": {**_STRONG, "train.label_smoothing": 0.0},
           "strong-center": {**_STRONG, "dsp.center": True},
           "strong-center-drop": {**_STRONG, "dsp.center": True, "model.dropout": 0.4},
           # distillation from an ensemble (issue 15): per fold, the student (the example's
           # model) first trains as ``strong`` does ("first": its float checkpoint of the same
           # seed and fold is resumed at its end, the loop's resume being exact), then is
           # taught for 60 epochs by the int8 models of the ``teachers`` recipe of the same
           # fold trained with the other three of seeds 0-3 (TEACHER_SEEDS), every training
           # batch as the student sees it (augmented); distill_alpha 0.7, temperature 4 (the
           # motion defaults)
           "strong-distill": {**_STRONG, "teachers": "strong", "first": "strong",
                              "train.teacher_sees": "batch"},
           "strong-distill-mix": {**_STRONG, "teachers": "strong", "first": "strong",
                                  "train.teacher_sees": "batch", "train.distill_mixup": 0.2},
           "strong-distill-wide": {**_STRONG, "teachers": "strong-wide", "first": "strong",
                                   "train.teacher_sees": "batch"},
           # control: the students' two 60-epoch phases without the teachers' signal
           # (distill_alpha 0: the second phase is plain cross-entropy on the labels)
           "strong-restart": {**_STRONG, "teachers": "strong", "first": "strong",
                              "train.teacher_sees": "batch", "train.distill_alpha": 0.0},
           # strong-distill-wide as one `kiloml train` (the magic_wand example's default since
           # 2026-12-07): the project trains its three teachers itself ([train]
           # self_teachers; seeds: the first three >= 0 other than the student's, for seeds
           # 0-3 the same teachers as strong-distill-wide's)
           "self-distill-wide": {**_STRONG, "train.self_teachers": 3,
                                 "train.self_teacher_params": {"channels": [24, 48, 96]},
                                 "train.teacher_sees": "batch"}}
# the seeds whose ``strong`` models teach a student of seed s: the other three of 0-3
TEACHER_SEEDS = (0, 1, 2, 3)
# the validation figure of the seed 0-3 comparison of issue 15: the mean of the last LAST_N
# epochs' validation accuracy of the phase that made the deployed model (not the maximum over
# epochs, which favours longer and noisier training)
LAST_N = 10

out = Console(width=160)  # whole tables when not on a terminal


def teacher_seeds(seed: int) -> list[int]:
    """The seeds whose ``strong`` models teach a distilled student of ``seed``."""
    return [k for k in TEACHER_SEEDS if k != seed]


def stored(workdir: Path, recipe: str, seed: int, person: str) -> Path:
    """Where the fold's int8 model and float checkpoint of (recipe, seed) are kept."""
    return workdir / "models" / f"{recipe}-{seed}" / person


def val_last(history: list[dict], n: int = LAST_N) -> float:
    """The mean validation accuracy of the last ``n`` epochs of a training phase."""
    accs = [h["val_acc"] for h in history if "val_acc" in h]
    if not accs:
        raise ValueError("no validation accuracy in the history")
    tail = accs[-n:]
    return sum(tail) / len(tail)


def apply_recipe(p, recipe: str, seed: int, threads: int | None = None) -> dict:
    """Set the project's configuration for ``recipe`` (RECIPES) and ``seed``; returns the
    recipe's special keys (``teachers``)."""
    p.config.train.seed = seed
    if threads:
        p.config.train.threads = threads
    special = {}
    for k, v in {**({} if recipe == "defaults" else FORMER), **RECIPES[recipe]}.items():
        if k in ("teachers", "first"):
            special[k] = v
        elif k.startswith("train."):
            setattr(p.config.train, k[6:], v)
        elif k.startswith("model."):
            p.config.model.params = {**p.config.model.params, k[6:]: v}
        elif k.startswith("dsp."):
            p.config.dsp.params = {**p.config.dsp.params, k[4:]: v}
        else:
            setattr(p.config.data.augment, k, v)
    return special


def fold_teachers(workdir: Path, source: str, seed: int, person: str) -> list[str]:
    """The teachers of the fold holding out ``person``: the ``source`` recipe's int8 models
    of the other seeds (they must have been run: one line naming the missing file)."""
    paths = [stored(workdir, source, k, person) / "model.tflite" for k in teacher_seeds(seed)]
    for t in paths:
        if not t.is_file():
            raise SystemExit(f"error: {t}: no teacher model (run `--recipes {source} --seed "
                             f"{t.parent.parent.name.rsplit('-', 1)[1]}` with the same "
                             "--workdir first)")
    return [str(t) for t in paths]


def run(workdir: Path, recipe: str, people_n: int | None, seed: int = 0,
        threads: int | None = None) -> dict:
    from kiloml.workflow.project import Project
    from kiloml.workflow.train import predict_int8, prepare, report, train_project
    from kiloml.io.tflite_reader import read_tflite

    root = workdir / f"wand-lopo-{recipe}-{seed}"
    setup_wand(root)
    p = Project.load(root)
    special = apply_recipe(p, recipe, seed, threads)
    p.save()
    people = wand_people(root)
    rows = []
    t0 = time.time()
    for i, person in enumerate(people[:people_n]):
        if (root / "model").exists():
            shutil.rmtree(root / "model")
        resplit_wand(root, person, people[(i + 1) % len(people)])
        if "teachers" in special:
            src = special["teachers"]
            p = Project.load(root)
            p.config.train.teacher = fold_teachers(workdir, src, seed, person)
            p.save()
            # the student's first phase (on the labels) is the ``first`` run of this seed: its
            # float checkpoint is resumed at its end instead of trained again (the loop's
            # resume is exact; a checkpoint of another configuration is refused by the loop)
            ck = stored(workdir, special["first"], seed, person) / "float_last.pt"
            if ck.is_file():
                (root / "model" / "checkpoints" / "float").mkdir(parents=True)
                shutil.copy(ck, root / "model" / "checkpoints" / "float" / "last.pt")
        s = train_project(root, progress=False, command=f"benchmarks/wand_lopo.py ({recipe})")
        meta = json.loads((root / "model" / "meta.json").read_text())
        phase = meta["distill_train"] or meta["float_train"]
        prep = prepare(Project.load(root))
        val_int8 = report(prep, predict_int8(prep, read_tflite(root / "model" / "model.tflite"),
                                             prep.val.x), prep.val)["accuracy"]
        keep = stored(workdir, recipe, seed, person)
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / "model" / "model.tflite", keep / "model.tflite")
        shutil.copy(root / "model" / "checkpoints" / "float" / "last.pt", keep / "float_last.pt")
        rows.append({"person": person, "n": meta["test"]["int8"]["n"],
                     "int8": s["int8_accuracy"], "float": s["float_accuracy"],
                     "val": phase["best_metric"], "val_last": round(val_last(phase["history"]), 5),
                     "val_int8": val_int8, "val_hist": [h.get("val_acc") for h in
                                                        phase["history"]]})
        print(f"{recipe} {person}: {100 * s['int8_accuracy']:.2f} % "
              f"({time.time() - t0:.0f} s)", file=sys.stderr)
    return {"recipe": recipe, "seed": seed, "rows": rows, "wall_s": round(time.time() - t0),
            "threads": threads, "last_n": LAST_N}


def _pct(rows: list[dict], key: str) -> str:
    """100 x the mean of ``key`` over the rows ("-" when a row lacks it: older runs)."""
    if any(key not in x for x in rows):
        return "-"
    return f"{100 * sum(x[key] for x in rows) / len(rows):.2f}"


def summarize(files: list[Path], per_person: tuple[str, ...] = ()) -> None:
    """One row per recipe and seed from --json files (a file without a ``seed`` key takes it
    from its name, ``seed<N>_...``), then each recipe's means over its seeds. ``val last``:
    the mean validation accuracy of the last LAST_N epochs (runs made since issue 15).
    ``per_person``: recipes whose per-person table over their seeds is printed too."""
    import re

    runs = {}
    for f in files:
        for r in json.loads(f.read_text()):
            seed = r.get("seed")
            if seed is None:
                seed = int(re.match(r"seed(\d+)_", f.name).group(1))
            runs[(r["recipe"], seed)] = r
    t = Table(title="magic_wand leave-one-person-out, int8, per recipe and seed (val best: "
                    "the float model's best accuracy on each fold's validation person; val "
                    f"last: the mean of its last {LAST_N} epochs')")
    for c in ("recipe", "seed", "val best", "val last", "test mean", "test worst (person)"):
        t.add_column(c, justify="left" if c == "recipe" else "right")
    agg: dict[str, list] = {}
    for (recipe, seed), r in sorted(runs.items()):
        rows = r["rows"]
        val = 100 * sum(x["val"] for x in rows) / len(rows)
        last = _pct(rows, "val_last")
        test = 100 * sum(x["int8"] for x in rows) / len(rows)
        worst = min(rows, key=lambda x: x["int8"])
        t.add_row(recipe, str(seed), f"{val:.2f}", last, f"{test:.2f}",
                  f"{100 * worst['int8']:.2f} ({worst['person']})")
        agg.setdefault(recipe, []).append((seed, val, test, 100 * worst["int8"],
                                           None if last == "-" else float(last)))
    out.print(t)
    t = Table(title="means over the seeds each recipe was run with")
    for c in ("recipe", "seeds", "val best", "val last", "test mean", "lowest worst",
              "seeds >= 95 / 88"):
        t.add_column(c, justify="left" if c == "recipe" else "right")
    for recipe, v in sorted(agg.items(), key=lambda kv: -sum(x[1] for x in kv[1]) / len(kv[1])):
        last = "-" if any(x[4] is None for x in v) else f"{sum(x[4] for x in v) / len(v):.2f}"
        t.add_row(recipe, ",".join(str(x[0]) for x in v),
                  f"{sum(x[1] for x in v) / len(v):.2f}", last,
                  f"{sum(x[2] for x in v) / len(v):.2f}",
                  f"{min(x[3] for x in v):.2f}",
                  f"{sum(x[2] >= 95 and x[3] >= 88 for x in v)} of {len(v)}")
    out.print(t)
    for recipe in per_person:
        seeds = sorted(s for (r, s) in runs if r == recipe)
        if not seeds:
            raise SystemExit(f"error: --per-person: no run of recipe {recipe!r} in the files")
        t = Table(title=f"{recipe}: int8 test accuracy (%) per held-out person and seed")
        for c in ("person", "windows", *(f"seed {s}" for s in seeds), "mean"):
            t.add_column(c, justify="left" if c == "person" else "right")
        first = runs[(recipe, seeds[0])]["rows"]
        for i, row in enumerate(first):
            accs = [100 * runs[(recipe, s)]["rows"][i]["int8"] for s in seeds]
            t.add_row(row["person"], str(row["n"]), *(f"{a:.2f}" for a in accs),
                      f"{sum(accs) / len(accs):.2f}")
        means = [100 * sum(x["int8"] for x in runs[(recipe, s)]["rows"]) / len(first)
                 for s in seeds]
        worst = [100 * min(x["int8"] for x in runs[(recipe, s)]["rows"]) for s in seeds]
        t.add_row("mean", "", *(f"{m:.2f}" for m in means), f"{sum(means) / len(means):.2f}")
        t.add_row("worst", "", *(f"{w:.2f}" for w in worst), "")
        t.add_row(f"val last {LAST_N}", "", *(_pct(runs[(recipe, s)]["rows"], "val_last")
                                              for s in seeds), "")
        out.print(t)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", default="defaults,strong")
    ap.add_argument("--people", type=int, default=None)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/kiloml-bench-wand-lopo"))
    ap.add_argument("--seed", type=int, default=0, help="the training seed of every fold")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads for training (default: the recipe's, 2)")
    ap.add_argument("--summarize", type=Path, nargs="+", default=None,
                    help="print the per-seed table of earlier --json files (no training)")
    ap.add_argument("--per-person", default="",
                    help="with --summarize: recipes (comma-separated) whose per-person table "
                         "over their seeds is printed too")
    a = ap.parse_args()
    if a.summarize:
        summarize(a.summarize, tuple(r for r in a.per_person.split(",") if r))
        return 0
    res = [run(a.workdir, r, a.people, a.seed, a.threads) for r in a.recipes.split(",")]
    if a.json:
        (a.json).write_text(json.dumps(res, indent=1))
    t = Table(title="magic_wand leave-one-person-out: int8 test accuracy (%) per held-out "
                    f"person (seed {a.seed}; val best: the float model's best accuracy on each "
                    f"fold's validation person, val last {LAST_N}: the mean of its last "
                    f"{LAST_N} epochs', val int8: the deployed model's)")
    t.add_column("person")
    t.add_column("windows", justify="right")
    for r in res:
        t.add_column(f"{r['recipe']}", justify="right")
    for i, row in enumerate(res[0]["rows"]):
        t.add_row(row["person"], str(row["n"]), *(f"{100 * r['rows'][i]['int8']:.2f}"
                                                  for r in res))
    t.add_row("mean", "", *(f"{100 * sum(x['int8'] for x in r['rows']) / len(r['rows']):.2f}"
                            for r in res))
    t.add_row("worst", "", *(f"{100 * min(x['int8'] for x in r['rows']):.2f}" for r in res))
    t.add_row("val best", "", *(f"{100 * sum(x['val'] for x in r['rows']) / len(r['rows']):.2f}"
                                for r in res))
    t.add_row(f"val last {LAST_N}", "", *(_pct(r["rows"], "val_last") for r in res))
    t.add_row("val int8", "", *(_pct(r["rows"], "val_int8") for r in res))
    t.add_row("test float", "", *(_pct(r["rows"], "float") for r in res))
    t.add_row("wall s", "", *(str(r["wall_s"]) for r in res))
    out.print(t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
