"""Multi-sensor C API: ``<name>_classify_sensors`` takes one buffer per sensor; a NULL buffer is
a missing sensor (zeros, flagged). Checked against the Python twin of the deployed pipeline
(run_python) on host builds under ASan/UBSan, and cross-compiled for the Nano 33 BLE core."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import deployhelp as H  # noqa: E402

from kiloml.deploy import DeploySpec  # noqa: E402
from kiloml.deploy.c import deploy_c  # noqa: E402
from kiloml.deploy.run import build_host_exe, load_manifest, run_python  # noqa: E402
from kiloml.dsp import make_block  # noqa: E402
from kiloml.dsp.apply import apply_block  # noqa: E402
from kiloml.errors import KilomlError  # noqa: E402
from kiloml.train.normalize import Normalizer  # noqa: E402

FRAMES = 50
LABELS = ["still", "walk", "turn"]
SENSORS = (("phone", 3), ("watch", 3))

HARNESS = r"""
#include <stdio.h>
#include <stdlib.h>
#include "fus.h"

static float phone[FUS_WINDOW_SAMPLES * FUS_PHONE_AXES];
static float watch[FUS_WINDOW_SAMPLES * FUS_WATCH_AXES];
static float raw[FUS_INPUT_SIZE];
static float scores[FUS_NUM_CLASSES];

