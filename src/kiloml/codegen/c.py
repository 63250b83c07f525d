"""IR -> standalone C99: ``<prefix>.h``, ``<prefix>.c`` and the runtime kernels the model uses.

The output is a product a firmware engineer reads and ships: deterministic (same model and
command give byte-identical files), no malloc, no stdio, no mutable globals except one static
aligned arena, one ``static`` function per node with a comment block giving shapes, scales,
zero points and multipliers, and weights as ``static const`` arrays.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Optional

import numpy as np

from kiloml.codegen.backend import BACKENDS, Backend, get_backend
from kiloml.codegen.cwriter import (NameTable, array_decl, comment, float_literal,
                                    format_array, frontmatter, identifier, struct_decl,
                                    wrap_items)
from kiloml.errors import KilomlError
from kiloml.ir.graph import Graph, Tensor
from kiloml.ir.ops import REGISTRY
from kiloml.ir.passes import pipeline
from kiloml.ir.planner import Plan, plan_memory

__all__ = ["ACCESSORS", "CTYPES", "RUNTIME", "RUNTIMES", "SLOT_ALIGN", "CompileResult",
           "EmitContext", "IOSpec", "SlotLayout", "abi_hash", "format_array", "generate_c",
           "io_specs", "sanitize", "wrap_items"]

CTYPES = {"int8": "int8_t", "uint8": "uint8_t", "int16": "int16_t", "int32": "int32_t",
          "float32": "float", "int64": "int64_t"}
ACCESSORS = {"int8": "s8", "uint8": "u8", "int16": "s16", "int32": "s32", "float32": "f32",
             "int64": "s64"}
RUNTIME = "portable"
RUNTIMES = tuple(BACKENDS)

sanitize = identifier  # the generator's name for cwriter.identifier
SLOT_ALIGN = 8  # bytes: every array of a model slot payload starts at a multiple of this


@dataclass
class SlotLayout:
    """The model's data when it lives in a flash slot instead of the firmware (``generate_c(
    slot=True)``): every constant tensor the nodes read (weights, biases) and every per-node
    array (per-channel multipliers and shifts, the Arm kernels' packed weight streams), each
    little-endian at a multiple of ``SLOT_ALIGN`` bytes, in the order the nodes first use
    them. ``entries``: (C name, C type, offset, bytes); ``payload``: the bytes."""

    entries: list[tuple[str, str, int, int]] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0

    def place(self, name: str, ctype: str, values) -> int:
        dt = {v: k for k, v in CTYPES.items()}[ctype]
        data = np.ascontiguousarray(np.asarray(values).reshape(-1), dtype=np.dtype(dt)
                                    .newbyteorder("<")).tobytes()
        pad = -self.size % SLOT_ALIGN
        self.chunks.append(bytes(pad) + data)
        off = self.size + pad
        self.entries.append((name, ctype, off, len(data)))
        self.size = off + len(data)
        return off

    @property
    def payload(self) -> bytes:
        return b"".join(self.chunks) + bytes(-self.size % SLOT_ALIGN)

    @property
    def payload_bytes(self) -> int:
        return self.size + (-self.size % SLOT_ALIGN)


@dataclass
class EmitContext:
    """Collects declarations while the backend emits the node functions; implements the
    ``kiloml.ir.ops.base.EmitContext`` protocol the ops write their portable C through, plus
    ``scratch`` for the backends' kernels."""

    graph: Graph
    prefix: str
    plan: Plan
    const_names: dict[int, str]
    backend: Backend = field(default_factory=lambda: BACKENDS[RUNTIME])
    node_index: int = 0
    modules: set[str] = field(default_factory=set)  # runtime modules: kml_<module>.h
    kernels: dict[int, str] = field(default_factory=dict)  # node -> the function it calls
    decls: list[str] = field(default_factory=list)
    accessors: set[str] = field(default_factory=set)
    consts_used: set[int] = field(default_factory=set)
    slot: Optional[SlotLayout] = None
    slot_exprs: dict[int, str] = field(default_factory=dict)

    def slot_ref(self, name: str, ctype: str, values) -> str:
        """C expression: a pointer to ``values`` in the active slot's payload."""
        off = self.slot.place(name, ctype, values)
        return f"{self.prefix}_w({off}u)"

    def use_kernel(self, module: str) -> None:
        self.modules.add(module)

    def call(self, function: str, *args: str) -> str:
        if self.node_index in self.kernels:
            raise KilomlError(f"internal error: node {self.node_index} calls two kernels "
                              f"({self.kernels[self.node_index]}, {function})")
        self.kernels[self.node_index] = function
        return f"{function}({', '.join(args)});"

    def _sym(self, suffix: str) -> str:
        return f"{self.prefix}_n{self.node_index}_{suffix}"

    def struct(self, ctype: str, suffix: str, fields) -> str:
        sym = self._sym(suffix)
        self.decls.append(struct_decl(ctype, sym, fields))
        return sym

    def array(self, suffix: str, ctype: str, values) -> str:
        sym = self._sym(suffix)
        if self.slot is not None:
            return self.slot_ref(sym, ctype, values)
        self.decls.append(array_decl(ctype, sym, values))
        return sym

    def scratch(self, ctype: str = "int16_t") -> str:
        """Pointer to this node's scratch buffer (``Backend.scratch_bytes``), or ``0``."""
        off = self.plan.scratch.get(self.node_index)
        if off is None:
            return "0"
        dt = {v: k for k, v in CTYPES.items()}[ctype]
        self.accessors.add(dt)
        return f"{self.prefix}_{ACCESSORS[dt]}({off})"

    def ptr(self, tid: int) -> str:
        """C expression for the data of tensor ``tid`` (const array or arena slice)."""
        t = self.graph.tensors[tid]
        if t.is_const:
            self.consts_used.add(tid)
            if self.slot is not None:
                if tid not in self.slot_exprs:
                    self.slot_exprs[tid] = self.slot_ref(self.const_names[tid],
                                                         CTYPES[t.dtype], t.data)
                return self.slot_exprs[tid]
            return self.const_names[tid]
        acc = ACCESSORS[t.dtype]
        self.accessors.add(t.dtype)
        return f"{self.prefix}_{acc}({self.plan.offsets[tid]})"


def _tensor_line(g: Graph, tid: int, plan: Plan) -> str:
    if tid < 0:
        return "(none)"
    t: Tensor = g.tensors[tid]
    where = "const" if t.is_const else f"arena+{plan.offsets[tid]}"
    q = ""
    if t.quant is not None:
        if t.quant.per_channel:
            q = f" per-channel axis {t.quant.axis} ({t.quant.scale.size} scales)"
        else:
            q = f" scale {float(t.quant.scale[0]):.9g} zp {int(t.quant.zero_point[0])}"
    return f"%{tid} {t.dtype}{list(t.shape)}{q} @ {where}  \"{t.name}\""


def _runtime_files(modules: set[str], functions: set[str],
                   backend: Backend) -> dict[str, str]:
    """The runtime sources a model needs: ``kml_common.h``, the header of each module it
    uses, the .c files the backend names for the functions it calls (``Backend.sources``),
    and the headers those include. A file the backend's directory lacks comes from portable
    (both directories share file names and function signatures)."""
    base = resources.files("kiloml.codegen") / "runtime"

    def read(name: str) -> str:
        opt = base / backend.directory / name
        return (opt if opt.is_file() else base / "portable" / name).read_text()

    names = ["kml_common.h"]
    for m in sorted(modules):
        names += [f"kml_{m}.h"] + backend.sources(m, functions)
    out: dict[str, str] = {}
    i = 0
    while i < len(names):
        n = names[i]
        if n not in out:
            out[n] = read(n)
            names += [inc for inc in re.findall(r'#include "(kml_[a-z0-9_]+\.h)"', out[n])
                      if inc not in names]
        i += 1
    return out


@dataclass
class CompileResult:
    """The generated files (name -> text) of a lowered graph, its memory plan and, per node
    of ``graph`` (in node order), the C function the node calls (``kernels``; "" for a node
    that aliases its input and runs no code) of the ``runtime`` it was generated for."""

    files: dict[str, str]
    plan: Plan
    graph: Graph
    prefix: str
    kernels: list[str] = field(default_factory=list)
    runtime: str = RUNTIME
    slot: Optional[SlotLayout] = None
    prefer: str = "balanced"
    # per node with a kernel or layout choice: the option taken, its kernel, layout, data
    # bytes and estimated cycles, and the alternatives (armv7em_backend.plan)
    choices: list[dict] = field(default_factory=list)

    def write(self, out_dir: str | Path) -> list[Path]:
        """Write every file; on failure nothing half-written is left behind."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        try:
            for name in sorted(self.files):
                tmp = out / (name + ".tmp")
                tmp.write_text(self.files[name])
                written.append(tmp)
            final = []
            for tmp in written:
                dst = tmp.with_suffix("")
                tmp.replace(dst)
                final.append(dst)
            return final
        except OSError as e:
            for tmp in written:
                tmp.unlink(missing_ok=True)
            raise KilomlError(f"{out}: cannot write generated files ({e.strerror or e})") from None


def generate_c(graph: Graph, prefix: str = "model", command: str = "kiloml compile",
               inplace: bool = True, runtime: str = RUNTIME, slot: bool = False,
               prefer: str = "balanced", options: dict[int, str] | None = None
               ) -> CompileResult:
    """Lower the graph through the pass pipeline, plan memory and emit C sources with the
    kernels of ``runtime`` (``kiloml.codegen.backend.BACKENDS``). ``slot``: the model's data
    (``SlotLayout``) is not compiled in: the code reads it from a payload the firmware hands
    to ``<prefix>_use_slot`` (a model slot in flash), and ``CompileResult.slot`` holds it.
    ``prefer``: speed, size or balanced, the kernel choices that trade flash for speed
    (``armv7em_choice``: a per-node choice by estimated cycles and flash bytes);
    ``CompileResult.kernels`` reports each node's kernel, ``CompileResult.choices`` the choice
    made where there was one. ``options``: node index (of the lowered graph) -> option name
    (``armv7em_choice.Option``; "fast" or "base"), taken whatever ``prefer`` says (calibration
    and kernel tests)."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,31}", prefix):
        raise KilomlError(f"--prefix {prefix!r} is not a C identifier")
    backend = get_backend(runtime, prefer, options)
    g = pipeline(graph)
    choices = backend.plan(g) if hasattr(backend, "plan") else []
    scratch = {n: backend.scratch_bytes(g, node) for n, node in enumerate(g.nodes)}
    plan = plan_memory(g, inplace=inplace, scratch=scratch)
    P = prefix
    io = io_specs(g)
    const_names = _const_names(g, P, io)
    ctx = EmitContext(g, P, plan, const_names, backend=backend,
                      slot=SlotLayout() if slot else None)

    funcs: list[str] = []
    calls: list[str] = []
    for n, node in enumerate(g.nodes):
        op = REGISTRY[node.op]
        if op.is_alias():
            calls.append("    " + comment(f"n{n} {node.op}: {g.tensors[node.outputs[0]].name} "
                                          "aliases its input"))
            continue
        ctx.node_index = n
        params = op.prepare(g, node)
        start = len(ctx.decls)
        body = backend.emit(g, node, params, ctx)
        if n not in ctx.kernels:
            raise KilomlError(f"internal error: node {n} ({node.op}) calls no kernel")
        fname = f"{P}_n{n}_{node.op.lower()}"
        com = [f"n{n} {node.op}  \"{node.name}\""]
        com += [f"  in  {_tensor_line(g, t, plan)}" for t in node.inputs]
        com += [f"  out {_tensor_line(g, t, plan)}" for t in node.outputs]
        com += [f"  {line}" for line in op.comment(g, node, params)]
        decls = ctx.decls[start:]
        del ctx.decls[start:]
        funcs.append("\n".join([comment(com)] + decls + [f"static void {fname}(void)", "{"]
                               + [f"    {s}" for s in body] + ["}"]))
        calls.append(f"    {fname}();")

    weights = []
    for t in sorted(ctx.consts_used - set(ctx.slot_exprs)):
        ten = g.tensors[t]
        weights.append(comment(f"{ten.name}: {ten.dtype}{list(ten.shape)}") + "\n"
                       + array_decl(CTYPES[ten.dtype], const_names[t], ten.data))

    header = _header(g, P, io, plan, command, ctx.slot)
    source = _source(g, P, io, plan, command, ctx, weights, funcs, calls)
    files = {f"{P}.h": header, f"{P}.c": source}
    files.update(_runtime_files(ctx.modules, set(ctx.kernels.values()), backend))
    kernels = [ctx.kernels.get(n, "") for n in range(len(g.nodes))]
    return CompileResult(files, plan, g, P, kernels, backend.name, ctx.slot, prefer, choices)


