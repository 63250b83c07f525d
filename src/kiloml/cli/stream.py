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
    stream: Optional[Path] = typer.Option(None, "--stream", help="Recording: 16-bit WAV "
                                          "(audio) or .npy / .csv (IMU) at the project's rate."),
    truth: Optional[Path] = typer.Option(None, "--truth",
                                         help="Truth CSV (label,start_s,end_s) to score with."),
    project: Optional[Path] = PROJECT_OPT,
    board: Optional[str] = typer.Option(None, "--board", help="Board (default: the project's)."),
    engine: str = typer.Option("python", "--engine", help="python (the numpy twin) | c"),
    dsp_variant: Optional[str] = typer.Option(
        None, "--dsp-variant", help="f32 | q31 | q15 (default: [deploy] dsp_variant, else the "
                                    "board's)."),
    duty_cycle: bool = typer.Option(
        False, "--duty-cycle", help="Also the duty cycle, average power and battery life on "
                                    "the board, always on and with the wake gate (audio or "
                                    "IMU; cycles from the emulator)."),
    battery: float = typer.Option(1000.0, "--battery", help="Battery capacity in mAh "
                                                            "(--duty-cycle)."),
    calibrate: bool = typer.Option(
        False, "--calibrate", help="Choose the smoothing window, threshold, suppression and "
                                   "minimum count on a validation-split stream and write them "
                                   "into kiloml.toml."),
    target_fa: Optional[float] = typer.Option(
        None, "--target-fa-per-hour", help="--calibrate: the false accepts per hour allowed."),
    minutes: float = typer.Option(20.0, "--minutes", help="--calibrate: the validation "
                                                          "stream's length."),
    snr: float = typer.Option(10.0, "--snr", help="--calibrate: its SNR in dB."),
    seed: int = typer.Option(1, "--seed", help="--calibrate: its seed."),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON on stdout."),
) -> None:
    """Run the deployed streaming pipeline ([stream] in kiloml.toml: slices per window,
    smoothing, threshold, suppression, minimum count) over a long recording: every detection
    and, with --truth, hits, misses and false accepts per hour as MLPerf Tiny scores them;
    with --duty-cycle, the board's duty cycle and battery life with and without the wake gate.
    --calibrate --target-fa-per-hour X instead tunes the smoothing on a validation-split
    stream and writes it into kiloml.toml."""
    if engine not in ("python", "c"):
        fail(f"--engine must be python or c, not {engine!r}", 2)
    if dsp_variant is not None and dsp_variant not in ("f32", "q31", "q15"):
        fail(f"--dsp-variant must be f32, q31 or q15, not {dsp_variant!r}", 2)

    if not battery > 0:
        fail(f"--battery must be a capacity in mAh > 0, not {battery:g}", 2)
    if calibrate:
        if stream is not None or truth is not None or duty_cycle:
            fail("--calibrate builds its own validation stream: no --stream, --truth or "
                 "--duty-cycle with it", 2)
        if target_fa is None:
            fail("--calibrate needs --target-fa-per-hour X", 2)
        guard(lambda: _calibrate(project, target_fa, minutes, snr, seed, board, dsp_variant,
                                 as_json))
        return
    if stream is None:
        fail("give --stream FILE (or --calibrate --target-fa-per-hour X)", 2)

    def go():
        from kiloml.workflow.project import load_project
        from kiloml.workflow.stream import simulate_stream

        res = simulate_stream(load_project(project_dir(project)), stream, truth, board=board,
                              engine=engine, dsp_variant=dsp_variant, duty_cycle=duty_cycle,
                              battery_mah=battery, command=command_line())
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
        if res["duty_cycle"]:
            print_duty(res["duty_cycle"])
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


def print_duty(d: dict) -> None:
    """The duty-cycle table of ``simulate --duty-cycle``."""
    c = d["cycles"]
    out.print(f"{d['board']} ({d['core']}, {d['clock_hz'] / 1e6:g} MHz), a stride every "
              f"{d['stride_ms']:g} ms: gate only {c['gate_only']:,} cycles a stride "
              f"({pct(d['gate_cost'])} of an active stride: {c['active']:,}; after an idle "
              f"stretch {c['wake_window']:,}); the gate let {d['windows_passed']:,} of "
              f"{d['windows_seen']:,} windows through ({pct(d['passed_fraction'])})")
    t = table(f"duty cycle on {d['board']} ({d['battery_mah']:g} mAh)",
              [("", "l"), ("cycles/stride", "r"), ("duty", "r"), ("avg. power mW", "r"),
               ("battery days", "r")])
    for name, key in (("always on", "always_on"), ("wake gate", "gated")):
        r = d[key]
        t.add_row(name, f"{r['cycles_per_stride']:,}",
                  pct(r["duty"]) + ("" if r["real_time"] else " (not real-time)"),
                  fmt(None if r["average_power_mw"] is None else round(r["average_power_mw"], 3)),
                  fmt(r["battery_days"]))
    out.print(t)


def _calibrate(project, target, minutes, snr, seed, board, dsp_variant, as_json) -> None:
    from kiloml.workflow.project import load_project
    from kiloml.workflow.stream import calibrate_stream

    res = calibrate_stream(load_project(project_dir(project)), target, minutes=minutes,
                           snr_db=snr, seed=seed, board=board, dsp_variant=dsp_variant,
                           command=command_line())
    if as_json:
        emit_json(res)
        return
    t = table(f"DET points on the validation stream ({res['duration_s'] / 60:.1f} min, "
              f"{res['snr_db']:g} dB)", [("avg ms", "r"), ("threshold", "r"), ("suppr. ms", "r"),
                                         ("min count", "r"), ("hits", "r"), ("misses", "r"),
                                         ("FA", "r"), ("FA/h", "r"), ("", "l")])
    for i, q in enumerate(res["points"]):
        t.add_row(f"{q['average_window_ms']:g}", str(q["detection_threshold"]),
                  f"{q['suppression_ms']:g}", str(q["minimum_count"]), str(q["hits"]),
                  str(q["misses"]), str(q["false_accepts"]), f"{q['fa_per_hour']:.1f}",
                  "chosen" if i == res["chosen_index"] else "")
    out.print(t)
    for note in res["stream_notes"]:
        out.print(f"validation stream: {note}")
    c, q = res["chosen"], res["chosen_point"]
    out.print(f"chosen for <= {res['target_fa_per_hour']:g} FA/h: average window "
              f"{c['average_window_ms']:g} ms, threshold {c['detection_threshold']}, "
              f"suppression {c['suppression_ms']:g} ms, minimum count {c['minimum_count']} "
              f"({q['misses']} of {q['targets']} missed, {q['fa_per_hour']:.1f} FA/h on "
              "validation); written to kiloml.toml [stream]")
