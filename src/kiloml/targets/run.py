"""Run a model's generated C for a board's core in the emulator, on many input samples.

``EmulatorBuild(graph, board)`` cross-compiles the generated C once, exactly as ``kiloml
profile`` builds it (same flags, kernels, bare-metal startup and linker script), with a harness
that calls ``model_invoke`` once per sample of an input table and stores each output in a table
in RAM. The input table is ``const`` data in flash, which the startup code never writes: ``run``
copies the samples into the loaded image of the same ELF (no rebuild), emulates from reset to
the end marker (kiloml.targets.emulator) and reads the outputs back.

Bounds: the tables hold at most ``MAX_SAMPLES`` samples (and ``MAX_TABLE_BYTES`` bytes each),
so one emulation runs at most that many invocations; more samples run as further emulations
of the same ELF. The first emulation runs one sample and measures its instruction count, so
later ones stay within half the emulator's instruction limit however large the model is.
Every sample slot starts on an 8-byte boundary (Cortex-M0+ faults on unaligned words).
"""

from __future__ import annotations

import copy
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np

from kiloml.codegen.c import CTYPES, CompileResult, generate_c
from kiloml.errors import KilomlError, ToolchainError
from kiloml.ir.graph import DTYPES, Graph, Tensor
from kiloml.targets.emulator import MAX_INSTRUCTIONS, ElfImage, emulate
from kiloml.targets.boards import load_boards
from kiloml.targets.profile import PROFILE_FLAGS, default_runtime
from kiloml.targets.toolchain import arm_gcc

MAX_SAMPLES = 64
MAX_TABLE_BYTES = 1 << 20
ALIGN = 8
PREFIX = "model"