def abi_hash(result: CompileResult) -> bytes:
    """SHA-256 of what a model slot payload must fit: the generated model sources of a
    ``slot=True`` build without their frontmatter (which names the model's SHA-256 and the
    command). Two models with the same hash run the same code on the same payload layout;
    their payloads differ only in the values of weights, biases and per-channel arrays."""
    if result.slot is None:
        raise KilomlError("internal error: the ABI hash is defined for slot builds only")
    h = hashlib.sha256()
    for name in sorted(result.files):
        text = result.files[name]
        if name.startswith(result.prefix + "."):
            text = text.split(" */\n", 1)[1]  # drop the frontmatter comment
        h.update(name.encode() + b"\0" + text.encode() + b"\0")
    return h.digest()


def _const_names(g: Graph, P: str, io) -> dict[int, str]:
    """C names of the constant tensors the nodes read: ``<prefix>_<tensor name>`` sanitized
    and de-duplicated, never one of the generator's own symbols (the arena, its accessors,
    the I/O constants, ``<prefix>_invoke``, the nodes' ``<prefix>_n<i>_...``)."""
    reserved = {f"{P}_arena", f"{P}_invoke"} | {f"{P}_{a}" for a in ACCESSORS.values()}
    for s in io[0] + io[1]:
        reserved |= {f"{P}_{s.name}_{x}" for x in ("shape", "scale", "zero_point")}
    names = NameTable(reserved)
    out: dict[int, str] = {}
    for t in sorted({t for n in g.nodes for t in n.inputs if t >= 0 and g.tensors[t].is_const}):
        base = identifier(g.tensors[t].name)
        if re.match(r"n\d+_", base):
            base = "t_" + base
        out[t] = names.add(f"{P}_{base}")
    return out


