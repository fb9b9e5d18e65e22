"""One visual style for every diagram of the course, and the only shapes and layouts they are drawn from.

The shapes carry meaning, the same in every chapter:

- **tensor** (blue, rounded corners): numbers that flow through the model, with their shape;
- **operation** (orange, square corners): something that computes (a layer, softmax, a loss, a "+" node);
- **parameter** (green, rounded): learned weights;
- **data** (grey): text, tokens and ids, before they become tensors;
- **highlight** (yellow): the one thing a picture wants you to look at;
- **masked** (dark grey): what is hidden or left out; **plain** (white): an ordinary cell.

A canvas is measured in inches, so a drawing says where its boxes go in plain coordinates, with (0, 0) at the
bottom left. A notebook shows 1 inch as 100 CSS pixels (DISPLAY_DPI); the PNG holds twice as many pixels (DPI),
so the figures stay sharp on high-density screens. Chapter modules compose these primitives; they define none.
"""

from __future__ import annotations

import functools
import io
import math

import matplotlib
from matplotlib import patches
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, PngImagePlugin

from . import DPI  # defined by the package, so that showing a stored PNG needs no matplotlib

COLOURS = 24  # the palette: flat fills and anti-aliased text need few colours, and fewer keep 2x PNGs small
FONT = "DejaVu Sans"  # ships with matplotlib, so every machine draws the same glyphs
MONO = "DejaVu Sans Mono"
MONO_ADVANCE = 0.602  # width of one monospaced character, in em

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
    # a second shade of tensor and parameter, for the part that belongs to a second head or group
    "tensor2": ("#b9d3ec", "#2f6ea5", True),
    "parameter2": ("#b3dcb6", "#3a8d4f", True),
}


def canvas(width: float, height: float):
    """A blank drawing area `width` x `height` inches, no axes, coordinates in inches."""
    fig = Figure(figsize=(width, height), dpi=DPI)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_axis_off()
    return fig, ax


# ---- words ----

def text(ax, x, y, words, fontsize=10, color=INK, ha="center", va="center", weight="normal", style="normal",
         family=FONT, rotation=0):
    """Free text; the four below are text in the four roles it plays in a diagram (each style may be overridden)."""
    ax.text(x, y, words, fontsize=fontsize, color=color, ha=ha, va=va, weight=weight, style=style, family=family,
            rotation=rotation)


title = functools.partial(text, ha="left", weight="bold")  # a heading
note = functools.partial(text, ha="left", color=MUTED)  # an aside
accent = functools.partial(text, ha="left", color=ACCENT)  # the point of the picture
mono = functools.partial(text, ha="left", color=MUTED, family=MONO)  # code, a shape or a formula


def subtitled(ax, x, y, words, below, gap=0.27, ha="left", under=None, va="center", **kwargs):
    """A bold heading and, `gap` lower, the words `below` it: an aside unless `under` names another role."""
    title(ax, x, y, words, ha=ha, **kwargs)
    (under or note)(ax, x, y - gap, below, ha=ha, va=va)


def mono_width(chars: int, fontsize: float = 10) -> float:
    """Width in inches of `chars` characters of the monospaced font."""
    return chars * MONO_ADVANCE * fontsize / 72


def fitted_widths(columns, pad=0.2, minimum=0.0):
    """One cell width per column of labels, wide enough for its longest label in the monospaced font."""
    return [max(mono_width(max(len(str(s)) for s in column)) + pad, minimum) for column in columns]


# ---- shapes ----

def box(ax, x, y, w, h, label="", kind="tensor", fontsize=10, shape=None, color=None, weight="normal", family=FONT,
        rounded=None, linewidth=1.3, hatch=None):
    """A box of `kind` with its lower-left corner at (x, y), a centred label and, below it, a shape note.

    Returns the box's centre, so arrows can start and end there.
    """
    fill, edge, kind_rounded = KINDS[kind]
    rounded = kind_rounded if rounded is None else rounded
    style = "round,pad=0,rounding_size=0.08" if rounded else "square,pad=0"
    ax.add_patch(patches.FancyBboxPatch((x, y), w, h, boxstyle=style, facecolor=color or fill, edgecolor=edge,
                                        linewidth=linewidth, hatch=hatch))
    centre = (x + w / 2, y + h / 2)
    if label != "":
        text(ax, *centre, label, fontsize=fontsize, weight=weight, family=family)
    if shape:
        mono(ax, x + w / 2, y - 0.06, shape, ha="center", va="top")
    return centre


