"""Run a Cortex-M ELF in Unicorn and count what it executes.

The ELF is loaded by its program headers, execution starts at ``Reset_Handler`` with SP at
``_estack`` and stops at the entry of ``kml_profile_end``. Instructions are counted with a
block hook (one Python call per executed basic block, not per instruction): the hook only
tallies ``(address, size)`` pairs; each distinct block is decoded once with capstone and its
instruction count and estimated cycles (``cycles.py``) are multiplied by its tally. Counting
starts at ``kml_profile_begin``. Per-layer figures come from switching the tally at the entry
of each kernel function the generated code calls, in call order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import capstone
import unicorn
from elftools.elf.elffile import ELFFile
from unicorn import arm_const

from kiloml.errors import ToolchainError
from kiloml.targets import vfp_double
from kiloml.targets.cycles import block_cost, carried

CPU_MODELS = {
    "cortex-m0plus": arm_const.UC_CPU_ARM_CORTEX_M0,
    "cortex-m4": arm_const.UC_CPU_ARM_CORTEX_M4,
    "cortex-m7": arm_const.UC_CPU_ARM_CORTEX_M7,
    "cortex-m33": arm_const.UC_CPU_ARM_CORTEX_M33,
}
FLASH_BASE, FLASH_SIZE = 0x08000000, 16 << 20
RAM_BASE, RAM_SIZE = 0x20000000, 4 << 20
STACK_PAINT = 0xA5
MAX_INSTRUCTIONS = 2_000_000_000


@dataclass
class Segment:
    """Execution tally between two kernel entries."""

    name: str
    blocks: dict[tuple[int, int], int] = field(default_factory=dict)
    instructions: int = 0
    cycles: float = 0.0
    simd_macs: int = 0
    classes: dict[str, int] = field(default_factory=dict)


@dataclass
class EmulationResult:
    instructions: int
    cycles: float
    segments: list[Segment]
    stack_bytes: int
    memory: dict[str, bytes]
    snapshots: list = field(default_factory=list)


class ElfImage:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as f:
            elf = ELFFile(f)
            self.segments = [(s["p_paddr"], s.data()) for s in elf.iter_segments()
                             if s["p_type"] == "PT_LOAD" and s["p_filesz"] > 0]
            symtab = elf.get_section_by_name(".symtab")
            self.symbols: dict[str, tuple[int, int]] = {}
            self.functions: set[str] = set()
            for sym in symtab.iter_symbols():
                if sym.name and sym["st_info"]["type"] in ("STT_FUNC", "STT_OBJECT", "STT_NOTYPE"):
                    self.symbols[sym.name] = (sym["st_value"], sym["st_size"])
                    if sym["st_info"]["type"] == "STT_FUNC":
                        self.functions.add(sym.name)
            self.sections = {s.name: (s["sh_addr"], s["sh_size"], s["sh_flags"], s["sh_type"])
                             for s in elf.iter_sections() if s.name}

    def addr(self, name: str) -> int:
        if name not in self.symbols:
            raise ToolchainError(f"{self.path}: symbol {name} not found")
        # a function's value carries the Thumb bit; a data object's (an int8 array at -Os)
        # may be odd
        v = self.symbols[name][0]
        return v & ~1 if name in self.functions else v


def new_machine(image: ElfImage, core: str, fpu: bool = False) -> unicorn.Uc:
    """A Cortex-M core of model ``core`` with flash and RAM mapped and ``image`` loaded (not
    started). ``fpu``: enable the FPU (CPACR CP10/CP11 full access, as a device's startup code
    does); on a Cortex-M7 also execute double-precision instructions (``vfp_double``:
    Unicorn's M7 lacks the double-precision FPU of H7/F76x parts)."""
    if core not in CPU_MODELS:
        raise ToolchainError(f"no emulator CPU model for {core!r} "
                             f"(have: {', '.join(sorted(CPU_MODELS))})")
    uc = unicorn.Uc(unicorn.UC_ARCH_ARM, unicorn.UC_MODE_THUMB | unicorn.UC_MODE_MCLASS)
    uc.ctl_set_cpu_model(CPU_MODELS[core])
    if fpu:
        uc.reg_write(arm_const.UC_ARM_REG_C1_C0_2, 0xF << 20)
        if core == "cortex-m7":
            vfp_double.install(uc)
    uc.mem_map(FLASH_BASE, FLASH_SIZE)
    uc.mem_map(RAM_BASE, RAM_SIZE)
    for addr, data in image.segments:
        uc.mem_write(addr, data)
    return uc


def emulate(image: ElfImage, core: str, kernel_entries: list[str] | None = None,
            read_back: dict[str, int] | None = None, fpu: bool = False,
            snapshots: list[tuple[int, int] | None] | None = None) -> EmulationResult:
    """Run from reset to ``kml_profile_end``; see the module docstring. ``fpu``: the image
    uses the floating-point unit (hard-float build): enable it (CPACR CP10/CP11 full access,
    as a startup file on the device does); on a Cortex-M7 also execute double-precision
    instructions (``vfp_double``). ``snapshots[j]``: (address, bytes) to read when
    the j-th kernel call has finished (when the next kernel call starts, or at the end
    marker); the bytes are returned in ``EmulationResult.snapshots[j]``."""
    uc = new_machine(image, core, fpu)
    ebss = image.addr("_ebss")
    estack = image.addr("_estack")
    uc.mem_write(ebss, bytes([STACK_PAINT]) * (estack - ebss))
    uc.reg_write(arm_const.UC_ARM_REG_SP, estack)

    begin = image.addr("kml_profile_begin")
    end = image.addr("kml_profile_end")
    segments = [Segment("(before)")]
    state = {"seg": segments[0].blocks, "counting": False}
    entries = {image.addr(k): k for k in (kernel_entries or []) if k in image.symbols}

    snaps: list[bytes | None] = [None] * len(snapshots or [])

    def take(j: int) -> None:
        if 0 <= j < len(snaps) and snapshots[j] is not None:
            snaps[j] = bytes(uc.mem_read(*snapshots[j]))

    def on_block(uc_, address, size, _user):
        if address >= vfp_double.TRAMPOLINE:  # the double-precision hook's helper: not code
            return
        if state["counting"]:
            key = (address, size)
            blocks = state["seg"]
            blocks[key] = blocks.get(key, 0) + 1
        if address == begin:
            state["counting"] = True
            segments.append(Segment("(invoke)"))
            state["seg"] = segments[-1].blocks
        elif address in entries and state["counting"]:
            take(len(segments) - 3)  # the kernel call before this one has returned
            segments.append(Segment(entries[address]))
            state["seg"] = segments[-1].blocks
            # this block was tallied in the previous segment: move it
            prev = segments[-2].blocks
            prev[(address, size)] -= 1
            segments[-1].blocks[(address, size)] = 1

    uc.hook_add(unicorn.UC_HOOK_BLOCK, on_block)
    try:
        uc.emu_start(image.addr("Reset_Handler") | 1, end, count=MAX_INSTRUCTIONS)
    except unicorn.UcError as e:
        pc = uc.reg_read(arm_const.UC_ARM_REG_PC)
        raise ToolchainError(f"{image.path}: emulation fault at pc=0x{pc:08x}: {e}") from None
    except ToolchainError as e:  # from the double-precision hook
        raise ToolchainError(f"{image.path}: {e}") from None
    if uc.reg_read(arm_const.UC_ARM_REG_PC) & ~1 != end:
        raise ToolchainError(f"{image.path}: emulation did not reach kml_profile_end "
                             f"(instruction limit {MAX_INSTRUCTIONS:,})")
    take(len(segments) - 3)

    md = capstone.Cs(capstone.CS_ARCH_ARM, capstone.CS_MODE_THUMB | capstone.CS_MODE_MCLASS)
    cache = {}
    total_i, total_c = 0, 0.0

    def first_insn(addr: int):
        return next(md.disasm(bytes(uc.mem_read(addr, 4)), addr, 1), None)

    for seg in segments[1:]:
        for (addr, size), n in seg.blocks.items():
            if n == 0:
                continue
            if (addr, size) not in cache:
                code = bytes(uc.mem_read(addr, size))
                cache[(addr, size)] = block_cost(list(md.disasm(code, addr)), core)
            bc = cache[(addr, size)]
            seg.instructions += bc.instructions * n
            seg.cycles += bc.cycles * n
            seg.simd_macs += 2 * bc.macs_simd * n
            for k, v in bc.classes.items():
                seg.classes[k] = seg.classes.get(k, 0) + v * n
        seg.cycles -= carried(seg.blocks, cache, first_insn, core)
        total_i += seg.instructions
        total_c += seg.cycles
    stack = bytes(uc.mem_read(ebss, estack - ebss))
    untouched = len(stack) - len(stack.lstrip(bytes([STACK_PAINT])))
    stack_bytes = (estack - ebss) - untouched
    memory = {name: bytes(uc.mem_read(image.addr(name), size))
              for name, size in (read_back or {}).items()}
    return EmulationResult(total_i, total_c, segments[1:], stack_bytes, memory, snaps)
