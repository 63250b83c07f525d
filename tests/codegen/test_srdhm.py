"""kml_srdhm (runtime/portable/kml_common.h), the SaturatingRoundingDoublingHighMul of every
portable requantization and of SOFTMAX / LOGISTIC / TANH, is written as one arithmetic shift
of (a b + 2^30); gemmlowp writes it as a truncating division of a b plus a sign-dependent
nudge. The C (host, UBSan) is checked against gemmlowp's form in numpy
(kiloml.ir.quant.srdhm, the reference interpreter's) on every pair of edge values and on a
million random pairs of each magnitude class, and in the Cortex-M0+ and M4 emulator on the
edge pairs."""

from __future__ import annotations

import shutil
from importlib import resources

import numpy as np
import pytest

from cmap import emulator_map, host_map
from kiloml.ir.quant import srdhm

RT = resources.files("kiloml.codegen") / "runtime" / "portable"
INCLUDES = '#include "kml_common.h"'

EDGES = np.array([0, 1, -1, 2, -2, 3, (1 << 15) - 1, -(1 << 15), 1 << 15, (1 << 30) - 1,
                  1 << 30, -(1 << 30), -(1 << 30) - 1, (1 << 31) - 1, -(1 << 31),
                  -(1 << 31) + 1, 1073741823, 1518500250, -1518500250, 46341, -46341],
                 np.int64)


def _pairs() -> tuple[np.ndarray, np.ndarray]:
    ea, eb = np.meshgrid(EDGES, EDGES)
    rng = np.random.default_rng(0)
    parts_a, parts_b = [ea.ravel()], [eb.ravel()]
    for bits in (8, 16, 24, 31):
        lo, hi = -(1 << bits), (1 << bits) - 1
        parts_a.append(rng.integers(max(lo, -(1 << 31)), hi + 1, 250_000))
        parts_b.append(rng.integers(-(1 << 31), (1 << 31), 250_000))
    # products at the rounding boundary: a b = k 2^31 +- 2^30 (+-1)
    k = rng.integers(-(1 << 20), 1 << 20, 20_000)
    for d in (-1, 0, 1):
        v = (k << 31) + (1 << 30) + d
        parts_a.append(v >> 20)
        parts_b.append(np.full_like(k, 1 << 20))
    return np.concatenate(parts_a), np.concatenate(parts_b)


def test_matches_gemmlowp_on_the_host(tmp_path):
    a, b = _pairs()
    keep = (a >= -(1 << 31)) & (a < (1 << 31))
    a, b = a[keep].astype(np.int32), b[keep].astype(np.int32)
    got = host_map(tmp_path, "kml_srdhm(x[0], x[1])", np.stack([a, b], axis=1), np.int32,
                   INCLUDES, [RT])
    want = srdhm(a, b)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, (a[bad[:3]], b[bad[:3]], got[bad[:3]], want[bad[:3]])
    # the boundary cases are there: exact halves of both signs
    ab = a.astype(np.int64) * b
    assert np.count_nonzero((ab % (1 << 31)) == (1 << 30)) > 1000


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="no arm-none-eabi-gcc")
@pytest.mark.parametrize("core", ["cortex-m0plus", "cortex-m4"])
def test_matches_gemmlowp_in_the_emulator(core, tmp_path):
    ea, eb = np.meshgrid(EDGES, EDGES)
    a, b = ea.ravel().astype(np.int32), eb.ravel().astype(np.int32)
    got = emulator_map(tmp_path, "kml_srdhm(x[0], x[1])", np.stack([a, b], axis=1), np.int32,
                       core, INCLUDES, [RT])
    np.testing.assert_array_equal(got, srdhm(a, b))
