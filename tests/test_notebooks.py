"""What every committed notebook must satisfy, beyond nbval re-running it.

Stored outputs must come from one real top-to-bottom run, in the standard kernel, with
normalised metadata and nothing that only makes sense on the machine that ran it.
"""

import re

import nbformat
import pytest

from shared._export import ROOT, notebooks
from shared._run import ALLOWED_CELL_METADATA, normalized_metadata

NOTEBOOKS = notebooks()
NBVAL_TAGS = {"nbval-ignore-output", "nbval-skip"}
# What a reader without a kernel (GitHub, Colab before running) would see instead of a widget.
WIDGET_REPR = re.compile(r"^\s*(VBox|HBox|Box|GridBox|Tab|Accordion|interactive|Output|Dropdown|Text|Image|Checkbox)\(")
UNFINISHED_BAR = re.compile(r"(^|: ?)\s*0%\|")
# Notebooks still waiting for their full-size re-run (python -m shared._run), each with what it breaks
# meanwhile. Strict expected failures: once a notebook is re-run its tests pass, the xfail fails, and the
# entry must go. Keep this empty whenever the run time allows.
AWAITING_RERUN = {
    # test name -> {notebook: why}: a notebook whose change waits for its full-size run. Every entry is a
    # strict xfail, so it has to leave this table as soon as the run lands.
}
MACHINE_PATHS = re.compile(r"(/root/|/home/\w|/Users/\w|[A-Z]:\\\\|ipykernel_\d|/tmp/|/work/|site-packages)")


def load(path):
    return nbformat.read(path, as_version=4)


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def ids(paths):
    return [p.relative_to(ROOT).as_posix() for p in paths]


def awaiting_rerun_marked(test_name, paths):
    marked = []
    for path in paths:
        reason = AWAITING_RERUN.get(test_name, {}).get(path.relative_to(ROOT).as_posix())
        marked.append(pytest.param(path, marks=pytest.mark.xfail(strict=True, reason=reason)) if reason else path)
    return marked


CHAPTER_FOLDERS = {"ch02_text_data", "ch03_attention", "ch04_gpt_model", "ch05_pretraining", "ch06_classification_ft",
                   "ch07_instruction_ft"}


def test_every_chapter_notebook_is_found():
    # The suite parametrizes over NOTEBOOKS: a glob that missed a folder would silently test less.
    assert {p.parent.name for p in NOTEBOOKS} == CHAPTER_FOLDERS


