"""CLI verbs for projects, data and DSP: ``init``, ``data import|info|capture`` and ``dsp``.

Registered on kiloml.cli's ``app`` (imported at the bottom of kiloml/cli.py); same conventions:
``--json`` on stdout, human output on stderr, exit 0 ok / 1 failure / 2 bad usage, one-line
errors naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from kiloml.cli import _command_line, _fail, _guard, app, err

data_app = typer.Typer(add_completion=False, no_args_is_help=True,
                       help="Import, inspect and capture sensor data for a project.")
app.add_typer(data_app, name="data")

PROJECT_OPT = typer.Option(Path("."), "--project", "-p",
                           help="Project directory (default: the current directory).")


def _print_counts(title: str, rows: dict, cols: tuple[str, str] = ("label", "samples")) -> None:
    t = Table(title=title, title_justify="left")
    t.add_column(cols[0])
    t.add_column(cols[1], justify="right")
    for k, v in rows.items():
        t.add_row(str(k), f"{v:,}")
    err.print(t)


@app.command()
def init(
    directory: Path = typer.Argument(..., help="Project directory (created if missing)."),
    task: str = typer.Option(..., "--task", help="kws | motion | vibration | anomaly | custom"),
    name: Optional[str] = typer.Option(None, "--name", help="Project name (default: folder name)."),
    force: bool = typer.Option(False, "--force",
                               help="Overwrite an existing kiloml.toml and index."),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON on stdout."),
) -> None:
    """Create a project: kiloml.toml with the task's defaults and an empty dataset index."""
    from kiloml.project import TASKS

    if task not in TASKS:
        _fail(f"--task must be one of {', '.join(TASKS)}, not {task!r}", 2)

    def go():
        from kiloml.project import init_project

        p = init_project(directory, task, name=name, force=force)
        res = {"project": str(p.root), "config": str(p.config_path), "index": str(p.index_path),
               "task": task, "dsp": p.config.dsp.model_dump(mode="json"),
               "model": p.config.model.arch, "board": p.config.board.name}
        if as_json:
            typer.echo(json.dumps(res, indent=2))
        else:
            err.print(f"created {p.config_path} ({task}: dsp {p.config.dsp.block}"
                      f"{' preset ' + p.config.dsp.preset if p.config.dsp.preset else ''}, "
                      f"model {p.config.model.arch}, board {p.config.board.name}) and an empty "
                      f"index {p.index_path}")

    _guard(go)


@data_app.command("import")
def data_import(
    path: Path = typer.Argument(..., help="A data file or a folder (one sub-folder per label)."),
    project: Path = PROJECT_OPT,
    fmt: str = typer.Option("auto", "--format",
                            help="auto | wav | serial | csv | mat | ei-json | npy"),
    label: Optional[str] = typer.Option(None, "--label", help="Label for every imported sample."),
    label_regex: Optional[str] = typer.Option(
        None, "--label-regex",
        help="Regex on the relative path; group 1 (or 'label') is the label."),
    group_regex: Optional[str] = typer.Option(
        None, "--group-regex",
        help="Regex on the relative path; group 1 (or 'group') is the group."),
    rate: Optional[float] = typer.Option(
        None, "--rate",
        help="Sample rate in Hz for files that carry none (logs, CSV, .mat, .npy)."),
    rows: Optional[int] = typer.Option(None, "--rows", help="CSV: fixed rows per sample."),
    variable: Optional[str] = typer.Option(
        None, "--variable", help=".mat: variable name or glob (default *_DE_time)."),
    split: str = typer.Option("auto", "--split",
                              help="auto (group-aware) | train | validation | test"),
    skip_bad: bool = typer.Option(False, "--skip-bad",
                                  help="Import the good files and list the bad ones."),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON on stdout."),
) -> None:
    """Add files to the project's dataset index (atomic: all or nothing unless --skip-bad)."""
    from kiloml.data.readers import FORMATS

    if fmt != "auto" and fmt not in FORMATS:
        _fail(f"--format must be auto or one of {', '.join(FORMATS)}, not {fmt!r}", 2)
    if split not in ("auto", "train", "validation", "test"):
        _fail(f"--split must be auto, train, validation or test, not {split!r}", 2)
    if rows is not None and rows <= 0:
        _fail(f"--rows must be positive, not {rows}", 2)
    if rate is not None and not rate > 0:
        _fail(f"--rate must be a positive number of Hz, not {rate}", 2)

    def go():
        from kiloml.data.dataset import Dataset
        from kiloml.data.importer import import_data
        from kiloml.project import Project

        proj = Project.load(project)
        res = import_data(Dataset(proj.root, proj.index_path), proj.config.data, path, fmt=fmt,
                          label=label, label_regex=label_regex, group_regex=group_regex,
                          rate=rate, rows=rows, variable=variable, split=split,
                          skip_bad=skip_bad)
        s = res.summary()
        if as_json:
            typer.echo(json.dumps(s, indent=2))
        else:
            err.print(f"imported {sum(s['labels'].values()):,} samples from {s['files']:,} "
                      f"files into {proj.index_path}")
            _print_counts("per label", s["labels"])
            err.print("splits: " + ", ".join(f"{k} {v:,}" for k, v in s["splits"].items()))
            if s["noise_clips"]:
                err.print(f"background-noise clips: {s['noise_clips']}")
            if s["duplicates"]:
                err.print(f"already in the index (not added again): {s['duplicates']}")
            for n in s["notes"][:10]:
                err.print(f"note: {n}", highlight=False)
            if len(s["notes"]) > 10:
                err.print(f"note: ... {len(s['notes']) - 10} more notes (see --json)")
            for w in s["warnings"]:
                err.print(f"[yellow]warning:[/yellow] {w}", highlight=False)
            for sk in s["skipped"]:
                err.print(f"[yellow]skipped:[/yellow] {sk['reason']}", highlight=False)
        if res.skipped and not res.added:
            _fail(f"no file could be imported ({len(res.skipped)} skipped)")

    _guard(go)


