"""Sensors at their own rates (docs/fusion.md): the same synthetic phone (100 Hz) + watch
(50 Hz) recordings as tests/test_fusion_rates.py, one project with the watch at its own 50 Hz
(its spectral block on 50 samples per window, its C buffer at 50 Hz) and one with every
sensor on the 100 Hz grid (the watch upsampled; its spectral block on 100 samples), each
through ``kiloml run`` (train, compile, profile on the nano33ble, deploy, verify in the
emulator). Prints one table; raw JSON with --json.

    PYTHONPATH=src python benchmarks/rates.py --workdir /tmp/rates-bench --json \
        benchmarks/rates_results.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

AXES = ["x_acc", "y_acc", "z_acc", "x_gyro", "y_gyro", "z_gyro"]


def _write(path: Path, t0: float, n: int, rate: float, labels, freqs, rng) -> None:
    t = np.round(t0 + np.arange(n) * 1000.0 / rate + rng.uniform(-1.0, 1.0, n))
    sec = (t - t0) / 1000.0
    lines = [",".join(AXES + ["timestamp", "label"])]
    for i in range(n):
        v = 0.3 * rng.standard_normal(6)
        v[:3] += np.sin(2 * np.pi * freqs[labels[i]] * sec[i] + np.arange(3))
        lines.append(",".join(f"{x:.5f}" for x in v) + f",{int(t[i])},{labels[i]}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def data(root: Path, people: int = 6) -> Path:
    """As tests/test_fusion_rates.py's _data: phone 2 / 6 Hz, watch 1 / 4 Hz by class."""
    rng = np.random.default_rng(17)
    for k in range(1, people + 1):
        s = f"s{k:02d}"
        for e in ("01", "02"):
            t0 = 1.6e12 + k * 1e6 + int(e) * 1e4
            first, second = ("SLOW", "FAST") if e == "01" else ("FAST", "SLOW")
            n = 800
            labels = [first] * (n // 2) + [second] * (n - n // 2)
            _write(root / s / f"{s}_{e}_sp.csv", t0, n, 100.0, labels,
                   {"SLOW": 2.0, "FAST": 6.0}, rng)
            _write(root / s / f"{s}_{e}_sw.csv", t0 + 5, n // 2 + 5, 50.0,
                   labels[::2] + labels[-1:] * 5, {"SLOW": 1.0, "FAST": 4.0}, rng)
    return root


def kiloml(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kiloml", *map(str, args)],
                          capture_output=True, text=True, env=dict(os.environ, COLUMNS="80"))


def project(work: Path, d: Path, name: str, own_rate: bool, epochs: int) -> dict:
    root = work / name
    r = kiloml("init", root, "--example", "sp_sw_har", "--data", d)
    if r.returncode:
        raise SystemExit(r.stderr)
    cfg = root / "kiloml.toml"
    t = cfg.read_text()
    fft = 32 if own_rate else 64
    t = t.replace('name = "watch"\n', 'name = "watch"\n' + ("rate = 50.0\n" if own_rate
                                                              else ""))
    t = t.replace("stride_ms = 250.0", "stride_ms = 200.0")
    t = t.replace('units = "m/s2, rad/s"\n\n[dsp]',
                  'units = "m/s2, rad/s"\n\n[data.sensors.dsp]\nblock = "spectral"\n\n'
                  f'[data.sensors.dsp.params]\nfft_length = {fft}\n'
                  'band_edges_hz = [0, 1, 2, 4, 8, 16, 25]\n\n[dsp]')
    t = t.replace("[train]\n", f"[train]\nepochs = {epochs}\n")
    cfg.write_text(t)
    t0 = time.time()
    r = kiloml("run", "--project", root, "--json")
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])
    wall = time.time() - t0
    v = json.loads((root / "build" / "verify.json").read_text())
    b = json.loads((root / "build" / "profile.json").read_text())["boards"][0]
    meta = json.loads(next((root / "build" / "deploy" / "c").glob("*.json")).read_text())
    return {"setup": name, "wall_s": round(wall, 1), "verify": {
        k: v[k] for k in ("engine", "clips", "predictions_equal", "scores_bit_exact",
                          "feature_max_abs_diff", "feature_tolerance", "accuracy_reference",
                          "accuracy_device")},
        "features": b["dsp"]["output_shape"], "dsp": {k: b["dsp"][k] for k in (
            "flash_bytes", "ram_bytes", "latency_ms")},
        "pipeline": b["pipeline"], "arena_bytes": b["arena_bytes"],
        "sensors": meta.get("sensors")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/kiloml-rates-bench"))
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    a.workdir.mkdir(parents=True, exist_ok=True)
    d = data(a.workdir / "data")
    rows = [project(a.workdir, d, "watch_50hz_own_rate", True, a.epochs),
            project(a.workdir, d, "watch_on_100hz_grid", False, a.epochs)]
    head = ("setup", "features", "test acc (int8)", "verify equal", "bit-exact",
            "DSP flash B", "DSP RAM B", "DSP ms", "pipeline flash B", "pipeline RAM B",
            "pipeline ms")
    print(" | ".join(head))
    for r in rows:
        v = r["verify"]
        print(" | ".join(str(x) for x in (
            r["setup"], r["features"][0], f"{100 * v['accuracy_reference']:.2f} %",
            f"{v['predictions_equal']}/{v['clips']}", v["scores_bit_exact"],
            r["dsp"]["flash_bytes"], r["dsp"]["ram_bytes"], r["dsp"]["latency_ms"],
            r["pipeline"]["flash_bytes"], r["pipeline"]["ram_bytes"],
            r["pipeline"]["latency_ms"])))
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
