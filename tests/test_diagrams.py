"""The course's diagrams: drawn from their code, small, described in words, and shown where a notebook says.

A diagram lives in `shared/diagrams/` as drawing code plus the PNG drawn from it; a notebook shows it
with `show_diagram(name)`, and the PNG is stored as that cell's output (see the package docstring).
"""

import base64
import io
import re

import nbformat
import pytest
from PIL import Image, PngImagePlugin

from shared._export import ROOT, notebooks
from shared.diagrams import DISPLAY_DPI, DPI, all_diagrams, alt_index, show_diagram, stored_alt, stored_png
from shared._diagrams import PNG_DIR, alt_problems, problems, same_drawing
from shared.diagrams.primitives import box, text, to_png
from tests.test_notebooks import awaiting_rerun_marked

NOTEBOOKS = notebooks()
MAIN_CHAPTERS = [p for p in NOTEBOOKS if p.stem == p.parent.name]
SIZE_BUDGET = 3 * 1024 * 1024  # bytes, all PNGs together
MIN_PER_MAIN_CHAPTER = 8
SHOW = re.compile(r"""show_diagram\(\s*["']([\w-]+)["']\s*\)""")
MARKDOWN_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)")
def relative(path):
    return path.relative_to(ROOT).as_posix()


def test_every_png_is_drawn_from_the_current_code():
    assert problems() == []


def restamped(png, software):
    """The same pixels, as if drawn by other library versions."""
    image = Image.open(io.BytesIO(png))
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", software)
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def test_the_comparison_tells_a_changed_drawing_from_a_new_renderer():
    diagram = all_diagrams()["ch02_sliding_window"]
    drawn = diagram.render()
    fig = diagram.draw()
    text(fig.axes[0], 4.0, 2.0, "an added label", fontsize=12)
    relabelled = to_png(fig)
    box(fig.axes[0], 7.0, 2.0, 1.0, 0.8, "new", kind="operation")
    reboxed = to_png(fig)
    assert same_drawing(drawn, drawn)
    assert not same_drawing(drawn, relabelled)  # same renderer: any changed byte counts
    other = "matplotlib 0.0, Pillow 0.0"
    assert same_drawing(restamped(drawn, other), drawn)  # another renderer, the same pixels
    # Across renderers the check is coarse on purpose (anti-aliasing moves): a new box is caught...
    assert not same_drawing(restamped(reboxed, other), drawn)
    # ...a short added label is not, which is why the PNGs are compared byte for byte whenever they can be.
    assert same_drawing(restamped(relabelled, other), drawn)


def test_all_pngs_fit_the_size_budget():
    total = sum(p.stat().st_size for p in PNG_DIR.glob("*.png"))
    assert total < SIZE_BUDGET, f"the diagrams take {total / 1e6:.2f} MB; the budget is {SIZE_BUDGET / 1e6:.2f} MB"


@pytest.mark.parametrize("name", sorted(all_diagrams()))
def test_every_diagram_says_in_words_what_it_shows(name):
    alt = alt_index().get(name, "")
    assert len(alt.split()) >= 8, f"{name}: alt text {alt!r} (png/alt.json) is too short to stand in for the picture"


def test_the_alt_texts_describe_exactly_the_registered_diagrams():
    assert sorted(alt_index()) == sorted(all_diagrams())


def test_the_check_catches_a_missing_an_empty_and_a_stray_alt_text():
    names = ["a", "b", "c"]
    assert alt_problems(names, {"a": "one", "b": "two", "c": "three"}) == []
    assert alt_problems(names, {"a": "one", "b": "  ", "d": "four"}) == [
        "alt.json: b has no alt text", "alt.json: c has no alt text", "alt.json: d is no diagram's name",
    ]


def test_an_unknown_name_says_which_names_exist():
    with pytest.raises(KeyError, match="known diagrams: ch0"):
        stored_png("no_such_diagram")


def test_show_diagram_gives_the_png_its_alt_text():
    name = next(iter(all_diagrams()))
    data, metadata = show_diagram(name)._repr_mimebundle_()
    assert base64.b64decode(data["image/png"]) == stored_png(name)
    assert metadata["image/png"]["alt"] == stored_alt(name)
    assert stored_alt(name) in data["text/plain"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[relative(p) for p in NOTEBOOKS])
