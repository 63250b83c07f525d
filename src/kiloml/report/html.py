"""The report page: plain data in (see kiloml.report.render_report), one self-contained HTML
string out: inline CSS, inline SVG plots, no script, no external resource of any kind.

Every section is present only when its data is (a project that never profiled has no Boards
section); each present section holds at least one plot, and its tables carry the numbers.
"""

from __future__ import annotations

from pathlib import Path

import html
import math
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from kiloml.report import plots

SECTIONS = ("data", "features", "training", "accuracy", "variants", "tuning", "model",
            "boards", "streaming", "verify")
TITLES = {"data": "Data", "features": "Features", "training": "Training",
          "accuracy": "Accuracy", "variants": "Variants", "tuning": "Tuning",
          "model": "Model on the device",
          "boards": "Boards", "streaming": "Streaming", "verify": "Verify"}
SPLITS = ("train", "validation", "test")

CSS = """
:root{--fg:#1d2330;--muted:#5b6472;--line:#d9dde3;--bg:#f6f7f9;--ok:#228833;--bad:#cc3344}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",
Arial,sans-serif;color:var(--fg);background:var(--bg)}
header{background:#1d2330;color:#fff;padding:18px 28px}
header h1{margin:0 0 4px;font-size:22px}
header .sub{color:#c8cdd6}
header table{color:#e6e9ee;margin-top:10px;font-size:12px}
header td,header th{border-color:#3a4252;padding:2px 10px 2px 0}
header code{color:#fff}
nav{position:sticky;top:0;background:#fff;border-bottom:1px solid var(--line);
padding:6px 28px;z-index:1}
nav a{margin-right:14px;color:#4477aa;text-decoration:none;font-weight:600}
main{max-width:1100px;margin:0 auto;padding:8px 20px 40px}
section{background:#fff;border:1px solid var(--line);border-radius:6px;margin:18px 0;
padding:6px 20px 16px}
h2{font-size:18px;margin:12px 0 6px}
h3{font-size:14px;margin:14px 0 4px;color:var(--muted)}
p.note{color:var(--muted);margin:4px 0}
.plots{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
svg.plot{max-width:100%;height:auto}
table{border-collapse:collapse;font-size:12.5px;margin:6px 0}
th,td{border-bottom:1px solid var(--line);padding:3px 10px 3px 0;text-align:left;
vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:var(--ok);font-weight:600}.bad{color:var(--bad);font-weight:600}
ul.problems li{color:var(--bad)}
code{font:12px ui-monospace,"DejaVu Sans Mono",monospace;word-break:break-all}
.scroll{overflow-x:auto}
footer{color:var(--muted);text-align:center;font-size:12px;padding:10px}
"""


# ---------------------------------------------------------------- small helpers


def esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


def trim(v: Any, digits: int = 3) -> str:
    """A measured quantity in prose: at most ``digits`` decimals, trailing zeros dropped
    (250 ms, 20 min, 39.5 per hour); n/a for unknown."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    text = f"{float(v):,.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def num(v: Any, digits: int = 2) -> str:
    """Numbers for tables: thousands separators, n/a for unknown, yes/NO for booleans."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, (bool, np.bool_)):
        return '<span class="ok">yes</span>' if v else '<span class="bad">NO</span>'
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):,.{digits}f}"
    return esc(v)


def pct(v: Optional[float]) -> str:
    return "n/a" if v is None else f"{100 * float(v):.2f} %"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[int] = (),
          cls: str = "", raw: bool = False) -> str:
    """An HTML table; columns in ``numeric`` are right-aligned; cells are escaped unless
    ``raw`` (then they are already HTML)."""
    num_cols = set(numeric)
    head = "".join(f'<th class="n">{esc(h)}</th>' if i in num_cols else f"<th>{esc(h)}</th>"
                   for i, h in enumerate(headers))
    body = []
    for r in rows:
        cells = "".join(
            f'<td class="n">{c if raw else esc(c)}</td>' if i in num_cols
            else f"<td>{c if raw else esc(c)}</td>" for i, c in enumerate(r))
        body.append(f"<tr>{cells}</tr>")
    c = f' class="{cls}"' if cls else ""
    return (f'<div class="scroll"><table{c}><thead><tr>{head}</tr></thead><tbody>'
            + "".join(body) + "</tbody></table></div>")


