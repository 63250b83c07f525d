"""Multi-sensor projects (kiloml.data.fusion): alignment on synthetic clocks with known answers,
label runs, multi-sensor import through the CLI (bad input: one line, exit 1, index unchanged;
--skip-bad), kiloml.toml round trip, and the real sp_sw_har recordings' alignment figures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from kiloml.data.fusion import (SensorStream, align, estimate_lag, label_runs, read_sensor_csv,
                                stream_stats)
from kiloml.errors import DataError
from projhelp import SHARED, kiloml

AXES = ["x_acc", "y_acc", "z_acc", "x_gyro", "y_gyro", "z_gyro"]
SPSW = SHARED / "data" / "sp_sw_har" / "DATA"


def _stream(t_ms, values, labels=None) -> SensorStream:
    return SensorStream(Path("s.csv"), np.asarray(t_ms, float), np.asarray(values, float),
                        None if labels is None else np.asarray(labels, dtype=object))


def test_align_rate_mismatch_matches_the_analytic_signal():
    # Two sensors at 102.5 Hz and 104 Hz sampling sin(2 pi f t) on true time; resampled to the
    # 100 Hz grid from the later start, the values are the sine at the grid times up to the
    # linear-interpolation bound h^2/8 * max|x''| (h the larger source period).
    f = 1.3
    ta = 3.0 + np.arange(1200) * (1000 / 102.5)
    tb = 17.0 + np.arange(1240) * (1000 / 104.0)
    sig = lambda t: np.sin(2 * np.pi * f * t / 1000.0)
    a = _stream(ta, np.stack([sig(ta)] * 3, 1), ["A"] * ta.size)
    b = _stream(tb, np.stack([sig(tb)] * 3, 1))
    al = align([("a", a), ("b", b)], 100.0, 2000.0)
    end = min(ta[-1], tb[-1])
    n = int(np.floor((end - 17.0) / 10.0)) + 1
    assert al.data.shape == (n, 6)
    assert al.start_ms == 17.0
    grid = 17.0 + np.arange(n) * 10.0
    bound = (1000 / 102.5 / 1000) ** 2 / 8 * (2 * np.pi * f) ** 2
    err = np.abs(al.data - sig(grid)[:, None]).max()
    assert err <= bound + 1e-6       # float32 storage: 6e-8
    assert err > 0                   # interpolation happened (the grid is off the samples)
    assert al.stats["sensors"]["a"]["rate_hz"] == pytest.approx(102.5, abs=1e-3)
    assert al.stats["sensors"]["b"]["rate_hz"] == pytest.approx(104.0, abs=1e-3)
    assert al.stats["start_spread_ms"] == 14.0


def test_clock_offset_is_estimated_by_cross_correlation():
    # The same motion seen by two devices; device b's clock runs 40 ms ahead of a's, so its
    # events carry timestamps 40 ms later: the lag estimate is 40 ms (grid resolution 10 ms).
    rng = np.random.default_rng(0)
    fine = np.convolve(rng.standard_normal(20000), np.ones(25) / 25, mode="same")
    t_true = np.arange(fine.size)  # 1 ms steps
    ta = np.arange(0, 15000, 1000 / 102.5)
    tb = np.arange(0, 15000, 1000 / 104.0)
    xa = np.interp(ta, t_true, fine) + 5
    xb = np.interp(tb, t_true, fine) + 5
    a = _stream(ta, np.stack([xa, 0 * xa, 0 * xa], 1), ["A"] * ta.size)
    b = _stream(tb + 40.0, np.stack([xb, 0 * xb, 0 * xb], 1))
    al = align([("a", a), ("b", b)], 100.0, 2000.0)
    assert al.stats["lag_ms"]["b"] == 40.0
    a0 = align([("a", a), ("b", _stream(tb, b.values))], 100.0, 2000.0)
    assert a0.stats["lag_ms"]["b"] == 0.0
    assert estimate_lag(np.ones(50), np.ones(50), 100.0) == 0.0


def test_duplicated_and_dropped_samples_are_counted_and_merged():
    t = np.arange(100) * 10.0
    t = np.concatenate([t[:20], t[25:]])          # a 60 ms step: 5 samples dropped
    t = np.insert(t, [3, 7, 7], [t[2], t[6], t[6]])  # 3 duplicated timestamps
    v = np.ones((t.size, 1))
    st = stream_stats(_stream(t, v), 100.0)
    assert (st["duplicated"], st["dropped"], st["max_gap_ms"]) == (3, 5, 60.0)
    # duplicates average: a duplicate with value 3 next to 1 gives 2 at that time
    v2 = v.copy()
    v2[3] = 3.0
    s2 = _stream(t, v2, ["A"] * t.size)
    al = align([("a", s2), ("b", _stream(t, v))], 100.0, 2000.0)
    assert al.data[2, 0] == 2.0 and al.data[0, 0] == 1.0


def test_label_runs_join_short_runs_to_the_one_before():
    labels = np.array(["A"] * 50 + ["B"] + ["A"] * 50 + ["C"] * 30, dtype=object)
    runs, relabelled = label_runs(labels, 10)
    assert runs == [(0, 101, "A"), (101, 30, "C")] and relabelled == 1
    runs, relabelled = label_runs(np.array(["B"] * 3 + ["A"] * 20, dtype=object), 10)
    assert runs == [(0, 23, "A")] and relabelled == 3


def test_align_refuses_recordings_that_do_not_match():
    t = np.arange(500) * 10.0
    a = _stream(t, np.ones((500, 1)), ["A"] * 500)
    b = _stream(t + 2500.0, np.ones((500, 1)))
    b.path = Path("rec_sw.csv")
    with pytest.raises(DataError, match=r"rec_sw\.csv: starts \+2500 ms .* tolerance"):
        align([("a", a), ("b", b)], 100.0, 2000.0)


# ---------------------------------------------------------------- import through the CLI


def _write(path: Path, t0: float, n: int, rate: float, labels=None, rng=None) -> None:
    rng = rng or np.random.default_rng(len(str(path)))
    t = np.round(t0 + np.arange(n) * 1000.0 / rate)
    labels = labels or (["SEATED"] * (n // 2) + ["WALKING"] * (n - n // 2))
    lines = [",".join(AXES + ["timestamp", "label"])]
    for i in range(n):
        vals = rng.standard_normal(6)
        lines.append(",".join(f"{x:.5f}" for x in vals) + f",{int(t[i])},{labels[i]}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def _synthetic(root: Path) -> Path:
    for s in ("s01", "s02", "s03"):
        for e in ("01", "02"):
            t0 = 1.6e12 + int(s[1:]) * 1e6 + int(e) * 1e4
            _write(root / s / f"{s}_{e}_sp.csv", t0, 400, 102.5)
            _write(root / s / f"{s}_{e}_sw.csv", t0 + 7, 410, 104.0)
    return root


def _project(tmp_path: Path, data: Path) -> Path:
    r = kiloml("init", tmp_path / "p", "--example", "sp_sw_har", "--data", data)
    assert r.returncode == 0, r.stderr
    return tmp_path / "p"


def test_import_multi_sensor_and_data_info(tmp_path):
    data = _synthetic(tmp_path / "d")
    root = _project(tmp_path, data)
    info = json.loads(kiloml("data", "info", "--project", root, "--json").stdout)
    assert info["labels"] == {"SEATED": 6, "WALKING": 6}
    assert info["channels"] == {"12": 12} and info["groups"] == 3
    al = info["alignment"]
    assert al["recordings"] == 6 and al["start_spread_ms"]["max"] == 7.0
    assert al["sensors"]["phone"]["rows"] == 2400 and al["sensors"]["watch"]["rows"] == 2460
    assert al["label_agreement"]["min"] > 0.9
    text = kiloml("data", "info", "--project", root).stdout
    assert "sensor alignment, 6 recordings" in text


@pytest.mark.parametrize("case", ["missing_file", "backwards", "offset", "absent_sensor"])
def test_bad_multi_sensor_input_is_one_line_and_leaves_the_index(tmp_path, case):
    good = _synthetic(tmp_path / "good")
    root = _project(tmp_path, good)
    before = (root / "dataset" / "index.csv").read_bytes()
    bad = tmp_path / "bad"
    shutil.copytree(good, bad)
    for f in bad.rglob("*.csv"):   # other recordings than the ones imported
        f.rename(f.with_name(f.name.replace("_0", "_1")))
    if case == "missing_file":
        (bad / "s02" / "s02_12_sw.csv").unlink()
        name = "s02_12_sp.csv"
    elif case == "backwards":
        p = bad / "s01" / "s01_11_sw.csv"
        lines = p.read_text().splitlines()
        lines[10], lines[11] = lines[11], lines[10]
        p.write_text("\n".join(lines) + "\n")
        name = "s01_11_sw.csv:12"
    elif case == "offset":
        _write(bad / "s03" / "s03_12_sw.csv", 1.6e12 + 3e6 + 2e4 + 3000, 410, 104.0)
        name = "s03_12_sw.csv"
    else:
        for f in bad.rglob("*_sw.csv"):
            f.unlink()
        name = "watch"
    r = kiloml("data", "import", bad, "--project", root)
    assert r.returncode == 1
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and name in lines[0], r.stderr
    assert (root / "dataset" / "index.csv").read_bytes() == before
    if case == "absent_sensor":
        return
    r = kiloml("data", "import", bad, "--project", root, "--skip-bad", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert len(out["skipped"]) == 1 and name.split(":")[0] in out["skipped"][0]["file"] \
        + out["skipped"][0]["reason"]
    assert sum(out["labels"].values()) == 10   # 5 good recordings, 2 label runs each


def test_config_round_trip_and_single_sensor_configs(tmp_path):
    from kiloml.workflow.project import Project

    data = _synthetic(tmp_path / "d")
    root = _project(tmp_path, data)
    p = Project.load(root)
    assert [s.name for s in p.config.data.sensors] == ["phone", "watch"]
    assert p.config.data.sensor_channels() == {"phone": (0, 6), "watch": (6, 12)}
    text = (root / "kiloml.toml").read_text()
    assert text.count("[[data.sensors]]") == 2
    r = kiloml("init", tmp_path / "one", "--task", "motion")
    assert r.returncode == 0
    assert "sensors" not in (tmp_path / "one" / "kiloml.toml").read_text()
    assert Project.load(tmp_path / "one").config.data.sensors == []


def test_sensor_csv_reader_names_the_problem(tmp_path):
    p = tmp_path / "x_sp.csv"
    p.write_text("x_acc,timestamp,label\n1,0,A\n2,10,A\n")
    with pytest.raises(DataError, match=r"x_sp\.csv: no column 'y_acc'"):
        read_sensor_csv(p, ["x_acc", "y_acc"])
    p.write_text("x_acc,timestamp,label\n1,0,A\nnan,10,A\n2,20,A\n")
    with pytest.raises(DataError, match=r"x_sp\.csv:3: value not finite"):
        read_sensor_csv(p, ["x_acc"])


@pytest.mark.skipif(not SPSW.is_dir(), reason="needs ../shared/data/sp_sw_har")
def test_real_recordings_alignment_figures():
    # Figures the data set's notes state independently (SOURCE.txt): phone ~102.5 Hz in
    # bursts (many 0-1 ms steps, gaps up to ~190 ms), watch ~104 Hz regular.
    from kiloml.data.settings import DataSettings
    from kiloml.workflow.examples import SP_SW_HAR_AXES

    for rec in ("s01/s01_01", "s05/s05_03"):
        streams = [(n, read_sensor_csv(SPSW / f"{rec}_{n}.csv", SP_SW_HAR_AXES))
                   for n in ("sp", "sw")]
        al = align(streams, 100.0, DataSettings(window_ms=1000, stride_ms=250)
                   .align_tolerance_ms)
        st = al.stats["sensors"]
        assert 101.5 < st["sp"]["rate_hz"] < 103.5 and 103 < st["sw"]["rate_hz"] < 105
        assert st["sp"]["duplicated"] > 10 * st["sw"]["duplicated"] >= 0
        assert al.stats["label_agreement"] > 0.95
        assert set(al.labels) >= {"WALKING", "TURNING"}


def test_sensor_dropout_zeroes_one_whole_sensor():
    from kiloml.data.settings import AugmentSettings
    from kiloml.train.augment import augment_motion, motion_enabled

    x = np.ones((2000, 10, 12), np.float32)
    aug = AugmentSettings(sensor_dropout=1.0)
    assert motion_enabled(aug)
    y = augment_motion(x, aug, np.random.default_rng(0), [(0, 6), (6, 12)])
    zero = (y == 0).all(axis=1)                       # (N, 12) channel zeroed over the window
    phone, watch = zero[:, :6].all(1), zero[:, 6:].all(1)
    assert (phone ^ watch).all()                      # exactly one sensor, whole
    assert (y.transpose(0, 2, 1)[~zero] == 1).all()    # the rest untouched
    assert 900 < phone.sum() < 1100                   # uniform choice: 1000 +- 4.5 sigma
    half = augment_motion(x, AugmentSettings(sensor_dropout=0.5), np.random.default_rng(1),
                          [(0, 6), (6, 12)])
    assert 900 < (half == 0).all(axis=1).any(axis=1).sum() < 1100
    # single-sensor data: no dropout
    assert (augment_motion(x, aug, np.random.default_rng(0), [(0, 12)]) == 1).all()


@pytest.mark.skipif(not SPSW.is_dir(), reason="needs ../shared/data/sp_sw_har")
def test_sp_sw_har_example_runs_deploys_verifies_and_tests_other_people(tmp_path):
    # 4 people x 3 recordings to train on (person-disjoint splits), 1 other person to test
    data, other = tmp_path / "DATA", tmp_path / "OTHER"
    for person in ("s01", "s02", "s03", "s05"):
        for f in sorted((SPSW / person).glob("*_0[123]_s?.csv")):
            (data / person).mkdir(parents=True, exist_ok=True)
            shutil.copy(f, data / person / f.name)
    for f in sorted((SPSW / "s06").glob("*_0[12]_s?.csv")):
        (other / "s06").mkdir(parents=True, exist_ok=True)
        shutil.copy(f, other / "s06" / f.name)
    root = tmp_path / "har"
    r = kiloml("init", root, "--example", "sp_sw_har", "--data", data)
    assert r.returncode == 0, r.stderr
    cfg = root / "kiloml.toml"
    cfg.write_text(cfg.read_text().replace("[train]\n", "[train]\nepochs = 4\n"))
    r = kiloml("run", "--project", root, "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    st = {s["name"]: s["status"] for s in json.loads(r.stdout)["steps"]}
    assert st["deploy"] == "ran" and st["verify"] == "ran"
    v = json.loads((root / "build" / "verify.json").read_text())
    assert v["ok"] and v["scores_bit_exact"] and v["predictions_equal"] == v["clips"] > 0
    header = next((root / "build" / "deploy" / "c").glob("*.h")).read_text()
    assert "_classify_sensors(const" in header and "_WATCH_AXES 6" in header
    r = kiloml("test", "--project", root, "--data", other, "--json")
    assert r.returncode == 0, r.stderr
    t = json.loads(r.stdout)
    assert t["n"] > 20 and set(t["labels"]) >= {"WALKING", "TURNING"}


def test_same_recording_names_from_two_folders_do_not_collide(tmp_path):
    from kiloml.data.dataset import Dataset
    from kiloml.data.importer import import_data
    from kiloml.data.index import DatasetIndex
    from kiloml.data.settings import DataSettings, SensorSettings

    cfg = DataSettings(sample_rate=100.0, window_ms=1000, stride_ms=250,
                       sensors=[SensorSettings(name="phone", suffix="_sp", axes=AXES),
                                SensorSettings(name="watch", suffix="_sw", axes=AXES)])
    ds = Dataset(tmp_path / "p", tmp_path / "p" / "dataset" / "index.csv")
    ds.index_path.parent.mkdir(parents=True)
    DatasetIndex([]).save(ds.index_path)
    a = import_data(ds, cfg, _synthetic(tmp_path / "a"))
    b = import_data(ds, cfg, _synthetic(tmp_path / "b"))
    again = import_data(ds, cfg, tmp_path / "a")
    assert len(a.added) == len(b.added) == 12 and b.duplicates == 0
    assert not again.added and again.duplicates == 12
    idx = ds.load_index()
    assert len({s.source for s in idx}) == 12 and len(set(idx.ids)) == 24
    for s in idx:   # each indexed run is the aligned frames of its label
        x = np.load(ds.resolve(s.source))[s.offset:s.offset + s.length]
        assert x.shape == (s.length, 12)


# ---------------------------------------------------------------- one file, several sensors


def _imu_file(path: Path, t0: float, n: int, rate: float, rng) -> np.ndarray:
    """One device's log: accelerometer and gyroscope columns in one CSV, labelled."""
    t = np.round(t0 + np.arange(n) * 1000.0 / rate)
    v = rng.standard_normal((n, 6))
    labels = ["REST"] * (n // 2) + ["SHAKE"] * (n - n // 2)
    lines = ["timestamp,gx,gy,gz,ax,ay,az,label"]
    for i in range(n):
        lines.append(f"{int(t[i])}," + ",".join(f"{x:.6f}" for x in v[i]) + f",{labels[i]}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return v


def test_one_csv_holds_several_sensors(tmp_path):
    from kiloml.data.dataset import Dataset
    from kiloml.data.importer import import_data
    from kiloml.data.index import DatasetIndex
    from kiloml.data.settings import DataSettings, SensorSettings
    from pydantic import ValidationError

    rng = np.random.default_rng(5)
    vals = {}
    for rec in ("p1/a", "p1/b", "p2/a"):
        # exactly on the 100 Hz grid: the aligned frames are the file's rows
        vals[rec] = _imu_file(tmp_path / "d" / f"{rec}.csv", 1.7e12, 300, 100.0, rng)
    cfg = DataSettings(sample_rate=100.0, window_ms=500, stride_ms=250,
                       sensors=[SensorSettings(name="accel", suffix="", axes=["ax", "ay", "az"]),
                                SensorSettings(name="gyro", suffix="", axes=["gx", "gy", "gz"])])
    assert cfg.sensor_channels() == {"accel": (0, 3), "gyro": (3, 6)}
    ds = Dataset(tmp_path / "p", tmp_path / "p" / "dataset" / "index.csv")
    ds.index_path.parent.mkdir(parents=True)
    DatasetIndex([]).save(ds.index_path)
    res = import_data(ds, cfg, tmp_path / "d")
    assert res.files == 3 and len(res.added) == 6          # 3 files, 2 label runs each
    idx = ds.load_index()
    for s in idx:
        x = np.load(ds.resolve(s.source))
        rec = next(r for r in vals if s.source.endswith(f"{r}.npy"))
        # channels in declaration order: accel = the file's ax, ay, az; gyro = gx, gy, gz
        np.testing.assert_allclose(x[:, :3], vals[rec][:, 3:], atol=1e-6)
        np.testing.assert_allclose(x[:, 3:], vals[rec][:, :3], atol=1e-6)
        al = s.reader_options()["align"]
        assert al["start_spread_ms"] == 0 and al["sensors"]["gyro"]["rows"] == 300
    assert {s.label for s in idx} == {"REST", "SHAKE"}
    # a shared file's sensor lacking its column: one line naming the file and the column
    bad = DataSettings(sample_rate=100.0, window_ms=500, stride_ms=250,
                       sensors=[SensorSettings(name="accel", suffix="", axes=["ax", "ay", "az"]),
                                SensorSettings(name="mag", suffix="", axes=["mx", "my", "mz"])])
    with pytest.raises(DataError, match=r"a\.csv: no column 'mx'"):
        import_data(ds, bad, tmp_path / "d")
    # two sensors of one file claiming the same column
    with pytest.raises(ValidationError, match="share the file suffix '' and the column 'ax'"):
        DataSettings(sample_rate=100.0, window_ms=500, stride_ms=250,
                     sensors=[SensorSettings(name="a", suffix="", axes=["ax", "ay"]),
                              SensorSettings(name="b", suffix="", axes=["ax"])])


def test_shared_and_own_files_mix_by_the_longest_suffix(tmp_path):
    # watch in its own file (<rec>_sw.csv), phone accelerometer + gyroscope in <rec>.csv
    from kiloml.data.importer import ImportResult, _recordings
    from kiloml.data.settings import DataSettings, SensorSettings

    cfg = DataSettings(sample_rate=100.0, window_ms=500, stride_ms=250,
                       sensors=[SensorSettings(name="acc", suffix="", axes=["ax"]),
                                SensorSettings(name="gyr", suffix="", axes=["gx"]),
                                SensorSettings(name="watch", suffix="_sw", axes=["ax"])])
    root = tmp_path
    files = [root / "s1" / "r1.csv", root / "s1" / "r1_sw.csv", root / "notes.txt"]
    res = ImportResult()
    recs = _recordings(cfg, root, files, res)
    assert recs == {"s1/r1": {"acc": files[0], "gyr": files[0], "watch": files[1]}}
    assert res.ignored == [str(files[2])]
