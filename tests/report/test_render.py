"""The renderer alone, on small hand-made data: sections appear exactly when their data does,
the page is self-contained and byte-identical from run to run, ids are unique, the Pareto
rule, the PCA's fixed signs."""

from __future__ import annotations

import re

import numpy as np

from kiloml.report import SECTIONS, pca2, render_report
from kiloml.report.plots import pareto

LABELS = ["left", "right", "up"]


def _data(**over) -> dict:
    rng = np.random.default_rng(0)
    d = {
        "header": {"project": "demo <&>", "kiloml_version": "0.1.0", "facts": ["task motion"],
                   "artifacts": [{"artifact": "model/model.tflite", "command": "kiloml train",
                                  "sha256": "ab" * 32}]},
        "training": {"phases": [{"name": "float", "best_epoch": 2, "epochs_run": 3,
                                 "history": [{"epoch": e, "train_loss": 1.0 / e,
                                              "train_acc": 0.5 + 0.1 * e, "val_loss": 1.1 / e,
                                              "val_acc": 0.5 + 0.09 * e} for e in (1, 2, 3)]}]},
        "accuracy": {"test": {"labels": LABELS, "confusion": [[5, 1, 0], [0, 7, 2], [1, 0, 9]],
                              "per_class": {lab: {"precision": 0.8, "recall": 0.7, "f1": 0.75,
                                                  "support": 6} for lab in LABELS},
                              "accuracy": 0.84, "n": 25},
                     "float_int8": {"float": {"accuracy": 0.88}, "int8": {"accuracy": 0.84}}},
        "features": {"block": "spectral", "examples": [
            {"label": lab, "raw": rng.normal(size=(50, 3)), "rate": 25.0,
             "features": rng.normal(size=(12,))} for lab in LABELS],
            "pca": {"points": rng.normal(size=(30, 2)), "y": np.arange(30) % 3,
                    "labels": LABELS, "is_test": np.arange(30) >= 20,
                    "wrong": np.arange(30) == 25, "explained": [0.5, 0.2],
                    "wrong_ids": [("s25", "up", "left")]}},
        "variants": {"metric": "accuracy", "board": "nano33ble", "variants": [
            {"name": "ptq", "metric": 0.9, "flash_bytes": 9000, "latency_ms": 1.0},
            {"name": "pruned", "metric": 0.85, "flash_bytes": 6000, "latency_ms": 0.6},
            {"name": "sparse", "metric": 0.8, "flash_bytes": 9500, "latency_ms": 1.1}]},
    }
    d.update(over)
    return d


def test_sections_follow_the_data_and_each_has_a_plot():
    page = render_report(_data())
    got = re.findall(r'<section id="([a-z]+)"', page)
    assert got == ["features", "training", "accuracy", "variants"]
    for sid in got:
        body = page.split(f'<section id="{sid}"', 1)[1].split("</section>", 1)[0]
        assert '<svg class="plot"' in body, sid
    page = render_report({"header": _data()["header"]})
    assert "<section" not in page
    assert set(SECTIONS) >= set(got)


def test_page_is_self_contained_deterministic_and_ids_are_unique():
    a, b = render_report(_data()), render_report(_data())
    assert a == b
    assert "<script" not in a and "@import" not in a and "<link" not in a
    urls = re.findall(r'(?:src|href)="([^"#][^"]*)"', a)
    assert not [u for u in urls if not u.startswith("data:")], urls
    assert not re.search(r"https?://(?!www\.w3\.org/)", a)
    ids = re.findall(r'\bid="([^"]+)"', a)
    assert len(ids) == len(set(ids))
    assert "demo &lt;&amp;&gt;" in a and "demo <&>" not in a
    assert not re.search(r"<dc:date>|\d{4}-\d\d-\d\dT\d\d:\d\d", a)


def test_confusion_table_holds_the_numbers():
    page = render_report(_data())
    table = page.split('class="confusion"', 1)[1].split("</table>", 1)[0]
    rows = [[int(c) for c in re.findall(r'<td class="n">([\d,]+)</td>', r)]
            for r in table.split("<tr>")[2:]]
    assert rows == [[5, 1, 0], [0, 7, 2], [1, 0, 9]]


def test_pareto_front():
    # (metric: higher better, flash, latency: lower better)
    pts = [(0.9, 9000, 1.0), (0.85, 6000, 0.6), (0.8, 9500, 1.1), (0.9, 9000, None)]
    assert pareto(pts) == [True, True, False, True]


def test_pca_signs_are_fixed_and_projection_matches_the_fit():
    x = np.random.default_rng(1).normal(size=(40, 5)) * [5, 2, 1, 1, 1]
    (p1, q), ev = pca2(x, x[:7])
    [p2], _ = pca2(-x)
    np.testing.assert_allclose(q, p1[:7])
    assert ev[0] >= ev[1] > 0 and sum(ev) <= 1
    # the same axes for the mirrored data (signs fixed by the loadings): mirrored points
    np.testing.assert_allclose(p2, -p1, atol=1e-9)


