"""Train, quantize and compress on the real data sets; print training times and variant tables.

    python benchmarks/train.py [--workdir DIR] [--tasks kws,wand,cwru,anomaly] [--board ID]
                               [--seeds 0,1,2,3] [--variants ptq,distilled|none]
                               [--set kws:model.params.channels=80 ...] [--table FILE]
                               [--teacher T.tflite [--teacher-labels L] ...]

With ``--seeds`` every classifier task is trained once per training seed (``[train] seed``:
weight init, batch order, augmentation draws; the split stays the same) and a table of the
int8 test accuracy (and of each variant's) per seed with mean, min and max follows: the spread
that a single figure in README.md has to be read against. The seed table also holds each int8
model's validation accuracy ("val ..." columns): recipes are chosen on validation, the test
columns are the figures to report.

``--set TASK:KEY=VALUE`` (repeatable) changes one setting of a task's project before training,
e.g. ``--set kws:model.params.channels=80 --set kws:train.epochs=30
--set kws:data.augment.noise_probability=0.9`` (VALUE is read as JSON, else as a string): the
recipe experiments of docs/kws_accuracy.md. ``--table FILE`` appends the seed table (plain
text, with the settings) to FILE.

``--teacher FILE`` (repeatable: an ensemble, the mean of the teachers' logits) is the teacher
of the ``distilled`` variant of every classifier task run (default: kws the MLPerf reference
model, the others self-distillation); ``--teacher-labels`` as ``kiloml optimize``'s (once for
all teachers or once per teacher, '' = the project's order, ``mlperf-kws``). Distilling in
``kiloml train`` itself is ``--set 'kws:train.teacher=["a.tflite", "b.tflite"]'``.

Device time: after training, the project's DSP block and its int8 model are profiled on the
board (``--board``, default the project's) as ``kiloml profile --project`` does (generated C,
real arm-none-eabi build, emulator, cycle model, on the first test window); "DSP + model ms"
is the DSP block's latency plus each model's, against the issue-15 budget where one applies
(kws: 100 ms per one-second window on nano33ble).

Tasks (all splits disjoint in the group that matters; see each setup below)
    kws      Speech Commands (12 classes, 3,975 clips of 191 speakers), MFCC 49x10
             (``mlperf-kws``), DS-CNN-S, the ``kws`` task's default recipe (noise mixing,
             time shift, SpecAugment), speaker-disjoint test split. Variants include the model
             distilled from the MLPerf Tiny reference model (../shared/models).
    wand     magic_wand (4 classes, 8 people), raw 3-axis windows of 4 s, 1-D CNN. Gestures are
             split by person (unseen people in test); the person-less negative recordings by
             recording: continuous streams 1 and 2 train, 3 validation, 4 test, the segmented
             ones automatically.
    wand-lopo  magic_wand leave-one-person-out: each of the 8 people is the test set once
             (the next one validation, the other six train; negative streams as above);
             float and int8 accuracy per held-out person, mean and worst.
    cwru     CWRU bearing 0 HP (10 classes), 1,024-sample windows, the ``vibration`` task's
             spectral features + dense model; held-out time blocks of each recording.
    anomaly  CWRU: k-means scorer and the MLPerf-style autoencoder trained on "normal" windows
             only; ROC AUC of normal vs. the nine faults on the held-out blocks.

Projects and caches live in --workdir (default /tmp/kiloml-bench-train); a rerun reuses
features, augmentation banks and teacher logits but retrains. Training uses the machine as it
is (2 threads, idle-waiting OpenMP): times are wall clock on a shared 2-core box.
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

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

SHARED = Path(os.environ.get("KILOML_SHARED", Path(__file__).resolve().parents[2] / "shared"))
DATA = SHARED / "data"
KWS_REF = SHARED / "models" / "mlperf_tiny" / "kws_ref_model.tflite"
# issue 15's latency budget per decision (DSP + model), on its board
LATENCY_BUDGET_MS = {"kws": ("nano33ble", 100.0)}
out = Console(width=130)


def setup_kws(root: Path):
    from kiloml.data import Dataset, import_data
    from kiloml.workflow.project import init_project

    p = init_project(root, "kws", force=True)
    import_data(Dataset(p.root, p.index_path), p.config.data, DATA / "speech_commands")
    return p


def setup_wand(root: Path):
    from kiloml.data import Dataset, import_data
    from kiloml.workflow.project import DSPSection, ModelSection, Project, init_project

    p = init_project(root, "motion", force=True)
    p.config.data.sample_rate = 25
    p.config.data.window_ms = 4000
    p.config.data.stride_ms = 2000
    p.config.dsp = DSPSection(block="raw")
    p.config.model = ModelSection(arch="cnn1d")
    p.save()
    p = Project.load(root)
    w = DATA / "magic_wand"
    ds = Dataset(p.root, p.index_path)
    for lab in ("ring", "slope", "wing"):
        import_data(ds, p.config.data, w / lab, label=lab)
    streams = {"output_negative_1.txt": "train", "output_negative_2.txt": "train",
               "output_negative_3.txt": "validation", "output_negative_4.txt": "test"}
    for f in sorted((w / "negative").iterdir()):
        import_data(ds, p.config.data, f, label="negative", split=streams.get(f.name, "auto"))
    return p


def wand_people(root: Path) -> list[str]:
    from kiloml.data.index import DatasetIndex

    s = DatasetIndex.load(root / "dataset" / "index.csv").of_role("sample")
    return sorted({x.group for x in s if x.label != "negative"})


def resplit_wand(root: Path, test: str, val: str) -> None:
    """Person ``test`` is the test set, ``val`` validation, the others train; the negative
    recordings keep their splits except a person's own negatives, which follow the person."""
    from kiloml.data.index import DatasetIndex

    idx_path = root / "dataset" / "index.csv"
    idx = DatasetIndex.load(idx_path)
    people = set(wand_people(root))
    out = []
    for x in idx.samples:
        if x.group in people:
            x = x.with_(split="test" if x.group == test else
                        "validation" if x.group == val else "train")
        out.append(x)
    DatasetIndex(out).save(idx_path)


