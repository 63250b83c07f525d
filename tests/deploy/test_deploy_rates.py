"""Sensors at their own rates in the deployed C (docs/fusion.md, "Sensors at their own rates"):
a phone at the grid's 50 Hz and a watch at 25 Hz (one sample every 2 frames). The C library's
``_classify_sensors`` / ``_stream_push_sensors`` take the watch's buffer at 25 Hz; checked
bit for bit against the Python twin on host builds under ASan/UBSan, and cross-compiled for
the Nano 33 BLE core (C package and Arduino library)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import deployhelp as H  # noqa: E402

from kiloml.deploy import DeploySpec  # noqa: E402
from kiloml.deploy.c import deploy_c  # noqa: E402
from kiloml.deploy.run import (build_host_exe, load_manifest, run_python,  # noqa: E402
                               sensors_to_grid)
from kiloml.dsp import make_block  # noqa: E402
from kiloml.dsp.apply import apply_block  # noqa: E402
from kiloml.errors import KilomlError  # noqa: E402
from kiloml.train.normalize import Normalizer  # noqa: E402

FRAMES = 100          # 2 s at the 50 Hz grid
WATCH = FRAMES // 2   # the watch at 25 Hz
LABELS = ["still", "walk", "turn"]


def _block(watch_block: str = "spectral", names=("phone", "watch")):
    watch = (dict(sample_rate=25.0, fft_length=32, band_edges_hz=[0.0, 1.0, 3.0, 6.0, 12.5])
             if watch_block == "spectral" else {"scale": 0.5})
    return make_block("sensors", params={"sensors": [
        {"name": names[0], "axes": 3, "block": "spectral",
         "params": dict(sample_rate=50.0, fft_length=64,
                        band_edges_hz=[0.0, 1.0, 3.0, 6.0, 12.0, 25.0])},
        {"name": names[1], "axes": 3, "block": watch_block, "params": watch, "decimate": 2}]})


def _spec(watch_block: str = "spectral") -> tuple[DeploySpec, np.ndarray]:
    """The spec and 24 grid windows (N, 100, 6): the watch's classes show at 25 Hz."""
    block = _block(watch_block)
    rng = np.random.default_rng(5)
    t = np.arange(FRAMES) / 50.0
    wins = []
    for k in range(24):
        f = 0.5 + (k % 3) * 1.5
        base = np.sin(2 * np.pi * f * t)[:, None] * rng.uniform(0.5, 2, 6)
        wins.append(base + 0.3 * rng.standard_normal((FRAMES, 6)))
    x = np.array(wins, np.float32)
    train = np.concatenate([x, x.copy()])
    train[24:, :, 3:] = 0.0
    norm = Normalizer.fit("feature", apply_block(block, train))
    g = H.dense_graph(norm(apply_block(block, train)), len(LABELS))
    return DeploySpec("fus", g, block, FRAMES, 6, 50.0, 2000.0, LABELS,
                      normalizer=norm.state(), layout="flat", dsp_variant="f32",
                      board="nano33ble", sensors=(("phone", 3), ("watch", 3))), x


def test_the_composite_block_runs_a_slow_sensor_on_its_own_samples():
    # numpy: the watch part's features are its block on frames 0, 2, 4, ... of its channels
    block = _block()
    x = np.random.default_rng(0).standard_normal((5, FRAMES, 6)).astype(np.float32)
    y = block(x)
    (_, _, _, phone), (_, _, _, watch) = block.parts
    sl = block.part_slices(FRAMES)
    np.testing.assert_array_equal(y[:, sl["phone"]], phone(x[:, :, :3]).reshape(5, -1))
    np.testing.assert_array_equal(y[:, sl["watch"]], watch(x[:, ::2, 3:]).reshape(5, -1))
    # the odd frames do not matter; the even ones do
    x2 = x.copy()
    x2[:, 1::2, 3:] += 1.0
    np.testing.assert_array_equal(block(x2), y)
    x2[:, 0::2, 3:] += 1.0
    assert not np.array_equal(block(x2)[:, sl["watch"]], y[:, sl["watch"]])
    with pytest.raises(Exception, match="101 frames is not a whole number"):
        block.output_shape(101, 6)
    # a single-rate part does not write decimate (configs and manifests as before)
    one = make_block("sensors", params={"sensors": [
        {"name": "a", "axes": 3, "block": "raw", "params": {}, "decimate": 1}]})
    assert "decimate" not in json.dumps(one.params.model_dump(mode="json"))


