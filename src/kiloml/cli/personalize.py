"""``kiloml personalize``: one person's samples retrain the classifier head on the device
(emulated) and the rest of their recordings are evaluated before and after
(kiloml.workflow.personalize)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from kiloml.cli.common import (PROJECT_OPT, app, command_line, emit_json, fail, guard, out,
                               project_dir, table)


@app.command()
def personalize(
    data: Path = typer.Option(..., "--data", help="One person's recordings, laid out like an "
                                                  "import (a folder per label)."),
    shots: int = typer.Option(..., "--shots", help="Samples per class for the update."),
    board: Optional[str] = typer.Option(None, "--board",
                                        help="Board id (default: the project's)."),
    project: Optional[Path] = PROJECT_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON on stdout."),
) -> None:
    """Personalize the classifier head with SHOTS samples per class from DATA (the C update
    in the emulator, equal to its Python twin) and evaluate the rest of DATA before and
    after. The project's model is not changed."""
    if shots < 1:
        fail(f"--shots {shots}: at least 1 sample per class", 2)

    def go():
        from kiloml.workflow.personalize import personalize_project
        from kiloml.workflow.project import load_project

        r = personalize_project(load_project(project_dir(project)), data, shots, board=board,
                                command=command_line())
        if as_json:
            emit_json(r)
            return
        t = table("personalization", [("", "l"), ("value", "r")])
        for k, v in r.items():
            t.add_row(k, str(v))
        out.print(t)

    guard(go)
