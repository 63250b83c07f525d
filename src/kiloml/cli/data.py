"""CLI verbs for projects, data and DSP: ``init``, ``data import|info|capture`` and ``dsp``.

Thin calls into kiloml.workflow (conventions: kiloml.cli.common)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from kiloml.cli.common import (PROJECT_OPT, app, command_line, emit_json, err, fail, guard, out,
                               project_dir, table, warn)

data_app = typer.Typer(add_completion=False, no_args_is_help=True,
                       help="Import, inspect and capture sensor data for a project.")
app.add_typer(data_app, name="data")


def _print_counts(title: str, rows: dict, cols: tuple[str, str] = ("label", "samples")) -> None:
    t = table(title, [(cols[0], "l"), (cols[1], "r")])
    for k, v in rows.items():
        t.add_row(str(k), f"{v:,}")
    out.print(t)


@app.command()
def init(
    directory: Path = typer.Argument(..., help="Project directory (created if missing)."),
    task: Optional[str] = typer.Option(None, "--task",
                                       help="kws | motion | vibration | anomaly | custom"),
    example: Optional[str] = typer.Option(None, "--example",
                                          help="kws | magic_wand | cwru: settings for that "
                                               "public data set's layout (needs --data)."),
    data: Optional[Path] = typer.Option(None, "--data",
                                        help="With --example: the data set's folder; it is "
                                             "imported now and by `kiloml run`."),
    name: Optional[str] = typer.Option(None, "--name", help="Project name (default: folder name)."),
    force: bool = typer.Option(False, "--force",
                               help="Overwrite an existing kiloml.toml and index."),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON on stdout."),
) -> None:
    """Create a project: kiloml.toml with the task's defaults and an empty dataset index, or
    (--example) one preconfigured for a public data set and imported from --data."""
    from kiloml.workflow.examples import EXAMPLES
    from kiloml.workflow.project import TASKS

    if (task is None) == (example is None):
        fail("give --task TASK or --example NAME --data PATH", 2)
    if task is not None and task not in TASKS:
        fail(f"--task must be one of {', '.join(TASKS)}, not {task!r}", 2)
    if example is not None and example not in EXAMPLES:
        fail(f"--example must be one of {', '.join(EXAMPLES)}, not {example!r}", 2)
    if (example is None) != (data is None):
        fail("--example and --data go together", 2)

    def go():
        from kiloml.workflow.examples import init_example
        from kiloml.workflow.project import init_project

        imported = None
        if example is not None:
            p = init_example(directory, example, data, name=name, force=force,
                             log=lambda m: err.print(f"  {m}", markup=False, highlight=False))
            imported = sum(1 for _ in p.dataset.load_index().of_role("sample"))
        else:
            p = init_project(directory, task, name=name, force=force)
        res = {"project": str(p.root), "config": str(p.config_path), "index": str(p.index_path),
               "task": p.config.project.task, "example": example, "samples": imported,
               "dsp": p.config.dsp.model_dump(mode="json"),
               "model": p.config.model.arch, "board": p.config.board.name}
        if as_json:
            emit_json(res)
        else:
            out.print(f"created {p.config_path} ({res['task']}: dsp {p.config.dsp.block}"
                      f"{' preset ' + p.config.dsp.preset if p.config.dsp.preset else ''}, "
                      f"model {p.config.model.arch}, board {p.config.board.name})")
            out.print(f"index {p.index_path}: " + (f"{imported:,} samples imported from {data};"
                                                   " next: kiloml run" if imported is not None
                                                   else "empty; next: kiloml data import"))

    guard(go)


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
        fail(f"--format must be auto or one of {', '.join(FORMATS)}, not {fmt!r}", 2)
    if split not in ("auto", "train", "validation", "test"):
        fail(f"--split must be auto, train, validation or test, not {split!r}", 2)
    if rows is not None and rows <= 0:
        fail(f"--rows must be positive, not {rows}", 2)
    if rate is not None and not rate > 0:
        fail(f"--rate must be a positive number of Hz, not {rate}", 2)

    def go():
        from kiloml.workflow.data import import_files
        from kiloml.workflow.project import load_project

        proj = load_project(project_dir(project))
        res = import_files(proj, path, fmt=fmt, label=label, label_regex=label_regex,
                          group_regex=group_regex, rate=rate, rows=rows, variable=variable,
                          split=split, skip_bad=skip_bad)
        s = res.summary()
        if as_json:
            emit_json(s)
        else:
            out.print(f"imported {sum(s['labels'].values()):,} samples from {s['files']:,} "
                      f"files into {proj.index_path}")
            _print_counts("per label", s["labels"])
            out.print("splits: " + ", ".join(f"{k} {v:,}" for k, v in s["splits"].items()))
            if s["noise_clips"]:
                out.print(f"background-noise clips: {s['noise_clips']}")
            if s["duplicates"]:
                out.print(f"already in the index (not added again): {s['duplicates']}")
            for n in s["notes"][:10]:
                err.print(f"note: {n}", markup=False)
            if len(s["notes"]) > 10:
                err.print(f"note: ... {len(s['notes']) - 10} more notes (see --json)")
            for w in s["warnings"]:
                warn(w)
            for sk in s["skipped"]:
                warn(f"skipped: {sk['reason']}")
        if res.skipped and not res.added:
            fail(f"no file could be imported ({len(res.skipped)} skipped)")

    guard(go)


@data_app.command("info")
def data_info(
    project: Path = PROJECT_OPT,
    no_verify: bool = typer.Option(False, "--no-verify",
                                   help="Do not re-hash source files (faster)."),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON on stdout."),
) -> None:
    """Counts per label and split, groups, durations, sample rates and problems found."""

    def go():
        from kiloml.workflow.data import project_info
        from kiloml.workflow.project import load_project

        info = project_info(load_project(project_dir(project)), verify=not no_verify)
        if as_json:
            emit_json(info)
            return
        t = table(f"{info['samples']:,} samples, {len(info['labels'])} labels, "
                  f"{info['groups']:,} groups, {info['duration_s']:,.1f} s",
                  [("label", "l"), ("train", "r"), ("validation", "r"), ("test", "r"),
                   ("total", "r"), ("seconds", "r")])
        for lab, c in info["label_splits"].items():
            t.add_row(lab, *(f"{c[sp]:,}" for sp in ("train", "validation", "test")),
                      f"{info['labels'][lab]:,}", f"{info['label_duration_s'][lab]:,.1f}")
        t.add_row("all", *(f"{info['splits'][sp]:,}" for sp in ("train", "validation", "test")),
                  f"{info['samples']:,}", f"{info['duration_s']:,.1f}")
        out.print(t)
        w = table("windows per split (share of the label's windows)",
                  [("label", "l"), ("train", "r"), ("validation", "r"), ("test", "r")])
        for lab, c in info["window_splits"].items():
            w.add_row(lab, *(f"{c[sp]:,} ({info['window_shares'][lab][sp]:.0%})"
                             for sp in ("train", "validation", "test")))
        out.print(w)
        if info["dropped_lines"]:
            warn(f"malformed lines dropped at import: {info['dropped_lines']:,}")
        al = info.get("alignment")
        if al:
            a = table(f"sensor alignment, {al['recordings']:,} recordings (start spread median "
                      f"{al['start_spread_ms']['median']:g} / max {al['start_spread_ms']['max']:g}"
                      f" ms, end {al['end_spread_ms']['median']:g} / "
                      f"{al['end_spread_ms']['max']:g} ms; labels agree on "
                      f"{al['label_agreement']['mean']:.1%})",
                      [("sensor", "l"), ("rows", "r"), ("nominal Hz", "r"),
                       ("rate Hz", "r"), ("duplicated", "r"),
                       ("dropped", "r"), ("max gap ms", "r"), ("lag ms med/max", "r")])
            for n, x in al["sensors"].items():
                nominal = x.get("nominal_rate_hz")
                a.add_row(n, f"{x['rows']:,}", "?" if nominal is None else f"{nominal:g}",
                          f"{x['rate_hz_median']:g}",
                          f"{x['duplicated']:,}", f"{x['dropped']:,}", f"{x['max_gap_ms']:g}",
                          f"{x['lag_ms_median']:g} / {x['lag_ms_max_abs']:g}")
            out.print(a)
        out.print("sample rates: " + ", ".join(f"{r} Hz x{n}" for r, n in
                                                info["sample_rates"].items()))
        if info["noise"]["clips"]:
            out.print(f"background noise: {info['noise']['clips']} clips, "
                      f"{info['noise']['duration_s']:.1f} s")
        for pr in info["problems"]:
            warn(f"problem: {pr}")
        if not info["problems"]:
            out.print("no problems found")

    guard(go)


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
        fail(f"--seconds must be in (0, 86400], not {seconds}", 2)
    if baud <= 0:
        fail(f"--baud must be positive, not {baud}", 2)
    if not label.strip():
        fail("--label must not be empty", 2)

    def go():
        from kiloml.workflow.data import capture
        from kiloml.workflow.project import load_project

        proj = load_project(project_dir(project))
        res = capture(proj, port, baud, label, seconds, rate=rate)
        if as_json:
            emit_json(res)
        else:
            out.print(f"captured {res['rows']:,} rows x {res['channels']} channels "
                      f"({res['sample_rate']:.1f} Hz) -> {res['file']}; "
                      f"indexed as {res['sample_id']} ({res['split']})")
            if res["junk_lines"]:
                warn(f"skipped {res['junk_lines']} non-numeric line(s)")

    guard(go)


@data_app.command("stream")
def data_stream(
    output: Path = typer.Option(..., "--output", "-o",
                                help="Stream to write: .wav (audio) or .npy / .csv (IMU)."),
    truth: Path = typer.Option(..., "--truth", help="Truth CSV to write (label,start_s,end_s)."),
    project: Path = PROJECT_OPT,
    minutes: Optional[float] = typer.Option(
        None, "--minutes", help="Length (audio default 20; IMU default: the whole split)."),
    snr: float = typer.Option(10.0, "--snr", help="Audio: words this many dB above the noise."),
    split: str = typer.Option("test", "--split", help="train | validation | test"),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same stream)."),
    keywords: int = typer.Option(50, "--keywords", help="Audio: keyword clips to place."),
    unknown: int = typer.Option(50, "--unknown", help="Audio: unknown-word clips to place."),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON on stdout."),
) -> None:
    """Build a long recording from the project's split and its truth: keywords and unknown
    words at random times over background noise (audio), or the split's recordings end to
    end (IMU). Deterministic per seed."""
    if split not in ("train", "validation", "test"):
        fail(f"--split must be train, validation or test, not {split!r}", 2)
    if keywords < 0 or unknown < 0:
        fail("--keywords and --unknown must be >= 0", 2)
    if minutes is not None and not minutes > 0:
        fail(f"--minutes must be > 0, not {minutes}", 2)

    def go():
        from kiloml.workflow.project import load_project
        from kiloml.workflow.stream import build_stream

        res = build_stream(load_project(project_dir(project)), output, truth, minutes=minutes,
                           snr_db=snr, split=split, seed=seed, keywords=keywords,
                           unknown=unknown)
        if as_json:
            emit_json(res)
            return
        snr_txt = f" at {res['snr_db']:g} dB SNR" if res["audio"] else ""
        out.print(f"wrote {res['stream']}: {res['seconds'] / 60:.2f} min, {res['events']} "
                  f"events{snr_txt} from the {split} split (seed {seed}); truth "
                  f"{res['truth']}")
        _print_counts("events per label", res["labels"], ("label", "events"))
        for n in res["notes"]:
            err.print(f"note: {n}", markup=False)

    guard(go)


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
        fail("give --preset NAME or --block NAME", 2)
    if engine not in ("numpy", "c"):
        fail(f"--engine must be numpy or c, not {engine!r}", 2)
    if variant not in ("f32", "q15", "q31"):
        fail(f"--variant must be f32, q15 or q31, not {variant!r}", 2)
    params = {}
    for kv in param:
        if "=" not in kv:
            fail(f"--param {kv!r}: expected KEY=VALUE", 2)
        k, v = kv.split("=", 1)
        try:
            params[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            params[k.strip()] = v

    def go():
        from kiloml.workflow.dsp import compute_features

        res = compute_features(inp, output, preset=preset, block=block, params=params,
                               engine=engine, variant=variant, fmt=fmt, rate=rate,
                               command=command_line(), c_out=c_out, prefix=prefix)
        if as_json:
            emit_json(res)
        else:
            out.print(f"wrote {res['output']}: {res['dtype']}{res['shape']} from "
                      f"{len(res['files'])} file(s) ({res['block']}, {res['engine']}"
                      f"{'/' + res['variant'] if res['engine'] == 'c' else ''})")
            c = res["cost"]
            out.print(f"per window on the device: RAM {c['ram_bytes']:,} B, flash "
                      f"{c['flash_bytes']:,} B, {c['total_ops']:,} ops")
            if res["c_files"]:
                out.print(f"C in {c_out}: " + ", ".join(res["c_files"]))

    guard(go)
