"""``kiloml report``: collect what a project holds and write one self-contained HTML page.

What each section reads (a section whose inputs are missing is left out):

=========  ===================================================================================
Data       the dataset index (kiloml.data.info.dataset_info without re-hashing the sources)
Features   one window per class (test split first) through the project's DSP block; a PCA of
           the normalized features of the training (<= 1,500) and test (<= 1,500, every
           misclassified one kept) windows, misclassified = the int8 model's prediction
Training   model/meta.json: per-epoch history of every training phase, the chosen epoch
Accuracy   ``kiloml test`` (the int8 model on the test split), float vs int8 from meta.json
Variants   model/variants/variants.json (``kiloml optimize``)
Tuning     the study of the last ``kiloml tune`` (.kiloml/tune/study.db, read, never run):
           trials and Pareto front, without the trials' wall-clock seconds
Model      the model compiled in memory as ``kiloml run`` compiles it (the project's board's
           kernels): per-node MACs, weights and the arena plan; cycles per node from
           build/profile.json
Boards     build/profile.json; battery life at one decision per window stride on a 1,000 mAh
           cell (kiloml.targets.profile.battery_days)
Verify     build/verify.json
=========  ===================================================================================

The page holds no date and no timing of its own making: the same project gives the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any, Optional

import numpy as np

from kiloml import __version__
from kiloml.codegen.backend import get_backend
from kiloml.codegen.c import generate_c
from kiloml.compress.quantize import run_int8
from kiloml.data.index import DatasetIndex
from kiloml.data.windowing import load_windows
from kiloml.errors import KilomlError
from kiloml.fileio import atomic_write_text
from kiloml.io.tflite_reader import read_tflite
from kiloml.ir.ops import REGISTRY
from kiloml.report import pca2, render_report, subsample
from kiloml.targets.boards import load_boards
from kiloml.targets.profile import battery_days, default_runtime
from kiloml.train.models import to_model_input
from kiloml.train.normalize import Normalizer
from kiloml.workflow.data import project_info
from kiloml.workflow.features import apply_block, dsp_block, load_split
from kiloml.workflow.project import Project, as_project
from kiloml.workflow.train import model_dir, test_project
from kiloml.workflow.tune import DB_NAME, TUNE_DIR, load_summary

REPORT = "build/report.html"
BATTERY_MAH = 1000.0
EXPLORER_LIMIT = 1500
PHASES = (("float_train", "float"), ("distill_train", "distillation"),
          ("qat_train", "quantization-aware"))


def _sha256(path: Path) -> Optional[str]:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _json(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _meta(p: Project) -> Optional[dict]:
    return _json(model_dir(p) / "meta.json")


# ---------------------------------------------------------------- header


def _c_command(c_dir: Path) -> tuple[Optional[str], Optional[str]]:
    """(command, model sha256) from the frontmatter of the generated header in ``c_dir``."""
    for h in sorted(c_dir.glob("*.h")) if c_dir.is_dir() else []:
        head = h.read_text(errors="replace")[:600]
        m = re.search(r"\* command: (.*)\n", head)
        if m and "model sha256" in head:
            sha = re.search(r"model sha256: ([0-9a-f]+)", head)
            return m.group(1).strip(), sha.group(1) if sha else None
    return None, None


def _header(p: Project, meta: Optional[dict]) -> dict:
    c = p.config
    per_sensor = [f"{s.name} {s.dsp.block if s.dsp else c.dsp.block}" for s in c.data.sensors]
    dsp = f"DSP per sensor ({', '.join(per_sensor)})" if any(s.dsp for s in c.data.sensors) \
        else f"DSP {c.dsp.block}"
    facts = [f"task {c.project.task}", f"board {c.board.name}", dsp]
    if meta:
        facts.append(f"model {meta['arch']} ({len(meta['labels'])} classes)")
    arts: list[dict] = [{"artifact": "dataset/index.csv", "sha256": _sha256(p.index_path),
                         "note": "kiloml run (import step) or kiloml data import"}]
    if meta:
        arts.append({"artifact": "model/model.tflite", "command": meta.get("command"),
                     "sha256": _sha256(model_dir(p) / meta.get("model_file", "model.tflite"))})
    var = model_dir(p) / "variants" / "variants.json"
    if var.is_file():
        arts.append({"artifact": "model/variants/variants.json", "sha256": _sha256(var),
                     "note": "kiloml optimize"})
    cmd, _ = _c_command(p.root / "build" / "c")
    if cmd:
        arts.append({"artifact": "build/c/", "command": cmd})
    deploy = p.root / "build" / "deploy"
    for d in sorted(deploy.iterdir()) if deploy.is_dir() else []:
        man = next((m for m in sorted(d.rglob("*.json")) if (_json(m) or {}).get("command")),
                   None)
        if man is not None:
            arts.append({"artifact": f"build/deploy/{d.name}/",
                         "command": _json(man)["command"]})
    for name, step in (("profile.json", "profile"), ("verify.json", "verify")):
        f = p.root / "build" / name
        if f.is_file():
            arts.append({"artifact": f"build/{name}", "sha256": _sha256(f),
                         "note": f"kiloml run ({step} step)"})
    return {"project": c.project.name, "kiloml_version": __version__, "facts": facts,
            "artifacts": arts}


# ---------------------------------------------------------------- data and features


def _data(p: Project) -> Optional[dict]:
    if not p.index_path.is_file():
        return None
    samples = DatasetIndex.load(p.index_path).of_role("sample")
    if not samples:
        return None
    info = project_info(p, verify=False)
    return {"info": info, "durations": [round(s.duration_s, 4) for s in samples],
            "groups": dict(sorted(Counter(s.group for s in samples if s.group).items())),
            "window_s": p.config.data.window_ms / 1000.0}


def _channel_names(n: int, audio: bool) -> list[str]:
    if audio and n == 1:
        return ["audio"]
    return ["x", "y", "z"] if n == 3 else [f"ch{i}" for i in range(n)]


def _features(p: Project, meta: Optional[dict], graph) -> Optional[dict]:
    if not p.index_path.is_file() or meta is None:
        return None
    block = dsp_block(p)
    labels = meta["labels"]
    norm = Normalizer.from_state(meta["normalizer"])
    samples = DatasetIndex.load(p.index_path).of_role("sample")
    examples = []
    for lab in labels:
        pick = sorted((s for s in samples if s.label == lab),
                      key=lambda s: ({"test": 0, "validation": 1}.get(s.split, 2), s.id))
        if not pick:
            continue
        frames, wins = load_windows(p.dataset, p.config.data, samples=pick[:1])
        if not len(wins):
            continue
        feat = apply_block(block, frames[:1])[0]
        two_d = feat.ndim == 2
        shown = feat if two_d else norm(feat[None])[0]
        examples.append({"label": lab, "raw": frames[0], "rate": p.config.data.sample_rate,
                         "channel_names": _channel_names(frames.shape[2], block.audio),
                         "features": shown,
                         "feature_title": f"{block.name} features" if two_d else
                         f"{block.name} features (normalized)"})
    out: dict[str, Any] = {"block": block.name, "examples": examples}
    tr = load_split(p, "train", labels)
    te = load_split(p, "test", labels)
    if len(tr.x) >= 3 and tr.x[0].size >= 2:
        ti = subsample(len(tr.x), EXPLORER_LIMIT)
        pred = None
        if graph is not None and len(te.x) and not meta.get("anomaly"):
            xin = to_model_input(norm(te.x), meta["layout"])
            pred = run_int8(graph, xin, logits=True).argmax(1)
        wrong_all = (pred != te.y) & (te.y >= 0) if pred is not None else \
            np.zeros(len(te.y), bool)
        si = np.union1d(subsample(len(te.x), EXPLORER_LIMIT, seed=1), np.flatnonzero(wrong_all))
        (ptr, pte), explained = pca2(norm(tr.x[ti]), norm(te.x[si]))
        y = np.concatenate([tr.y[ti], te.y[si]])
        keep = y >= 0
        is_test = np.concatenate([np.zeros(len(ti), bool), np.ones(len(si), bool)])
        wrong = np.concatenate([np.zeros(len(ti), bool), wrong_all[si]])
        wrong_ids = [(te.sample_ids[i], labels[te.y[i]], labels[pred[i]])
                     for i in np.flatnonzero(wrong_all)] if pred is not None else []
        out["pca"] = {"points": np.vstack([ptr, pte])[keep], "y": y[keep], "labels": labels,
                      "is_test": is_test[keep], "wrong": wrong[keep], "explained": explained,
                      "wrong_ids": wrong_ids}
    return out


# ---------------------------------------------------------------- model, boards


def _training(meta: Optional[dict]) -> Optional[dict]:
    if not meta:
        return None
    phases = []
    for k, name in PHASES:
        r = meta.get(k)
        if r and r.get("history"):
            phases.append(dict(r, name=name))
    return {"phases": phases} if phases else None


def _accuracy(p: Project, meta: Optional[dict]) -> Optional[dict]:
    if not meta or not meta.get("test"):
        return None
    try:
        rep = test_project(p)
    except KilomlError:
        return None
    fi = {k: v for k, v in meta["test"].items() if k in ("float", "int8")}
    if "qat_eval" in meta["test"]:
        fi["QAT (fake-quant)"] = meta["test"]["qat_eval"]
    return {"test": rep, "float_int8": fi, "split": "test",
            "model": str(Path(rep.get("model", "")).relative_to(p.root))
            if str(rep.get("model", "")).startswith(str(p.root)) else rep.get("model")}


def _kernels(p: Project) -> str:
    """The kernel set ``kiloml run`` compiles the project's model with."""
    db = load_boards()
    b = db.get(p.config.board.name)
    return default_runtime(b.core) if b is not None else "portable"


