"""``kiloml run``: the project's out-of-date steps in order (kiloml.workflow.run)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from kiloml.cli.common import (PROJECT_OPT, app, command_line, emit_json, err, fail, guard, out,
                               project_dir, table)


@app.command()
def run(
    project: Optional[Path] = PROJECT_OPT,
    until: Optional[str] = typer.Option(None, "--until", help="Stop after this step."),
    force: list[str] = typer.Option([], "--force", help="Re-run this step even if cached "
                                                        "(repeatable)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    as_json: bool = typer.Option(False, "--json", help="Print the steps as JSON on stdout."),
) -> None:
    """Run every out-of-date step of the project: import, features, train, optimize (when
    configured), compile, profile, deploy, verify, report. Unchanged steps are reused
    (content hashes in .kiloml/steps.json)."""
    from kiloml.workflow.run import STEPS

    for name in ([until] if until else []) + list(force):
        if name not in STEPS:
            fail(f"unknown step {name!r} (steps: {', '.join(STEPS)})", 2)

    def go():
        from kiloml.workflow.project import load_project
        from kiloml.workflow.run import run_project

        def on_step(name: str, status: str) -> None:
            if status == "running":
                err.print(f"[bold]▶ {name}[/bold]")
            elif status == "cached" and not quiet:
                err.print(f"  {name}: cached", highlight=False)

        res = run_project(load_project(project_dir(project), need_index=False), until=until,
                          force=tuple(force), progress=not quiet,
                          log=lambda m: err.print(f"  {m}", markup=False, highlight=False),
                          on_step=on_step, command=command_line())
        if as_json:
            emit_json(res)
        else:
            t = table(f"kiloml run: {res['project']}", [("step", "l"), ("status", "l"),
                                                        ("seconds", "r")])
            for s in res["steps"]:
                t.add_row(s["name"], s["status"], f"{s['seconds']:.1f}")
            out.print(t)
        if res["error"]:
            fail(res["error"])

    guard(go)