def thin_training(root: Path, fraction: float) -> dict:
    """Keep the training samples of a ``fraction`` of the training groups (speakers; a clip
    without one is its own group), chosen by a fixed hash of the group name, so that the
    kept groups of a smaller fraction are among those of a larger one; validation, test and
    background samples are untouched (the learning curve of docs/kws_accuracy.md)."""
    import hashlib

    from kiloml.data.index import DatasetIndex

    idx_path = root / "dataset" / "index.csv"
    idx = DatasetIndex.load(idx_path)

    def rank(g: str) -> float:
        return int(hashlib.sha256(g.encode()).hexdigest()[:12], 16) / 16 ** 12

    train = [x for x in idx.of_role("sample") if x.split == "train"]
    drop = {x.id for x in train if rank(x.group or x.id) >= fraction}
    DatasetIndex([x for x in idx if x.id not in drop]).save(idx_path)
    kept = [x for x in train if x.id not in drop]
    return {"groups": len({x.group or x.id for x in kept}),
            "of_groups": len({x.group or x.id for x in train}),
            "samples": len(kept), "of_samples": len(train)}


def run_wand_lopo(workdir: Path) -> dict:
    from kiloml.workflow.train import train_project

    root = fresh_root(workdir, "wand-lopo")
    setup_wand(root)
    people = wand_people(root)
    rows = []
    t0 = time.time()
    for i, person in enumerate(people):
        if (root / "model").exists():
            shutil.rmtree(root / "model")
        resplit_wand(root, person, people[(i + 1) % len(people)])
        s = train_project(root, progress=False, command="benchmarks/train.py (wand-lopo)")
        meta = json.loads((root / "model" / "meta.json").read_text())
        rows.append({"person": person, "n_test": meta["test"]["int8"]["n"],
                     "float_accuracy": s["float_accuracy"], "int8_accuracy": s["int8_accuracy"]})
    return {"task": "magic_wand leave-one-person-out", "rows": rows,
            "wall_s": round(time.time() - t0, 1)}


