"""What a deployed package is made of, checked once: ``DeploySpec`` -> ``Pipeline``.

A ``DeploySpec`` holds the stage objects a workflow step hands over (the int8 graph, the DSP
block, the window, labels, normalizer state, layout, DSP variant, board) and never a project.
``resolve`` validates it and derives everything the format modules share: the C types at each
step, how DSP outputs become model inputs (``convert``), the board's core and compiler flags,
the generated model C (``generate_c`` with the core's kernel set) and the DSP C
(``block.c_sources``). Every check raises ``KilomlError`` (``DSPError`` for DSP problems) with
one line that says what is wrong, before anything is written.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

from kiloml import __version__
from kiloml.codegen.c import CompileResult, generate_c
from kiloml.compress.quantize import quantize_input, to_nhwc
from kiloml.dsp.apply import block_quant
from kiloml.dsp.base import Block
from kiloml.dsp.host import DSPHostBuild
from kiloml.errors import KilomlError
from kiloml.io.tflite_writer import write_tflite
from kiloml.ir.graph import Graph
from kiloml.targets.boards import load_boards
from kiloml.targets.profile import default_runtime
from kiloml.targets.toolchain import CPU_FLAGS
from kiloml.train.models import to_model_input
from kiloml.train.normalize import Normalizer

# Boards whose compiler flags differ from their core's generic ones (toolchain.CPU_FLAGS):
# the Nano 33 BLE Sense's Arduino mbed core builds with the soft-float calling convention and
# the FPU (softfp); the STM32F746's Cortex-M7 has a single-precision FPU (fpv5-sp-d16; the
# STM32F76x/H7 parts have the double-precision one the generic M7 flags assume).
BOARD_FLAGS: dict[str, list[str]] = {
    "nano33ble": ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=softfp", "-mfpu=fpv4-sp-d16"],
    "stm32f746-disco": ["-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-sp-d16"],
}
# Boards with a known Arduino core: board id -> library.properties architecture.
ARDUINO_ARCHITECTURES: dict[str, str] = {"nano33ble": "mbed_nano", "pico": "mbed_rp2040"}
CFLAGS = ["-std=c99", "-Wall", "-Wextra", "-Wconversion", "-Werror", "-O2"]

# Package names that would shadow a header a package or its users include.
RESERVED_NAMES = {
    "assert", "complex", "ctype", "errno", "fenv", "float", "inttypes", "iso646", "limits",
    "locale", "math", "setjmp", "signal", "stdarg", "stdbool", "stddef", "stdint", "stdio",
    "stdlib", "string", "tgmath", "time", "wchar", "wctype", "arduino", "pdm", "wire", "spi",
    "arduino_lsm9ds1", "main",
}
NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,23}")
Q20 = 20
# kiloml.train.models.input_layout's layouts -> the feature rank each takes (None: any)
LAYOUTS: dict[str, int | None] = {"flat": None, "image1": 2, "chw": 3, "seq": 2, "seq1": 1}


@dataclass(frozen=True)
class DeploySpec:
    """Everything a deploy format needs, as stage objects.

    ``frames``: samples (audio) or frames (motion) per window and channel; ``channels``: 1 for
    audio; ``sample_rate`` in Hz and ``window_ms`` describe the same window. ``normalizer``:
    ``Normalizer.state()`` (meta.json's ``normalizer``) or a ``Normalizer``. ``input_quant``:
    meta.json's ``input_quant`` (the int8 quantization of the DSP block's output that the
    model was calibrated with), None for float features; it must agree with the block and
    the graph's input. ``layout``: meta.json's ``layout`` (kiloml.train.models.input_layout).
    ``board``: an id of targets/boards.toml or a board dict with at least ``core``."""

    name: str
    graph: Graph
    block: Block
    frames: int
    channels: int
    sample_rate: float
    window_ms: float
    labels: Sequence[str]
    normalizer: Any = field(default_factory=lambda: {"kind": "none", "mean": 0.0, "std": 1.0})
    input_quant: Optional[tuple[float, int]] = None
    layout: str = "flat"
    dsp_variant: str = "f32"
    board: Any = "nano33ble"
    command: str = "kiloml deploy"
    version: str = __version__
    units: Optional[str] = None  # accelerometer data: "g", "mg" or "m/s2" (IMU sketch scale)
    model_slot: bool = False     # C package: weights in an A/B flash slot (kiloml.deploy.slot)
    personalize: Any = None      # kiloml.deploy.personalize.Settings: add personalize/ (C)
    # multi-sensor projects: (sensor name, axes) in channel order; the C API then also takes
    # one buffer per sensor (<name>_classify_sensors), each at the sensor's rate when the
    # per-sensor DSP block decimates it (sensor_decimation)
    sensors: tuple[tuple[str, int], ...] = ()
    stream: Any = None  # kiloml.train.streaming.StreamSettings (None: the defaults)
    prefer: str = "balanced"  # the model kernels' flash-for-speed choice (armv7em_choice)
    # the missing-sensor policy (multi-sensor): "zero" (the fused head answers on zeros),
    # "branch-head" or "fallback" (HEAD_POLICIES): the graph's outputs are the fused head then
    # each sensor's own head (its branch's classifier, or a model of its own trained apart),
    # and <name>_classify_sensors answers with the remaining sensor's head (head_for_missing)
    missing: str = "zero"


@dataclass
class Pipeline:
    """A validated spec and what the format modules derive from it (see ``resolve``)."""

    spec: DeploySpec
    name: str
    macro: str                          # upper-case prefix of the public macros
    labels: list[str]
    block: Block
    variant: str
    frames: int
    channels: int
    board_id: str
    board: dict
    core: str
    flags: Optional[list[str]]          # the core's compiler flags; None: no cross compiler
    runtime: str                        # model kernel set: armv7em | portable
    sample_ctype: str                   # raw input element: int16_t | float
    feature_ctype: str                  # DSP output element: int8_t | int32_t | float
    feature_shape: tuple[int, ...]
    feature_quant: Optional[tuple[float, int]]
    normalizer: Normalizer
    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int
    convert: str                        # direct | lut | float (see ``conversion``)
    lut: Optional[np.ndarray]           # (256,) int8 for ``lut``
    models: dict[str, CompileResult]    # kernel set -> generated model C (board's set first)
    dsp_files: dict[str, str]
    model_sha256: str
    command: str                        # made safe for a C comment and one line
    version: str

    @property
    def feature_size(self) -> int:
        return int(np.prod(self.feature_shape))

    @property
    def input_size(self) -> int:
        return self.frames * self.channels

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def dsp_prefix(self) -> str:
        return f"{self.name}_dsp"

    @property
    def model_prefix(self) -> str:
        return f"{self.name}_model"

    @property
    def model(self) -> CompileResult:
        """The model's C with the board core's kernel set."""
        return self.models[self.runtime]

    @property
    def arena_bytes(self) -> int:
        return int(self.model.plan.arena_bytes)

    @property
    def arena_bytes_by_kernels(self) -> dict[str, int]:
        return {rt: int(m.plan.arena_bytes) for rt, m in self.models.items()}


def one_line(command: str) -> str:
    """The command as one line that cannot end a C comment."""
    return " ".join(str(command).split()).replace("*/", "* /")


def check_name(name: str) -> str:
    """A package name: a C identifier of at most 24 characters that no runtime file, standard
    header or the Arduino headers the examples include can collide with."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise KilomlError(f"package name {name!r} must be a C identifier: a letter, then up to "
                          "23 letters, digits or underscores")
    if name.lower().startswith("kml"):
        raise KilomlError(f"package name {name!r} collides with kiloml's runtime files "
                          "(kml_*); choose another name")
    if name.lower() in RESERVED_NAMES:
        raise KilomlError(f"package name {name!r} would shadow the standard or Arduino header "
                          f"{name}.h; choose another name")
    return name


