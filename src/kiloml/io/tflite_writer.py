"""kiloml IR -> .tflite (flatbuffer, schema version 3, file identifier ``TFL3``).

The file runs in TFLite Micro and LiteRT as written: buffer 0 is the empty sentinel every
reader expects, each constant tensor gets its own buffer whose bytes start on a 16-byte
boundary of the file (so a runtime may use the weights in place with any element type),
activations point at buffer 0, and each op serializes its own builtin options through its
``OpDef.write_options``. Reading the written file back gives the same graph.

Nodes whose op is a TFLite builtin that kiloml does not implement (e.g. ``SQRT``) are written
too, without options: the tests use that to build models the reader must reject.
"""

from __future__ import annotations

from pathlib import Path

import flatbuffers
import numpy as np
import tflite

from kiloml.io.tflite_reader import TENSOR_TYPE_NAMES, TENSOR_TYPES
from kiloml.ir.graph import DTYPES, Graph, QuantParams, Tensor
from kiloml.ir.ops import REGISTRY

SCHEMA_VERSION = 3
FILE_IDENTIFIER = b"TFL3"
BUFFER_ALIGNMENT = 16

TYPE_CODES: dict[str, int] = {name.lower(): code for code, name in TENSOR_TYPE_NAMES.items()}
TYPE_CODES.update({name: code for code, name in TENSOR_TYPES.items()})
BUILTIN_CODES: dict[str, int] = {k: v for k, v in vars(tflite.BuiltinOperator).items()
                                 if not k.startswith("_")}

# Operator versions the TFLite converter assigns to the int8 form of each op. Runtimes accept
# any registered version; recording the usual one keeps files comparable with converted ones.
OP_VERSIONS = {"CONV_2D": 3, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 4, "ADD": 2,
               "AVERAGE_POOL_2D": 2, "MAX_POOL_2D": 2, "SOFTMAX": 2, "RESHAPE": 1}


def save_tflite(graph: Graph, path: str | Path) -> Path:
    """Write ``graph`` to ``path`` as a .tflite file; returns the path."""
    path = Path(path)
    path.write_bytes(write_tflite(graph))
    return path


def write_tflite(graph: Graph) -> bytes:
    """Serialize an IR graph into .tflite bytes (one subgraph, little-endian data)."""
    b = flatbuffers.Builder(1024 + sum(t.nbytes for t in graph.tensors if t.is_const))

    # Buffer payloads first: the builder writes back to front, so they end up at the end of
    # the file, after the small tables, as in files made by the TFLite converter.
    buffer_of: dict[int, int] = {}
    data_vectors: list[int | None] = [None]  # buffer 0: the empty sentinel
    for i, t in enumerate(graph.tensors):
        if t.is_const:
            buffer_of[i] = len(data_vectors)
            data_vectors.append(_aligned_bytes(b, _tensor_bytes(t)))
    buffers = []
    for vec in data_vectors:
        tflite.BufferStart(b)
        if vec is not None:
            tflite.BufferAddData(b, vec)
        buffers.append(tflite.BufferEnd(b))

    tensors = [_write_tensor(b, t, buffer_of.get(i, 0)) for i, t in enumerate(graph.tensors)]

    codes: list[tuple[int, int]] = []  # (builtin code, version), in first-use order
    operators = []
    for node in graph.nodes:
        code = _builtin_code(node.op)
        key = (code, OP_VERSIONS.get(node.op, 1))
        if key not in codes:
            codes.append(key)
        operators.append(_write_operator(b, node, codes.index(key)))

    opcode_tables = []
    for code, version in codes:
        tflite.OperatorCodeStart(b)
        tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
        tflite.OperatorCodeAddBuiltinCode(b, code)
        tflite.OperatorCodeAddVersion(b, version)
        opcode_tables.append(tflite.OperatorCodeEnd(b))

    tensors_vec = _offset_vector(b, tflite.SubGraphStartTensorsVector, tensors)
    inputs_vec = _int32_vector(b, tflite.SubGraphStartInputsVector, graph.inputs)
    outputs_vec = _int32_vector(b, tflite.SubGraphStartOutputsVector, graph.outputs)
    ops_vec = _offset_vector(b, tflite.SubGraphStartOperatorsVector, operators)
    sg_name = b.CreateString("main")
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, tensors_vec)
    tflite.SubGraphAddInputs(b, inputs_vec)
    tflite.SubGraphAddOutputs(b, outputs_vec)
    tflite.SubGraphAddOperators(b, ops_vec)
    tflite.SubGraphAddName(b, sg_name)
    subgraph = tflite.SubGraphEnd(b)

    codes_vec = _offset_vector(b, tflite.ModelStartOperatorCodesVector, opcode_tables)
    subgraphs_vec = _offset_vector(b, tflite.ModelStartSubgraphsVector, [subgraph])
    buffers_vec = _offset_vector(b, tflite.ModelStartBuffersVector, buffers)
    description = b.CreateString(graph.name)
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, SCHEMA_VERSION)
    tflite.ModelAddOperatorCodes(b, codes_vec)
    tflite.ModelAddSubgraphs(b, subgraphs_vec)
    tflite.ModelAddDescription(b, description)
    tflite.ModelAddBuffers(b, buffers_vec)
    model = tflite.ModelEnd(b)
    b.Finish(model, file_identifier=FILE_IDENTIFIER)
    return bytes(b.Output())