HARNESS = r"""
#include <stdio.h>
#include <stdlib.h>
#include "fus.h"

static float phone[FUS_PHONE_WINDOW_SAMPLES * FUS_PHONE_AXES];
static float watch[FUS_WATCH_WINDOW_SAMPLES * FUS_WATCH_AXES];
static float raw[FUS_INPUT_SIZE];
static float scores[FUS_NUM_CLASSES];

static void show(const char *what, int top)
{
    int c;
    printf("%s %d", what, top);
    for (c = 0; c < FUS_NUM_CLASSES; ++c) { printf(" %.9g", (double)scores[c]); }
    printf("\n");
}

int main(int argc, char **argv)
{
    FILE *fi = fopen(argv[1], "rb");
    long n = atol(argv[2]), i;
    uint32_t missing = 99u, f, a;
    (void)argc;
    for (i = 0; i < n; ++i) {
        if (fread(phone, sizeof phone, 1, fi) != 1) { return 4; }
        if (fread(watch, sizeof watch, 1, fi) != 1) { return 4; }
        if (fread(raw, sizeof raw, 1, fi) != 1) { return 4; }
        show("both", fus_classify_sensors(phone, watch, scores, &missing));
        if (missing != 0u) { return 5; }
        show("nowatch", fus_classify_sensors(phone, 0, scores, &missing));
        if (missing != 2u) { return 6; }
        show("nophone", fus_classify_sensors(0, watch, scores, 0));
        show("grid", fus_classify(raw, scores));
        for (f = 0; f < FUS_WINDOW_SAMPLES; ++f) {
            for (a = 0; a < FUS_WATCH_AXES; ++a) {
                raw[f * FUS_CHANNELS + FUS_WATCH_FIRST_CHANNEL + a] = 0.0f;
            }
        }
        show("gridnowatch", fus_classify(raw, scores));
        for (f = 0; f < FUS_WINDOW_SAMPLES; ++f) {
            for (a = 0; a < FUS_PHONE_AXES; ++a) {
                raw[f * FUS_CHANNELS + FUS_PHONE_FIRST_CHANNEL + a] = 0.0f;
            }
            for (a = 0; a < FUS_WATCH_AXES; ++a) {
                raw[f * FUS_CHANNELS + FUS_WATCH_FIRST_CHANNEL + a] =
                    watch[f / FUS_WATCH_DECIMATION * FUS_WATCH_AXES + a];
            }
        }
        show("gridnophone", fus_classify(raw, scores));
    }
    fclose(fi);
    return 0;
}
"""


def native_rates_against_the_twin(pkg: Path, spec: DeploySpec, x: np.ndarray, tmp: Path):
    """Windows ``x`` (N, frames, channels) on the grid of a phone + watch package, the watch
    at the grid's rate / its decimation: the host build (ASan/UBSan) of ``HARNESS`` fed the
    sensors' native buffers (the watch's: one grid frame in its decimation) and the grid
    windows, checked as the test below says; the twin on the grid and the C's scores."""
    n = spec.name
    d = spec.block.decimate["watch"]
    a = spec.sensors[0][1]
    phone, watch = x[:, :, :a], x[:, ::d, a:]
    text = HARNESS.replace("fus_", f"{n}_").replace("FUS_", f"{n.upper()}_") \
        .replace('"fus.h"', f'"{n}.h"')
    exe = build_host_exe(pkg, load_manifest(pkg), tmp / "h.c", text, sanitize=True)
    with open(tmp / "in.bin", "wb") as f:
        for i in range(len(x)):
            for b in (phone[i], watch[i], x[i]):
                f.write(np.ascontiguousarray(b, "<f4").tobytes())
    r = subprocess.run([str(exe), str(tmp / "in.bin"), str(len(x))], capture_output=True,
                       text=True)
    assert r.returncode == 0, (r.returncode, r.stderr)
    rows = {}
    for ln in r.stdout.split("\n"):
        if ln:
            w = ln.split()
            rows.setdefault(w[0], []).append((int(w[1]), [float(v) for v in w[2:]]))
    top = {k: [t for t, _ in v] for k, v in rows.items()}
    sc = {k: np.array([s for _, s in v], np.float32) for k, v in rows.items()}
    for a, b in (("both", "grid"), ("nowatch", "gridnowatch"), ("nophone", "gridnophone")):
        assert top[a] == top[b], a
        np.testing.assert_array_equal(sc[a], sc[b], err_msg=a)
    grid = run_python(spec, x)
    step = float(spec.graph.tensors[spec.graph.outputs[0]].scale)
    for what, ref, same in (
            ("both", run_python(spec, sensors_to_grid(spec, [phone, watch])), grid),
            ("nowatch", run_python(spec, sensors_to_grid(spec, [phone, None])),
             run_python(spec, x, missing=2)),
            ("nophone", run_python(spec, sensors_to_grid(spec, [None, watch])),
             run_python(spec, x, missing=1))):
        np.testing.assert_array_equal(ref.scores, same.scores, err_msg=what)
        assert np.abs(sc[what] - ref.scores).max() <= step + 1e-9, what
        exact = (sc[what] == ref.scores).all(axis=1)
        assert exact.mean() >= 0.9, what
        assert (np.array(top[what])[exact] == ref.predictions[exact]).all(), what
    return grid, sc


