"""The report's plots: plain numbers in, one inline ``<svg>`` string out (kiloml.report.svg).

Each function takes lists, dicts and numpy arrays (never a project) and a fixed key that
names the figure in the page, so the same numbers always give the same bytes.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from kiloml.report.svg import COLORS, new_figure, styled, to_svg

SPLIT_COLORS = {"train": "#4477aa", "validation": "#ccbb44", "test": "#ee6677"}


def _color(i: int) -> str:
    return COLORS[i % len(COLORS)]


def _kb(n: float) -> str:
    return f"{n / 1024:,.1f} KB" if n >= 1024 else f"{n:,.0f} B"


@styled
def label_splits(counts: dict[str, dict[str, int]], key: str = "data-labels",
                 unit: str = "samples") -> str:
    """Horizontal stacked bars: per label, ``unit`` in each split."""
    labels = list(counts)
    fig = new_figure(7.5, 0.6 + 0.28 * max(len(labels), 2))
    ax = fig.add_subplot()
    left = np.zeros(len(labels))
    for sp, col in SPLIT_COLORS.items():
        vals = np.array([counts[lab].get(sp, 0) for lab in labels], float)
        ax.barh(labels, vals, left=left, color=col, label=sp, height=0.7)
        left += vals
    for i, tot in enumerate(left):
        ax.text(tot, i, f" {int(tot):,}", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(unit)
    ax.set_xlim(0, max(left.max(initial=1), 1) * 1.12)
    ax.legend(ncols=3, loc="lower center", bbox_to_anchor=(0.5, 1.0), fontsize=8,
              frameon=False)
    return to_svg(fig, key)


@styled
def histogram(values: Sequence[float], xlabel: str, key: str, marker: Optional[float] = None,
              marker_label: str = "", bins: int = 30, ylabel: str = "samples") -> str:
    """A histogram; ``marker`` draws a labelled vertical line (the window length)."""
    fig = new_figure(3.7, 2.6)
    ax = fig.add_subplot()
    v = np.asarray(values, float)
    if len(v) and v.max() > v.min():
        ax.hist(v, bins=bins, color=COLORS[0])
    else:
        ax.bar([float(v[0]) if len(v) else 0.0], [len(v)], width=0.05, color=COLORS[0])
    if marker is not None:
        ax.axvline(marker, color=COLORS[1], lw=1.2, ls="--", label=marker_label)
        ax.legend(fontsize=8, frameon=False)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return to_svg(fig, key)


@styled
def imu_and_features(examples: list[dict], key: str = "features-examples") -> str:
    """One column per class: the raw window (every axis over time) above the features the
    DSP block makes of it (an image for 2-D features, bars for a feature vector)."""
    n = len(examples)
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    fig = new_figure(2.6 * cols + 0.4, 3.9 * rows)
    grid = fig.add_gridspec(2 * rows, cols, height_ratios=[1.0, 1.0] * rows)
    for i, ex in enumerate(examples):
        r, c = divmod(i, cols)
        raw = np.asarray(ex["raw"], float)
        t = np.arange(len(raw)) / float(ex.get("rate") or 1.0)
        ax = fig.add_subplot(grid[2 * r, c])
        names = ex.get("channel_names") or [f"ch{j}" for j in range(raw.shape[1])]
        if raw.shape[1] == 1 and len(raw) > 2000:  # audio: the waveform, thinned for size
            step = len(raw) // 2000
            ax.plot(t[::step], raw[::step, 0], lw=0.5, color=COLORS[0])
        else:
            for j in range(raw.shape[1]):
                ax.plot(t, raw[:, j], lw=0.9, color=_color(j), label=names[j])
            if raw.shape[1] > 1 and i == 0:
                ax.legend(fontsize=7, frameon=False, ncols=min(raw.shape[1], 3))
        ax.set_title(ex["label"], fontweight="bold")
        ax.set_xlabel("s", labelpad=0)
        axf = fig.add_subplot(grid[2 * r + 1, c])
        feat = np.asarray(ex["features"], float)
        if feat.ndim == 2:
            axf.imshow(feat.T, aspect="auto", origin="lower", interpolation="nearest",
                       cmap="viridis")
            axf.set_xlabel("frame")
            axf.set_ylabel("coefficient")
        else:
            flat = feat.reshape(-1)
            axf.bar(np.arange(len(flat)), flat, color=COLORS[0], width=1.0)
            axf.set_xlabel("feature (normalized)")
        axf.set_title(ex.get("feature_title", "features"), fontsize=8)
    return to_svg(fig, key)


@styled
def feature_explorer(points: np.ndarray, y: np.ndarray, labels: list[str],
                     is_test: np.ndarray, wrong: np.ndarray, explained: Sequence[float],
                     key: str = "features-pca") -> str:
    """2-D PCA scatter: train points small and faint, test points larger, each colored by
    its true label; misclassified test points circled in black with an x."""
    fig = new_figure(7.5, 4.6)
    ax = fig.add_subplot()
    pts = np.asarray(points, float)
    for k, lab in enumerate(labels):
        tr = (y == k) & ~is_test
        te = (y == k) & is_test
        ax.scatter(pts[tr, 0], pts[tr, 1], s=6, color=_color(k), alpha=0.35, linewidths=0)
        ax.scatter(pts[te, 0], pts[te, 1], s=16, color=_color(k), label=lab, linewidths=0)
    if wrong.any():
        ax.scatter(pts[wrong, 0], pts[wrong, 1], s=60, facecolors="none", edgecolors="black",
                   linewidths=1.2, label=f"misclassified ({int(wrong.sum())})")
        ax.scatter(pts[wrong, 0], pts[wrong, 1], s=18, marker="x", color="black",
                   linewidths=1.0)
    ax.set_xlabel(f"PC 1 ({100 * explained[0]:.0f} % of variance)")
    ax.set_ylabel(f"PC 2 ({100 * explained[1]:.0f} % of variance)")
    ax.legend(fontsize=8, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return to_svg(fig, key)


@styled
def training_curves(phases: list[dict], key: str = "training-curves") -> str:
    """Per phase (float, distill, QAT): loss and accuracy per epoch, train and validation,
    with the chosen (best) epoch marked."""
    fig = new_figure(7.5, 2.7 * len(phases))
    axes = fig.subplots(len(phases), 2, squeeze=False)
    for (al, aa), ph in zip(axes, phases):
        h = ph["history"]
        ep = [r["epoch"] for r in h]
        for ax, metric, what in ((al, "loss", "loss"), (aa, "acc", "accuracy")):
            for pre, name, col in (("train_", "train", COLORS[0]),
                                   ("val_", "validation", COLORS[1])):
                vals = [r.get(pre + metric) for r in h]
                if any(v is not None for v in vals):
                    ax.plot(ep, [np.nan if v is None else v for v in vals], marker="o",
                            ms=3, color=col, label=name)
            if ph.get("best_epoch"):
                ax.axvline(ph["best_epoch"], color="#555555", ls=":", lw=1,
                           label=f"chosen epoch {ph['best_epoch']}")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_title(f"{ph['name']}: {what}")
            ax.set_xlabel("epoch")
            ax.legend(fontsize=7, frameon=False)
    return to_svg(fig, key)


@styled
def confusion(matrix: Sequence[Sequence[int]], labels: list[str],
              key: str = "accuracy-confusion") -> str:
    """Confusion matrix (rows: true, columns: predicted) with the counts written in."""
    m = np.asarray(matrix, float)
    n = len(labels)
    side = min(max(3.2, 0.5 * n + 1.8), 8.0)
    fig = new_figure(side + 0.8, side)
    ax = fig.add_subplot()
    rows = m.sum(axis=1, keepdims=True)
    frac = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    ax.imshow(frac, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    fs = 9 if n <= 12 else 6
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=fs,
                    color="white" if frac[i, j] > 0.6 else "black")
    ax.set_xticks(range(n), labels, rotation=45 if n > 4 else 0, ha="right" if n > 4
                  else "center")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    return to_svg(fig, key)


@styled
def grouped_bars(groups: list[str], series: dict[str, Sequence[float]], ylabel: str, key: str,
                 ylim: Optional[tuple[float, float]] = None, width_in: float = 7.5) -> str:
    """Bars per group, one color per series (per-class P/R/F1, float vs int8, ...)."""
    fig = new_figure(width_in, 2.8)
    ax = fig.add_subplot()
    k = len(series)
    w = 0.8 / max(k, 1)
    x = np.arange(len(groups))
    for i, (name, vals) in enumerate(series.items()):
        ax.bar(x + (i - (k - 1) / 2) * w, [np.nan if v is None else v for v in vals], w,
               label=name, color=_color(i))
    ax.set_xticks(x, groups, rotation=45 if len(groups) > 6 else 0,
                  ha="right" if len(groups) > 6 else "center")
    ax.set_ylabel(ylabel)
    if ylim:
        ax.set_ylim(*ylim)
    ax.legend(fontsize=8, frameon=False, ncols=k, loc="lower center",
              bbox_to_anchor=(0.5, 1.0))
    return to_svg(fig, key)


def pareto(points: list[tuple[float, ...]]) -> list[bool]:
    """Which points no other point dominates: (metric higher is better, costs lower are
    better); a point with an unknown cost (None) competes on the others only."""
    out = []
    for i, a in enumerate(points):
        dominated = False
        for j, b in enumerate(points):
            if i == j:
                continue
            pairs = [(-a[0], -b[0])] + [(x, y) for x, y in zip(a[1:], b[1:])
                                        if x is not None and y is not None]
            if all(bv <= av for av, bv in pairs) and any(bv < av for av, bv in pairs):
                dominated = True
                break
        out.append(not dominated)
    return out


@styled
def variants(rows: list[dict], metric: str, key: str = "variants-pareto") -> str:
    """Metric vs flash and metric vs latency of every variant; Pareto points (best metric
    for their flash and latency) drawn as filled stars, the others as open circles."""
    front = pareto([(r["metric"], r.get("flash_bytes"), r.get("latency_ms")) for r in rows])
    fig = new_figure(7.5, 3.0)
    axes = fig.subplots(1, 2)
    for ax, cost, xlabel in ((axes[0], "flash_bytes", "flash (KB)"),
                             (axes[1], "latency_ms", "latency (ms)")):
        for r, best in zip(rows, front):
            x = r.get(cost)
            if x is None or r.get("metric") is None:
                continue
            x = x / 1024 if cost == "flash_bytes" else x
            if best:
                ax.scatter([x], [r["metric"]], marker="*", s=120, color=COLORS[1], zorder=3)
            else:
                ax.scatter([x], [r["metric"]], s=40, facecolors="none",
                           edgecolors=COLORS[0])
            ax.annotate(r["name"] + ("~" if r.get("estimated") else ""), (x, r["metric"]),
                        textcoords="offset points", xytext=(5, 4), fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(metric)
    axes[0].set_title("★ Pareto front, ○ dominated", fontsize=8)
    return to_svg(fig, key)


@styled
def layer_bars(names: list[str], series: list[tuple[str, Sequence[float], str]],
               key: str) -> str:
    """One horizontal bar panel per series (MACs, weight bytes, cycles, ...) over the layers."""
    fig = new_figure(7.5, 0.8 + 0.26 * max(len(names), 3))
    axes = fig.subplots(1, len(series), sharey=True, squeeze=False)[0]
    y = np.arange(len(names))
    for i, (ax, (title, vals, unit)) in enumerate(zip(axes, series)):
        v = np.array([np.nan if x is None else x for x in vals], float)
        ax.barh(y, v, color=_color(i), height=0.7)
        ax.set_title(title)
        ax.set_xlabel(unit)
        if i == 0:
            ax.set_yticks(y, names)
        else:
            ax.tick_params(labelleft=False)
    axes[0].invert_yaxis()
    return to_svg(fig, key)


@styled
def arena_map(buffers: list[dict], nodes: list[str], arena_bytes: int,
              key: str = "model-arena") -> str:
    """The memory map: x = node (step), y = arena offset; one rectangle per buffer from the
    step that writes it to the last step that reads it (inputs from step -1)."""
    n = len(nodes)
    fig = new_figure(7.5, 3.6)
    ax = fig.add_subplot()
    for i, b in enumerate(buffers):
        x0 = b["first"] - 0.4
        w = b["last"] - b["first"] + 0.8
        col = "#bbbbbb" if b["kind"] == "scratch" else _color(i)
        ax.add_patch(Rectangle(
            (x0, b["offset"]), w, b["size"], facecolor=col, edgecolor="black", lw=0.5,
            alpha=0.85, hatch="//" if b["kind"] == "scratch" else None))
        if b["size"] >= arena_bytes * 0.08:
            ax.text(x0 + w / 2, b["offset"] + b["size"] / 2, b["name"][:18], ha="center",
                    va="center", fontsize=7)
    ax.axhline(arena_bytes, color=COLORS[1], ls="--", lw=1)
    ax.text(n - 0.5, arena_bytes, f" arena {arena_bytes:,} B", va="bottom", ha="right",
            fontsize=8, color=COLORS[1])
    ax.set_xlim(-1.5, n - 0.5)
    ax.set_ylim(0, max(arena_bytes, 1) * 1.12)
    ax.set_xticks(range(-1, n), ["in"] + [f"n{i}" for i in range(n)],
                  rotation=90 if n > 16 else 0, fontsize=7 if n > 16 else 8)
    ax.set_xlabel("node (execution order)")
    ax.set_ylabel("arena offset (bytes)")
    return to_svg(fig, key)


@styled
def memory_vs_limits(boards: list[dict], key: str = "model-memory") -> str:
    """Flash and RAM of each board as stacked parts in percent of the board's limit."""
    fig = new_figure(7.5, 0.9 + 0.75 * len(boards))
    axes = fig.subplots(1, 2, sharey=True)
    names = [b["board"] for b in boards]
    y = np.arange(len(boards))
    for ax, what in ((axes[0], "flash"), (axes[1], "ram")):
        left = np.zeros(len(boards))
        parts = [p for b in boards for p, _ in b[what]["parts"]]
        for k, part in enumerate(dict.fromkeys(parts)):
            vals = np.array([dict(b[what]["parts"]).get(part, 0) / b[what]["limit"] * 100
                             for b in boards])
            ax.barh(y, vals, left=left, color=_color(k), label=part, height=0.6)
            left += vals
        for i, b in enumerate(boards):
            ax.text(left[i], i, f" {_kb(b[what]['used'])} of {_kb(b[what]['limit'])}",
                    va="center", fontsize=7)
        top = max(float(left.max(initial=0)), 1e-3)
        ax.set_xlim(0, top * 1.9 if top < 60 else max(top * 1.1, 105))
        if top * 1.9 >= 100 or top >= 60:
            ax.axvline(100, color="black", lw=1)
        ax.set_title(f"{what.upper() if what == 'ram' else what}: % of the board's")
        ax.set_xlabel("%")
        ax.set_yticks(y, names)
        ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(0.0, -0.25),
                  ncols=2)
    axes[0].invert_yaxis()
    return to_svg(fig, key)


