"""arm-none-eabi cross compilation of generated C: object sizes for a Cortex-M core.

The full bare-metal build (startup, linker script, emulator) comes with the profiler; this
module compiles the generated library for the core and reads section sizes from the objects.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from kiloml.errors import ToolchainError

CPU_FLAGS = {
    "cortex-m0plus": ["-mcpu=cortex-m0plus", "-mthumb", "-mfloat-abi=soft"],
    "cortex-m4": ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"],
    "cortex-m7": ["-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-d16"],
    "cortex-m33": ["-mcpu=cortex-m33", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-sp-d16"],
}
WARN = ["-std=c99", "-Wall", "-Wextra", "-Wconversion", "-Werror"]


def arm_gcc() -> str:
    cc = shutil.which("arm-none-eabi-gcc")
    if cc is None:
        raise ToolchainError("arm-none-eabi-gcc not found: run `make toolchain` (installs Debian's "
                             "gcc-arm-none-eabi and libnewlib-arm-none-eabi)")
    return cc


def cross_compile_sizes(src_dir: str | Path, cpu: str = "cortex-m4", opt: str = "-O2") -> dict[str, int]:
    """Compile every .c in ``src_dir`` for ``cpu``; return summed text/data/bss bytes."""
    src = Path(src_dir)
    cc = arm_gcc()
    size_tool = shutil.which("arm-none-eabi-size")
    totals = {"text": 0, "data": 0, "bss": 0}
    for c in sorted(src.glob("*.c")):
        obj = c.with_suffix(".o")
        cmd = [cc, *CPU_FLAGS[cpu], *WARN, opt, "-ffunction-sections", "-fdata-sections",
               "-I", str(src), "-c", str(c), "-o", str(obj)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ToolchainError(f"arm-none-eabi-gcc failed on {c.name}:\n{proc.stderr.strip()}")
        out = subprocess.run([size_tool or "arm-none-eabi-size", str(obj)], capture_output=True,
                             text=True, check=True).stdout.splitlines()[-1].split()
        totals["text"] += int(out[0])
        totals["data"] += int(out[1])
        totals["bss"] += int(out[2])
        obj.unlink()
    return totals