def find_board(board: Any) -> tuple[str, dict]:
    """(board id, board dict) from an id of boards.toml or a dict with a ``core``."""
    if isinstance(board, dict):
        if "core" not in board:
            raise KilomlError("board: a board dict needs a 'core' (e.g. cortex-m4)")
        return str(board.get("id", board.get("name", "custom"))), dict(board)
    boards = load_boards()
    if board not in boards:
        raise KilomlError(f"unknown board {board!r} (known: {', '.join(sorted(boards))})")
    return str(board), boards[board].json_dict()


def board_flags(board_id: str, core: str) -> Optional[list[str]]:
    """The compiler flags the board's toolchain uses for its core, None where kiloml has no
    cross compiler for the core."""
    if board_id in BOARD_FLAGS:
        return list(BOARD_FLAGS[board_id])
    flags = CPU_FLAGS.get(core)
    return list(flags) if flags is not None else None


def _normalizer(state: Any, feature_shape: tuple[int, ...]) -> Normalizer:
    norm = state if isinstance(state, Normalizer) else None
    if norm is None:
        if not isinstance(state, dict) or "kind" not in state:
            raise KilomlError("normalizer: expected Normalizer.state() ({kind, mean, std})")
        norm = Normalizer.from_state({"mean": 0.0, "std": 1.0, **state})
    if norm.kind not in ("none", "global", "feature"):
        raise KilomlError(f"normalizer: unknown kind {norm.kind!r} (none, global, feature)")
    if norm.kind == "global" and (norm.mean.size != 1 or norm.std.size != 1):
        raise KilomlError("normalizer: a global normalizer has one mean and one std")
    if norm.kind == "feature":
        size = int(np.prod(feature_shape))
        if norm.mean.size != size or norm.std.size != size:
            raise KilomlError(f"normalizer: per-feature mean/std have {norm.mean.size}/"
                              f"{norm.std.size} values, the features {size}")
    return norm


