"""``kiloml report``: one self-contained HTML page of the project (kiloml.workflow.report)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from kiloml.cli.common import PROJECT_OPT, app, emit_json, fail, guard, out, project_dir


@app.command()
def report(
    project: Optional[Path] = PROJECT_OPT,
    output: Optional[Path] = typer.Option(None, "--output", "-o",
                                          help="The HTML file to write (default: "
                                               "<project>/build/report.html)."),
    open_: bool = typer.Option(False, "--open", help="Open the report in the default "
                                                     "browser afterwards."),
    as_json: bool = typer.Option(False, "--json", help="Print the path, size and sections "
                                                       "as JSON on stdout."),
) -> None:
    """Write one self-contained HTML report of the project: data, features, training,
    accuracy, variants, the model on the device, boards and the verify result; each section
    appears when its data exists. Viewing it needs no network."""
    if output is not None and output.suffix.lower() not in (".html", ".htm"):
        fail(f"{output}: the report is HTML; give a file name ending in .html", 2)

    def go():
        from kiloml.workflow.project import load_project
        from kiloml.workflow.report import write_report

        res = write_report(load_project(project_dir(project)), output)
        if as_json:
            emit_json(res)
        else:
            out.print(f"wrote {res['path']} ({res['bytes'] / 1024:,.0f} KB; sections: "
                      f"{', '.join(res['sections']) or 'none'})", soft_wrap=True)
        if open_:
            import webbrowser

            if not webbrowser.open(Path(res["path"]).resolve().as_uri()):
                fail(f"{res['path']}: written, but no browser could be opened")

    guard(go)