def print_lopo(res: dict) -> None:
    out.rule(f"[bold]{res['task']}[/bold]: cnn1d (motion)")
    t = Table(title=f"each person held out once (total {res['wall_s']} s)", title_justify="left")
    for col in ("test person", "test windows", "float", "int8"):
        t.add_column(col, justify="left" if col == "test person" else "right")
    for r in res["rows"]:
        t.add_row(r["person"], str(r["n_test"]), f"{100 * r['float_accuracy']:.2f} %",
                  f"{100 * r['int8_accuracy']:.2f} %")
    f = [r["float_accuracy"] for r in res["rows"]]
    q = [r["int8_accuracy"] for r in res["rows"]]
    t.add_row("mean", str(sum(r["n_test"] for r in res["rows"])),
              f"{100 * sum(f) / len(f):.2f} %", f"{100 * sum(q) / len(q):.2f} %")
    t.add_row("worst", "", f"{100 * min(f):.2f} %", f"{100 * min(q):.2f} %")
    out.print(t)


def setup_cwru(root: Path, arch: str = "dense", **params):
    from kiloml.data import Dataset, import_data
    from kiloml.workflow.project import ModelSection, Project, init_project

    p = init_project(root, "vibration", force=True)
    p.config.model = ModelSection(arch=arch, params=params)
    p.save()
    p = Project.load(root)
    import_data(Dataset(p.root, p.index_path), p.config.data, DATA / "cwru_bearing_0hp",
                label_regex=r"(normal|IR\d+|B\d+|OR\d+)")
    return p


def apply_settings(root: Path, sets: list[str]) -> None:
    """``KEY=VALUE`` settings (dotted keys into kiloml.toml's sections) on a project."""
    from kiloml.workflow.project import Project

    if not sets:
        return
    p = Project.load(root)
    d = p.config.model_dump()
    for kv in sets:
        key, _, raw = kv.partition("=")
        try:
            val = json.loads(raw)
        except json.JSONDecodeError:
            val = raw
        *path, last = key.split(".")
        node = d
        for k in path:
            node = node.setdefault(k, {}) if isinstance(node, dict) else None
            if node is None:
                raise SystemExit(f"--set {kv}: {k} is not a section")
        node[last] = val
    p.config = type(p.config).model_validate(d)
    p.save()


def val_int8(root: Path, model_file: Path | None = None) -> float:
    """Accuracy of the int8 model (the project's, or the variant ``model_file``) on the
    validation split: what a recipe is chosen on."""
    from kiloml.io.tflite_reader import read_tflite
    from kiloml.workflow.features import load_split
    from kiloml.workflow.project import Project
    from kiloml.workflow.train import _prep_from_meta, load_meta, predict_int8, report

    p = Project.load(root)
    meta = load_meta(p)
    fd = load_split(p, "validation", meta["labels"])
    prep = _prep_from_meta(p, meta, fd)
    graph = read_tflite(model_file or root / "model" / meta["model_file"])
    return report(prep, predict_int8(prep, graph, fd.x), fd)["accuracy"]


def fresh_root(workdir: Path, name: str) -> Path:
    """Project directory; keeps the feature cache of a previous run, drops its model."""
    root = workdir / name
    if (root / "model").exists():
        shutil.rmtree(root / "model")
    root.mkdir(parents=True, exist_ok=True)
    return root


def splits_of(root: Path) -> dict:
    from collections import Counter

    from kiloml.data.index import DatasetIndex

    s = DatasetIndex.load(root / "dataset" / "index.csv").of_role("sample")
    groups = {sp: sorted({x.group for x in s if x.split == sp and x.group})
              for sp in ("train", "validation", "test")}
    shared = set(groups["train"]) & set(groups["test"])
    # a group (recording) in both splits: its train and test samples must be disjoint in time
    blocks_disjoint = all(a.offset + a.length <= b.offset or b.offset + b.length <= a.offset
                          for a in s if a.split == "train" and a.group in shared
                          for b in s if b.split == "test" and b.group == a.group)
    return {"samples": dict(Counter(x.split for x in s)),
            "test_groups": groups["test"][:6] + (["..."] if len(groups["test"]) > 6 else []),
            "groups_disjoint": not shared,
            "time_blocks_disjoint": blocks_disjoint if shared else None}


