"""``kiloml tune``: search DSP, model and quantization settings under the board's limits
(kiloml.workflow.tune); ``--apply TRIAL`` writes a trial's settings into kiloml.toml."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from kiloml.cli.common import (PROJECT_OPT, app, emit_json, err, fail, fmt, guard, out,
                               project_dir, table)


def _params(p: dict) -> str:
    return ", ".join(f"{k.split('.')[-1]}={v}" for k, v in p.items()) or "(the project's)"


def _acc(v) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}"


def print_summary(res: dict) -> None:
    t = table(f"kiloml tune: {res['project']} on {res['limits']}",
              [("trial", "l"), ("state", "l"), ("val acc %", "r"), ("latency ms", "r"),
               ("RAM KB", "r"), ("flash KB", "r"), ("front", "l"), ("settings", "l")])
    d = res.get("defaults")
    rows = ([dict(d, number="defaults", pareto=False)] if d else []) + res["trials"]
    for r in rows:
        t.add_row(str(r["number"]), r["state"], _acc(r.get("accuracy")),
                  fmt(r.get("latency_ms")), fmt(r.get("ram_kb"), 1), fmt(r.get("flash_kb"), 1),
                  "*" if r.get("pareto") else "",
                  r.get("error") if r["state"] == "failed" else _params(r["params"]))
    out.print(t)
    out.print(f"Pareto front (validation accuracy of the int8 model vs latency, RAM, flash): "
              f"trials {', '.join(map(str, res['pareto'])) or 'none'}", soft_wrap=True)
    if res["better_than_defaults"]:
        out.print(f"more accurate than the project's settings at no more latency and RAM: "
                  f"trials {', '.join(map(str, res['better_than_defaults']))}", soft_wrap=True)


@app.command()
def tune(
    project: Optional[Path] = PROJECT_OPT,
    board: Optional[str] = typer.Option(None, "--board", "-b",
                                        help="Board to measure on (default: the project's)."),
    max_ram_kb: Optional[float] = typer.Option(None, "--max-ram-kb", help="RAM limit (KB)."),
    max_flash_kb: Optional[float] = typer.Option(None, "--max-flash-kb",
                                                 help="Flash limit (KB)."),
    max_latency_ms: Optional[float] = typer.Option(None, "--max-latency-ms",
                                                   help="Latency limit of one decision (ms)."),
    trials: Optional[int] = typer.Option(None, "--trials", "-n",
                                         help="Trials of the study in all (default: [tune] "
                                              "trials); a re-run resumes."),
    timeout: Optional[float] = typer.Option(None, "--timeout",
                                            help="Start no trial after this many minutes."),
    backend: str = typer.Option("local", "--backend", help="local, or ray: the same trials "
                                "as Ray Tune trials (a private local Ray unless --address)."),
    address: Optional[str] = typer.Option(None, "--address", help="With --backend ray: the "
                                          "Ray cluster's GCS address HOST:PORT (run kiloml on "
                                          "a node of the cluster)."),
    apply: Optional[int] = typer.Option(None, "--apply", help="Write this trial's settings "
                                        "into kiloml.toml and test its model."),
    show: bool = typer.Option(False, "--show", help="Print the study without running trials."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Also write the trials and the "
                                        "front as an SVG file."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
) -> None:
    """Search DSP parameters, model width/depth and quantization ([tune] space in kiloml.toml,
    else the task's default) for the int8 model's validation accuracy against latency, RAM
    and flash, every figure from a real compile and emulator run; trials that break a limit
    are never on the Pareto front. The study is kept in .kiloml/tune (re-running resumes)."""
    if backend not in ("local", "ray"):
        fail(f"--backend must be local or ray, not {backend!r}", 2)
    if address is not None and backend != "ray":
        fail("--address is the Ray cluster's: give it with --backend ray", 2)
    if plot is not None and plot.suffix.lower() != ".svg":
        fail(f"{plot}: the plot is SVG; give a file name ending in .svg", 2)
    limits = dict(max_ram_kb=max_ram_kb, max_flash_kb=max_flash_kb,
                  max_latency_ms=max_latency_ms)

    def go():
        from kiloml.workflow.project import load_project
        from kiloml.workflow import tune as T

        proj = load_project(project_dir(project))
        if apply is not None:
            res = T.apply_trial(apply, proj, board, **limits)
            if as_json:
                emit_json(res)
            else:
                out.print(f"applied trial {res['trial']} to {res['config']}: "
                          f"{_params(res['params'])}", soft_wrap=True)
                out.print(f"validation accuracy {_acc(res['validation_accuracy'])} %, test "
                          f"accuracy {_acc(res['test_accuracy'])} %; run `kiloml run` to "
                          "rebuild the project with it", soft_wrap=True)
            return
        if show:
            res = T.load_summary(proj, board, **limits)
        else:
            res = T.tune(proj, board, trials=trials, timeout_min=timeout,
                         log_fn=lambda m: err.print(f"  {m}", markup=False, highlight=False),
                         backend=backend, address=address, **limits)
        if plot is not None:
            from kiloml.fileio import atomic_write_text
            from kiloml.report.plots import tune_front

            atomic_write_text(plot, tune_front(res["trials"], res["defaults"]) + "\n")
        if as_json:
            emit_json(res)
        else:
            print_summary(res)
        if res["error"]:
            fail(res["error"])

    guard(go)