@dataclass
class IOSpec:
    name: str  # C parameter name
    tid: int
    tensor: Tensor


def io_specs(g: Graph) -> tuple[list[IOSpec], list[IOSpec]]:
    """The model's inputs and outputs as the parameters of ``<prefix>_invoke``: ``input`` /
    ``output`` when there is one, else ``input0``, ``input1``, ..."""

    def names(kind: str, tids: list[int]) -> list[IOSpec]:
        if len(tids) == 1:
            return [IOSpec(kind, tids[0], g.tensors[tids[0]])]
        return [IOSpec(f"{kind}{i}", t, g.tensors[t]) for i, t in enumerate(tids)]

    return names("input", g.inputs), names("output", g.outputs)


def _frontmatter(g: Graph, command: str) -> str:
    return frontmatter(command, [f"model sha256: {g.source_sha256 or '(built in memory)'}"])


def _signature(P: str, io: tuple[list[IOSpec], list[IOSpec]]) -> str:
    ins, outs = io
    args = [f"const {CTYPES[s.tensor.dtype]} *{s.name}" for s in ins]
    args += [f"{CTYPES[s.tensor.dtype]} *{s.name}" for s in outs]
    return f"int {P}_invoke({', '.join(args)})"


def _header(g: Graph, P: str, io, plan: Plan, command: str,
            slot: Optional[SlotLayout] = None) -> str:
    guard = f"{P.upper()}_H"
    lines = [_frontmatter(g, command), f"#ifndef {guard}", f"#define {guard}", "",
             "#include <stdint.h>", "", "#ifdef __cplusplus", 'extern "C" {', "#endif", ""]
    enum = [f"    {P.upper()}_ARENA_BYTES = {plan.arena_bytes}"]
    if slot is not None:
        enum.append(f"    {P.upper()}_SLOT_BYTES = {slot.payload_bytes}")
    for s in io[0] + io[1]:
        enum.append(f"    {P.upper()}_{s.name.upper()}_SIZE = {s.tensor.size}")
        enum.append(f"    {P.upper()}_{s.name.upper()}_DIMS = {max(len(s.tensor.shape), 1)}")
    lines += ["enum {", ",\n".join(enum), "};", ""]
    for s in io[0] + io[1]:
        n = f"{P}_{s.name}"
        dims = max(len(s.tensor.shape), 1)
        lines.append(comment(f"{s.name}: {s.tensor.dtype}{list(s.tensor.shape)} "
                             f"\"{s.tensor.name}\""))
        lines.append(f"extern const int32_t {n}_shape[{dims}];")
        if s.tensor.quant is not None:
            lines.append(f"extern const float {n}_scale;  /* real = scale * (q - zero_point) */")
            lines.append(f"extern const int32_t {n}_zero_point;")
        lines.append("")
    if slot is not None:
        lines += ["/* The model's weights, biases and per-channel arrays live in a model slot:",
                  f" * hand the payload ({P.upper()}_SLOT_BYTES bytes, {SLOT_ALIGN}-byte "
                  "aligned) to this before invoking. */",
                  f"void {P}_use_slot(const uint8_t *payload);", ""]
    lines += ["/* Runs one inference; returns 0 on success. Not reentrant: one static arena. */",
              _signature(P, io) + ";", "", "#ifdef __cplusplus", "}", "#endif", "",
              f"#endif /* {guard} */", ""]
    return "\n".join(lines)