def device_time(root: Path, board: str | None, budget_key: str | None = None) -> dict:
    """The project's DSP block and trained int8 model profiled on ``board`` (default: the
    project's) as ``kiloml profile --project`` does; the latency budget that applies to the
    task on that board, if any."""
    from kiloml.workflow.profile import profile

    p = profile(project=root, board=board)[0]
    d = p["dsp"]
    dev = {"board": p["board"], "dsp_block": d["block"], "dsp_variant": d["variant"],
           "dsp_runtime": d["runtime"], "dsp_ms": d.get("latency_ms"),
           "model_ms": p.get("latency_ms"), "dsp_model_ms": p["pipeline"]["latency_ms"]}
    budget = LATENCY_BUDGET_MS.get(budget_key or "")
    if budget is not None and budget[0] == p["board"]:
        dev["budget_ms"] = budget[1]
    return dev


def with_dsp(dev: dict | None, model_ms: float | None) -> float | None:
    """DSP + model latency (ms) for a model latency measured on ``dev``'s board."""
    if dev is None or dev.get("dsp_ms") is None or model_ms is None:
        return None
    return round(dev["dsp_ms"] + model_ms, 4)


def run_task(name: str, root: Path, variants: list[str], board: str, optimize_kw: dict,
             device: bool = True) -> dict:
    from kiloml.workflow.optimize import optimize_project
    from kiloml.workflow.train import train_project

    t0 = time.time()
    summary = train_project(root, progress=False, command=f"benchmarks/train.py ({name})")
    train_wall = time.time() - t0
    meta = json.loads((root / "model" / "meta.json").read_text())
    res = {"task": name, "summary": summary, "train_wall_s": round(train_wall, 1),
           "split": splits_of(root), "features_s": meta.get("features_seconds")}
    if device and meta["arch"] != "kmeans":
        from kiloml.errors import KilomlError

        try:
            res["device"] = device_time(root, board, name)
        except KilomlError as e:            # say so, keep the accuracy figures
            res["device_error"] = str(e)
    if variants:
        t1 = time.time()
        res["variants"] = optimize_project(root, variants, board=board, progress=False,
                                           **optimize_kw)
        res["optimize_wall_s"] = round(time.time() - t1, 1)
        same_board = res.get("device", {}).get("board") == res["variants"]["board"]
        for r in res["variants"]["variants"]:
            if same_board and not r.get("with_dsp"):
                r["dsp_model_ms"] = with_dsp(res["device"], r.get("latency_ms"))
    return res


def device_line(dev: dict) -> str:
    """One line: DSP + model latency on the board, and the budget verdict."""
    def ms(v):
        return "n/a" if v is None else f"{v:.2f} ms"

    line = (f"device {dev['board']}: DSP {dev['dsp_block']} ({dev['dsp_variant']}, "
            f"{dev['dsp_runtime']}) {ms(dev['dsp_ms'])} + model {ms(dev['model_ms'])} = "
            f"{ms(dev['dsp_model_ms'])} per window")
    if "budget_ms" in dev and dev["dsp_model_ms"] is not None:
        ok = dev["dsp_model_ms"] <= dev["budget_ms"]
        line += (f" ({'meets' if ok else 'exceeds'} the {dev['budget_ms']:.0f} ms budget)")
    return line


