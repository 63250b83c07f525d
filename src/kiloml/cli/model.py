"""CLI verbs for model files: ``kiloml compile``, ``kiloml predict`` and ``kiloml demo``.

Thin calls into kiloml.workflow (conventions: kiloml.cli.common)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import typer

from kiloml.cli.common import (PREFER_OPT, app, check_prefer, command_line, emit_json, err,
                               fail, fmt, guard, out, pct, table)

ENGINES = ("ref", "c", "emulator")


@app.command()
def compile(
    model: Path = typer.Argument(..., help="int8 .tflite model."),
    out_dir: Path = typer.Option(..., "-o", "--out", help="Directory for the generated C."),
    prefix: str = typer.Option("model", "--prefix", help="C name prefix (and file names)."),
    no_inplace: bool = typer.Option(False, "--no-inplace", help="Disable in-place execution."),
    kernels: str = typer.Option("portable", "--kernels",
                                help="portable (any C99 target), armv7em (Cortex-M4/M7/M33 "
                                     "DSP-extension kernels; arm-none-eabi-gcc, not the host) "
                                     "or armv6m (Cortex-M0+ kernels)."),
    prefer: Optional[str] = PREFER_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON on stdout."),
) -> None:
    """Compile a .tflite model to standalone C99 (NAME.h, NAME.c and the kernels it needs)."""
    if kernels not in ("portable", "armv7em", "armv6m"):
        fail(f"--kernels must be portable, armv7em or armv6m, not {kernels!r}", 2)
    check_prefer(prefer)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,31}", prefix):
        fail(f"--prefix {prefix!r} is not a C identifier", 2)

    def go():
        from kiloml.workflow.compile import compile_model

        summary = compile_model(model, out_dir, prefix=prefix, command=command_line(),
                                inplace=not no_inplace, kernels=kernels,
                                prefer=prefer or "balanced")
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
    if s["choices"]:
        fast = sum(c["option"] not in ("column", "dw18") for c in s["choices"])
        out.print(f"prefer {s['prefer']}: {len(s['choices'])} layers with a kernel choice, "
                  f"{fast} on the faster kernel or layout (--json: per layer)")
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
    out_dir: Path = typer.Option(Path("demo_out"), "--out",
                                 help="Folder for the demo's project and packages."),
    data: Optional[Path] = typer.Option(None, "--data", help="The magic_wand data set's "
                                        "folder (default: the bundled examples/magic_wand)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON on stdout."),
) -> None:
    """The main job on bundled real data: a gesture project (magic_wand) imported, trained,
    quantized, compiled, profiled on three boards, deployed as C and Arduino libraries and
    verified in the emulator on the held-out people; ends with one summary."""
    if data is not None and not data.is_dir():
        fail(f"--data {data}: not a folder", 2)

    def go():
        from kiloml.workflow.demo import run_demo

        def on_step(name: str, status: str) -> None:
            if status == "running":
                err.print(f"[bold]▶ {name}[/bold]")
            elif status == "cached" and not quiet:
                err.print(f"  {name}: cached", highlight=False)

        res = run_demo(out_dir, data, progress=not quiet, on_step=on_step,
                       log=lambda m: err.print(f"  {m}", markup=False, highlight=False),
                       command=command_line())
        if as_json:
            emit_json(res)
            return
        v = res["verify"]
        out.print(f"magic_wand gestures ({', '.join(res['labels'])}): int8 accuracy "
                  f"{pct(res['accuracy_int8'])} on {res['test_windows']} test windows of "
                  f"held-out people (float {pct(res['accuracy_float'])})", highlight=False)
        t = table(f"per decision (DSP + model); battery: {res['decisions_per_s']:g}/s, "
                  f"{res['battery_mah']:,.0f} mAh",
                  [("board", "l"), ("core", "l"), ("flash B", "r"), ("RAM B", "r"),
                   ("ms", "r"), ("µJ", "r"), ("days", "r")])
        for b in res["boards"]:
            t.add_row(b["board"], b["core"].replace("cortex-", ""), fmt(b["flash_bytes"]),
                      fmt(b["ram_bytes"]), fmt(b["latency_ms"], 2), fmt(b["energy_uj"], 0),
                      fmt(b["battery_days"], 0))
        out.print(t)
        out.print(f"verify on {v['board']} ({v['dsp_variant']} DSP, emulated): "
                  f"{v['predictions_equal']}/{v['clips']} predictions equal, scores "
                  f"bit-exact: {v['scores_bit_exact']}, max feature diff "
                  f"{v['feature_max_abs_diff']:.3g}, device accuracy "
                  f"{pct(v['accuracy_device'])}", highlight=False)
        for f, path in res["packages"].items():
            out.print(f"{f} package: {path}", highlight=False)
        out.print(f"report: {res['report']}", highlight=False)

    guard(go)