def _model(p: Project, graph, profile: Optional[dict]) -> Optional[dict]:
    if graph is None:
        return None
    kernels = _kernels(p)
    res = generate_c(graph, prefix="model", runtime=kernels)
    g, plan = res.graph, res.plan
    prof = (profile or {}).get("boards", [{}])[0] if profile else {}
    cyc = {r["node"]: r for r in prof.get("layers", [])} if prof.get("runtime") == kernels \
        else {}
    layers = []
    for n, node in enumerate(g.nodes):
        consts = {t for t in node.inputs if t >= 0 and g.tensors[t].is_const}
        pr = cyc.get(n, {})
        layers.append({"node": n, "op": node.op, "name": g.tensors[node.outputs[0]].name,
                       "output_shape": list(g.tensors[node.outputs[0]].shape),
                       "macs": int(REGISTRY[node.op].macs(g, node)),
                       "weights_bytes": int(sum(g.tensors[t].nbytes for t in consts)),
                       "kernel": res.kernels[n] if n < len(res.kernels) else "",
                       "cycles": pr.get("cycles"), "macs_per_cycle": pr.get("macs_per_cycle")})
    first: dict[int, int] = {t: -1 for t in g.inputs}
    last: dict[int, int] = {t: -1 for t in g.inputs}
    for n, node in enumerate(g.nodes):
        for t in node.inputs:
            if t in plan.offsets:
                last[t] = max(last.get(t, n), n)
        for t in node.outputs:
            first.setdefault(t, n)
            last[t] = max(last.get(t, n), n)
    for t in g.outputs:
        last[t] = len(g.nodes) - 1
    buffers = [{"name": g.tensors[t].name, "kind": "tensor", "offset": int(off),
                "size": int(g.tensors[t].nbytes), "first": first.get(t, -1),
                "last": last.get(t, first.get(t, -1))}
               for t, off in sorted(plan.offsets.items())]
    backend = get_backend(kernels)
    for n, off in sorted(plan.scratch.items()):
        buffers.append({"name": f"n{n} scratch", "kind": "scratch", "offset": int(off),
                        "size": int(backend.scratch_bytes(g, g.nodes[n])), "first": n,
                        "last": n})
    return {"layers": layers, "kernels": kernels, "macs": sum(r["macs"] for r in layers),
            "weights_bytes": int(graph.weights_bytes()),
            "profiled_on": prof.get("board") if cyc else None,
            "arena": {"arena_bytes": int(plan.arena_bytes),
                      "lower_bound_bytes": int(plan.lower_bound_bytes), "buffers": buffers}}


