"""Matplotlib figures -> inline SVG that is byte-identical from run to run.

Why each step: matplotlib's SVG backend names clip paths and images by a hash salted with a
random value unless ``svg.hashsalt`` is fixed, writes the date into ``<metadata>`` unless it is
``None``, and names every figure's elements from the same id space, so two figures in one page
could define the same id differently. Here the salt is fixed, the metadata block is dropped
and every id of figure ``key`` gets the prefix ``key-``. Text stays text (``svg.fonttype =
none``): the page names a generic sans-serif font, so nothing is fetched at view time.

Figures are built with ``matplotlib.figure.Figure`` and the SVG canvas directly: no pyplot,
no global backend switch, nothing left open.
"""

from __future__ import annotations

import functools
import io
import re

import matplotlib
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure

RC = {
    "svg.hashsalt": "kiloml-report",
    "svg.fonttype": "none",
    "svg.image_inline": True,
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
    "font.size": 9.0,
    "axes.titlesize": 10.0,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": matplotlib.cycler(color=[
        "#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377", "#bbbbbb",
        "#332288", "#117733", "#882255", "#44aa99", "#999933", "#cc6677", "#ddcc77"]),
    "figure.dpi": 72.0,
    "savefig.dpi": 72.0,
}
COLORS = RC["axes.prop_cycle"].by_key()["color"]

_ID = re.compile(r'\bid="([^"]+)"')
_REF = re.compile(r'(\bid="|url\(#|href="#)([^")]+)')


def styled(fn):
    """Decorator: draw under the report's rc parameters (matplotlib reads them when an
    artist is created, so the whole plotting function runs inside the context)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(RC):
            return fn(*args, **kwargs)

    return wrapper


def new_figure(width_in: float, height_in: float) -> Figure:
    """A figure to draw on (inches at 72 dpi: 10 in is 720 CSS pixels); call it inside a
    ``styled`` function."""
    return Figure(figsize=(width_in, height_in), layout="constrained")


def to_svg(fig: Figure, key: str) -> str:
    """The figure as an ``<svg>`` element with ids prefixed by ``key`` (a short, unique,
    fixed name such as ``confusion``), without XML prolog, doctype or metadata."""
    if not re.fullmatch(r"[a-z][a-z0-9-]*", key):
        raise ValueError(f"figure key {key!r}: use lowercase letters, digits and -")
    buf = io.StringIO()
    with matplotlib.rc_context(RC):
        FigureCanvasSVG(fig).print_svg(buf, metadata={"Date": None, "Creator": None,
                                                      "Format": None, "Type": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)
    ids = set(_ID.findall(text))
    text = _REF.sub(lambda m: m.group(1) + (f"{key}-" if m.group(2) in ids else "")
                    + m.group(2), text)
    text = re.sub(r'<svg ', f'<svg class="plot" data-plot="{key}" ', text, count=1)
    return text.strip()
