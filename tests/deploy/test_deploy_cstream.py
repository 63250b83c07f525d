"""The C packages' streaming API (kiloml.deploy.cstream): its decisions equal the Python
twin's (kiloml.deploy.stream.StreamPipeline, itself checked against the window-by-window path
in test_deploy_stream.py) event for event, on the host (ASan/UBSan too) and in the emulator;
its static RAM is what the header says."""

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from deployhelp import (compile_objects, imu_spec, imu_windows, kws_spec, need,  # noqa: E402
                        package_sources, speech_windows)
from kiloml.deploy.c import deploy_c  # noqa: E402
from kiloml.deploy.stream import (run_stream, run_stream_emulator,  # noqa: E402
                                  run_stream_host)
from kiloml.train.streaming import StreamSettings  # noqa: E402

# low bar so the seeded random model makes decisions to compare
LOW = StreamSettings(slices_per_window=5, average_window_ms=400, detection_threshold=40,
                     suppression_ms=300, minimum_count=1)
# fractional milliseconds (the C's integer constants), 4 slices (stride not a frame multiple)
ODD = StreamSettings(slices_per_window=4, average_window_ms=733.7, detection_threshold=35,
                     suppression_ms=250.5, minimum_count=2)

# the streaming preset's case: 4 slices, stride rounded to 12 frame steps (3840 samples)
ALIGNED = LOW.model_copy(update={"slices_per_window": 4, "align_stride": True})
STREAM_PRESET = "mlperf-kws-stream"


def _stream(seconds: float, seed: int = 3) -> np.ndarray:
    """Speech clips cut at random lengths, end to end, over low noise."""
    w = speech_windows()
    rng = np.random.default_rng(seed)
    parts, n = [], 0
    while n < seconds * 16000:
        p = w[int(rng.integers(len(w))), :int(rng.integers(4000, 16000))]
        parts.append(p)
        n += len(p)
    x = np.concatenate(parts)[:int(seconds * 16000)].astype(np.int32)
    x = x + np.round(rng.standard_normal(x.size) * 30).astype(np.int32)
    return np.clip(x, -32768, 32767).astype(np.int16)


def _gappy(seconds: float, seed: int = 5) -> np.ndarray:
    """Speech clips separated by 1-5 s of quiet noise (the wake gate's idle stretches)."""
    w = speech_windows()
    rng = np.random.default_rng(seed)
    parts, n = [], 0
    while n < seconds * 16000:
        gap = np.round(rng.standard_normal(int(rng.integers(16000, 80000))) * 40)
        clip = w[int(rng.integers(len(w))), :int(rng.integers(8000, 16000))]
        parts += [gap.astype(np.int32), clip.astype(np.int32)]
        n += len(gap) + len(clip)
    x = np.concatenate(parts)[:int(seconds * 16000)]
    return np.clip(x, -32768, 32767).astype(np.int16)


WAKE = LOW.model_copy(update={"wake": True, "wake_ratio": 3.0, "wake_min_energy": 400,
                              "wake_hold_ms": 600, "wake_floor_shift": 3})


def _package(tmp_path, spec, settings, name="pkg"):
    spec = dataclasses.replace(spec, stream=settings)
    deploy_c(spec, tmp_path / name)
    return spec, tmp_path / name


def _key(events):
    return [(d.sample, d.label, d.score) for d in events]


@pytest.mark.parametrize("variant,settings", [("q15", LOW), ("q31", ODD), ("f32", LOW)])
def test_c_stream_equals_the_twin_on_minutes(tmp_path, variant, settings):
    spec, pkg = _package(tmp_path, kws_spec(variant, direct=True), settings)
    x = _stream(180.0)
    twin, pipe = run_stream(spec, x, settings)
    c = run_stream_host(pkg, x, block=1237)
    assert len(twin) >= 30, len(twin)
    assert _key(c) == _key(twin)
    assert [d.t_s for d in c] == [d.t_s for d in twin]
    assert pipe.windows == (len(x) - 16000) // pipe.stride + 1


@pytest.mark.parametrize("variant", ["q15", "q31"])
def test_stream_preset_c_equals_the_twin(tmp_path, variant):
    """mlperf-kws-stream, frame-aligned stride: the C keeps each frame's output row (D is
    constant) and decides as the twin, event for event; sanitizer-clean on odd push sizes."""
    spec, pkg = _package(tmp_path, kws_spec(variant, direct=True, preset=STREAM_PRESET),
                         ALIGNED)
    x = _stream(150.0, seed=4)
    twin, pipe = run_stream(spec, x, ALIGNED)
    assert pipe.stride == 3840
    assert len(twin) >= 20, len(twin)
    c = run_stream_host(pkg, x, block=1237)
    assert _key(c) == _key(twin)
    assert "kws_fc_row" in (pkg / "kws.c").read_text() or "_fc_row" in \
        "".join(f.read_text() for f in pkg.glob("*.c"))
    short = x[:16000 * 10]
    want = _key(run_stream(spec, short, ALIGNED)[0])
    assert _key(run_stream_host(pkg, short, block=3, sanitize=True)) == want


