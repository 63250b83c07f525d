"""The federated-learning test setup: a magic_wand factory model trained on 3 "pilot" people
and the 8 people as client folders (tests/workflow/test_federate*.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

from projhelp import WAND, edit, kiloml

LABELS = ("ring", "slope", "wing")
PILOTS = ("dengyl", "hyw", "jiangyh")      # the factory model's people
HELD_OUT = ["shiyun", "tangsy"]            # never train (the last two in name order)


def make_fleet(tmp: Path) -> tuple[Path, Path]:
    """(project root, clients folder) under ``tmp``: the motion project trained (5 epochs) on
    the pilots' data; a folder per person (all 8) with their ring / slope / wing recordings."""
    data, clients = tmp / "wand", tmp / "clients"
    for lab in LABELS:
        for f in sorted((WAND / lab).iterdir()):
            person = f.stem.rsplit("_", 1)[1]
            (clients / person / lab).mkdir(parents=True, exist_ok=True)
            shutil.copy(f, clients / person / lab / f.name)
            if person in PILOTS:
                (data / lab).mkdir(parents=True, exist_ok=True)
                shutil.copy(f, data / lab / f.name)
    root = tmp / "p"
    r = kiloml("init", root, "--task", "motion")
    assert r.returncode == 0, r.stderr
    cfg = root / "kiloml.toml"
    edit(cfg, "[source]\n", '[source]\npath = "../wand"\n')
    edit(cfg, "[data]\n", "[data]\nsample_rate = 25.0\n")
    edit(cfg, "[train]\n", "[train]\nepochs = 5\n")
    # the factory model of the measured setup (benchmarks/federate.py, docs/federate.md): the
    # motion task's former, milder augmentation; with today's stronger default the 5-epoch
    # factory model already generalizes to the held-out people about as well as the head
    # update can bring it (80.3 % before and after), which says nothing about federation
    for key, old, new in (("gain_db", "1.0", "0.0"), ("speed_range", "0.1", "0.0"),
                          ("jitter_std", "0.03", "0.01"), ("scale_range", "0.2", "0.1"),
                          ("rotate_deg", "30.0", "15.0")):
        edit(cfg, f"\n{key} = {old}\n", f"\n{key} = {new}\n")
    r = kiloml("run", "-q", "--until", "train", cwd=root)
    assert r.returncode == 0, r.stderr
    assert len(list(clients.iterdir())) == 8
    return root, clients