@pytest.mark.parametrize("watch_block", ["spectral", "raw"])
def test_classify_sensors_takes_each_sensor_at_its_rate(tmp_path, watch_block):
    # native-rate buffers through the host build under ASan/UBSan: _classify_sensors equals,
    # bit for bit, <name>_classify (what verify feeds) on the grid window whose every other
    # frame is the watch's buffer (both sensors, watch NULL, phone NULL); the Python twin of
    # the native buffers (sensors_to_grid) equals the twin of the grid window bit for bit,
    # and the C's scores are the twin's within one int8 output step (f32 DSP: C and numpy
    # features differ within the blocks' tolerances, so a window's int8 input can round the
    # other way), with the same top class wherever the scores are identical
    spec, x = _spec(watch_block)
    pkg = tmp_path / "pkg"
    deploy_c(spec, pkg)
    header = (pkg / "fus.h").read_text()
    assert "#define FUS_WATCH_WINDOW_SAMPLES 50" in header
    assert "#define FUS_PHONE_WINDOW_SAMPLES 100" in header
    assert "#define FUS_WATCH_DECIMATION 2" in header
    meta = load_manifest(pkg)
    assert [(s["name"], s["rate_hz"], s["window_samples"]) for s in meta["sensors"]] == \
        [("phone", 50.0, 100), ("watch", 25.0, 50)]
    grid, sc = native_rates_against_the_twin(pkg, spec, x, tmp_path)
    assert len(set(grid.predictions.tolist())) > 1
    # the watch matters: the phone-only answers differ somewhere
    assert not np.array_equal(sc["nowatch"], sc["both"])


STREAM_HARNESS = r"""
#include <stdio.h>
#include <stdlib.h>
#include "fus.h"

#define CHUNK 38u
static float phone[CHUNK * 3u];
static float watch[CHUNK / 2u * 3u];
static float grid[CHUNK * FUS_CHANNELS];
static fus_event_t events[8];

int main(int argc, char **argv)
{
    FILE *fp = fopen(argv[1], "rb");
    FILE *fw = fopen(argv[2], "rb");
    FILE *fg = fopen(argv[3], "rb");
    int on_grid = argv[4][0] == 'g';
    size_t got;
    uint32_t missing = 99u;
    int32_t k, i, total = 0;
    (void)argc;
    fus_stream_init();
    if (fus_stream_push_sensors(phone, watch, 37u, events, 8u, &missing) != -2) { return 6; }
    while ((got = fread(phone, sizeof phone[0] * 3u, CHUNK, fp)) > 0) {
        if (fread(watch, sizeof watch[0] * 3u, got / 2u, fw) != got / 2u) { return 4; }
        if (fread(grid, sizeof grid[0] * FUS_CHANNELS, got, fg) != got) { return 4; }
        k = on_grid ? fus_stream_push(grid, (uint32_t)got, events, 8u)
                    : fus_stream_push_sensors(phone, watch, (uint32_t)got, events, 8u,
                                              &missing);
        if (k < 0 || k > 8) { return 5; }
""" + H.PRINT_EVENTS + r"""
        total += k;
    }
    printf("missing %u total %d\n", missing, (int)total);
    fclose(fp);
    fclose(fw);
    fclose(fg);
    return 0;
}
"""


