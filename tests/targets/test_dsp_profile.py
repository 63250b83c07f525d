"""DSP blocks on the Cortex-M cores: the generated feature C cross-compiled and run in the
emulator on a real Speech Commands clip; its output must equal the same C built for the host
(itself checked against numpy in tests/dsp). Also: the FPU is really used on FPU cores."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from kiloml.data.readers import read_file
from kiloml.dsp import make_block
from kiloml.targets.dsp_profile import c_input, choose_variant, profile_dsp
from kiloml.targets.profile import load_boards

SHARED = Path(os.environ.get("KILOML_SHARED", Path(__file__).resolve().parents[3] / "shared"))
CLIP = SHARED / "data" / "speech_commands" / "yes"


@pytest.fixture(scope="module")
def clip():
    assert CLIP.is_dir(), f"shared data missing: {CLIP}"
    f = min(CLIP.glob("*.wav"))
    rec = read_file(f, "auto")
    x = np.zeros((16000, 1), np.float32)
    n = min(16000, rec.data.shape[0])
    x[:n] = rec.data[:n, :1]
    return x


@pytest.fixture(scope="module")
def mfcc():
    return make_block(preset="mlperf-kws")


def test_mfcc_f32_hard_float_on_m4(clip, mfcc):
    b = load_boards()["nucleo-l4r5zi"]
    assert choose_variant(mfcc, b) == "f32"
    r = profile_dsp(mfcc, 16000, 1, c_input(mfcc, clip, "f32"), b)
    assert r["runtime"] == "hard-float" and r["output_matches_host"] is True
    assert r["output_shape"] == [49, 10]
    assert r["latency_ms"] == pytest.approx(r["cycles"] / 120e3, abs=1e-3)
    assert 0 < r["flash_bytes"] < 64 * 1024 and r["ram_bytes"] > r["stack_bytes"] > 0
    # the same code with software floating point: the FPU build must be far cheaper
    soft = profile_dsp(mfcc, 16000, 1, c_input(mfcc, clip, "f32"), b.model_copy(update={"fpu": False}), "f32")
    assert soft["runtime"] == "soft-float" and soft["output_matches_host"] is True
    assert soft["instructions"] > 3 * r["instructions"]


def test_mfcc_q15_on_m0plus(clip, mfcc):
    b = load_boards()["pico"]
    assert choose_variant(mfcc, b) == "q15"
    r = profile_dsp(mfcc, 16000, 1, c_input(mfcc, clip, "q15"), b)
    assert r["runtime"] == "integer" and r["output_matches_host"] is True
    assert r["max_abs_diff_vs_host"] == 0.0 and r["cycles"] > 0


def test_analytic_core_is_not_measured(clip, mfcc):
    r = profile_dsp(mfcc, 16000, 1, c_input(mfcc, clip, "f32"), load_boards()["esp32s3"])
    assert r["runtime"] == "analytic-estimate" and r["latency_ms"] is None