def _layout_is_identity(layout: str, feature_shape: tuple[int, ...], input_size: int) -> None:
    """The graph reads the features in their own (channels-last) byte order for every layout
    kiloml trains (to_model_input, then to_nhwc as the exported graph reads); check it."""
    if layout not in LAYOUTS:
        raise KilomlError(f"layout {layout!r}: unknown (one of {', '.join(LAYOUTS)})")
    if LAYOUTS[layout] is not None and len(feature_shape) != LAYOUTS[layout]:
        raise KilomlError(f"layout {layout!r} takes {LAYOUTS[layout]}-D features, the block "
                          f"gives {list(feature_shape)}")
    idx = np.arange(int(np.prod(feature_shape)), dtype=np.float32).reshape((1,) + feature_shape)
    order = to_nhwc(to_model_input(idx, layout)).reshape(-1)
    if order.size != input_size:
        raise KilomlError(f"layout {layout!r}: features {list(feature_shape)} give "
                          f"{order.size} model inputs, the graph takes {input_size}")
    if not np.array_equal(order, np.arange(order.size)):
        raise KilomlError(f"layout {layout!r} reorders the features; the deployed pipeline "
                          "passes them in their own order")


def dequantize_features(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """int8 DSP output -> float32 features, as kiloml.dsp.apply.apply_block computes them."""
    return (np.asarray(q).astype(np.float32) - zero_point) * np.float32(scale)


def conversion(feature_quant, norm: Normalizer, in_scale: float, in_zp: int):
    """How one DSP output value becomes one model input, and the table when it is a table.

    ``direct``: int8 features that already are the model's input (the usual trained project:
    the model was calibrated with the block's quantization, no normalizer); ``lut``: int8
    features through a 256-entry table computed here with the Python path's own functions
    (dequantize as apply_block does, the normalizer, quantize_input), so it is exact by
    construction; ``float``: float features (or a per-feature normalizer), normalized in
    float32 and quantized in double in C exactly as quantize_input does."""
    if feature_quant is None or norm.kind == "feature":
        return "float", None
    q = np.arange(-128, 128).astype(np.int8)
    f = dequantize_features(q, *feature_quant)
    lut = quantize_input(norm(f), in_scale, in_zp)
    if np.array_equal(lut, q):
        return "direct", None
    return "lut", lut


def model_sha256(graph: Graph) -> str:
    """SHA-256 of the .tflite the graph serializes to (the graph's identity in every file)."""
    return hashlib.sha256(write_tflite(graph)).hexdigest()


def resolve(spec: DeploySpec, portable_too: bool = False, model_c: bool = True) -> Pipeline:
    """Validate ``spec`` and derive the shared parts of every format (see the module doc).
    ``portable_too``: also generate the model's C with the portable kernels when the board's
    core uses another set (a package that builds on the host and on every core);
    ``model_c=False``: no model C at all (the .tflite package)."""
    name = check_name(spec.name)
    labels = [str(s) for s in spec.labels]
    if not labels or len(set(labels)) != len(labels):
        raise KilomlError("labels: need at least one label and no duplicates")
    block = spec.block
    variant = spec.dsp_variant
    block.check_variant(variant)
    frames, channels = int(spec.frames), int(spec.channels)
    if frames < 1 or channels < 1:
        raise KilomlError(f"window: frames {frames} and channels {channels} must be >= 1")
    if block.audio and channels != 1:
        raise KilomlError(f"{block.name}: an audio block takes one channel, not {channels}")
    if spec.sensors and (sum(a for _, a in spec.sensors) != channels
                         or len({nm for nm, _ in spec.sensors}) != len(spec.sensors)
                         or not all(NAME_RE.fullmatch(nm) for nm, _ in spec.sensors)):
        raise KilomlError(f"sensors {list(spec.sensors)}: need unique C-identifier names and "
                          f"axes adding up to the {channels} channels")
    sensor_decimation(spec, frames)
    rate = float(spec.sample_rate)
    if not rate > 0:
        raise KilomlError(f"sample_rate {spec.sample_rate!r} must be > 0 Hz")
    if abs(frames - rate * float(spec.window_ms) / 1000.0) > 1.0:
        raise KilomlError(f"window: {frames} samples at {rate:g} Hz is not {spec.window_ms} ms")
    block_rate = getattr(block.params, "sample_rate", None)
    if block_rate is not None and abs(float(block_rate) - rate) > 1e-6 * rate:
        raise KilomlError(f"{block.name}: the block's sample_rate {block_rate:g} Hz differs "
                          f"from the data's {rate:g} Hz")
    board_id, board = find_board(spec.board)
    core = str(board["core"])

    g = spec.graph
    heads = _check_heads(spec)
    if len(g.inputs) != 1 or len(g.outputs) != heads:
        raise KilomlError(f"model: a classifier has one input and {heads} output"
                          f"{'s' if heads > 1 else ''}, this graph {len(g.inputs)} and "
                          f"{len(g.outputs)}")
    tin, tout = g.tensors[g.inputs[0]], g.tensors[g.outputs[0]]
    for what, t in (("input", tin), *(("output", g.tensors[o]) for o in g.outputs)):
        if t.dtype != "int8" or t.quant is None or t.quant.per_channel:
            raise KilomlError(f"model: the {what} must be int8 with one scale and zero point "
                              f"(got {t.dtype})")
    for o in g.outputs:
        t = g.tensors[o]
        if t.size != len(labels):
            raise KilomlError(f"model: {t.size} outputs, but {len(labels)} labels")
        if (t.scale, t.zero_point) != (tout.scale, tout.zero_point):
            raise KilomlError("model: the heads' outputs must share one quantization (each "
                              "ends in a softmax)")

    feature_shape = tuple(int(v) for v in block.output_shape(frames, channels))
    _layout_is_identity(spec.layout, feature_shape, tin.size)
    sample_ctype, feature_ctype = DSPHostBuild.types(block, variant)
    fq = block_quant(block)
    if spec.input_quant is not None:
        iq = (float(np.float32(spec.input_quant[0])), int(spec.input_quant[1]))
        if fq is None or iq != fq:
            raise KilomlError(f"input_quant {list(spec.input_quant)} is not the DSP block's "
                              f"output quantization ({list(fq) if fq else 'float features'})")
        if iq != (tin.scale, tin.zero_point):
            raise KilomlError(f"input_quant {list(spec.input_quant)} is not the model input's "
                              f"quantization [{tin.scale!r}, {tin.zero_point}]")
    norm = _normalizer(spec.normalizer, feature_shape)
    convert, lut = conversion(fq, norm, tin.scale, tin.zero_point)

    command = one_line(spec.command)
    runtime = default_runtime(core)
    sets = ([runtime] if model_c else []) + \
        (["portable"] if model_c and portable_too and runtime != "portable" else [])
    if spec.model_slot and spec.personalize is not None:
        raise KilomlError("[deploy] model_slot and [personalize] cannot be on together yet: "
                          "classify would run the personalized head, never the slot's model")
    if spec.model_slot and len(board_id.encode()) > 23:
        raise KilomlError(f"board id {board_id!r}: a model slot header holds at most 23 bytes")
    models = {rt: generate_c(g, f"{name}_model", command=command, runtime=rt,
                             slot=spec.model_slot, prefer=spec.prefer) for rt in sets}
    dsp_files = block.c_sources(f"{name}_dsp", frames, channels, variant, command=command)
    return Pipeline(
        spec=spec, name=name, macro=name.upper(), labels=labels, block=block, variant=variant,
        frames=frames, channels=channels, board_id=board_id, board=board, core=core,
        flags=board_flags(board_id, core), runtime=runtime,
        sample_ctype=sample_ctype, feature_ctype=feature_ctype, feature_shape=feature_shape,
        feature_quant=fq, normalizer=norm, input_scale=tin.scale,
        input_zero_point=tin.zero_point, output_scale=tout.scale,
        output_zero_point=tout.zero_point, convert=convert, lut=lut, models=models,
        dsp_files=dsp_files, model_sha256=model_sha256(g), command=command,
        version=str(spec.version))


def sensor_decimation(spec: DeploySpec, frames: Optional[int] = None) -> tuple[int, ...]:
    """Each sensor's grid frames per sample of its own (``spec.sensors`` order): k for a
    sensor at ``sample_rate / k``, taken from the per-sensor DSP block's parts
    (kiloml.dsp.sensors ``decimate``); all 1 for a single-rate project. A block with parts at
    their own rates needs ``spec.sensors`` to name the same sensors with the same axes."""
    dec = getattr(spec.block, "decimate", None)
    if not spec.sensors or not dec or all(d == 1 for d in dec.values()):
        return tuple(1 for _ in spec.sensors)
    parts = [(nm, e - a) for nm, a, e, _ in spec.block.parts]
    if list(spec.sensors) != parts:
        raise KilomlError(f"sensors {list(spec.sensors)}: the DSP block's sensors {parts} run "
                          "at their own rates; the package's sensors must be the same")
    out = tuple(int(dec[nm]) for nm, _ in spec.sensors)
    f = int(spec.frames if frames is None else frames)
    for (nm, _), d in zip(spec.sensors, out):
        if f % d:
            raise KilomlError(f"sensor {nm}: a window of {f} frames is not a whole number of "
                              f"its samples (one every {d} frames)")
    return out


def multi_rate(spec: DeploySpec) -> bool:
    """Whether some sensor runs at a rate other than ``spec.sample_rate``."""
    return any(d > 1 for d in sensor_decimation(spec))


# the policies whose graph has a head per sensor after the fused one (outputs 1, 2, ...)
HEAD_POLICIES = ("branch-head", "fallback")


def has_heads(spec: DeploySpec) -> bool:
    """Whether the model has a head per sensor besides the fused one (HEAD_POLICIES)."""
    return spec.missing in HEAD_POLICIES


def _check_heads(spec: DeploySpec) -> int:
    """The number of graph outputs the missing-sensor policy needs (1 for ``zero``)."""
    if spec.missing == "zero":
        return 1
    if spec.missing not in HEAD_POLICIES:
        raise KilomlError(f"missing: {spec.missing!r} is not a policy (zero, "
                          f"{', '.join(HEAD_POLICIES)})")
    if len(spec.sensors) < 2:
        raise KilomlError(f"missing = {spec.missing}: needs a multi-sensor model (a head per "
                          "sensor), this one has "
                          f"{len(spec.sensors)} sensor{'s' if len(spec.sensors) != 1 else ''}")
    if spec.model_slot or spec.personalize is not None:
        raise KilomlError(f"missing = {spec.missing} cannot be deployed with [deploy] "
                          "model_slot or [personalize] yet (they run a single-output model)")
    return 1 + len(spec.sensors)


def head_for_missing(sensors: int, missing: int) -> int:
    """The graph output that answers under the branch-head and fallback policies for the
    bit mask of
    missing sensors (bit k: sensor k): the head of the one remaining sensor (output 1 + k)
    when exactly one remains, else the fused head (output 0: nothing missing, or with more
    than two sensors several still present, or none left, where the missing channels are
    zeros as under the zero policy)."""
    everyone = (1 << sensors) - 1
    present = everyone & ~int(missing)
    if sensors > 1 and present and present & (present - 1) == 0 and present != everyone:
        return 1 + present.bit_length() - 1
    return 0


def metadata(p: Pipeline) -> dict:
    """The package's description for tools (written as ``<name>.json`` by every format)."""
    spec = p.spec
    return {
        "kiloml_version": p.version,
        "command": p.command,
        "name": p.name,
        "model_sha256": p.model_sha256,
        "labels": list(p.labels),
        "sample_rate_hz": float(spec.sample_rate),
        "window_ms": float(spec.window_ms),
        "window_samples": p.frames,
        "channels": p.channels,
        "dsp": {"block": p.block.name, "variant": p.variant,
                "params": p.block.params.model_dump(mode="json")},
        "raw_input": {"ctype": p.sample_ctype, "size": p.input_size,
                      "layout": "samples" if p.block.audio else "frames x channels, interleaved",
                      "units": raw_units(p)},
        "features": {"shape": list(p.feature_shape), "ctype": p.feature_ctype,
                     "quantization": (None if p.feature_quant is None else
                                      {"scale": p.feature_quant[0],
                                       "zero_point": p.feature_quant[1]}),
                     "frac_bits": Q20 if p.feature_ctype == "int32_t" else None},
        "normalizer": p.normalizer.state(),
        "layout": spec.layout,
        "model": {"input": {"shape": list(spec.graph.tensors[spec.graph.inputs[0]].shape),
                            "scale": p.input_scale, "zero_point": p.input_zero_point,
                            "rounding": "half away from zero"},
                  "output": {"scale": p.output_scale, "zero_point": p.output_zero_point},
                  **({"missing": spec.missing,
                      "heads": ["fusion"] + [nm for nm, _ in spec.sensors]}
                     if has_heads(spec) else {}),
                  "arena_bytes": p.arena_bytes_by_kernels,
                  "kernels": p.runtime, **model_kernels(p)},
        "board": {"id": p.board_id, "name": p.board.get("name", p.board_id), "core": p.core,
                  "flags": p.flags},
        **({"sensors": sensors_manifest(p)} if multi_rate(spec) else {}),
    }


def sensors_manifest(p: Pipeline) -> list[dict]:
    """Each sensor of a multi-rate package: its channels in the shared-grid window
    (``<name>_classify``), its rate and its window in its own samples
    (``<name>_classify_sensors``)."""
    out, first = [], 0
    for (nm, axes), d in zip(p.spec.sensors, sensor_decimation(p.spec)):
        out.append({"name": nm, "axes": axes, "first_channel": first,
                    "rate_hz": float(p.spec.sample_rate) / d, "decimation": d,
                    "window_samples": p.frames // d})
        first += axes
    return out


def model_kernels(p: Pipeline) -> dict:
    """The flash-for-speed choice of the board's model C: ``prefer`` and, per layer that had
    a choice, the option taken (``CompileResult.choices``)."""
    return {"prefer": p.spec.prefer,
            "kernel_choices": p.model.choices if p.runtime in p.models else []}


def raw_units(p: Pipeline) -> str:
    if p.block.audio:
        return ("16-bit PCM as read from the WAV file" if p.sample_ctype == "int16_t"
                else "float PCM in [-1, 1) (16-bit PCM / 32768)")
    return "the sensor's units, as the project's data stores them"