# The four kinds the pictures name most often: a box with its kind already chosen.
tensor = functools.partial(box, kind="tensor")
operation = functools.partial(box, kind="operation")
parameter = functools.partial(box, kind="parameter")
data = functools.partial(box, kind="data")


def name_box(ax, x, y, w, h, name, detail, kind="parameter"):
    """A box naming one tensor: its name at the left, a detail (its shape) at the right, both monospaced."""
    box(ax, x, y, w, h, kind=kind)
    mono(ax, x + 0.1, y + h / 2, name, color=INK)
    mono(ax, x + w - 0.1, y + h / 2, detail, ha="right")
    return x + w, y + h / 2


def node(ax, x, y, symbol="+", r=0.17):
    """A round operation node centred at (x, y): "+" where a shortcut is added back, "×" for a product."""
    fill, edge, _ = KINDS["operation"]
    ax.add_patch(patches.Circle((x, y), r, facecolor=fill, edgecolor=edge, linewidth=1.3, zorder=3))
    ax.text(x, y, symbol, ha="center", va="center", fontsize=13, color=INK, family=FONT, zorder=4)
    return (x, y)


def bar(ax, x, y, length, height, kind="tensor", vertical=False):
    """A flat bar from (x, y), `length` long to the right (or up, when vertical): a value in a bar chart."""
    fill, edge, _ = KINDS[kind]
    w, h = (height, length) if vertical else (length, height)
    ax.add_patch(patches.Rectangle((x, y), max(w, 0.015), max(h, 0.015), facecolor=fill, edgecolor=edge,
                                   linewidth=1.0))


def dot(ax, x, y, color=INK, kind=None, size=6):
    """A round marker at (x, y), solid `color` or in the colours of `kind`: a point on a scale or a curve."""
    fill, edge, _ = KINDS[kind] if kind else (color, color, None)
    ax.plot([x], [y], marker="o", markersize=size, markerfacecolor=fill, markeredgecolor=edge, zorder=3)


def dial(ax, x, y, r, cos, sin):
    """A round dial at (x, y) whose hand points along (cos, sin): an angle at a glance."""
    ax.add_patch(patches.Circle((x, y), r, facecolor="white", edgecolor=MUTED, linewidth=1.0))
    line(ax, [(x, y), (x + 0.85 * r * cos, y + 0.85 * r * sin)], linewidth=1.6)


def bar_chart(ax, x, top, values, labels=(), scale=3.0, row_h=0.28, kind="tensor", digits=4, kinds=None):
    """Horizontal bars from x, one row per value from `top` down, each labelled before and valued after.

    A value of None is a removed entry: it shows "0  (removed)" instead of a bar. `kinds` colours each bar.
    """
    for i, value in enumerate(values):
        y = top - (i + 0.5) * row_h
        if i < len(labels):
            text(ax, x - 0.1, y, labels[i], ha="right")
        if value is None:
            note(ax, x + 0.02, y, "0  (removed)")
        else:
            bar(ax, x, y - row_h / 2 + 0.05, value * scale, row_h - 0.1, kind=kinds[i] if kinds else kind)
            text(ax, x + value * scale + 0.05, y, f"{value:.{digits}f}", ha="left")
    line(ax, [(x, top - len(values) * row_h), (x, top)], color=MUTED, linewidth=0.9)


def frame(ax, x, y, w, h, color=MUTED, style="--"):
    """A thin rounded outline that groups the shapes inside it."""
    ax.add_patch(patches.FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0,rounding_size=0.12", facecolor="none",
                                        edgecolor=color, linewidth=1.1, linestyle=style, zorder=0))


def stack(ax, x, y, w, h, kind="operation", depth=3, step=0.06, rows=1):
    """`depth` copies of a box, each a step behind the last: many of the same (blocks, a batch of sheets).

    `rows` > 1 splits the front box into rows (the positions of a sheet).
    """
    for k in reversed(range(depth)):
        box(ax, x + k * step, y + k * step, w, h, kind=kind, rounded=False, linewidth=1.0)
    for r in range(1, rows):
        line(ax, [(x, y + r * h / rows), (x + w, y + r * h / rows)], color=KINDS[kind][1], linewidth=0.7)


# ---- lines and arrows ----

def line(ax, points, color=INK, linewidth=1.3, style="-"):
    """A polyline without an arrow head."""
    xs, ys = zip(*points)
    ax.plot(xs, ys, color=color, linewidth=linewidth, linestyle=style, zorder=1, solid_capstyle="butt")


