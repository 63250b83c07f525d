"""Deployable packages of a trained pipeline (DSP block + int8 model): one module per format.

They take stage objects (a ``DeploySpec``: graph, DSP block, window, labels, normalizer,
layout, DSP variant, board), never a project; ``kiloml.workflow`` calls them::

    deploy_c(spec, out, force=False) -> Package        C library, one public header
    deploy_arduino(spec, out, force=False) -> Package  Arduino library (spec 1.5) + example
    deploy_tflite(spec, out, force=False) -> Package   int8 .tflite + <name>.json for TFLM
    run_host(package_dir, raw_windows) -> RunResult    the package's C built for this host
    run_emulator(package_dir, raw_windows, board)      the package cross-built, emulated
    run_python(spec, raw_windows) -> RunResult         the Python path the C must equal
    footprint(package_dir, board) -> dict              flash / static RAM of a linked image
"""

from __future__ import annotations

from kiloml.deploy.arduino import deploy_arduino
from kiloml.deploy.c import deploy_c
from kiloml.deploy.package import Package
from kiloml.deploy.run import RunResult, footprint, run_emulator, run_host, run_python
from kiloml.deploy.spec import DeploySpec, Pipeline, resolve
from kiloml.deploy.tflite import deploy_tflite

__all__ = ["DeploySpec", "Package", "Pipeline", "RunResult", "deploy_arduino", "deploy_c",
           "deploy_tflite", "footprint", "resolve", "run_emulator", "run_host", "run_python"]
