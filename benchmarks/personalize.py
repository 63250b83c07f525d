"""On-device personalization on magic_wand, leave-one-person-out: for each of the 8 people a
model is trained without them (benchmarks/train.py's wand setup and resplit: that person is
the test set, the next one validation), then the classifier head is personalized with K
windows per class of the held-out person and evaluated on the rest of their windows, before
and after. K = 1, 3, 5, 10.

    nice -n 10 python benchmarks/personalize.py [--workdir DIR] [--people a,b] [--shots 1,3,5,10]
                                                [--epochs 30] [--lr 0.05] [--reuse]
                                                [--biases head|all] [--task wand|kws]
                                                [--bias-lr-scale K]

``--biases all``: the update also trains the bias of the layer before the head
(kiloml.deploy.personalize.find_bias_layer), its step scaled by ``--bias-lr-scale``.

``--task kws``: keyword spotting on speakers absent from training. A ``kws`` project
(benchmarks/train.py's setup: all of ../shared/data/speech_commands, MFCC, DS-CNN) is trained
briefly (``--kws-epochs``, no teacher) with ``--speakers`` held-out speakers moved to the test
split (default: the 8 speakers with the most clips that have at least 4 clips of each of the
10 keywords; the other test speakers join training). Each speaker is then personalized with K
clips per class *where the speaker has them*: a class with n clips gives min(K, n - 1) (one is
always left to evaluate); ``_silence_`` has no speaker and is left out of the pools. Same
tables as for magic_wand.

The update is kiloml.deploy.personalize's numpy twin, which equals the generated C byte for
byte (tests/workflow/test_personalize.py); the negative class has no person, so the held-out
person's pool also holds the test-split negative recording's windows. Prints one table per K
(per person: windows evaluated, accuracy before / after, relative error reduction) and the
mean over people; --json writes the rows.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import train as tb  # noqa: E402  (benchmarks/train.py: the wand setup and LOPO resplit)

from rich.table import Table  # noqa: E402


def person_pool(root: Path, person: str):
    from kiloml.data.windowing import load_windows
    from kiloml.deploy.personalize import find_head
    from kiloml.workflow.deploy import project_spec
    from kiloml.workflow.personalize import model_inputs
    from kiloml.workflow.project import load_project

    p = load_project(root)
    spec = project_spec(p)
    frames, wins = load_windows(p.dataset, p.config.data, split="test")
    keep = [i for i, w in enumerate(wins) if w.group == person or w.label == "negative"]
    x = model_inputs(spec, frames[keep])
    y = np.array([list(spec.labels).index(wins[i].label) for i in keep])
    return spec, find_head(spec.graph), x, y


KWS_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")


def kws_speakers(root: Path, n: int) -> list[str]:
    from collections import Counter

    from kiloml.data.index import DatasetIndex

    s = DatasetIndex.load(root / "dataset" / "index.csv").of_role("sample")
    per = {}
    for x in s:
        if x.group and x.label in KWS_WORDS:
            per.setdefault(x.group, Counter())[x.label] += 1
    ok = [g for g, c in per.items() if all(c[w] >= 4 for w in KWS_WORDS)]
    return sorted(ok, key=lambda g: (-sum(per[g].values()), g))[:n]


def resplit_kws(root: Path, held: list[str]) -> None:
    """``held`` speakers are the test split; the other test speakers move to train."""
    from kiloml.data.index import DatasetIndex

    idx_path = root / "dataset" / "index.csv"
    idx = DatasetIndex.load(idx_path)
    out = []
    for x in idx.samples:
        if x.group in held:
            x = x.with_(split="test")
        elif x.split == "test" and x.group:
            x = x.with_(split="train")
        out.append(x)
    DatasetIndex(out).save(idx_path)


def pick_available(labels: np.ndarray, shots: int, num_classes: int) -> np.ndarray:
    """min(shots, n - 1) clips of every class with n >= 2 clips, evenly spaced (the
    workflow's pick_shots rule, per class)."""
    picked = []
    for c in range(num_classes):
        idx = np.flatnonzero(labels == c)
        k = min(shots, len(idx) - 1)
        if k >= 1:
            picked.append(idx[np.round(np.linspace(0, len(idx) - 1, k + 2)[1:-1]).astype(int)])
    return np.concatenate(picked)


def evaluate_available(spec, head, x, y, shots, settings):
    from kiloml.deploy.personalize import check_samples, personalize, personalized_graph, run_model

    train = pick_available(y, shots, head.units)
    check_samples(y[train], head.units, settings)
    rest = np.setdiff1d(np.arange(len(y)), train)
    upd = personalize(head, x[train], y[train], settings)
    before = run_model(head.graph, x[rest]).argmax(axis=1)
    after = run_model(personalized_graph(head, *upd[:3], *upd[5:]), x[rest]).argmax(axis=1)
    acc_b, acc_a = float(np.mean(before == y[rest])), float(np.mean(after == y[rest]))
    eb = 1.0 - acc_b
    return acc_b, acc_a, ((eb - (1.0 - acc_a)) / eb if eb > 0 else 0.0), len(rest)


def run_kws(a, settings, shots) -> list[dict]:
    import shutil

    from kiloml.data.windowing import load_windows
    from kiloml.deploy.personalize import find_head
    from kiloml.workflow.deploy import project_spec
    from kiloml.workflow.personalize import model_inputs
    from kiloml.workflow.project import load_project
    from kiloml.workflow.train import train_project

    root = a.workdir / "kws"
    if not (root / "dataset").exists():
        tb.setup_kws(root)
        held = kws_speakers(root, a.speakers)
        resplit_kws(root, held)
        p = load_project(root)
        p.config.train.epochs = a.kws_epochs
        p.config.train.augment_banks = 2
        p.save()
    held = kws_speakers(root, a.speakers)
    if not (a.reuse and (root / "model").exists()):
        shutil.rmtree(root / "model", ignore_errors=True)
        t0 = time.time()
        s = train_project(root, progress=False, command="benchmarks/personalize.py --task kws")
        print(f"kws trained in {time.time() - t0:.0f} s: int8 test accuracy "
              f"{s['int8_accuracy']:.3f}", file=sys.stderr)
    p = load_project(root)
    spec = project_spec(p)
    head = find_head(spec.graph)
    frames, wins = load_windows(p.dataset, p.config.data, split="test")
    labels = list(spec.labels)
    rows = []
    for sp in held:
        keep = [i for i, w in enumerate(wins) if w.group == sp and w.label in labels]
        x = model_inputs(spec, frames[keep])
        y = np.array([labels.index(wins[i].label) for i in keep])
        for k in shots:
            b, af, rel, n = evaluate_available(spec, head, x, y, k, settings)
            rows.append({"person": sp, "shots": k, "n_eval": n, "accuracy_before": b,
                         "accuracy_after": af, "relative_error_reduction": rel})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/kiloml-bench-personalize"))
    ap.add_argument("--people", default="")
    ap.add_argument("--shots", default="1,3,5,10")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--reuse", action="store_true", help="keep the trained model per person")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--task", choices=("wand", "kws"), default="wand")
    ap.add_argument("--speakers", type=int, default=8, help="kws: held-out speakers")
    ap.add_argument("--kws-epochs", type=int, default=12, help="kws: training epochs")
    ap.add_argument("--biases", choices=("head", "all"), default="head")
    ap.add_argument("--bias-lr-scale", type=float, default=1.0)
    a = ap.parse_args()
    from kiloml.deploy.personalize import Settings
    from kiloml.workflow.personalize import evaluate_person
    from kiloml.workflow.train import train_project

    shots = [int(s) for s in a.shots.split(",")]
    settings = Settings(epochs=a.epochs, lr=a.lr, max_samples=64, biases=a.biases,
                        bias_lr_scale=a.bias_lr_scale)
    if a.task == "kws":
        t0 = time.time()
        rows = run_kws(a, settings, shots)
        print(f"kws personalization done ({time.time() - t0:.0f} s)", file=sys.stderr)
        print_tables(a, rows, shots, "KWS (unseen speakers)", "speaker")
        if a.json:
            a.json.write_text(json.dumps(rows, indent=1))
        return 0
    root = a.workdir / "wand"
    if not (root / "dataset").exists():
        tb.setup_wand(root)
    people = tb.wand_people(root)
    chosen = [p for p in people if not a.people or p in a.people.split(",")]
    rows = []
    t0 = time.time()
    for person in chosen:
        i = people.index(person)
        saved = a.workdir / "models" / person
        tb.resplit_wand(root, person, people[(i + 1) % len(people)])
        if a.reuse and saved.exists():
            import shutil
            shutil.rmtree(root / "model", ignore_errors=True)
            shutil.copytree(saved, root / "model")
        else:
            import shutil
            shutil.rmtree(root / "model", ignore_errors=True)
            train_project(root, progress=False, command="benchmarks/personalize.py")
            shutil.rmtree(saved, ignore_errors=True)
            shutil.copytree(root / "model", saved)
        spec, head, x, y = person_pool(root, person)
        for k in shots:
            try:
                e = evaluate_person(spec, head, x, y, k, settings)
            except Exception as ex:  # a class with too few windows for this K
                rows.append({"person": person, "shots": k, "skipped": str(ex)})
                continue
            rows.append({"person": person, "shots": k, "n_eval": int(len(y) - len(e.train_index)),
                         "accuracy_before": e.accuracy_before, "accuracy_after": e.accuracy_after,
                         "relative_error_reduction": e.relative_error_reduction})
        print(f"{person} done ({time.time() - t0:.0f} s)", file=sys.stderr)
    print_tables(a, rows, shots, "magic_wand", "person")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    return 0


