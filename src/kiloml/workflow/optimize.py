"""``kiloml optimize``: variants of a trained project model, side by side.

=========  ==================================================================================
variant    how it is made
=========  ==================================================================================
float      the trained float model (flash = 4 bytes per weight, RAM = 4 x the int8 arena:
           estimates, marked ~; no float kernels to measure)
ptq        post-training quantization of the float model (the project's calibration method)
qat        ptq + quantization-aware fine-tuning (``train.qat_epochs``, at least 4)
pruned     structured channel pruning (``prune_ratio`` of the channels of every prunable
           layer really removed), float fine-tuning, calibration, quantization-aware fine-tuning
sparse     unstructured magnitude pruning (``sparsity`` of the weights zeroed), fine-tuning,
           calibration: same flash, RAM and latency (weights are stored densely)
distilled  a student distilled from a teacher: the project's ``train.teacher`` (.tflite, or a
           list of them taught as an ensemble: the mean of their logits) with the
           trained float model as the student's starting point (``distill_*`` settings), then
           ptq; without a teacher, the trained float model teaches a student of half its
           width, then ptq.
sensors    multi-sensor projects, a family of rows (flash, RAM and latency of the whole
           pipeline: the DSP block's real build on the board plus the model): ``fusion``, the
           project's trained model; ``<sensor> only`` for each sensor, a model of the
           project's architecture and recipe trained (float, ptq, the recipe's QAT) on that
           sensor's features alone (its own block, else the project's block on its axes);
           ``fusion, <sensor> missing``, the project's model with that sensor's channels zeroed
           (the run-time policy of ``_classify_sensors``)
=========  ==================================================================================

Accuracy (and, for classifiers, macro-F1) of every int8 variant is that of the exported graph
run by kiloml's reference interpreter on the test split (anomaly models: ROC AUC). Flash, RAM
and latency come from kiloml.targets.profile (real arm-none-eabi build, emulated run, cycle
model) on the project's board; MACs from the graph.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kiloml.compress.distill import TorchTeacher
from kiloml.compress.prune import channel_prune, magnitude_prune, sparsity as sparsity_of
from kiloml.compress.quantize import calibrate, to_graph
from kiloml.errors import KilomlError, UsageError
from kiloml.fileio import atomic_write_text
from kiloml.io.tflite_reader import read_tflite
from kiloml.io.tflite_writer import save_tflite
from kiloml.ir.planner import plan_memory
from kiloml.targets.boards import load_boards
from kiloml.targets.dsp_profile import c_input, choose_variant, profile_dsp
from kiloml.targets.profile import profile_graph
from kiloml.train.loop import EpochData, TrainConfig, fit
from kiloml.train.models import DS_CNN_SIZES, build_model
from kiloml.train.settings import TrainSettings
from kiloml.workflow import train as P
from kiloml.workflow.compile import model_macs
from kiloml.workflow.features import SensorView
from kiloml.workflow.profile import project_window
from kiloml.workflow.project import Project, as_project
from kiloml.workflow.train import predict_int8, report

VARIANTS = ("float", "ptq", "qat", "pruned", "sparse", "distilled", "sensors")


def _metric(prep, out, data) -> float:

    r = report(prep, out, data)
    return r["roc_auc"] if prep.anomaly else r["accuracy"]


def _f1(prep, out, data) -> dict:
    """{"macro_f1": ...} for classifiers (nothing for anomaly models)."""
    if prep.anomaly:
        return {}
    return {"macro_f1": report(prep, out, data)["macro_f1"]}


def _int8_row(name: str, prep, graph, board: str | None, out_dir: Path, notes: list,
              file: str | None = None) -> dict:

    path = save_tflite(graph, out_dir / f"{file or name}.tflite")
    out = predict_int8(prep, graph, prep.test.x)
    row: dict[str, Any] = {"name": name, "file": str(path),
                           "metric": _metric(prep, out, prep.test), **_f1(prep, out, prep.test)}

    row["macs"] = model_macs(graph)
    row["weights_bytes"] = graph.weights_bytes()
    row["arena_bytes"] = plan_memory(graph).arena_bytes
    if board:
        try:

            p = profile_graph(graph, board)
            row.update({"flash_bytes": p["flash_bytes"], "ram_bytes": p["ram_bytes"],
                        "latency_ms": p["latency_ms"], "cycles": p.get("cycles"),
                        "profile_runtime": p.get("runtime")})
            if p.get("runtime") == "analytic-estimate":
                row["estimated"] = True
        except KilomlError as e:
            notes.append(f"{name}: profiling failed ({e}); flash/RAM are weights + arena")
            board = None
    if not board:
        row.update({"flash_bytes": row["weights_bytes"], "ram_bytes": row["arena_bytes"],
                    "latency_ms": None, "estimated": True})
    return row


def _with_teachers(r: TrainSettings, teacher, labels) -> TrainSettings:
    """The recipe with ``teacher`` (a path or a list) instead of ``train.teacher``; the
    project's ``teacher_labels`` stay unless ``labels`` are given (and fit the teachers)."""
    paths = [str(t) for t in teacher] if isinstance(teacher, (list, tuple)) else [str(teacher)]
    if labels is None:
        labels = r.teacher_labels
        if labels and isinstance(labels[0], list) and len(labels) != len(paths):
            labels = None
    d = r.model_dump()
    d.update(teacher=paths[0] if len(paths) == 1 else paths, teacher_labels=labels or None)
    try:
        return TrainSettings.model_validate(d)
    except ValueError as e:
        first = e.errors()[0]["msg"] if hasattr(e, "errors") else str(e)
        raise UsageError(f"--teacher: {first.removeprefix('Value error, ')}") from None