def _builtin_code(op: str) -> int:
    if op in REGISTRY:
        return int(REGISTRY[op].tflite_code)
    if op in BUILTIN_CODES and op != "CUSTOM":
        return int(BUILTIN_CODES[op])
    raise ValueError(f"cannot write op {op!r}: not a TFLite builtin operator")


def _tensor_bytes(t: Tensor) -> bytes:
    if t.dtype not in DTYPES:
        raise ValueError(f"cannot write constant tensor {t.name!r} of type {t.dtype}")
    dt = DTYPES[t.dtype].newbyteorder("<")
    arr = np.asarray(t.data)
    if arr.size != t.size:
        raise ValueError(f"constant tensor {t.name!r} holds {arr.size} values, shape "
                         f"{list(t.shape)} needs {t.size}")
    return np.ascontiguousarray(arr, dtype=dt).tobytes()


def _aligned_bytes(b: flatbuffers.Builder, raw: bytes) -> int:
    """A ubyte vector whose first data byte is BUFFER_ALIGNMENT-aligned in the final file."""
    b.StartVector(1, len(raw), BUFFER_ALIGNMENT)
    b.head -= len(raw)
    b.Bytes[b.head:b.head + len(raw)] = raw
    return b.EndVector()


def _int32_vector(b: flatbuffers.Builder, start, values) -> int:
    values = [int(v) for v in values]
    start(b, len(values))
    for v in reversed(values):
        b.PrependInt32(v)
    return b.EndVector()


def _offset_vector(b: flatbuffers.Builder, start, offsets: list[int]) -> int:
    start(b, len(offsets))
    for off in reversed(offsets):
        b.PrependUOffsetTRelative(off)
    return b.EndVector()


def _write_quant(b: flatbuffers.Builder, q: QuantParams | None) -> int:
    if q is None:  # an empty table, as the converter writes for unquantized tensors
        tflite.QuantizationParametersStart(b)
        return tflite.QuantizationParametersEnd(b)
    scale = np.asarray(q.scale, dtype="<f4").reshape(-1)
    zp = np.asarray(q.zero_point, dtype="<i8").reshape(-1)
    tflite.QuantizationParametersStartScaleVector(b, scale.size)
    for v in reversed(scale.tolist()):
        b.PrependFloat32(v)
    scale_vec = b.EndVector()
    tflite.QuantizationParametersStartZeroPointVector(b, zp.size)
    for v in reversed(zp.tolist()):
        b.PrependInt64(int(v))
    zp_vec = b.EndVector()
    tflite.QuantizationParametersStart(b)
    tflite.QuantizationParametersAddScale(b, scale_vec)
    tflite.QuantizationParametersAddZeroPoint(b, zp_vec)
    tflite.QuantizationParametersAddQuantizedDimension(b, int(q.axis))
    return tflite.QuantizationParametersEnd(b)


def _write_tensor(b: flatbuffers.Builder, t: Tensor, buffer: int) -> int:
    if t.dtype not in TYPE_CODES:
        raise ValueError(f"cannot write tensor {t.name!r}: unknown type {t.dtype}")
    name = b.CreateString(t.name)
    shape = _int32_vector(b, tflite.TensorStartShapeVector, t.shape)
    quant = _write_quant(b, t.quant)
    tflite.TensorStart(b)
    tflite.TensorAddShape(b, shape)
    tflite.TensorAddType(b, TYPE_CODES[t.dtype])
    tflite.TensorAddBuffer(b, buffer)
    tflite.TensorAddName(b, name)
    tflite.TensorAddQuantization(b, quant)
    return tflite.TensorEnd(b)


def _write_operator(b: flatbuffers.Builder, node, opcode_index: int) -> int:
    opdef = REGISTRY.get(node.op)
    options, options_type = None, 0
    if opdef is not None and opdef.options_type and node.attrs is not None:
        options = opdef.write_options(b, node.attrs)
        options_type = int(opdef.options_type) if options is not None else 0
    inputs = _int32_vector(b, tflite.OperatorStartInputsVector, node.inputs)
    outputs = _int32_vector(b, tflite.OperatorStartOutputsVector, node.outputs)
    tflite.OperatorStart(b)
    tflite.OperatorAddOpcodeIndex(b, opcode_index)
    tflite.OperatorAddInputs(b, inputs)
    tflite.OperatorAddOutputs(b, outputs)
    if options is not None:
        tflite.OperatorAddBuiltinOptionsType(b, options_type)
        tflite.OperatorAddBuiltinOptions(b, options)
    return tflite.OperatorEnd(b)
