"""CLI verbs for targets: ``kiloml boards`` and ``kiloml profile``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer
from rich.table import Table

from kiloml.cli import _fail, _guard, app, err


def _fmt(v, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return str(v)


@app.command()
def boards(as_json: bool = typer.Option(False, "--json", help="Print the database as JSON.")) -> None:
    """List the boards kiloml knows, with their datasheet figures."""

    def go():
        from kiloml.targets.profile import load_boards

        db = load_boards()
        if as_json:
            clean = {k: {kk: (None if isinstance(vv, float) and math.isnan(vv) else vv)
                         for kk, vv in v.items()} for k, v in db.items()}
            typer.echo(json.dumps(clean, indent=2))
            return
        t = Table(title="boards (figures and sources: src/kiloml/targets/boards.toml)",
                  title_justify="left")
        for col in ("id", "board", "core", "MHz", "flash KB", "RAM KB", "active mW", "sleep mW"):
            t.add_column(col, justify="left" if col in ("id", "board", "core") else "right")
        for k, b in db.items():
            t.add_row(k, b["name"], b["core"], _fmt(b["clock_hz"] / 1e6, 0),
                      _fmt(b["flash_bytes"] // 1024), _fmt(b["ram_bytes"] // 1024),
                      _fmt(float(b["active_power_mw"])), _fmt(float(b["idle_power_mw"]), 4))
        err.print(t)

    _guard(go)


@app.command()
def profile(
    model: Path = typer.Argument(..., help="int8 .tflite model."),
    board: str = typer.Option(..., "--board", help="Board id (see `kiloml boards`) or 'all'."),
    rate: float = typer.Option(None, "--rate", help="Inferences per second, for battery life."),
    battery: float = typer.Option(None, "--battery", help="Battery capacity in mAh."),
    runtime: str = typer.Option(None, "--kernels",
                                help="Kernel set: armv7em (DSP cores, default there) or portable."),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON on stdout."),
) -> None:
    """Build for the board's core, run one inference in the emulator, report flash, RAM,
    instructions, estimated cycles, latency, energy (and battery life with --rate/--battery)."""
    if (rate is None) != (battery is None):
        _fail("--rate and --battery go together", 2)
    if rate is not None and (rate <= 0 or battery <= 0):
        _fail("--rate and --battery must be positive", 2)
    if runtime not in (None, "armv7em", "portable"):
        _fail(f"--kernels must be armv7em or portable, not {runtime!r}", 2)

    def go():
        from kiloml.api import load_model
        from kiloml.targets.profile import battery_days, load_boards, profile_graph

        db = load_boards()
        if board != "all" and board not in db:
            _fail(f"unknown board {board!r} (known: {', '.join(db)}, all)", 2)
        g = load_model(model)
        ids = list(db) if board == "all" else [board]
        results = []
        cache: dict = {}
        for bid in ids:
            rt = runtime
            if rt == "armv7em" and not db[bid].get("dsp", False):
                rt = "portable"
            key = (db[bid]["core"], rt)
            base = cache.get(key)
            res = profile_graph(g, bid, runtime=rt) if base is None else _rescale(base, db[bid], bid)
            cache.setdefault(key, res)
            if rate is not None:
                res["battery_days"] = battery_days(res, db[bid], rate, battery)
                res["rate_hz"] = rate
                res["battery_mah"] = battery
            results.append(res)
        if as_json:
            typer.echo(json.dumps(results if board == "all" else results[0], indent=2))
        elif board == "all":
            _print_all(results)
        else:
            _print_one(results[0])

    _guard(go)


def _rescale(base: dict, b: dict, bid: str) -> dict:
    """Same core and kernels, other board: same build and counts, new clock and power."""
    from kiloml.targets.profile import _energy

    res = dict(base)
    res.update({"board": bid, "board_name": b["name"], "clock_hz": int(b["clock_hz"]),
                "flash_available_bytes": int(b["flash_bytes"]),
                "ram_available_bytes": int(b["ram_bytes"])})
    lat = res["cycles"] / float(b["clock_hz"]) * 1e3
    res["latency_ms"] = round(lat, 4)
    res["energy_uj"] = _energy(lat, b)
    res["fits"] = res["flash_bytes"] <= b["flash_bytes"] and res["ram_bytes"] <= b["ram_bytes"]
    return res


def _print_one(r: dict) -> None:
    est = " (analytic estimate)" if r["runtime"] == "analytic-estimate" else ""
    t = Table(title=f"{r['board_name']} ({r['core']} @ {r['clock_hz'] / 1e6:.0f} MHz){est}",
              title_justify="left")
    t.add_column("figure")
    t.add_column("value", justify="right")
    rows = [("kernels", r["runtime"]),
            ("flash", f"{_fmt(r['flash_bytes'])} B of {_fmt(r['flash_available_bytes'])}"),
            ("RAM", f"{_fmt(r['ram_bytes'])} B of {_fmt(r['ram_available_bytes'])} "
                    f"(arena {_fmt(r['arena_bytes'])}, stack {_fmt(r['stack_bytes'])})"),
            ("fits", _fmt(r["fits"])), ("weights", f"{_fmt(r['weights_bytes'])} B"),
            ("MACs", _fmt(r["macs"])), ("instructions", _fmt(r["instructions"])),
            ("cycles (estimated)", _fmt(r["cycles"])), ("MAC/cycle", _fmt(r["macs_per_cycle"], 3)),
            ("latency", f"{_fmt(r['latency_ms'], 3)} ms"),
            ("energy / inference", f"{_fmt(r['energy_uj'], 1)} µJ"),
            ("output = reference", _fmt(r["output_matches_reference"]))]
    if "battery_days" in r:
        rows.append((f"battery ({r['battery_mah']:g} mAh @ {r['rate_hz']:g} Hz)",
                     f"{_fmt(r['battery_days'], 1)} days"))
    for k, v in rows:
        t.add_row(k, v)
    err.print(t)
    if not r["fits"]:
        err.print(f"[yellow]does not fit:[/yellow] needs {r['flash_bytes']:,} B flash and "
                  f"{r['ram_bytes']:,} B RAM; the board has {r['flash_available_bytes']:,} and "
                  f"{r['ram_available_bytes']:,}")
    if r["layers"]:
        lt = Table(title="per layer", title_justify="left")
        for col in ("node", "op", "kernel", "MACs", "cycles", "MAC/cycle"):
            lt.add_column(col, justify="right" if col in ("MACs", "cycles", "MAC/cycle") else "left")
        for layer in r["layers"]:
            lt.add_row(str(layer["node"]), layer["op"], layer["kernel"], _fmt(layer["macs"]),
                       _fmt(layer["cycles"]), _fmt(layer["macs_per_cycle"], 3))
        err.print(lt)


def _print_all(rs: list[dict]) -> None:
    t = Table(title="which board for this model", title_justify="left")
    for col in ("board", "core", "MHz", "fits", "flash B", "RAM B", "latency ms", "energy µJ",
                "battery days", "note"):
        t.add_column(col, justify="left" if col in ("board", "core", "note", "fits") else "right")
    for r in rs:
        note = "analytic estimate" if r["runtime"] == "analytic-estimate" else r["runtime"]
        t.add_row(r["board"], r["core"], _fmt(r["clock_hz"] / 1e6, 0), _fmt(r["fits"]),
                  _fmt(r["flash_bytes"]), _fmt(r["ram_bytes"]), _fmt(r["latency_ms"], 3),
                  _fmt(r["energy_uj"], 1), _fmt(r.get("battery_days"), 1), note)
    err.print(t)
