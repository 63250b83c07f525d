"""``kiloml data stream`` (audio and IMU) and ``kiloml simulate --stream``'s refusals of bad
input, through the command line."""

from __future__ import annotations

import json
import shutil

import numpy as np

from projhelp import SHARED, kiloml, wand_project
from kiloml.data.readers import read_file
from kiloml.data.stream import read_truth
from kiloml.data.wav import write_wav

SPEECH = SHARED / "data" / "speech_commands"


def _kws_project(tmp_path):
    """A KWS project whose test split holds 4 clips of yes, no and _unknown_ each, and one
    synthetic background-noise recording."""
    data = tmp_path / "sc"
    for lab in ("yes", "no", "_unknown_"):
        (data / lab).mkdir(parents=True)
        for f in sorted((SPEECH / lab).glob("*.wav"))[:4]:
            shutil.copy(f, data / lab / f.name)
    (data / "_background_noise_").mkdir()
    rng = np.random.default_rng(0)
    hum = 800 * np.sin(2 * np.pi * 50 * np.arange(16000 * 20) / 16000)
    write_wav(data / "_background_noise_" / "hum.wav",
              np.round(hum + rng.normal(0, 500, hum.size)).astype(np.int16), 16000)
    root = tmp_path / "p"
    assert kiloml("init", root, "--task", "kws").returncode == 0
    r = kiloml("data", "import", data, "--split", "test", cwd=root)
    assert r.returncode == 0, r.stderr
    return root


def test_audio_stream_is_deterministic_and_its_truth_is_right(tmp_path):
    root = _kws_project(tmp_path)
    runs = {}
    for name, seed, snr in (("a", 3, 10), ("b", 3, 10), ("c", 4, 10), ("quiet", 3, 0)):
        r = kiloml("data", "stream", "-o", tmp_path / f"{name}.wav", "--truth",
                   tmp_path / f"{name}.csv", "--minutes", "1", "--keywords", "6", "--unknown",
                   "3", "--seed", seed, "--snr", snr, "--json", cwd=root)
        assert r.returncode == 0, r.stderr
        runs[name] = json.loads(r.stdout)
    a = (tmp_path / "a.wav").read_bytes()
    assert a == (tmp_path / "b.wav").read_bytes() != (tmp_path / "c.wav").read_bytes()
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
    truth = read_truth(tmp_path / "a.csv")
    assert runs["a"]["labels"] == {"_unknown_": 3, "no": 3, "yes": 3}
    assert [e.label for e in truth].count("yes") == 3
    for e, f in zip(truth, truth[1:]):
        assert e.end_s + 1.5 - 1e-9 <= f.start_s             # non-overlapping, 1.5 s gaps
    rec = read_file(tmp_path / "a.wav", "wav")
    assert rec.frames == 16000 * 60 and truth[-1].end_s <= 60
    assert runs["a"]["scale"] <= 1.0

    def ratio(name):       # power inside the clips over power outside them
        x = read_file(tmp_path / f"{name}.wav", "wav").data[:, 0].astype(np.float64)
        inside = np.zeros(x.size, bool)
        for e in read_truth(tmp_path / f"{name}.csv"):
            inside[int(e.start_s * 16000):int(e.end_s * 16000)] = True
        return np.mean(x[inside] ** 2) / np.mean(x[~inside] ** 2)
    assert ratio("a") > 3 * ratio("quiet")       # 10 dB vs 0 dB: same words, noise 10 dB up