def test_audio_examples_draw_an_image_of_the_2d_features():
    rng = np.random.default_rng(2)
    feats = {"block": "mfcc", "examples": [
        {"label": lab, "raw": rng.normal(size=(16000, 1)), "rate": 16000.0,
         "channel_names": ["audio"], "features": rng.normal(size=(49, 10))} for lab in LABELS]}
    page = render_report(_data(features=feats, training=None, accuracy=None, variants=None))
    body = page.split('<section id="features"', 1)[1]
    assert body.count("<image") == len(LABELS)   # one MFCC image per class
    assert len(page) < 400_000                   # the waveforms are thinned


def test_board_caveats_travel_with_the_figures():
    """A board's caveat (boards.toml: low-confidence, board-level or missing power figures)
    is printed under the boards table, escaped."""
    rows = [{"board": "pico", "board_name": "Pico", "core": "cortex-m0plus", "clock_hz": 133e6,
             "fits": True, "flash_bytes": 1, "ram_bytes": 1, "latency_ms": 1.0,
             "energy_uj": 2.0, "battery_days": 3.0, "caveat": "board-level <5 V>"},
            {"board": "nano33ble", "board_name": "Nano", "core": "cortex-m4", "clock_hz": 64e6,
             "fits": True, "flash_bytes": 1, "ram_bytes": 1, "latency_ms": 1.0,
             "energy_uj": 2.0, "battery_days": 3.0, "caveat": None}]
    page = render_report(_data(boards=rows, battery={"mah": 220, "period_s": 1.0}))
    body = page.split('<section id="boards"', 1)[1].split("</section>", 1)[0]
    assert "<p>caveat (pico): board-level &lt;5 V&gt;</p>" in body
    assert "caveat (nano33ble)" not in body


def _streaming_data() -> dict:
    pts = [{"average_window_ms": 500.0, "detection_threshold": t, "suppression_ms": 1000.0,
            "minimum_count": 1, "detections": 40 - t // 10, "targets": 20,
            "hits": 20 - k, "misses": k, "miss_rate": k / 20, "false_accepts": 12 - 2 * k,
            "fa_per_hour": 36.0 - 6 * k} for k, t in enumerate((100, 130, 160, 200))]
    cal = {"points": pts, "chosen_index": 2, "chosen": {k: pts[2][k] for k in (
        "average_window_ms", "detection_threshold", "suppression_ms", "minimum_count")},
        "chosen_point": pts[2], "target_fa_per_hour": 24.0, "duration_s": 1200.0, "snr_db": 10}
    row = {"cycles_per_stride": 5_800_000, "duty": 0.36, "real_time": True,
           "average_power_mw": 3.61, "battery_days": 34.6}
    duty = {"board": "nano33ble", "core": "cortex-m4", "clock_hz": 64e6, "stride_ms": 250.0,
            "battery_mah": 1000.0, "cycles": {"gate_only": 88000, "active": 5_800_000},
            "gate_cost": 0.015, "windows_seen": 100, "windows_passed": 15,
            "passed_fraction": 0.15, "always_on": row,
            "gated": dict(row, cycles_per_stride=900_000, duty=0.056, battery_days=188.5)}
    sim = {"stream": "s.wav", "engine": "c", "duration_s": 1200.0, "stride_ms": 250.0,
           "detections": [{"t_s": 3.0, "label": "yes", "score": 230}],
           "truth": [{"label": "yes", "start_s": 2.5, "end_s": 3.4}], "score": None,
           "settings": {}, "wake": {"enabled": True, "windows_seen": 100,
                                    "windows_passed": 15}, "duty_cycle": duty}
    return {"streaming": sim, "calibration": cal}


def test_streaming_shows_the_det_curve_and_the_duty_cycle():
    d = _data(**_streaming_data())
    page = render_report(d)
    sec = page.split('<section id="streaming"', 1)[1].split("</section>", 1)[0]
    assert 'data-plot="stream-timeline"' in sec and 'data-plot="stream-det"' in sec
    assert "188.5" in sec and "34.6" in sec and "15 of 100 windows" in sec
    assert "threshold 160" in sec
    assert render_report(_data(**_streaming_data())) == page          # deterministic
    # the calibration alone (no simulation yet) still makes the section, with its plot
    only = render_report(_data(calibration=_streaming_data()["calibration"]))
    sec = only.split('<section id="streaming"', 1)[1].split("</section>", 1)[0]
    assert 'data-plot="stream-det"' in sec and "stream-timeline" not in sec