int main(int argc, char **argv)
{
    FILE *fi = fopen(argv[1], "rb");
    long n = atol(argv[2]), i;
    uint32_t f, a, missing = 99u;
    int top;
    (void)argc;
    for (i = 0; i < n; ++i) {
        if (fread(raw, sizeof raw[0], FUS_INPUT_SIZE, fi) != FUS_INPUT_SIZE) { return 4; }
        for (f = 0; f < FUS_WINDOW_SAMPLES; ++f) {
            for (a = 0; a < 3u; ++a) {
                phone[f * 3u + a] = raw[f * FUS_CHANNELS + FUS_PHONE_FIRST_CHANNEL + a];
                watch[f * 3u + a] = raw[f * FUS_CHANNELS + FUS_WATCH_FIRST_CHANNEL + a];
            }
        }
        top = fus_classify_sensors(phone, watch, scores, &missing);
        printf("both %d %u %.9g\n", top, missing, (double)scores[0]);
        top = fus_classify_sensors(phone, 0, scores, &missing);
        printf("nowatch %d %u %.9g\n", top, missing, (double)scores[0]);
        top = fus_classify_sensors(0, watch, scores, 0);
        printf("nophone %d %.9g\n", top, (double)scores[0]);
    }
    fclose(fi);
    return 0;
}
"""


def _spec(board="nano33ble") -> tuple[DeploySpec, np.ndarray]:
    block = make_block("spectral", params=dict(sample_rate=25.0, fft_length=32,
                                               band_edges_hz=[0.0, 1.0, 3.0, 6.0, 12.5]))
    rng = np.random.default_rng(3)
    t = np.arange(FRAMES) / 25.0
    wins = []
    for k in range(24):
        f = 0.5 + (k % 3)
        base = np.sin(2 * np.pi * f * t)[:, None] * rng.uniform(0.5, 2, 6)
        wins.append(base + 0.3 * rng.standard_normal((FRAMES, 6)))
    x = np.array(wins, np.float32)
    train = np.concatenate([x, x.copy()])
    train[24:, :, 3:] = 0.0   # what sensor dropout shows the model
    norm = Normalizer.fit("feature", apply_block(block, train))
    g = H.dense_graph(norm(apply_block(block, train)), len(LABELS))
    return DeploySpec("fus", g, block, FRAMES, 6, 25.0, 2000.0, LABELS,
                      normalizer=norm.state(), layout="flat", dsp_variant="f32", board=board,
                      sensors=SENSORS), x


def test_classify_sensors_matches_python_and_zeroes_missing_sensors(tmp_path):
    spec, x = _spec()
    pkg = tmp_path / "pkg"
    deploy_c(spec, pkg)
    header = (pkg / "fus.h").read_text()
    assert "int fus_classify_sensors(const fus_sample_t *phone, const fus_sample_t *watch, " \
        "float *scores, uint32_t *missing);" in header
    exe = build_host_exe(pkg, load_manifest(pkg), tmp_path / "main.c", HARNESS, sanitize=True)
    x.tofile(tmp_path / "in.bin")
    r = subprocess.run([str(exe), str(tmp_path / "in.bin"), str(len(x))], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split("\n")
    both = [ln.split() for ln in lines if ln.startswith("both")]
    nowatch = [ln.split() for ln in lines if ln.startswith("nowatch")]
    nophone = [ln.split() for ln in lines if ln.startswith("nophone")]
    zw, zp = x.copy(), x.copy()
    zw[:, :, 3:] = 0.0
    zp[:, :, :3] = 0.0
    for rows, windows in ((both, x), (nowatch, zw), (nophone, zp)):
        ref = run_python(spec, windows)
        assert [int(r[1]) for r in rows] == list(ref.predictions)
        assert [float(r[-1]) for r in rows] == pytest.approx(list(ref.scores[:, 0]), abs=0)
    assert {r[2] for r in both} == {"0"} and {r[2] for r in nowatch} == {"2"}
    # the missing sensor matters: some predictions change when the watch is gone
    assert [r[1] for r in both] != [r[1] for r in nophone] or \
        [r[-1] for r in both] != [r[-1] for r in nowatch]


def test_sensors_api_cross_compiles_for_the_nano33ble(tmp_path):
    spec, _ = _spec()
    pkg = tmp_path / "pkg"
    deploy_c(spec, pkg)
    flags, kernels = H.CORES["cortex-m4f-softfp"]
    sources, includes = H.package_sources(pkg, kernels)
    H.compile_objects(H.need("arm-none-eabi-gcc"), flags, sources, [pkg, *includes],
                      tmp_path / "o")


def test_sensors_must_add_up_to_the_channels(tmp_path):
    spec, _ = _spec()
    from dataclasses import replace

    with pytest.raises(KilomlError, match="sensors .* axes adding up to the 6 channels"):
        deploy_c(replace(spec, sensors=(("phone", 3), ("watch", 2))), tmp_path / "a")
    assert not (tmp_path / "a").exists()


def test_block_per_sensor_deploys_and_the_emulator_gives_the_python_predictions(tmp_path):
    # phone: spectral features, watch: its raw window; one composite DSP block (kiloml.dsp.
    # sensors) in the package; the nano33ble image in the emulator and the host build under
    # ASan/UBSan classify every window (with both sensors, and with the watch zeroed as
    # _classify_sensors does for a NULL buffer) as the Python twin does
    from dataclasses import replace

    from kiloml.deploy.run import run_emulator, run_host

    spec, x = _spec()
    block = make_block("sensors", params={"sensors": [
        {"name": "phone", "axes": 3, "block": "spectral",
         "params": dict(sample_rate=25.0, fft_length=32, band_edges_hz=[0.0, 1.0, 3.0, 6.0,
                                                                         12.5])},
        {"name": "watch", "axes": 3, "block": "raw", "params": {"scale": 0.5}}]})
    train = np.concatenate([x, x.copy()])
    train[24:, :, 3:] = 0.0
    norm = Normalizer.fit("feature", apply_block(block, train))
    g = H.dense_graph(norm(apply_block(block, train)), len(LABELS))
    spec = replace(spec, graph=g, block=block, normalizer=norm.state())
    pkg = tmp_path / "pkg"
    deploy_c(spec, pkg)
    assert (pkg / "dsp" / "fus_dsp_phone.c").is_file() and (pkg / "dsp" / "fus_dsp_watch.c") \
        .is_file()
    zw = x.copy()
    zw[:, :, 3:] = 0.0
    windows = np.concatenate([x, zw])
    ref = run_python(spec, windows)
    assert len(set(ref.predictions.tolist())) > 1
    for dev in (run_emulator(pkg, windows, "nano33ble", timeout_s=900),
                run_host(pkg, windows, sanitize=True)):
        assert list(dev.predictions) == list(ref.predictions)
        np.testing.assert_array_equal(dev.scores, ref.scores)
        assert np.abs(dev.features - ref.features).max() <= 1e-4 * np.abs(ref.features).max()


def test_block_per_sensor_arduino_library_cross_compiles(tmp_path):
    # single-board fusion with a block per sensor (accelerometer spectral, gyroscope raw):
    # the Arduino library holds every part's C and its sketch feeds one buffer per sensor
    from dataclasses import replace

    from kiloml.deploy.arduino import deploy_arduino

    spec, x = _spec()
    block = make_block("sensors", params={"sensors": [
        {"name": "accel", "axes": 3, "block": "spectral",
         "params": dict(sample_rate=25.0, fft_length=32, band_edges_hz=[0.0, 1.0, 3.0, 6.0,
                                                                         12.5])},
        {"name": "gyro", "axes": 3, "block": "raw", "params": {"flatten": True}}]})
    norm = Normalizer.fit("feature", apply_block(block, x))
    g = H.dense_graph(norm(apply_block(block, x)), len(LABELS))
    spec = replace(spec, graph=g, block=block, normalizer=norm.state(),
                   sensors=(("accel", 3), ("gyro", 3)))
    lib = deploy_arduino(spec, tmp_path / "Fus").path
    sketch = next(lib.glob("examples/*/*.ino")).read_text()
    assert "fus_classify_sensors(accel_frames, gyro_frames_age <" in sketch
    src = lib / "src"
    sources = sorted(src.rglob("*.c"))
    assert {"fus_dsp.c", "fus_dsp_accel.c", "fus_dsp_gyro.c"} <= {p.name for p in sources}
    flags, _ = H.CORES["cortex-m4f-softfp"]
    H.compile_objects(H.need("arm-none-eabi-gcc"), flags, sources,
                      sorted({p.parent for p in sources} | {src}), tmp_path / "o")


STREAM_HARNESS = r"""
#include <stdio.h>
#include <stdlib.h>
#include "fus.h"