def test_c_stream_is_sanitizer_clean_and_ignores_push_sizes(tmp_path):
    spec, pkg = _package(tmp_path, kws_spec("q15", direct=True), ODD)
    x = _stream(12.0, seed=7)
    twin, _ = run_stream(spec, x, ODD)
    assert len(twin) >= 3
    for block in (1, 3200, 20000):
        assert _key(run_stream_host(pkg, x, block=block, sanitize=True)) == _key(twin), block


def test_c_stream_imu(tmp_path):
    settings = LOW.model_copy(update={"average_window_ms": 1000})
    spec, pkg = _package(tmp_path, imu_spec(), settings)
    x = np.concatenate(list(imu_windows())).astype(np.float32)
    twin, _ = run_stream(spec, x, settings)
    assert len(twin) >= 10
    assert _key(run_stream_host(pkg, x, block=7, sanitize=True)) == _key(twin)


@pytest.mark.parametrize("board,seconds,settings,preset",
                         [("nano33ble", 8.0, WAKE, "mlperf-kws"),
                          ("pico", 3.0, LOW, "mlperf-kws"),
                          ("nano33ble", 4.0, ALIGNED, STREAM_PRESET)])
def test_c_stream_in_the_emulator_equals_the_host(tmp_path, board, seconds, settings, preset):
    spec, pkg = _package(tmp_path, kws_spec("q15", direct=True, board=board, preset=preset),
                         settings)
    x = _gappy(seconds, seed=2) if settings.wake else _stream(seconds, seed=11)
    host = run_stream_host(pkg, x, block=500)
    assert len(host) >= 2
    assert _key(run_stream_emulator(pkg, x, block=333)) == _key(host)


@pytest.mark.parametrize("settings,preset", [(ODD, "mlperf-kws"), (WAKE, "mlperf-kws"),
                                            (ALIGNED, STREAM_PRESET)])
def test_stream_ram_is_what_the_header_says(tmp_path, settings, preset):
    spec, pkg = _package(tmp_path, kws_spec("q15", direct=True, preset=preset), settings,
                         name="kws")
    header = (pkg / "kws.h").read_text()
    want = int(re.search(r"#define KWS_STREAM_RAM_BYTES (\d+)", header).group(1))
    sources, includes = package_sources(pkg, "portable")
    compile_objects(need("gcc"), ["-O2"], [pkg / "kws.c"], includes, tmp_path)
    nm = subprocess.run([need("nm"), "-S", "--size-sort", str(tmp_path / "kws.o")],
                        capture_output=True, text=True, check=True).stdout
    names = re.compile(r"kws_(ring|window|ring_at|position|next_end|rc_\w+|fc_\w+|f0_\w+|wake_\w+|"
                       r"frames_computed)(\.\d+)?$")
    got = sum(int(f[1], 16) for f in (line.split() for line in nm.splitlines())
              if len(f) == 4 and f[2] in "bBdD" and names.match(f[3]))
    assert got == want


def test_incremental_features_cost_fewer_dsp_cycles(tmp_path):
    """At 5 slices the stride is 10 frame steps: 11 of 49 frames computed per stride (plus
    the per-window log and DCT of all 49), against all 49 for the whole window."""
    from kiloml.deploy.stream import stream_cycles

    settings = StreamSettings(slices_per_window=5)
    spec, pkg = _package(tmp_path, kws_spec("q15", direct=True), settings)
    r = stream_cycles(pkg, _stream(4.0, seed=2), windows=3)
    assert r["incremental"]
    assert r["stream"]["dsp"] < r["full"]["dsp"] / 2


@pytest.mark.parametrize("variant", ["q15", "f32"])
def test_wake_gate_c_equals_the_twin_window_for_window(tmp_path, variant):
    """Minutes of speech between quiet stretches: the gate closes and opens, and the C skips
    and decides exactly as the twin (events, windows seen and let through)."""
    spec, pkg = _package(tmp_path, kws_spec(variant, direct=True), WAKE)
    x = _gappy(240.0)
    twin, pipe = run_stream(spec, x, WAKE)
    stats: dict = {}
    c = run_stream_host(pkg, x, block=977, stats=stats)
    seen, passed = pipe.wake_stats()
    assert seen == pipe.windows == (len(x) - 16000) // pipe.stride + 1
    assert 0.15 * seen < passed < 0.8 * seen, (passed, seen)
    assert stats == {"seen": seen, "passed": passed}
    assert len(twin) >= 20, len(twin)
    assert _key(c) == _key(twin)
    # the gate changes the decisions (skipped windows are not smoothed), so the test is not
    # the ungated stream's
    assert _key(run_stream(spec, x, LOW)[0]) != _key(twin)
    # and under ASan/UBSan with odd pushes, on a shorter piece
    short = x[:16000 * 30]
    want, _ = run_stream(spec, short, WAKE)
    assert _key(run_stream_host(pkg, short, block=1, sanitize=True)) == _key(want)


