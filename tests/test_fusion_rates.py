"""Sensors at their own rates (issue 18; docs/fusion.md, "Sensors at their own rates"):
settings validation (clear errors, exit 1 from the CLI), alignment of a 100 Hz + 50 Hz
recording with known signals, and a small multi-rate project through ``kiloml run`` (train,
deploy, verify in the emulator), its package's ``_classify_sensors`` with native-rate
buffers against the Python twin, and its cross-compile for the nano33ble."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from kiloml.data.fusion import SensorStream, align
from kiloml.data.settings import DataSettings, SensorDSPSettings, SensorSettings
from projhelp import edit, kiloml

sys.path.insert(0, str(Path(__file__).parent / "deploy"))

AXES = ["x_acc", "y_acc", "z_acc", "x_gyro", "y_gyro", "z_gyro"]
WATCH_DSP = ('\n[data.sensors.dsp]\nblock = "spectral"\n\n[data.sensors.dsp.params]\n'
             'fft_length = 32\nband_edges_hz = [0, 1, 2, 4, 8, 16, 25]\n')


def _settings(rate=50.0, window_ms=1000.0, stride_ms=200.0, dsp=True, sample_rate=100.0):
    return DataSettings(
        sample_rate=sample_rate, window_ms=window_ms, stride_ms=stride_ms,
        sensors=[SensorSettings(name="phone", suffix="_sp", axes=AXES),
                 SensorSettings(name="watch", suffix="_sw", axes=AXES, rate=rate,
                                dsp=SensorDSPSettings(block="raw") if dsp else None)])


def test_settings_accept_divisors_and_refuse_the_rest():
    ok = _settings()
    assert ok.sensor_decimation() == {"phone": 1, "watch": 2}
    assert ok.sensor_rate("watch") == 50.0 and ok.sensor_rate("phone") == 100.0
    assert _settings(rate=100.0, dsp=False).sensor_decimation() == {"phone": 1, "watch": 1}
    assert _settings(rate=25.0).sensor_decimation()["watch"] == 4
    cases = [(dict(rate=30.0), r"sensor 'watch': rate 30 Hz does not divide data.sample_rate "
                               r"100 Hz"),
             (dict(rate=200.0), "rate 200 Hz does not divide"),
             (dict(rate=40.0, sample_rate=120.0, window_ms=1010.0),
              r"data.window_ms 1010 ms at its rate 40 Hz is 40.4 samples, not a whole number"),
             (dict(stride_ms=250.0), r"data.stride_ms 250 ms at its rate 50 Hz is 12.5 "
                                     "samples"),
             (dict(dsp=False), r"needs its own DSP block \(\[data.sensors.dsp\]\): the shared "
                               r"\[dsp\] block cannot span sensors at different rates")]
    for kw, msg in cases:
        with pytest.raises(ValidationError, match=msg):
            _settings(**kw)


def _jittered(t0: float, n: int, rate: float, rng) -> np.ndarray:
    return t0 + np.arange(n) * 1000.0 / rate + rng.uniform(-1.0, 1.0, n)


def test_align_gives_a_50_hz_sensor_on_its_own_grid():
    # A 100 Hz and a 50 Hz sensor (clocks jittered by +-1 ms) sample known sines; aligned to
    # the 100 Hz grid, every other grid point of the 50 Hz sensor's channels is the sine at
    # its own 50 Hz grid times (the grid's start), within the linear-interpolation bound
    # h^2/8 * max|x''| for h the largest step of its samples; its dropped samples are
    # counted at its own rate (none), not the grid's
    rng = np.random.default_rng(4)
    fa, fg = 3.0, 1.7
    ta, tg = _jittered(0.0, 1000, 100.0, rng), _jittered(13.0, 500, 50.0, rng)
    sig = lambda f, t: np.sin(2 * np.pi * f * t / 1000.0)  # noqa: E731
    a = SensorStream(Path("r_sp.csv"), ta, np.stack([sig(fa, ta)] * 3, 1),
                     np.array(["A"] * ta.size, dtype=object))
    g = SensorStream(Path("r_sw.csv"), tg, np.stack([sig(fg, tg), -sig(fg, tg),
                                                     2 * sig(fg, tg)], 1))
    al = align([("a", a), ("g", g)], 100.0, 2000.0, {"a": 100.0, "g": 50.0})
    start = al.start_ms
    own = start + np.arange((al.data.shape[0] + 1) // 2) * 20.0
    got = al.data[::2, 3:]
    want = np.stack([sig(fg, own), -sig(fg, own), 2 * sig(fg, own)], 1)
    h = np.diff(tg).max() / 1000.0
    bound = h ** 2 / 8 * (2 * np.pi * fg) ** 2 * 2      # the largest amplitude is 2
    err = np.abs(got - want).max()
    assert 0 < err <= bound + 1e-6, (err, bound)
    assert al.stats["sensors"]["g"]["dropped"] == 0
    assert al.stats["sensors"]["g"]["rate_hz"] == pytest.approx(50.0, abs=0.05)
    # the same streams counted at the grid's rate: every 20 ms step drops one 10 ms sample
    assert align([("a", a), ("g", g)], 100.0, 2000.0).stats["sensors"]["g"]["dropped"] > 400


# ---------------------------------------------------------------- a multi-rate project


def _write(path: Path, t0: float, n: int, rate: float, labels: list[str], freqs, rng) -> None:
    t = np.round(_jittered(t0, n, rate, rng))
    sec = (t - t0) / 1000.0
    lines = [",".join(AXES + ["timestamp", "label"])]
    for i in range(n):
        v = 0.3 * rng.standard_normal(6)
        v[:3] += np.sin(2 * np.pi * freqs[labels[i]] * sec[i] + np.arange(3))
        lines.append(",".join(f"{x:.5f}" for x in v) + f",{int(t[i])},{labels[i]}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def _data(root: Path, people: int = 6) -> Path:
    """A phone at 100 Hz and a watch at 50 Hz: the phone oscillates at 2 / 6 Hz in SLOW /
    FAST, the watch at 1 / 4 Hz."""
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


def _project(tmp_path: Path) -> Path:
    data = _data(tmp_path / "d")
    root = tmp_path / "p"
    r = kiloml("init", root, "--example", "sp_sw_har", "--data", data)
    assert r.returncode == 0, r.stderr
    # the zero policy: the tests compare _classify_sensors with a NULL buffer against
    # _classify on the zeroed channels (the example's fallback models answer otherwise)
    edit(root / "kiloml.toml", 'missing = "fallback"\n', "")
    return root


def _multi_rate(cfg: Path) -> None:
    edit(cfg, 'name = "watch"\n', 'name = "watch"\nrate = 50.0\n')
    edit(cfg, "stride_ms = 250.0", "stride_ms = 200.0")
    edit(cfg, 'units = "m/s2, rad/s"\n\n[dsp]', 'units = "m/s2, rad/s"\n' + WATCH_DSP + "\n[dsp]")


@pytest.mark.parametrize("case", ["divisor", "window", "shared_block"])
def test_bad_rates_are_one_line_naming_kiloml_toml(tmp_path, case):
    root = _project(tmp_path)
    cfg = root / "kiloml.toml"
    index = (root / "dataset" / "index.csv").read_bytes()
    if case == "divisor":
        _multi_rate(cfg)
        edit(cfg, "rate = 50.0", "rate = 30.0")
        msg = "rate 30 Hz does not divide data.sample_rate 100 Hz"
    elif case == "window":
        _multi_rate(cfg)
        edit(cfg, "window_ms = 1000.0", "window_ms = 1010.0")
        msg = "data.window_ms 1010 ms at its rate 50 Hz is 50.5 samples, not a whole number"
    else:
        edit(cfg, 'name = "watch"\n', 'name = "watch"\nrate = 50.0\n')
        edit(cfg, "stride_ms = 250.0", "stride_ms = 200.0")
        msg = "needs its own DSP block"
    for args in (["data", "info"], ["train", "-q"]):
        r = kiloml(*args, "--project", root)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "kiloml.toml" in lines[0] and msg in lines[0], r.stderr
    assert (root / "dataset" / "index.csv").read_bytes() == index
    assert not (root / "model").exists()


def test_multi_rate_project_runs_deploys_verifies_and_takes_native_buffers(tmp_path):
    # a phone at 100 Hz and a watch at 50 Hz with its own spectral block: kiloml run trains,
    # deploys and verifies in the emulator; kiloml data info shows the nominal rates; the
    # package's header and manifest give the watch's window at its rate; _classify_sensors
    # with native-rate buffers (host build, ASan/UBSan) equals _classify on the grid bit for
    # bit and the Python twin within one output step (test_deploy_rates); the package
    # cross-compiles for the nano33ble with -Werror
    import deployhelp as H
    from test_deploy_rates import native_rates_against_the_twin

    from kiloml.data.windowing import load_windows
    from kiloml.deploy.run import load_manifest
    from kiloml.workflow.deploy import project_spec
    from kiloml.workflow.project import Project

    root = _project(tmp_path)
    cfg = root / "kiloml.toml"
    _multi_rate(cfg)
    edit(cfg, "[train]\n", "[train]\nepochs = 4\n")
    r = kiloml("run", "--project", root, "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    st = {s["name"]: s["status"] for s in json.loads(r.stdout)["steps"]}
    assert st["deploy"] == "ran" and st["verify"] == "ran"
    v = json.loads((root / "build" / "verify.json").read_text())
    assert v["engine"] == "emulator" and v["ok"] and v["predictions_equal"] == v["clips"] > 0
    assert v["accuracy_reference"] >= 0.9
    info = json.loads(kiloml("data", "info", "--project", root, "--json").stdout)
    sens = info["alignment"]["sensors"]
    assert (sens["phone"]["nominal_rate_hz"], sens["watch"]["nominal_rate_hz"]) == (100.0, 50.0)
    assert sens["watch"]["dropped"] == 0
    assert sens["watch"]["rate_hz_median"] == pytest.approx(50.0, abs=0.1)
    pkg = root / "build" / "deploy" / "c"
    header = next(pkg.glob("*.h")).read_text()
    assert "_WATCH_WINDOW_SAMPLES 50" in header and "_PHONE_WINDOW_SAMPLES 100" in header
    meta = load_manifest(pkg)
    assert [(s["name"], s["rate_hz"], s["window_samples"]) for s in meta["sensors"]] == \
        [("phone", 100.0, 100), ("watch", 50.0, 50)]
    p = Project.load(root)
    spec = project_spec(p)
    frames, wins = load_windows(p.dataset, p.config.data, split="test")
    grid, _ = native_rates_against_the_twin(pkg, spec, np.asarray(frames, np.float32),
                                            tmp_path)
    y = np.array([spec.labels.index(w.label) for w in wins])
    assert (grid.predictions == y).mean() >= 0.9
    flags, kernels = H.CORES["cortex-m4f-softfp"]
    sources, includes = H.package_sources(pkg, kernels)
    H.compile_objects(H.need("arm-none-eabi-gcc"), flags, sources, [pkg, *includes],
                      tmp_path / "o")
