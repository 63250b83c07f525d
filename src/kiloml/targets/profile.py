"""``kiloml profile``: build for the board's core, run the ELF in the emulator, report figures.

Flash and RAM are measured from the linked ELF (sections, not estimates); instructions are
counted in the emulator; cycles, latency and energy are estimates from the cycle model
(``cycles.py``) and the board's datasheet figures (``boards.toml``).
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kiloml.codegen.c import CTYPES, CompileResult, generate_c, io_specs
from kiloml.errors import KilomlError
from kiloml.ir.graph import DTYPES, Graph
from kiloml.ir.interpreter import Interpreter
from kiloml.ir.ops import REGISTRY
from kiloml.targets import harness
from kiloml.targets.boards import Board, load_boards
from kiloml.targets.emulator import FLASH_BASE, RAM_BASE, ElfImage, emulate

# Profiling builds use the soft-float ABI: the emulator starts with the FPU disabled, and the
# integer kernels do not use it (only float QUANTIZE/DEQUANTIZE at model edges would).
PROFILE_FLAGS = {
    "cortex-m0plus": ["-mcpu=cortex-m0plus", "-mthumb", "-mfloat-abi=soft"],
    "cortex-m4": ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=soft"],
    "cortex-m7": ["-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=soft"],
    "cortex-m33": ["-mcpu=cortex-m33", "-mthumb", "-mfloat-abi=soft"],
}
DSP_CORES = {"cortex-m4", "cortex-m7", "cortex-m33"}




ARMV6M_CORES = {"cortex-m0plus"}
RUNTIME_CORES = {"armv7em": "Cortex-M4, M7 and M33", "armv6m": "Cortex-M0+"}


def default_runtime(core: str) -> str:
    """The kernel set a core runs: the DSP-extension kernels (armv7em) on Cortex-M4/M7/M33,
    the Armv6-M kernels (armv6m) on the Cortex-M0+, portable C elsewhere."""
    if core in DSP_CORES:
        return "armv7em"
    return "armv6m" if core in ARMV6M_CORES else "portable"


def harness_source(result: CompileResult, inputs: list[np.ndarray]) -> str:
    """The profiling harness of a generated model: ``inputs`` as ``kml_profile_<input>``,
    the outputs as ``kml_profile_<output>``, one ``<prefix>_invoke`` between the markers."""
    ins, outs = io_specs(result.graph)
    buffers = [harness.Buffer(f"kml_profile_{s.name}", CTYPES[s.tensor.dtype], np.asarray(a))
               for s, a in zip(ins, inputs)]
    buffers += [harness.Buffer(f"kml_profile_{s.name}", CTYPES[s.tensor.dtype], None,
                               s.tensor.size) for s in outs]
    call = f"{result.prefix}_invoke({', '.join(b.name for b in buffers)})"
    return harness.harness_source("kiloml profiling harness: fixed input, markers around one "
                                  "invoke", f"{result.prefix}.h", buffers, call)


@dataclass
class Build:
    elf: ElfImage
    result: CompileResult
    core: str
    runtime: str
    input_bytes: int


def build_elf(g: Graph, core: str, inputs: list[np.ndarray], workdir: Path,
              runtime: str | None = None, opt: str = "-O2", prefer: str = "balanced",
              options: dict[int, str] | None = None) -> Build:
    runtime = runtime or default_runtime(core)
    res = generate_c(g, "model", command="kiloml profile", runtime=runtime, prefer=prefer,
                     options=options)
    res.write(workdir)
    (workdir / "profile_main.c").write_text(harness_source(res, inputs))
    elf = harness.build_elf(workdir, PROFILE_FLAGS[core], "model.elf", opt)
    input_bytes = sum(np.asarray(a).nbytes for a in inputs)
    return Build(elf, res, core, runtime, input_bytes)


def elf_sizes(image: ElfImage) -> dict[str, int]:
    """Flash = vector table + code + read-only data + initial values of .data; RAM = .data + .bss."""
    flash = ram = 0
    for name, (addr, size, flags, stype) in image.sections.items():
        if not flags & 0x2:  # SHF_ALLOC
            continue
        if FLASH_BASE <= addr < RAM_BASE:
            flash += size
        elif addr >= RAM_BASE:
            ram += size
            if stype != "SHT_NOBITS":
                flash += size  # initial values stored in flash
    return {"flash": flash, "ram": ram}


def _kernel_calls(res: CompileResult) -> list[tuple[int, str]]:
    """(node index, kernel function) in execution order, as the generator reports them
    (nodes that alias their input run no kernel)."""
    return [(n, fn) for n, fn in enumerate(res.kernels) if fn]


def profile_graph(g: Graph, board_id: str, runtime: str | None = None, seed: int = 0,
                  workdir: str | Path | None = None, prefer: str = "balanced",
                  options: dict[int, str] | None = None) -> dict:
    """Build ``g`` for the board's core, run one inference in the emulator, compare every
    layer with the reference interpreter. ``prefer`` / ``options``: the flash-for-speed
    choice (``generate_c``); the result's ``choices`` reports it per node, with the measured
    cycles of each such layer beside the estimate."""
    boards = load_boards()
    if board_id not in boards:
        raise KilomlError(f"unknown board {board_id!r} (known: {', '.join(sorted(boards))})")
    board = boards[board_id]
    core = board.core
    rng = np.random.default_rng(seed)
    inputs = []
    for t in g.inputs:
        spec = g.tensors[t]
        if spec.dtype == "float32":
            inputs.append(rng.normal(0, 1, spec.shape).astype(np.float32))
        else:
            info = np.iinfo(DTYPES[spec.dtype])
            inputs.append(rng.integers(info.min, info.max + 1, spec.shape, dtype=DTYPES[spec.dtype]))
    ref = Interpreter(g).run(*inputs)
    out: dict = {"board": board_id, "board_name": board.name, "core": core,
                 "clock_hz": int(board.clock_hz), "caveat": board.caveat or None}
    if core not in PROFILE_FLAGS:
        return _analytic(g, board, out)
    tmp = None if workdir else tempfile.TemporaryDirectory(prefix="kiloml_profile_")
    wd = Path(workdir or tmp.name)
    wd.mkdir(parents=True, exist_ok=True)
    try:
        b = build_elf(g, core, inputs, wd, runtime, prefer=prefer, options=options)
        calls = _kernel_calls(b.result)
        ins, outs = io_specs(b.result.graph)
        snap = _layer_snapshots(b, calls)
        emu = emulate(b.elf, core, kernel_entries=sorted({f for _, f in calls}),
                      read_back={f"kml_profile_{s.name}": s.tensor.nbytes for s in outs},
                      snapshots=[x[1] if x else None for x in snap])
    finally:
        if tmp is not None:
            tmp.cleanup()
    match = all(np.array_equal(np.frombuffer(emu.memory[f"kml_profile_{s.name}"],
                                             DTYPES[s.tensor.dtype]).reshape(s.tensor.shape), r)
                for s, r in zip(outs, ref))
    layer_match = _compare_layers(b.result.graph, inputs, snap, emu.snapshots)
    sizes = elf_sizes(b.elf)
    lg = b.result.graph
    macs = sum(REGISTRY[n.op].macs(lg, n) for n in lg.nodes)
    flash = sizes["flash"] - b.input_bytes
    ram = sizes["ram"] + emu.stack_bytes
    clock = float(board.clock_hz)
    latency_ms = emu.cycles / clock * 1e3
    out.update({
        "runtime": b.runtime,
        "prefer": prefer,
        "flash_bytes": flash,
        "ram_bytes": ram,
        "arena_bytes": b.result.plan.arena_bytes,
        "stack_bytes": emu.stack_bytes,
        "weights_bytes": g.weights_bytes(),
        "flash_overhead_bytes": flash - g.weights_bytes(),
        "macs": macs,
        "instructions": emu.instructions,
        "cycles": int(round(emu.cycles)),
        "cycles_estimated": True,
        "macs_per_cycle": round(macs / emu.cycles, 3) if emu.cycles else None,
        "macs_per_instruction": round(macs / emu.instructions, 3) if emu.instructions else None,
        "latency_ms": round(latency_ms, 4),
        "energy_uj": energy_uj(latency_ms, board),
        "fits": flash <= board.flash_bytes and ram <= board.ram_bytes,
        "flash_available_bytes": int(board.flash_bytes),
        "ram_available_bytes": int(board.ram_bytes),
        "output_matches_reference": bool(match),
        "layers_checked": len(layer_match),
        "layers_match_reference": all(layer_match.values()),
        "layers": _layers(lg, calls, emu),
    })
    for layer in out["layers"]:
        if layer["node"] in layer_match:
            layer["matches_reference"] = layer_match[layer["node"]]
    measured = {layer["node"]: layer["cycles"] for layer in out["layers"]}
    out["choices"] = [{**c, "cycles": measured.get(c["node"])} for c in b.result.choices]
    return out


def _layer_snapshots(b: Build, calls) -> list:
    """Per kernel call: (output tensor, (address, bytes)) to read from the arena once the call
    returns, or None where another node's code runs before the next kernel call (its output
    could be overwritten in place by then)."""
    lg, plan = b.result.graph, b.result.plan
    arena = f"{b.result.prefix}_arena"
    if arena not in b.elf.symbols:
        return [None] * len(calls)
    base = b.elf.addr(arena)
    called = {n for n, _ in calls}
    out = []
    for j, (n, _) in enumerate(calls):
        nxt = calls[j + 1][0] if j + 1 < len(calls) else len(lg.nodes)
        between = [m for m in range(n + 1, nxt) if m not in called
                   and not REGISTRY[lg.nodes[m].op].is_alias()]
        t = lg.nodes[n].outputs[0]
        if between or t not in plan.offsets:
            out.append(None)
        else:
            out.append((t, (base + plan.offsets[t], lg.tensors[t].nbytes)))
    return out


def _compare_layers(lg: Graph, inputs, snap, got) -> dict[int, bool]:
    """Node -> its output in the emulator's arena equals the reference interpreter's."""
    values = Interpreter(lg).run_all(*inputs)
    res = {}
    for (j, s), data in zip(enumerate(snap), got):
        if s is None or data is None:
            continue
        t = s[0]
        ref = values[t]
        res[_node_of(lg, t)] = bool(np.array_equal(
            np.frombuffer(data, ref.dtype).reshape(ref.shape), ref))
    return res


def _node_of(lg: Graph, t: int) -> int:
    return next(i for i, n in enumerate(lg.nodes) if t in n.outputs)


def _layers(lg: Graph, calls, emu) -> list[dict]:
    segs = emu.segments[1:]  # [0] is invoke's own prologue before the first kernel
    if len(segs) != len(calls):
        return []
    layers = []
    for (n, fn), seg in zip(calls, segs):
        node = lg.nodes[n]
        macs = REGISTRY[node.op].macs(lg, node)
        layers.append({"node": n, "op": node.op, "name": node.name, "kernel": fn, "macs": macs,
                       "instructions": seg.instructions, "cycles": int(round(seg.cycles)),
                       "macs_per_cycle": round(macs / seg.cycles, 3) if seg.cycles else None})
    return layers


def _analytic(g: Graph, board: Board, out: dict) -> dict:
    """No cross compiler for this core: a MAC-count estimate, marked as such everywhere."""
    macs = sum(REGISTRY[n.op].macs(g, n) for n in g.nodes)
    mpc = float(board.assumed_macs_per_cycle)
    cycles = macs / mpc
    latency_ms = cycles / float(board.clock_hz) * 1e3
    from kiloml.ir.planner import plan_memory

    arena = plan_memory(g).arena_bytes
    out.update({
        "runtime": "analytic-estimate",
        "estimate": f"analytic: no {board.core} compiler here; cycles = MACs / {mpc} "
                    "(assumed MAC/cycle); flash = weights + 10 KB, RAM = arena + 2 KB",
        "flash_bytes": g.weights_bytes() + 10240, "ram_bytes": arena + 2048,
        "arena_bytes": arena, "stack_bytes": None, "weights_bytes": g.weights_bytes(),
        "macs": macs, "instructions": None, "cycles": int(cycles), "cycles_estimated": True,
        "macs_per_cycle": mpc, "latency_ms": round(latency_ms, 4),
        "energy_uj": energy_uj(latency_ms, board),
        "fits": g.weights_bytes() + 10240 <= board.flash_bytes and arena + 2048 <= board.ram_bytes,
        "flash_available_bytes": int(board.flash_bytes),
        "ram_available_bytes": int(board.ram_bytes),
        "output_matches_reference": None, "layers": [],
    })
    return out


def energy_uj(latency_ms: float, board: Board) -> float | None:
    """µJ per inference = ms x mW; None where the board's datasheet power is not known."""
    p = float(board.active_power_mw)
    return None if math.isnan(p) else round(latency_ms * p, 3)