def test_stream_push_sensors_takes_each_sensor_at_its_rate(tmp_path):
    # pushes of 38 grid frames (19 watch samples) through _stream_push_sensors give, bit for
    # bit, the detections of _stream_push on the grid recording the C assembles (each watch
    # sample held for 2 frames) and the Python stream twin's on that recording (labels and
    # times of every detection; scores within 1 of 255: f32 DSP, see above); a push of 37
    # frames (not a multiple of 2) is refused with -2
    from kiloml.deploy.stream import run_stream

    spec, x = _spec()
    spec = H.fixed_stream(spec, 500.0)
    pkg = tmp_path / "pkg"
    deploy_c(spec, pkg)
    assert "#define FUS_STREAM_SENSORS_MULTIPLE 2u" in (pkg / "fus.h").read_text()
    rec = x.reshape(-1, 6)
    phone, watch = rec[:, :3], rec[::2, 3:]
    held = sensors_to_grid(spec, [phone, watch])
    assert not np.array_equal(held, rec)   # the odd frames' watch values are held samples
    phone.astype("<f4").tofile(tmp_path / "p.bin")
    watch.astype("<f4").tofile(tmp_path / "w.bin")
    held.astype("<f4").tofile(tmp_path / "g.bin")
    exe = build_host_exe(pkg, load_manifest(pkg), tmp_path / "h.c", STREAM_HARNESS,
                         sanitize=True)
    out = {}
    for mode in ("sensors", "grid"):
        r = subprocess.run([str(exe), *(str(tmp_path / f) for f in ("p.bin", "w.bin", "g.bin")),
                            mode], capture_output=True, text=True)
        assert r.returncode == 0, (r.returncode, r.stderr)
        out[mode] = r.stdout
    got = H.stream_events(out["sensors"])
    assert got == H.stream_events(out["grid"])
    want, _ = run_stream(spec, held, spec.stream)
    assert [(e[0], e[2]) for e in got] == [(LABELS.index(d.label), d.sample) for d in want]
    assert max(abs(e[1] - d.score) for e, d in zip(got, want)) <= 1
    assert len(want) > 3
    tail = next(ln for ln in out["sensors"].splitlines() if ln.startswith("missing")).split()
    assert tail[1] == "0" and int(tail[3]) == len(want)


def test_multi_rate_package_cross_compiles_for_the_nano33ble(tmp_path):
    # the C package and the Arduino library (IMU sketch: the gyroscope's buffer takes one
    # frame in 2) with the nano33ble core's flags and -Wall -Wextra -Wconversion -Werror
    from kiloml.deploy.arduino import deploy_arduino

    spec, _ = _spec()
    pkg = tmp_path / "pkg"
    deploy_c(spec, pkg)
    flags, kernels = H.CORES["cortex-m4f-softfp"]
    sources, includes = H.package_sources(pkg, kernels)
    H.compile_objects(H.need("arm-none-eabi-gcc"), flags, sources, [pkg, *includes],
                      tmp_path / "o")
    block = _block(names=("accel", "gyro"))
    spec = replace(spec, block=block, sensors=(("accel", 3), ("gyro", 3)))
    lib = deploy_arduino(spec, tmp_path / "Fus").path
    sketch = next(lib.glob("examples/*/*.ino")).read_text()
    assert "static float gyro_frames[FUS_GYRO_WINDOW_SAMPLES * 3];" in sketch
    assert "if (tick % FUS_GYRO_DECIMATION == 0u) {" in sketch
    src = lib / "src"
    sources = sorted(src.rglob("*.c"))
    H.compile_objects(H.need("arm-none-eabi-gcc"), flags, sources,
                      sorted({p.parent for p in sources} | {src}), tmp_path / "o2")


def test_sensors_must_match_the_blocks_rates(tmp_path):
    spec, _ = _spec()
    with pytest.raises(KilomlError, match="run at their own rates; the package's sensors must"):
        deploy_c(replace(spec, sensors=(("watch", 3), ("phone", 3))), tmp_path / "a")
    assert not (tmp_path / "a").exists()
    with pytest.raises(KilomlError, match="buffer"):
        sensors_to_grid(spec, [np.zeros((1, 100, 3)), np.zeros((1, 100, 3))])


