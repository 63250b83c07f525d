"""kiloml's own real FFT in C (float32, q31, q15) against numpy and CMSIS-DSP.

Tolerances (stated per variant, relative to the largest |X| of the transform):
float32 1e-6 (x log2 n rounding steps); q31 and q15: the fixed-point FFTs return X/n and halve
at every stage, so their error is absolute in output LSBs: q31 <= 8 LSB of 2^31, q15 <= 4 LSB
of 2^15 (measured 1-3), for inputs kept below 2^30 / 2^14 as the front end guarantees.
"""

from __future__ import annotations

import numpy as np
import pytest

from dsphelp import C_DIR, run_c
from kiloml.dsp.cgen import twiddles

SIZES = [16, 32, 64, 128, 256, 512, 1024, 2048, 4096]

HARNESS = r"""
#include <stdio.h>
#include <stdlib.h>
#include "kml_dsp.h"
int main(int argc, char **argv)
{
    FILE *f, *o;
    if (argc != 6) { return 2; }
    f = fopen(argv[1], "rb"); o = fopen(argv[2], "wb");
    uint32_t n = (uint32_t)atol(argv[3]);
    int kind = atoi(argv[4]);   /* 0 f32, 1 q31, 2 q15, 3 f32 power spectrum */
    long reps = atol(argv[5]), r;
    size_t es = kind == 2 ? 2u : 4u;
    void *tw = malloc(n * es), *buf = malloc(n * es);
    if (!f || !o || !tw || !buf || fread(tw, es, n, f) != n) { return 3; }
    for (r = 0; r < reps; ++r) {
        if (fread(buf, es, n, f) != n) { return 4; }
        if (kind == 0) { kml_rfft_f32((float *)buf, n, (const float *)tw); }
        else if (kind == 1) { kml_rfft_q31((int32_t *)buf, n, (const int32_t *)tw); }
        else if (kind == 2) { kml_rfft_q15((int16_t *)buf, n, (const int16_t *)tw); }
        else {   /* kind 3: |X|^2 of bins [lo, hi) = [n/8, n/2 + 1 - n/8) into a field of 7s */
            float pw[4098];
            uint32_t k, lo = 0, hi = n / 2u + 1u;
            if (r == 1 && n >= 8u) { lo = n / 8u; hi = n / 2u + 1u - n / 8u; }
            for (k = 0; k < n / 2u + 1u; ++k) { pw[k] = 7.0f; }
            kml_rfft_power_f32((float *)buf, n, (const float *)tw, pw, lo, hi);
            fwrite(pw, 4, n / 2u + 1u, o);
            continue;
        }
        fwrite(buf, es, n, o);
    }
    fclose(f); fclose(o); free(tw); free(buf);
    return 0;
}
"""


