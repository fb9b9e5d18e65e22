"""What `pip install` of this repository ships: Colab's copy of the course is that install alone."""

import re

import pytest

from shared._export import ROOT

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11 on")

CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PACKAGE = ROOT / "shared"


def requirement_names(lines):
    """Distribution names of requirement lines, lower-cased, '_' and '-' alike; comments and options dropped."""
    names = set()
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.add(re.split(r"[<>=!~\[ @;]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return names


def test_every_data_file_of_the_package_is_declared_as_package_data():
    # setuptools ships only the .py files unless pyproject.toml names the others.
    declared = set()
    for package, patterns in CONFIG["tool"]["setuptools"].get("package-data", {}).items():
        folder = ROOT.joinpath(*package.split("."))
        declared |= {path for pattern in patterns for path in folder.glob(pattern)}
    # (.md files are notes for maintainers who read the repository, e.g. MODULES.md; the notebooks never read them.)
    data_files = {p for p in PACKAGE.rglob("*") if p.is_file() and p.suffix not in {".py", ".pyc", ".md"} and "__pycache__" not in p.parts}
    missing = sorted(p.relative_to(ROOT).as_posix() for p in data_files - declared)
    assert not missing, f"add these to [tool.setuptools.package-data] in pyproject.toml, or a non-editable install lacks them: {missing}"


def test_requirements_txt_and_the_package_need_the_same_libraries():
    # The README installs requirements.txt; Colab installs the package. Same libraries, plus JupyterLab for the README.
    from_requirements = requirement_names((ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines())
    from_package = requirement_names(CONFIG["project"]["dependencies"])
    assert from_requirements - {"jupyterlab"} == from_package


def test_every_subpackage_of_shared_is_listed():
    # setuptools installs only the packages it is told about: a forgotten one is missing on Colab.
    listed = set(CONFIG["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in PACKAGE.rglob("__init__.py") if "__pycache__" not in p.parts}
    assert found == listed, f"pyproject.toml lists {sorted(listed)}, the repository has {sorted(found)}"
