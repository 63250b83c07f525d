"""Source files as a user has them: serial logs with glitches, data outside the project that
moves with it, and one sample rate stated once."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from datahelp import (DATA, KWS, MOTION, kiloml, new_dataset, one_line_error, tone,
                      wav_bytes)
from kiloml.data import Dataset, DatasetIndex, dataset_info, import_data, load_windows
from kiloml.data.readers import read_serial_log
from kiloml.errors import DataError

WAND = DATA / "magic_wand"
WING = WAND / "wing" / "output_wing_lsj.txt"
STREAM = WAND / "negative" / "output_negative_1.txt"
pytestmark = pytest.mark.skipif(not WAND.is_dir(), reason=f"no shared data at {WAND}")


def with_glitch(src, dst, after_line: int, glitch: bytes = b"11\r\n") -> int:
    """Copy ``src`` to ``dst`` with ``glitch`` inserted after line ``after_line`` (1-based);
    returns the glitch's line number."""
    lines = src.read_bytes().splitlines(keepends=True)
    dst.write_bytes(b"".join(lines[:after_line] + [glitch] + lines[after_line:]))
    return after_line + 1


def first_data_line(path, gesture: int, row: int) -> int:
    """The 1-based line number of data row ``row`` of gesture ``gesture`` (0-based)."""
    seps = 0
    for i, ln in enumerate(path.read_bytes().splitlines(), 1):
        if ln.strip() == b"-,-,-":
            seps += 1
            k = 0
            continue
        if seps == gesture + 1:
            if k == row:
                return i
            k += 1
    raise AssertionError("no such row")


# ---------------------------------------------------------------- serial glitches


def test_glitch_in_a_gesture_drops_that_line_only(tmp_path):
    d = tmp_path / "in" / "wing"
    d.mkdir(parents=True)
    log = d / "output_wing_lsj.txt"
    line = with_glitch(WING, log, first_data_line(WING, gesture=3, row=10))
    clean = read_serial_log(WING, rate=25)
    ds, cfg = new_dataset(tmp_path / "p", MOTION, sample_rate=25)
    res = import_data(ds, cfg, tmp_path / "in")
    assert res.dropped_lines == 1
    assert res.warnings == [f"{log}:{line}: dropped malformed line '11' (1 value, the log has "
                            "3 per line)"]
    assert res.summary()["dropped_lines"] == 1 and res.summary()["warnings"] == res.warnings
    samples = ds.load_index().of_role("sample")
    assert len(samples) == len(clean.segments)                 # no gesture lost
    assert [s.length for s in samples] == [n for _, n in clean.segments]
    x, wins = load_windows(ds, cfg)
    ref_ds, _ = new_dataset(tmp_path / "ref", MOTION, sample_rate=25)
    import_data(ref_ds, cfg, WING, label="wing")
    ref, _ = load_windows(ref_ds, cfg)
    np.testing.assert_array_equal(x, ref)                       # every frame as without it
    info = dataset_info(ds, cfg)
    assert info["dropped_lines"] == 1
    assert f"1 malformed line(s) dropped at import from 1 file(s), e.g. 1 in " in \
        " | ".join(info["problems"])


def test_glitches_in_a_continuous_recording(tmp_path):
    """A log with no separators is one recording: a glitch costs one frame, not the log."""
    log = tmp_path / "output_negative_1.txt"
    lines = STREAM.read_bytes().splitlines(keepends=True)
    body = lines[:100] + [b"11\r\n"] + lines[100:500] + [b"-3.0,nan,4.0\r\n", b"12,\r\n"] + \
        lines[500:]
    log.write_bytes(b"".join(body))
    ds, cfg = new_dataset(tmp_path / "p", MOTION, sample_rate=25)
    res = import_data(ds, cfg, log, label="negative")
    assert res.dropped_lines == 2                              # '12,' is junk, not numbers
    assert [w.split(": ", 1)[0].rsplit(":", 1)[1] for w in res.warnings] == ["101", "502"]
    samples = ds.load_index().of_role("sample")
    assert sum(s.length for s in samples) == 895               # 895 good rows, all kept
    assert {json.loads(s.options)["dropped_lines"] for s in samples} == {2}
    assert dataset_info(ds, cfg)["dropped_lines"] == 2         # per file, not per block


def test_many_glitches_are_listed_briefly(tmp_path):
    log = tmp_path / "g.txt"
    lines = STREAM.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(ln + b"7\r\n" for ln in lines[20:60]))
    ds, cfg = new_dataset(tmp_path / "p", MOTION, sample_rate=25)
    res = import_data(ds, cfg, log, label="n")
    assert res.dropped_lines == 40 and len(res.warnings) == 6
    assert res.warnings[-1] == f"{log}: ... and 35 more malformed line(s) dropped"


