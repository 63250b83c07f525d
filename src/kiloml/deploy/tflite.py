"""The .tflite package for TensorFlow Lite Micro users: the deployed int8 model as a
``.tflite`` file (kiloml.io.tflite_writer, runs in TFLM and LiteRT as written) and
``<name>.json`` with what the model needs around it: labels, the DSP block and its parameters,
sample rate and window, the feature shape and layout, the normalizer, the input quantization
(rounding half away from zero) and the output's, the kiloml version and the command.

``model_sha256`` in the JSON is the SHA-256 of the ``.tflite`` file beside it.
"""

from __future__ import annotations

from pathlib import Path

from kiloml.deploy.package import Package, check_output, to_json, write_tree
from kiloml.deploy.spec import DeploySpec, Pipeline, metadata, resolve
from kiloml.io.tflite_writer import write_tflite


def files_tflite(p: Pipeline) -> dict[str, str | bytes]:
    meta = metadata(p)
    meta.pop("raw_input")
    meta["model"].pop("arena_bytes")
    meta["model"].pop("kernels")
    meta.update({"format": "tflite", "model_file": f"{p.name}.tflite",
                 "features_to_input": "features (the DSP block's numpy forward, int8 outputs "
                 "dequantized) -> normalizer -> layout -> q = clamp(round_half_away(x / scale) "
                 "+ zero_point, -128, 127)"})
    return {f"{p.name}.tflite": write_tflite(p.spec.graph), f"{p.name}.json": to_json(meta)}


def deploy_tflite(spec: DeploySpec, out: str | Path, force: bool = False) -> Package:
    """Write ``<name>.tflite`` and ``<name>.json`` to the folder ``out`` (see the module doc).
    ``force`` replaces an existing non-empty folder whole; nothing is written on an error."""
    check_output(Path(out), force)
    p = resolve(spec, model_c=False)
    return write_tree(files_tflite(p), out, force, fmt="tflite", name=p.name)