def print_task(res: dict) -> None:
    s = res["summary"]
    sp = res["split"]
    out.rule(f"[bold]{res['task']}[/bold]: {s['arch']} ({s['task']})")
    held_out = (f"train/test groups disjoint: {sp['groups_disjoint']}" if sp["groups_disjoint"]
                else "same recordings in train and test, held-out time blocks disjoint: "
                     f"{sp['time_blocks_disjoint']}")
    out.print(f"samples per split {sp['samples']}; test groups {sp['test_groups']}; {held_out}",
              highlight=False)
    keys = [k for k in s if k.endswith("accuracy") or k.endswith("roc_auc")]
    out.print("  ".join(f"{k} {100 * s[k]:.2f} %" if k.endswith("accuracy") else
                        f"{k} {s[k]:.4f}" for k in keys), highlight=False)
    out.print(f"training {s.get('train_seconds')} s (wall incl. features, quantization and "
              f"evaluation {res['train_wall_s']} s)"
              + (f"; int8 arena {s['arena_bytes']:,} B, weights {s['weights_bytes']:,} B, "
                 f"{s['macs']:,} MACs" if "arena_bytes" in s else ""), highlight=False)
    if res.get("device"):
        out.print(device_line(res["device"]), highlight=False)
    elif res.get("device_error"):
        out.print(f"device: not profiled ({res['device_error']})", highlight=False)
    v = res.get("variants")
    if not v:
        return
    dev = res.get("device") or {}
    budget = f" (<= {dev['budget_ms']:.0f})" if "budget_ms" in dev else ""
    t = Table(title=f"variants on {v['n_test']:,} test windows, board {v['board']} "
                    f"(optimize took {res['optimize_wall_s']} s)", title_justify="left")
    for col in ("variant", v["metric"], "flash B", "RAM B", "arena B", "MACs", "latency ms",
                f"DSP + model ms{budget}", "train s"):
        t.add_column(col, justify="left" if col == "variant" else "right")
    for r in v["variants"]:
        est = "~" if r.get("estimated") else ""
        metric = f"{100 * r['metric']:.2f} %" if v["metric"] == "accuracy" else f"{r['metric']:.4f}"
        t.add_row(r["name"], metric, est + f"{r.get('flash_bytes') or 0:,}",
                  est + f"{r.get('ram_bytes') or 0:,}",
                  f"{r['arena_bytes']:,}" if r.get("arena_bytes") else "",
                  f"{r.get('macs') or 0:,}",
                  f"{r['latency_ms']:.2f}" if r.get("latency_ms") else "n/a",
                  fmt_total(r.get("dsp_model_ms"), dev.get("budget_ms")),
                  f"{r['train_seconds']:.0f}" if r.get("train_seconds") else "")
    out.print(t)
    for n in v.get("notes", []):
        out.print(f"  note: {n}", highlight=False)


def fmt_total(ms: float | None, budget: float | None) -> str:
    """A DSP + model latency cell, marked when it is over the budget."""
    if ms is None:
        return "n/a"
    return f"{ms:.2f}" + (" (over)" if budget is not None and ms > budget else "")


def run_seeds(name: str, root: Path, seeds: list[int], variants: list[str], board: str,
              optimize_kw: dict, device: bool = True) -> dict:
    """The same project and split trained once per seed; int8 test accuracy and each
    variant's metric per seed."""
    from kiloml.workflow.project import Project

    rows = []
    for seed in seeds:
        p = Project.load(root)
        p.config.train.seed = seed
        p.save()
        root = fresh_root(root.parent, root.name)
        res = run_task(name, root, variants, board, optimize_kw, device)
        row = {"seed": seed, "int8": res["summary"]["int8_accuracy"],
               "val int8": val_int8(root), "train_wall_s": res["train_wall_s"]}
        for v in (res.get("variants") or {}).get("variants", []):
            row[v["name"]] = v["metric"]
            if v["name"] != "float" and str(v.get("file", "")).endswith(".tflite"):
                row[f"val {v['name']}"] = val_int8(root, Path(v["file"]))
            if v.get("latency_ms"):
                lat = max(lat, v["latency_ms"]) if (lat := row.get("ms")) else v["latency_ms"]
                row["ms"] = lat
                row["arena B"] = max(row.get("arena B", 0), v.get("arena_bytes") or 0)
        dev = res.get("device") or {}
        if dev.get("dsp_ms") is not None:
            row["DSP ms"] = dev["dsp_ms"]
            # the slowest model of the seed (a variant, else the trained model) with the DSP
            row["DSP + model ms"] = with_dsp(dev, row.get("ms", dev.get("model_ms")))
            if "budget_ms" in dev:
                row["budget ms"] = dev["budget_ms"]
        rows.append(row)
        out.print(f"  {name} seed {seed}: " + "  ".join(
            f"{k} {fmt_cell(k, x)}" for k, x in row.items() if k != "seed"), highlight=False)
    return {"task": name, "seeds": rows, "n_test": res["summary"].get("n_test")}


DEVICE_COLS = ("ms", "arena B", "DSP ms", "DSP + model ms", "budget ms")


