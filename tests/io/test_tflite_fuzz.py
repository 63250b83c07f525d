"""Fuzzing and targeted malformed-input tests of the .tflite reader.

A .tflite file is untrusted input: whatever its bytes, ``parse_tflite`` must return a graph or
raise a ``KilomlError`` (``InvalidModelError`` / ``UnsupportedModelError``), quickly. Any other
exception, or a case running past ``CASE_TIME_LIMIT`` seconds, is a bug. Graphs parsed from
mutated small models are also run once in the reference interpreter: the reader promises a
verified graph whose every node is supported (graphs from models up to RUN_LIMIT bytes).

Mutations are seeded (numpy) or derandomized (hypothesis), so every run tests the same inputs.
"""

from __future__ import annotations

import copy
import signal
from contextlib import contextmanager
from pathlib import Path

import flatbuffers
import numpy as np
import pytest
import tflite
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

import opbuilder as ob
from kiloml.errors import InvalidModelError, UnsupportedModelError
from kiloml.io.tflite_reader import parse_tflite
from kiloml.io.tflite_writer import write_tflite
from kiloml.ir.graph import QuantParams
from kiloml.ir.interpreter import Interpreter
from kiloml.ir.ops import REGISTRY
from kiloml.ir.ops.softmax import SoftmaxAttrs

CASE_TIME_LIMIT = 10.0  # seconds; a healthy parse of the largest model takes ~20 ms
CASES_PER_MUTATION = 500
RUN_LIMIT = 32 * 1024  # graphs parsed from sources up to this size are also run once

REAL_MODELS = sorted(Path("/work/shared/models").glob("*/*.tflite"))


class Hang(Exception):
    pass


