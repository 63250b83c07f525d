"""Debug builds of the Armv7E-M kernels (issue 17): at -O0, what the Debug configurations of
STM32CubeIDE, Keil-style Makefiles and PlatformIO's debug builds use, GCC keeps r7 as the frame
pointer and refused the kernels' asm blocks ("'asm' operand has impossible constraints").
kml_arm.h, included first by every armv7em source, compiles the kernels optimized in such a
build; these tests compile every source at -O0 for every float ABI and DSP core, and run -O0
builds of a real model and of the first-layer RGB kernel bit-exact in the emulator."""

from __future__ import annotations

import os
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

import opbuilder as ob
from kiloml.codegen.c import io_specs
from kiloml.ir.graph import DTYPES
from kiloml.ir.interpreter import Interpreter
from kiloml.io.tflite_reader import read_tflite
from kiloml.targets.emulator import emulate
from kiloml.targets.profile import build_elf

pytestmark = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                                reason="arm-none-eabi-gcc not installed")

SHARED = Path(os.environ.get("KILOML_SHARED", Path(__file__).resolve().parents[3] / "shared"))
RT = resources.files("kiloml.codegen") / "runtime"
SOURCES = sorted(Path(str(RT / "armv7em")).glob("*.c"))
ABIS = {"soft": ["-mfloat-abi=soft"],
        "softfp": ["-mfloat-abi=softfp", "-mfpu=fpv4-sp-d16"],
        "hard": ["-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]}


def test_every_kernel_source_is_here():
    assert {p.name for p in SOURCES} >= {"kml_conv.c", "kml_conv_1x1.c", "kml_conv_dw.c",
                                         "kml_conv_rgb.c", "kml_fully_connected.c",
                                         "kml_pool.c"}


@pytest.mark.parametrize("core", ["cortex-m4", "cortex-m7", "cortex-m33"])
@pytest.mark.parametrize("abi", sorted(ABIS))
def test_kernels_compile_at_O0(core, abi, tmp_path):
    for src in SOURCES:
        r = subprocess.run(["arm-none-eabi-gcc", f"-mcpu={core}", "-mthumb", *ABIS[abi], "-O0",
                            "-g", "-std=c99", "-Wall", "-Wextra", "-Wconversion", "-Werror",
                            "-I", str(RT / "armv7em"), "-I", str(RT / "portable"), "-c",
                            str(src), "-o", str(tmp_path / (src.stem + ".o"))],
                           capture_output=True, text=True)
        assert r.returncode == 0, f"{src.name}: {r.stderr}"


def _check_O0(g, seed, workdir, options=None):
    inputs = ob.random_inputs(np.random.default_rng(seed), g)
    want = Interpreter(g).run(*inputs)
    b = build_elf(g, "cortex-m4", inputs, workdir, "armv7em", opt="-O0", options=options)
    outs = io_specs(b.result.graph)[1]
    emu = emulate(b.elf, "cortex-m4", None,
                  {f"kml_profile_{s.name}": s.tensor.nbytes for s in outs})
    for s, w in zip(outs, want):
        got = np.frombuffer(emu.memory[f"kml_profile_{s.name}"], DTYPES[s.tensor.dtype])
        assert np.array_equal(got.reshape(w.shape), w)
        assert len(np.unique(w)) > 1
    return {fn for fn in b.result.kernels if fn}


def test_kws_debug_build_bit_exact(tmp_path):
    g = read_tflite(SHARED / "models" / "mlperf_tiny" / "kws_ref_model.tflite")
    kernels = _check_O0(g, 3, tmp_path)
    for family in ("kml_conv2d_pairs", "kml_depthwise_conv2d_3x3", "kml_avg_pool"):
        assert any(k.startswith(family) for k in kernels), (family, kernels)


def test_every_kernel_family_debug_build_bit_exact(tmp_path):
    """RGB first layer, general and 1x1 convolutions and pooling in one -O0 build (kernels
    pinned where the flash-for-speed choice could take another), dense layers in another (a
    model with convolutions runs FULLY_CONNECTED on the convolution kernel)."""
    from kiloml.codegen.armv7em_choice import node_options
    from kiloml.ir.passes import pipeline

    m = ob.ModelBuilder(np.random.default_rng(5), "conv_O0")
    outs = [m.conv2d(m.input((1, 11, 11, 3)), 8, kernel=3, stride=2, activation="RELU"),
            m.conv2d(m.input((1, 7, 6, 5)), 6, kernel=(3, 2), activation="RELU6"),
            m.conv2d(m.input((1, 5, 5, 8)), 16, kernel=1, activation="RELU"),
            m.pool(m.input((1, 8, 8, 8)), "MAX")]
    g = m.build(outs)
    pg = pipeline(g)
    pin = {}
    for n, node in enumerate(pg.nodes):
        names = [o.name for o in node_options(pg, node)]
        pin.update({n: k for k in ("rgb", "1x1") if k in names})
    assert sorted(pin.values()) == ["1x1", "rgb"]
    kernels = _check_O0(g, 6, tmp_path / "conv", options=pin)
    for family in ("kml_conv2d_rgb", "kml_conv2d_s8", "kml_conv2d_1x1", "kml_max_pool"):
        assert any(k.startswith(family) for k in kernels), (family, kernels)

    m = ob.ModelBuilder(np.random.default_rng(7), "dense_O0")
    g = m.build([m.fully_connected(m.input((1, 40)), 12, activation="RELU"),
                 m.fully_connected(m.input((2, 24)), 7, activation="RELU6", per_channel=True)])
    assert {"kml_fully_connected_s8", "kml_fully_connected_u_s8"} <= \
        _check_O0(g, 8, tmp_path / "dense")  # per-channel / per-tensor (uniform) layers
