"""Diagrams drawn for the course (hand-written, not generated from a notebook).

Each diagram is a small Python function in this package (one module per chapter, all in the
style of `primitives.py`) that draws onto a blank canvas. The maintainers' tool `python -m shared._diagrams`
(left out of the wheel) draws them all into `png/`, which ships with the package; a notebook shows one with

    show_diagram("ch02_sliding_window")

The PNG is stored in the notebook as that cell's output, so the picture reads on GitHub, in
JupyterLab and on Colab before anything runs, and running the cell on Colab finds the PNG in
the installed package. Every diagram has alt text: it is the image's `alt` and also the text a
text-only viewer shows in its place. The alt texts are prose, not drawing code, so they live in
`png/alt.json` ({name: alt text}, sorted by name), which is edited by hand; `python -m shared._diagrams
--check` fails when a diagram has none, or when the file describes a diagram that does not exist.
"""

from __future__ import annotations

import base64
import functools
import importlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

DPI = 200  # pixels per inch in the PNGs
DISPLAY_DPI = 100  # CSS pixels per inch on screen: show_diagram gives each picture this size, sharp on 2x screens
CHAPTER_MODULES = ("intro", "ch02", "ch03", "ch04", "ch05", "ch06", "ch07")


@dataclass(frozen=True)
class Diagram:
    draw: Callable  # () -> matplotlib Figure

    def render(self) -> bytes:
        from .primitives import to_png

        return to_png(self.draw())

    def image(self):
        """The drawing's pixels, as its PNG holds them but not encoded (quicker to compare with a stored PNG)."""
        from .primitives import to_image

        return to_image(self.draw())


REGISTRY: dict[str, Diagram] = {}


def diagram(name: str, size: tuple[float, float] | None = None):
    """Register a drawing function under `name` (its alt text is the entry `name` of png/alt.json).

    With `size` (width, height in inches) the function draws on a blank canvas of that size: `draw(ax)`.
    Without it, the function makes its own canvas (its size depends on what it shows) and returns the figure.
    """
    def register(draw):
        if name in REGISTRY:
            raise ValueError(f"two diagrams are called {name!r}")
        make = draw if size is None else functools.partial(_on_canvas, draw, size)
        REGISTRY[name] = Diagram(make)
        return draw

    return register


def _on_canvas(draw, size):
    from .primitives import canvas

    fig, ax = canvas(*size)
    draw(ax)
    return fig


def all_diagrams() -> dict[str, Diagram]:
    """Every diagram of the course, by name (imports each chapter's drawing module once)."""
    for module in CHAPTER_MODULES:
        importlib.import_module(f"{__name__}.{module}")
    return dict(sorted(REGISTRY.items()))


def stored_png(name: str) -> bytes:
    """The PNG drawn for `name`, as shipped in the package."""
    path = resources.files(__name__).joinpath("png", f"{name}.png")
    if not path.is_file():
        known = ", ".join(all_diagrams()) or "none"
        raise KeyError(f"no diagram called {name!r}; known diagrams: {known}")
    return path.read_bytes()


class DiagramImage:
    """What a notebook cell shows: the PNG with its alt text (and the alt text alone for text viewers)."""

    def __init__(self, name: str, png: bytes, alt: str):
        self.name, self.png, self.alt = name, png, alt

    def display_size(self) -> tuple[int, int]:
        """(width, height) in CSS pixels: the PNG holds DPI / DISPLAY_DPI times more, for high-density screens."""
        from PIL import Image

        width, height = Image.open(io.BytesIO(self.png)).size
        return round(width * DISPLAY_DPI / DPI), round(height * DISPLAY_DPI / DPI)

    def _repr_mimebundle_(self, include=None, exclude=None):
        data = {"image/png": base64.b64encode(self.png).decode("ascii"), "text/plain": f"[diagram: {self.alt}]"}
        width, height = self.display_size()
        return data, {"image/png": {"alt": self.alt, "width": width, "height": height}}


ALT_INDEX = "alt.json"  # {name: alt text} beside the PNGs, edited by hand: the one place the alt texts live


@functools.cache
def alt_index() -> dict[str, str]:
    """Every diagram's alt text by name, as shipped with the PNGs (read once; imports no drawing code)."""
    return json.loads(resources.files(__name__).joinpath("png", ALT_INDEX).read_text(encoding="utf-8"))


def stored_alt(name: str) -> str:
    """The alt text of `name`."""
    return alt_index()[name]


def show_diagram(name: str) -> DiagramImage:
    """The course diagram called `name`, ready to display as a cell's result."""
    return DiagramImage(name, stored_png(name), stored_alt(name))
