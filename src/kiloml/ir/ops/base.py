"""The contract every op implements, and helpers shared by several ops.

An op is one module under ``kiloml.ir.ops`` defining an attribute dataclass and an ``OpDef``
subclass registered with ``@register``. The op owns everything about itself: how its options
are read from and written to .tflite, which types/options it supports, the integer parameters
derived from quantization (``prepare``, shared by the interpreter and the C generator so they
cannot disagree), the numpy reference kernel, its MAC count, its portable C emission and how
its output may overlap its input in memory. Which optimized kernel a target runs, the scratch
it needs and its packed weight layouts belong to the code generator's kernel backends
(codegen/backend.py), which sit above the IR: the ops import nothing from the generator and
write C only through ``EmitContext``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np

from kiloml.ir.graph import Graph, Node, Tensor

ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}
ACTIVATION_CODES = {v: k for k, v in ACTIVATIONS.items()}
PADDINGS = {0: "SAME", 1: "VALID"}
PADDING_CODES = {v: k for k, v in PADDINGS.items()}


@dataclass(frozen=True)
class NoAttrs:
    """For ops without options."""


class EmitContext(Protocol):
    """What an op's ``emit`` may use to write the body of its node function. The C generator
    implements it; every method returns C text (a symbol, an expression or a statement)."""

    def use_kernel(self, module: str) -> None:
        """The node calls a function of the runtime module ``kml_<module>.h``."""

    def call(self, function: str, *args: str) -> str:
        """The statement ``function(args...);``; ``function`` is recorded as the node's
        kernel (each node calls exactly one)."""

    def struct(self, ctype: str, suffix: str, fields: Mapping[str, Any]) -> str:
        """Declare this node's ``static const <ctype>`` initialized from ``fields`` (float
        values as float32 constants, others as integers); returns its name."""

    def array(self, suffix: str, ctype: str, values: Any) -> str:
        """Declare this node's ``static const <ctype>`` array of ``values``; returns its
        name."""

    def ptr(self, tid: int) -> str:
        """C expression of the data of tensor ``tid`` (a constant array or the arena)."""


class OpDef:
    """Base class; subclasses set ``name``/``tflite_code`` and override what they need."""

    name: ClassVar[str] = ""
    tflite_code: ClassVar[int] = -1
    attrs_cls: ClassVar[type] = NoAttrs
    options_type: ClassVar[int] = 0  # tflite.BuiltinOptions value for the writer; 0 = none

    # -- .tflite options -------------------------------------------------------------------
    def read_options(self, op: Any) -> Any:
        """Build the attribute dataclass from a ``tflite.Operator``."""
        return NoAttrs()

    def write_options(self, builder: Any, attrs: Any) -> int | None:
        """Serialize attributes into a flatbuffer table; returns its offset (None: no options)."""
        return None

    # -- validation --------------------------------------------------------------------------
    def check(self, g: Graph, node: Node) -> list[str]:
        """Reasons this node is unsupported (empty list: supported). Never raises."""
        return []

    # -- semantics -----------------------------------------------------------------------------
    def prepare(self, g: Graph, node: Node) -> Any:
        """Integer parameters derived once from quantization (multipliers, ranges, padding)."""
        return None

    def reference(self, g: Graph, node: Node, params: Any,
                  inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        raise NotImplementedError(self.name)

    def macs(self, g: Graph, node: Node) -> int:
        return 0

    # -- code generation ---------------------------------------------------------------------
    def emit(self, g: Graph, node: Node, params: Any, ctx: EmitContext) -> list[str]:
        """C statements of the node's function body with the portable kernels (the ones in
        ``codegen/runtime/portable``); one of them is ``ctx.call(...)``."""
        raise NotImplementedError(self.name)

    def comment(self, g: Graph, node: Node, params: Any) -> list[str]:
        """Extra lines for the node's comment block (multipliers, shifts, ranges)."""
        return []

    # -- memory --------------------------------------------------------------------------------
    def is_alias(self) -> bool:
        """True when output 0 is input 0's bytes reinterpreted (RESHAPE): no code, no copy."""
        return False

    def inplace_delta(self, g: Graph, node: Node) -> dict[int, int]:
        """Input slot -> the largest byte offset ``delta`` at which output 0 may start relative
        to that input's start while the kernel still reads the input correctly (output written
        in increasing address order never overtakes input still to be read). Any offset
        ``<= delta`` is safe. Empty: the output must not overlap any input."""
        return {}