#define CHUNK 37u
static float raw[CHUNK * FUS_CHANNELS];
static float phone[CHUNK * 3u];
static float watch[CHUNK * 3u];
static fus_event_t events[8];

int main(int argc, char **argv)
{
    FILE *fi = fopen(argv[1], "rb");
    int nowatch = argv[2][0] == 'n';
    size_t got;
    uint32_t f, a, missing = 99u;
    int32_t k, i, total = 0;
    (void)argc;
    fus_stream_init();
    while ((got = fread(raw, sizeof raw[0] * FUS_CHANNELS, CHUNK, fi)) > 0) {
        for (f = 0; f < (uint32_t)got; ++f) {
            for (a = 0; a < 3u; ++a) {
                phone[f * 3u + a] = raw[f * FUS_CHANNELS + FUS_PHONE_FIRST_CHANNEL + a];
                watch[f * 3u + a] = raw[f * FUS_CHANNELS + FUS_WATCH_FIRST_CHANNEL + a];
            }
        }
        k = fus_stream_push_sensors(phone, nowatch ? 0 : watch, (uint32_t)got, events, 8u,
                                    &missing);
        if (k < 0 || k > 8) { return 5; }
""" + H.PRINT_EVENTS + r"""
        total += k;
    }
    printf("missing %u total %d\n", missing, (int)total);
    fclose(fi);
    return 0;
}
"""


def test_stream_push_sensors_detects_as_the_python_stream(tmp_path):
    # <name>_stream_push_sensors (one buffer per sensor, pushed in pieces of 37 frames) gives
    # the Python twin's detections (kiloml.deploy.stream.run_stream) on the interleaved
    # recording, and with the watch NULL those of the recording with the watch zeroed
    from kiloml.deploy.stream import run_stream

    spec, x = _spec()
    spec = H.fixed_stream(spec, 500.0)
    pkg = tmp_path / "pkg"
    deploy_c(spec, pkg)
    assert "int32_t fus_stream_push_sensors(const fus_sample_t *phone, " in \
        (pkg / "fus.h").read_text()
    rec = x.reshape(-1, 6)                         # 24 windows one after the other
    exe = build_host_exe(pkg, load_manifest(pkg), tmp_path / "h.c", STREAM_HARNESS,
                         sanitize=True)
    rec.astype("<f4").tofile(tmp_path / "in.bin")
    zw = rec.copy()
    zw[:, 3:] = 0.0
    for mode, frames, flag in (("both", rec, "0"), ("nowatch", zw, "2")):
        r = subprocess.run([str(exe), str(tmp_path / "in.bin"), mode], capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.split("\n")
        got = H.stream_events(r.stdout)
        want, _ = run_stream(spec, frames, spec.stream)
        assert got == [(LABELS.index(d.label), d.score, d.sample) for d in want]
        assert len(want) > 3
        tail = next(ln for ln in lines if ln.startswith("missing")).split()
        assert tail[1] == flag and int(tail[3]) == len(want)
