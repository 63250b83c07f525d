#!/usr/bin/env python3
"""``kiloml report``: how big the page is and how long it takes to make, per section.

Workload: an existing project (``--project DIR``, e.g. a keyword-spotting project after
``kiloml run``), or by default the small gesture project of the tests (two magic_wand gestures
of every person, 2 epochs) built in a temporary folder with ``kiloml run`` (its time is not
counted). Times are the best of ``--repeat`` runs of each phase: collecting the project's data
(kiloml.workflow.report.collect: data info, features, the int8 model on the test split,
compiling the model in memory) and drawing the page (kiloml.report.render_report). The issue's
targets: under 2 MB for the KWS project, under 30 s to generate; this script prints, it does
not assert.
Run: .venv/bin/python benchmarks/report.py [--project DIR] [--repeat N] [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def demo_project(tmp: Path) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from projhelp import kiloml, wand_project

    root = wand_project(tmp)
    r = kiloml("run", "-q", cwd=root)
    if r.returncode != 0:
        raise SystemExit(f"kiloml run failed: {r.stderr.strip().splitlines()[-1]}")
    return root


def best(fn, repeat: int):
    t_best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        t_best = min(t_best, time.perf_counter() - t)
    return t_best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", type=Path, help="a project after kiloml run (default: the "
                                                 "test gesture project, built now)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from kiloml.report import render_report
    from kiloml.workflow.project import load_project
    from kiloml.workflow.report import collect

    with tempfile.TemporaryDirectory(prefix="kiloml-bench-report-") as tmp:
        root = args.project or demo_project(Path(tmp))
        p = load_project(root)
        t_collect, data = best(lambda: collect(p), args.repeat)
        t_render, page = best(lambda: render_report(data), args.repeat)
    raw = page.encode()
    sizes = {m.group(1): len(m.group(0).encode()) for m in
             re.finditer(r'<section id="([a-z]+)".*?</section>', page, flags=re.S)}
    sizes["header, nav, CSS"] = len(raw) - sum(sizes.values())
    result = {"project": str(root), "bytes": len(raw), "sections": sizes,
              "plots": page.count('<svg class="plot"'), "collect_s": round(t_collect, 3),
              "render_s": round(t_render, 3), "total_s": round(t_collect + t_render, 3),
              "repeat": args.repeat, "machine": f"{platform.machine()}, "
              f"{platform.python_version()}",
              "chromium": subprocess.run(["sh", "-c", "chromium --version 2>/dev/null || "
                                          "echo none"], capture_output=True,
                                         text=True).stdout.strip()}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"kiloml report of {root} ({result['machine']}; best of {args.repeat})\n")
    print(f"{'section':<20}{'KB':>10}")
    for sid, n in sizes.items():
        print(f"{sid:<20}{n / 1024:>10.1f}")
    print(f"{'total':<20}{len(raw) / 1024:>10.1f}   ({result['plots']} plots; target < 2 MB "
          "for a KWS project)\n")
    print(f"{'phase':<20}{'seconds':>10}")
    print(f"{'collect':<20}{t_collect:>10.2f}")
    print(f"{'render':<20}{t_render:>10.2f}")
    print(f"{'total':<20}{t_collect + t_render:>10.2f}   (target < 30 s)")


if __name__ == "__main__":
    main()
