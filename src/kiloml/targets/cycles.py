"""Cycle model: estimated cycles per executed instruction, by core and instruction class.

Counts come from the emulator (every instruction of every executed block). Cycles are an
ESTIMATE: per-class costs from Arm's Technical Reference Manuals, with no cache, flash wait
state or bus contention modelled (zero-wait-state memory, as with ART/TCM at full speed).

| class            | Cortex-M4 / M33 (TRM 3.3.1)     | Cortex-M0+ (TRM 3.3)    | Cortex-M7 (dual issue)  |
|------------------|---------------------------------|-------------------------|-------------------------|
| alu              | 1                               | 1                       | 0.5                     |
| mul (32x32->32)  | 1                               | 1 (RP2040 fast mul)     | 0.5                     |
| mac / simd (SMLAD, SMLABB, SMULL, SMLAL, MLA, SXTB16...) | 1        | -         | 1                       |
| div (SDIV/UDIV)  | 7 (2..12 data-dependent; mean)  | (no divider: libgcc)    | 7                       |
| load / store     | 2, or 1 after another load/store (pipelined) | 2          | 1                       |
| ldm/stm/push/pop | 1 + N registers (+2 with PC)    | 1 + N (+2 with PC)      | 1 + N/2                 |
| branch           | taken 1 + 2 refill; not taken 1 | taken 2 (BL 3); not 1   | 1 (predicted)           |
| fpu              | 1 (VDIV/VSQRT 14); VLDR/VSTR as LDR/STR; VLDM/VSTM/VPUSH/VPOP 1 + N words | - | 1 |
| it               | 0 (folded)                      | -                       | 0                       |

Conditional branches: a block's final conditional branch is counted taken when it jumps
backwards (loops) and not taken when it jumps forwards; unconditional branches are taken.

Load/store pipelining across blocks: the emulator's blocks also end without a branch (Unicorn
ends a translation block at every 1 KB page boundary and after 512 instructions, so long
straight-line kernels are split). A block that ends with a load or store falls through to the
next address; when the block there starts with a load or store, that first access pipelines
as it would inside one block (``carried``).
"""

from __future__ import annotations

from dataclasses import dataclass

CLASSES = ("alu", "mul", "mac", "div", "load", "store", "ldm", "branch", "fpu", "it")

# per-core cost table: class -> cycles (ldm: cost per register; branch: taken cost)
TABLES: dict[str, dict[str, float]] = {
    "cortex-m4": {"alu": 1, "mul": 1, "mac": 1, "div": 7, "load": 2, "store": 2, "ldm_base": 1,
                  "ldm_reg": 1, "branch_taken": 3, "branch_not": 1, "fpu": 1, "fpu_div": 14,
                  "it": 0, "pipelined_ls": 1},
    "cortex-m33": {"alu": 1, "mul": 1, "mac": 1, "div": 7, "load": 2, "store": 2, "ldm_base": 1,
                   "ldm_reg": 1, "branch_taken": 3, "branch_not": 1, "fpu": 1, "fpu_div": 14,
                   "it": 0, "pipelined_ls": 1},
    "cortex-m0plus": {"alu": 1, "mul": 1, "mac": 1, "div": 7, "load": 2, "store": 2,
                      "ldm_base": 1, "ldm_reg": 1, "branch_taken": 2, "branch_not": 1, "fpu": 1,
                      "fpu_div": 14, "it": 0, "pipelined_ls": 2},
    "cortex-m7": {"alu": 0.5, "mul": 0.5, "mac": 1, "div": 7, "load": 1, "store": 1,
                  "ldm_base": 1, "ldm_reg": 0.5, "branch_taken": 1, "branch_not": 1, "fpu": 1,
                  "fpu_div": 14, "it": 0, "pipelined_ls": 1},
}

MAC_MNEMONICS = {
    "smlad", "smladx", "smlsd", "smuad", "smusd", "smlabb", "smlabt", "smlatb", "smlatt",
    "smulbb", "smulbt", "smultb", "smultt", "smlawb", "smlawt", "smulwb", "smulwt", "smull",
    "umull", "smlal", "umlal", "smmul", "smmulr", "smmla", "smmlar", "mla", "mls", "sxtb16",
    "sxtab16", "uxtb16", "uxtab16", "qadd", "qsub", "qadd16", "sadd16", "ssub16", "ssat",
    "usat", "ssat16", "usat16", "pkhbt", "pkhtb", "smlald", "smlaldx", "sel", "sadd8", "qadd8",
}


def classify(mnemonic: str, op_str: str) -> str:
    """Instruction class of a capstone (Thumb) mnemonic."""
    m = mnemonic.lower().split(".")[0]
    if m.startswith("it"):
        return "it"
    if m.startswith("v"):
        return "fpu"
    if m in ("sdiv", "udiv"):
        return "div"
    if m in MAC_MNEMONICS:
        return "mac"
    if m.startswith("mul") or m in ("muls",):
        return "mul"
    if m.startswith(("ldm", "stm", "push", "pop")):
        return "ldm"
    if m.startswith("ldr") or m.startswith("ldrex"):
        return "load"
    if m.startswith("str"):
        return "store"
    if m in ("b", "bl", "bx", "blx", "cbz", "cbnz", "tbb", "tbh") or (
            m.startswith("b") and len(m) in (3,) and m[1:] in CONDITIONS):
        return "branch"
    return "alu"


