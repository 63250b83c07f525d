"""Duty cycle and battery life of the streaming pipeline (kiloml.deploy.stream.stream_duty):
the gate's pass fraction is the twin's, the closed gate costs a few percent of a stride, and
the power and battery figures follow from the measured cycles and boards.toml."""

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from deployhelp import kws_spec, speech_windows  # noqa: E402
from kiloml.deploy.stream import run_stream, stream_duty  # noqa: E402
from kiloml.errors import KilomlError  # noqa: E402
from kiloml.targets.boards import load_boards  # noqa: E402
from kiloml.targets.profile import average_power_mw, battery_days_at, duty_cycle  # noqa: E402
from kiloml.train.streaming import StreamSettings  # noqa: E402


def _mostly_quiet(seconds: float = 60.0) -> np.ndarray:
    """Low noise with a word every 10 s (10 % of the time)."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal(int(seconds * 16000)) * 50
    w = speech_windows()[:12].astype(np.float64)
    for k in range(int(seconds // 10)):
        at = k * 160000 + int(rng.integers(0, 140000))
        x[at:at + 16000] += w[k % len(w)] * 2
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def test_duty_cycle_with_and_without_the_gate():
    st = StreamSettings(wake=True)
    spec = dataclasses.replace(kws_spec("q15", direct=True, board="nano33ble"), stream=st)
    x = _mostly_quiet()
    r = stream_duty(spec, x, battery_mah=500.0)
    # the pass fraction is the streaming twin's own gate over the same recording
    _, pipe = run_stream(spec, x, st)
    assert (r["windows_seen"], r["windows_passed"]) == pipe.wake_stats()
    assert 0.05 < r["passed_fraction"] < 0.5, r["passed_fraction"]
    assert 1 <= r["wakes"] <= r["windows_passed"]
    c = r["cycles"]
    # a closed stride (ring + energy) is a few percent of an active one; waking up after an
    # idle stretch recomputes the whole window (more than an incremental stride)
    assert 0 < c["gate_only"] < 0.05 * c["active"]
    assert c["wake_window"] > c["active"] > c["dsp"] + c["model"] > 0
    # the figures follow from the cycles, the 250 ms stride and boards.toml (by hand)
    b = load_boards()["nano33ble"]
    seen, passed, wakes = r["windows_seen"], r["windows_passed"], r["wakes"]
    gated = (seen * c["gate_only"] + (passed - wakes) * c["active"]
             + wakes * c["wake_window"]) / seen
    assert r["gated"]["cycles_per_stride"] == pytest.approx(gated, abs=2)
    for row, cyc in ((r["always_on"], c["active"]), (r["gated"], gated)):
        duty = cyc / 64e6 / 0.25
        assert row["duty"] == pytest.approx(duty, rel=1e-4)
        power = duty * b.active_power_mw + (1 - duty) * b.idle_power_mw
        assert row["average_power_mw"] == pytest.approx(power, rel=1e-4)
        assert row["battery_days"] == pytest.approx(500 * b.vdd_v / power / 24, abs=0.01)
        assert row["real_time"]
    assert r["gated"]["battery_days"] > 1.5 * r["always_on"]["battery_days"]


def test_power_helpers_and_refusals():
    b = load_boards()["nano33ble"]
    assert duty_cycle(16e6, 0.25, 64e6) == 1.0
    assert duty_cycle(32e6, 0.25, 64e6) == 2.0                    # not real time: said, not capped
    assert average_power_mw(2.0, b) == pytest.approx(b.active_power_mw)   # busy all the time
    assert average_power_mw(0.0, b) == pytest.approx(b.idle_power_mw)
    assert battery_days_at(None, b, 1000) is None
    with pytest.raises(KilomlError, match="needs at least"):
        stream_duty(kws_spec("q15", direct=True), np.zeros(20000, np.int16))