@styled
def board_bars(boards: list[str], latency_ms: Sequence[Optional[float]],
               energy_uj: Sequence[Optional[float]], key: str = "boards-latency") -> str:
    """Latency and energy per decision, one bar per board (n/a: no bar, marked)."""
    fig = new_figure(7.5, 0.9 + 0.32 * max(len(boards), 2))
    axes = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(boards))
    for i, (ax, vals, title) in enumerate(((axes[0], latency_ms, "latency per decision (ms)"),
                                           (axes[1], energy_uj, "energy per decision (µJ)"))):
        v = np.array([np.nan if x is None else x for x in vals], float)
        ax.barh(y, np.nan_to_num(v), color=_color(i), height=0.65)
        for j, x in enumerate(v):
            ax.text(0 if np.isnan(x) else x, j, " n/a" if np.isnan(x) else f" {x:,.3g}",
                    va="center", fontsize=7)
        ax.set_title(title)
        top = np.nanmax(v) if np.isfinite(v).any() else 1.0
        ax.set_xlim(0, top * 1.25)
        if i == 0:
            ax.set_yticks(y, boards)
        else:
            ax.tick_params(labelleft=False)
    axes[0].invert_yaxis()
    return to_svg(fig, key)


@styled
def stream_timeline(truth: list[dict], detections: list[dict], duration_s: float,
                    key: str = "stream-timeline") -> str:
    """One row per label over the stream's time: the truth's clips as spans, the detections
    as marks (a detection outside every span of its label is a false accept or a repeat)."""
    labels = sorted({e["label"] for e in truth} | {d["label"] for d in detections})
    fig = new_figure(7.5, 0.9 + 0.3 * max(len(labels), 2))
    ax = fig.add_subplot()
    scale, unit = (60.0, "min") if duration_s > 120 else (1.0, "s")
    for i, lab in enumerate(labels):
        spans = [(e["start_s"] / scale, (e["end_s"] - e["start_s"]) / scale)
                 for e in truth if e["label"] == lab]
        if spans:
            ax.broken_barh(spans, (i - 0.35, 0.7), color="#cccccc")
        t = [d["t_s"] / scale for d in detections if d["label"] == lab]
        ax.plot(t, [i] * len(t), "|", ms=12, mew=1.6, color=_color(i))
    ax.set_yticks(range(len(labels)), labels)
    ax.set_ylim(-0.6, len(labels) - 0.4)
    ax.set_xlim(0, duration_s / scale)
    ax.set_xlabel(f"time ({unit}); grey: truth, |: detections")
    return to_svg(fig, key)


