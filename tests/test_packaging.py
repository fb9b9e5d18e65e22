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


# Learners never need these, and they need nbformat/nbclient, which the package does not depend on.
MAINTAINER_TOOLS = ["shared/_build.py", "shared/_diagrams.py", "shared/_export.py", "shared/_run.py", "shared/_widget_snapshot.py"]


@pytest.fixture(scope="module")
def wheel_files(installed_course_package):
    """The file names that `pip install` of this checkout puts in place: the wheel pip builds, unpacked.

    It is the session's one install, conftest.py's (the notebooks' kernels import it): built from a copy of
    what the build reads, with no build isolation and so offline, as `pip install git+...` builds it on Colab.
    """
    site = installed_course_package
    return {path.relative_to(site).as_posix() for path in site.rglob("*") if path.is_file()}


@pytest.mark.parametrize("tool", MAINTAINER_TOOLS)
def test_the_wheel_leaves_out_the_maintainers_tools(wheel_files, tool):
    assert (ROOT / tool).is_file(), f"{tool} is gone from the repository: update MAINTAINER_TOOLS"
    assert tool not in wheel_files


def test_the_wheel_holds_every_module_and_data_file_learners_use(wheel_files):
    # Everything in the package but the tools: modules, the diagrams' PNGs, the assets the notebooks read.
    expected = {p.relative_to(ROOT).as_posix() for p in PACKAGE.rglob("*")
                if p.is_file() and p.suffix not in {".pyc", ".md"} and "__pycache__" not in p.parts} - set(MAINTAINER_TOOLS)
    assert any(name.startswith("shared/diagrams/png/") and name.endswith(".png") for name in expected)
    assert any(name.startswith("shared/assets/") for name in expected)
    missing = sorted(expected - wheel_files)
    assert not missing, f"the wheel lacks {missing}"
