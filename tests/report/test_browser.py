"""The report of a small real project (tests/projhelp.py wand_project after ``kiloml run``)
in headless Chromium with the network off: it loads with no console error and no failed or
external request, every section has a drawn plot, the confusion matrix on the page is the one
``kiloml test --json`` prints, and a full-page screenshot is kept (path printed).

Chromium missing is a failure with the fix in the message (``make toolchain`` installs it),
never a skip."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from browserhelp import chromium, load_page
from projhelp import SHARED, edit, kiloml, ran_wand_project

pytestmark = pytest.mark.slow

SECTIONS_JS = """[...document.querySelectorAll('main > section')].map(s => {
  const svgs = [...s.querySelectorAll('svg.plot')];
  return {id: s.id, plots: svgs.length,
          drawn: svgs.filter(v => { const r = v.getBoundingClientRect();
                                    return r.width > 50 && r.height > 30; }).length,
          marks: svgs.map(v => v.querySelectorAll('path, use, rect, image').length)};
})"""
CONFUSION_JS = """[...document.querySelectorAll('table.confusion tbody tr')].map(
  r => [...r.querySelectorAll('td.n')].map(c => Number(c.textContent.replace(/,/g, ''))))"""
VARIANT_ROWS_JS = """[...document.querySelectorAll('#variants table tbody tr')].map(
  r => [...r.querySelectorAll('td, th')].map(c => c.textContent.trim()))"""
FEATURE_IMAGES_JS = "document.querySelectorAll('#features svg.plot image').length"
LABELS_JS = """[...document.querySelectorAll('table.confusion thead th')].slice(1).map(
  h => h.textContent)"""


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, Path]:
    chromium()  # fail first, clearly, when the browser is missing
    root, steps = ran_wand_project(tmp_path_factory.mktemp("browser"))
    last = steps[-1]
    assert (last["name"], last["status"]) == ("report", "ran")
    return root, root / "build" / "report.html"


def test_report_loads_offline_with_every_plot_drawn(report, tmp_path_factory, capsys):
    root, html = report
    shot = tmp_path_factory.mktemp("artifacts") / "report.png"
    page = load_page(html, {"sections": SECTIONS_JS, "confusion": CONFUSION_JS,
                            "labels": LABELS_JS, "title": "document.title"}, screenshot=shot)
    assert page.errors == []
    assert page.requests and all(u.startswith(("file:", "data:")) for u in page.requests), \
        page.requests
    sections = {s["id"]: s for s in page.values["sections"]}
    assert list(sections) == ["data", "features", "training", "accuracy", "model", "boards",
                              "verify"]
    for sid, s in sections.items():
        assert s["plots"] >= 1 and s["drawn"] == s["plots"], s
        assert all(m > 5 for m in s["marks"]), s      # axes and data, not an empty frame
    assert sections["model"]["plots"] >= 3            # layers, cycles, arena map, memory
    assert page.values["title"].startswith("p · kiloml report")
    # the numbers on the page are kiloml test's
    t = kiloml("test", "--json", cwd=root)
    assert t.returncode == 0, t.stderr
    test = json.loads(t.stdout)
    assert page.values["labels"] == test["labels"]
    assert page.values["confusion"] == test["confusion"]
    assert shot.stat().st_size > 50_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with capsys.disabled():
        print(f"\nreport screenshot: {shot}")


def test_the_browser_check_catches_a_page_that_reaches_out(report, tmp_path):
    """The same check on a copy of the report with one external image and one script error
    must fail: the harness is not blind."""
    _, html = report
    bad = tmp_path / "bad.html"
    text = html.read_text()
    bad.write_text(text.replace("<main>", '<main><img src="https://cdn.example.com/x.png">'
                                          "<script>nosuch()</script>", 1))
    page = load_page(bad, {})
    assert any("cdn.example.com" in e for e in page.errors), page.errors
    assert any(e.startswith("exception") for e in page.errors), page.errors
    assert any(not u.startswith(("file:", "data:")) for u in page.requests)
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.fixture(scope="module")
def kws_report(tmp_path_factory) -> Path:
    """A tiny KWS project (3 words, 1 epoch) with ``[optimize] variants``: the audio examples
    (waveform + MFCC image) and the variants section, which the wand project has not."""
    chromium()
    base = tmp_path_factory.mktemp("kwsreport")
    for lab in ("yes", "no", "up"):
        (base / "sc" / lab).mkdir(parents=True)
        for f in sorted((SHARED / "data" / "speech_commands" / lab).glob("*.wav"))[:20]:
            shutil.copy(f, base / "sc" / lab / f.name)
    root = base / "p"
    assert kiloml("init", root, "--task", "kws").returncode == 0
    cfg = root / "kiloml.toml"
    edit(cfg, "[source]\n", '[source]\npath = "../sc"\n')
    edit(cfg, "[train]\n", "[train]\nepochs = 1\n")
    edit(cfg, "variants = []", 'variants = ["ptq", "pruned"]')
    edit(cfg, 'formats = ["c", "arduino"]', "formats = []")
    r = kiloml("run", "-q", "--json", cwd=root)
    assert r.returncode == 0, r.stderr
    steps = {s["name"]: s["status"] for s in json.loads(r.stdout)["steps"]}
    assert steps["optimize"] == "ran" and steps["report"] == "ran", steps
    return root / "build" / "report.html"


def test_kws_report_shows_mfcc_images_and_the_variants_front(kws_report):
    page = load_page(kws_report, {"sections": SECTIONS_JS, "variants": VARIANT_ROWS_JS,
                                  "images": FEATURE_IMAGES_JS})
    assert page.errors == []
    sections = {s["id"]: s for s in page.values["sections"]}
    assert {"data", "features", "training", "accuracy", "variants", "model", "boards"} <= \
        set(sections), list(sections)
    assert "verify" not in sections                    # nothing deployed, no verify section
    for sid, s in sections.items():
        assert s["plots"] >= 1 and s["drawn"] == s["plots"], s
    # one MFCC image per word under its waveform
    assert page.values["images"] >= 3, page.values["images"]
    # the variants table lists what [optimize] asked for, and the front plot marks them
    names = [row[0] for row in page.values["variants"]]
    assert {"ptq", "pruned"} <= set(names), names
    assert min(sections["variants"]["marks"]) > 5


def test_streaming_section_draws_the_det_curve_and_the_duty_table(tmp_path):
    """The streaming section with a simulation (timeline, duty cycle) and a calibration (DET
    curve), from test_render's hand-made data: both plots drawn in the browser, the duty
    table's battery days on the page, no console error."""
    from kiloml.report import render_report
    from test_render import _data, _streaming_data

    chromium()
    html = tmp_path / "streaming.html"
    html.write_text(render_report(_data(**_streaming_data())))
    page = load_page(html, {"sections": SECTIONS_JS, "plots": """[...document.querySelectorAll(
        '#streaming svg.plot')].map(v => v.dataset.plot)""", "cells": """[...document
        .querySelectorAll('#streaming table td')].map(c => c.textContent.trim())"""})
    assert page.errors == []
    s = {x["id"]: x for x in page.values["sections"]}["streaming"]
    assert s["plots"] == 2 and s["drawn"] == 2 and all(m > 5 for m in s["marks"]), s
    assert page.values["plots"] == ["stream-timeline", "stream-det"]
    assert "188.5" in page.values["cells"] and "34.6" in page.values["cells"]
