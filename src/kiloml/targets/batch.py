"""Run many inputs through a bare-metal Cortex-M image in the emulator, at Unicorn's own speed.

``profile.py`` and ``dsp_profile.py`` run one input with a hook on every executed basic block
to count instructions. Checking a deployed package needs the outputs of a whole batch of
windows, not counts, so this module links a folder's C sources with the profiler's startup
code and link script (``baremetal/``) and runs the ELF from reset to the harness's end marker
with no hooks at all, bounded by a wall-clock timeout and an instruction budget.

A harness for this module defines ``main`` and calls ``kml_batch_end()`` (``END_MARKER``
defines it) when its results are in memory; the caller reads them back by symbol name. Inputs
need not be compiled in: ``run_image(..., input_data=...)`` maps them read-only at
``INPUT_BASE`` (the Cortex-M external RAM region, outside the link script's FLASH and RAM), so
one image runs any number of batches.
"""

from __future__ import annotations

import subprocess
from importlib import resources
from pathlib import Path

import unicorn
from unicorn import arm_const

from kiloml.errors import ToolchainError
from kiloml.targets.emulator import ElfImage, new_machine
from kiloml.targets.toolchain import WARN, arm_gcc

END_SYMBOL = "kml_batch_end"
END_MARKER = "\n".join([
    f"__attribute__((noinline)) void {END_SYMBOL}(void);",
    f'void {END_SYMBOL}(void) {{ __asm volatile ("" ::: "memory"); }}', ""])
INPUT_BASE = 0x60000000
DEFAULT_TIMEOUT_S = 600.0
DEFAULT_MAX_INSTRUCTIONS = 4_000_000_000


def build_image(sources: list[Path], include_dirs: list[Path], flags: list[str],
                workdir: Path, opt: str = "-O2") -> ElfImage:
    """Link ``sources`` (C files) with the bare-metal startup and link script for the core
    that ``flags`` select (``-mcpu=...``), warnings as errors, unused sections dropped."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    bm = resources.files("kiloml.targets") / "baremetal"
    startup, link = workdir / "kml_batch_startup.c", workdir / "kml_batch_link.ld"
    startup.write_text((bm / "startup.c").read_text())
    link.write_text((bm / "link.ld").read_text())
    elf = workdir / "batch.elf"
    cmd = [arm_gcc(), *flags, *WARN, opt, "-ffunction-sections", "-fdata-sections",
           "-nostartfiles", "--specs=nano.specs", "-Wl,--gc-sections", "-T", str(link)]
    for d in include_dirs:
        cmd += ["-I", str(d)]
    cmd += [str(s) for s in sources] + [str(startup), "-o", str(elf), "-lm"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise ToolchainError(f"arm-none-eabi-gcc failed:\n{proc.stderr.strip()[:3000]}")
    return ElfImage(elf)


def run_image(image: ElfImage, core: str, read_back: dict[str, int], fpu: bool = False,
              input_data: bytes = b"", timeout_s: float = DEFAULT_TIMEOUT_S,
              max_instructions: int = DEFAULT_MAX_INSTRUCTIONS,
              memory: dict[int, bytes] | None = None,
              dump: dict[str, tuple[int, int]] | None = None,
              power_cut: tuple[str, int] | None = None) -> dict[str, bytes]:
    """Run ``image`` from ``Reset_Handler`` until ``kml_batch_end`` is entered; return the
    bytes of each ``read_back`` symbol (name -> byte count). ``input_data`` is mapped
    read-only at ``INPUT_BASE``. ``fpu``: enable the FPU (CPACR CP10/CP11 full access, as a
    device's startup code does) for images built with ``-mfloat-abi=softfp`` or ``hard``.
    Raises ToolchainError on a fault, or when the end marker is not reached within
    ``timeout_s`` seconds or ``max_instructions``.

    Flash that persists across runs (a device's model slots): ``memory`` (address -> bytes)
    is written after the ELF is loaded, ``dump`` (key -> (address, bytes)) is read back with
    ``read_back``. ``power_cut = (function, k)`` stops the core when ``function`` is entered
    for the k-th time (k >= 1), as a power loss would: then only ``dump`` is read back, under
    its keys, plus ``"power_cut": b"1"``."""
    uc = new_machine(image, core, fpu)
    if input_data:
        size = (len(input_data) + 0xFFF) & ~0xFFF
        uc.mem_map(INPUT_BASE, size, unicorn.UC_PROT_READ)
        uc.mem_write(INPUT_BASE, bytes(input_data))
    for addr, data in (memory or {}).items():
        uc.mem_write(addr, bytes(data))
    uc.reg_write(arm_const.UC_ARM_REG_SP, image.addr("_estack"))
    end = image.addr(END_SYMBOL)
    cut = {"left": 0}
    if power_cut is not None:
        cut["left"] = int(power_cut[1])

        def on_entry(uc_, _address, _size, _user):
            cut["left"] -= 1
            if cut["left"] == 0:
                uc_.emu_stop()

        at = image.addr(power_cut[0])
        uc.hook_add(unicorn.UC_HOOK_CODE, on_entry, begin=at, end=at)
    try:
        uc.emu_start(image.addr("Reset_Handler") | 1, end, timeout=int(timeout_s * 1e6),
                     count=max_instructions)
    except unicorn.UcError as e:
        pc = uc.reg_read(arm_const.UC_ARM_REG_PC)
        raise ToolchainError(f"{image.path}: emulation fault at pc=0x{pc:08x}: {e}") from None
    except ToolchainError as e:  # from the double-precision hook
        raise ToolchainError(f"{image.path}: {e}") from None
    dumped = {k: bytes(uc.mem_read(a, n)) for k, (a, n) in (dump or {}).items()}
    if power_cut is not None and cut["left"] == 0:
        return {**dumped, "power_cut": b"1"}
    if uc.reg_read(arm_const.UC_ARM_REG_PC) & ~1 != end:
        raise ToolchainError(f"{image.path}: the emulated batch did not finish within "
                             f"{timeout_s:g} s or {max_instructions:,} instructions")
    return {**{name: bytes(uc.mem_read(image.addr(name), size))
               for name, size in read_back.items()}, **dumped}
