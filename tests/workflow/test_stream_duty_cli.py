"""``kiloml simulate --stream --duty-cycle`` on an IMU project, through the command line: the
motion wake gate's duty cycle, average power and battery life, checked against the board's
datasheet figures and against a recording with still minutes added."""

from __future__ import annotations

import json

import numpy as np
import pytest

from projhelp import kiloml, wand_project
from kiloml.targets.boards import load_boards

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wand(tmp_path_factory):
    """A trained magic_wand project (2 epochs) and two recordings: the test split's gestures
    back to back, and the same followed by 4 still minutes (a constant reading)."""
    tmp = tmp_path_factory.mktemp("duty")
    root = wand_project(tmp)
    r = kiloml("run", "-q", "--until", "train", cwd=root)
    assert r.returncode == 0, r.stderr
    r = kiloml("data", "stream", "-o", tmp / "busy.npy", "--truth", tmp / "t.csv", cwd=root)
    assert r.returncode == 0, r.stderr
    busy = np.load(tmp / "busy.npy")
    still = np.repeat(busy[-1:], 4 * 60 * 25, axis=0)
    np.save(tmp / "quiet.npy", np.concatenate([busy, still]).astype(busy.dtype))
    return root, tmp


def _duty(root, stream, *extra):
    r = kiloml("simulate", "--stream", stream, "--duty-cycle", "--json", *extra, cwd=root)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["duty_cycle"]


def test_imu_duty_cycle_and_the_motion_gate(wand):
    root, tmp = wand
    busy, quiet = _duty(root, tmp / "busy.npy"), _duty(root, tmp / "quiet.npy")
    b = load_boards().get("nano33ble")
    for d in (busy, quiet):
        assert d["board"] == "nano33ble" and d["clock_hz"] == b.clock_hz
        c = d["cycles"]
        assert 0 < c["gate_only"] < c["active"] and c["dsp"] + c["model"] <= c["active"]
        on = d["always_on"]
        duty = c["active"] / (d["stride_ms"] / 1000.0 * b.clock_hz)
        assert on["duty"] == pytest.approx(duty, rel=1e-3)
        power = duty * b.active_power_mw + (1 - duty) * b.idle_power_mw
        assert on["average_power_mw"] == pytest.approx(power, rel=1e-3)
        assert d["gate_cost"] == pytest.approx(c["gate_only"] / c["active"], rel=1e-3)
    # the still minutes are shut out: the gate lets a smaller part of the strides through
    # and the board lives longer with it than always on; the gestures alone keep it open
    seen_extra = quiet["windows_seen"] - busy["windows_seen"]
    assert seen_extra == pytest.approx(4 * 60 * 1000 / quiet["stride_ms"], abs=2)
    assert quiet["windows_passed"] - busy["windows_passed"] < 0.1 * seen_extra
    assert quiet["passed_fraction"] < busy["passed_fraction"]
    assert quiet["gated"]["battery_days"] > quiet["always_on"]["battery_days"]
    assert quiet["gated"]["duty"] < 0.5 * quiet["always_on"]["duty"]


def test_imu_duty_cycle_text_and_a_too_short_recording(wand):
    root, tmp = wand
    r = kiloml("simulate", "--stream", tmp / "quiet.npy", "--duty-cycle", cwd=root)
    assert r.returncode == 0, r.stderr
    assert "duty cycle on nano33ble" in r.stdout and "wake gate" in r.stdout
    np.save(tmp / "short.npy", np.load(tmp / "busy.npy")[:60])
    r = kiloml("simulate", "--stream", tmp / "short.npy", "--duty-cycle", cwd=root)
    assert r.returncode == 1 and "needs at least" in r.stderr
    assert len(r.stderr.strip().splitlines()) <= 2
