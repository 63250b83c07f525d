"""The ``kiloml`` command line: each verb is a thin wrapper over one API function.

Human output goes to stderr (rich tables), ``--json`` output to stdout. Exit codes: 0 ok,
1 failure (bad file, unsupported model, tool failure), 2 bad usage. Errors are one line; a
traceback only with ``--debug``.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from kiloml import __version__
from kiloml.errors import KilomlError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="kiloml: TinyML from sensor data to bit-exact int8 C for microcontrollers.")
err = Console(stderr=True)
STATE = {"debug": False}


def _fail(msg: str, code: int = 1) -> None:
    err.print(f"[red]error:[/red] {msg}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _guard(fn):
    """Run ``fn`` turning expected failures into one clear line and exit code 1."""
    try:
        return fn()
    except typer.Exit:
        raise
    except KilomlError as e:
        if STATE["debug"]:
            raise
        _fail(str(e))
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except Exception as e:  # a bug: one line unless --debug
        if STATE["debug"]:
            raise
        _fail(f"internal error: {type(e).__name__}: {e} (rerun with --debug for a traceback)")


def _command_line() -> str:
    args = [Path(sys.argv[0]).name] + sys.argv[1:]
    return " ".join(shlex.quote(a) for a in args)


@app.callback()
def main_options(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
) -> None:
    STATE["debug"] = debug


@app.command()
def version() -> None:
    """Print kiloml's version."""
    typer.echo(__version__)


@app.command()
def compile(
    model: Path = typer.Argument(..., help="int8 .tflite model."),
    out: Path = typer.Option(..., "-o", "--out", help="Directory for the generated C."),
    prefix: str = typer.Option("model", "--prefix", help="C name prefix (and file names)."),
    no_inplace: bool = typer.Option(False, "--no-inplace", help="Disable in-place execution."),
    kernels: str = typer.Option("portable", "--kernels",
                                help="portable (any C99 target) or armv7em (Cortex-M4/M7/M33 "
                                     "DSP-extension kernels; arm-none-eabi-gcc, not the host)."),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON on stdout."),
) -> None:
    """Compile a .tflite model to standalone C99 (NAME.h, NAME.c and the kernels it needs)."""
    if kernels not in ("portable", "armv7em"):
        _fail(f"--kernels must be portable or armv7em, not {kernels!r}", 2)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,31}", prefix):
        _fail(f"--prefix {prefix!r} is not a C identifier", 2)

    def go():
        from kiloml.api import compile_model

        summary = compile_model(model, out, prefix=prefix, command=_command_line(),
                                inplace=not no_inplace, kernels=kernels)
        if as_json:
            typer.echo(json.dumps(summary, indent=2))
        else:
            _print_compile(summary)

    _guard(go)


def _print_compile(s: dict) -> None:
    t = Table(title=f"{s['model']} -> {s['out_dir']}", title_justify="left")
    for col in ("node", "op", "output shape", "MACs", "arena offset"):
        t.add_column(col, justify="right" if col in ("MACs", "arena offset") else "left")
    for layer in s["layers"]:
        t.add_row(str(layer["node"]), layer["op"], str(layer["output_shape"]),
                  f"{layer['macs']:,}", str(layer["output_offset"]))
    err.print(t)
    err.print(f"MACs {s['macs']:,}   weights {s['weights_bytes']:,} B   arena {s['arena_bytes']:,} B "
              f"(op-level lower bound without in-place: {s['arena_lower_bound_bytes']:,} B)")
    err.print("files: " + ", ".join(s["files"]))


@app.command()
def run(
    model: Path = typer.Argument(..., help="int8 .tflite model."),
    inputs: list[Path] = typer.Option(..., "--input", "-i",
                                      help=".npy input (one per model input, in order)."),
    outputs: list[Path] = typer.Option(..., "--output", help=".npy output (one per model output)."),
    engine: str = typer.Option("ref", "--engine", help="ref (numpy reference) or c (generated C on this host)."),
    as_json: bool = typer.Option(False, "--json", help="Print a summary as JSON on stdout."),
) -> None:
    """Run a model on .npy inputs with the reference interpreter or the generated C.

    Each input has the model input's dtype and shape, or an extra leading batch axis.
    """
    if engine not in ("ref", "c"):
        _fail(f"--engine must be 'ref' or 'c', not {engine!r}", 2)

    def go():
        from kiloml.api import run_model

        res = run_model(model, inputs, outputs, engine=engine)
        if as_json:
            typer.echo(json.dumps(res, indent=2))
        else:
            for o in res["outputs"]:
                err.print(f"wrote {o['path']}: {o['dtype']}{o['shape']}")

    _guard(go)


@app.command()
def demo(
    out: Path = typer.Option(Path("demo_out"), "--out", help="Directory for the demo's files."),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON on stdout."),
) -> None:
    """Build a model, compile it to C, verify it bit for bit and print its figures."""

    def go():
        from kiloml.demo import run_demo

        res = run_demo(out)
        if as_json:
            typer.echo(json.dumps(res, indent=2))
            return
        t = Table(title="kiloml demo: DS-CNN (MLPerf Tiny KWS layout) -> C99", title_justify="left")
        t.add_column("figure")
        t.add_column("value", justify="right")
        for k, v in res.items():
            t.add_row(k, f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v))
        err.print(t)
        if (not res["c_equals_reference"] or res.get("tflm_equals_reference") is False
                or res.get("board_output_matches_reference") is False):
            _fail("generated C or TFLM disagrees with the reference interpreter")

    _guard(go)


def main() -> None:
    """Console-script entry point (typer's standalone mode: usage errors exit 2)."""
    app(prog_name="kiloml")


# verbs defined in other modules register themselves on ``app`` when imported
import kiloml.cli_targets  # noqa: E402,F401  (registers boards/profile verbs)
import kiloml.cli_train  # noqa: E402,F401  (registers train/test/optimize verbs)
import kiloml.cli_data  # noqa: E402,F401  (registers init/data/dsp verbs)