@styled
def verify_bars(agree: int, total: int, feat_diff: float, tolerance: float,
                key: str = "verify-agreement") -> str:
    """Device vs Python: predictions that agree, and the largest feature difference against
    its tolerance."""
    fig = new_figure(7.5, 1.6)
    axes = fig.subplots(1, 2)
    ax = axes[0]
    ax.barh([0], [agree], color=COLORS[2], label="equal")
    ax.barh([0], [total - agree], left=[agree], color=COLORS[1], label="differ")
    ax.set_yticks([])
    ax.set_xlim(0, max(total, 1))
    ax.set_title(f"predictions: {agree:,} of {total:,} equal")
    ax.legend(fontsize=7, frameon=False, ncols=2, loc="upper left", bbox_to_anchor=(0.0, -0.3))
    ax = axes[1]
    ax.barh([1, 0], [tolerance, feat_diff], color=["#bbbbbb", COLORS[0]])
    ax.set_yticks([1, 0], ["tolerance", "max |diff|"])
    ax.set_title("features: largest difference")
    return to_svg(fig, key)


@styled
def tune_front(rows: list[dict], defaults: Optional[dict] = None,
               key: str = "tune-front") -> str:
    """kiloml tune: validation accuracy (%) vs latency, RAM and flash of every trained trial;
    the Pareto front (``row["pareto"]``) as filled stars, trials over a limit (``fits``
    false) as crosses, the others as open circles, the project's defaults as a diamond."""
    fig = new_figure(9.0, 3.0)
    axes = fig.subplots(1, 3, sharey=True)
    done = [r for r in rows if r.get("accuracy") is not None]
    for ax, cost, xlabel in ((axes[0], "latency_ms", "latency (ms)"),
                             (axes[1], "ram_kb", "RAM (KB)"), (axes[2], "flash_kb", "flash (KB)")):
        for r in done:
            x, y = r[cost], 100 * r["accuracy"]
            if r.get("pareto"):
                ax.scatter([x], [y], marker="*", s=110, color=COLORS[1], zorder=3)
            elif not r.get("fits", True):
                ax.scatter([x], [y], marker="x", s=30, color=COLORS[3])
            else:
                ax.scatter([x], [y], s=30, facecolors="none", edgecolors=COLORS[0])
        if defaults and defaults.get("accuracy") is not None:
            ax.scatter([defaults[cost]], [100 * defaults["accuracy"]], marker="D", s=45,
                       color=COLORS[2], zorder=4)
        ax.set_xlabel(xlabel)
    axes[0].set_ylabel("validation accuracy, int8 (%)")
    axes[0].set_title("★ Pareto front, ○ dominated, × over a limit, ◆ defaults", fontsize=8,
                      loc="left")
    return to_svg(fig, key)