def _stride(t: Tensor) -> int:
    """Bytes of one sample slot: the tensor, rounded up to ``ALIGN``."""
    return -(-max(t.nbytes, 1) // ALIGN) * ALIGN


def _slot(t: Tensor) -> int:
    """Elements of one sample slot of tensor ``t``'s table."""
    return _stride(t) // DTYPES[t.dtype].itemsize


def harness_source(result: CompileResult, capacity: int) -> str:
    """C of the run harness: tables of ``capacity`` samples, one invoke per sample."""
    g = result.graph
    ins = [g.tensors[t] for t in g.inputs]
    outs = [g.tensors[t] for t in g.outputs]
    lines = ["/* kiloml emulator run harness: one invoke per sample of an input table.",
             " * kiloml.targets.run writes the samples and their count into the image. */",
             "#include <stdint.h>", f'#include "{result.prefix}.h"', "",
             "/* const data stays in flash; main reads the count through a volatile lvalue so",
             " * the compiler cannot fold in this initial value */",
             f"const uint32_t kml_run_count = {capacity}u;"]
    for k, t in enumerate(ins):
        lines.append(f"__attribute__((aligned({ALIGN}))) const {CTYPES[t.dtype]} "
                     f"kml_run_in{k}[{capacity * _slot(t)}] = {{0}};")
    for k, t in enumerate(outs):
        lines.append(f"__attribute__((aligned({ALIGN}))) {CTYPES[t.dtype]} "
                     f"kml_run_out{k}[{capacity * _slot(t)}];")
    args = [f"&kml_run_in{k}[i * {_slot(t)}u]" for k, t in enumerate(ins)]
    args += [f"&kml_run_out{k}[i * {_slot(t)}u]" for k, t in enumerate(outs)]
    lines += [
        "uint32_t kml_run_done;",
        "int32_t kml_run_status;",
        "",
        "int main(void);",
        "__attribute__((noinline)) void kml_profile_begin(void);",
        "__attribute__((noinline)) void kml_profile_end(void);",
        'void kml_profile_begin(void) { __asm volatile ("" ::: "memory"); }',
        'void kml_profile_end(void) { __asm volatile ("" ::: "memory"); }',
        "",
        "int main(void)",
        "{",
        "    uint32_t i;",
        "    const uint32_t n = *(const volatile uint32_t *)&kml_run_count;",
        "    kml_profile_begin();",
        "    for (i = 0u; i < n; ++i) {",
        f"        const int rc = {result.prefix}_invoke({', '.join(args)});",
        "        if (rc != 0) {",
        "            kml_run_status = (int32_t)rc;",
        "            break;",
        "        }",
        "        kml_run_done = i + 1u;",
        "    }",
        "    kml_profile_end();",
        "    return 0;",
        "}",
        "",
    ]
    return "\n".join(lines)


def board_core(board: str) -> str:
    """The Cortex-M core of a board in boards.toml that the emulator can run."""
    boards = load_boards()
    if board not in boards:
        raise KilomlError(f"unknown board {board!r} (known: {', '.join(sorted(boards))})")
    core = boards[board].core
    if core not in PROFILE_FLAGS:
        raise KilomlError(f"board {board!r} has a {core} core: the emulator runs only "
                          f"{', '.join(sorted(PROFILE_FLAGS))}")
    return core


class EmulatorBuild:
    """A model's generated C, built for one board's core, run in the emulator.

    ``runtime`` picks the kernels (default: the board's, as ``kiloml profile`` does);
    ``workdir`` keeps the sources and the ELF (a temporary directory otherwise);
    ``max_samples`` lowers the table size (samples per emulation) below ``MAX_SAMPLES``."""

    def __init__(self, graph: Graph, board: str, runtime: str | None = None,
                 workdir: str | Path | None = None, opt: str = "-O2",
                 max_samples: int = MAX_SAMPLES) -> None:
        self.board = board
        self.core = board_core(board)
        self.runtime = runtime or default_runtime(self.core)
        self.result = generate_c(graph, PREFIX, command="kiloml.targets.run", runtime=self.runtime)
        g = self.result.graph
        self.inputs = [g.tensors[t] for t in g.inputs]
        self.outputs = [g.tensors[t] for t in g.outputs]
        widest = max(_stride(t) for t in self.inputs + self.outputs)
        self.capacity = max(1, min(max_samples, MAX_SAMPLES, MAX_TABLE_BYTES // widest))
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="kiloml_run_")
        self.dir = Path(workdir or self._tmp.name)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.image = self._build(opt)
        self._per_sample: int | None = None      # instructions of one invoke, once measured

    def _build(self, opt: str) -> ElfImage:
        wd = self.dir
        self.result.write(wd)
        (wd / "run_main.c").write_text(harness_source(self.result, self.capacity))
        bm = resources.files("kiloml.targets") / "baremetal"
        (wd / "startup.c").write_text((bm / "startup.c").read_text())
        (wd / "link.ld").write_text((bm / "link.ld").read_text())
        elf = wd / "model.elf"
        cmd = [arm_gcc(), *PROFILE_FLAGS[self.core], "-std=c99", "-Wall", "-Wextra",
               "-Wconversion", "-Werror", opt, "-ffunction-sections", "-fdata-sections",
               "-nostartfiles", "--specs=nano.specs", "-Wl,--gc-sections", "-T",
               str(wd / "link.ld"), "-I", str(wd), *sorted(str(p) for p in wd.glob("*.c")),
               "-o", str(elf)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ToolchainError(f"arm-none-eabi-gcc failed:\n{proc.stderr.strip()[:3000]}")
        return ElfImage(elf)

    def run(self, *inputs: np.ndarray) -> list[np.ndarray]:
        """Inputs: one array per model input, samples stacked on a new leading axis
        (N, *tensor shape); returns one (N, *tensor shape) array per model output."""
        if len(inputs) != len(self.inputs):
            raise KilomlError(f"model has {len(self.inputs)} inputs, got {len(inputs)} arrays")
        count = int(inputs[0].shape[0]) if inputs else 0
        results: list[list[np.ndarray]] = [[] for _ in self.outputs]
        i = 0
        while i < count:
            n = self._chunk()
            outs, instructions = self._emulate([a[i:i + n] for a in inputs])
            n = len(outs[0])
            if self._per_sample is None:
                self._per_sample = max(instructions // n, 1)
            for k, o in enumerate(outs):
                results[k].append(o)
            i += n
        return [np.concatenate(r) if r else
                np.zeros((0,) + tuple(t.shape), DTYPES[t.dtype])
                for r, t in zip(results, self.outputs)]

    def _chunk(self) -> int:
        """Samples for the next emulation: one until an invoke has been measured, then as many
        as fit the tables and half the emulator's instruction limit."""
        if self._per_sample is None:
            return 1
        return max(1, min(self.capacity, MAX_INSTRUCTIONS // 2 // self._per_sample))

    def _emulate(self, chunk: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
        n = len(chunk[0])
        patches = {"kml_run_count": np.uint32(n).tobytes()}
        for k, (t, a) in enumerate(zip(self.inputs, chunk)):
            if a.shape[1:] != tuple(t.shape) or a.dtype != DTYPES[t.dtype]:
                raise KilomlError(f"input {k} must be {t.dtype} (N, {list(t.shape)}), got "
                                  f"{a.dtype} {list(a.shape)}")
            table = np.zeros((n, _stride(t)), np.uint8)
            table[:, :t.nbytes] = np.ascontiguousarray(a).view(np.uint8).reshape(n, t.nbytes)
            patches[f"kml_run_in{k}"] = table.tobytes()
        read = {f"kml_run_out{k}": n * _stride(t) for k, t in enumerate(self.outputs)}
        read.update({"kml_run_done": 4, "kml_run_status": 4})
        emu = emulate(_patched(self.image, patches), self.core, read_back=read)
        done = int(np.frombuffer(emu.memory["kml_run_done"], np.uint32)[0])
        if done != n:
            status = int(np.frombuffer(emu.memory["kml_run_status"], np.int32)[0])
            raise ToolchainError(f"{PREFIX}_invoke returned {status} on the {self.core} "
                                 f"emulator (sample {done} of a run of {n})")
        outs = []
        for k, t in enumerate(self.outputs):
            raw = np.frombuffer(emu.memory[f"kml_run_out{k}"], np.uint8).reshape(n, _stride(t))
            outs.append(np.ascontiguousarray(raw[:, :t.nbytes]).view(DTYPES[t.dtype])
                        .reshape((n,) + tuple(t.shape)))
        return outs, emu.instructions


def _patched(image: ElfImage, patches: dict[str, bytes]) -> ElfImage:
    """A copy of ``image`` whose loaded bytes hold ``patches`` (symbol -> bytes, from its
    start); each symbol must lie inside a loaded segment (flash data, not .bss)."""
    segments = [(addr, bytearray(data)) for addr, data in image.segments]
    for name, data in patches.items():
        addr, size = image.symbols.get(name, (None, 0))
        if addr is None or len(data) > size:
            raise ToolchainError(f"{image.path}: symbol {name} missing or smaller than "
                                 f"{len(data)} bytes")
        seg = next((s for s in segments if s[0] <= addr and addr + len(data) <= s[0] + len(s[1])),
                   None)
        if seg is None:
            raise ToolchainError(f"{image.path}: {name} is not in a loaded segment")
        seg[1][addr - seg[0]:addr - seg[0] + len(data)] = data
    out = copy.copy(image)
    out.segments = [(addr, bytes(data)) for addr, data in segments]
    return out