def _source(g: Graph, P: str, io, plan: Plan, command: str, ctx: EmitContext,
            weights: list[str], funcs: list[str], calls: list[str]) -> str:
    incs = [f'#include "{P}.h"', "", "#include <string.h>", "", '#include "kml_common.h"']
    incs += [f'#include "kml_{m}.h"' for m in sorted(ctx.modules)]
    parts = [_frontmatter(g, command) + "\n".join(incs) + "\n"]
    consts = []
    for s in io[0] + io[1]:
        n = f"{P}_{s.name}"
        shape = list(s.tensor.shape) or [1]
        consts.append(f"const int32_t {n}_shape[{len(shape)}] = {{{', '.join(map(str, shape))}}};")
        if s.tensor.quant is not None:
            consts.append(f"const float {n}_scale = {float_literal(s.tensor.quant.scale[0])};")
            consts.append(f"const int32_t {n}_zero_point = {int(s.tensor.quant.zero_point[0])};")
    parts.append("\n".join(consts) + "\n")
    parts.append(f"/* Activation arena: {plan.arena_bytes} bytes (op-level lower bound without "
                 f"in-place execution: {plan.lower_bound_bytes}). */\n"
                 f"static union {{\n    uint8_t bytes[{max(plan.arena_bytes, 4)}];\n"
                 f"    int32_t align_i32;\n    float align_f32;\n}} {P}_arena;\n")
    acc = []
    for dt in sorted(ctx.accessors | {s.tensor.dtype for s in io[0] + io[1]}):
        a = ACCESSORS[dt]
        acc.append(f"static {CTYPES[dt]} *{P}_{a}(size_t offset)\n{{\n"
                   f"    return ({CTYPES[dt]} *)(void *)&{P}_arena.bytes[offset];\n}}")
    parts.append("\n\n".join(acc) + "\n")
    if ctx.slot is not None:
        parts.append(f"/* The active model slot's payload: {ctx.slot.payload_bytes} bytes. */\n"
                     f"static const uint8_t *{P}_slot;\n\n"
                     f"void {P}_use_slot(const uint8_t *payload)\n{{\n"
                     f"    {P}_slot = payload;\n}}\n\n"
                     f"/* Data at byte {{offset}} of the payload (see the SlotLayout of "
                     f"kiloml.codegen.c). */\n"
                     f"static const void *{P}_w(size_t offset)\n{{\n"
                     f"    return {P}_slot + offset;\n}}\n")
    parts += [w + "\n" for w in weights]
    parts += [f + "\n" for f in funcs]
    body = [_signature(P, io), "{"]
    if ctx.slot is not None:
        body += [f"    if ({P}_slot == 0) {{", "        return 1;", "    }"]
    for s in io[0]:
        body.append(f"    memcpy({P}_{ACCESSORS[s.tensor.dtype]}({plan.offsets[s.tid]}), {s.name}, "
                    f"{s.tensor.nbytes});")
    body += calls
    for s in io[1]:
        body.append(f"    memcpy({s.name}, {P}_{ACCESSORS[s.tensor.dtype]}({plan.offsets[s.tid]}), "
                    f"{s.tensor.nbytes});")
    body += ["    return 0;", "}"]
    parts.append("\n".join(body) + "\n")
    return "\n".join(parts)
