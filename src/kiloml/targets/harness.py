"""The bare-metal profiling harness and build, shared by the model profiler (``profile.py``)
and the DSP profiler (``dsp_profile.py``).

The harness is one C file: the input data as ``static const`` arrays, the outputs as
zero-initialized globals (the emulator reads them back by symbol), and a ``main`` that calls
the generated entry point once between two markers, ``kml_profile_begin`` and
``kml_profile_end`` (the emulator counts from the first and stops at the second).
``build_elf`` compiles it with the generated sources, the startup code and the link script of
``targets/baremetal`` into an ELF for the core.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from kiloml.codegen.cwriter import array_decl, comment
from kiloml.errors import ToolchainError
from kiloml.targets.emulator import ElfImage
from kiloml.targets.toolchain import WARN, arm_gcc

BEGIN, END = "kml_profile_begin", "kml_profile_end"
# functions and data of the harness and the startup code, not of what is profiled
HARNESS_SYMBOLS = ("main", "Reset_Handler", "Default_Handler", "kml_vectors", BEGIN, END)


@dataclass
class Buffer:
    """An array of the harness: an input (``values``, a ``static const`` array) or an output
    (``values`` None: ``size`` elements, zero-initialized, external so that the emulator
    finds it by ``name``)."""

    name: str
    ctype: str
    values: np.ndarray | None = None
    size: int = 0


def harness_source(title: str, header: str, buffers: Sequence[Buffer], call: str) -> str:
    """The harness C file: ``title`` as its first comment, ``#include "<header>"``, the
    buffers, and ``main`` returning the int that ``call`` (an expression, typically the
    generated entry point applied to the buffers) gives between the markers."""
    lines = [comment(title), "#include <stdint.h>", f'#include "{header}"', ""]
    for b in buffers:
        if b.values is not None:
            lines.append(array_decl(b.ctype, b.name, b.values))
        else:
            lines.append(f"{b.ctype} {b.name}[{max(b.size, 1)}];")
    lines += ["int main(void);",
              f"__attribute__((noinline)) void {BEGIN}(void);",
              f"__attribute__((noinline)) void {END}(void);",
              f'void {BEGIN}(void) {{ __asm volatile ("" ::: "memory"); }}',
              f'void {END}(void) {{ __asm volatile ("" ::: "memory"); }}',
              "int main(void)", "{", "    int rc;", f"    {BEGIN}();", f"    rc = {call};",
              f"    {END}();", "    return rc;", "}", ""]
    return "\n".join(lines)


def build_elf(workdir: Path, flags: Sequence[str], elf_name: str, opt: str = "-O2",
              libs: Sequence[str] = ()) -> ElfImage:
    """Compile every .c in ``workdir`` (the generated sources and the harness) with the
    startup code and link script of ``targets/baremetal`` into ``workdir/elf_name``:
    arm-none-eabi-gcc with the core's ``flags``, -std=c99 -Wall -Wextra -Wconversion -Werror,
    ``opt``, unused sections dropped, newlib-nano; ``libs`` after the sources."""
    bm = resources.files("kiloml.targets") / "baremetal"
    (workdir / "startup.c").write_text((bm / "startup.c").read_text())
    (workdir / "link.ld").write_text((bm / "link.ld").read_text())
    srcs = sorted(str(p) for p in workdir.glob("*.c"))
    elf = workdir / elf_name
    cmd = [arm_gcc(), *flags, *WARN, opt, "-ffunction-sections", "-fdata-sections",
           "-nostartfiles", "--specs=nano.specs", "-Wl,--gc-sections", "-T",
           str(workdir / "link.ld"), "-I", str(workdir), *srcs, "-o", str(elf), *libs]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ToolchainError(f"arm-none-eabi-gcc failed:\n{proc.stderr.strip()[:3000]}")
    return ElfImage(elf)
