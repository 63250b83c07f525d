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


@pytest.mark.parametrize("board,seconds", [("nano33ble", 8.0), ("pico", 3.0)])
def test_c_stream_in_the_emulator_equals_the_host(tmp_path, board, seconds):
    spec, pkg = _package(tmp_path, kws_spec("q15", direct=True, board=board), LOW)
    x = _stream(seconds, seed=11)
    host = run_stream_host(pkg, x, block=500)
    assert len(host) >= 2
    assert _key(run_stream_emulator(pkg, x, block=333)) == _key(host)


def test_stream_ram_is_what_the_header_says(tmp_path):
    spec, pkg = _package(tmp_path, kws_spec("q15", direct=True), ODD, name="kws")
    header = (pkg / "kws.h").read_text()
    want = int(re.search(r"#define KWS_STREAM_RAM_BYTES (\d+)", header).group(1))
    sources, includes = package_sources(pkg, "portable")
    compile_objects(need("gcc"), ["-O2"], [pkg / "kws.c"], includes, tmp_path)
    nm = subprocess.run([need("nm"), "-S", "--size-sort", str(tmp_path / "kws.o")],
                        capture_output=True, text=True, check=True).stdout
    names = re.compile(r"kws_(ring|window|ring_at|position|next_end|rc_\w+|fc_\w+|f0_\w+|"
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
