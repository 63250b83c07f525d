"""``kiloml simulate --stream``: the project's streaming pipeline over a long recording
(kiloml.workflow.stream)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from kiloml.cli.common import (PROJECT_OPT, app, command_line, emit_json, fail, fmt, guard, out,
                               pct, project_dir, table)


@app.command()
def simulate(
    stream: Path = typer.Option(..., "--stream", help="Recording: 16-bit WAV (audio) or "
                                                      ".npy / .csv (IMU) at the project's rate."),
    truth: Optional[Path] = typer.Option(None, "--truth",
                                         help="Truth CSV (label,start_s,end_s) to score with."),
    project: Optional[Path] = PROJECT_OPT,
    board: Optional[str] = typer.Option(None, "--board", help="Board (default: the project's)."),
    engine: str = typer.Option("python", "--engine", help="python (the numpy twin) | c"),
    dsp_variant: Optional[str] = typer.Option(
        None, "--dsp-variant", help="f32 | q31 | q15 (default: [deploy] dsp_variant, else the "
                                    "board's)."),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON on stdout."),
) -> None:
    """Run the deployed streaming pipeline ([stream] in kiloml.toml: slices per window,
    smoothing, threshold, suppression, minimum count) over a long recording: every detection
    and, with --truth, hits, misses and false accepts per hour as MLPerf Tiny scores them."""
    if engine not in ("python", "c"):
        fail(f"--engine must be python or c, not {engine!r}", 2)
    if dsp_variant is not None and dsp_variant not in ("f32", "q31", "q15"):
        fail(f"--dsp-variant must be f32, q31 or q15, not {dsp_variant!r}", 2)

    def go():
        from kiloml.workflow.project import load_project
        from kiloml.workflow.stream import simulate_stream

        res = simulate_stream(load_project(project_dir(project)), stream, truth, board=board,
                              engine=engine, dsp_variant=dsp_variant, command=command_line())
        if as_json:
            emit_json(res)
            return
        fps = res["frames_per_stride"]
        inc = ("incremental features" + (f", {fps:.1f} of {res['frames_per_window']} frames a "
                                         "stride" if fps is not None else "")
               if res["incremental"] else f"whole window a stride ({res['incremental_note']})")
        out.print(f"{res['stream']}: {res['duration_s'] / 60:.2f} min, {res['windows']:,} "
                  f"windows every {res['stride_ms']:g} ms on {res['board']} "
                  f"({res['dsp_variant']}; {inc}); {len(res['detections'])} detections "
                  f"({res['engine']}, {res['seconds']:.1f} s)")
        wk = res["wake"]
        if wk["enabled"]:
            out.print(f"wake gate: {wk['windows_passed']:,} of {wk['windows_seen']:,} windows "
                      f"let through ({pct(wk['passed_fraction'])})")
        t = table("detections", [("t_s", "r"), ("label", "l"), ("score", "r")])
        for d in res["detections"][:50]:
            t.add_row(f"{d['t_s']:.3f}", d["label"], str(d["score"]))
        if res["detections"]:
            out.print(t)
        if len(res["detections"]) > 50:
            out.print(f"... {len(res['detections']) - 50} more (see --json)")
        sc = res["score"]
        if sc is None:
            return
        out.print(f"scored against {truth}: {sc['hits']} hits, {sc['misses']} misses of "
                  f"{sc['targets']} keywords ({pct(sc['miss_rate'])} missed), "
                  f"{sc['false_accepts']} false accepts ({sc['fa_per_hour']:.1f} per hour)")
        s = table("per label", [("label", "l"), ("keywords", "r"), ("hits", "r"), ("misses", "r"),
                   ("false acc.", "r")])
        for lab, r in sc["per_label"].items():
            s.add_row(lab, fmt(r["targets"]), fmt(r["hits"]), fmt(r["misses"]),
                      fmt(r["false_accepts"]))
        out.print(s)

    guard(go)