@styled
def stream_det(points: list[dict], chosen: Optional[int], target_fa_per_hour: float,
               key: str = "stream-det") -> str:
    """kiloml simulate --calibrate: miss rate (%) vs false accepts per hour of every setting
    tried (open circles), the DET curve (the lowest miss rate at each false-accept rate or
    below: a step line), the target (dashed) and the chosen setting (a filled star)."""
    fig = new_figure(7.5, 3.0)
    ax = fig.add_subplot()
    fa = np.array([p["fa_per_hour"] for p in points], float)
    miss = np.array([100.0 * (p["miss_rate"] or 0.0) for p in points], float)
    ax.scatter(fa, miss, s=26, facecolors="none", edgecolors=COLORS[0], zorder=2)
    order = np.lexsort((miss, fa))
    xs, ys, best = [], [], np.inf
    for i in order:
        if miss[i] < best:
            best = miss[i]
            xs.append(fa[i])
            ys.append(miss[i])
    if xs:
        ax.step(xs, ys, where="post", color=COLORS[0], lw=1.2, zorder=1)
    ax.axvline(target_fa_per_hour, color=COLORS[3], ls="--", lw=1)
    if chosen is not None:
        ax.scatter([fa[chosen]], [miss[chosen]], marker="*", s=160, color=COLORS[1], zorder=3)
    ax.set_xlabel("false accepts per hour (validation stream)")
    ax.set_ylabel("keywords missed (%)")
    ax.set_ylim(-3, 103)
    ax.set_xlim(left=-0.02 * max(fa.max(initial=1.0), target_fa_per_hour, 1.0))
    ax.set_title("○ settings tried, — DET curve, ★ chosen, -- target", fontsize=8, loc="left")
    return to_svg(fig, key)
