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
import subprocess
from importlib import resources

import numpy as np
import pytest

from kiloml.codegen.host import SANITIZE, WARNINGS, find_cc
from kiloml.ir.fixedpoint import exp_on_negative_values

RT = resources.files("kiloml.codegen") / "runtime" / "portable"

HOST = r"""
#include <stdio.h>
#include "kml_softmax.c"
static int32_t a[65536], r[65536];
int main(int argc, char **argv)
{
    FILE *f, *o;
    size_t n, i;
    if (argc != 3) { return 2; }
    f = fopen(argv[1], "rb");
    o = fopen(argv[2], "wb");
    if (!f || !o) { return 3; }
    while ((n = fread(a, 4, 65536, f)) > 0) {
        for (i = 0; i < n; ++i) { r[i] = exp_neg5(a[i]); }
        fwrite(r, 4, n, o);
    }
    fclose(f);
    fclose(o);
    return 0;
}
"""


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
    (tmp_path / "main.c").write_text(HOST)
    exe = tmp_path / "exp"
    r = subprocess.run([find_cc(), *WARNINGS, "-O2", *SANITIZE, "-I", str(RT),
                        str(tmp_path / "main.c"), "-o", str(exe)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    a.tofile(tmp_path / "in.bin")
    r = subprocess.run([str(exe), str(tmp_path / "in.bin"), str(tmp_path / "out.bin")],
                       capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr, r.stderr
    got = np.fromfile(tmp_path / "out.bin", np.int32)
    want = exp_on_negative_values(a, 5)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, (a[bad[:3]], got[bad[:3]], want[bad[:3]])
    assert a.size > 500_000
    # every remainder pattern is there
    assert np.unique((-a.astype(np.int64)) >> 24).size >= 128


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="no arm-none-eabi-gcc")
@pytest.mark.parametrize("core", ["cortex-m0plus", "cortex-m4"])
def test_exp_matches_the_reference_in_the_emulator(core, tmp_path):
    from kiloml.targets.batch import build_image, run_image
    from kiloml.targets.profile import PROFILE_FLAGS

    a = _patterns(np.random.default_rng(1), 8).astype(np.int32)
    n = len(a)
    src = tmp_path / "main.c"
    src.write_text(f"""
#include "kml_softmax.c"
int32_t kml_r[{n}];
__attribute__((noinline)) void kml_batch_end(void);
void kml_batch_end(void) {{ __asm volatile ("" ::: "memory"); }}
int main(void)
{{
    const int32_t *in = (const int32_t *)0x60000000u;
    uint32_t i;
    for (i = 0; i < {n}u; ++i) {{ kml_r[i] = exp_neg5(in[i]); }}
    kml_batch_end();
    for (;;) {{ }}
}}
""")
    image = build_image([src], [RT], PROFILE_FLAGS[core], tmp_path / "elf")
    got = run_image(image, core, {"kml_r": 4 * n}, input_data=a.tobytes())
    np.testing.assert_array_equal(np.frombuffer(got["kml_r"], np.int32),
                                  exp_on_negative_values(a, 5))
