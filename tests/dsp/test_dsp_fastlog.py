"""kml_logf (kml_frontend.c): the float32 natural logarithm of the f32 front ends' filter
energies. Checked against the exact logarithm (float64 numpy) on every float in [0.5, 2) (the
mantissa range every other binade reduces to), on 2 M random positive floats of every
binade, subnormals included, and on the special values; the Cortex-M4F build gives the same
bits as the host build (tests/dsp/test_dsp_mfcc.py and the profile compare the block's
outputs)."""

from __future__ import annotations

import numpy as np

from dsphelp import C_DIR, run_c

HARNESS = r"""
#include <stdio.h>
#include "kml_dsp.h"
static float buf[65536], out[65536];
int main(int argc, char **argv)
{
    FILE *f, *o;
    size_t n, i;
    if (argc != 3) { return 2; }
    f = fopen(argv[1], "rb");
    o = fopen(argv[2], "wb");
    if (!f || !o) { return 3; }
    while ((n = fread(buf, 4, 65536, f)) > 0) {
        for (i = 0; i < n; ++i) { out[i] = kml_logf(buf[i]); }
        fwrite(out, 4, n, o);
    }
    fclose(f);
    fclose(o);
    return 0;
}
"""


def _c_log(x: np.ndarray, tmp_path) -> np.ndarray:
    x.astype(np.float32).tofile(tmp_path / "in.bin")
    run_c([C_DIR / "kml_frontend.c", C_DIR / "kml_fft.c"], HARNESS,
          [str(tmp_path / "in.bin"), str(tmp_path / "out.bin")], sanitize=False)
    return np.fromfile(tmp_path / "out.bin", np.float32)


def test_within_one_ulp_of_the_exact_logarithm(tmp_path):
    rng = np.random.default_rng(0)
    bits = np.concatenate([np.arange(0x3F000000, 0x40000000, dtype=np.uint32),
                           rng.integers(1, 0x7F800000, 2_000_000, dtype=np.uint32),
                           np.arange(1, 4096, dtype=np.uint32)])          # subnormals
    x = bits.view(np.float32)
    got = _c_log(x, tmp_path).astype(np.float64)
    exact = np.log(x.astype(np.float64))
    ulps = np.abs(got - exact) / np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    # measured: at most 0.86 ulp, 6 % of values not the correctly rounded float; a wrong
    # coefficient, exponent split or subnormal scaling gives thousands of ulps
    assert ulps.max() < 1.0, (ulps.max(), x[np.argmax(ulps)])
    assert np.mean(got == np.float32(exact)) > 0.9


def test_special_values(tmp_path):
    x = np.array([0.0, -0.0, -1.0, np.inf, -np.inf, np.nan, 1.0, np.finfo(np.float32).max,
                  np.finfo(np.float32).tiny], np.float32)
    got = _c_log(x, tmp_path)
    assert got[0] == -np.inf and got[1] == -np.inf
    assert np.isnan(got[2]) and np.isnan(got[4]) and np.isnan(got[5])
    assert got[3] == np.inf and got[6] == 0.0
    assert got[7] == np.float32(np.log(np.float64(x[7])))
    assert got[8] == np.float32(np.log(np.float64(x[8])))