def arrow(ax, start, end, label=None, color=INK, label_side="right", curve=0.0, style="-|>", linewidth=1.3,
          linestyle="-"):
    """An arrow from `start` to `end` (points in inches), with an optional label beside its middle (right or left)."""
    ax.add_patch(patches.FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=12, color=color,
                                         linewidth=linewidth, linestyle=linestyle, shrinkA=0, shrinkB=0,
                                         connectionstyle=f"arc3,rad={curve}"))
    if label:
        mx, my = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
        left = label_side == "left"
        note(ax, mx - 0.08 if left else mx + 0.08, my, label, ha="right" if left else "left")


def path_arrow(ax, points, color=INK, linewidth=1.3):
    """An arrow along a polyline (for right-angled connections): plain segments, then an arrowhead on the last."""
    line(ax, points[:-1], color=color, linewidth=linewidth)
    arrow(ax, points[-2], points[-1], color=color, linewidth=linewidth)


def polar_arrow(ax, origin, angle, length, label="", color=MUTED, dashed=False, linewidth=1.6):
    """An arrow from `origin` at `angle` radians (a 2-D vector), its label just beyond its tip."""
    direction = (math.cos(angle), math.sin(angle))
    arrow(ax, origin, (origin[0] + length * direction[0], origin[1] + length * direction[1]), color=color,
          linewidth=linewidth, linestyle="--" if dashed else "-")
    text(ax, origin[0] + (length + 0.2) * direction[0], origin[1] + (length + 0.2) * direction[1], label, color=color)


def angle_arc(ax, centre, radius, start, end, label=""):
    """The arc from direction `start` to `end` (radians) around `centre`, its label just outside its middle."""
    ax.add_patch(patches.Arc(centre, 2 * radius, 2 * radius, theta1=math.degrees(start), theta2=math.degrees(end),
                             color=ACCENT, linewidth=1.6))
    middle = (start + end) / 2
    text(ax, centre[0] + (radius + 0.17) * math.cos(middle), centre[1] + (radius + 0.17) * math.sin(middle), label,
         fontsize=11, color=ACCENT)


def sketch_axes(ax, x0, y0, x1, y1, x_label, y_label):
    """The two arrows and labels of a schematic plot (a sketch of a shape, not data: no ticks)."""
    arrow(ax, (x0, y0), (x1, y0))
    arrow(ax, (x0, y0), (x0, y1))
    text(ax, (x0 + x1) / 2, y0 - 0.33, x_label)
    text(ax, x0 - 0.45, (y0 + y1) / 2, y_label)


def brace(ax, x0, x1, y, label="", below=True, color=MUTED):
    """A square bracket under (or over) the span x0..x1 at height y, with a label: marks a group of cells."""
    tick = -0.08 if below else 0.08
    line(ax, [(x0, y - tick), (x0, y), (x1, y), (x1, y - tick)], color=color, linewidth=1.1)
    if label:
        text(ax, (x0 + x1) / 2, y + tick, label, va="top" if below else "bottom", color=color)


def side_brace(ax, x, y0, y1, label="", color=MUTED):
    """A square bracket right of the span y0..y1 at x, opening towards the shapes it groups, label outside."""
    line(ax, [(x - 0.08, y0), (x, y0), (x, y1), (x - 0.08, y1)], color=color, linewidth=1.1)
    if label:
        text(ax, x + 0.12, (y0 + y1) / 2, label, ha="left", color=color)


# ---- layouts: positions computed from the data they show ----

def row(ax, x, y, labels, w=0.6, h=0.45, kind="data", kinds=None, gap=0.0, family=FONT, bold=(), name="",
        name_x=0.15, **kwargs):
    """A row of cells left to right from (x, y); `w` is one width or a list of widths, one per cell.

    `kinds` may give each cell its own kind; cells whose index is in `bold` get a bold label. A `name` is written
    in bold at `name_x`, level with the row. Returns the centres of the cells.
    """
    if name:
        title(ax, name_x, y + h / 2, name)
    widths = w if isinstance(w, (list, tuple)) else [w] * len(labels)
    centres, left = [], x
    for i, (label, width) in enumerate(zip(labels, widths)):
        centres.append(box(ax, left, y, width, h, str(label), kind=kinds[i] if kinds else kind, family=family,
                           weight="bold" if i in bold else "normal", **kwargs))
        left += width + gap
    return centres


