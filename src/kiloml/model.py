"""One model object: an int8 graph to inspect and run on every engine kiloml has.

::

    m = Model.load("model.tflite")            # or Model(graph)
    m.input_spec                               # TensorSpec(name, shape, dtype, scale, zero_point)
    y = m.predict(x_int8)                      # the numpy reference interpreter
    y = m.predict(x_int8, engine="c")          # the generated C, compiled for this host
    y = m.predict(x, engine="emulator", board="nano33ble", quantize=True, dequantize=True)

The engines compute the same bytes (the tests check it): ``ref`` is the executable spec,
batched for speed (kiloml.ir.batch); ``c`` is the C library kiloml generates, built with the
host's gcc (kiloml.codegen.host); ``emulator`` is that C cross-compiled for a board's Cortex-M
core and run instruction by instruction (kiloml.targets.run). As in emlearn, the estimator
you evaluate is backed by the C you ship.

Batches: samples are stacked on a new leading axis. A graph tensor of shape (1, 49, 10, 1)
takes a batch (N, 49, 10, 1) -- the samples replace the batch axis of 1 -- or (N, 1, 49, 10, 1);
outputs come back the first way, (N, *output shape without its batch axis of 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from kiloml.errors import KilomlError
from kiloml.ir.graph import DTYPES, Graph

ENGINES = ("ref", "c", "emulator")
REF_BATCH = 16      # samples per reference-interpreter run: past ~16 numpy's per-call cost is paid


def quantize_array(x: Any, scale: float, zero_point: int, dtype: str = "int8") -> np.ndarray:
    """Real values -> integers of ``dtype``: round(x / scale) + zero_point, rounding halves away
    from zero (TFLite's rounding) and saturating. The division is done in float64."""
    v = np.asarray(x, np.float64) / scale
    q = np.sign(v) * np.floor(np.abs(v) + 0.5) + zero_point
    info = np.iinfo(DTYPES[dtype])
    return np.clip(q, info.min, info.max).astype(DTYPES[dtype])


def dequantize_array(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Integers -> real values (q - zero_point) x scale, in float64."""
    return (np.asarray(q).astype(np.float64) - zero_point) * scale


@dataclass(frozen=True)
class TensorSpec:
    """What a model input or output holds: graph ``shape`` (with its batch axis), ``dtype``
    and, for quantized integer tensors, the per-tensor ``scale`` and ``zero_point``."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float | None = None
    zero_point: int | None = None

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one sample in a batch: ``shape`` without a leading axis of 1."""
        return self.shape[1:] if self.shape[:1] == (1,) else self.shape

    @property
    def quantized(self) -> bool:
        return self.scale is not None and self.dtype != "float32"

    def quantize(self, x: Any) -> np.ndarray:
        """Real values -> this tensor's integers (see ``quantize_array``)."""
        if not self.quantized:
            raise KilomlError(f"tensor {self.name!r} ({self.dtype}) is not quantized: it takes "
                              "its values as they are")
        return quantize_array(x, self.scale, self.zero_point, self.dtype)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """This tensor's integers -> real values (see ``dequantize_array``)."""
        if not self.quantized:
            raise KilomlError(f"tensor {self.name!r} ({self.dtype}) is not quantized: its "
                              "values are already real")
        return dequantize_array(q, self.scale, self.zero_point)


def _spec(graph: Graph, t: int) -> TensorSpec:
    tensor = graph.tensors[t]
    q = tensor.quant
    if q is None or q.scale.size == 0:
        return TensorSpec(tensor.name, tuple(tensor.shape), tensor.dtype)
    return TensorSpec(tensor.name, tuple(tensor.shape), tensor.dtype, float(q.scale[0]),
                      int(q.zero_point[0]))


def logits_graph(graph: Graph) -> Graph:
    """The graph whose output is its final SOFTMAX's input (itself when it has none): a
    classifier's int8 logits decide its class without the ties 8-bit probabilities have."""
    last = next((n for n in graph.nodes if graph.outputs[0] in n.outputs), None)
    if last is None or last.op != "SOFTMAX":
        return graph
    return Graph(graph.tensors, [n for n in graph.nodes if n is not last], graph.inputs,
                 [last.inputs[0]], graph.name, graph.source_sha256, dict(graph.meta))


class Model:
    """An int8 IR graph with its inputs' and outputs' specs and one ``predict`` for every
    engine (see the module doc). Builds for the ``c`` and ``emulator`` engines are made on
    first use and kept for later calls."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.input_specs = [_spec(graph, t) for t in graph.inputs]
        self.output_specs = [_spec(graph, t) for t in graph.outputs]
        self._engines: dict[tuple[str, str | None], Any] = {}

    @classmethod
    def load(cls, path: str | Path) -> "Model":
        """A model from a .tflite file."""
        from kiloml.io.tflite_reader import read_tflite

        return cls(read_tflite(path))

    @property
    def name(self) -> str:
        return self.graph.name

    @property
    def input_spec(self) -> TensorSpec:
        """The spec of the model's only input."""
        if len(self.input_specs) != 1:
            raise KilomlError(f"model {self.name!r} has {len(self.input_specs)} inputs: use "
                              "input_specs")
        return self.input_specs[0]

    @property
    def output_spec(self) -> TensorSpec:
        """The spec of the model's only output."""
        if len(self.output_specs) != 1:
            raise KilomlError(f"model {self.name!r} has {len(self.output_specs)} outputs: use "
                              "output_specs")
        return self.output_specs[0]

    def logits(self) -> "Model":
        """The model that stops before a final SOFTMAX (itself when it has none)."""
        g = logits_graph(self.graph)
        return self if g is self.graph else Model(g)

    # -- predict ---------------------------------------------------------------------------
    def predict(self, x: np.ndarray | Sequence[np.ndarray], engine: str = "ref",
                board: str | None = None, quantize: bool = False,
                dequantize: bool = False) -> np.ndarray | list[np.ndarray]:
        """Outputs of a batch of samples (see the module doc for the shapes).

        ``x``: one array, or one per input for models with several. ``quantize``: ``x`` holds
        real values, quantized with each input's scale and zero point first. ``dequantize``:
        return real values (float64) instead of the output integers. ``engine``: ``ref``,
        ``c`` or ``emulator`` (which needs a ``board`` from boards.toml).
        Returns one array, or a list with one per output for models with several.
        """
        if engine not in ENGINES:
            raise KilomlError(f"unknown engine {engine!r} (have: {', '.join(ENGINES)})")
        if (engine == "emulator") != (board is not None):
            raise KilomlError("engine 'emulator' needs a board (see `kiloml boards`)"
                              if board is None else
                              f"board {board!r} is only used by engine 'emulator'")
        arrays = self._inputs(x, quantize)
        count = len(arrays[0]) if arrays else 0
        if count == 0:
            raw = [np.zeros((0,) + s.shape, DTYPES[s.dtype]) for s in self.output_specs]
        else:
            raw = self._engine(engine, board).run(*arrays)
        outs = []
        for s, y in zip(self.output_specs, raw):
            y = y.reshape((count,) + s.sample_shape)
            outs.append(s.dequantize(y) if dequantize else y)
        return outs[0] if len(outs) == 1 else outs

    def _inputs(self, x: np.ndarray | Sequence[np.ndarray], quantize: bool) -> list[np.ndarray]:
        """Each input as (N, *graph shape) of the graph's dtype, or a KilomlError that names
        the input and what is wrong with it."""
        specs = self.input_specs
        if len(specs) == 1:
            xs = [x]
        elif isinstance(x, (list, tuple)) and len(x) == len(specs):
            xs = list(x)
        else:
            raise KilomlError(f"model {self.name!r} has {len(specs)} inputs: pass a list of "
                              f"{len(specs)} arrays")
        arrays = []
        for s, a in zip(specs, xs):
            a = np.asarray(a)
            what = f"model input {s.name!r}"
            if a.ndim == len(s.sample_shape) + 1 and a.shape[1:] == s.sample_shape:
                pass
            elif a.ndim == len(s.shape) + 1 and a.shape[1:] == s.shape:
                pass
            else:
                raise KilomlError(f"{what} takes a batch of shape (N, "
                                  f"{', '.join(map(str, s.sample_shape))}); got {list(a.shape)}")
            if quantize:
                if not s.quantized:
                    raise KilomlError(f"{what} is {s.dtype} without quantization: pass its "
                                      "values with quantize=False")
                if a.dtype.kind not in "fiu":
                    raise KilomlError(f"{what}: quantize=True needs real numbers, got {a.dtype}")
                a = s.quantize(a)
            elif a.dtype != DTYPES[s.dtype]:
                hint = " (real values need quantize=True)" if a.dtype.kind == "f" and s.quantized \
                    else ""
                raise KilomlError(f"{what} is {s.dtype}, got {a.dtype}{hint}")
            arrays.append(np.ascontiguousarray(a).reshape((len(a),) + s.shape))
        if len({len(a) for a in arrays}) > 1:
            raise KilomlError(f"inputs hold different numbers of samples: "
                              f"{[len(a) for a in arrays]}")
        return arrays

    def _engine(self, engine: str, board: str | None) -> Any:
        """The runner of an engine (built once): ``run(*inputs)`` on (N, *graph shape)."""
        key = (engine, board)
        if key not in self._engines:
            if engine == "ref":
                from kiloml.ir.batch import BatchInterpreter

                self._engines[key] = BatchInterpreter(self.graph, REF_BATCH)
            elif engine == "c":
                from kiloml.codegen.c import generate_c
                from kiloml.codegen.host import HostBuild

                self._engines[key] = HostBuild(generate_c(self.graph, "model",
                                                          command="kiloml Model.predict"))
            else:
                from kiloml.targets.run import EmulatorBuild

                self._engines[key] = EmulatorBuild(self.graph, board)
        return self._engines[key]
