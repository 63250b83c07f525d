"""On-device personalization on magic_wand, leave-one-person-out: for each of the 8 people a
model is trained without them (benchmarks/train.py's wand setup and resplit: that person is
the test set, the next one validation), then the classifier head is personalized with K
windows per class of the held-out person and evaluated on the rest of their windows, before
and after. K = 1, 3, 5, 10.

    nice -n 10 python benchmarks/personalize.py [--workdir DIR] [--people a,b] [--shots 1,3,5,10]
                                                [--epochs 30] [--lr 0.05] [--reuse]

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


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/kiloml-bench-personalize"))
    ap.add_argument("--people", default="")
    ap.add_argument("--shots", default="1,3,5,10")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--reuse", action="store_true", help="keep the trained model per person")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    from kiloml.deploy.personalize import Settings
    from kiloml.workflow.personalize import evaluate_person
    from kiloml.workflow.train import train_project

    shots = [int(s) for s in a.shots.split(",")]
    settings = Settings(epochs=a.epochs, lr=a.lr, max_samples=64)
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
    for k in shots:
        t = Table(title=f"magic_wand personalization, {k} shot(s) per class "
                  f"(epochs {a.epochs}, lr {a.lr})")
        for c in ("person", "eval windows", "acc before", "acc after", "rel. error red."):
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
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
