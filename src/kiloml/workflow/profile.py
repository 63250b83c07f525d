"""``kiloml profile``: a model (or a project's DSP block + model) on one board or all of them.

Boards with the same core and kernel set share one emulated run, rescaled to their clock and
power (the instruction stream is the same; only MHz and mW differ).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from kiloml.data.windowing import load_windows
from kiloml.errors import KilomlError, UsageError
from kiloml.io.tflite_reader import read_tflite
from kiloml.targets.boards import Board
from kiloml.targets.dsp_profile import c_input, choose_variant, profile_dsp
from kiloml.targets.profile import energy_uj, battery_days, load_boards, profile_graph
from kiloml.workflow.compile import check_prefer
from kiloml.workflow.features import dsp_block
from kiloml.workflow.project import Project, as_project

DSP_VARIANTS = ("f32", "q31", "q15")
KERNEL_SETS = ("armv7em", "armv6m", "portable")


def project_window(project: Project) -> tuple[object, int, int, np.ndarray, str]:
    """The project's DSP block and its first test window (else validation, else train):
    (block, frames, channels, window as (frames, channels) float32, description)."""
    block = dsp_block(project)
    for split in ("test", "validation", "train"):
        frames, wins = load_windows(project.dataset, project.config.data, split=split)
        if len(wins):
            w = np.asarray(frames[0], np.float32)
            return block, int(w.shape[0]), int(w.shape[1]), w, \
                f"first {split} window ({wins[0].sample_id})"
    raise KilomlError(f"{project.root}: the dataset has no windows to profile the DSP block on")


def profile(model: Optional[Path] = None, board: Optional[str] = None,
            project: Project | str | Path | None = None, dsp_variant: Optional[str] = None,
            rate: Optional[float] = None, battery: Optional[float] = None,
            runtime: Optional[str] = None, prefer: Optional[str] = None) -> list[dict]:
    """Profile ``model`` (default with ``project``: its model/model.tflite) on ``board`` (a
    board id or "all"; default: the project's). With a project its DSP block runs too, on its
    first test window, and ``dsp`` and ``pipeline`` (features + inference) join the figures.
    ``prefer``: the flash-for-speed choice (default: the project's ``[deploy] prefer``, else
    balanced). Returns one result per board."""
    if (rate is None) != (battery is None):
        raise UsageError("--rate and --battery go together")
    if rate is not None and (rate <= 0 or battery <= 0):
        raise UsageError("--rate and --battery must be positive")
    if runtime not in (None,) + KERNEL_SETS:
        raise UsageError(f"--kernels must be armv7em or portable, not {runtime!r}")
    if dsp_variant not in (None,) + DSP_VARIANTS:
        raise UsageError(f"--dsp-variant must be f32, q31 or q15, not {dsp_variant!r}")
    if prefer is not None:
        check_prefer(prefer)
    db = load_boards()
    dsp_in = None
    model_path, board_id = model, board
    if project is not None:
        proj = as_project(project)
        prefer = prefer or proj.config.deploy.prefer
        model_path = model_path or proj.root / "model" / "model.tflite"
        if not Path(model_path).is_file():
            raise KilomlError(f"{model_path}: no trained model (run `kiloml train -p "
                              f"{proj.root}`)")
        board_id = board_id or proj.config.board.name
        dsp_in = project_window(proj)
        if dsp_variant is not None:
            dsp_in[0].check_variant(dsp_variant)
    elif dsp_variant is not None:
        raise UsageError("--dsp-variant needs --project")
    if model_path is None:
        raise UsageError("give a MODEL, or --project DIR to profile a project's model and "
                          "DSP block")
    if board_id is None:
        raise UsageError("--board is required (a board id or 'all')")
    if board_id != "all" and board_id not in db:
        raise UsageError(f"unknown board {board_id!r} (known: {', '.join(db)}, all)")
    g = read_tflite(model_path)
    ids = list(db) if board_id == "all" else [board_id]
    results = []
    cache: dict = {}
    dsp_cache: dict = {}
    for bid in ids:
        rt = runtime
        if rt == "armv7em" and not db[bid].dsp:
            rt = "portable"
        key = (db[bid].core, rt)
        base = cache.get(key)
        res = (profile_graph(g, bid, runtime=rt, prefer=prefer or "balanced") if base is None
               else _rescale(base, db[bid], bid))
        cache.setdefault(key, res)
        if dsp_in is not None:
            res["dsp"] = _dsp_for(dsp_in, db[bid], dsp_variant, dsp_cache)
            res["dsp"]["window"] = dsp_in[4]
            res["pipeline"] = _pipeline(res, db[bid])
        if rate is not None:
            lat = res.get("pipeline", res)
            res["battery_days"] = battery_days(lat, db[bid], rate, battery)
            res["rate_hz"] = rate
            res["battery_mah"] = battery
        results.append(res)
    return results


def _dsp_for(dsp_in, b: Board, variant, cache: dict) -> dict:
    """The DSP block on board ``b``; boards with the same core, FPU and variant share one
    emulated run, rescaled to their clock and power."""
    block, frames, channels, window, _ = dsp_in
    v = variant or choose_variant(block, b)
    key = (b.core, bool(b.fpu), bool(b.fpu_double), v)
    if key not in cache:
        cache[key] = profile_dsp(block, frames, channels, c_input(block, window, v), b, v)
    res = dict(cache[key])
    if res.get("cycles") is not None:
        lat = res["cycles"] / float(b.clock_hz) * 1e3
        res["latency_ms"] = round(lat, 4)
        res["energy_uj"] = energy_uj(lat, b)
    return res


def _pipeline(res: dict, b: Board) -> dict:
    """Feature extraction + one inference: what a device spends per decision."""
    d = res["dsp"]
    known = d.get("latency_ms") is not None and res.get("latency_ms") is not None
    lat = round(d["latency_ms"] + res["latency_ms"], 4) if known else None
    flash = res["flash_bytes"] + d["flash_bytes"]
    ram = res["ram_bytes"] + d["ram_bytes"]
    return {"latency_ms": lat, "energy_uj": energy_uj(lat, b) if known else None,
            "flash_bytes": flash, "ram_bytes": ram,
            "fits": flash <= b.flash_bytes and ram <= b.ram_bytes}


def _rescale(base: dict, b: Board, bid: str) -> dict:
    """Same core and kernels, other board: same build and counts, new clock and power."""
    res = dict(base)
    res.update({"board": bid, "board_name": b.name, "clock_hz": int(b.clock_hz),
                "caveat": b.caveat or None,
                "flash_available_bytes": int(b.flash_bytes),
                "ram_available_bytes": int(b.ram_bytes)})
    lat = res["cycles"] / float(b.clock_hz) * 1e3
    res["latency_ms"] = round(lat, 4)
    res["energy_uj"] = energy_uj(lat, b)
    res["fits"] = res["flash_bytes"] <= b.flash_bytes and res["ram_bytes"] <= b.ram_bytes
    return res