def test_stream_and_simulate_refuse_bad_input(tmp_path):
    root = _kws_project(tmp_path)
    r = kiloml("data", "stream", "-o", tmp_path / "s.wav", "--truth", tmp_path / "t.csv",
               "--minutes", "0.1", "--keywords", "6", cwd=root)
    assert r.returncode == 1 and "need" in r.stderr and "minutes" in r.stderr
    assert len(r.stderr.strip().splitlines()) <= 2          # one line (wrapped at 80)
    write_wav(tmp_path / "r8k.wav", np.zeros(8000, np.int16), 8000)
    write_wav(tmp_path / "ok.wav", np.zeros(32000, np.int16), 16000)
    write_wav(tmp_path / "empty.wav", np.zeros(0, np.int16), 16000)
    (tmp_path / "bad.csv").write_text("label,start_s,end_s\nyes,1.0\n")
    (tmp_path / "late.csv").write_text("label,start_s,end_s\nyes,9.0,10.0\n")
    for args, words in ((["--stream", tmp_path / "r8k.wav"], "8000 Hz"),
                        (["--stream", tmp_path / "empty.wav"], "no samples"),
                        (["--stream", tmp_path / "ok.wav", "--truth", tmp_path / "bad.csv"],
                         "bad.csv:2"),
                        (["--stream", tmp_path / "ok.wav", "--truth", tmp_path / "late.csv"],
                         "after the stream's end")):
        r = kiloml("simulate", *args, cwd=root)
        assert r.returncode == 1, (args, r.stdout)
        assert words in r.stderr.replace("\n", " "), r.stderr
        assert "Traceback" not in r.stderr
    r = kiloml("simulate", "--stream", tmp_path / "ok.wav", "--duty-cycle", "--battery", "0",
               cwd=root)
    assert r.returncode == 2 and "--battery" in r.stderr, r.stderr
    assert not (root / "build" / "simulate.json").exists()   # nothing stored for the report


def test_imu_stream_concatenates_the_split(tmp_path):
    root = wand_project(tmp_path)
    assert kiloml("run", "-q", "--until", "import", cwd=root).returncode == 0
    r = kiloml("data", "stream", "-o", tmp_path / "s.npy", "--truth", tmp_path / "t.csv",
               "--json", cwd=root)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    x = np.load(tmp_path / "s.npy")
    truth = read_truth(tmp_path / "t.csv")
    assert x.shape[1] == 3 and len(truth) == res["events"] > 0
    assert truth[0].start_s == 0 and abs(truth[-1].end_s - len(x) / 25.0) < 1e-6
    assert all(abs(e.start_s - f.end_s) < 1e-9 for f, e in zip(truth, truth[1:]))
    assert {e.label for e in truth} <= {"ring", "wing"}


def test_simulate_engine_c_equals_the_python_twin(tmp_path):
    """A trained motion project: the deploy package's C streaming API built for the host and
    the Python twin decide the same, event for event, on the test split's stream."""
    root = wand_project(tmp_path)
    r = kiloml("run", "-q", "--until", "train", cwd=root)
    assert r.returncode == 0, r.stderr
    r = kiloml("data", "stream", "-o", tmp_path / "s.npy", "--truth", tmp_path / "t.csv",
               cwd=root)
    assert r.returncode == 0, r.stderr
    res = {}
    for engine in ("python", "c"):
        r = kiloml("simulate", "--stream", tmp_path / "s.npy", "--truth", tmp_path / "t.csv",
                   "--engine", engine, "--json", cwd=root)
        assert r.returncode == 0, r.stderr
        res[engine] = json.loads(r.stdout)
    assert res["c"]["engine"] == "c" and res["c"]["windows"] == res["python"]["windows"]
    assert len(res["python"]["detections"]) >= 10
    assert res["c"]["detections"] == res["python"]["detections"]
    assert res["c"]["score"] == res["python"]["score"]
    # the last simulation is the report's streaming section: its timeline and its scores
    stored = json.loads((root / "build" / "simulate.json").read_text())
    assert stored["engine"] == "c" and len(stored["truth"]) == len(read_truth(tmp_path / "t.csv"))
    r = kiloml("report", "-o", tmp_path / "r.html", cwd=root)
    assert r.returncode == 0, r.stderr
    html = (tmp_path / "r.html").read_text()
    sec = html[html.index('<section id="streaming">'):]
    sec = sec[:sec.index("</section>")]
    assert sec.count("<svg") == 1
    sc = res["c"]["score"]
    assert f"{sc['hits']} hits, {sc['misses']} misses, {sc['false_accepts']} false accepts" in sec
