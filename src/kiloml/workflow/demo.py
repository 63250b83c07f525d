"""``kiloml demo``: the main job, end to end, on the gesture recordings that ship with kiloml.

It is what a user does with their own data, in one command: a project for the TFLM
magic_wand data set (``examples/magic_wand``: 4 gestures, 25 Hz accelerometer logs of
several people, person-disjoint splits) is created, imported, trained (1-D CNN, int8 with
quantization-aware training), compiled to C, profiled in the emulator on three boards
(Arduino Nano 33 BLE Sense, Raspberry Pi Pico, STM32H743), deployed as a C library and an
Arduino library, and verified: the deployed C, cross-compiled for the Nano's Cortex-M4F and
run in the emulator, classifies every test window of the held-out people as the Python
pipeline does. It ends with one summary.

Every step is a ``kiloml run`` step, so a second ``kiloml demo`` reuses what did not change.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional

from kiloml.errors import KilomlError, ProjectError
from kiloml.targets.boards import load_boards
from kiloml.targets.profile import battery_days
from kiloml.workflow.examples import init_example
from kiloml.workflow.project import CONFIG_NAME, Project
from kiloml.workflow.run import BUILD, deploy_dir, run_project
from kiloml.workflow.train import load_meta

BOARDS = ("nano33ble", "pico", "stm32h743")
BATTERY_MAH = 1000.0  # a small Li-Po; decisions at the window stride (one every 2 s)


def bundled_data() -> Optional[Path]:
    """examples/magic_wand of the source tree kiloml runs from, or of the current folder."""
    here = Path(__file__).resolve()
    for base in [Path.cwd(), *here.parents]:
        d = base / "examples" / "magic_wand"
        if (d / "ring").is_dir():
            return d
    return None


def demo_project(out_dir: str | Path, data: Optional[str | Path] = None,
                 log: Callable[[str], None] = lambda m: None) -> Project:
    """The demo's project in ``out_dir/magic_wand`` (made on the first run)."""
    root = Path(out_dir) / "magic_wand"
    if (root / CONFIG_NAME).is_file():
        return Project.load(root)
    src = Path(data) if data is not None else bundled_data()
    if src is None:
        raise ProjectError("no examples/magic_wand folder found: give --data PATH (the "
                           "magic_wand data set's folder)")
    p = init_example(root, "magic_wand", src, name="magic_wand", log=log)
    p.config.board.name = BOARDS[0]
    p.config.board.compare = list(BOARDS[1:])
    p.config.deploy.formats = ["c", "arduino"]
    p.save()
    return Project.load(root)


def summary(p: Project) -> dict:
    """Accuracy, per-board figures, verify result and package paths of a finished run."""
    meta = load_meta(p)
    test = meta.get("test") or {}
    prof = json.loads((p.root / BUILD / "profile.json").read_text())["boards"]
    ver = json.loads((p.root / BUILD / "verify.json").read_text())
    db = load_boards()
    rate = 1000.0 / float(p.config.data.stride_ms)
    boards = []
    for r in prof:
        x = r.get("pipeline", r)
        boards.append({
            "board": r["board"], "core": r["core"], "flash_bytes": x["flash_bytes"],
            "ram_bytes": x["ram_bytes"], "latency_ms": x["latency_ms"],
            "energy_uj": x["energy_uj"], "fits": x["fits"],
            "battery_days": battery_days(x, db[r["board"]], rate, BATTERY_MAH)
            if x["latency_ms"] is not None else None})
    return {
        "project": str(p.root),
        "labels": list(meta["labels"]),
        "test_windows": (test.get("int8") or {}).get("n"),
        "accuracy_int8": (test.get("int8") or {}).get("accuracy"),
        "accuracy_float": (test.get("float") or {}).get("accuracy"),
        "decisions_per_s": round(rate, 4), "battery_mah": BATTERY_MAH,
        "boards": boards,
        "verify": {k: ver[k] for k in ("board", "dsp_variant", "clips", "feature_max_abs_diff",
                                       "scores_bit_exact", "predictions_equal",
                                       "accuracy_reference", "accuracy_device", "ok")},
        "packages": {f: str(deploy_dir(p, f)) for f in p.config.deploy.formats},
        "report": str(p.root / BUILD / "report.html"),
    }


def run_demo(out_dir: str | Path = "demo_out", data: Optional[str | Path] = None,
             progress: bool = True, log: Callable[[str], None] = lambda m: None,
             on_step: Callable[[str, str], None] = lambda name, status: None,
             command: str = "kiloml demo") -> dict:
    """Create (first time) and run the demo project; returns ``summary`` plus the steps."""
    p = demo_project(out_dir, data, log=log)
    res = run_project(p, progress=progress, log=log, on_step=on_step, command=command)
    if res["error"]:
        raise KilomlError(res["error"])
    return {**summary(p), "steps": res["steps"]}


__all__ = ["BOARDS", "bundled_data", "demo_project", "run_demo", "summary"]