@contextmanager
def time_limit(seconds: float):
    def on_alarm(signum, frame):
        raise Hang(f"case ran longer than {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _small_models() -> dict[str, bytes]:
    r = np.random.default_rng(2024)
    chain = ob.ModelBuilder(r, "chain")
    y = chain.conv2d(chain.input((1, 6, 6, 2)), 4, 3, stride=2, activation="RELU")
    y = chain.fully_connected(chain.reshape(y, (1, -1)), 5)
    graphs = {
        "conv": ob.conv2d_model(r, (1, 5, 5, 2), 3),
        "conv_pertensor": ob.conv2d_model(r, (1, 5, 5, 2), 3, per_channel=False, bias=False),
        "depthwise": ob.depthwise_model(r, (1, 5, 5, 2), depth_multiplier=2),
        "fc": ob.fc_model(r, (2, 6), 3),
        "avg_pool": ob.pool_model(r, "AVG", (1, 5, 5, 2), 3, 2, "SAME"),
        "max_pool": ob.pool_model(r, "MAX", (1, 4, 4, 2)),
        "add": ob.add_model(r, (1, 2, 2, 3), (3,)),
        "reshape": ob.reshape_model(r, (1, 2, 2, 3), (1, 12)),
        "softmax": ob.softmax_model(r, (2, 5)),
        "chain": chain.build(chain.softmax(y)),
    }
    return {k: write_tflite(g) for k, g in graphs.items()}


SMALL = _small_models()
REAL = {p.stem: p.read_bytes() for p in REAL_MODELS}
SOURCES = {**SMALL, **REAL}


def _structure_positions(data: bytes) -> np.ndarray:
    """Byte positions outside the constant-buffer payloads: the tables, vectors and strings
    whose corruption exercises the reader (flipping a weight byte only changes a weight)."""
    inside = np.zeros(len(data), dtype=bool)
    model = tflite.Model.GetRootAsModel(data, 0)
    for b in range(model.BuffersLength()):
        buf = model.Buffers(b)
        o = buf._tab.Offset(4)
        if o:
            start = buf._tab.Vector(o)
            inside[start:start + buf.DataLength()] = True
    return np.flatnonzero(~inside)


STRUCTURE = {k: _structure_positions(v) for k, v in SOURCES.items()}
INTERESTING_BYTES = [0x00, 0x01, 0x02, 0x04, 0x7F, 0x80, 0xFE, 0xFF]
INTERESTING_I32 = [0, 1, 2, 3, 4, 8, 16, 100, 255, 256, 0xFFFF, 0x10000, 0x7FFFFFFF,
                   -1, -2, -0x80000000]


def check_parse(data: bytes, run: bool = False) -> str:
    """Parse within the time limit; returns 'ok', 'invalid' or 'unsupported'. With ``run``, a
    parsed graph is also prepared and run once in the reference interpreter."""
    with time_limit(CASE_TIME_LIMIT):
        try:
            g = parse_tflite(data)
        except InvalidModelError:
            return "invalid"
        except UnsupportedModelError:
            return "unsupported"
        if run:
            Interpreter(g).run(*ob.random_inputs(np.random.default_rng(0), g))
    return "ok"


# -- seeded mutations ------------------------------------------------------------------------------

def _pos(rng: np.random.Generator, name: str, n: int) -> int:
    """A position in [0, n): mostly in the structure, sometimes anywhere."""
    s = STRUCTURE[name]
    s = s[s < n]
    if s.size and rng.random() < 0.85:
        return int(s[rng.integers(0, s.size)])
    return int(rng.integers(0, n))


def _put_i32(d: bytearray, p: int, v: int) -> None:
    p -= p % 4  # flatbuffer scalars, offsets and lengths are 4-byte aligned
    d[p:p + 4] = (v & 0xFFFFFFFF).to_bytes(4, "little")[:len(d) - p]


def m_bitflip(rng, name, d):
    for _ in range(rng.integers(1, 9)):
        p = _pos(rng, name, len(d))
        d[p] ^= 1 << int(rng.integers(0, 8))
    return d


def m_byte_overwrite(rng, name, d):
    for _ in range(rng.integers(1, 5)):
        p = _pos(rng, name, len(d))
        d[p] = int(rng.choice(INTERESTING_BYTES)) if rng.random() < 0.5 else int(rng.integers(0, 256))
    return d


def m_int32_overwrite(rng, name, d):
    for _ in range(rng.integers(1, 3)):
        v = int(rng.choice(INTERESTING_I32)) if rng.random() < 0.7 else int(rng.integers(-2**31, 2**31))
        _put_i32(d, _pos(rng, name, len(d)), v)
    return d


def m_truncate(rng, name, d):
    return d[:int(rng.integers(0, len(d)))]


def m_insert_garbage(rng, name, d):
    p = _pos(rng, name, len(d))
    junk = rng.integers(0, 256, size=int(rng.integers(1, 65)), dtype=np.uint8).tobytes()
    return d[:p] + junk + d[p:]


def m_delete_chunk(rng, name, d):
    p = _pos(rng, name, len(d))
    return d[:p] + d[p + int(rng.integers(1, 65)):]


def m_wrong_magic(rng, name, d):
    d[4:8] = rng.choice([b"TFL2", b"TFL4", b"tfl3", b"\0\0\0\0", b"LFT3"])
    return d


def m_root_offset(rng, name, d):
    root = int.from_bytes(d[:4], "little")
    choices = [v for v in (0, 4, 8, 12, len(d), len(d) - 4, 0x7FFFFFFF, -4) if v != root]
    _put_i32(d, 0, int(rng.choice(choices)))
    return d


def m_random_bytes(rng, name, d):
    out = bytearray(rng.integers(0, 256, size=int(rng.integers(0, 4096)), dtype=np.uint8).tobytes())
    if len(out) >= 8 and rng.random() < 0.7:
        out[4:8] = b"TFL3"
    return out


MUTATIONS = [m_bitflip, m_byte_overwrite, m_int32_overwrite, m_truncate, m_insert_garbage,
             m_delete_chunk, m_wrong_magic, m_root_offset, m_random_bytes]


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.__name__[2:] for m in MUTATIONS])
def test_seeded_mutations(mutation):
    rng = np.random.default_rng(MUTATIONS.index(mutation) + 1)
    names = list(SOURCES)
    outcomes: dict[str, int] = {}
    failures = []
    for case in range(CASES_PER_MUTATION):
        # two small models for each real one: they parse ~10x faster
        name = names[int(rng.integers(0, len(names)))] if case % 3 == 0 else \
            list(SMALL)[int(rng.integers(0, len(SMALL)))]
        data = bytes(mutation(rng, name, bytearray(SOURCES[name])))
        try:
            outcome = check_parse(data, run=len(SOURCES[name]) <= RUN_LIMIT)
        except Exception as e:  # anything but a KilomlError is a reader bug
            failures.append(f"case {case} ({name}): {type(e).__name__}: {e}")
            continue
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert not failures, "\n".join(failures[:20])
    assert sum(outcomes.values()) == CASES_PER_MUTATION
    if mutation in (m_wrong_magic, m_root_offset, m_random_bytes):
        assert outcomes.get("ok", 0) == 0
    if mutation in (m_bitflip, m_byte_overwrite, m_int32_overwrite):
        # the mutations reach past the header checks: some files stay valid, some do not
        assert outcomes.get("ok", 0) > 0 and outcomes.get("invalid", 0) > 0, outcomes


