"""``kiloml optimize --variants sensors``: each sensor alone vs the fusion, side by side, on a
synthetic phone + watch data set whose classes only the phone can tell apart (the phone's
accelerometer oscillates at 2 Hz in one class and at 6 Hz in the other; the watch records
noise of the same power in both). So, independently of kiloml: the phone alone and the
fusion are near perfect, the watch alone and the fusion without the phone near chance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from projhelp import kiloml

AXES = ["x_acc", "y_acc", "z_acc", "x_gyro", "y_gyro", "z_gyro"]


def _write(path: Path, t0: float, n: int, rate: float, labels: list[str], phone: bool,
           rng) -> None:
    t = np.round(t0 + np.arange(n) * 1000.0 / rate)
    sec = (t - t0) / 1000.0
    lines = [",".join(AXES + ["timestamp", "label"])]
    for i in range(n):
        v = 0.3 * rng.standard_normal(6)
        if phone:
            f = 2.0 if labels[i] == "SLOW" else 6.0
            v[:3] += np.sin(2 * np.pi * f * sec[i] + np.arange(3))
        else:
            v[:3] += rng.standard_normal(3) * 0.7
        lines.append(",".join(f"{x:.5f}" for x in v) + f",{int(t[i])},{labels[i]}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def _data(root: Path) -> Path:
    rng = np.random.default_rng(11)
    for k in range(1, 9):
        s = f"s{k:02d}"
        for e in ("01", "02"):
            t0 = 1.6e12 + k * 1e6 + int(e) * 1e4
            first = "SLOW" if e == "01" else "FAST"
            second = "FAST" if first == "SLOW" else "SLOW"
            n = 900
            labels = [first] * (n // 2) + [second] * (n - n // 2)
            _write(root / s / f"{s}_{e}_sp.csv", t0, n, 102.5, labels, True, rng)
            _write(root / s / f"{s}_{e}_sw.csv", t0 + 5, n + 10, 104.0,
                   labels + labels[-1:] * 10, False, rng)
    return root


def test_optimize_sensors_shows_what_each_sensor_adds(tmp_path):
    data = _data(tmp_path / "d")
    root = tmp_path / "p"
    r = kiloml("init", root, "--example", "sp_sw_har", "--data", data)
    assert r.returncode == 0, r.stderr
    cfg = root / "kiloml.toml"
    cfg.write_text(cfg.read_text().replace("[train]\n", "[train]\nepochs = 5\n"))
    r = kiloml("train", "--project", root, "-q")
    assert r.returncode == 0, r.stderr
    r = kiloml("optimize", "--project", root, "--variants", "sensors", "-q", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    rows = {v["name"]: v for v in out["variants"]}
    assert list(rows) == ["fusion", "phone only", "watch only", "fusion, phone missing",
                          "fusion, watch missing"]
    assert out["n_test"] > 40
    for v in rows.values():
        assert v["family"] == "sensors" and v["with_dsp"]
        assert 0 <= v["metric"] <= 1 and 0 <= v["macro_f1"] <= 1
        # pipeline = the DSP block's real build + the model's
        assert v["flash_bytes"] == v["dsp_flash_bytes"] + v["model_flash_bytes"]
        assert v["ram_bytes"] == v["dsp_ram_bytes"] + v["model_ram_bytes"]
        assert v["latency_ms"] > v["dsp_latency_ms"] > 0
        assert Path(v["file"]).is_file()
    # the data's answer: only the phone tells the classes apart
    assert rows["fusion"]["metric"] >= 0.95 and rows["phone only"]["metric"] >= 0.95
    assert rows["watch only"]["metric"] <= 0.75
    assert rows["fusion, phone missing"]["metric"] <= 0.75
    assert rows["fusion, watch missing"]["metric"] >= 0.9
    assert rows["fusion"]["gain_over_watch_only"]["accuracy"] >= 0.2
    # one sensor costs less than two: half the DSP work, a smaller first layer
    for s in ("phone", "watch"):
        one = rows[f"{s} only"]
        assert one["dsp_latency_ms"] < rows["fusion"]["dsp_latency_ms"]
        assert one["flash_bytes"] < rows["fusion"]["flash_bytes"]
        assert one["macs"] < rows["fusion"]["macs"]
    assert json.loads((root / "model" / "variants" / "variants.json").read_text())[
        "variants"][0]["name"] == "fusion"
    # the people's table (what `kiloml optimize` prints without --json), at 80 columns
    from kiloml.cli import common
    from kiloml.cli.train import print_variants

    width = common.out.width
    common.out.width = 80
    try:
        with common.out.capture() as cap:
            print_variants(out)
    finally:
        common.out.width = width
    text = cap.get()
    assert "fusion, watch missing" in text and "macro-F1" in text
    assert max(map(len, text.splitlines())) <= 80
    r = kiloml("report", "--project", root)
    assert r.returncode == 0, r.stderr
    html = (root / "build" / "report.html").read_text()
    assert "watch only (+DSP)" in html and "macro-F1" in html


def test_optimize_sensors_needs_two_sensors(tmp_path):
    from projhelp import wand_project

    root = wand_project(tmp_path, epochs=1)
    r = kiloml("run", "--project", root, "--until", "train")
    assert r.returncode == 0, r.stderr
    r = kiloml("optimize", "--project", root, "--variants", "sensors", "-q")
    assert r.returncode == 1
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "kiloml.toml" in lines[0] and "multi-sensor" in lines[0]