def c_rfft(x: np.ndarray, variant: str, tmp_path) -> np.ndarray:
    """Run the C rfft on each row of x; returns complex (rows, n/2+1) unpacked."""
    n = x.shape[1]
    dt = {"f32": np.float32, "q31": np.int32, "q15": np.int16, "power": np.float32}[variant]
    kind = {"f32": 0, "q31": 1, "q15": 2, "power": 3}[variant]
    (tmp_path / "in.bin").write_bytes(twiddles(n, "f32" if variant == "power" else variant)
                                      .astype(dt).tobytes()
                                      + x.astype(dt).tobytes())
    run_c([C_DIR / "kml_fft.c", C_DIR / "kml_fft_q.c"], HARNESS,
          [str(tmp_path / "in.bin"), str(tmp_path / "out.bin"), str(n), str(kind), str(len(x))])
    if variant == "power":   # |X|^2 per bin, rows as written
        return np.fromfile(tmp_path / "out.bin", dtype=dt).astype(np.float64).reshape(
            len(x), n // 2 + 1)
    b = np.fromfile(tmp_path / "out.bin", dtype=dt).astype(np.float64).reshape(len(x), n)
    out = np.zeros((len(x), n // 2 + 1), complex)
    out[:, 0] = b[:, 0]
    out[:, -1] = b[:, 1]
    out[:, 1:-1] = b[:, 2::2] + 1j * b[:, 3::2]
    return out


@pytest.mark.parametrize("n", SIZES)
def test_float32_matches_numpy_and_cmsis(n, tmp_path):
    import cmsisdsp as dsp

    rng = np.random.default_rng(n)
    x = np.concatenate([rng.standard_normal((3, n)), np.ones((1, n)),
                        np.sin(2 * np.pi * 5 * np.arange(n) / n)[None]]).astype(np.float32)
    got = c_rfft(x, "f32", tmp_path)
    want = np.fft.rfft(x.astype(np.float64), axis=1)
    scale = np.abs(want).max(axis=1, keepdims=True)
    assert (np.abs(got - want) / scale).max() < 1e-6 * np.log2(n)
    if n < 32:      # CMSIS-DSP's arm_rfft_fast_f32 supports 32 .. 4096 points
        return
    inst = dsp.arm_rfft_fast_instance_f32()
    assert dsp.arm_rfft_fast_init_f32(inst, n) == 0
    cm = dsp.arm_rfft_fast_f32(inst, x[0], 0)      # CMSIS packs like we do
    b = np.zeros(n, np.float32)
    b[0], b[1], b[2::2], b[3::2] = got[0, 0].real, got[0, -1].real, got[0, 1:-1].real, \
        got[0, 1:-1].imag
    assert np.abs(b - cm).max() < 1e-5 * np.abs(cm).max()


@pytest.mark.parametrize("n", [4, 8] + SIZES)
def test_float32_power_spectrum_matches_numpy(n, tmp_path):
    """kml_rfft_power_f32 (decimation in frequency, bit-reversed order, the split step fused
    with |X|^2): every bin against numpy's float64 |rfft|^2; the second row asks for the bins
    [n/8, n/2 + 1 - n/8) only and must leave the others as they were (7.0)."""
    rng = np.random.default_rng(n + 1)
    x = np.concatenate([rng.standard_normal((2, n)), np.ones((1, n)),
                        np.sin(2 * np.pi * 3 * np.arange(n) / n)[None],
                        rng.uniform(-1, 1, (1, n)) * 1e-3]).astype(np.float32)
    got = c_rfft(x, "power", tmp_path)
    want = np.abs(np.fft.rfft(x.astype(np.float64), axis=1)) ** 2
    scale = want.max(axis=1, keepdims=True)
    lo, hi = (n // 8, n // 2 + 1 - n // 8) if n >= 8 else (0, n // 2 + 1)
    inside = np.zeros(n // 2 + 1, bool)
    inside[lo:hi] = True
    rows = [0, 2, 3, 4]
    assert (np.abs(got[rows] - want[rows]) / scale[rows]).max() < 2e-6 * np.log2(n)
    assert (np.abs(got[1, inside] - want[1, inside]) / scale[1]).max() < 2e-6 * np.log2(n)
    assert np.all(got[1, ~inside] == 7.0)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("variant,amp,lsb", [("q31", 2 ** 30 - 1, 8), ("q15", 2 ** 14 - 1, 4)])
def test_fixed_point_is_x_over_n(n, variant, amp, lsb, tmp_path):
    rng = np.random.default_rng(n + amp)
    rows = [rng.uniform(-1, 1, n) * amp, np.full(n, amp), -np.full(n, amp),
            amp * np.cos(2 * np.pi * (n // 4) * np.arange(n) / n),
            amp * np.sign(rng.standard_normal(n)), rng.uniform(-1, 1, n) * amp / 1000]
    x = np.round(np.stack(rows))
    got = c_rfft(x, variant, tmp_path)
    want = np.fft.rfft(x, axis=1) / n
    assert np.abs(got - want).max() <= lsb