def print_tables(a, rows, shots, task, who) -> None:
    for k in shots:
        t = Table(title=f"{task} personalization, {k} shot(s) per class "
                  f"(epochs {a.epochs}, lr {a.lr}, biases {a.biases}"
                  + (f" x{a.bias_lr_scale:g}" if a.biases == "all" else "") + ")")
        for c in (who, "eval windows", "acc before", "acc after", "rel. error red."):
            t.add_column(c, justify="right")
        got = [r for r in rows if r["shots"] == k and "skipped" not in r]
        for r in got:
            t.add_row(r["person"], str(r["n_eval"]), f"{100 * r['accuracy_before']:.1f} %",
                      f"{100 * r['accuracy_after']:.1f} %",
                      f"{100 * r['relative_error_reduction']:.0f} %")
        for r in rows:
            if r["shots"] == k and "skipped" in r:
                t.add_row(r["person"], "-", "-", "-", "skipped: " + r["skipped"][:40])
        if got:
            eb = np.mean([1 - r["accuracy_before"] for r in got])
            ea = np.mean([1 - r["accuracy_after"] for r in got])
            t.add_row("mean", "", f"{100 * (1 - eb):.1f} %", f"{100 * (1 - ea):.1f} %",
                      f"{100 * np.mean([r['relative_error_reduction'] for r in got]):.0f} % "
                      f"(of mean error: {100 * (eb - ea) / eb if eb else 0:.0f} %)")
        tb.out.print(t)


if __name__ == "__main__":
    sys.exit(main())
