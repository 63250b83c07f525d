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


@pytest.mark.parametrize("cpu", ["cortex-m4", "cortex-m7", "cortex-m33"])
def test_armv7em_kernels_cross_compile_clean(tmp_path, cpu):
    res = generate_c(demo_dscnn(), "kws", runtime="armv7em")
    res.write(tmp_path)
    sizes = cross_compile_sizes(tmp_path, cpu)
    assert sizes["data"] == 0
    assert sizes["bss"] == res.plan.arena_bytes
    assert "__smlad" in "".join(res.files.values()) or "smlad" in "".join(res.files.values())


def test_compile_cli_kernels_option(tmp_path):
    import json
    import subprocess
    import sys

    from kiloml.io.tflite_writer import save_tflite

    save_tflite(demo_dscnn(), tmp_path / "m.tflite")
    r = subprocess.run([sys.executable, "-m", "kiloml", "compile", str(tmp_path / "m.tflite"), "-o",
                        str(tmp_path / "c"), "--kernels", "armv7em", "--json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["kernels"] == "armv7em"
    assert (tmp_path / "c" / "kml_arm.h").exists()
    bad = subprocess.run([sys.executable, "-m", "kiloml", "compile", str(tmp_path / "m.tflite"),
                          "-o", str(tmp_path / "d"), "--kernels", "gpu"], capture_output=True)
    assert bad.returncode == 2 and not (tmp_path / "d").exists()


def test_every_declared_kernel_is_defined_in_both_runtimes(tmp_path):
    """Both runtimes share kml_*.h: every function a header declares links in each of them
    (host build of a file that takes the address of each one)."""
    import re
    import subprocess
    from importlib import resources

    base = resources.files("kiloml.codegen") / "runtime"
    headers = sorted(h.name for h in (base / "portable").iterdir() if h.name.endswith(".h"))
    names = sorted({n for h in headers for n in re.findall(
        r"^\w[\w\s\*]*?\b(kml_\w+)\(", (base / "portable" / h).read_text(), re.M)
        if "static" not in n})
    assert len(names) > 20
    main = tmp_path / "all.c"
    main.write_text("".join(f'#include "{h}"\n' for h in headers)
                    + "int main(void)\n{\n    const void *volatile f;\n"
                    + "".join(f"    f = (const void *)&{n};\n" for n in names)
                    + "    (void)f;\n    return 0;\n}\n")
    for runtime in ("portable", "armv7em"):
        srcs = {f.name: f for f in (base / "portable").iterdir() if f.name.endswith(".c")}
        srcs.update({f.name: f for f in (base / runtime).iterdir() if f.name.endswith(".c")})
        if runtime == "armv7em":
            # armv7em code is Thumb-2 asm: compile and link it for the Cortex-M4
            cc = ["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-O2", "--specs=nosys.specs"]
        else:
            cc = ["cc", "-O1"]
        r = subprocess.run(cc + ["-std=c99", "-Wall", "-Wextra", "-Werror", "-I", str(base / runtime),
                                 "-I", str(base / "portable"), str(main),
                                 *map(str, srcs.values()), "-o", str(tmp_path / runtime), "-lm"],
                           capture_output=True, text=True)
        assert r.returncode == 0, f"{runtime}: {r.stderr[-2000:]}"


def test_armv7em_kernels_for_m0plus_say_why(tmp_path):
    """The DSP-extension kernels built for a Cortex-M0+ stop on one clear #error (not on
    'impossible constraints' from their inline assembly)."""
    from kiloml.errors import ToolchainError

    generate_c(demo_dscnn(), "kws", runtime="armv7em").write(tmp_path)
    with pytest.raises(ToolchainError) as e:
        cross_compile_sizes(tmp_path, "cortex-m0plus")
    msg = str(e.value)
    first = next(line for line in msg.splitlines() if "error:" in line)
    assert "#error" in first and "need a core with the DSP extension" in first
    assert "--kernels portable" in first
    assert "impossible constraints" not in msg
