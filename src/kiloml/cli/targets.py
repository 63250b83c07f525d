"""CLI verbs for targets: ``kiloml boards`` and ``kiloml profile``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from kiloml.cli.common import (PREFER_OPT, app, check_prefer, emit_json, err, fail, fmt, guard,
                               out, project_dir, table)


@app.command()
def boards(as_json: bool = typer.Option(False, "--json", help="Print the database as JSON.")) -> None:
    """List the boards kiloml knows, with their datasheet figures."""

    def go():
        from kiloml.targets.boards import load_boards

        db = load_boards()
        if as_json:
            emit_json({k: v.json_dict() for k, v in db.items()})
            return
        t = table("boards (figures and sources: src/kiloml/targets/boards.toml)",
                  [("id", "l"), ("board", "l"), ("core", "l!"), ("MHz", "r"), ("flash KB", "r"),
                   ("RAM KB", "r"), ("active mW", "r"), ("sleep mW", "r")])
        for k, b in db.items():
            t.add_row(k, b.name, b.core, fmt(b.clock_hz / 1e6, 0),
                      fmt(b.flash_bytes // 1024), fmt(b.ram_bytes // 1024),
                      fmt(float(b.active_power_mw)), fmt(float(b.idle_power_mw), 4))
        out.print(t)
        for k, b in db.items():
            if b.caveat:
                out.print(f"caveat ({k}): {b.caveat}")

    guard(go)


@app.command()
def profile(
    model: Path = typer.Argument(None, help="int8 .tflite model (default with --project: the "
                                            "project's model/model.tflite)."),
    board: str = typer.Option(None, "--board", help="Board id (see `kiloml boards`) or 'all' "
                                                    "(default with --project: the project's)."),
    project: Path = typer.Option(None, "--project", "-p",
                                 help="Also profile the project's DSP block on its first test "
                                      "window: feature extraction + inference (default without "
                                      "MODEL: the project around the current directory)."),
    dsp_variant: str = typer.Option(None, "--dsp-variant",
                                    help="DSP C variant: f32, q31 or q15 (default: f32 on "
                                         "FPU cores, else q15 where the block has it)."),
    rate: float = typer.Option(None, "--rate", help="Inferences per second, for battery life."),
    battery: float = typer.Option(None, "--battery", help="Battery capacity in mAh."),
    runtime: str = typer.Option(None, "--kernels",
                                help="Kernel set: armv7em (DSP cores, default there), armv6m "
                                     "(Cortex-M0+, default there) or portable."),
    prefer: Optional[str] = PREFER_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON on stdout."),
) -> None:
    """Build for the board's core, run one inference in the emulator, report flash, RAM,
    instructions, estimated cycles, latency, energy (and battery life with --rate/--battery)."""
    if (rate is None) != (battery is None):
        fail("--rate and --battery go together", 2)
    if rate is not None and (rate <= 0 or battery <= 0):
        fail("--rate and --battery must be positive", 2)
    if runtime not in (None, "armv7em", "armv6m", "portable"):
        fail(f"--kernels must be armv7em, armv6m or portable, not {runtime!r}", 2)
    if dsp_variant is not None and project is None and model is not None:
        fail("--dsp-variant needs --project", 2)
    if dsp_variant not in (None, "f32", "q31", "q15"):
        fail(f"--dsp-variant must be f32, q31 or q15, not {dsp_variant!r}", 2)
    check_prefer(prefer)

    def go():
        from kiloml.workflow.profile import profile as run_profile

        proj = project_dir(project) if project is not None or model is None else None
        results = run_profile(model, board, proj, dsp_variant=dsp_variant, rate=rate,
                              battery=battery, runtime=runtime, prefer=prefer)
        if as_json:
            emit_json(results if board == "all" else results[0])
        elif board == "all":
            _print_all(results)
        else:
            _print_one(results[0])

    guard(go)


def _print_one(r: dict) -> None:
    est = " (analytic estimate)" if r["runtime"] == "analytic-estimate" else ""
    t = table(f"{r['board_name']} ({r['core']} @ {r['clock_hz'] / 1e6:.0f} MHz){est}",
              [("figure", "l"), ("value", "l")])
    kern = r["runtime"]
    if r.get("choices"):
        fast = sum(c["option"] not in ("column", "dw18") for c in r["choices"])
        kern += (f", prefer {r['prefer']} ({fast} of {len(r['choices'])} layers on the "
                 "faster kernel)")
    rows = [("kernels", kern),
            ("flash", f"{fmt(r['flash_bytes'])} B of {fmt(r['flash_available_bytes'])}"),
            ("RAM", f"{fmt(r['ram_bytes'])} B of {fmt(r['ram_available_bytes'])} "
                    f"(arena {fmt(r['arena_bytes'])}, stack {fmt(r['stack_bytes'])})"),
            ("fits", fmt(r["fits"])), ("weights", f"{fmt(r['weights_bytes'])} B"),
            ("MACs", fmt(r["macs"])), ("instructions", fmt(r["instructions"])),
            ("cycles (estimated)", fmt(r["cycles"])), ("MAC/cycle", fmt(r["macs_per_cycle"], 3)),
            ("latency", f"{fmt(r['latency_ms'], 3)} ms"),
            ("energy / inference", f"{fmt(r['energy_uj'], 1)} µJ"),
            ("output = reference", fmt(r["output_matches_reference"]))]
    if r.get("layers_checked"):
        rows.append(("every layer = reference", f"{fmt(r['layers_match_reference'])} "
                                                 f"({r['layers_checked']} layers checked)"))
    if "dsp" in r:
        d, pl = r["dsp"], r["pipeline"]
        rows += [("DSP block", f"{d['block']} {d['variant']} ({d['runtime']}), {d['window']}"),
                 ("DSP instructions", fmt(d["instructions"])),
                 ("DSP latency", f"{fmt(d['latency_ms'], 3)} ms"),
                 ("DSP flash / RAM", f"{fmt(d['flash_bytes'])} B / {fmt(d['ram_bytes'])} B"),
                 ("DSP output = host C", fmt(d["output_matches_host"])),
                 ("features + inference", f"{fmt(pl['latency_ms'], 3)} ms"),
                 ("energy / decision", f"{fmt(pl['energy_uj'], 1)} µJ"),
                 ("total flash / RAM", f"{fmt(pl['flash_bytes'])} B / {fmt(pl['ram_bytes'])} B"),
                 ("total fits", fmt(pl["fits"]))]
    if "battery_days" in r:
        rows.append((f"battery ({r['battery_mah']:g} mAh @ {r['rate_hz']:g} Hz)",
                     f"{fmt(r['battery_days'], 1)} days"))
    for k, v in rows:
        t.add_row(k, v)
    out.print(t)
    if r.get("caveat"):
        out.print(f"caveat ({r['board']}): {r['caveat']}")
    if not r["fits"]:
        err.print(f"[yellow]does not fit:[/yellow] needs {r['flash_bytes']:,} B flash and "
                  f"{r['ram_bytes']:,} B RAM; the board has {r['flash_available_bytes']:,} and "
                  f"{r['ram_available_bytes']:,}")
    if r["layers"]:
        lt = table("per layer", [("node", "r"), ("op", "l"), ("kernel", "l"), ("MACs", "r"),
                                 ("cycles", "r"), ("MAC/cycle", "r"), ("exact", "l")])
        for layer in r["layers"]:
            lt.add_row(str(layer["node"]), layer["op"], layer["kernel"], fmt(layer["macs"]),
                       fmt(layer["cycles"]), fmt(layer["macs_per_cycle"], 3),
                       fmt(layer.get("matches_reference")))
        out.print(lt)


def _print_all(rs: list[dict]) -> None:
    """One row per board. Core, clock and kernel set are in ``kiloml boards`` and ``--json``;
    leaving them out keeps every board id whole at 80 columns. ``~``: an analytic estimate
    (no cross compiler for the core), not an emulated run."""
    dsp = bool(rs) and "dsp" in rs[0]
    title = "which board for this model" + (" (features + inference)" if dsp else "")
    cols = ["board", "fits", "flash B", "RAM B"] + (["DSP ms"] if dsp else []) + [
        "latency ms", "energy µJ", "battery days"]
    t = table(title, [(c, "l!" if c in ("board", "fits") else "r") for c in cols])
    estimated = False
    for r in rs:
        x = r.get("pipeline", r)  # with --project: features + inference
        est = "~" if r["runtime"] == "analytic-estimate" else ""
        estimated = estimated or bool(est)
        extra = [fmt(r["dsp"]["latency_ms"], 3)] if dsp else []
        t.add_row(r["board"], fmt(x["fits"]), est + fmt(x["flash_bytes"]),
                  est + fmt(x["ram_bytes"]), *extra, est + fmt(x["latency_ms"], 3),
                  est + fmt(x["energy_uj"], 1), fmt(r.get("battery_days"), 1))
    out.print(t)
    if estimated:
        out.print("~ analytic estimate (no cross compiler for that core)")
    for r in rs:
        if r.get("caveat"):
            out.print(f"caveat ({r['board']}): {r['caveat']}")