def fmt_cell(col: str, x) -> str:
    if x is None:
        return "n/a"
    if col in ("ms", "DSP ms", "DSP + model ms", "budget ms"):
        return f"{x:.2f}"
    if col == "arena B":
        return f"{x:,}"
    if col == "train_wall_s":
        return f"{x:.0f}"
    return f"{100 * x:.2f} %"


def print_seeds(res: dict, table_file: Path | None = None, settings: list[str] = ()) -> None:
    rows = res["seeds"]
    acc = [k for k in rows[0] if k not in ("seed", "train_wall_s") + DEVICE_COLS]
    # test columns first, then the validation ones, then the device figures of the last seed
    cols = [c for c in acc if not c.startswith("val ")] + [c for c in acc if c.startswith("val ")]
    t = Table(title=f"{res['task']}: accuracy per training seed (same split; val = validation "
                    f"split, the others test)", title_justify="left")
    t.add_column("seed")
    for c in cols:
        t.add_column(c, justify="right")
    for r in rows:
        t.add_row(str(r["seed"]), *(fmt_cell(c, r[c]) for c in cols))
    for what, f in (("mean", lambda v: sum(v) / len(v)), ("min", min), ("max", max)):
        t.add_row(what, *(fmt_cell(c, f([r[c] for r in rows])) for c in cols))
    out.print(t)
    dev = {k: rows[-1][k] for k in DEVICE_COLS if k in rows[-1]}
    if dev:
        verdict = ""
        if dev.get("budget ms") is not None and dev.get("DSP + model ms") is not None:
            verdict = (" (meets the budget)" if dev["DSP + model ms"] <= dev["budget ms"]
                       else " (exceeds the budget)")
        out.print("  device (slowest variant): " + ", ".join(f"{k} {fmt_cell(k, v)}"
                                                          for k, v in dev.items()) + verdict,
                  highlight=False)
    if table_file is not None:
        lines = [f"## {res['task']}: " + (" ".join(settings) or "task defaults"),
                 "| seed | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for r in rows:
            lines.append(f"| {r['seed']} | " + " | ".join(fmt_cell(c, r[c]) for c in cols) + " |")
        lines.append("| mean | " + " | ".join(
            fmt_cell(c, sum(r[c] for r in rows) / len(rows)) for c in cols) + " |")
        walls = ", ".join(fmt_cell("train_wall_s", r["train_wall_s"]) for r in rows)
        lines.append(", ".join(f"{k} {fmt_cell(k, v)}" for k, v in dev.items())
                     + f"; train wall s {walls}")
        with open(table_file, "a") as f:
            f.write("\n".join(lines) + "\n\n")


def teacher_args(teachers: list[Path], labels: list[str]) -> dict | str:
    """optimize_project's teacher arguments from ``--teacher`` / ``--teacher-labels`` ({} when
    no teacher is given), or the usage error as a string."""
    if not teachers:
        return "--teacher-labels needs --teacher" if labels else {}
    if len(labels) > 1 and len(labels) != len(teachers):
        return (f"--teacher-labels: given {len(labels)} times for {len(teachers)} --teacher "
                "files (give it once, or once per teacher)")
    missing = [t for t in teachers if not t.is_file()]
    if missing:
        return f"--teacher {missing[0]}: no such file"
    tl = [[x.strip() for x in lab.split(",") if x.strip()] for lab in labels]
    kw: dict = {"teacher": [str(t) for t in teachers] if len(teachers) > 1 else str(teachers[0])}
    if tl:
        kw["teacher_labels"] = (tl[0] or None) if len(tl) == 1 else tl
    return kw


# task -> (title, project setup, optimize_project arguments)
CLASSIFIERS = {
    "kws": ("kws", setup_kws, {"teacher": str(KWS_REF), "teacher_labels": ["mlperf-kws"]}),
    "wand": ("magic_wand", setup_wand, {}),
    "cwru": ("cwru", setup_cwru, {}),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/kiloml-bench-train"))
    ap.add_argument("--tasks", default="kws,wand,cwru,anomaly")
    ap.add_argument("--board", default=None, help="profile on this board (default: project's)")
    ap.add_argument("--json", type=Path, default=None, help="also write all results here")
    ap.add_argument("--seeds", default=None, help="comma-separated training seeds (seed study)")
    ap.add_argument("--variants", default="float,ptq,qat,pruned,distilled",
                    help="optimize variants per classifier task, or 'none'")
    ap.add_argument("--set", action="append", default=[], metavar="TASK:KEY=VALUE",
                    help="change one project setting of a task before training (repeatable)")
    ap.add_argument("--table", type=Path, default=None,
                    help="append the seed table (markdown, with the settings) to this file")
    ap.add_argument("--teacher", action="append", type=Path, default=[], metavar="FILE",
                    help="int8 .tflite teacher of the distilled variant (repeatable: an "
                         "ensemble, the mean of the teachers' logits)")
    ap.add_argument("--teacher-labels", action="append", default=[], metavar="LABELS",
                    help="comma-separated class order of the teachers' outputs or mlperf-kws; "
                         "once for all teachers or once per --teacher ('' = the project's)")
    ap.add_argument("--train-fraction", type=float, default=None, metavar="F",
                    help="keep the training samples of this fraction of the training groups "
                         "(speakers, people) only: a learning curve")
    ap.add_argument("--no-device", action="store_true",
                    help="skip profiling the DSP block and model after training")
    a = ap.parse_args()
    sets: dict[str, list[str]] = {}
    for x in a.set:
        task, sep, kv = x.partition(":")
        if not sep or "=" not in kv:
            print(f"--set {x}: expected TASK:KEY=VALUE", file=sys.stderr)
            return 2
        sets.setdefault(task, []).append(kv)
    variants = [] if a.variants == "none" else [v.strip() for v in a.variants.split(",")]
    teacher_kw = teacher_args(a.teacher, a.teacher_labels)
    if isinstance(teacher_kw, str):
        print(teacher_kw, file=sys.stderr)
        return 2
    if a.train_fraction is not None and not 0 < a.train_fraction <= 1:
        print(f"--train-fraction {a.train_fraction}: expected 0 < F <= 1", file=sys.stderr)
        return 2
    if not DATA.is_dir():
        print(f"no shared data at {DATA}", file=sys.stderr)
        return 1
    a.workdir.mkdir(parents=True, exist_ok=True)
    results = []
    tasks = [t.strip() for t in a.tasks.split(",")]
    for task in tasks:
        if task in CLASSIFIERS:
            title, setup, extra = CLASSIFIERS[task]
            extra = teacher_kw or extra
            root = fresh_root(a.workdir, task)
            setup(root)
            apply_settings(root, sets.get(task, []))
            if a.train_fraction is not None:
                th = thin_training(root, a.train_fraction)
                out.print(f"{task}: training on {th['samples']:,} of {th['of_samples']:,} "
                          f"samples ({th['groups']} of {th['of_groups']} groups)",
                          highlight=False)
            if a.seeds:
                res = run_seeds(title, root, [int(x) for x in a.seeds.split(",")], variants,
                                a.board, extra, not a.no_device)
                print_seeds(res, a.table, sets.get(task, []) + (
                    [f"--train-fraction {a.train_fraction}"] if a.train_fraction is not None
                    else []))
                results.append(res)
                continue
            res = run_task(title, root, variants, a.board, extra, not a.no_device)
        elif task == "wand-lopo":
            res = run_wand_lopo(a.workdir)
            print_lopo(res)
            results.append(res)
            continue
        elif task == "anomaly":
            for arch, params in (("kmeans", {"n_clusters": 8}),
                                 ("autoencoder", {"hidden": 32, "bottleneck": 4, "depth": 2})):
                root = fresh_root(a.workdir, f"cwru-{arch}")
                setup_cwru(root, arch, **params)
                res = run_task(f"cwru anomaly ({arch})", root,
                               ["float", "ptq"] if arch == "autoencoder" else [], a.board, {},
                               not a.no_device)
                print_task(res)
                results.append(res)
            continue
        else:
            print(f"unknown task {task!r}", file=sys.stderr)
            return 2
        print_task(res)
        results.append(res)
    if a.json:
        a.json.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
