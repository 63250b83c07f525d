"""``kiloml deploy``: the project's trained pipeline as a C library, an Arduino library or a
.tflite with metadata (kiloml.deploy writes them; this step hands it the project's parts)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from kiloml.data.windowing import make_windows
from kiloml.deploy import DeploySpec, deploy_arduino, deploy_c, deploy_tflite
from kiloml.deploy.package import Package
from kiloml.dsp.base import Block
from kiloml.errors import DataError, KilomlError, UsageError
from kiloml.io.tflite_reader import read_tflite
from kiloml.targets.boards import load_boards
from kiloml.workflow.compile import check_prefer
from kiloml.workflow.features import dsp_block
from kiloml.workflow.project import Project, as_project
from kiloml.workflow.train import load_meta, model_dir

FORMATS = ("c", "arduino", "tflite")


def default_variant(block: Block, board_id: str) -> str:
    """f32 on cores with an FPU, else the block's integer variant (q15, then q31) if it has
    one: what ``kiloml profile`` measures on that board."""
    b = load_boards()[board_id]
    if b.fpu or "f32" not in block.variants:
        return "f32" if "f32" in block.variants else block.variants[0]
    for v in ("q15", "q31"):
        if v in block.variants:
            return v
    return "f32"


def window_frames(project: Project) -> tuple[int, int]:
    """(frames, channels) of the project's windows, as the data stage cuts them
    (kiloml.data.windowing.load_windows' shape), from the dataset index alone: no recording
    is read (``kiloml simulate --calibrate`` then reads validation clips only)."""
    d = project.config.data
    samples = project.dataset.load_index().of_role("sample")
    for split in ("test", "validation", "train"):
        part = [s for s in samples if s.split == split]
        wins = make_windows(part, d.window_ms, d.stride_ms, d.pad)
        if wins:
            if len({w.length for w in wins}) > 1:
                raise DataError("samples have different sample rates: windows differ in "
                                "length")
            first = next(s for s in part if s.id == wins[0].sample_id)
            return int(wins[0].length), int(first.channels)
    raise KilomlError(f"{project.index_path}: no windows: import data first")


def package_name(project: Project) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", project.config.project.name).strip("_").lower()
    return name if name[:1].isalpha() else f"m_{name}"


def project_spec(project: Project | str | Path | None, board: Optional[str] = None,
                 dsp_variant: Optional[str] = None, model: Optional[Path] = None,
                 command: str = "kiloml deploy", prefer: Optional[str] = None) -> DeploySpec:
    """The DeploySpec of a trained project: its int8 model, DSP block, window, labels,
    normalizer and input quantization as training recorded them (model/meta.json);
    ``prefer`` (default: the project's ``[deploy] prefer``) the model kernels'
    flash-for-speed choice."""
    if prefer is not None:
        check_prefer(prefer)
    p = as_project(project)
    meta = load_meta(p)
    if meta["arch"] == "kmeans":
        raise KilomlError("k-means scorers are not deployable as C yet (train a network)")
    board_id = board or p.config.board.name
    db = load_boards()
    if board_id not in db:
        raise UsageError(f"unknown board {board_id!r} (known: {', '.join(db)})")
    block = dsp_block(p)
    variant = dsp_variant or default_variant(block, board_id)
    if variant not in block.variants:
        raise UsageError(f"the {block.name} block has no {variant} variant (has: "
                         f"{', '.join(block.variants)})")
    frames, channels = window_frames(p)
    graph = read_tflite(model or model_dir(p) / meta["model_file"])
    return DeploySpec(
        name=package_name(p), graph=graph, block=block, frames=frames, channels=channels,
        sample_rate=float(p.config.data.sample_rate or getattr(block.params, "sample_rate")),
        window_ms=float(p.config.data.window_ms), labels=list(meta["labels"]),
        normalizer=meta["normalizer"],
        input_quant=tuple(meta["input_quant"]) if meta.get("input_quant") else None,
        layout=meta["layout"], dsp_variant=variant, board=board_id, command=command,
        units=p.config.data.units, personalize=_personalize(p), stream=p.config.stream,
        sensors=tuple((s.name, len(s.axes)) for s in p.config.data.sensors),
        prefer=prefer or p.config.deploy.prefer,
        missing=meta.get("missing", "zero") if model is None else _missing_of(meta, graph))


def _missing_of(meta: dict, graph) -> str:
    """The policy of another .tflite of the project (a variant): the trained model's
    (branch-head or fallback) only when it has the trained model's heads."""
    heads = meta.get("heads") or []
    return meta.get("missing", "branch-head") if heads and len(graph.outputs) == len(heads) \
        else "zero"


def _personalize(p: Project):
    """``[personalize]`` as the update's Settings, or None (not opted in)."""
    from kiloml.deploy.personalize import Settings

    s = p.config.personalize
    return None if s is None else Settings(s.epochs, s.lr, s.max_samples, s.prox_mu,
                                                 s.biases, s.bias_lr_scale)


def deploy_project(project: Project | str | Path | None, fmt: str, out: str | Path,
                   board: Optional[str] = None, dsp_variant: Optional[str] = None,
                   force: bool = False, command: str = "kiloml deploy",
                   prefer: Optional[str] = None) -> Package:
    """Write the project's package in ``fmt`` to ``out`` (refused if it holds files, unless
    ``force``, which replaces it whole; nothing is half-written on failure). ``prefer``:
    the model kernels' flash-for-speed choice (default: the project's ``[deploy] prefer``)."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r} (have: {', '.join(FORMATS)})")
    p = as_project(project)
    spec = project_spec(p, board, dsp_variant, command=command, prefer=prefer)
    if fmt == "arduino":
        d = p.config.deploy
        return deploy_arduino(spec, out, force=force, version=d.library_version,
                              author=d.author, maintainer=d.author, url=d.url)
    write = {"c": deploy_c, "tflite": deploy_tflite}[fmt]
    return write(spec, out, force=force)


def run_outputs(pkg: Package) -> dict:
    return {"format": pkg.format, "path": str(pkg.path), "name": pkg.name,
            "files": list(pkg.files), **pkg.kernels}


__all__ = ["FORMATS", "default_variant", "deploy_project", "package_name", "project_spec",
           "run_outputs", "window_frames"]