def test_single_rate_packages_have_no_rate_api(tmp_path):
    # a single-rate multi-sensor package keeps the window-rate API and manifest (the
    # generated files were compared byte for byte with the previous version, see
    # docs/fusion.md)
    spec, _ = _spec()
    block = make_block("sensors", params={"sensors": [
        {"name": "phone", "axes": 3, "block": "raw", "params": {}},
        {"name": "watch", "axes": 3, "block": "raw", "params": {"scale": 0.5}}]})
    x = np.random.default_rng(1).standard_normal((6, FRAMES, 6)).astype(np.float32)
    g = H.dense_graph(apply_block(block, x), len(LABELS))
    spec = replace(spec, graph=g, block=block, normalizer={"kind": "none", "mean": 0.0,
                                                          "std": 1.0})
    deploy_c(spec, tmp_path / "p")
    header = (tmp_path / "p" / "fus.h").read_text()
    assert "DECIMATION" not in header and "_PHONE_WINDOW_SAMPLES" not in header
    assert "sensors" not in load_manifest(tmp_path / "p")


def test_imu_sketch_fills_a_slower_sensor_one_frame_in_its_decimation(tmp_path):
    """The Arduino IMU sketch in the simulated board (tests/deploy/test_deploy_arduino.py)
    with the accelerometer at half the 25 Hz grid (12.5 Hz, its spectral block on 25
    samples) and the gyroscope at 25 Hz (silent on the board: missing): each window printed
    is the host library's answer for the accelerometer's last 25 frames of even index (the
    sketch's tick), i.e. _classify_sensors with the accelerometer at its own rate."""
    from test_deploy_arduino import _simulate, _sketch

    from kiloml.deploy.arduino import deploy_arduino
    from kiloml.deploy.run import run_host

    block = make_block("sensors", params={"sensors": [
        {"name": "accel", "axes": 3, "block": "spectral", "decimate": 2,
         "params": dict(sample_rate=12.5, fft_length=32, band_edges_hz=[0.0, 1.0, 3.0, 6.25])},
        {"name": "gyro", "axes": 3, "block": "raw", "params": {"scale": 0.01}}]})
    x = H.imu_windows(per_label=6)
    x6 = np.concatenate([x, x[:, :, ::-1] * 0.5], axis=2)
    norm = Normalizer.fit("feature", apply_block(block, x6))
    g = H.dense_graph(norm(apply_block(block, x6)), len(H.IMU_LABELS))
    spec = replace(H.imu_spec(board="pico"), graph=g, block=block, channels=6,
                   normalizer=norm.state(), sensors=(("accel", 3), ("gyro", 3)))
    lib = deploy_arduino(spec, tmp_path / "Fused").path
    sketch = _sketch(lib).read_text()
    assert "if (tick % WAND_ACCEL_DECIMATION == 0u) {" in sketch
    frames = H.imu_windows().reshape(-1, 3)[:160]
    printed = _simulate(lib, frames, "imu", 40000, tmp_path)
    natives, since = [], 0
    for k in range(1, len(frames) + 1):
        since += 1
        if since >= 12 and k >= H.IMU_FRAMES:
            since = 0
            natives.append(frames[:k][0::2][-(H.IMU_FRAMES // 2):])
    windows = sensors_to_grid(spec, [np.stack(natives), None])
    want = run_host(lib, windows, features=False)
    results = printed[0::2]
    assert len(results) == len(windows) >= 5
    assert all(" ".join(m) == "(gyro missing: classified with its channels as zeros)"
               for m in printed[1::2])
    assert [p[0] for p in results] == [H.IMU_LABELS[k] for k in want.predictions]
    assert [p[1] for p in results] == [f"{want.scores[i, k]:.3f}"
                                       for i, k in enumerate(want.predictions)]
    # the odd frames would give other answers somewhere (the test can tell)
    odd = sensors_to_grid(spec, [np.stack([frames[:k][1::2][-(H.IMU_FRAMES // 2):] for k in
                                           range(H.IMU_FRAMES, 161, 12)]), None])
    assert len(odd) == len(windows)
    assert not np.array_equal(run_host(lib, odd, features=False).scores, want.scores)
