"""What every verb group shares: the typer app, the two consoles, errors and exit codes.

Conventions (DESIGN.md, "CLI conventions"):

- results go to **stdout** (rich tables for people, JSON with ``--json``), so
  ``kiloml boards > boards.txt`` and ``| grep`` see them; progress bars, warnings and errors go
  to **stderr**;
- tables stay readable at 80 columns: the key column of a table never wraps or truncates, the
  other columns fold (see ``table``);
- exit 0 ok, 1 failure (one line naming the file and the problem), 2 bad usage; a traceback
  only with ``--debug``.

Verbs import their workflow/stage modules inside the verb so ``kiloml --help`` does not pay
for torch and friends.
"""

from __future__ import annotations

import math
import shlex
import sys
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from kiloml import __version__
from kiloml.errors import KilomlError, UsageError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="kiloml: TinyML from sensor data to bit-exact int8 C for microcontrollers.")
out = Console(soft_wrap=False, highlight=False)  # results (stdout)
err = Console(stderr=True, highlight=False)  # progress, warnings, errors (stderr)
STATE = {"debug": False}

T = TypeVar("T")


def fail(msg: str, code: int = 1) -> None:
    """One line on stderr and exit ``code`` (1 failure, 2 bad usage)."""
    err.print(f"[red]error:[/red] {msg}", soft_wrap=True)
    raise typer.Exit(code)


def warn(msg: str) -> None:
    err.print(f"[yellow]warning:[/yellow] {msg}", soft_wrap=True)


def guard(fn: Callable[[], T]) -> T:
    """Run ``fn``, turning expected failures into one clear line and exit code 1."""
    try:
        return fn()
    except typer.Exit:
        raise
    except KilomlError as e:
        if STATE["debug"]:
            raise
        fail(str(e), 2 if isinstance(e, UsageError) else 1)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except OSError as e:  # unwritable output, full disk, missing file: name it
        if STATE["debug"]:
            raise
        where = e.filename if e.filename is not None else "kiloml"
        fail(f"{where}: {e.strerror or e}")
    except Exception as e:  # a bug: one line unless --debug
        if STATE["debug"]:
            raise
        fail(f"internal error: {type(e).__name__}: {e} (rerun with --debug for a traceback)")
    raise AssertionError("unreachable")  # pragma: no cover


def command_line() -> str:
    """The command as the user typed it (recorded in every artifact kiloml writes)."""
    prog = Path(sys.argv[0]).name
    args = ["kiloml" if prog == "__main__.py" else prog] + sys.argv[1:]  # python -m kiloml
    return " ".join(shlex.quote(a) for a in args)


def emit_json(obj: Any) -> None:
    import json

    typer.echo(json.dumps(obj, indent=2))


def table(title: str, columns: list[tuple[str, str]]) -> Table:
    """A results table: ``columns`` are (header, "l" or "r", optionally followed by "!").
    The first column is the row's key (a board id, a label, a layer) and, like numbers ("r")
    and every column marked "!", never wraps or truncates; text columns wrap at spaces or fold, so a table wider
    than the terminal stays readable at 80 columns (no "nano…" / "stm3…")."""
    t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
              padding=(0, 1, 0, 0))
    for i, (name, just) in enumerate(columns):
        if just.startswith("r"):  # "flash KB" -> two header lines: numbers set the width
            name = name.replace(" ", "\n")
        t.add_column(name, justify="right" if just.startswith("r") else "left",
                     no_wrap=i == 0 or just.startswith("r") or just.endswith("!"),
                     overflow="fold")
    return t


def fmt(v: Any, digits: int = 2) -> str:
    """Numbers for tables: thousands separators, n/a for unknown, yes/NO for booleans."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return str(v)


def pct(v: Optional[float]) -> str:
    return "n/a" if v is None else f"{100 * v:.2f} %"


def project_dir(path: Optional[Path]) -> Path:
    """``--project``: the given folder, else the nearest folder holding kiloml.toml from the
    current directory upwards (as git finds its repository)."""
    from kiloml.workflow.project import find_project

    return find_project(path)


PREFERENCES = ("speed", "size", "balanced")  # kiloml.codegen.armv7em_choice.PREFERENCES
PREFER_OPT = typer.Option(None, "--prefer",
                          help="speed | size | balanced: how the model's kernels trade flash "
                               "for speed, node by node (default: the project's [deploy] "
                               "prefer, else balanced).")


def check_prefer(prefer: Optional[str]) -> None:
    """``--prefer``: one of PREFERENCES or unset; anything else is bad usage (exit 2)."""
    if prefer is not None and prefer not in PREFERENCES:
        fail(f"--prefer must be speed, size or balanced, not {prefer!r}", 2)


PROJECT_OPT = typer.Option(None, "--project", "-p",
                           help="Project directory (default: the nearest folder with a "
                                "kiloml.toml, from the current directory upwards).")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"kiloml {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print kiloml's version and exit."),
) -> None:
    STATE["debug"] = debug


@app.command()
def version() -> None:
    """Print kiloml's version (as ``kiloml --version``)."""
    typer.echo(__version__)
