"""Execute notebooks top to bottom and store their outputs, the way the repository keeps them.

    python -m shared._run ch02_text_data/ch02_text_data.ipynb [more.ipynb ...]

Outputs stored in git must come from a real run at the sizes the chapter teaches, so this
refuses to run with COURSE_FAST=1 unless --fast is given (for a quick local try only; never
commit those outputs). Each notebook runs in a fresh kernel with its folder as the working
directory, execution counts come out 1..N, and metadata is normalised so that reruns on
the same machine give byte-identical files. The wall time of each notebook is printed:
it is the number that goes into tests/RUN_TIMES.md.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from shared._export import GPU_CHAPTERS, ROOT, serialize
from shared._widget_snapshot import freeze_widgets

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
LANGUAGE_INFO = {"name": "python", "pygments_lexer": "ipython3"}
ALLOWED_CELL_METADATA = ("tags", "why")  # nbval's tags, and why a cell opts out of nbval's comparison


def normalized_metadata(path: Path) -> dict:
    """Notebook-level metadata every committed notebook must have exactly."""
    metadata = {"kernelspec": dict(KERNELSPEC), "language_info": dict(LANGUAGE_INFO)}
    chapter = path.resolve().relative_to(ROOT).parts[0]
    if chapter.startswith(GPU_CHAPTERS):
        # Makes "Open in Colab" start a GPU runtime for the chapters that train.
        metadata["accelerator"] = "GPU"
        metadata["colab"] = {"gpuType": "T4", "provenance": []}
    return metadata


def normalize(nb: nbformat.NotebookNode, path: Path) -> None:
    nb.metadata = nbformat.from_dict(normalized_metadata(path))
    for cell in nb.cells:
        cell.metadata = nbformat.from_dict({k: v for k, v in cell.metadata.items() if k in ALLOWED_CELL_METADATA})


def run(path: Path, timeout: int) -> float:
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        record_timing=False,
        # The widgets' final state is what freeze_widgets() turns into static outputs (a finished
        # progress bar, the explorer's last picture); normalize() then drops the state itself.
        store_widget_state=True,
        allow_errors=True,  # run to the end, then report the first error below with its cell
        coalesce_streams=True,  # one stdout block per cell, however the kernel happened to flush it
    )
    start = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - start
    for cell in nb.cells:
        failed = [o for o in cell.get("outputs", []) if o.output_type == "error"]
        if failed:  # Run All in JupyterLab or Colab would stop here: demonstrate errors with expect_error()
            raise RuntimeError(f"{path}: {failed[0].ename}: {failed[0].evalue}\nin cell:\n{cell.source[:500]}\n(nothing was written)")
    freeze_widgets(nb)
    normalize(nb, path)
    path.write_text(serialize(nb), encoding="utf-8")
    return elapsed


def main(argv: list[str] | None = None) -> None:
    """Run each notebook named on the command line; the first that fails raises, and so exits non-zero."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--fast", action="store_true", help="allow COURSE_FAST=1 (outputs not fit to commit)")
    parser.add_argument("--timeout", type=int, default=7200, help="seconds one cell may take")
    args = parser.parse_args(argv)
    if os.environ.get("COURSE_FAST", "0") not in {"0", ""} and not args.fast:
        parser.error("COURSE_FAST is set: stored outputs must come from a full-size run (pass --fast to try anyway)")
    os.environ.pop("MPLBACKEND", None)  # with Agg forced, figure cells lose the text nbval compares
    for path in args.notebooks:
        elapsed = run(path, args.timeout)
        print(f"{path}: ran top to bottom in {elapsed:.0f} s")


if __name__ == "__main__":
    main()
