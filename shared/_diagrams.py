"""Maintainers' tool: draw every course diagram into shared/diagrams/png/, or check that the stored PNGs are current.

    python -m shared._diagrams            # redraw all (or: python -m shared._diagrams NAME ...)
    python -m shared._diagrams --check    # exit 1 if a PNG is missing, stale or left over
    python -m shared._diagrams --stamp    # refresh the pictures stored in the notebooks' show_diagram cells

A cell whose whole source is `show_diagram("name")` (after, at most, its import) has one possible output, the
PNG itself, so --stamp writes that output in place instead of asking for the whole notebook to be re-run after
a diagram is redrawn. Cells that compute anything else keep the outputs of their last real run.

The alt texts are not drawn: they are written by hand in png/alt.json, which --check checks against the
registered diagrams (one non-empty text for each, none for a diagram that does not exist).
"""

from __future__ import annotations

import argparse
import io
import re
from pathlib import Path

import numpy as np
from PIL import Image

from shared.diagrams import ALT_INDEX, alt_index, all_diagrams, show_diagram
from shared.diagrams.primitives import renderer_version

PNG_DIR = Path(__file__).resolve().parent / "diagrams" / "png"
# Between library versions anti-aliasing shifts a little; a changed drawing changes far more.
MAX_CHANGED_FRACTION = 0.002


def pixels(drawing):
    """A PNG's bytes, or an image not yet encoded, as an RGB array of 0..255 (to compare two drawings)."""
    image = Image.open(io.BytesIO(drawing)) if isinstance(drawing, bytes) else drawing
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def same_drawing(stored: bytes, drawn) -> bool:
    """Exactly the same when drawn by the same library versions; otherwise the same picture, within a tolerance.

    `drawn` is PNG bytes, or the image Diagram.image gives: the same pixels, not yet encoded. With the same
    renderer its PNG would be these pixels encoded the same way, so equal pixels mean equal bytes.
    """
    if stored == drawn:
        return True
    old, new = pixels(stored), pixels(drawn)
    if old.shape != new.shape:
        return False
    if renderer_version().encode() in stored:
        return not isinstance(drawn, bytes) and bool((old == new).all())  # different bytes: the drawing changed
    changed = (abs(old - new).max(axis=2) > 64).mean()
    return changed <= MAX_CHANGED_FRACTION


def problems() -> list[str]:
    found = []
    diagrams = all_diagrams()
    for name, diagram in diagrams.items():
        path = PNG_DIR / f"{name}.png"
        if not path.is_file():
            found.append(f"{name}: no PNG drawn")
        elif not same_drawing(path.read_bytes(), diagram.image()):
            found.append(f"{name}: the PNG is older than its drawing code")
    found += [f"{path.name}: no diagram of that name is left" for path in sorted(PNG_DIR.glob("*.png"))
              if path.stem not in diagrams]
    if not (PNG_DIR / ALT_INDEX).is_file():
        return [*found, f"{ALT_INDEX}: missing; it holds every diagram's alt text"]
    return found + alt_problems(diagrams, alt_index())


def alt_problems(names, alts: dict) -> list[str]:
    """What is wrong with the alt texts `alts`: a diagram without one, an empty one, or one for no diagram."""
    found = [f"{ALT_INDEX}: {name} has no alt text" for name in names if not str(alts.get(name, "")).strip()]
    return found + [f"{ALT_INDEX}: {name} is no diagram's name" for name in alts if name not in names]


# The cell's import of show_diagram may come first: an import shows nothing.
ONLY_SHOW_DIAGRAM = re.compile(r"""\s*(?:from shared\.diagrams import show_diagram\s*)?"""
                               r"""show_diagram\(\s*["']([\w-]+)["']\s*\)\s*""")


def stamp(notebook_paths) -> list[Path]:
    """Write each show_diagram-only cell's output as displaying it would; return the notebooks that changed."""
    import nbformat

    from shared._export import serialize

    changed = []
    for path in notebook_paths:
        nb = nbformat.read(path, as_version=4)
        before = serialize(nb)
        for cell in nb.cells:
            match = ONLY_SHOW_DIAGRAM.fullmatch(cell.source) if cell.cell_type == "code" else None
            if not match or not cell.outputs:
                continue  # a cell never run keeps no output: stamping must not pretend it ran
            data, metadata = show_diagram(match.group(1))._repr_mimebundle_()
            cell.outputs = [nbformat.v4.new_output("execute_result", data=data, metadata=metadata,
                                                   execution_count=cell.execution_count)]
        if serialize(nb) != before:
            Path(path).write_text(serialize(nb), encoding="utf-8")
            changed.append(Path(path))
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared._diagrams", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="diagrams to redraw (default: all)")
    parser.add_argument("--check", action="store_true", help="only check; change nothing")
    parser.add_argument("--stamp", action="store_true",
                        help="refresh the stored output of every show_diagram cell in the course's notebooks")
    args = parser.parse_args(argv)
    if args.stamp:
        from shared._export import notebooks

        for path in stamp(notebooks()):
            print(f"stamped {path}")
        return 0
    if args.check:
        found = problems()
        for line in found:
            print(line)
        if any(not line.startswith(ALT_INDEX) for line in found):
            print("redraw with: python -m shared._diagrams")
        return 1 if found else 0
    diagrams = all_diagrams()
    unknown = sorted(set(args.names) - set(diagrams))
    if unknown:
        parser.error(f"unknown diagrams {unknown}; known: {', '.join(diagrams)}")
    PNG_DIR.mkdir(exist_ok=True)
    for name in args.names or diagrams:
        png = diagrams[name].render()
        (PNG_DIR / f"{name}.png").write_bytes(png)
        print(f"{name}.png: {len(png) / 1024:.1f} KiB")
    if not args.names:
        for path in PNG_DIR.glob("*.png"):
            if path.stem not in diagrams:
                path.unlink()
                print(f"removed {path.name}: no diagram of that name is left")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
