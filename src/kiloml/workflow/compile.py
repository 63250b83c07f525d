"""Model files: compile a .tflite to C (``kiloml compile``) and run one on .npy inputs
(``kiloml predict``)."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np

from kiloml.codegen.c import generate_c
from kiloml.errors import KilomlError
from kiloml.fileio import atomic_save_npy
from kiloml.io.tflite_reader import read_tflite
from kiloml.ir.graph import DTYPES, Graph
from kiloml.ir.ops import REGISTRY
from kiloml.model import Model


def load_model(path: str | Path) -> Graph:
    return read_tflite(path)


def model_macs(g: Graph) -> int:
    return sum(REGISTRY[n.op].macs(g, n) for n in g.nodes)


def compile_model(model: str | Path, out_dir: str | Path, prefix: str = "model",
                  command: str = "kiloml compile", inplace: bool = True,
                  kernels: str = "portable", prefer: str = "balanced") -> dict:
    """Compile a .tflite file to C in ``out_dir``; returns the summary ``--json`` prints.
    ``prefer``: speed, size or balanced, the flash-for-speed choice of kernels and weight
    layouts per node (kiloml.codegen.armv7em_choice; ``choices`` in the summary)."""
    check_prefer(prefer)
    g = load_model(model)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise KilomlError(f"{out}: exists and is not a directory")
    result = generate_c(g, prefix=prefix, command=command, inplace=inplace, runtime=kernels,
                        prefer=prefer)
    paths = result.write(out)
    lg = result.graph
    layers = []
    for n, node in enumerate(lg.nodes):
        t = lg.tensors[node.outputs[0]]
        layers.append({"node": n, "op": node.op, "name": node.name,
                       "output_shape": list(t.shape), "macs": REGISTRY[node.op].macs(lg, node),
                       "output_offset": result.plan.offsets.get(node.outputs[0]),
                       "kernel": result.kernels[n] or None})
    return {
        "model": str(model),
        "out_dir": str(out),
        "prefix": prefix,
        "kernels": kernels,
        "prefer": prefer,
        "choices": result.choices,
        "ops": dict(sorted(Counter(n.op for n in g.nodes).items())),
        "nodes": len(g.nodes),
        "macs": model_macs(g),
        "arena_bytes": result.plan.arena_bytes,
        "arena_lower_bound_bytes": result.plan.lower_bound_bytes,
        "weights_bytes": g.weights_bytes(),
        "inplace_nodes": [n for n, _, _ in result.plan.inplace],
        "files": [p.name for p in paths],
        "layers": layers,
    }


def check_prefer(prefer: str) -> str:
    """``prefer`` if it is one of PREFERENCES, else a UsageError naming them (exit 2)."""
    from kiloml.codegen.armv7em_choice import PREFERENCES
    from kiloml.errors import UsageError

    if prefer not in PREFERENCES:
        raise UsageError(f"--prefer must be {', '.join(PREFERENCES)}, not {prefer!r}")
    return prefer


def _load_input(path: Path, spec, where: str) -> tuple[np.ndarray, bool]:
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise KilomlError(f"{path}: no such file") from None
    except (ValueError, OSError, EOFError) as e:
        raise KilomlError(f"{path}: not a readable .npy array ({e})") from None
    if not isinstance(arr, np.ndarray):
        raise KilomlError(f"{path}: expected one .npy array, got an archive")
    want = DTYPES[spec.dtype]
    if arr.dtype != want:
        raise KilomlError(f"{path}: dtype {arr.dtype}, but {where} needs {spec.dtype}")
    shape = tuple(spec.shape)
    if arr.shape == shape:
        return arr, False
    if arr.ndim == len(shape) + 1 and arr.shape[1:] == shape and arr.shape[0] >= 1:
        return arr, True
    raise KilomlError(f"{path}: shape {list(arr.shape)}, but {where} needs {list(shape)} "
                      f"(optionally with a leading batch axis)")


def predict_model(model: str | Path, inputs: list[Path], outputs: list[Path],
                  engine: str = "ref", board: str = "nucleo-l4r5zi") -> dict:
    """Run on .npy inputs with ``ref`` (numpy reference interpreter), ``c`` (generated C on
    the host) or ``emulator`` (the board's ELF in the emulator): kiloml.model.Model."""
    g = load_model(model)
    if len(inputs) != len(g.inputs):
        raise KilomlError(f"{model}: model has {len(g.inputs)} input(s), {len(inputs)} given")
    if len(outputs) != len(g.outputs):
        raise KilomlError(f"{model}: model has {len(g.outputs)} output(s), {len(outputs)} given")
    arrays, batched = [], []
    for k, (p, t) in enumerate(zip(inputs, g.inputs)):
        arr, b = _load_input(Path(p), g.tensors[t], f"model input {k}")
        arrays.append(arr if b else arr[None])
        batched.append(b)
    if len({a.shape[0] for a in arrays}) != 1:
        raise KilomlError("all inputs must have the same batch size")
    for p in outputs:
        parent = Path(p).parent
        if not parent.is_dir():
            raise KilomlError(f"{p}: directory {parent} does not exist")
    m = Model(g)
    res = m.predict(arrays if len(arrays) > 1 else arrays[0], engine=engine,
                    board=board if engine == "emulator" else None)
    res = res if isinstance(res, list) else [res]
    results = [r.reshape((r.shape[0],) + tuple(g.tensors[t].shape))
               for r, t in zip(res, g.outputs)]
    any_batched = any(batched)
    written = []
    for p, arr in zip(outputs, results):
        out = arr if any_batched else arr[0]
        atomic_save_npy(Path(p), out)
        written.append({"path": os.fspath(p), "dtype": str(out.dtype), "shape": list(out.shape)})
    return {"model": str(model), "engine": engine, "outputs": written}