@data_app.command("info")
def data_info(
    project: Path = PROJECT_OPT,
    no_verify: bool = typer.Option(False, "--no-verify",
                                   help="Do not re-hash source files (faster)."),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON on stdout."),
) -> None:
    """Counts per label and split, groups, durations, sample rates and problems found."""

    def go():
        from kiloml.data.dataset import Dataset
        from kiloml.data.info import dataset_info
        from kiloml.project import Project

        proj = Project.load(project)
        info = dataset_info(Dataset(proj.root, proj.index_path), proj.config.data,
                            verify=not no_verify)
        if as_json:
            typer.echo(json.dumps(info, indent=2))
            return
        t = Table(title=f"{info['samples']:,} samples, {len(info['labels'])} labels, "
                        f"{info['groups']:,} groups, {info['duration_s']:,.1f} s",
                  title_justify="left")
        t.add_column("label")
        for sp in ("train", "validation", "test"):
            t.add_column(sp, justify="right")
        t.add_column("total", justify="right")
        t.add_column("seconds", justify="right")
        for lab, c in info["label_splits"].items():
            t.add_row(lab, *(f"{c[sp]:,}" for sp in ("train", "validation", "test")),
                      f"{info['labels'][lab]:,}", f"{info['label_duration_s'][lab]:,.1f}")
        t.add_row("all", *(f"{info['splits'][sp]:,}" for sp in ("train", "validation", "test")),
                  f"{info['samples']:,}", f"{info['duration_s']:,.1f}")
        err.print(t)
        w = Table(title="windows per split (share of the label's windows)", title_justify="left")
        w.add_column("label")
        for sp in ("train", "validation", "test"):
            w.add_column(sp, justify="right")
        for lab, c in info["window_splits"].items():
            w.add_row(lab, *(f"{c[sp]:,} ({info['window_shares'][lab][sp]:.0%})"
                             for sp in ("train", "validation", "test")))
        err.print(w)
        if info["dropped_lines"]:
            err.print(f"malformed lines dropped at import: {info['dropped_lines']:,}")
        err.print("sample rates: " + ", ".join(f"{r} Hz x{n}" for r, n in
                                                info["sample_rates"].items()))
        if info["noise"]["clips"]:
            err.print(f"background noise: {info['noise']['clips']} clips, "
                      f"{info['noise']['duration_s']:.1f} s")
        for pr in info["problems"]:
            err.print(f"[yellow]problem:[/yellow] {pr}", highlight=False)
        if not info["problems"]:
            err.print("no problems found")

    _guard(go)