def grid(ax, x, top, cells, w=0.4, h=None, kind="plain", kinds=None, family=MONO, row_labels=(), column_labels=(),
         **kwargs):
    """A matrix of square-cornered cells with its top-left corner at (x, top); `cells[i][j]` labels row i, column j.

    `kinds[i][j]` (optional) picks each cell's kind. Row labels go left of the rows, column labels above the
    columns, slanted (a word is wider than a cell). Returns the centre of every cell.
    """
    h = h or w
    centres = [row(ax, x, top - (i + 1) * h, labels, w=w, h=h, family=family, kind=kind,
                   kinds=kinds[i] if kinds else None, rounded=False, linewidth=1.0, **kwargs)
               for i, labels in enumerate(cells)]
    for i, label in enumerate(row_labels):
        text(ax, x - 0.06, top - (i + 0.5) * h, label, ha="right")
    for j, label in enumerate(column_labels):
        text(ax, x + (j + 0.5) * w - 0.1, top + 0.06, label, ha="left", va="bottom", rotation=45)
    return centres


def table(ax, x, top, rows, w=0.56, h=0.33, gap=0.05):
    """Rows of cells, the first at `top`, each a list of (label, kind) pairs; rows may differ in length."""
    for i, cells in enumerate(rows):
        labels, kinds = zip(*cells)
        row(ax, x, top - i * (h + gap), labels, w=w, h=h, kinds=kinds)


def chain(ax, x, top, items, w=2.0, h=0.42, gap=0.3, arrow_in=False, up=False, **kwargs):
    """Boxes stacked downwards from `top`, centred on x, each linked to the next by an arrow.

    items: (kind, label) pairs, or (kind, label, width) or (kind, label, width, height) for a box of its own
    size. With `arrow_in`, an arrow first comes down the gap above the first box. With `up`, everything runs
    upwards instead, from `top` as the bottom (a stack of layers, the input first). Returns the centre of each box.
    """
    step = 1 if up else -1
    centres, y = [], top + step * (gap if arrow_in else 0)
    if arrow_in:
        arrow(ax, (x, top), (x, y))
    for item in items:
        kind, label, width, height = (*item, *(w, h)[len(item) - 2:])
        if centres:
            arrow(ax, (x, y), (x, y + step * gap))
            y += step * gap
        centres.append(box(ax, x - width / 2, min(y, y + step * height), width, height, label, kind=kind, **kwargs))
        y += step * height
    return centres


def flow(ax, x, y, items, h=0.5, gap=0.35, **kwargs):
    """Boxes side by side from (x, y) to the right, each linked to the next by an arrow.

    items: (kind, label, width) triples, or (kind, label, width, shape) for a box with a shape note under it.
    Returns the centre of each box.
    """
    centres = []
    for kind, label, width, *shape in items:
        if centres:
            arrow(ax, (x - gap, y + h / 2), (x, y + h / 2))
        centres.append(box(ax, x, y, width, h, label, kind=kind, shape=shape[0] if shape else None, **kwargs))
        x += width + gap
    return centres


def legend(ax, x, y, items, size=0.2):
    """Small swatches left to right, each followed by what it means: items = [(kind, words), ...]."""
    for kind, words in items:
        box(ax, x, y, size, size, kind=kind)
        text(ax, x + size + 0.07, y + size / 2, words, ha="left")
        x += size + 0.07 + 0.075 * len(words) + 0.3  # about one average character per 0.075 in at 10 pt


def plot_area(fig, x, y, w, h):
    """Matplotlib axes at (x, y, w, h) inches on the canvas, styled quietly: for curves computed from code."""
    width, height = fig.get_size_inches()
    axes = fig.add_axes((x / width, y / height, w / width, h / height))
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        axes.spines[side].set_color(MUTED)
    axes.tick_params(colors=MUTED, labelsize=10)
    axes.grid(alpha=0.25, linewidth=0.6)
    return axes


# ---- output ----

def to_image(fig: Figure) -> Image.Image:
    """The figure drawn at DPI and reduced to the COLOURS palette: the pixels its PNG holds."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    image = Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba()).convert("RGB")
    return image.quantize(colors=COLOURS, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)


def to_png(fig: Figure) -> bytes:
    """The figure as a small, reproducible PNG: to_image's pixels, no timestamps, the renderer named."""
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", renderer_version())
    out = io.BytesIO()
    to_image(fig).save(out, format="PNG", optimize=True, pnginfo=info, dpi=(DPI, DPI))
    return out.getvalue()


def renderer_version() -> str:
    """Which libraries drew a PNG: the same versions redraw it byte for byte."""
    import PIL

    return f"matplotlib {matplotlib.__version__}, Pillow {PIL.__version__}"
