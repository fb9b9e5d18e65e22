"""One visual style for every diagram of the course, and the few shapes they are drawn from.

The shapes carry meaning, the same in every chapter:

- **tensor** (blue, rounded corners): numbers that flow through the model, with their shape;
- **operation** (orange, square corners): something that computes (a layer, softmax, a loss);
- **parameter** (green, rounded): learned weights;
- **data** (grey): text, tokens and ids, before they become tensors;
- **highlight** (yellow): the one thing a picture wants you to look at.

A canvas is measured in inches, so a drawing says where its boxes go in plain coordinates, with (0, 0) at the
bottom left. A notebook shows 1 inch as 100 CSS pixels (DISPLAY_DPI); the PNG holds twice as many pixels (DPI),
so the figures stay sharp on high-density screens.
"""

from __future__ import annotations

import io

import matplotlib
from matplotlib import patches
from matplotlib.figure import Figure
from PIL import Image, PngImagePlugin

from . import DPI  # defined by the package, so that showing a stored PNG needs no matplotlib
COLOURS = 24  # the palette: flat fills and anti-aliased text need few colours, and fewer keep 2x PNGs small
FONT = "DejaVu Sans"  # ships with matplotlib, so every machine draws the same glyphs
MONO = "DejaVu Sans Mono"

INK = "#222222"
MUTED = "#6b6b6b"
ACCENT = "#b8336a"  # for the one label a picture is about (e.g. "masked", "loss")
KINDS = {
    #            fill       edge       rounded
    "tensor": ("#dbe9f6", "#2f6ea5", True),
    "operation": ("#fde3c2", "#c7701a", False),
    "parameter": ("#d9efd9", "#3a8d4f", True),
    "data": ("#eeeeee", "#7a7a7a", False),
    "highlight": ("#fbe8a6", "#b8860b", False),
    "masked": ("#cfcfcf", "#9a9a9a", False),
    "plain": ("#ffffff", "#7a7a7a", False),
}


def canvas(width: float, height: float) -> tuple[Figure, matplotlib.axes.Axes]:
    """A blank drawing area `width` x `height` inches, no axes, coordinates in inches."""
    fig = Figure(figsize=(width, height), dpi=DPI)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_axis_off()
    return fig, ax


def box(ax, x, y, w, h, label="", kind="tensor", fontsize=11, shape=None, color=None, weight="normal", family=FONT):
    """A box of `kind` with its lower-left corner at (x, y), a centred label and, below it, a shape note.

    Returns the box's centre, so arrows can start and end there.
    """
    fill, edge, rounded = KINDS[kind]
    fill = color or fill
    style = "round,pad=0,rounding_size=0.08" if rounded else "square,pad=0"
    ax.add_patch(patches.FancyBboxPatch((x, y), w, h, boxstyle=style, facecolor=fill, edgecolor=edge, linewidth=1.3))
    centre = (x + w / 2, y + h / 2)
    if label:
        ax.text(*centre, label, ha="center", va="center", fontsize=fontsize, color=INK, family=family, weight=weight)
    if shape:
        ax.text(x + w / 2, y - 0.06, shape, ha="center", va="top", fontsize=max(10, fontsize - 2), color=MUTED, family=MONO)
    return centre


def tensor(ax, x, y, w, h, label="", **kwargs):
    return box(ax, x, y, w, h, label, kind="tensor", **kwargs)


def operation(ax, x, y, w, h, label="", **kwargs):
    return box(ax, x, y, w, h, label, kind="operation", **kwargs)


def parameter(ax, x, y, w, h, label="", **kwargs):
    return box(ax, x, y, w, h, label, kind="parameter", **kwargs)


def data(ax, x, y, w, h, label="", **kwargs):
    return box(ax, x, y, w, h, label, kind="data", **kwargs)


def arrow(ax, start, end, label=None, color=INK, label_side="right", fontsize=10, curve=0.0, style="-|>", linewidth=1.3):
    """An arrow from `start` to `end` (points in inches), with an optional label beside its middle."""
    ax.add_patch(
        patches.FancyArrowPatch(
            start, end, arrowstyle=style, mutation_scale=12, color=color, linewidth=linewidth,
            connectionstyle=f"arc3,rad={curve}", shrinkA=0, shrinkB=0,
        )
    )
    if label:
        mx, my = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
        dx = {"right": 0.08, "left": -0.08, "center": 0}[label_side]
        ha = {"right": "left", "left": "right", "center": "center"}[label_side]
        ax.text(mx + dx, my, label, ha=ha, va="center", fontsize=fontsize, color=MUTED, family=FONT)