@pytest.mark.parametrize("data", [b"", b"\0", b"TFL3", b"\0\0\0\0TFL3", b"\x08\0\0\0TFL3\0\0\0\0",
                                  b"\xff" * 64, b"\x0c\0\0\0TFL3" + b"\xff" * 56],
                         ids=["empty", "one-byte", "magic-only", "zero-root", "root-past-end",
                              "all-ff", "ff-table"])
def test_tiny_inputs_are_invalid(data):
    with pytest.raises(InvalidModelError):
        parse_tflite(data)


# -- hypothesis ----------------------------------------------------------------------------------

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(st.binary(max_size=3000), st.booleans())
def test_hypothesis_random_bytes(data, magic):
    if magic and len(data) >= 8:
        data = data[:4] + b"TFL3" + data[8:]
    check_parse(data)


@FUZZ
@given(st.sampled_from(sorted(SMALL)),
       st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1, max_size=12))
def test_hypothesis_byte_edits(name, edits):
    d = bytearray(SMALL[name])
    for pos, value in edits:
        d[pos % len(d)] = value
    check_parse(bytes(d), run=True)


@FUZZ
@given(st.sampled_from(sorted(SOURCES)), st.integers(0, 1 << 20),
       st.sampled_from(INTERESTING_I32) | st.integers(-2**31, 2**31 - 1))
def test_hypothesis_int32_edits(name, pos, value):
    d = bytearray(SOURCES[name])
    s = STRUCTURE[name]
    _put_i32(d, int(s[pos % s.size]), value)
    check_parse(bytes(d), run=len(SOURCES[name]) <= RUN_LIMIT)


@FUZZ
@given(st.sampled_from(sorted(SOURCES)), st.floats(0, 1, exclude_max=True))
def test_hypothesis_truncation(name, frac):
    """A cut file is invalid, unless only bytes nothing refers to were cut (trailing padding)."""
    data = SOURCES[name]
    cut = data[:int(frac * len(data))]
    if check_parse(cut) == "ok":
        assert ob.graph_differences(parse_tflite(data), parse_tflite(cut)) == []


# -- targeted malformed models -----------------------------------------------------------------------

def _graph(seed: int = 0):
    return ob.conv2d_model(np.random.default_rng(seed), (1, 5, 5, 2), 3)


def edit_model(data: bytes, fn) -> bytes:
    """Unpack with the object API, let ``fn`` modify the ModelT, pack again."""
    m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    fn(m)
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def test_unedited_model_parses():
    assert check_parse(edit_model(write_tflite(_graph()), lambda m: None), run=True) == "ok"


def test_out_of_range_tensor_index_in_op():
    g = _graph()
    g.nodes[0].inputs[1] = 99
    with pytest.raises(InvalidModelError, match="node 0 input refers to tensor 99, but the model has"):
        parse_tflite(write_tflite(g))


def test_out_of_range_output_index_in_op():
    g = _graph()
    g.nodes[0].outputs[0] = len(g.tensors)
    with pytest.raises(InvalidModelError, match=f"node 0 output refers to tensor {len(g.tensors)}"):
        parse_tflite(write_tflite(g))