CONDITIONS = {"eq", "ne", "cs", "hs", "cc", "lo", "mi", "pl", "vs", "vc", "hi", "ls", "ge",
              "lt", "gt", "le", "al"}


@dataclass
class BlockCost:
    instructions: int
    cycles: float
    classes: dict[str, int]
    macs_simd: int  # dual-MAC instructions (SMLAD family): 2 MACs each
    ends_ls: bool = False  # last instruction a load/store (no branch: falls through)


def block_cost(insns: list, core: str) -> BlockCost:
    """Cycles of one basic block given capstone instructions (address order)."""
    t = TABLES[core]
    cycles = 0.0
    classes: dict[str, int] = {}
    prev_ls = False
    simd = 0
    for k, ins in enumerate(insns):
        cls = classify(ins.mnemonic, ins.op_str)
        classes[cls] = classes.get(cls, 0) + 1
        m = ins.mnemonic.lower().split(".")[0]
        if cls in ("load", "store"):
            cycles += t["pipelined_ls"] if prev_ls else t[cls]
            if "pc" in ins.op_str.split(",")[0]:
                cycles += 2
        elif cls == "ldm":
            cycles += t["ldm_base"] + t["ldm_reg"] * _core_regs(ins.op_str)
            if "pc" in ins.op_str:
                cycles += 2
        elif cls == "branch":
            last = k == len(insns) - 1
            conditional = m in ("cbz", "cbnz") or (m.startswith("b") and m[1:] in CONDITIONS
                                                   and m not in ("bl", "bx"))
            if conditional and last:
                target = _branch_target(ins)
                taken = target is not None and target <= ins.address
                cycles += t["branch_taken"] if taken else t["branch_not"]
            else:
                cycles += t["branch_taken"]
        elif cls == "fpu":
            if m in ("vldr", "vstr"):      # single load/store: as LDR/STR
                cycles += t["pipelined_ls"] if prev_ls else t["load"]
            elif m in ("vldm", "vstm", "vpush", "vpop") or m.startswith(("vldm", "vstm")):
                cycles += t["ldm_base"] + t["ldm_reg"] * _fp_words(ins.op_str)
            else:
                cycles += t["fpu_div"] if m in ("vdiv", "vsqrt") else t["fpu"]
        else:
            cycles += t[cls]
        if m in ("smlad", "smladx", "smuad", "smlsd", "smusd", "smlald", "smlaldx"):
            simd += 1
        prev_ls = cls in ("load", "store") or m in ("vldr", "vstr")
    ends_ls = bool(insns) and prev_ls and not _writes_pc(insns[-1])
    return BlockCost(len(insns), cycles, classes, simd, ends_ls)


def _writes_pc(ins) -> bool:
    """A load into PC (a branch)."""
    return "pc" in ins.op_str.split(",")[0]


def first_ls_saving(ins, core: str) -> float:
    """Cycles ``block_cost`` charged a block's first instruction ``ins`` beyond its cost right
    after a load/store: load - pipelined for a load/store (VLDR/VSTR), else 0."""
    t = TABLES[core]
    cls = classify(ins.mnemonic, ins.op_str)
    m = ins.mnemonic.lower().split(".")[0]
    if cls in ("load", "store"):
        return t[cls] - t["pipelined_ls"]
    if m in ("vldr", "vstr"):
        return t["load"] - t["pipelined_ls"]
    return 0.0


def carried(blocks: dict[tuple[int, int], int], costs: dict[tuple[int, int], BlockCost],
            first_insn, core: str) -> float:
    """Cycles to subtract from the sum of ``blocks``' costs (tally per (address, size)) for
    load/store pipelining carried across block splits: every execution of a block that ends
    with a load/store is followed by the instruction at address + size (``first_insn``:
    address -> capstone instruction, or None), whose first-access cost ``first_ls_saving``
    then does not apply."""
    saved = 0.0
    for (addr, size), n in blocks.items():
        if n and costs[(addr, size)].ends_ls:
            ins = first_insn(addr + size)
            if ins is not None:
                saved += n * first_ls_saving(ins, core)
    return saved


def _reg_list(op_str: str) -> list[tuple[str, int]]:
    """The register list in braces of LDM/STM/PUSH/POP/VLDM/...: (first register, count) per
    item, a range such as ``d8-d11`` counting its registers."""
    items = op_str[op_str.find("{") + 1:op_str.rfind("}")].replace(" ", "").split(",")
    out = []
    for r in items:
        lo, _, hi = r.partition("-")
        ranged = hi and lo[1:].isdigit() and hi[1:].isdigit()
        out.append((lo, int(hi[1:]) - int(lo[1:]) + 1 if ranged else 1))
    return out


def _core_regs(op_str: str) -> int:
    """Registers moved by LDM/STM/PUSH/POP: the list in braces (the base register of
    ``ldm r0!, {r1, r2}`` is not moved, and its writeback costs no cycle)."""
    if "{" not in op_str:
        return 1
    return max(sum(n for _, n in _reg_list(op_str)), 1)


def _fp_words(op_str: str) -> int:
    """Words moved by VLDM/VSTM/VPUSH/VPOP: N single or 2N double registers in the list."""
    return max(sum(2 * n if lo.startswith("d") else n for lo, n in _reg_list(op_str)), 1)


def _branch_target(ins) -> int | None:
    op = ins.op_str.split(",")[-1].strip()
    if op.startswith("#"):
        try:
            return int(op[1:], 0)
        except ValueError:
            return None
    return None
