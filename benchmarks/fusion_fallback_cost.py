"""What the fallback models cost on a board: a trained ``missing = "fallback"`` project's
deployed pipeline (fused model + one model per sensor in one graph) against the same fused
model alone (its float weights quantized the same way, without the sensors' models: the
``zero`` policy), both profiled by ``kiloml profile MODEL --project P`` (real arm-none-eabi
build, the emulator, DSP included).

    python benchmarks/fusion_fallback_cost.py PROJECT [PROJECT ...]

PROJECT: a trained fold project of benchmarks/fusion.py --missing fallback (its workdir).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from kiloml.io.tflite_writer import save_tflite
from kiloml.train.models import build_model
from kiloml.workflow import train as P
from kiloml.workflow.project import Project


def profile(model: Path, root: Path) -> dict:
    r = subprocess.run([sys.executable, "-m", "kiloml", "profile", str(model), "--project",
                        str(root), "--json"], capture_output=True, text=True, check=True)
    b = json.loads(r.stdout)
    return {"board": b["board"], "flash_bytes": b["pipeline"]["flash_bytes"],
            "ram_bytes": b["pipeline"]["ram_bytes"], "arena_bytes": b["arena_bytes"],
            "latency_ms": round(b["pipeline"]["latency_ms"], 3),
            "model_latency_ms": round(b["pipeline"]["latency_ms"] - b["dsp"]["latency_ms"], 3)}


def main() -> None:
    for root in map(Path, sys.argv[1:]):
        p = Project.load(root)
        meta = json.loads((root / "model" / "meta.json").read_text())
        if meta.get("missing") != "fallback":
            sys.exit(f"{root}: not a fallback project")
        prep = P.prepare(p)
        ck = torch.load(root / "model" / "float.pt", map_location="cpu", weights_only=False)
        m = build_model(ck["arch"], ck["feature_shape"], ck["num_classes"], **ck["params"])
        m.load_state_dict(ck["state"])
        m.eval()
        prep.missing = "zero"            # the fused model alone
        _, g = P.quantize(prep, m)
        with tempfile.TemporaryDirectory() as tmp:
            alone = Path(tmp) / "fused.tflite"
            save_tflite(g, alone)
            rows = {"fused model alone": profile(alone, root),
                    "fused + fallback models": profile(root / "model" / "model.tflite", root)}
        a, b = rows["fused model alone"], rows["fused + fallback models"]
        rows["fallback models add"] = {k: round(b[k] - a[k], 3) for k in a if k != "board"}
        print(json.dumps({"project": root.name, **rows}, indent=1))


if __name__ == "__main__":
    main()