def test_negative_tensor_index_in_op():
    g = _graph()
    g.nodes[0].inputs[0] = -7
    with pytest.raises(InvalidModelError, match="node 0 input refers to tensor -7"):
        parse_tflite(write_tflite(g))


def test_out_of_range_graph_input():
    g = _graph()
    g.inputs = [42]
    with pytest.raises(InvalidModelError, match="graph input refers to tensor 42"):
        parse_tflite(write_tflite(g))


def test_out_of_range_buffer_index():
    def bad(m):
        m.subgraphs[0].tensors[1].buffer = 77
    with pytest.raises(InvalidModelError, match="refers to buffer 77, but the model has"):
        parse_tflite(edit_model(write_tflite(_graph()), bad))


def test_out_of_range_opcode_index():
    def bad(m):
        m.subgraphs[0].operators[0].opcodeIndex = 5
    with pytest.raises(InvalidModelError, match="node 0 uses operator code 5, but the model has 1"):
        parse_tflite(edit_model(write_tflite(_graph()), bad))


def test_shape_inconsistent_with_buffer_size():
    def bad(m):
        m.subgraphs[0].tensors[1].shape = np.array([3, 3, 3, 3], dtype=np.int32)
    with pytest.raises(InvalidModelError, match=r"buffer holds 54 bytes, shape \[3, 3, 3, 3\] int8 needs 81"):
        parse_tflite(edit_model(write_tflite(_graph()), bad))


def test_buffer_outside_file():
    def bad(m):
        m.buffers[1].data = None
        m.buffers[1].offset = 1 << 30
        m.buffers[1].size = 54
    with pytest.raises(InvalidModelError, match="buffer 1 lies outside the file"):
        parse_tflite(edit_model(write_tflite(_graph()), bad))


def test_negative_dimension():
    g = _graph()
    g.tensors[g.outputs[0]].shape = (1, -1, 5, 3)
    with pytest.raises(InvalidModelError, match="dynamic or negative shape"):
        parse_tflite(write_tflite(g))


def test_zero_point_outside_int8():
    g = _graph()
    x = g.tensors[g.inputs[0]]
    x.quant = QuantParams(x.quant.scale, [300])
    with pytest.raises(InvalidModelError, match="zero point outside the int8 range"):
        parse_tflite(write_tflite(g))


def test_per_channel_scales_do_not_match_axis():
    g = _graph()
    w = g.tensors[g.nodes[0].inputs[1]]
    w.quant = QuantParams(w.quant.scale, w.quant.zero_point, axis=3)
    with pytest.raises(InvalidModelError, match="3 scales do not match axis 3"):
        parse_tflite(write_tflite(g))


def test_non_positive_scale():
    g = _graph()
    y = g.tensors[g.outputs[0]]
    y.quant = QuantParams([0.0], y.quant.zero_point)
    with pytest.raises(InvalidModelError, match="invalid quantization parameters"):
        parse_tflite(write_tflite(g))


def test_node_reads_tensor_before_it_is_produced():
    m = ob.ModelBuilder(np.random.default_rng(1))
    y = m.conv2d(m.input((1, 4, 4, 2)), 2, 1)
    g = m.build(m.softmax(y))
    g.nodes.reverse()
    with pytest.raises(InvalidModelError, match="node 0 SOFTMAX reads tensor .* before it is produced"):
        parse_tflite(write_tflite(g))


def test_tensor_written_twice():
    g = _graph()
    g.nodes.append(copy.deepcopy(g.nodes[0]))
    with pytest.raises(InvalidModelError, match="node 1 CONV_2D writes tensor .* already defined"):
        parse_tflite(write_tflite(g))


def test_no_subgraph():
    def bad(m):
        m.subgraphs = []
    with pytest.raises(InvalidModelError, match="no subgraph"):
        parse_tflite(edit_model(write_tflite(_graph()), bad))


