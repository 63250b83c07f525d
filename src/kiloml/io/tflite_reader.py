""".tflite (flatbuffer) -> kiloml IR, defensive against malformed files.

Every problem becomes an ``InvalidModelError`` (the file is broken) or an
``UnsupportedModelError`` (the file is fine but uses something kiloml does not implement,
listing every such node by index and op name). Nothing in a file can make the reader crash,
loop for long or allocate more than a small multiple of the file size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tflite

from kiloml.errors import InvalidModelError, UnsupportedModelError
from kiloml.ir.graph import DTYPES, Graph, Node, QuantParams, Tensor, sha256_bytes
from kiloml.ir.ops import BY_CODE

TENSOR_TYPES = {0: "float32", 2: "int32", 3: "uint8", 4: "int64", 6: "bool", 7: "int16", 9: "int8"}
TENSOR_TYPE_NAMES = {v: k for k, v in {
    "FLOAT32": 0, "FLOAT16": 1, "INT32": 2, "UINT8": 3, "INT64": 4, "STRING": 5, "BOOL": 6,
    "INT16": 7, "COMPLEX64": 8, "INT8": 9, "FLOAT64": 10, "COMPLEX128": 11, "UINT64": 12,
    "RESOURCE": 13, "VARIANT": 14, "UINT32": 15, "UINT16": 16, "INT4": 17}.items()}
OP_NAMES = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
MAX_TENSOR_ELEMENTS = 1 << 28


def read_tflite(path: str | Path) -> Graph:
    """Read a .tflite file into a verified graph whose every node is supported."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InvalidModelError(f"{path}: cannot read file ({e.strerror or e})") from None
    return parse_tflite(data, str(path))


def parse_tflite(data: bytes, where: str = "<bytes>") -> Graph:
    if len(data) == 0:
        raise InvalidModelError(f"{where}: file is empty")
    if len(data) < 8:
        raise InvalidModelError(f"{where}: file is truncated ({len(data)} bytes)")
    if data[4:8] != b"TFL3":
        raise InvalidModelError(f"{where}: not a .tflite model (file identifier is "
                                f"{data[4:8]!r}, expected b'TFL3')")
    try:
        graph = _build(data, where)
    except (InvalidModelError, UnsupportedModelError):
        raise
    except Exception as e:  # any decoding failure of a malformed flatbuffer
        raise InvalidModelError(f"{where}: malformed flatbuffer ({type(e).__name__}: {e})") from None
    _check_supported(graph, where)
    return graph


def _bad(where: str, msg: str) -> InvalidModelError:
    return InvalidModelError(f"{where}: {msg}")


def _length(n: int, limit: int, where: str, what: str) -> int:
    if n < 0 or n > limit:
        raise _bad(where, f"{what} count {n} is impossible for a file of this size")
    return n


