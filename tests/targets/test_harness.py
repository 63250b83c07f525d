"""The bare-metal harness writer shared by the model and DSP profilers: inputs land in the
ELF bit for bit, outputs are read back by symbol, the code between the markers is counted."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from kiloml.targets import harness
from kiloml.targets.emulator import emulate
from kiloml.targets.profile import PROFILE_FLAGS

pytestmark = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                                reason="arm-none-eabi-gcc not installed")

LIB_H = """#ifndef COPY_H
#define COPY_H
#include <stdint.h>
int copy(const float *x, const int16_t *y, float *xo, int32_t *yo);
#endif
"""
LIB_C = """#include "copy.h"
int copy(const float *x, const int16_t *y, float *xo, int32_t *yo)
{
    int i;
    for (i = 0; i < 9; ++i) {
        xo[i] = x[i];
    }
    for (i = 0; i < 4; ++i) {
        yo[i] = 2 * (int32_t)y[i];
    }
    return 7;
}
"""


def test_harness_inputs_outputs_and_markers(tmp_path):
    x = np.array([0.1, -0.0, 1e-30, 1.4e-45, -3.4028235e38, 1 / 3, 16777217.0, 2.5, -1e-5],
                 np.float32)
    y = np.array([-32768, 32767, 0, -1], np.int16)
    bufs = [harness.Buffer("h_x", "float", x), harness.Buffer("h_y", "int16_t", y),
            harness.Buffer("h_xo", "float", None, x.size),
            harness.Buffer("h_yo", "int32_t", None, y.size)]
    src = harness.harness_source("test harness */ still a comment", "copy.h", bufs,
                                 "copy(h_x, h_y, h_xo, h_yo)")
    assert "static const float h_x[9]" in src and "\nfloat h_xo[9];" in src
    (tmp_path / "copy.h").write_text(LIB_H)
    (tmp_path / "copy.c").write_text(LIB_C)
    (tmp_path / "main.c").write_text(src)
    elf = harness.build_elf(tmp_path, PROFILE_FLAGS["cortex-m4"], "t.elf")
    assert set(harness.HARNESS_SYMBOLS) - {"kml_vectors"} <= set(elf.symbols)
    emu = emulate(elf, "cortex-m4", kernel_entries=["copy"],
                  read_back={"h_xo": x.nbytes, "h_yo": 4 * y.size})
    assert np.frombuffer(emu.memory["h_xo"], np.float32).view(np.uint32).tolist() == \
        x.view(np.uint32).tolist()
    assert np.frombuffer(emu.memory["h_yo"], np.int32).tolist() == (2 * y.astype(np.int32)).tolist()
    # counted between the markers: the call of copy (its loops) and little else
    assert [s.name for s in emu.segments] == ["(invoke)", "copy"]
    assert 13 * 3 < emu.segments[1].instructions < 200