def test_every_figure_a_notebook_shows_resolves(path):
    nb = nbformat.read(path, as_version=4)
    diagrams = all_diagrams()
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for alt, source in MARKDOWN_IMAGE.findall(cell.source):
                assert alt.strip(), f"{relative(path)}: image {source} has no alt text"
                attached = source.startswith("attachment:") and source[len("attachment:"):] in cell.get("attachments", {})
                # A relative link breaks on Colab, where the notebook is opened without the repository.
                assert attached or source.startswith("https://"), f"{relative(path)}: image {source} does not resolve everywhere"
        elif cell.cell_type == "code":
            for name in SHOW.findall(cell.source):
                assert name in diagrams, f"{relative(path)} shows {name!r}, which is not a diagram"
                images = [o for o in cell.outputs if "image/png" in o.get("data", {})]
                assert images, f"{relative(path)}: the cell showing {name!r} has no stored picture; run the notebook"
                stored = images[0]
                assert base64.b64decode(stored.data["image/png"]) == stored_png(name), (
                    f"{relative(path)}: the stored picture of {name!r} is older than the PNG; re-run the notebook"
                )
                assert stored.metadata["image/png"]["alt"] == stored_alt(name)


@pytest.mark.parametrize(
    "path", awaiting_rerun_marked("test_every_main_chapter_shows_its_diagrams", MAIN_CHAPTERS),
    ids=[relative(p) for p in MAIN_CHAPTERS],
)
def test_every_main_chapter_shows_its_diagrams(path):
    code = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    shown = set(SHOW.findall(code))
    assert len(shown) >= MIN_PER_MAIN_CHAPTER, f"{relative(path)} shows {len(shown)} diagrams: {sorted(shown)}"


def test_stamp_refreshes_only_cells_that_ran_and_show_nothing_else(tmp_path):
    from shared._diagrams import stamp

    name = "ch02_sliding_window"
    stale = nbformat.v4.new_output("execute_result", data={"image/png": "c3RhbGU=", "text/plain": "old"},
                                   execution_count=3)
    ran = nbformat.v4.new_code_cell(f'show_diagram("{name}")', outputs=[stale], execution_count=3)
    never_ran = nbformat.v4.new_code_cell(f'show_diagram("{name}")')
    computes = nbformat.v4.new_code_cell(f'x = 1\nshow_diagram("{name}")', outputs=[stale], execution_count=4)
    imports_first = nbformat.v4.new_code_cell(f'from shared.diagrams import show_diagram\n\nshow_diagram("{name}")',
                                              outputs=[stale], execution_count=5)
    path = tmp_path / "demo.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[ran, never_ran, computes, imports_first]), path)

    assert stamp([path]) == [path]
    cells = nbformat.read(path, as_version=4).cells
    shown = cells[0].outputs[0]
    assert base64.b64decode(shown.data["image/png"]) == stored_png(name)
    assert shown.execution_count == 3
    shown_width = shown.metadata["image/png"]["width"]  # in CSS pixels: the PNG has DPI / DISPLAY_DPI times more
    assert shown_width * DPI / DISPLAY_DPI == pytest.approx(Image.open(io.BytesIO(stored_png(name))).width, abs=2)
    assert cells[1].outputs == []
    assert cells[2].outputs[0].data["text/plain"] == "old"
    assert base64.b64decode(cells[3].outputs[0].data["image/png"]) == stored_png(name)
    assert stamp([path]) == []  # already current: nothing rewritten


def test_showing_a_diagram_imports_no_drawing_code():
    # A notebook cell that shows a diagram needs its PNG and alt text, not matplotlib and seven drawing modules.
    import subprocess
    import sys

    code = ("import sys; from shared.diagrams import show_diagram; show_diagram('ch02_batch')._repr_mimebundle_(); "
            "print(sorted(m for m in sys.modules if m.startswith('shared.diagrams.') or m == 'matplotlib'))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