@data_app.command("capture")
def data_capture(
    port: str = typer.Option(..., "--port", help="Serial device (or a pyserial URL)."),
    baud: int = typer.Option(115200, "--baud", help="Baud rate."),
    label: str = typer.Option(..., "--label", help="Label of the captured sample."),
    seconds: float = typer.Option(..., "--seconds", help="How long to record."),
    project: Path = PROJECT_OPT,
    rate: Optional[float] = typer.Option(
        None, "--rate", help="Sample rate in Hz (default: measured from the arrival times)."),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON on stdout."),
) -> None:
    """Record CSV lines from a board over a serial port into the project and index them."""
    if not seconds > 0 or seconds > 24 * 3600:
        _fail(f"--seconds must be in (0, 86400], not {seconds}", 2)
    if baud <= 0:
        _fail(f"--baud must be positive, not {baud}", 2)
    if not label.strip():
        _fail("--label must not be empty", 2)

    def go():
        from kiloml.data.capture import capture_to_dataset
        from kiloml.data.dataset import Dataset
        from kiloml.project import Project

        proj = Project.load(project)
        res = capture_to_dataset(Dataset(proj.root, proj.index_path), proj.config.data, port,
                                 baud, label, seconds, rate=rate)
        if as_json:
            typer.echo(json.dumps(res, indent=2))
        else:
            err.print(f"captured {res['rows']:,} rows x {res['channels']} channels "
                      f"({res['sample_rate']:.1f} Hz) -> {res['file']}; "
                      f"indexed as {res['sample_id']} ({res['split']})")
            if res["junk_lines"]:
                err.print(f"note: skipped {res['junk_lines']} non-numeric line(s)")

    _guard(go)


@app.command()
def dsp(
    inp: Path = typer.Option(..., "--input", "-i", help="A data file or a folder of them."),
    output: Path = typer.Option(..., "--output", "-o", help="Features .npy to write."),
    preset: Optional[str] = typer.Option(None, "--preset", help="Named preset, e.g. mlperf-kws."),
    block: Optional[str] = typer.Option(
        None, "--block", help="mfcc | mfe | spectrogram | spectral | raw"),
    param: list[str] = typer.Option([], "--param", help="KEY=VALUE (JSON value), repeatable."),
    engine: str = typer.Option("numpy", "--engine", help="numpy or c (host-compiled C)."),
    variant: str = typer.Option("f32", "--variant", help="C variant: f32 | q15 | q31."),
    fmt: str = typer.Option("auto", "--format", help="Input format (see `data import`)."),
    rate: Optional[float] = typer.Option(None, "--rate", help="Hz, for inputs without one."),
    c_out: Optional[Path] = typer.Option(
        None, "--c-out", help="Also write the block's C (--variant, sized for the input) here."),
    prefix: str = typer.Option("features", "--prefix", help="C name prefix for --c-out."),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON on stdout."),
) -> None:
    """Compute features for one file or every file of a folder (sorted path order).

    The output stacks one feature array per file: (files, *output_shape)."""
    if preset is None and block is None:
        _fail("give --preset NAME or --block NAME", 2)
    if engine not in ("numpy", "c"):
        _fail(f"--engine must be numpy or c, not {engine!r}", 2)
    if variant not in ("f32", "q15", "q31"):
        _fail(f"--variant must be f32, q15 or q31, not {variant!r}", 2)
    params = {}
    for kv in param:
        if "=" not in kv:
            _fail(f"--param {kv!r}: expected KEY=VALUE", 2)
        k, v = kv.split("=", 1)
        try:
            params[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            params[k.strip()] = v

    def go():
        from kiloml.dsp.run import compute_features

        res = compute_features(inp, output, preset=preset, block=block, params=params,
                               engine=engine, variant=variant, fmt=fmt, rate=rate,
                               command=_command_line(), c_out=c_out, prefix=prefix)
        if as_json:
            typer.echo(json.dumps(res, indent=2))
        else:
            err.print(f"wrote {res['output']}: {res['dtype']}{res['shape']} from "
                      f"{len(res['files'])} file(s) ({res['block']}, {res['engine']}"
                      f"{'/' + res['variant'] if res['engine'] == 'c' else ''})")
            c = res["cost"]
            err.print(f"per window on the device: RAM {c['ram_bytes']:,} B, flash "
                      f"{c['flash_bytes']:,} B, {c['total_ops']:,} ops")
            if res["c_files"]:
                err.print(f"C in {c_out}: " + ", ".join(res["c_files"]))

    _guard(go)
