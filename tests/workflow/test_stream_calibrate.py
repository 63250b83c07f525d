"""``kiloml simulate --calibrate`` and ``--duty-cycle`` on a small trained KWS project: the
calibration sweeps the grid on a validation-split stream, picks the fewest misses under the
target (checked against its own DET points), writes kiloml.toml atomically and leaves it
untouched on bad input; the duty cycle comes with the simulation."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from projhelp import SHARED, edit, kiloml
from kiloml.data.wav import write_wav
from kiloml.train.streaming import CALIBRATION_GRID

pytestmark = pytest.mark.slow
SPEECH = SHARED / "data" / "speech_commands"


@pytest.fixture(scope="module")
def kws(tmp_path_factory):
    """yes / no / _unknown_ (40 clips each), a background hum, 4 epochs of training."""
    base = tmp_path_factory.mktemp("calib")
    data = base / "sc"
    for lab in ("yes", "no", "_unknown_"):
        (data / lab).mkdir(parents=True)
        for f in sorted((SPEECH / lab).glob("*.wav"))[:40]:
            shutil.copy(f, data / lab / f.name)
    (data / "_background_noise_").mkdir()
    rng = np.random.default_rng(0)
    hum = 800 * np.sin(2 * np.pi * 50 * np.arange(16000 * 30) / 16000)
    write_wav(data / "_background_noise_" / "hum.wav",
              np.round(hum + rng.normal(0, 500, hum.size)).astype(np.int16), 16000)
    root = base / "p"
    assert kiloml("init", root, "--task", "kws").returncode == 0
    cfg = root / "kiloml.toml"
    edit(cfg, "[source]\n", '[source]\npath = "../sc"\n')
    edit(cfg, "[train]\n", "[train]\nepochs = 4\n")
    r = kiloml("run", "-q", "--until", "train", cwd=root)
    assert r.returncode == 0, r.stderr
    return root


def test_calibrate_chooses_the_fewest_misses_under_the_target(kws):
    cfg = kws / "kiloml.toml"
    before = cfg.read_text()
    r = kiloml("simulate", "--calibrate", "--target-fa-per-hour", "100000", "--minutes", "1",
               "--json", cwd=kws)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["split"] == "validation" and len(res["points"]) == len(CALIBRATION_GRID) == 108
    pts = res["points"]
    # the choice, from the points by hand: fewest misses within the target, ties by FA
    ok = [q for q in pts if q["fa_per_hour"] <= 100000]
    best = min(ok, key=lambda q: (q["misses"], q["false_accepts"]))
    assert (res["chosen_point"]["misses"], res["chosen_point"]["false_accepts"]) == \
        (best["misses"], best["false_accepts"])
    # a lower threshold never detects less (this small model may not fire at all: the
    # sweep's decisions are checked on hand-made scores in tests/train/test_recognize.py)
    by = {(q["average_window_ms"], q["suppression_ms"], q["minimum_count"],
           q["detection_threshold"]): q["detections"] for q in pts}
    for (a, s, m, t), n in by.items():
        if t > 100:
            assert n <= by[(a, s, m, 100)]
    assert res["windows"] == res["windows_scored"] > 200       # 1 minute, 250 ms stride
    stored = json.loads((kws / "build" / "calibrate.json").read_text())
    assert stored["points"] == pts
    assert res["stream_notes"] == []           # 1 minute: 2 + 2 words, none repeated
    after = cfg.read_text()
    assert after != before
    c = res["chosen"]
    assert f"detection_threshold = {c['detection_threshold']}\n" in after
    assert f"minimum_count = {c['minimum_count']}\n" in after
    assert stored["stream"].endswith("build/calibrate/validation.wav")
    # bad input: one line, exit 2, kiloml.toml untouched
    for args, words in ((["--target-fa-per-hour", "-1"], "--target-fa-per-hour"),
                        ([], "needs --target-fa-per-hour"),
                        (["--target-fa-per-hour", "5", "--minutes", "0"], "--minutes"),
                        (["--target-fa-per-hour", "5", "--minutes", "-60"], "--minutes"),
                        (["--target-fa-per-hour", "5", "--minutes", "nan"], "--minutes"),
                        (["--target-fa-per-hour", "5", "--minutes", "inf"], "--minutes"),
                        (["--target-fa-per-hour", "5", "--snr", "nan"], "--snr"),
                        (["--target-fa-per-hour", "5", "--seed", "-1"], "--seed"),
                        (["--target-fa-per-hour", "5", "--stream", cfg], "no --stream")):
        r = kiloml("simulate", "--calibrate", *args, cwd=kws)
        assert r.returncode == 2 and words in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr
        assert cfg.read_text() == after
    # a target no setting reaches: exit 1, the DET points stored, kiloml.toml untouched
    r = kiloml("simulate", "--calibrate", "--target-fa-per-hour", "0", "--minutes", "1",
               "--seed", "2", cwd=kws)
    if r.returncode == 1:
        assert "kiloml.toml unchanged" in r.stderr.replace("\n", " ")
        assert cfg.read_text() == after
    else:            # every point had no false accept: the choice is written
        assert r.returncode == 0, r.stderr


def test_calibrate_on_a_stream_longer_than_the_validation_split(kws, monkeypatch):
    """A validation stream that needs more clips than the split has (4 minutes: 10 keywords
    and 10 unknown words; the split holds 4 clips a label) repeats validation clips, says so,
    and never reads a clip of another split."""
    from kiloml.data.loader import SourceCache
    from kiloml.data.stream import read_truth
    from kiloml.workflow.stream import calibrate_stream

    read = []
    load = SourceCache.load

    def spy(self, s, *a, **k):
        read.append(s)
        return load(self, s, *a, **k)

    monkeypatch.setattr(SourceCache, "load", spy)
    res = calibrate_stream(kws, 100000, minutes=4)
    from kiloml.data.index import DatasetIndex
    from kiloml.workflow.project import load_project

    val = [s for s in DatasetIndex.load(load_project(kws).index_path).of_role("sample")
           if s.split == "validation"]
    n_unk = sum(s.label == "_unknown_" for s in val)
    assert 0 < n_unk < 10 and len(val) < 20        # the fixture's split: too few clips
    clips = [s for s in read if s.role == "sample"]
    assert clips and {s.split for s in clips} == {"validation"}
    assert {s.id for s in clips} <= {s.id for s in val}
    truth = read_truth(res["truth"])
    assert sum(e.label == "_unknown_" for e in truth) == 10 and len(truth) == 20
    assert res["duration_s"] == pytest.approx(240)
    assert f"unknown words: 10 clips from {n_unk} in the split (some repeat)" in \
        res["stream_notes"]


def test_simulate_duty_cycle(kws, tmp_path):
    edit(kws / "kiloml.toml", "wake = false", "wake = true")
    r = kiloml("data", "stream", "-o", tmp_path / "s.wav", "--truth", tmp_path / "t.csv",
               "--minutes", "0.5", "--keywords", "3", "--unknown", "2", cwd=kws)
    assert r.returncode == 0, r.stderr
    r = kiloml("simulate", "--stream", tmp_path / "s.wav", "--truth", tmp_path / "t.csv",
               "--duty-cycle", "--battery", "500", "--board", "nano33ble", "--json", cwd=kws)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    d = res["duty_cycle"]
    assert d["board"] == "nano33ble" and d["battery_mah"] == 500
    assert res["wake"]["enabled"] and res["wake"]["windows_seen"] == d["windows_seen"]
    assert res["wake"]["windows_passed"] == d["windows_passed"]
    assert d["gated"]["duty"] <= d["always_on"]["duty"] + 1e-9 or d["passed_fraction"] == 1
    assert d["always_on"]["battery_days"] > 0
    stored = json.loads((kws / "build" / "simulate.json").read_text())
    assert stored["duty_cycle"] == d
    r = kiloml("report", "-o", tmp_path / "r.html", cwd=kws)
    assert r.returncode == 0, r.stderr
    html = (tmp_path / "r.html").read_text()
    sec = html[html.index('<section id="streaming">'):]
    sec = sec[:sec.index("</section>")]
    assert "duty cycle" in sec.lower() and f"{d['always_on']['battery_days']:,.1f}" in sec
    assert 'data-plot="stream-det"' in sec        # the calibration's DET curve
