"""kiloml: a local TinyML toolchain from sensor data to bit-exact int8 C for microcontrollers.

Public API (lazy imports keep ``import kiloml`` cheap)::

    read_tflite(path) -> Graph            parse_tflite(bytes) -> Graph
    write_tflite(graph) -> bytes          save_tflite(graph, path)
    Interpreter(graph).run(*arrays)       numpy reference interpreter (TFLite integer semantics)
    Model(graph).predict(x, engine)       a batch through ref | c (host) | emulator (a board)
    plan_memory(graph) -> Plan            arena offsets, peak and op-level lower bound
    generate_c(graph, prefix) -> CompileResult (.files, .plan, .write(dir))
    compile_model(path, out_dir)          what ``kiloml compile`` does
    predict_model(path, inputs, outputs)  what ``kiloml predict`` does
    init_project(dir, task) -> Project    kiloml.toml + empty dataset index (``kiloml init``)
    load_project(dir) -> Project          validated kiloml.toml of a project directory
    import_files(project, path, ...)      what ``kiloml data import`` does (atomic)
    project_info(project) -> dict         what ``kiloml data info`` does
    train_project(project) / test_project(project)   ``kiloml train`` / ``kiloml test``
    Dataset(root, index_path)             where a data set lives (sources relative to root)
    DataSettings(...)                     rate, channels, windowing, splits ([data] section)
    DatasetIndex.load(path)               the dataset index (dataset/index.csv)
    read_file(path, fmt, rate=...)        any supported sensor file -> Recording
    make_block(block, preset, params)     a DSP block (mfcc, mfe, spectrogram, spectral, raw)
    fixed_features(block, pcm, variant)   the q15 / q31 MFE / MFCC C in numpy, bit for bit
    compute_features(input, output, ...)  what ``kiloml dsp`` does
    write_report(project, out) -> dict    what ``kiloml report`` does (one HTML page)
    render_report(data) -> str            that page from plain data (kiloml.report)
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "read_tflite": "kiloml.io.tflite_reader",
    "parse_tflite": "kiloml.io.tflite_reader",
    "write_tflite": "kiloml.io.tflite_writer",
    "save_tflite": "kiloml.io.tflite_writer",
    "Graph": "kiloml.ir.graph",
    "Tensor": "kiloml.ir.graph",
    "Node": "kiloml.ir.graph",
    "QuantParams": "kiloml.ir.graph",
    "Interpreter": "kiloml.ir.interpreter",
    "Model": "kiloml.model",
    "plan_memory": "kiloml.ir.planner",
    "generate_c": "kiloml.codegen.c",
    "compile_model": "kiloml.workflow.compile",
    "predict_model": "kiloml.workflow.compile",
    "KilomlError": "kiloml.errors",
    "init_project": "kiloml.workflow.project",
    "load_project": "kiloml.workflow.project",
    "Project": "kiloml.workflow.project",
    "import_files": "kiloml.workflow.data",
    "project_info": "kiloml.workflow.data",
    "train_project": "kiloml.workflow.train",
    "test_project": "kiloml.workflow.train",
    "Dataset": "kiloml.data.dataset",
    "DataSettings": "kiloml.data.settings",
    "DatasetIndex": "kiloml.data.index",
    "read_file": "kiloml.data.readers",
    "make_block": "kiloml.dsp",
    "fixed_features": "kiloml.dsp.fixed",
    "compute_features": "kiloml.workflow.dsp",
    "write_report": "kiloml.workflow.report",
    "render_report": "kiloml.report",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'kiloml' has no attribute {name!r}")