# TFLite builtins a TinyML toolchain is unlikely to implement; the test takes the first two
# that kiloml does not (ops are added over time).
RARE_OPS = ["SEGMENT_SUM", "MATRIX_DIAG", "REVERSE_SEQUENCE", "FLOOR_MOD", "SQRT", "RSQRT",
            "REVERSE_V2", "SIN", "COS"]


def test_every_unsupported_node_reported_in_one_message():
    """conv -> A -> B -> CUSTOM(MyOp) -> softmax, A and B unimplemented builtins (e.g.
    SEGMENT_SUM, MATRIX_DIAG): nodes 1, 2 and 3 are reported, by index and name, in one line."""
    a, b = [op for op in RARE_OPS if op not in REGISTRY][:2]
    m = ob.ModelBuilder(np.random.default_rng(5))
    y = m.conv2d(m.input((1, 4, 4, 2)), 3, 1)
    q = QuantParams([0.05], [0])
    y = m.generic(a, [y], (1, 4, 4, 3), quant=q)
    y = m.generic(b, [y], (1, 4, 4, 3), quant=q)
    y = m.generic(a, [y], (1, 4, 4, 3), quant=q)  # becomes CUSTOM(MyOp) below
    g = m.build(m.softmax(y))

    def custom(model):
        code = model.operatorCodes[model.subgraphs[0].operators[3].opcodeIndex]
        model.operatorCodes.append(copy.copy(code))
        model.operatorCodes[-1].builtinCode = tflite.BuiltinOperator.CUSTOM
        model.operatorCodes[-1].deprecatedBuiltinCode = tflite.BuiltinOperator.CUSTOM
        model.operatorCodes[-1].customCode = "MyOp"
        model.subgraphs[0].operators[3].opcodeIndex = len(model.operatorCodes) - 1

    with pytest.raises(UnsupportedModelError) as info:
        parse_tflite(edit_model(write_tflite(g), custom), "net.tflite")
    msg = str(info.value)
    assert msg == f"net.tflite: unsupported ops: node 1 {a}; node 2 {b}; node 3 CUSTOM(MyOp)"


def test_unsupported_options_and_types_reported_together():
    """A fused TANH activation on node 0 and a float32 softmax on node 1, in one message."""
    m = ob.ModelBuilder(np.random.default_rng(6))
    y = m.conv2d(m.input((1, 4, 4, 2)), 3, 1)
    f_in = m.tensor("f_in", (1, 3), "float32")
    m.inputs.append(f_in)
    f_out = m.generic("SOFTMAX", [f_in], (1, 3), "float32", attrs=SoftmaxAttrs(1.0))
    g = m.build([y, f_out])

    def tanh_activation(model):
        model.subgraphs[0].operators[0].builtinOptions.fusedActivationFunction = \
            tflite.ActivationFunctionType.TANH

    with pytest.raises(UnsupportedModelError) as info:
        parse_tflite(edit_model(write_tflite(g), tanh_activation))
    msg = str(info.value)
    assert "node 0 CONV_2D: fused activation UNSUPPORTED_ACTIVATION_4 is not supported" in msg
    assert "node 1 SOFTMAX" in msg and "float32" in msg


@pytest.mark.parametrize("build", [
    lambda r: ob.pool_model(r, "MAX", (1, 1, 5, 1), (1, 65537), (1, 1), "SAME"),
    lambda r: ob.pool_model(r, "AVG", (1, 1, 5, 1), (1, 65537), (1, 1), "SAME"),
    lambda r: ob.conv2d_model(r, (1, 1, 5, 2), 3, (1, 3), dilation=(1, 65537), padding="SAME"),
    lambda r: ob.depthwise_model(r, (1, 1, 5, 2), 1, (1, 3), dilation=(1, 65537), padding="SAME"),
], ids=["MAX_POOL_2D-filter65537", "AVERAGE_POOL_2D-filter65537", "CONV_2D-dilation65537",
        "DEPTHWISE_CONV_2D-dilation65537"])
def test_absurd_window_geometry_is_rejected(build):
    with pytest.raises(UnsupportedModelError):
        parse_tflite(write_tflite(build(np.random.default_rng(0))))
