"""``kiloml deploy`` and ``kiloml verify``: packages for the firmware, and proof that the
device computes what training did (kiloml.workflow.deploy / verify)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from kiloml.cli.common import (PREFER_OPT, PROJECT_OPT, app, check_prefer, command_line,
                               emit_json, err, fail, fmt, guard, out, project_dir, table)

DSP_OPT = typer.Option(None, "--dsp-variant",
                       help="f32 | q31 | q15 (default: f32 on FPU cores, else the block's "
                            "integer variant).")


@app.command()
def deploy(
    out_dir: Path = typer.Option(..., "-o", "--out", help="Folder for the package."),
    fmt_: str = typer.Option("c", "--format", help="c | arduino | tflite"),
    board: Optional[str] = typer.Option(None, "--board",
                                        help="Board id (default: the project's)."),
    dsp_variant: Optional[str] = DSP_OPT,
    force: bool = typer.Option(False, "--force", help="Replace an existing package folder."),
    prefer: Optional[str] = PREFER_OPT,
    project: Optional[Path] = PROJECT_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON on stdout."),
) -> None:
    """Write the trained project as a C library (DSP + model + kernels, one header with
    <name>_classify), an Arduino library, or an int8 .tflite with metadata."""
    from kiloml.workflow.deploy import FORMATS

    if fmt_ not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}, not {fmt_!r}", 2)
    check_prefer(prefer)

    def go():
        from kiloml.workflow.deploy import deploy_project, run_outputs
        from kiloml.workflow.project import load_project

        pkg = deploy_project(load_project(project_dir(project)), fmt_, out_dir, board=board,
                             dsp_variant=dsp_variant, force=force, command=command_line(),
                             prefer=prefer)
        res = run_outputs(pkg)
        if as_json:
            emit_json(res)
        else:
            out.print(f"wrote the {pkg.format} package {pkg.name} to {pkg.path} "
                      f"({len(pkg.files)} files; see its README)")

    guard(go)


@app.command()
def verify(
    data: Optional[Path] = typer.Option(None, "--data",
                                        help="Recordings laid out like an import (default: "
                                             "the project's test split)."),
    board: Optional[str] = typer.Option(None, "--board",
                                        help="Board id (default: the project's)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="At most N windows."),
    dsp_variant: Optional[str] = DSP_OPT,
    host: bool = typer.Option(False, "--host", help="Run the C on this machine instead of "
                                                   "the board's core in the emulator."),
    package: Optional[Path] = typer.Option(None, "--package",
                                           help="A C package of the project to check (default: "
                                                "a fresh one, as `kiloml deploy` writes it)."),
    project: Optional[Path] = PROJECT_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON on stdout."),
) -> None:
    """Feed the same raw recordings through the Python pipeline and the deployed C library
    on the board (emulated): features, scores and predictions compared; exit 1 if they
    disagree beyond the block's stated tolerance."""
    if data is not None and not data.exists():
        fail(f"--data {data}: no such file or directory", 2)
    if package is not None and not package.is_dir():
        fail(f"--package {package}: not a folder", 2)

    def go():
        from kiloml.workflow.project import load_project
        from kiloml.workflow.verify import verify_project

        r = verify_project(load_project(project_dir(project)), data=data, board=board,
                           limit=limit, dsp_variant=dsp_variant,
                           engine="host" if host else "emulator", package=package,
                           progress=not as_json, command=command_line())
        if as_json:
            emit_json(r)
        else:
            out.print(f"verify on {r['board']} ({r['dsp_variant']} DSP, {r['engine']}): "
                      f"{r['clips']:,} windows", highlight=False)
            t = table("", [("figure", "l"), ("value", "l")])
            for k in ("feature_max_abs_diff", "feature_tolerance", "features_over_tolerance",
                      "scores_bit_exact", "predictions_equal", "accuracy_reference",
                      "accuracy_device"):
                t.add_row(k.replace("_", " "), fmt(r[k], 6) if isinstance(r[k], float)
                          else fmt(r[k]))
            out.print(t)
            for d in r["differing_clips"][:20]:
                err.print(f"differs: {d['clip']}: reference {d['reference_top2']}, device "
                          f"{d['device_top2']}", markup=False, highlight=False)
        if not r["ok"]:
            fail(f"the device disagrees with training: {r['features_over_tolerance']} window(s) "
                 f"over the feature tolerance, {r['clips'] - r['predictions_equal']} "
                 "prediction(s) differ")

    guard(go)