def _boards(p: Project, profile: Optional[dict]) -> Optional[list[dict]]:
    if not profile or not profile.get("boards"):
        return None
    db = load_boards()
    rate = 1000.0 / p.config.data.stride_ms
    out = []
    for r in profile["boards"]:
        pipe = r.get("pipeline") or {}
        dsp = r.get("dsp") or {}
        row = dict(r)
        for k in ("latency_ms", "energy_uj", "flash_bytes", "ram_bytes", "fits"):
            if k in pipe:
                row[k] = pipe[k]
        b = db.get(r["board"])
        row["battery_days"] = battery_days(row, b, rate, BATTERY_MAH) \
            if b is not None and row.get("latency_ms") is not None else None
        model_ram = r["ram_bytes"] - r.get("arena_bytes", 0) - r.get("stack_bytes", 0)
        flash_parts = [("weights", r.get("weights_bytes", 0)),
                       ("model code + runtime", r["flash_bytes"] - r.get("weights_bytes", 0))]
        ram_parts = [("arena", r.get("arena_bytes", 0)), ("stack", r.get("stack_bytes", 0)),
                     ("other model RAM", max(model_ram, 0))]
        if dsp:
            flash_parts.append(("DSP", dsp.get("flash_bytes", 0)))
            ram_parts.append(("DSP", dsp.get("ram_bytes", 0)))
        row["memory"] = {"board": r["board"],
                         "flash": {"parts": flash_parts, "used": row["flash_bytes"],
                                   "limit": r["flash_available_bytes"]},
                         "ram": {"parts": ram_parts, "used": row["ram_bytes"],
                                 "limit": r["ram_available_bytes"]}}
        out.append(row)
    return out