@pytest.mark.parametrize("path", awaiting_rerun_marked("test_ran_top_to_bottom", NOTEBOOKS), ids=ids(NOTEBOOKS))
def test_ran_top_to_bottom(path):
    counts = [c.execution_count for c in code_cells(load(path))]
    assert counts == list(range(1, len(counts) + 1)), (
        f"execution counts {counts} are not 1..N: run `python -m shared._run {path.relative_to(ROOT)}`"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_metadata_is_normalised(path):
    nb = load(path)
    assert nb.metadata == normalized_metadata(path)
    for cell in nb.cells:
        assert set(cell.metadata) <= set(ALLOWED_CELL_METADATA), f"cell {cell.get('id')} has metadata {dict(cell.metadata)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_run_all_never_stops_at_an_error(path):
    """JupyterLab's and Colab's Run All stop at the first cell that raises, whatever its nbval markers."""
    for cell in code_cells(load(path)):
        assert "NBVAL_RAISES_EXCEPTION" not in cell.source and "raises-exception" not in cell.metadata.get("tags", []), (
            "a cell that raises stops Run All: demonstrate the error with `with expect_error(...)` "
            f"from shared.notebook instead, in cell:\n{cell.source[:200]}"
        )
        for output in cell.outputs:
            assert output.output_type != "error", f"{output.get('ename')} stored in cell:\n{cell.source[:200]}"


@pytest.mark.parametrize("path", awaiting_rerun_marked("test_stored_widgets_read_right_without_a_kernel", NOTEBOOKS), ids=ids(NOTEBOOKS))
def test_stored_widgets_read_right_without_a_kernel(path):
    """`python -m shared._run` stores widgets as static copies of their final state (shared/_widget_snapshot.py)."""
    for cell in code_cells(load(path)):
        for output in cell.outputs:
            data = output.get("data", {})
            plain = "".join(data.get("text/plain", ""))
            assert "application/vnd.jupyter.widget-view+json" not in data, (
                f"a widget stored as a bare view (a reader without a kernel sees nothing) in cell:\n{cell.source[:200]}"
            )
            assert not WIDGET_REPR.match(plain), f"a widget stored as its repr ({plain[:60]}...) in cell:\n{cell.source[:200]}"
            assert not UNFINISHED_BAR.search(plain), f"a progress bar stored at 0% ({plain[:60]}) in cell:\n{cell.source[:200]}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_no_machine_paths(path):
    for cell in code_cells(load(path)):
        for output in cell.outputs:
            text = output.get("text", "") + str(output.get("data", {}).get("text/plain", ""))
            found = MACHINE_PATHS.search(text)
            assert not found, f"output names a path of the machine that ran it ({found.group(0)}):\n{text[:300]}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_every_opt_out_says_why_in_the_cells_metadata(path):
    """nbval's markers live in cell metadata (tags), with the reason beside them: the code is the learner's."""
    for cell in code_cells(load(path)):
        assert "NBVAL" not in cell.source and "# why:" not in cell.source, (
            f"a test-harness marker in the code; put it in the cell's metadata instead:\n{cell.source[:200]}")
        opted_out = NBVAL_TAGS & set(cell.metadata.get("tags", []))
        if opted_out:
            assert len(cell.metadata.get("why", "")) > 10, f"{sorted(opted_out)} without a 'why' in cell:\n{cell.source[:200]}"
        else:
            assert "why" not in cell.metadata, f"a 'why' but no nbval tag in cell:\n{cell.source[:200]}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_opens_with_title_and_ends_with_summary_and_exercises(path):
    nb = load(path)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), "first cell: '# Title'"
    headings = [line for c in nb.cells if c.cell_type == "markdown" for line in c.source.splitlines() if line.startswith("#")]
    if "solutions" not in path.stem:
        assert any("Summary" in h for h in headings), "a lecture notebook closes with a Summary section"
        assert any("Exercises" in h for h in headings), "a lecture notebook closes with Exercises"


@pytest.mark.parametrize("chapter", sorted({p.parent for p in NOTEBOOKS}), ids=lambda p: p.name)
def test_each_chapter_has_an_exercise_solutions_notebook(chapter):
    assert list(chapter.glob("*solutions*.ipynb")), f"{chapter.name} needs an exercise-solutions notebook"


MAX_LECTURE_WORDS = 5000  # one sitting: a notebook longer than this is split into parts or companions
SOLUTIONS = re.compile(r"solutions$")
LECTURES = [p for p in NOTEBOOKS if not SOLUTIONS.search(p.stem)]  # lectures and companions


def markdown_words(nb):
    return sum(len(cell.source.split()) for cell in nb.cells if cell.cell_type == "markdown")


@pytest.mark.parametrize("path", LECTURES, ids=ids(LECTURES))
def test_a_lecture_fits_one_sitting(path):
    words = markdown_words(load(path))
    assert words <= MAX_LECTURE_WORDS, f"{words:,} markdown words; split it into parts or move a topic to a companion"


def test_the_word_count_reads_markdown_only():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Title\n\nthree more words"),
                                         nbformat.v4.new_code_cell("x = 'not counted at all'")])
    assert markdown_words(nb) == 5


def test_the_readme_links_every_notebook():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [p.relative_to(ROOT).as_posix() for p in NOTEBOOKS if p.relative_to(ROOT).as_posix() not in readme]
    assert not missing, f"README.md does not link {missing}"


def test_the_course_map_lists_every_lecture_and_companion():
    course_map = "\n".join(c.source for c in load(ROOT / "ch02_text_data" / "ch01_big_picture.ipynb").cells
                           if c.cell_type == "markdown" and "| stage | notebook |" in c.source)
    assert course_map, "the big-picture notebook has no course-map table"
    rows = [line for line in course_map.splitlines() if line.startswith("|") and "`ch0" in line]
    for folder in sorted({p.parent.name for p in LECTURES}):
        listed = sum(f"`{folder}/`" in row for row in rows)
        expected = sum(p.parent.name == folder for p in LECTURES)
        assert listed == expected, f"the course map has {listed} rows for {folder}/, which holds {expected} notebooks"