def battery_days(res: dict, board: Board, rate_hz: float, battery_mah: float) -> float | None:
    """Days on a battery: inferences at ``rate_hz``, idle (sleep) power in between.

    Battery energy = mAh x the board's supply voltage; None where power figures or the
    latency are unknown.
    If inferences cannot keep up with ``rate_hz`` the MCU is simply always active."""
    if math.isnan(float(board.active_power_mw)) or math.isnan(float(board.idle_power_mw)):
        return None
    if res.get("latency_ms") is None:  # not measured (no cross compiler for a block): n/a
        return None
    lat_s = res["latency_ms"] / 1e3
    duty = min(rate_hz * lat_s, 1.0)
    avg_mw = duty * float(board.active_power_mw) + (1 - duty) * float(board.idle_power_mw)
    energy_mwh = battery_mah * float(board.vdd_v)
    return round(energy_mwh / avg_mw / 24.0, 2)


def duty_cycle(cycles: float, period_s: float, clock_hz: float) -> float:
    """The fraction of ``period_s`` the core is busy running ``cycles`` at ``clock_hz``
    (over 1: the work does not fit its period, not real time)."""
    if not (period_s > 0 and clock_hz > 0):
        raise ValueError(f"period {period_s} s and clock {clock_hz} Hz must be > 0")
    return float(cycles) / float(clock_hz) / float(period_s)


def average_power_mw(duty: float, board: Board) -> float | None:
    """mW averaged over time: active power for ``duty`` (capped at 1) of the time, idle
    (sleep) power for the rest; None where the datasheet figures are not known."""
    active, idle = float(board.active_power_mw), float(board.idle_power_mw)
    if math.isnan(active) or math.isnan(idle):
        return None
    d = min(max(float(duty), 0.0), 1.0)
    return d * active + (1.0 - d) * idle


def battery_days_at(power_mw: float | None, board: Board, battery_mah: float) -> float | None:
    """Days on ``battery_mah`` at the board's supply voltage and an average ``power_mw``."""
    if power_mw is None or not power_mw > 0:
        return None
    return round(battery_mah * float(board.vdd_v) / power_mw / 24.0, 2)
