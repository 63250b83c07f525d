"""Generated C cross-compiles for Cortex-M cores warning-free (-Wall -Wextra -Wconversion -Werror)."""

from __future__ import annotations

import shutil

import pytest

from kiloml.codegen.c import generate_c
from kiloml.ir.builder import demo_dscnn
from kiloml.targets.toolchain import cross_compile_sizes

if shutil.which("arm-none-eabi-gcc") is None:  # make test installs it; say so if it is missing
    pytest.fail("arm-none-eabi-gcc is missing: run `make toolchain`", pytrace=False)


@pytest.mark.parametrize("cpu", ["cortex-m0plus", "cortex-m4", "cortex-m7", "cortex-m33"])
def test_cross_compiles_clean(tmp_path, cpu):
    res = generate_c(demo_dscnn(), "kws")
    res.write(tmp_path)
    sizes = cross_compile_sizes(tmp_path, cpu)
    weights = 24_376
    assert sizes["text"] > weights  # weights live in flash (.rodata counted in text)
    assert sizes["data"] == 0  # no initialized mutable globals
    assert sizes["bss"] == res.plan.arena_bytes  # the arena is the only RAM