def test_wake_gate_decisions_by_hand():
    """The gate on energies whose decisions are worked out by hand: ratio 2, least energy
    100, hold 2 windows (500 ms at a 250 ms stride), the floor moves 1/2 of the gap."""
    from kiloml.train.streaming import WakeGate, stride_energy

    st = StreamSettings(wake=True, wake_ratio=2.0, wake_min_energy=100, wake_hold_ms=500,
                        wake_floor_shift=1)
    g = WakeGate(st, stride=4000, rate=16000)
    assert g.hold_strides == 2
    # e (floor after): 80 first, open (80); 500 > 2 x 80 wakes (290); 500 held (395); 500
    # held (447); 300 shut (374); 90 under 100 (232); 200 < 2 x 232 shut (216: a floor that
    # dropped to 90 at once would have woken here); 1000 wakes (608); 200 held (404); 150
    # held (277); 150 shut
    energies = [80, 500, 500, 500, 300, 90, 200, 1000, 200, 150, 150]
    want = [True, True, True, True, False, False, False, True, True, True, False]
    assert [g.step(e) for e in energies] == want
    assert g.floor == 277 - ((277 - 150) >> 1)
    assert (g.seen, g.passed) == (11, 7)
    assert stride_energy(np.array([3, -4, 0], np.int16)) == 8      # (9 + 16) // 3


def _still_and_moving(seconds: float, seed: int = 8) -> np.ndarray:
    """IMU (n, 3) milli-g: gesture windows between 2-6 s of a still sensor (gravity on one
    axis, 2 milli-g noise): the IMU gate's idle stretches."""
    w = imu_windows()
    rng = np.random.default_rng(seed)
    parts, n = [], 0
    while n < seconds * 25:
        k = int(rng.integers(50, 150))
        still = np.array([0.0, 0.0, 1000.0]) + rng.standard_normal((k, 3)) * 2
        parts += [still.astype(np.float32), w[int(rng.integers(len(w)))].astype(np.float32)]
        n += len(parts[-2]) + len(parts[-1])
    return np.concatenate(parts)[:int(seconds * 25)]


IMU_WAKE = LOW.model_copy(update={"average_window_ms": 1000, "wake": True, "wake_ratio": 4.0,
                                  "wake_min_energy": 50, "wake_hold_ms": 1000,
                                  "wake_floor_shift": 3})


def test_imu_wake_gate_c_equals_the_twin(tmp_path):
    """Half an hour of an IMU stream, still between gestures: the motion-variance gate closes
    and opens, the C skips and decides exactly as the twin (events, windows seen and let
    through), sanitizer-clean."""
    from kiloml.train.streaming import motion_energy

    spec, pkg = _package(tmp_path, imu_spec(), IMU_WAKE)
    x = _still_and_moving(1800.0)
    twin, pipe = run_stream(spec, x, IMU_WAKE)
    seen, passed = pipe.wake_stats()
    assert seen == pipe.windows and 0.2 * seen < passed < 0.8 * seen, (seen, passed)
    assert len(twin) >= 10, len(twin)
    stats = {}
    c = run_stream_host(pkg, x, block=7, sanitize=True, stats=stats)
    assert _key(c) == _key(twin)
    assert (stats["seen"], stats["passed"]) == (seen, passed)
    # the energy by hand: per-channel population variance, summed, floored
    q = np.trunc(x[:12].astype(np.float64))
    assert motion_energy(x[:12], 1.0) == int(sum(
        (12 * (q[:, c] ** 2).sum() - q[:, c].sum() ** 2) // 144 for c in range(3)))


def test_imu_wake_gate_in_the_emulator_equals_the_twin(tmp_path):
    """The motion gate's float32 scaling and int64 sums on the Cortex-M4F (nano33ble) decide
    as the twin."""
    spec, pkg = _package(tmp_path, imu_spec(), IMU_WAKE)
    x = _still_and_moving(240.0, seed=3)
    twin, pipe = run_stream(spec, x, IMU_WAKE)
    seen, passed = pipe.wake_stats()
    assert passed < seen and len(twin) >= 2, (seen, passed, len(twin))
    assert _key(run_stream_emulator(pkg, x, block=33)) == _key(twin)
