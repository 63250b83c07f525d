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
    model: Path = typer.Argument(None, help="int8 .tflite model (default with --project: the "
                                            "project's model/model.tflite)."),
    board: str = typer.Option(None, "--board", help="Board id (see `kiloml boards`) or 'all' "
                                                    "(default with --project: the project's)."),
    project_dir: Path = typer.Option(None, "--project", "-p",
                                     help="Also profile the project's DSP block on its first "
                                          "test window: feature extraction + inference."),
    dsp_variant: str = typer.Option(None, "--dsp-variant",
                                    help="DSP C variant: f32, q31 or q15 (default: f32 on "
                                         "FPU cores, else q15 where the block has it)."),
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
    if model is None and project_dir is None:
        _fail("give a MODEL, or --project DIR to profile a project's model and DSP block", 2)
    if dsp_variant is not None and project_dir is None:
        _fail("--dsp-variant needs --project", 2)
    if dsp_variant not in (None, "f32", "q31", "q15"):
        _fail(f"--dsp-variant must be f32, q31 or q15, not {dsp_variant!r}", 2)

    def go():
        from kiloml.api import load_model
        from kiloml.targets.profile import battery_days, load_boards, profile_graph

        db = load_boards()
        proj = dsp_in = None
        model_path, board_id = model, board
        if project_dir is not None:
            from kiloml.targets.dsp_profile import project_window
            from kiloml.train.pipeline import _load_project

            proj = _load_project(project_dir)
            model_path = model_path or proj.root / "model" / "model.tflite"
            if not Path(model_path).is_file():
                _fail(f"{model_path}: no trained model (run `kiloml train -p {project_dir}`)")
            board_id = board_id or proj.config.board.name
            dsp_in = project_window(proj)
            if dsp_variant is not None:
                dsp_in[0].check_variant(dsp_variant)
        if board_id is None:
            _fail("--board is required (a board id or 'all')", 2)
        if board_id != "all" and board_id not in db:
            _fail(f"unknown board {board_id!r} (known: {', '.join(db)}, all)", 2)
        g = load_model(model_path)
        ids = list(db) if board_id == "all" else [board_id]
        results = []
        cache: dict = {}
        dsp_cache: dict = {}
        for bid in ids:
            rt = runtime
            if rt == "armv7em" and not db[bid].get("dsp", False):
                rt = "portable"
            key = (db[bid]["core"], rt)
            base = cache.get(key)
            res = profile_graph(g, bid, runtime=rt) if base is None else _rescale(base, db[bid], bid)
            cache.setdefault(key, res)
            if dsp_in is not None:
                res["dsp"] = _dsp_for(dsp_in, db[bid], dsp_variant, dsp_cache)
                res["dsp"]["window"] = dsp_in[4]
                res["pipeline"] = _pipeline(res, db[bid])
            if rate is not None:
                lat = res.get("pipeline", res)
                res["battery_days"] = battery_days(lat, db[bid], rate, battery)
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


def _dsp_for(dsp_in, b: dict, variant, cache: dict) -> dict:
    """The DSP block on board ``b``; boards with the same core, FPU and variant share one
    emulated run, rescaled to their clock and power."""
    from kiloml.targets.dsp_profile import c_input, choose_variant, profile_dsp
    from kiloml.targets.profile import _energy

    block, frames, channels, window, _ = dsp_in
    v = variant or choose_variant(block, b)
    key = (b["core"], bool(b.get("fpu")), v)
    if key not in cache:
        cache[key] = profile_dsp(block, frames, channels, c_input(block, window, v), b, v)
    res = dict(cache[key])
    if res.get("cycles") is not None:
        lat = res["cycles"] / float(b["clock_hz"]) * 1e3
        res["latency_ms"] = round(lat, 4)
        res["energy_uj"] = _energy(lat, b)
    return res


def _pipeline(res: dict, b: dict) -> dict:
    """Feature extraction + one inference: what a device spends per decision."""
    from kiloml.targets.profile import _energy

    d = res["dsp"]
    known = d.get("latency_ms") is not None and res.get("latency_ms") is not None
    lat = round(d["latency_ms"] + res["latency_ms"], 4) if known else None
    flash = res["flash_bytes"] + d["flash_bytes"]
    ram = res["ram_bytes"] + d["ram_bytes"]
    return {"latency_ms": lat, "energy_uj": _energy(lat, b) if known else None,
            "flash_bytes": flash, "ram_bytes": ram,
            "fits": flash <= b["flash_bytes"] and ram <= b["ram_bytes"]}


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
    if r.get("layers_checked"):
        rows.append(("every layer = reference", f"{_fmt(r['layers_match_reference'])} "
                                                 f"({r['layers_checked']} layers checked)"))
    if "dsp" in r:
        d, pl = r["dsp"], r["pipeline"]
        rows += [("DSP block", f"{d['block']} {d['variant']} ({d['runtime']}), {d['window']}"),
                 ("DSP instructions", _fmt(d["instructions"])),
                 ("DSP latency", f"{_fmt(d['latency_ms'], 3)} ms"),
                 ("DSP flash / RAM", f"{_fmt(d['flash_bytes'])} B / {_fmt(d['ram_bytes'])} B"),
                 ("DSP output = host C", _fmt(d["output_matches_host"])),
                 ("features + inference", f"{_fmt(pl['latency_ms'], 3)} ms"),
                 ("energy / decision", f"{_fmt(pl['energy_uj'], 1)} µJ"),
                 ("total flash / RAM", f"{_fmt(pl['flash_bytes'])} B / {_fmt(pl['ram_bytes'])} B"),
                 ("total fits", _fmt(pl["fits"]))]
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
        for col in ("node", "op", "kernel", "MACs", "cycles", "MAC/cycle", "exact"):
            lt.add_column(col, justify="right" if col in ("MACs", "cycles", "MAC/cycle") else "left")
        for layer in r["layers"]:
            lt.add_row(str(layer["node"]), layer["op"], layer["kernel"], _fmt(layer["macs"]),
                       _fmt(layer["cycles"]), _fmt(layer["macs_per_cycle"], 3),
                       _fmt(layer.get("matches_reference")))
        err.print(lt)


def _print_all(rs: list[dict]) -> None:
    dsp = bool(rs) and "dsp" in rs[0]
    title = "which board for this model" + (" (features + inference)" if dsp else "")
    t = Table(title=title, title_justify="left")
    cols = ["board", "core", "MHz", "fits", "flash B", "RAM B"] + (["DSP ms"] if dsp else []) + [
        "latency ms", "energy µJ", "battery days", "note"]
    for col in cols:
        t.add_column(col, justify="left" if col in ("board", "core", "note", "fits") else "right")
    for r in rs:
        note = "analytic estimate" if r["runtime"] == "analytic-estimate" else r["runtime"]
        x = r.get("pipeline", r)  # with --project: features + inference
        extra = [_fmt(r["dsp"]["latency_ms"], 3)] if dsp else []
        if dsp and r["dsp"]["runtime"] != "analytic-estimate":
            note += f", DSP {r['dsp']['variant']}"
        t.add_row(r["board"], r["core"], _fmt(r["clock_hz"] / 1e6, 0), _fmt(x["fits"]),
                  _fmt(x["flash_bytes"]), _fmt(x["ram_bytes"]), *extra, _fmt(x["latency_ms"], 3),
                  _fmt(x["energy_uj"], 1), _fmt(r.get("battery_days"), 1), note)
    err.print(t)