def test_a_log_without_usable_lines_is_an_error_and_nothing_is_written(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    shutil.copy(WING, d / "output_wing_lsj.txt")
    (d / "output_wing_bad.txt").write_bytes(b"\x1b[2J-,-,-\r\n11\r\n1,2\r\n-,-,-\r\nnan,1,2\r\n"
                                            b"4,inf,0\r\n")
    ds, cfg = new_dataset(tmp_path / "p", MOTION, sample_rate=25)
    before = ds.index_path.read_bytes()
    with pytest.raises(DataError, match=r"output_wing_bad.txt: no usable 'x,y,z' line \(4 "
                       r"malformed line\(s\) dropped"):
        import_data(ds, cfg, d, label="wing")
    assert ds.index_path.read_bytes() == before


def test_cli_prints_the_warning_and_info_counts(tmp_path):
    p = tmp_path / "p"
    kiloml("init", p, "--task", "motion")
    d = tmp_path / "in" / "wing"
    d.mkdir(parents=True)
    line = with_glitch(WING, d / "output_wing_lsj.txt", 300)
    r = kiloml("data", "import", tmp_path / "in", "-p", p, "--rate", "25")
    assert r.returncode == 0, r.stderr
    # (rich wraps long lines anywhere: compare without white space)
    assert f"output_wing_lsj.txt:{line}:droppedmalformedline'11'" in "".join(r.stderr.split())
    info = json.loads(kiloml("data", "info", "-p", p, "--json").stdout)
    assert info["dropped_lines"] == 1


# ---------------------------------------------------------------- relative source paths


def test_a_project_moved_with_its_data_still_loads(tmp_path):
    """Data outside the root is stored as ../data/...; copy both elsewhere, delete the
    originals, and every source is still found."""
    home = tmp_path / "a"
    (home / "data" / "ring").mkdir(parents=True)
    shutil.copy(WAND / "ring" / "output_ring_hyw.txt", home / "data" / "ring")
    (home / "proj" / "clips").mkdir(parents=True)
    shutil.copy(WAND / "wing" / "output_wing_lsj.txt", home / "proj" / "clips")
    ds, cfg = new_dataset(home / "proj", MOTION, sample_rate=25)
    import_data(ds, cfg, home / "data")
    import_data(ds, cfg, (home / "proj" / "clips").resolve(), label="wing")  # absolute input
    sources = {s.source for s in ds.load_index()}
    assert sources == {"../data/ring/output_ring_hyw.txt", "clips/output_wing_lsj.txt"}
    x, wins = load_windows(ds, cfg)

    shutil.copytree(home, tmp_path / "b")
    shutil.rmtree(home)
    moved = Dataset(tmp_path / "b" / "proj", tmp_path / "b" / "proj" / "dataset" / "index.csv")
    info = dataset_info(moved, cfg, verify=True)
    assert info["sources"] == 2
    assert not [p for p in info["problems"] if "missing" in p or "changed" in p], info
    y, wins2 = load_windows(moved, cfg)
    np.testing.assert_array_equal(x, y)
    assert wins2 == wins
    # Re-importing the moved data finds it already indexed (same file, other spelling).
    again = import_data(moved, cfg, tmp_path / "b" / "proj" / ".." / "data")
    assert again.added == [] and again.duplicates == 40


def test_symlinked_data_keeps_the_users_layout(tmp_path):
    """A data folder linked into the project is indexed through the link (it moves with the
    project); importing the link's target again is recognised as the same files."""
    store = tmp_path / "store" / "yes"
    store.mkdir(parents=True)
    (store / "a.wav").write_bytes(wav_bytes(tone()))
    ds, cfg = new_dataset(tmp_path / "p", KWS)
    (ds.root / "clips").symlink_to(store.parent, target_is_directory=True)
    res = import_data(ds, cfg, ds.root / "clips")
    assert [s.source for s in res.added] == ["clips/yes/a.wav"]
    assert import_data(ds, cfg, store.parent).duplicates == 1


def test_old_absolute_entries_still_resolve(tmp_path):
    ds, cfg = new_dataset(tmp_path / "p", KWS)
    clip = tmp_path / "yes" / "a.wav"
    clip.parent.mkdir()
    clip.write_bytes(wav_bytes(tone()))
    import_data(ds, cfg, clip.parent, label="yes")
    idx = ds.load_index()
    assert idx.samples[0].source == "../yes/a.wav"
    DatasetIndex([s.with_(source=str(clip)) for s in idx]).save(ds.index_path)
    assert load_windows(ds, cfg)[0].shape == (1, 16000, 1)
    assert import_data(ds, cfg, clip.parent, label="yes").duplicates == 1


def test_source_name_forms(tmp_path):
    ds = Dataset(tmp_path / "p", tmp_path / "p" / "i.csv")
    assert ds.source_name(tmp_path / "p" / "d" / "x.wav") == "d/x.wav"
    assert ds.source_name(tmp_path / "q" / "x.wav") == "../q/x.wav"
    assert ds.resolve("../q/x.wav") == tmp_path / "p" / ".." / "q" / "x.wav"
    assert ds.location("../q/./x.wav") == str(tmp_path / "q" / "x.wav")


# ---------------------------------------------------------------- one rate, stated once


def test_settings_rate_serves_rate_less_logs(tmp_path):
    ds, cfg = new_dataset(tmp_path / "p", MOTION, sample_rate=25)
    res = import_data(ds, cfg, WAND / "ring" / "output_ring_tangsy.txt", label="ring")
    assert {s.sample_rate for s in res.added} == {25.0} and len(res.added) == 10
    assert all(json.loads(s.options) == {} for s in res.added)


def test_rate_argument_must_not_contradict_the_settings(tmp_path):
    ds, cfg = new_dataset(tmp_path / "p", MOTION, sample_rate=25)
    with pytest.raises(DataError, match=r"--rate 50 Hz contradicts data.sample_rate 25 Hz"):
        import_data(ds, cfg, WING, label="wing", rate=50)
    assert len(import_data(ds, cfg, WING, label="wing", rate=25).added) == 22


def write_csv(path, rate_hz, n=300, tick_ms=True):
    """A timestamped CSV at ``rate_hz``, timestamps in whole milliseconds (as millis())."""
    t = np.arange(n) * 1000.0 / rate_hz
    t = np.floor(t) if tick_ms else t
    path.write_text("timestamp,ax,ay,az\n" + "".join(
        f"{int(ti) if tick_ms else ti},{i % 5},{-i % 3},{i % 7}\n" for i, ti in enumerate(t)))


def test_timestamps_must_agree_with_the_stated_rate(tmp_path):
    ds, cfg = new_dataset(tmp_path / "p", MOTION, sample_rate=50)
    f = tmp_path / "fast.csv"
    write_csv(f, 100.0)
    with pytest.raises(DataError, match=r"fast.csv: sample rate 100 Hz \(from its timestamps\), "
                       r"but data.sample_rate states 50 Hz"):
        import_data(ds, cfg, f, label="x")
    # 119 Hz in millisecond ticks (steps of 8 and 9 ms): agrees with 119 Hz, indexed at it.
    ds, cfg = new_dataset(tmp_path / "q", MOTION, sample_rate=119)
    g = tmp_path / "imu.csv"
    write_csv(g, 119.0)
    res = import_data(ds, cfg, g, label="x")
    assert res.added[0].sample_rate == 119.0


def test_wav_header_rate_against_rate_argument(tmp_path):
    ds, cfg = new_dataset(tmp_path / "p", dict(KWS, sample_rate=None))
    clip = tmp_path / "yes" / "a.wav"
    clip.parent.mkdir()
    clip.write_bytes(wav_bytes(tone(8000, rate=8000), rate=8000))
    with pytest.raises(DataError, match=r"a.wav: sample rate 8000 Hz \(from its WAV header\), "
                       r"but --rate states 16000 Hz"):
        import_data(ds, cfg, clip, label="yes", rate=16000)
    assert import_data(ds, cfg, clip, label="yes").added[0].sample_rate == 8000


def test_edge_impulse_interval_is_rounded_within_tolerance(tmp_path):
    ds, cfg = new_dataset(tmp_path / "p", MOTION, sample_rate=60)
    doc = {"payload": {"interval_ms": 16.6667, "sensors": [{"name": n} for n in "xyz"],
                       "values": [[i, -i, 2 * i] for i in range(200)]}}
    (tmp_path / "wave.1.json").write_text(json.dumps(doc))
    s = import_data(ds, cfg, tmp_path / "wave.1.json").added[0]
    assert s.sample_rate == 60.0 and s.label == "wave"
    doc["payload"]["interval_ms"] = 20
    (tmp_path / "wave.2.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"wave.2.json: sample rate 50 Hz \(from its "
                       r"payload.interval_ms\), but data.sample_rate states 60 Hz"):
        import_data(ds, cfg, tmp_path / "wave.2.json")


def test_cli_rate_from_settings_and_contradiction(tmp_path):
    p = tmp_path / "p"
    kiloml("init", p, "--task", "motion")
    toml = (p / "kiloml.toml").read_text().replace("[data]\n", "[data]\nsample_rate = 25.0\n")
    (p / "kiloml.toml").write_text(toml)
    r = kiloml("data", "import", WAND / "ring" / "output_ring_tangsy.txt", "-p", p,
               "--label", "ring", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["added"] == 10
    r = kiloml("data", "import", WING, "-p", p, "--label", "wing", "--rate", "100")
    assert r.returncode == 1
    assert "--rate 100 Hz contradicts data.sample_rate 25 Hz" in one_line_error(r.stderr)