# ---------------------------------------------------------------- the verb


def _tuning(p: Project) -> Optional[dict]:
    """The last ``kiloml tune`` study (None without one, or when the project's settings no
    longer match any study)."""
    if not (p.root / TUNE_DIR / DB_NAME).is_file():
        return None
    try:
        res = load_summary(p)
    except KilomlError:
        return None
    for r in res["trials"] + ([res["defaults"]] if res.get("defaults") else []):
        r.pop("seconds", None)  # the page holds no timing of its own making
    return res


def collect(project: Project | str | Path | None = None) -> dict:
    """Everything the report shows, as plain data (kiloml.report.render_report's input)."""
    p = as_project(project)
    meta = _meta(p)
    model = model_dir(p) / meta.get("model_file", "model.tflite") if meta else None
    graph = read_tflite(model) if model is not None and model.is_file() else None
    profile = _json(p.root / "build" / "profile.json")
    return {
        "header": _header(p, meta),
        "data": _data(p),
        "features": _features(p, meta, graph),
        "training": _training(meta),
        "accuracy": _accuracy(p, meta),
        "variants": _json(model_dir(p) / "variants" / "variants.json"),
        "tuning": _tuning(p),
        "model": _model(p, graph, profile),
        "boards": _boards(p, profile),
        "battery": {"mah": BATTERY_MAH, "period_s": p.config.data.stride_ms / 1000.0},
        "streaming": _json(p.root / "build" / "simulate.json"),
        "calibration": _json(p.root / "build" / "calibrate.json"),
        "verify": _json(p.root / "build" / "verify.json"),
    }


def report_path(project: Project) -> Path:
    return project.root / REPORT


def report_inputs(project: Project) -> list[Path]:
    """The files the report shows that ``kiloml run``'s step digests do not cover."""
    return [f for f in (model_dir(project) / "meta.json",
                        model_dir(project) / "variants" / "variants.json",
                        project.root / "build" / "simulate.json",
                        project.root / "build" / "calibrate.json",
                        project.root / TUNE_DIR / DB_NAME) if f.is_file()]


def write_report(project: Project | str | Path | None = None,
                 out: str | Path | None = None) -> dict:
    """Write the project's report (default ``build/report.html``) atomically; returns
    ``{"path", "bytes", "sections"}``."""
    p = as_project(project)
    dest = Path(out) if out is not None else report_path(p)
    if dest.is_dir():
        raise KilomlError(f"{dest}: is a directory (give a file name ending in .html)")
    if out is None:
        dest.parent.mkdir(parents=True, exist_ok=True)
    elif not dest.parent.is_dir():
        raise KilomlError(f"{dest}: directory {dest.parent} does not exist")
    text = render_report(collect(p))
    atomic_write_text(dest, text)
    sections = re.findall(r'<section id="([a-z]+)"', text)
    return {"path": str(dest), "bytes": len(text.encode()), "sections": sections}