REGISTRY: dict[str, OpDef] = {}
BY_CODE: dict[int, OpDef] = {}


def register(cls: type[OpDef]) -> type[OpDef]:
    inst = cls()
    REGISTRY[cls.name] = inst
    BY_CODE[cls.tflite_code] = inst
    return cls


# -- helpers shared by several ops ------------------------------------------------------------

def dtype_problems(node_desc: str, tensors: list[Tensor | None], allowed: list[str | None]) -> list[str]:
    """Compare each tensor's dtype with the allowed one (None slot: any / absent)."""
    out = []
    for t, want in zip(tensors, allowed):
        if t is None or want is None:
            continue
        if t.dtype != want:
            out.append(f"{node_desc}: tensor {t.name!r} is {t.dtype}, expected {want}")
    return out


def need_quant(tensors: list[Tensor | None]) -> list[str]:
    return [f"tensor {t.name!r} has no quantization parameters"
            for t in tensors if t is not None and t.dtype in ("int8", "int16") and t.quant is None]


def as_nhwc(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    if len(shape) != 4:
        raise ValueError(f"expected a 4-D NHWC shape, got {list(shape)}")
    return shape[0], shape[1], shape[2], shape[3]


def window_inplace_delta(in_shape: tuple[int, ...], out_shape: tuple[int, ...], stride_h: int,
                         stride_w: int, pad_top: int, pad_left: int, in_itemsize: int = 1,
                         out_itemsize: int = 1) -> int | None:
    """Largest safe output offset for a windowed NHWC kernel that walks output pixels in order.

    When output pixel ``q`` (all channels) has been written, the bytes still to be read start at
    the first input pixel of any later window: row ``max(0, y*sh - pt)``, column
    ``max(0, x*sw - pl)``. The written bytes end at ``(q + 1) * out_pixel_bytes``. Batch > 1
    is not handled (returns None).
    """
    n, hi, wi, ci = as_nhwc(in_shape)
    n2, ho, wo, co = as_nhwc(out_shape)
    if n != 1 or n2 != 1:
        return None
    ys = np.maximum(np.arange(ho) * stride_h - pad_top, 0)
    xs = np.maximum(np.arange(wo) * stride_w - pad_left, 0)
    first_needed = (ys[:, None] * wi + xs[None, :]) * ci * in_itemsize
    written_end = (np.arange(ho * wo).reshape(ho, wo) + 1) * co * out_itemsize
    return int((first_needed - written_end).min())


def read_table(op: Any, cls: type) -> Any | None:
    """The op's builtin options as an instance of the ``tflite`` schema class, or None."""
    table = op.BuiltinOptions()
    if table is None:
        return None
    obj = cls()
    obj.Init(table.Bytes, table.Pos)
    return obj


def activation_name(code: int) -> str:
    return ACTIVATIONS.get(int(code), f"UNSUPPORTED_ACTIVATION_{int(code)}")


def padding_name(code: int) -> str:
    return PADDINGS.get(int(code), f"UNSUPPORTED_PADDING_{int(code)}")


def check_activation(activation: str) -> list[str]:
    return [] if activation in ACTIVATION_CODES else [f"fused activation {activation} is not supported"]


MAX_PADDING = 32767  # TFLite keeps padding in int16_t (PaddingValues)


def window_problems(in_size: int, filter_size: int, stride: int, dilation: int, padding: str,
                    axis: str) -> list[str]:
    """Reject window geometries TFLite cannot represent (padding beyond int16) or whose
    dilated filter spans far more than the input (no real model does; it would only make the
    reference interpreter's cost grow with the filter, not the data)."""
    from kiloml.ir.quant import compute_padding

    eff = (filter_size - 1) * dilation + 1
    if eff > 4 * in_size + 16:
        return [f"{axis} filter extent {eff} is far larger than the input ({in_size})"]
    _, pad = compute_padding(in_size, filter_size, stride, dilation, padding)
    if pad > MAX_PADDING:
        return [f"{axis} padding {pad} exceeds TFLite's int16 range"]
    return []
