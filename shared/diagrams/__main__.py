"""Draw every course diagram into shared/diagrams/png/, or check that the stored PNGs are current.

    python -m shared.diagrams            # redraw all (or: python -m shared.diagrams NAME ...)
    python -m shared.diagrams --check    # exit 1 if a PNG is missing, stale or left over
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import all_diagrams, pixels
from .style import renderer_version

PNG_DIR = Path(__file__).resolve().parent / "png"
# Between library versions anti-aliasing shifts a little; a changed drawing changes far more.
MAX_CHANGED_FRACTION = 0.002


def same_drawing(stored: bytes, drawn: bytes) -> bool:
    """Byte-identical when drawn by the same library versions; otherwise the same picture, pixel for pixel, within a tolerance."""
    if stored == drawn:
        return True
    if renderer_version().encode() in stored:
        return False  # same renderer, different bytes: the drawing changed
    old, new = pixels(stored), pixels(drawn)
    if old.shape != new.shape:
        return False
    changed = (abs(old - new).max(axis=2) > 64).mean()
    return changed <= MAX_CHANGED_FRACTION


def problems() -> list[str]:
    found = []
    diagrams = all_diagrams()
    for name, diagram in diagrams.items():
        path = PNG_DIR / f"{name}.png"
        if not path.is_file():
            found.append(f"{name}: no PNG drawn")
        elif not same_drawing(path.read_bytes(), diagram.render()):
            found.append(f"{name}: the PNG is older than its drawing code")
    for path in sorted(PNG_DIR.glob("*.png")):
        if path.stem not in diagrams:
            found.append(f"{path.name}: no diagram of that name is left")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.diagrams", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="diagrams to redraw (default: all)")
    parser.add_argument("--check", action="store_true", help="only check; change nothing")
    args = parser.parse_args(argv)
    if args.check:
        found = problems()
        for line in found:
            print(line)
        if found:
            print("redraw with: python -m shared.diagrams")
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
    sys.exit(main())
