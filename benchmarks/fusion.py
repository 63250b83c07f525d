"""Phone, watch and phone+watch fusion on sp_sw_har, person-disjoint; prints tables.

    python benchmarks/fusion.py [--data DIR] [--folds 4] [--workdir DIR] [--json FILE]
        [--setups phone,watch,fusion,intermediate] [--dropout 0.25]
        [--sensor-dsp SENSOR=raw|spectral ...] [--compare-only] [--model-params JSON]
        [--missing zero|branch-head|fallback] [--seed N] [--threads N]

Data: the sp_sw_har recordings (../shared/data/sp_sw_har/DATA, 16 people; Matey-Sanz,
Casteleyn & Granell 2023, CC BY 4.0). Each setup is the ``kiloml init --example sp_sw_har``
project (two sensors aligned and resampled to 100 Hz, 1 s windows every 250 ms, spectral
features, dense model, int8) with only the phone, only the watch, or both:

    phone / watch     the project with that one sensor declared (6 axes)
    fusion            both sensors (12 axes, early fusion: features concatenated), trained with
                      sensor dropout ``--dropout`` (the missing-sensor policy); also scored with
                      the watch and with the phone missing (their channels zeroed at run time)
    intermediate      the same project with ``model.arch = "fusion"`` (intermediate fusion: a
                      dense branch per sensor over its slice of the features, concatenated, a
                      dense head; int8 SLICE + CONCATENATION), same dropout, same scoring

``--model-params '{"branch": [32]}'`` sets the intermediate model's ``[model.params]`` (the row
is named by them; ``"aux": 1`` adds each branch's own classifier to the loss).
Other model params go the same way, e.g. ``"head_hidden": [32]`` (a hidden layer in each
branch's own classifier), ``"head_from": "features"`` (each sensor's classifier a network of
its own on that sensor's features), ``"aux_skip_missing": true`` (a branch's aux term leaves
out the windows whose sensor dropout zeroed that sensor). ``--seed N`` trains every fold with
``[train] seed = N`` (row names end in ", seed N"; compared with the seed-0 single-sensor
rows).
``--missing branch-head`` (with ``aux`` > 0) sets the intermediate model's ``[model] missing``:
the deployed model keeps the branches' classifiers as extra heads and a device without one
sensor answers with the other sensor's head (the Python twin of ``_classify_sensors`` with that
sensor NULL); the rows "..., fused head on zeros" score the same models' fused head with the
sensor's channels zeroed (the ``zero`` policy), a paired comparison. ``--missing fallback`` sets ``[model] missing = "fallback"`` on the fusion and intermediate
setups: each sensor also gets a dense model of its own, trained apart on its features with
the single-sensor recipe and shipped in the same graph, which answers when it is the sensor
that remains; the "..., fused head on zeros" rows are scored as with branch-head.
``--missing zero`` (the
default; what the earlier rows used) zeroes the channels. ``--threads N`` sets ``[train]
threads`` (torch threads) of every fold. ``--setups`` runs a subset;
``--sensor-dsp watch=raw`` gives that sensor its own block (``[data.sensors.dsp]``: ``raw``
flattened, or ``spectral`` with the example's parameters) in the setups that include it.
Rows are named by the setup and the options that differ from the defaults (``fusion, dropout
0.5``); ``--json`` merges them into the file (other rows kept), so single-sensor rows from an
earlier run compare with a new fusion run.

Folds: people sorted by id, fold f tests people[f::folds] (4 people for 4 folds); validation is
two other people (the first two of the next fold), training the rest. Every figure is the
deployed int8 pipeline (kiloml.deploy.run.run_python: the Python twin of the C library, whose
scores ``kiloml verify`` shows bit-exact in the emulator) on the test people's windows;
flash, RAM, arena and latency (DSP + model) come from ``kiloml run``'s nano33ble profile.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from kiloml.data.index import DatasetIndex  # noqa: E402
from kiloml.data.settings import SensorDSPSettings  # noqa: E402
from kiloml.data.windowing import load_windows  # noqa: E402
from kiloml.deploy.run import run_python  # noqa: E402
from kiloml.train.metrics import classification_report  # noqa: E402
from kiloml.workflow.deploy import project_spec  # noqa: E402
from kiloml.workflow.examples import init_example  # noqa: E402
from kiloml.workflow.project import ImportSection, ModelSection, Project  # noqa: E402
from kiloml.workflow.run import run_project  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "sp_sw_har" / "DATA"
SETUPS = ("phone", "watch", "fusion", "intermediate")
FUSIONS = ("fusion", "intermediate")
DROPOUT = 0.25


SENSOR_DSP = {"raw": {"flatten": True},
              "spectral": {"fft_length": 64, "band_edges_hz": [0, 1, 2, 4, 8, 16, 32]}}


def setup_name(setup: str, dropout: float, sensor_dsp: dict[str, str],
               model_params: dict | None = None, missing: str = "zero", seed: int = 0) -> str:
    """The row name: the setup and the options that differ from the defaults."""
    name = setup
    if setup in FUSIONS and dropout != DROPOUT:
        name += f", dropout {dropout:g}"
    if setup == "intermediate" and model_params:
        name += ", " + " ".join(f"{k} {'-'.join(map(str, v)) if isinstance(v, list) else v}"
                               for k, v in sorted(model_params.items()))
    if (setup == "intermediate" and missing == "branch-head") or \
            (setup in FUSIONS and missing == "fallback"):
        name += f", {missing}"
    for s, blk in sorted(sensor_dsp.items()):
        if setup in (*FUSIONS, s):
            name += f", {s} {blk}"
    if seed:
        name += f", seed {seed}"
    return name


def base_project(work: Path, setup: str, data: Path, dropout: float = DROPOUT,
                 sensor_dsp: dict[str, str] | None = None,
                 model_params: dict | None = None, missing: str = "zero",
                 seed: int = 0) -> Path:
    sensor_dsp = sensor_dsp or {}
    tag = setup_name(setup, dropout, sensor_dsp, model_params, missing, seed) \
        .replace(", ", "_") \
        .replace("intermediate", "im").replace("branch ", "b").replace("head_hidden ", "hh") \
        .replace("hidden ", "h").replace("aux ", "a") \
        .replace("branch-head", "bh").replace("fallback", "fb").replace(" ", "-")   # short: the C prefix (project
    # name) has at most 32 characters
    root = work / f"base_{tag}"
    if (root / "dataset" / "index.csv").is_file():
        return root
    shutil.rmtree(root, ignore_errors=True)
    if setup == "intermediate":   # the early-fusion base (imported once), another model
        early = base_project(work, "fusion", data, dropout, sensor_dsp)
        shutil.copytree(early, root, ignore=shutil.ignore_patterns("build", ".kiloml", "model"))
        p = Project.load(root)
        aux = float((model_params or {}).get("aux", 0) or 0)
        p.config.model = ModelSection(arch="fusion", params=dict(model_params or {}),
                                      missing=missing if aux > 0 or missing == "fallback"
                                      else None)
        p.save()
        return root
    # the example project, then narrowed to one sensor and re-imported
    p = init_example(root, "sp_sw_har", data)
    c = p.config
    # the policy the row asks for (the example writes "fallback"; a single sensor has none)
    c.model.missing = "fallback" if setup == "fusion" and missing == "fallback" else None
    if setup not in FUSIONS:
        c.data.channels = None
        c.data.sensors = [s for s in c.data.sensors if s.name == setup]
        c.data.channels = 6
    else:
        c.data.augment.sensor_dropout = dropout
    for s in c.data.sensors:
        if s.name in sensor_dsp:
            blk = sensor_dsp[s.name]
            s.dsp = SensorDSPSettings(block=blk, params=dict(SENSOR_DSP[blk]))
    c.deploy.verify = False
    p.save()
    r = run_project(Project.load(root), until="import", force=("import",), progress=False)
    assert not r["error"], r["error"]
    return root


def fold_project(work: Path, base: Path, setup: str, fold: int, test: set, val: set,
                 seed: int = 0, threads: int | None = None) -> Path:
    root = work / f"{base.name.removeprefix('base_')}_f{fold}"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(base, root, ignore=shutil.ignore_patterns("build", ".kiloml"))
    p = Project.load(root)
    p.config.source = ImportSection()
    name = root.name.replace("dropout-", "d")   # the C prefix: <= 32 chars
    if len(name) > 32:
        name = f"{name[:20]}_{hashlib.sha1(name.encode()).hexdigest()[:7]}_f{fold}"
    p.config.project.name = name
    if seed:
        p.config.train.seed = seed      # the training seed ([train] seed; default 0)
    if threads:
        p.config.train.threads = threads
    p.save()
    idx = DatasetIndex.load(p.index_path)
    DatasetIndex([s.with_(split="test" if s.group in test else "validation" if s.group in val
                          else "train") for s in idx.samples]).save(p.index_path)
    return root


def score(p: Project, gone: str | None = None, fused: bool = False) -> dict:
    """The deployed pipeline (the Python twin) on the test windows; ``gone``: that sensor
    is missing (``_classify_sensors`` with its buffer NULL: zeros, and under the branch-head
    policy the other sensor's head); ``fused``: the fused head answers whatever the policy
    (the zero policy on the same model)."""
    spec = project_spec(p)
    if fused:
        spec = replace(spec, missing="zero")
    frames, wins = load_windows(p.dataset, p.config.data, split="test")
    names = [nm for nm, _ in spec.sensors]
    res = run_python(spec, frames, missing=0 if gone is None else 1 << names.index(gone))
    y = np.array([spec.labels.index(w.label) for w in wins])
    r = classification_report(y, np.asarray(res.predictions), list(spec.labels))
    return {"accuracy": r["accuracy"], "macro_f1": r["macro_f1"], "windows": r["n"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/kiloml-bench-fusion"))
    ap.add_argument("--json", type=Path, help="merge the rows into this file")
    ap.add_argument("--setups", default=",".join(SETUPS),
                    help="comma-separated subset of phone, watch, fusion, intermediate")
    ap.add_argument("--dropout", type=float, default=DROPOUT,
                    help="the fusion's sensor dropout (data.augment.sensor_dropout)")
    ap.add_argument("--sensor-dsp", action="append", default=[], metavar="SENSOR=BLOCK",
                    help="a sensor's own DSP block: raw or spectral (repeatable)")
    ap.add_argument("--model-params", type=json.loads, default={},
                    help="the intermediate model's [model.params] as JSON")
    ap.add_argument("--missing", choices=("zero", "branch-head", "fallback"), default="zero",
                    help="[model] missing: branch-head (intermediate, aux > 0) or fallback "
                         "(fusion and intermediate)")
    ap.add_argument("--threads", type=int, default=None,
                    help="[train] threads of every fold (default: the project's)")
    ap.add_argument("--seed", type=int, default=0,
                    help="the training seed ([train] seed) of every fold; rows are named by "
                         "it when not 0")
    ap.add_argument("--compare-only", action="store_true",
                    help="run nothing: print the targets table of the fusion rows of these "
                         "options (--setups) against the single-sensor rows in --json")
    a = ap.parse_args()
    setups = [x.strip() for x in a.setups.split(",") if x.strip()]
    if not setups or any(x not in SETUPS for x in setups):
        ap.error(f"--setups: choose from {', '.join(SETUPS)}")
    sensor_dsp = {}
    for item in a.sensor_dsp:
        s, _, blk = item.partition("=")
        if s not in ("phone", "watch") or blk not in SENSOR_DSP:
            ap.error(f"--sensor-dsp {item!r}: expected phone|watch=raw|spectral")
        sensor_dsp[s] = blk
    con = Console(width=110)
    if a.compare_only:
        if not (a.json and a.json.is_file()):
            ap.error("--compare-only needs --json FILE with the measured rows")
        compare(con, json.loads(a.json.read_text()),
                [setup_name(x, a.dropout, sensor_dsp, a.model_params, a.missing, a.seed)
                 for x in setups if x in FUSIONS], sensor_dsp)
        return
    a.workdir.mkdir(parents=True, exist_ok=True)
    people = sorted(d.name for d in a.data.iterdir() if d.is_dir())
    if a.missing == "branch-head" and not float(a.model_params.get("aux", 0) or 0) > 0:
        ap.error("--missing branch-head needs --model-params with \"aux\" > 0")
    names = {x: setup_name(x, a.dropout, sensor_dsp, a.model_params, a.missing, a.seed)
             for x in setups}
    heads = a.missing != "zero"

    def has_heads(setup: str) -> bool:
        return heads and (setup == "intermediate" or a.missing == "fallback")

    rows: dict[str, list] = {}
    for x in setups:
        rows[names[x]] = []
        if x in FUSIONS:
            rows[names[x] + ", watch missing"] = []
            rows[names[x] + ", phone missing"] = []
            if has_heads(x):
                rows[names[x] + ", watch missing, fused head on zeros"] = []
                rows[names[x] + ", phone missing, fused head on zeros"] = []
    cost: dict[str, dict] = {}
    t0 = time.time()
    for setup in setups:
        name = names[setup]
        base = base_project(a.workdir, setup, a.data, a.dropout, sensor_dsp, a.model_params,
                            a.missing if setup in FUSIONS else "zero", a.seed)
        for f in range(a.folds):
            test = set(people[f::a.folds])
            nxt = [x for x in people[(f + 1) % a.folds::a.folds] if x not in test]
            val = set(nxt[:2])
            root = fold_project(a.workdir, base, setup, f, test, val, a.seed, a.threads)
            r = run_project(Project.load(root), until="profile", progress=False)
            if r["error"]:
                sys.exit(f"{setup} fold {f}: {r['error']}")
            p = Project.load(root)
            rows[name].append(score(p))
            if setup in FUSIONS:
                for gone in ("watch", "phone"):
                    rows[f"{name}, {gone} missing"].append(score(p, gone))
                    if has_heads(setup):
                        rows[f"{name}, {gone} missing, fused head on zeros"].append(
                            score(p, gone, fused=True))
            prof = json.loads((root / "build" / "profile.json").read_text())["boards"][0]
            cost[name] = {"flash_bytes": prof["pipeline"]["flash_bytes"],
                           "ram_bytes": prof["pipeline"]["ram_bytes"],
                           "arena_bytes": prof["arena_bytes"],
                           "latency_ms": prof["pipeline"]["latency_ms"],
                           "dsp_ms": prof["dsp"]["latency_ms"]}
            con.print(f"{name} fold {f} (test {', '.join(sorted(test))}): "
                      f"{rows[name][-1]}  [{time.time() - t0:.0f} s]")
    t = Table(title=f"sp_sw_har, {a.folds} person-disjoint folds ({len(people)} people), "
                    "int8 deployed pipeline, nano33ble")
    for col in ("setup", "accuracy %", "macro-F1 %", "min fold F1 %", "flash B", "RAM B",
                "arena B", "latency ms"):
        t.add_column(col, justify="left" if col == "setup" else "right")
    out = json.loads(a.json.read_text()) if a.json and a.json.is_file() else {}
    for k, v in rows.items():
        acc = np.array([x["accuracy"] for x in v]) * 100
        f1 = np.array([x["macro_f1"] for x in v]) * 100
        c = cost.get(k.removesuffix(", fused head on zeros").removesuffix(", watch missing")
                     .removesuffix(", phone missing"), {})
        out[k] = {"folds": v, "accuracy_mean": round(float(acc.mean()), 2),
                  "accuracy_std": round(float(acc.std()), 2),
                  "macro_f1_mean": round(float(f1.mean()), 2),
                  "macro_f1_std": round(float(f1.std()), 2), **c}
        t.add_row(k, f"{acc.mean():.2f} ± {acc.std():.2f}", f"{f1.mean():.2f} ± {f1.std():.2f}",
                  f"{f1.min():.2f}", *(f"{c[x]:,}" if c else "" for x in
                                        ("flash_bytes", "ram_bytes", "arena_bytes")),
                  f"{c['latency_ms']:.2f}" if c else "")
    con.print(t)
    compare(con, out, [names[x] for x in setups if x in FUSIONS], sensor_dsp)
    con.print(f"total {time.time() - t0:.0f} s wall")
    if a.json:
        a.json.write_text(json.dumps(out, indent=1))


def compare(con: Console, out: dict, fusions: list[str], sensor_dsp: dict[str, str]) -> None:
    """The issue's targets for each fusion row against the single-sensor rows (of this run
    or of the merged --json file): macro-F1 over the best single device, and each device
    alone against the fusion with the other one missing (accuracy and macro-F1 points; with
    the branch-head policy also the same models' fused head on zeros)."""
    for fz in fusions:
        # each device alone with the same DSP when measured, else with the default one
        alone = {s: next((n for n in (setup_name(s, DROPOUT, sensor_dsp), s) if n in out), "")
                 for s in ("phone", "watch")}
        if fz not in out or not all(alone.values()):
            con.print(f"{fz}: no single-sensor rows to compare with (run --setups phone,watch)")
            continue
        f1 = {s: out[alone[s]]["macro_f1_mean"] for s in alone}
        acc = {s: out[alone[s]]["accuracy_mean"] for s in alone}
        best = max(f1, key=f1.get)
        t = Table(title=f"{fz} against each device alone (points, mean over folds)")
        for col in ("figure", "accuracy", "macro-F1", "target"):
            t.add_column(col, justify="left" if col in ("figure", "target") else "right")
        t.add_row(f"fusion - best single ({alone[best]})",
                  f"{out[fz]['accuracy_mean'] - acc[best]:+.2f}",
                  f"{out[fz]['macro_f1_mean'] - f1[best]:+.2f}", "F1 >= +3 (or >= 0)")
        for gone, kept in (("phone", "watch"), ("watch", "phone")):
            for suffix in ("", ", fused head on zeros"):
                row = out.get(f"{fz}, {gone} missing{suffix}")
                if row is None:
                    continue
                t.add_row(f"{gone} missing{suffix} - {alone[kept]} alone",
                          f"{row['accuracy_mean'] - acc[kept]:+.2f}",
                          f"{row['macro_f1_mean'] - f1[kept]:+.2f}", ">= -2 both")
        con.print(t)

if __name__ == "__main__":
    main()