def row(ax, x, y, labels, w=0.6, h=0.45, kind="data", kinds=None, fontsize=10, gap=0.0, family=FONT):
    """A row of equal cells left to right from (x, y); `kinds` may give each cell its own kind.

    Returns the centres of the cells.
    """
    centres = []
    for i, label in enumerate(labels):
        cell_kind = kinds[i] if kinds else kind
        centres.append(box(ax, x + i * (w + gap), y, w, h, str(label), kind=cell_kind, fontsize=fontsize, family=family))
    return centres


def grid(ax, x, y, cells, size=0.4, kinds=None, fontsize=10, family=FONT):
    """A matrix of cells with its top-left corner at (x, y); `cells[i][j]` is the label of row i, column j.

    `kinds[i][j]` (optional) picks each cell's kind. Returns the (x, y) of each row's centre-left and
    each column's centre-top, for labelling the axes.
    """
    for i, line in enumerate(cells):
        for j, label in enumerate(line):
            kind = kinds[i][j] if kinds else "plain"
            box(ax, x + j * size, y - (i + 1) * size, size, size, "" if label is None else str(label),
                kind=kind, fontsize=fontsize, family=family)
    rows = [(x, y - (i + 0.5) * size) for i in range(len(cells))]
    columns = [(x + (j + 0.5) * size, y) for j in range(len(cells[0]) if cells else 0)]
    return rows, columns


def text(ax, x, y, words, fontsize=10, color=INK, ha="center", va="center", weight="normal", style="normal", family=FONT):
    """Free text (titles, notes); `color=MUTED` for asides, `color=ACCENT` for the point of the picture."""
    ax.text(x, y, words, fontsize=fontsize, color=color, ha=ha, va=va, weight=weight, style=style, family=family)


def brace(ax, x0, x1, y, label="", fontsize=10, color=MUTED, below=True):
    """A square bracket under (or over) the span x0..x1 at height y, with a label: marks a group of cells."""
    tick = -0.08 if below else 0.08
    ax.plot([x0, x0, x1, x1], [y - tick, y, y, y - tick], color=color, linewidth=1.1)
    if label:
        ax.text((x0 + x1) / 2, y + (-0.08 if below else 0.08), label, ha="center", va="top" if below else "bottom",
                fontsize=fontsize, color=color, family=FONT)


def path_arrow(ax, points, color=INK, label=None, label_at=None, fontsize=10, linewidth=1.3, ha="left"):
    """An arrow along a polyline (for right-angled connections): plain segments, then an arrowhead on the last."""
    xs, ys = zip(*points)
    ax.plot(xs[:-1], ys[:-1], color=color, linewidth=linewidth, solid_capstyle="butt")
    arrow(ax, points[-2], points[-1], color=color, linewidth=linewidth)
    if label:
        ax.text(*label_at, label, ha=ha, va="center", fontsize=fontsize, color=MUTED, family=FONT)


def legend(ax, x, y, items, fontsize=10, size=0.2):
    """Small swatches left to right, each followed by what it means: items = [(kind, words), ...]."""
    for kind, words in items:
        box(ax, x, y, size, size, kind=kind)
        ax.text(x + size + 0.07, y + size / 2, words, ha="left", va="center", fontsize=fontsize, color=INK)
        x += size + 0.07 + 0.0075 * fontsize * len(words) + 0.3  # about one average character per 0.0075 in per pt


def to_png(fig: Figure) -> bytes:
    """The figure as a small, reproducible PNG: drawn at DPI, reduced to a COLOURS palette, no timestamps."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, facecolor="white", metadata={"Software": None})
    image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    image = image.quantize(colors=COLOURS, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", renderer_version())
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True, pnginfo=info, dpi=(DPI, DPI))
    return out.getvalue()


def renderer_version() -> str:
    """Which libraries drew a PNG: the same versions redraw it byte for byte."""
    import PIL

    return f"matplotlib {matplotlib.__version__}, Pillow {PIL.__version__}"
