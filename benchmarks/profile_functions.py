#!/usr/bin/env python3
"""Where one inference's instructions go, per C function (and the hottest basic blocks).

Builds an MLPerf Tiny model (or any .tflite) for a board's core exactly as ``kiloml profile``
does (arm-none-eabi-gcc -O2, the core's default kernels), runs one inference in the Unicorn
emulator and attributes every executed basic block to the ELF function containing it
(instructions counted by disassembling each block). Meant for kernel work: which steps
(inner products, requantization, window copies, library calls) to attack next.
Run: .venv/bin/python benchmarks/profile_functions.py [MODEL|PATH.tflite] [--board ID]
     [--top N]     (default kws_ref_model on pico, 12 functions and 12 blocks)
"""

from __future__ import annotations

import bisect
import os
import sys
import tempfile
from pathlib import Path

import capstone
import numpy as np

from kiloml.io.tflite_reader import read_tflite
from kiloml.targets.cycles import block_cost
from kiloml.targets.emulator import emulate
from kiloml.targets.profile import build_elf, load_boards

SHARED = Path(os.environ.get("KILOML_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def _arg(flag: str, default: str) -> str:
    return sys.argv[sys.argv.index(flag) + 1] if flag in sys.argv else default


def main() -> None:
    pos = [a for i, a in enumerate(sys.argv[1:], 1)
           if not a.startswith("--") and not sys.argv[i - 1].startswith("--")]
    model = pos[0] if pos else "kws_ref_model"
    path = Path(model) if model.endswith(".tflite") else (
        SHARED / "models" / "mlperf_tiny" / f"{model}.tflite")
    board, top = _arg("--board", "pico"), int(_arg("--top", "12"))
    core = load_boards()[board].core
    g = read_tflite(path)
    rng = np.random.default_rng(0)
    inputs = [rng.integers(-128, 128, g.tensors[t].shape, dtype=np.int8) for t in g.inputs]
    with tempfile.TemporaryDirectory(prefix="kiloml_fn_") as wd:
        b = build_elf(g, core, inputs, Path(wd))
        emu = emulate(b.elf, core)
    funcs = sorted((a & ~1, s, name) for name, (a, s) in b.elf.symbols.items()
                   if s > 0 and not name.startswith("$"))
    starts = [f[0] for f in funcs]
    md = capstone.Cs(capstone.CS_ARCH_ARM, capstone.CS_MODE_THUMB | capstone.CS_MODE_MCLASS)
    code = {a: d for a, d in b.elf.segments}
    per_fn: dict[str, int] = {}
    per_fn_cyc: dict[str, float] = {}
    per_block: list[tuple[int, int, int, str]] = []
    for seg in emu.segments:
        for (addr, size), n in seg.blocks.items():
            if n == 0:
                continue
            base = max(a for a in code if a <= addr)
            dis = list(md.disasm(code[base][addr - base: addr - base + size], addr))
            ins = len(dis)
            cyc = block_cost(dis, core).cycles * n
            i = bisect.bisect_right(starts, addr) - 1
            name = funcs[i][2] if i >= 0 and addr < funcs[i][0] + funcs[i][1] else "?"
            per_fn[name] = per_fn.get(name, 0) + ins * n
            per_fn_cyc[name] = per_fn_cyc.get(name, 0.0) + cyc
            per_block.append((ins * n, addr, n, name))
    total = sum(per_fn.values())
    print(f"{path.stem} on {board} ({core}): {emu.instructions:,} instructions "
          f"(blocks attributed: {total:,})")
    ctot = sum(per_fn_cyc.values())
    print(f"(cycles: the cycle model per block, without the pipelining carried across block "
          f"splits: {ctot:,.0f})")
    print(f"{'function':40s} {'instructions':>13s} {'share':>6s} {'cycles(est)':>12s} {'share':>6s}")
    for name, v in sorted(per_fn.items(), key=lambda kv: -kv[1])[:top]:
        c = per_fn_cyc[name]
        print(f"{name:40s} {v:>13,} {v / total:6.1%} {c:>12,.0f} {c / ctot:6.1%}")
    print(f"\n{'block':>10s} {'runs':>9s} {'instructions':>13s}  function")
    for v, addr, n, name in sorted(per_block, reverse=True)[:top]:
        print(f"{addr:>#10x} {n:>9,} {v:>13,}  {name}")


if __name__ == "__main__":
    main()