def _build(data: bytes, where: str) -> Graph:
    size = len(data)
    model = tflite.Model.GetRootAsModel(data, 0)
    n_sub = _length(model.SubgraphsLength(), size // 4, where, "subgraph")
    if n_sub == 0:
        raise _bad(where, "model has no subgraph")
    sg = model.Subgraphs(0)
    n_buffers = _length(model.BuffersLength(), size // 4, where, "buffer")
    n_codes = _length(model.OperatorCodesLength(), size // 4, where, "operator code")
    n_tensors = _length(sg.TensorsLength(), size // 4, where, "tensor")

    tensors: list[Tensor] = []
    for i in range(n_tensors):
        tensors.append(_read_tensor(model, sg.Tensors(i), i, n_buffers, data, where))

    def idx_list(arr, what: str, allow_optional: bool) -> list[int]:
        out = [int(v) for v in arr]
        for v in out:
            if v >= n_tensors or v < (-1 if allow_optional else 0):
                raise _bad(where, f"{what} refers to tensor {v}, but the model has {n_tensors}")
        return out

    inputs = idx_list(sg.InputsAsNumpy() if not sg.InputsIsNone() else [], "graph input", False)
    outputs = idx_list(sg.OutputsAsNumpy() if not sg.OutputsIsNone() else [], "graph output", False)
    if not inputs or not outputs:
        raise _bad(where, "subgraph has no inputs or no outputs")

    nodes: list[Node] = []
    unsupported: list[str] = []
    n_ops = _length(sg.OperatorsLength(), size // 4, where, "operator")
    for n in range(n_ops):
        op = sg.Operators(n)
        ci = op.OpcodeIndex()
        if ci >= n_codes:
            raise _bad(where, f"node {n} uses operator code {ci}, but the model has {n_codes}")
        code_t = model.OperatorCodes(ci)
        code = max(int(code_t.BuiltinCode()), int(code_t.DeprecatedBuiltinCode()))
        ins = idx_list(op.InputsAsNumpy() if not op.InputsIsNone() else [], f"node {n} input", True)
        outs = idx_list(op.OutputsAsNumpy() if not op.OutputsIsNone() else [], f"node {n} output", False)
        opdef = BY_CODE.get(code)
        if code == tflite.BuiltinOperator.CUSTOM:
            name = code_t.CustomCode()
            name = name.decode("utf-8", "replace") if name else "?"
            unsupported.append(f"node {n} CUSTOM({name})")
            nodes.append(Node("CUSTOM", ins, outs, None))
            continue
        if opdef is None:
            unsupported.append(f"node {n} {OP_NAMES.get(code, f'op code {code}')}")
            nodes.append(Node(OP_NAMES.get(code, str(code)), ins, outs, None))
            continue
        attrs = opdef.read_options(op)
        name = tensors[outs[0]].name if outs else f"node{n}"
        nodes.append(Node(opdef.name, ins, outs, attrs, name))

    name = ""
    if model.Description():
        name = model.Description().decode("utf-8", "replace")
    g = Graph(tensors, nodes, inputs, outputs, name=name or "model", source_sha256=sha256_bytes(data))
    if unsupported:
        raise UnsupportedModelError(f"{where}: unsupported ops: " + "; ".join(unsupported))
    _check_structure(g, where)
    return g


def _read_tensor(model, t, index: int, n_buffers: int, data: bytes, where: str) -> Tensor:
    name = t.Name()
    name = name.decode("utf-8", "replace") if name else f"tensor{index}"
    shape = tuple(int(v) for v in (t.ShapeAsNumpy() if not t.ShapeIsNone() else []))
    if any(d < 0 for d in shape):
        raise _bad(where, f"tensor {index} {name!r} has a dynamic or negative shape {list(shape)}")
    if len(shape) > 8:
        raise _bad(where, f"tensor {index} {name!r} has {len(shape)} dimensions")
    elements = int(np.prod(shape, dtype=np.float64)) if shape else 1
    if elements > MAX_TENSOR_ELEMENTS:
        raise _bad(where, f"tensor {index} {name!r} has an impossible size {list(shape)}")
    ttype = int(t.Type())
    dtype = TENSOR_TYPES.get(ttype, TENSOR_TYPE_NAMES.get(ttype, f"type{ttype}").lower())
    quant = None
    q = t.Quantization()
    if q is not None and not q.ScaleIsNone() and q.ScaleLength() > 0:
        scale = q.ScaleAsNumpy().astype(np.float32)
        zp = q.ZeroPointAsNumpy().astype(np.int64) if not q.ZeroPointIsNone() else np.zeros(1, np.int64)
        if zp.size == 0:
            zp = np.zeros(1, np.int64)
        axis = int(q.QuantizedDimension())
        scale, zp, axis = _tolerated_layout(scale, zp, axis, shape)
        if zp.size not in (1, scale.size) or not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            raise _bad(where, f"tensor {index} {name!r} has invalid quantization parameters")
        if dtype in ("int8", "uint8", "int16"):
            info = np.iinfo(DTYPES[dtype])
            if zp.min() < info.min or zp.max() > info.max:
                raise _bad(where, f"tensor {index} {name!r}: zero point outside the {dtype} range "
                                  f"[{info.min}, {info.max}]")
        if scale.size > 1 and (not 0 <= axis < len(shape) or shape[axis] != scale.size):
            raise _bad(where, f"tensor {index} {name!r}: {scale.size} scales do not match "
                              f"axis {axis} of shape {list(shape)}")
        if zp.size == 1 and scale.size > 1:
            zp = np.repeat(zp, scale.size)
        quant = QuantParams(scale, zp, axis)
    const = None
    b = int(t.Buffer())
    if b >= n_buffers:
        raise _bad(where, f"tensor {index} {name!r} refers to buffer {b}, but the model has {n_buffers}")
    if b > 0:
        buf = model.Buffers(b)
        raw = None
        if buf.Offset() > 1:  # data stored after the flatbuffer (large models)
            off, sz = int(buf.Offset()), int(buf.Size())
            if off + sz > len(data):
                raise _bad(where, f"buffer {b} lies outside the file")
            raw = data[off:off + sz]
        elif not buf.DataIsNone() and buf.DataLength() > 0:
            raw = buf.DataAsNumpy().tobytes()
        if raw is not None:
            if dtype not in DTYPES:
                raise _bad(where, f"constant tensor {index} {name!r} has unsupported type {dtype}")
            want = elements * DTYPES[dtype].itemsize
            if len(raw) != want:
                raise _bad(where, f"tensor {index} {name!r}: buffer holds {len(raw)} bytes, "
                                  f"shape {list(shape)} {dtype} needs {want}")
            const = np.frombuffer(raw, dtype=DTYPES[dtype]).reshape(shape).copy()
    return Tensor(name, shape, dtype, const, quant)


def _tolerated_layout(scale: np.ndarray, zp: np.ndarray, axis: int,
                      shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, int]:
    """Quantization layouts converters wrote that TFLite Micro runs, as the one it means.

    * One scale with a zero-point array (a per-channel array of zeros on per-tensor weights,
      or the zero point repeated): TFLM takes element 0 of each (``TfLiteTensor.params``),
      so does kiloml.
    * One scale with any ``quantized_dimension`` (per-tensor data written as a one-element
      per-channel array): per-tensor, axis 0.
    * A 1-D tensor (a bias) with one scale per element and a ``quantized_dimension`` copied
      from the weights (e.g. 3 from a depthwise filter): its only axis, 0. TFLM's kernels
      never read a bias's quantization (they requantize with input x filter scales).
    """
    if scale.size == 1:
        return scale, zp[:1], 0
    if len(shape) == 1 and shape[0] == scale.size:
        axis = 0
    return scale, zp, axis


def _check_structure(g: Graph, where: str) -> None:
    """Every node reads tensors that exist by then and writes each tensor once."""
    ready = set(g.inputs) | {i for i, t in enumerate(g.tensors) if t.is_const}
    written: set[int] = set()
    for n, node in enumerate(g.nodes):
        for t in node.inputs:
            if t >= 0 and t not in ready:
                raise _bad(where, f"node {n} {node.op} reads tensor {t} before it is produced")
        if not node.outputs:
            raise _bad(where, f"node {n} {node.op} has no output")
        for t in node.outputs:
            if t in written or t in g.inputs or g.tensors[t].is_const:
                raise _bad(where, f"node {n} {node.op} writes tensor {t}, which is already defined")
            written.add(t)
            ready.add(t)
    for t in g.outputs:
        if t not in ready:
            raise _bad(where, f"graph output tensor {t} is never produced")


def _check_supported(g: Graph, where: str) -> None:
    from kiloml.ir.ops import REGISTRY

    problems = []
    for n, node in enumerate(g.nodes):
        try:
            reasons = REGISTRY[node.op].check(g, node)
        except Exception as e:  # a check tripping over absurd shapes means a broken file
            raise _bad(where, f"node {n} {node.op}: inconsistent tensors ({type(e).__name__}: {e})") from None
        problems += [f"node {n} {node.op}: {r}" for r in reasons]
    for t in g.inputs + g.outputs:
        if g.tensors[t].dtype not in ("int8", "float32"):
            problems.append(f"graph input/output tensor {t} is {g.tensors[t].dtype} "
                            "(int8 or float32 expected)")
    if problems:
        raise UnsupportedModelError(f"{where}: unsupported: " + "; ".join(problems))
