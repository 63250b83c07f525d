"""SOFTMAX's exp (runtime/portable/kml_softmax.c ``exp_neg5``): gemmlowp's
exp_on_negative_values with 5 integer bits, written out for that case (the barrel shifter
stops at the remainder's highest bit, the doubling high multiplications skip the INT32_MIN x
INT32_MIN case, roundings of values known non-negative skip the sign fix-up; on Thumb-2 the
multiplication is four instructions of inline assembly). Checked against the reference
interpreter's numpy form (kiloml.ir.fixedpoint.exp_on_negative_values, the oracle of every
SOFTMAX test) on the host under ASan/UBSan over a dense sample of the whole input range
(every 2^24 boundary of the barrel shifter, every remainder pattern, a stride through all
of [-2^31, 0]), and in the Cortex-M0+ and M4 emulator (the M4 runs the assembly) on every
remainder pattern. (Exhaustively over all 2^31 + 1 inputs against kml_fixedpoint.h's general
form on the host when it was written: no difference; 27 s, too slow for the suite.)"""

from __future__ import annotations

import shutil
from importlib import resources

import numpy as np
import pytest

from cmap import emulator_map, host_map
from kiloml.ir.fixedpoint import exp_on_negative_values

RT = resources.files("kiloml.codegen") / "runtime" / "portable"
INCLUDES = '#include "kml_softmax.c"'


def _patterns(rng: np.random.Generator, per: int) -> np.ndarray:
    """Inputs with every barrel-shifter remainder (bits 24..30: 0..127 quarters) and ``per``
    offsets within each quarter, its ends included; and 0."""
    k = np.repeat(np.arange(128, dtype=np.int64), per)
    j = rng.integers(0, 1 << 24, k.size)
    j[::per] = 0
    j[1::per] = (1 << 24) - 1
    a = -(k << 24) - j
    return np.concatenate([[0, -1, -2, -(1 << 31), -(1 << 31) + 1], a[a >= -(1 << 31)]])


def _inputs() -> np.ndarray:
    rng = np.random.default_rng(0)
    parts = [_patterns(rng, 2000)]
    # a stride through the whole range and the neighbours of every quarter boundary
    parts.append(-np.arange(0, 1 << 31, 9973, dtype=np.int64))
    q = np.arange(0, 129, dtype=np.int64) << 24
    parts.append(np.concatenate([-(q + d) for d in (-2, -1, 0, 1, 2)]))
    # what SOFTMAX feeds it: srdhm(diff << shift, multiplier) of small diffs is near 0
    parts.append(-np.arange(0, 1 << 16, dtype=np.int64))
    a = np.concatenate(parts)
    return np.unique(a[(a <= 0) & (a >= -(1 << 31))]).astype(np.int32)


def test_exp_matches_the_reference_on_the_host(tmp_path):
    a = _inputs()
    got = host_map(tmp_path, "exp_neg5(x[0])", a, np.int32, INCLUDES, [RT])
    want = exp_on_negative_values(a, 5)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, (a[bad[:3]], got[bad[:3]], want[bad[:3]])
    assert a.size > 500_000
    # every remainder pattern is there
    assert np.unique((-a.astype(np.int64)) >> 24).size >= 128


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="no arm-none-eabi-gcc")
@pytest.mark.parametrize("core", ["cortex-m0plus", "cortex-m4"])
def test_exp_matches_the_reference_in_the_emulator(core, tmp_path):
    a = _patterns(np.random.default_rng(1), 8).astype(np.int32)
    got = emulator_map(tmp_path, "exp_neg5(x[0])", a, np.int32, core, INCLUDES, [RT])
    np.testing.assert_array_equal(got, exp_on_negative_values(a, 5))
