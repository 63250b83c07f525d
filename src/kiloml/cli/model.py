"""CLI verbs for model files: ``kiloml compile``, ``kiloml predict`` and ``kiloml demo``.

Thin calls into kiloml.workflow (conventions: kiloml.cli.common)."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from kiloml.cli.common import app, command_line, emit_json, fail, guard, out, table

ENGINES = ("ref", "c", "emulator")


@app.command()
def compile(
    model: Path = typer.Argument(..., help="int8 .tflite model."),
    out_dir: Path = typer.Option(..., "-o", "--out", help="Directory for the generated C."),
    prefix: str = typer.Option("model", "--prefix", help="C name prefix (and file names)."),
    no_inplace: bool = typer.Option(False, "--no-inplace", help="Disable in-place execution."),
    kernels: str = typer.Option("portable", "--kernels",
                                help="portable (any C99 target) or armv7em (Cortex-M4/M7/M33 "
                                     "DSP-extension kernels; arm-none-eabi-gcc, not the host)."),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON on stdout."),
) -> None:
    """Compile a .tflite model to standalone C99 (NAME.h, NAME.c and the kernels it needs)."""
    if kernels not in ("portable", "armv7em"):
        fail(f"--kernels must be portable or armv7em, not {kernels!r}", 2)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,31}", prefix):
        fail(f"--prefix {prefix!r} is not a C identifier", 2)

    def go():
        from kiloml.workflow.compile import compile_model

        summary = compile_model(model, out_dir, prefix=prefix, command=command_line(),
                                inplace=not no_inplace, kernels=kernels)
        if as_json:
            emit_json(summary)
        else:
            _print_compile(summary)

    guard(go)


def _print_compile(s: dict) -> None:
    t = table(f"{s['model']} -> {s['out_dir']}", [("node", "r"), ("op", "l"),
                                                   ("output shape", "l"), ("MACs", "r"),
                                                   ("arena offset", "r")])
    for layer in s["layers"]:
        t.add_row(str(layer["node"]), layer["op"], str(layer["output_shape"]),
                  f"{layer['macs']:,}", str(layer["output_offset"]))
    out.print(t)
    out.print(f"MACs {s['macs']:,}   weights {s['weights_bytes']:,} B   arena "
              f"{s['arena_bytes']:,} B (op-level lower bound without in-place: "
              f"{s['arena_lower_bound_bytes']:,} B)")
    out.print("files: " + ", ".join(s["files"]))


@app.command()
def predict(
    model: Path = typer.Argument(..., help="int8 .tflite model."),
    inputs: list[Path] = typer.Option(..., "--input", "-i",
                                      help=".npy input (one per model input, in order)."),
    outputs: list[Path] = typer.Option(..., "--output",
                                       help=".npy output (one per model output)."),
    engine: str = typer.Option("ref", "--engine",
                               help="ref (numpy reference interpreter), c (generated C on this "
                                    "host) or emulator (the board's ELF in the emulator)."),
    board: str = typer.Option("nucleo-l4r5zi", "--board", help="Board for --engine emulator."),
    as_json: bool = typer.Option(False, "--json", help="Print a summary as JSON on stdout."),
) -> None:
    """Run a model on .npy inputs (each with the model input's dtype and shape, or an extra
    leading batch axis) and write its outputs as .npy."""
    if engine not in ENGINES:
        fail(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}", 2)

    def go():
        from kiloml.workflow.compile import predict_model

        res = predict_model(model, inputs, outputs, engine=engine, board=board)
        if as_json:
            emit_json(res)
        else:
            for o in res["outputs"]:
                out.print(f"wrote {o['path']}: {o['dtype']}{o['shape']}")

    guard(go)


@app.command()
def demo(
    out_dir: Path = typer.Option(Path("demo_out"), "--out", help="Directory for the demo's files."),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON on stdout."),
) -> None:
    """Build a model, compile it to C, verify it bit for bit and print its figures."""

    def go():
        from kiloml.workflow.demo import run_demo

        res = run_demo(out_dir)
        if as_json:
            emit_json(res)
        else:
            t = table("kiloml demo: DS-CNN (MLPerf Tiny KWS layout) -> C99",
                      [("figure", "l"), ("value", "l")])
            for k, v in res.items():
                t.add_row(k, f"{v:,}" if isinstance(v, int) and not isinstance(v, bool)
                          else str(v))
            out.print(t)
        if (not res["c_equals_reference"] or res.get("tflm_equals_reference") is False
                or res.get("board_output_matches_reference") is False):
            fail("generated C or TFLM disagrees with the reference interpreter")

    guard(go)