def section(sid: str, body: list[str], intro: str = "") -> str:
    note = f'<p class="note">{intro}</p>' if intro else ""
    return (f'<section id="{sid}"><h2>{esc(TITLES[sid])}</h2>{note}' + "\n".join(body)
            + "</section>")


def plots_div(*svgs: str) -> str:
    return '<div class="plots">' + "".join(s for s in svgs if s) + "</div>"


# ---------------------------------------------------------------- sections


def _header(h: dict) -> str:
    rows = [(f"<code>{esc(a['artifact'])}</code>",
             f"<code>{esc(a['command'])}</code>" if a.get("command") else
             esc(a.get("note", "not recorded")),
             f"<code>{esc(a['sha256'][:16])}</code>" if a.get("sha256") else "")
            for a in h.get("artifacts", [])]
    facts = " · ".join(esc(x) for x in h.get("facts", []))
    return (f'<header><h1>{esc(h["project"])}</h1><div class="sub">kiloml '
            f'{esc(h["kiloml_version"])} report · {facts}</div>'
            + table(["artifact", "made by", "sha256 (first 16)"], rows, raw=True)
            + "</header>")


def _data(d: dict) -> str:
    info = d["info"]
    body = [plots_div(plots.label_splits(info["label_splits"], "data-labels", "samples"))]
    rows = [[lab] + [info["label_splits"][lab].get(sp, 0) for sp in SPLITS]
            + [info["windows"].get(lab, 0), info["label_duration_s"].get(lab, 0.0)]
            for lab in info["label_splits"]]
    rows = [[r[0]] + [num(x) for x in r[1:5]] + [num(r[5], 1)] for r in rows]
    body.append(table(["label", "train", "validation", "test", "windows", "seconds"], rows,
                      numeric=(1, 2, 3, 4, 5), raw=True))
    extra = []
    if d.get("durations"):
        extra.append(plots.histogram(d["durations"], "sample duration (s)", "data-durations",
                                     marker=d.get("window_s"), marker_label="window"))
    groups = d.get("groups") or {}
    if groups:
        extra.append(plots.histogram(list(groups.values()), "samples per group",
                                     "data-groups", ylabel="groups",
                                     bins=min(30, max(len(set(groups.values())), 2))))
    if extra:
        body.append(plots_div(*extra))
    body.append(f'<p class="note">{num(info["samples"])} samples from '
                f'{num(info["sources"])} files, {num(info["groups"])} groups '
                f'(speaker / person / recording; {num(info["ungrouped_samples"])} samples '
                f'without one), {num(info["duration_s"], 1)} s in all, sample rates '
                f'{esc(", ".join(info["sample_rates"]) or "n/a")} Hz.</p>')
    if groups:
        top = sorted(groups.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
        body.append("<h3>largest groups</h3>" + table(
            ["group", "samples"], [(g, num(n)) for g, n in top], numeric=(1,), raw=True))
    probs = info.get("problems") or []
    body.append("<h3>problems found</h3>" + (
        '<ul class="problems">' + "".join(f"<li>{esc(p)}</li>" for p in probs) + "</ul>"
        if probs else '<p class="ok">none</p>'))
    return section("data", body, "What the data set holds, per label and split "
                   "(kiloml data info).")


def _features(f: dict) -> str:
    body = []
    if f.get("examples"):
        body.append(f"<h3>one window per class, as the {esc(f['block'])} block sees it</h3>")
        body.append(plots_div(plots.imu_and_features(f["examples"])))
    pca = f.get("pca")
    if pca:
        body.append("<h3>feature explorer (PCA of the normalized features)</h3>")
        body.append(plots_div(plots.feature_explorer(
            pca["points"], pca["y"], pca["labels"], pca["is_test"], pca["wrong"],
            pca["explained"])))
        body.append(f'<p class="note">{num(int((~pca["is_test"]).sum()))} training windows '
                    f'(faint) and {num(int(pca["is_test"].sum()))} test windows; '
                    f'{num(int(pca["wrong"].sum()))} test windows the int8 model '
                    'misclassifies are circled.</p>')
        if pca.get("wrong_ids"):
            body.append(table(["misclassified test window", "true", "predicted"],
                              pca["wrong_ids"][:20]))
    return section("features", body)


def _training(t: dict) -> str:
    phases = [p for p in t["phases"] if p.get("history")]
    body = [plots_div(plots.training_curves(phases))]
    rows = [(p["name"], num(p.get("epochs_run")), num(p.get("best_epoch")),
             num(p.get("best_metric"), 4), num(p.get("seconds"), 1),
             num(p.get("stopped_early"))) for p in phases]
    body.append(table(["phase", "epochs run", "chosen epoch", "best val. metric", "seconds",
                       "stopped early"], rows, numeric=(1, 2, 3, 4), raw=True))
    intro = ("The weights of the chosen epoch (best validation metric) are the ones "
             "quantized. Train accuracy is measured on the training batches as trained "
             "(augmented); validation on the clean validation split.")
    return section("training", body, intro)


def _accuracy(a: dict) -> str:
    rep = a["test"]
    labels = rep["labels"]
    body = [plots_div(plots.confusion(rep["confusion"], labels))]
    conf_rows = [[lab] + [num(v) for v in row] for lab, row in zip(labels, rep["confusion"])]
    body.append("<h3>confusion matrix (rows: true, columns: predicted)</h3>" + table(
        ["true \\ predicted"] + labels, conf_rows, numeric=range(1, len(labels) + 1),
        cls="confusion", raw=True))
    pc = rep["per_class"]
    body.append(plots_div(plots.grouped_bars(
        labels, {m: [pc[lab][m] for lab in labels] for m in ("precision", "recall", "f1")},
        "", "accuracy-per-class", ylim=(0, 1.05))))
    body.append(table(["class", "precision", "recall", "F1", "support"],
                      [(lab, num(pc[lab]["precision"], 4), num(pc[lab]["recall"], 4),
                        num(pc[lab]["f1"], 4), num(pc[lab]["support"])) for lab in labels],
                      numeric=(1, 2, 3, 4), cls="per-class", raw=True))
    fi = a.get("float_int8") or {}
    if fi:
        metrics = [m for m in ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc")
                   if any(fi[k].get(m) is not None for k in fi)]
        body.append("<h3>float vs int8 (the deployed model)</h3>")
        body.append(table(["model"] + metrics,
                          [[k] + [num(fi[k].get(m), 4) for m in metrics] for k in fi],
                          numeric=range(1, len(metrics) + 1), raw=True))
    intro = (f"The int8 model (<code>{esc(a.get('model', 'model/model.tflite'))}</code>) on "
             f"the {esc(a.get('split', 'test'))} split: {num(rep['n'])} windows, accuracy "
             f"{pct(rep['accuracy'])} (kiloml test).")
    return section("accuracy", body, intro)


def _variants(v: dict) -> str:
    rows = v["variants"]
    metric = v.get("metric", "accuracy")
    front = plots.pareto([(r["metric"], r.get("flash_bytes"), r.get("latency_ms"))
                          for r in rows])
    body = [plots_div(plots.variants(rows, metric))]
    f1 = any("macro_f1" in r for r in rows)
    body.append(table(["variant", metric, *(["macro-F1"] if f1 else []), "flash B", "RAM B",
                       "latency ms", "MACs", "Pareto"],
                      [(esc(r["name"] + ("~" if r.get("estimated") else "")
                            + (" (+DSP)" if r.get("with_dsp") else "")),
                        num(r.get("metric"), 4),
                        *([num(r.get("macro_f1"), 4)] if f1 else []),
                        num(r.get("flash_bytes")),
                        num(r.get("ram_bytes")), num(r.get("latency_ms"), 3),
                        num(r.get("macs")), "★" if f else "") for r, f in zip(rows, front)],
                      numeric=tuple(range(1, 7 if f1 else 6)), raw=True))
    notes = v.get("notes") or []
    intro = (f"kiloml optimize on {esc(v.get('board') or 'no board')}; ~ marks estimates. "
             + " ".join(esc(n) for n in notes))
    return section("variants", body, intro)


def _tuning(t: dict) -> str:
    """The project's last ``kiloml tune`` study: every trial and the Pareto front (validation
    accuracy of the int8 model against measured latency, RAM and flash)."""
    rows = t["trials"]
    d = t.get("defaults")
    body = [plots_div(plots.tune_front(rows, d))]
    shown = ([dict(d, number="defaults", pareto=False)] if d else []) + rows
    body.append(table(
        ["trial", "state", "val acc % (int8)", "latency ms", "RAM KB", "flash KB", "front",
         "settings"],
        [(esc(r["number"]), esc(r["state"]) + (f" (= {esc(r['same_as'])})"
                                               if "same_as" in r else ""),
          num(None if r.get("accuracy") is None else 100 * r["accuracy"]),
          num(r.get("latency_ms"), 3), num(r.get("ram_kb"), 2), num(r.get("flash_kb"), 2),
          "★" if r.get("pareto") else "",
          esc(r.get("error") if r["state"] == "failed" else
              ", ".join(f"{k.split('.')[-1]}={v}" for k, v in r["params"].items())
              or "the project's"))
         for r in shown], numeric=(2, 3, 4, 5), raw=True))
    better = t.get("better_than_defaults") or []
    intro = (f"kiloml tune, study {esc(t['study'])}: {len(rows)} trials on "
             f"{esc(t['limits'])}; {num(t['epochs'])} epochs a trial, pruning rungs at "
             f"{esc(', '.join(map(str, t.get('rungs') or [])) or 'none')}. Pareto front: trials "
             f"{esc(', '.join(map(str, t['pareto'])) or 'none')}"
             + (f"; more accurate than the project's settings at no more latency and RAM: "
                f"{esc(', '.join(map(str, better)))}" if better else "")
             + ". Accuracy on the validation split (test accuracy only for a trial applied "
             "with kiloml tune --apply); latency, RAM and flash of the DSP block and model "
             "from a real compile and emulator run."
             + (f" {esc(t['error'])}." if t.get("error") else ""))
    return section("tuning", body, intro)


def _model(m: dict, boards: list[dict]) -> str:
    layers = m["layers"]
    names = [f"n{r['node']} {r['op'].lower()}" for r in layers]
    series = [("MACs", [r["macs"] for r in layers], "MACs"),
              ("weights", [r["weights_bytes"] for r in layers], "bytes")]
    body = [plots_div(plots.layer_bars(names, series, "model-layers"))]
    prof = m.get("profiled_on")
    if prof and any(r.get("cycles") is not None for r in layers):
        body.append(f"<h3>cycles per layer on {esc(prof)} (estimated from the emulated "
                    "instruction stream)</h3>")
        body.append(plots_div(plots.layer_bars(
            names, [("cycles", [r.get("cycles") for r in layers], "cycles"),
                    ("MAC / cycle", [r.get("macs_per_cycle") for r in layers], "")],
            "model-cycles")))
    rows = [(f"n{r['node']}", r["op"], r["name"], "×".join(map(str, r["output_shape"])),
             num(r["macs"]), num(r["weights_bytes"]), num(r.get("cycles")),
             num(r.get("macs_per_cycle"), 3), r.get("kernel") or "")
            for r in layers]
    body.append(table(["node", "op", "output tensor", "shape", "MACs", "weights B", "cycles",
                       "MAC/cycle", "kernel"], rows, numeric=(4, 5, 6, 7)))
    ar = m.get("arena")
    if ar:
        body.append(f"<h3>arena memory map: {num(ar['arena_bytes'])} B (op-level lower bound "
                    f"{num(ar['lower_bound_bytes'])} B, {esc(m['kernels'])} kernels)</h3>")
        body.append(plots_div(plots.arena_map(ar["buffers"], names, ar["arena_bytes"])))
    mem = [b["memory"] for b in boards if b.get("memory")]
    if mem:
        body.append("<h3>flash and RAM against each board's limits</h3>")
        body.append(plots_div(plots.memory_vs_limits(mem)))
        parts = [(b["board"], w, ", ".join(f"{p} {num(v)}" for p, v in b[w]["parts"]),
                  num(b[w]["used"]), num(b[w]["limit"]))
                 for b in mem for w in ("flash", "ram")]
        body.append(table(["board", "memory", "parts (bytes)", "used B", "limit B"], parts,
                          numeric=(3, 4), raw=True))
    intro = (f"{num(m['macs'])} MACs, {num(m['weights_bytes'])} B of weights, "
             f"{len(layers)} nodes after kiloml's passes (as compiled to C).")
    return section("model", body, intro)


def _boards(boards: list[dict], battery: dict) -> str:
    body = [plots_div(plots.board_bars([b["board"] for b in boards],
                                       [b.get("latency_ms") for b in boards],
                                       [b.get("energy_uj") for b in boards]))]
    rows = [(b["board"], b.get("board_name", ""), b.get("core", ""),
             num(b.get("clock_hz", 0) / 1e6, 0) + " MHz", num(b.get("fits")),
             num(b.get("flash_bytes")), num(b.get("ram_bytes")), num(b.get("latency_ms"), 3),
             num(b.get("energy_uj"), 2), num(b.get("battery_days"), 1)) for b in boards]
    body.append(table(["board", "name", "core", "clock", "fits", "flash B", "RAM B",
                       "latency ms", "energy µJ", "battery days"], rows,
                      numeric=(3, 5, 6, 7, 8, 9), raw=True))
    body += [f"<p>caveat ({esc(b['board'])}): {esc(b['caveat'])}</p>"
             for b in boards if b.get("caveat")]
    intro = ("DSP features + one inference per decision (kiloml profile: real arm-none-eabi "
             "build, emulated run, cycle model; energy from datasheet power, n/a where the "
             f"datasheet gives none). Battery: {num(battery.get('mah'), 0)} mAh at one "
             f"decision every {num(battery.get('period_s'), 2)} s (the window stride), "
             "sleeping in between.")
    return section("boards", body, intro)


def _verify(v: dict) -> str:
    ok = v.get("ok")
    body = [plots_div(plots.verify_bars(int(v.get("predictions_equal", 0)),
                                        int(v.get("clips", 0)),
                                        float(v.get("feature_max_abs_diff") or 0.0),
                                        float(v.get("feature_tolerance") or 0.0)))]
    keys = ("board", "engine", "dsp_variant", "clips", "feature_max_abs_diff",
            "feature_tolerance", "features_over_tolerance", "scores_bit_exact",
            "predictions_equal", "accuracy_reference", "accuracy_device", "rule")
    body.append(table(["", ""], [(k, num(v[k], 4) if isinstance(v[k], float) else num(v[k]))
                                 for k in keys if k in v], raw=True))
    res = '<span class="ok">passed</span>' if ok else '<span class="bad">FAILED</span>'
    return section("verify", body, f"The deployed C package on the board's core in the "
                   f"emulator against the Python pipeline: {res}.")


def _streaming(s: Optional[dict], cal: Optional[dict] = None) -> str:
    """The last ``kiloml simulate --stream``: detections over time against the truth and,
    with a truth file, the MLPerf Tiny streaming scores; its duty cycle (``--duty-cycle``);
    the last ``kiloml simulate --calibrate``'s DET curve."""
    if not s:
        return section("streaming", _calibration(cal), "")
    body = [plots_div(plots.stream_timeline(s.get("truth") or [], s.get("detections") or [],
                                            float(s["duration_s"])))]
    sc = s.get("score")
    if sc:
        rows = [(lab, num(v.get("targets")), num(v.get("hits")), num(v.get("misses")),
                 num(v.get("false_accepts"))) for lab, v in (sc.get("per_label") or {}).items()]
        rows.append(("all", num(sc["targets"]), num(sc["hits"]), num(sc["misses"]),
                     num(sc["false_accepts"])))
        body.append(table(["label", "keywords", "hits", "misses", "false accepts"], rows,
                          numeric=(1, 2, 3, 4), raw=True))
    st = s.get("settings") or {}
    score = (f" {sc['hits']} hits, {sc['misses']} misses, {sc['false_accepts']} false accepts "
             f"({trim(sc['fa_per_hour'], 1)} per hour)." if sc else " No truth file given.")
    intro = (f"kiloml simulate --stream {esc(Path(s['stream']).name)} ({esc(s['engine'])} engine, "
             f"{esc(s.get('dsp_variant') or '')} DSP, board {esc(s.get('board') or '')}): "
             f"{trim(s['duration_s'] / 60)} min, a window every {trim(s['stride_ms'])} ms, "
             f"{len(s.get('detections') or [])} detections; smoothing "
             f"{trim(st.get('average_window_ms'))} ms, threshold "
             f"{num(st.get('detection_threshold'))}, suppression {trim(st.get('suppression_ms'))}"
             f" ms, minimum count {num(st.get('minimum_count'))}." + esc(score))
    wk = s.get("wake") or {}
    if wk.get("enabled"):
        intro += (f" Wake gate: {num(wk.get('windows_passed'))} of "
                  f"{num(wk.get('windows_seen'))} windows let through.")
    if s.get("duty_cycle"):
        body.append(_duty(s["duty_cycle"]))
    return section("streaming", body + _calibration(cal), intro)


def _duty(d: dict) -> str:
    """``simulate --duty-cycle``: per-stride cycles, duty, power and battery, always on and
    with the wake gate."""
    c = d["cycles"]
    rows = []
    for name, key in (("always on", "always_on"), ("wake gate", "gated")):
        r = d[key]
        rows.append((name, num(r["cycles_per_stride"]),
                     pct(r["duty"]) + ("" if r["real_time"] else " (not real-time)"),
                     num(r["average_power_mw"], 3), num(r["battery_days"], 1)))
    note = (f"<p>Duty cycle on {esc(d['board'])} ({esc(d['core'])}, "
            f"{num(d['clock_hz'] / 1e6, 0)} MHz), a stride every {num(d['stride_ms'], 0)} ms, "
            f"{num(d['battery_mah'], 0)} mAh: gate only {num(c['gate_only'])} cycles a stride "
            f"({pct(d['gate_cost'])} of an active stride), the gate let "
            f"{num(d['windows_passed'])} of {num(d['windows_seen'])} windows through "
            f"({pct(d['passed_fraction'])}). Cycles from the emulator (estimate), power from "
            "the board's datasheet figures.</p>")
    return note + table(["", "cycles / stride", "duty", "avg. power (mW)", "battery (days)"],
                        rows, numeric=(1, 2, 3, 4), raw=True)


def _calibration(cal: Optional[dict]) -> list[str]:
    """``simulate --calibrate``: the DET points tried on the validation stream."""
    if not cal or not cal.get("points"):
        return []
    c, q = cal.get("chosen"), cal.get("chosen_point")
    got = (f"chosen: average window {num(c['average_window_ms'], 0)} ms, threshold "
           f"{num(c['detection_threshold'])}, suppression {num(c['suppression_ms'], 0)} ms, "
           f"minimum count {num(c['minimum_count'])} ({num(q['misses'])} of "
           f"{num(q['targets'])} missed, {num(q['fa_per_hour'], 1)} FA/h)" if c
           else "no setting reached the target")
    note = (f"<p>Calibration (kiloml simulate --calibrate): {len(cal['points'])} settings on "
            f"a {num(cal['duration_s'] / 60, 1)}-minute stream of the validation split at "
            f"{num(cal['snr_db'], 0)} dB, target {num(cal['target_fa_per_hour'], 1)} false "
            f"accepts per hour; {got}.</p>")
    return [note, plots_div(plots.stream_det(cal["points"], cal.get("chosen_index"),
                                             float(cal["target_fa_per_hour"])))]





# ---------------------------------------------------------------- the page


def render_page(d: dict) -> str:
    """The whole page for report data ``d`` (see kiloml.report.render_report)."""
    parts = []
    if d.get("data"):
        parts.append(("data", _data(d["data"])))
    if d.get("features") and (d["features"].get("examples") or d["features"].get("pca")):
        parts.append(("features", _features(d["features"])))
    if d.get("training") and any(p.get("history") for p in d["training"]["phases"]):
        parts.append(("training", _training(d["training"])))
    if d.get("accuracy"):
        parts.append(("accuracy", _accuracy(d["accuracy"])))
    if d.get("variants") and d["variants"].get("variants"):
        parts.append(("variants", _variants(d["variants"])))
    if d.get("tuning") and d["tuning"].get("trials"):
        parts.append(("tuning", _tuning(d["tuning"])))
    if d.get("model"):
        parts.append(("model", _model(d["model"], d.get("boards") or [])))
    if d.get("boards"):
        parts.append(("boards", _boards(d["boards"], d.get("battery") or {})))
    if d.get("streaming") or (d.get("calibration") or {}).get("points"):
        parts.append(("streaming", _streaming(d.get("streaming"), d.get("calibration"))))
    if d.get("verify"):
        parts.append(("verify", _verify(d["verify"])))
    nav = "".join(f'<a href="#{sid}">{esc(TITLES[sid])}</a>' for sid, _ in parts)
    title = esc(f"{d['header']['project']} · kiloml report")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{title}</title><style>{CSS}</style></head><body>\n"
            + _header(d["header"]) + f"\n<nav>{nav}</nav>\n<main>\n"
            + "\n".join(html_ for _, html_ in parts)
            + "\n</main><footer>kiloml report: a single file, no network needed to view it."
            "</footer></body></html>\n")