def _student_params(prep) -> dict:
    """Half-width version of the project's model (for self-distillation)."""
    p = dict(prep.params)
    a = prep.arch
    if a.startswith("ds-cnn"):

        size = a[7:] if len(a) > 6 else p.get("size", "s")
        p["channels"] = max(8, p.get("channels", DS_CNN_SIZES[size][0]) // 2)
    elif a == "cnn1d":
        p["channels"] = tuple(max(4, c // 2) for c in p.get("channels", (16, 32, 64)))
    elif a == "dense":
        p["hidden"] = tuple(max(4, h // 2) for h in p.get("hidden", (64, 32)))
    elif a == "fusion":
        p["branch"] = tuple(max(4, h // 2) for h in p.get("branch", (16,)))
        p["hidden"] = tuple(max(4, h // 2) for h in p.get("hidden", (32,)))
    elif a == "mobilenet-v1":
        p["alpha"] = p.get("alpha", 0.25) / 2
    elif a == "resnet8":
        p["width"] = max(4, p.get("width", 16) // 2)
    elif a == "autoencoder":
        p["hidden"] = max(8, p.get("hidden", 128) // 2)
    return p


def optimize_project(project: Project | str | Path | None = None, variants=VARIANTS,
                     prune_ratio: float = 0.5, sparsity: float = 0.5, board: str | None = None, progress: bool = True,
                     finetune_epochs: int | None = None,
                     teacher: str | Path | list[str | Path] | None = None,
                     teacher_labels: list[str] | list[list[str]] | None = None) -> dict:
    """Build the requested variants (see the module doc); returns the table as a dict and
    writes the variants' .tflite files and ``variants.json`` to ``<project>/model/variants``.
    ``teacher`` (one .tflite or a list: an ensemble) / ``teacher_labels`` (as
    ``train.teacher_labels``) override the project's ``train.teacher`` for the distilled
    variant. The teachers are checked before any variant is built."""
    project = as_project(project)
    meta = P.load_meta(project)
    if meta["arch"] == "kmeans":
        raise P.PipelineError("k-means scorers have no network variants")
    prep = P.prepare(project)
    setting = "train.teacher"
    if teacher:
        prep.recipe = _with_teachers(prep.recipe, teacher, teacher_labels)
        setting = "--teacher"
    r = prep.recipe
    if "distilled" in variants and r.teachers():
        P.teacher_ensemble(prep, setting)
    board = board or project.config.board.name
    if board == "none":
        board = None
    ck = torch.load(P.model_dir(project) / "float.pt", map_location="cpu", weights_only=False)
    model = build_model(ck["arch"], tuple(ck["feature_shape"]), ck["num_classes"], **ck["params"])
    model.load_state_dict(ck["state"])
    model.eval()
    out_dir = P.model_dir(project) / "variants"
    out_dir.mkdir(parents=True, exist_ok=True)
    ft = finetune_epochs or max(4, r.epochs // 4)
    qat_ep = max(4, r.qat_epochs or 0)
    notes: list[str] = []
    rows: list[dict] = []
    ptq_net = None

    def calib(net):
        x = torch.as_tensor(prep.model_input(prep.train.x[:2000]))
        calibrate(net, (x[i:i + 256] for i in range(0, len(x), 256)), method=r.calibration,
                  input_quant=prep.input_quant)
        return net

    def finetune(net, epochs: int, title: str):
        net.set_mode("float")
        cfg = TrainConfig(epochs=epochs, batch_size=r.batch_size, lr=r.lr * 0.3,
                          weight_decay=r.weight_decay, seed=r.seed + 11,
                          label_smoothing=0.0 if prep.anomaly else r.label_smoothing,
                          loss="mse" if prep.anomaly else "ce",
                          threads=r.threads or TrainConfig.threads)
        fit(net, P.epoch_source(prep, False), cfg, val=P.val_data(prep), progress=progress,
            forward=lambda x: net(x, logits=True), title=title)
        return net

    interrupted = False
    try:
        for name in variants:
            if name == "float":
                f_out = P.predict_float(prep, model, prep.test.x)
                n_w = sum(p.numel() for p in model.parameters())
                probe, g = P.quantize(prep, model)

                rows.append({"name": "float", "metric": _metric(prep, f_out, prep.test),
                             **_f1(prep, f_out, prep.test),
                             "flash_bytes": 4 * n_w, "ram_bytes": 4 * plan_memory(g).arena_bytes,
                             "macs": probe.macs(), "latency_ms": None, "estimated": True,
                             "file": str(P.model_dir(project) / "float.pt")})
            elif name == "ptq":
                ptq_net, g = P.quantize(prep, model)
                rows.append(_int8_row("ptq", prep, g, board, out_dir, notes))
            elif name == "qat":
                net, _ = P.quantize(prep, model)
                net, _ = P.qat(prep, net, qat_ep, progress=progress)
                rows.append(_int8_row("qat", prep, to_graph(net), board, out_dir, notes))
            elif name == "pruned":
                net, _ = P.quantize(prep, model)
                rep = channel_prune(net, prune_ratio, multiple=4)
                if not rep:
                    notes.append("pruned: no layer could be pruned (residual / final layers only)")
                finetune(net, ft, "prune fine-tune")
                calib(net)
                net, _ = P.qat(prep, net, qat_ep, progress=progress)
                row = _int8_row("pruned", prep, to_graph(net), board, out_dir, notes)
                row["pruned_channels"] = {k: list(v) for k, v in rep.items()}
                rows.append(row)
            elif name == "sparse":
                net, _ = P.quantize(prep, model)
                magnitude_prune(net, sparsity)
                finetune(net, ft, "sparse fine-tune")
                calib(net)
                row = _int8_row("sparse", prep, to_graph(net), board, out_dir, notes)
                row["sparsity"] = round(sparsity_of(net), 4)
                rows.append(row)
                notes.append("sparse: zero weights are still stored and multiplied (dense kernels)")
            elif name == "distilled":
                if r.teacher:
                    # the trained model (labels only) is the student's starting point
                    student, res = P.train_float(prep, copy.deepcopy(model), progress=progress,
                                                 distill=True, title="distill")
                    names = r.teachers()
                    src = (f"teacher {names[0]}" if len(names) == 1 else
                           f"ensemble of {len(names)} teachers (mean logits: "
                           f"{', '.join(names)})") + " teaching the trained model"
                    torch.save({"arch": prep.arch, "state": student.state_dict()},
                               out_dir / "distilled_float.pt")
                    f_acc = _metric(prep, P.predict_float(prep, student, prep.test.x), prep.test)
                    _, g = P.quantize(prep, student)
                    row = _int8_row("distilled", prep, g, board, out_dir, notes)
                    row.update({"source": src, "train_seconds": res.seconds, "float_metric": f_acc})
                    rows.append(row)
                    notes.append(f"distilled: float {100 * f_acc:.2f} %, int8 {100 * row['metric']:.2f}"
                                 " %")
                    continue
                else:

                    teacher = TorchTeacher(copy.deepcopy(model))
                    sp = _student_params(prep)
                    student = build_model(prep.arch, prep.feature_shape, len(prep.labels), **sp)
                    student, res = _self_distill(prep, student, teacher, progress)
                    src = f"trained float model teaching a half-width student ({sp})"
                _, g = P.quantize(prep, student)
                row = _int8_row("distilled", prep, g, board, out_dir, notes)
                row["source"] = src
                row["train_seconds"] = res.seconds
                rows.append(row)
            elif name == "sensors":
                rows.extend(_sensor_rows(project, prep, board, out_dir, notes, progress))
            else:
                raise KilomlError(f"unknown variant {name!r}")
    except KeyboardInterrupt:  # keep and show what finished (Ctrl-C during a long variant)
        interrupted = True
        notes.append(f"interrupted: {len(rows)} of {len(variants)} variants finished")
    result = {"project": str(project.root), "arch": prep.arch, "board": board,
              "metric": "roc_auc" if prep.anomaly else "accuracy", "n_test": int(len(prep.test.x)),
              "variants": rows, "notes": notes, "interrupted": interrupted}
    atomic_write_text(out_dir / "variants.json", json.dumps(result, indent=1, default=_jsonable))
    return json.loads(json.dumps(result, default=_jsonable))


def _pipeline_cost(row: dict, block, window: np.ndarray, board: str | None,
                   cache: dict) -> None:
    """Adds the DSP block's figures (``dsp_*``) to a model row and makes its flash, RAM and
    latency the pipeline's (DSP + model); the block is profiled once per block."""
    frames, channels = window.shape
    key = json.dumps([block.name, block.params.model_dump(mode="json"), frames, channels])
    if key not in cache:
        if board:
            b = load_boards()[board]
            v = choose_variant(block, b)
            d = profile_dsp(block, frames, channels, c_input(block, window, v), b, v)
        else:
            c = block.cost(frames, channels)
            d = {"flash_bytes": c.flash_bytes, "ram_bytes": c.ram_bytes, "latency_ms": None}
        cache[key] = d
    d = cache[key]
    row.update({"dsp_block": block.name, "dsp_flash_bytes": d["flash_bytes"],
                "dsp_ram_bytes": d["ram_bytes"], "dsp_latency_ms": d.get("latency_ms"),
                "model_flash_bytes": row.get("flash_bytes"), "model_ram_bytes":
                row.get("ram_bytes"), "model_latency_ms": row.get("latency_ms"),
                "flash_bytes": (row.get("flash_bytes") or 0) + d["flash_bytes"],
                "ram_bytes": (row.get("ram_bytes") or 0) + d["ram_bytes"],
                "with_dsp": True})
    if row.get("latency_ms") is not None and d.get("latency_ms") is not None:
        row["latency_ms"] = round(row["latency_ms"] + d["latency_ms"], 4)
    else:
        row["latency_ms"] = None
    if not board:
        row["estimated"] = True


def _sensor_rows(project: Project, prep, board: str | None, out_dir: Path, notes: list,
                 progress: bool) -> list[dict]:
    """The ``sensors`` family (see the module doc)."""
    sensors = [s.name for s in project.config.data.sensors]
    if len(sensors) < 2:
        raise KilomlError(f"{project.config_path}: the sensors variants need a multi-sensor "
                          "project (two or more data.sensors entries)")
    if prep.anomaly:
        raise KilomlError("the sensors variants compare classifiers, not anomaly models")
    meta = P.load_meta(project)
    graph = read_tflite(P.model_dir(project) / "model.tflite")
    block, _, _, window, _ = project_window(project)
    cache: dict = {}
    rows: list[dict] = []

    def scored(name: str, p, g, file: str) -> dict:
        row = _int8_row(name, p, g, board, out_dir, notes, file=file)
        row["family"] = "sensors"
        row["test_windows"] = int(len(p.test.x))
        return row

    fusion = scored("fusion", prep, graph, "sensors_fusion")
    _pipeline_cost(fusion, block, window, board, cache)
    fusion["sensors"] = sensors
    rows.append(fusion)
    r = prep.recipe
    for s in sensors:
        view = SensorView(s, "only")
        ps = P.prepare(project, r, view=view)
        model, _ = P.train_float(ps, progress=progress, title=f"{s} only")
        net, g = P.quantize(ps, model)
        if r.qat_epochs:   # as kiloml train does for the project's model
            net, _ = P.qat(ps, net, r.qat_epochs, progress=progress)
            g = to_graph(net)
        row = scored(f"{s} only", ps, g, f"sensors_{s}_only")
        _pipeline_cost(row, view.block(project), view.frames(project, window[None])[0],
                       board, cache)
        row["sensors"] = [s]
        row["feature_shape"] = list(ps.feature_shape)
        rows.append(row)
    for s in sensors:
        ps = P.prepare(project, r, view=SensorView(s, "missing"))
        # the deployed model and normalizer on the zeroed windows' features
        ps.normalizer = prep.normalizer
        row = scored(f"fusion, {s} missing", ps, graph, f"sensors_fusion_no_{s}")
        _pipeline_cost(row, block, window, board, cache)
        row["sensors"] = [x for x in sensors if x != s]
        rows.append(row)
    base = {x["name"]: x for x in rows}
    for s in sensors:   # what each sensor adds: the fusion against the others alone
        others = [x for x in sensors if x != s]
        if len(others) == 1:
            alone = base[f"{others[0]} only"]
            fusion[f"gain_over_{others[0]}_only"] = {
                "accuracy": round(fusion["metric"] - alone["metric"], 4),
                "macro_f1": round(fusion["macro_f1"] - alone["macro_f1"], 4)}
    notes.append("sensors: flash, RAM and latency of these rows are the pipeline's (DSP "
                 "block + model); the fusion rows are the trained project model "
                 f"({meta.get('arch')}), the 'only' rows models trained on one sensor")
    return rows


def _jsonable(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, tuple):
        return list(v)
    return str(v)


def _self_distill(prep, student, teacher, progress: bool):
    """Train ``student`` with soft targets from a float torch teacher (same features)."""

    r = prep.recipe
    base = P.epoch_source(prep, False)

    def get(epoch: int) -> EpochData:
        d = base(epoch)
        return EpochData(d.x, d.y, torch.as_tensor(teacher.logits(d.x.numpy()), dtype=torch.float32))

    cfg = TrainConfig(epochs=r.epochs, batch_size=r.batch_size, lr=r.lr,
                      weight_decay=r.weight_decay, label_smoothing=r.label_smoothing,
                      warmup_epochs=min(2, r.epochs // 10), seed=r.seed + 5,
                      loss="mse" if prep.anomaly else "ce",
                      distill_alpha=0.0 if prep.anomaly else r.distill_alpha,
                      temperature=r.temperature, threads=r.threads or TrainConfig.threads)
    res = fit(student, get, cfg, val=P.val_data(prep), progress=progress, title="distill")
    return student, res
