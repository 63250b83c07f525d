"""Kernel backends: the kernel each node calls (CompileResult.kernels), the runtime files a
model is given, and the backends' kernel -> source file maps against the runtime sources."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import opbuilder as ob  # noqa: E402
from kiloml.codegen.backend import BACKENDS, get_backend  # noqa: E402
from kiloml.codegen.c import generate_c  # noqa: E402
from kiloml.errors import KilomlError  # noqa: E402

RUNTIME = resources.files("kiloml.codegen") / "runtime"


def one_by_one():
    m = ob.ModelBuilder(np.random.default_rng(3), "one")
    return m.build(m.conv2d(m.input((1, 5, 5, 8)), 16, kernel=1, activation="RELU"))


def test_1x1_conv_reports_its_kernel_per_runtime():
    g = one_by_one()
    arm = generate_c(g, "m", runtime="armv7em", prefer="speed")
    assert arm.kernels == ["kml_conv2d_1x1x_s8"] and arm.runtime == "armv7em"  # int16 weights
    assert generate_c(g, "m", runtime="armv7em", options={0: "1x1"}).kernels == [
        "kml_conv2d_1x1_s8"]
    assert generate_c(g, "m").kernels == ["kml_conv2d_s8"]
    # only the files of the entry point it calls
    assert {"kml_conv_1x1.c", "kml_conv_mm.h", "kml_conv.h"} <= set(arm.files)
    assert not {"kml_conv.c", "kml_conv_rgb.c", "kml_conv_dw.c"} & set(arm.files)


def test_kernels_follow_node_order_and_aliases_run_none():
    m = ob.ModelBuilder(np.random.default_rng(4), "chain")
    x = m.conv2d(m.input((1, 6, 6, 3)), 8, kernel=3, stride=2)
    x = m.depthwise_conv2d(x, kernel=3, activation="RELU")
    x = m.pool(x, "AVG", filter_size=3, stride=3)
    x = m.reshape(x, (1, 8))
    g = m.build(m.softmax(m.fully_connected(x, 4)))
    for runtime, want in [
            ("portable", ["kml_conv2d_s8", "kml_depthwise_conv2d_s8", "kml_avg_pool_s8", "",
                          "kml_fully_connected_s8", "kml_softmax_s8"]),
            ("armv7em", ["kml_conv2d_rgb_s8", "kml_depthwise_conv2d_3x3_g6r_s8",
                         "kml_avg_pool_s8", "", "kml_conv2d_pairs_inside_s8",
                         "kml_softmax_s8"])]:
        res = generate_c(g, "m", runtime=runtime, prefer="speed")
        assert [n.op for n in res.graph.nodes] == ["CONV_2D", "DEPTHWISE_CONV_2D",
                                                   "AVERAGE_POOL_2D", "RESHAPE",
                                                   "FULLY_CONNECTED", "SOFTMAX"]
        assert res.kernels == want, runtime
        src = res.files["m.c"]
        for n, fn in enumerate(res.kernels):  # each node function calls its kernel
            body = src.split(f"static void m_n{n}_")[1].split("\n}")[0] if fn else ""
            assert fn in body


def test_profile_kernel_calls_come_from_the_generator():
    from kiloml.targets.profile import _kernel_calls

    res = generate_c(one_by_one(), "m", runtime="armv7em")
    assert _kernel_calls(res) == [(0, "kml_conv2d_pairs_inside_s8")]


def test_unknown_runtime():
    assert set(BACKENDS) == {"portable", "armv7em", "armv6m"}
    with pytest.raises(KilomlError, match="armv7em"):
        get_backend("gpu")
    with pytest.raises(KilomlError, match="unknown kernel runtime"):
        generate_c(one_by_one(), "m", runtime="gpu")


def declared_functions() -> dict[str, list[str]]:
    """Runtime module -> the kernel functions its portable header declares."""
    out = {}
    for h in sorted((RUNTIME / "portable").iterdir(), key=lambda f: f.name):
        m = re.fullmatch(r"kml_(\w+)\.h", h.name)
        if m and m.group(1) not in ("common", "fixedpoint"):
            out[m.group(1)] = sorted(set(re.findall(r"^\w[\w\s\*]*?\b(kml_\w+)\(",
                                                    h.read_text(), re.M)))
    return out


@pytest.mark.parametrize("runtime", sorted(BACKENDS))
def test_every_kernel_links_from_the_files_its_backend_names(runtime, tmp_path):
    """For every function a runtime header declares, a program that takes its address links
    from the source files the backend names for it and nothing else (armv7em: Thumb-2 for the
    Cortex-M4; portable: the host): the maps are complete, and a model is given every file
    its kernels need (kml_conv_rgb.c needs kml_conv.c's column geometry)."""
    backend = BACKENDS[runtime]
    if runtime == "portable":
        cc = ["cc", "-O1"]
        link = ["-lm"]
    else:
        if shutil.which("arm-none-eabi-gcc") is None:
            pytest.skip("no arm-none-eabi-gcc")
        cc = ["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-O2"]
        link = ["--specs=nosys.specs", "-lm"]
    cc += ["-std=c99", "-Wall", "-Wextra", "-Wconversion", "-Werror", "-I",
           str(RUNTIME / backend.directory), "-I", str(RUNTIME / "portable")]
    declared = declared_functions()
    objs: dict[str, Path] = {}
    for module, fns in declared.items():
        assert fns, module
        for fn in fns:
            files = backend.sources(module, {fn})
            assert files, (module, fn)
            for name in files:
                if name not in objs:
                    path = RUNTIME / backend.directory / name
                    path = path if path.is_file() else RUNTIME / "portable" / name
                    objs[name] = tmp_path / (name + ".o")
                    r = subprocess.run(cc + ["-c", str(path), "-o", str(objs[name])],
                                       capture_output=True, text=True)
                    assert r.returncode == 0, r.stderr[-2000:]
            main = tmp_path / "main.c"
            main.write_text(f'#include "kml_{module}.h"\nint main(void)\n{{\n'
                            f"    const void *volatile f = (const void *)&{fn};\n"
                            "    (void)f;\n    return 0;\n}\n")
            r = subprocess.run(cc + [str(main), *[str(objs[f]) for f in files], "-o",
                                     str(tmp_path / "a.out"), *link],
                               capture_output=True, text=True)
            assert r.returncode == 0, (fn, files, r.stderr[-2000:])
