"""Test-suite settings shared by the unit tests and by nbval's notebook kernels.

Kernels started by nbval inherit this process's environment, so what is set here reaches
every notebook as well.

Every notebook runs *opened alone*, as on Colab: its kernel starts in an empty folder (no
neighbouring files, no `../shared` to find), and imports the course package from a regular,
non-editable install of this clone built once per test session. A notebook that needs a file
from its chapter folder, or a package file that pyproject.toml forgets to ship, fails here.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import nbval.plugin

ROOT = Path(__file__).resolve().parent

# Fast mode shrinks epochs, data and model sizes so the suite runs on a 2-core CPU.
# `COURSE_FAST=0 pytest --nbval` re-checks the notebooks at full size instead.
os.environ.setdefault("COURSE_FAST", "1")
# The stored outputs were made on a CPU; a maintainer's GPU (or Apple's MPS) would compute other numbers and
# fail cells that are right. `COURSE_DEVICE=cuda pytest --nbval` runs the notebooks on a GPU on purpose.
os.environ.setdefault("COURSE_DEVICE", "cpu")
# With MPLBACKEND=Agg, figure cells lose the text output that their stored copy has.
os.environ.pop("MPLBACKEND", None)

_session_folder: Path | None = None


def session_folder() -> Path:
    """A scratch folder for this test session: the installed package and the notebooks' empty folders."""
    global _session_folder
    if _session_folder is None:
        _session_folder = Path(tempfile.mkdtemp(prefix="llm-course-tests-"))
    return _session_folder


_install_lock = threading.Lock()  # the unit tests may start the install on a thread of their own (tests/early.py)


def install_course_package() -> Path:
    """`pip install --no-deps --target` of this clone (non-editable), built from a copy of its sources.

    Built from a copy so the build leaves nothing (build/, *.egg-info) in the clone. The
    dependencies are the ones this environment already has from requirements.txt.
    """
    with _install_lock:
        return _install_course_package()


def _install_course_package() -> Path:
    site = session_folder() / "site"
    if site.is_dir():
        return site
    source = session_folder() / "source"
    shutil.copytree(ROOT / "shared", source / "shared", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile", "--target", str(site), str(source)]
    if importlib.util.find_spec("setuptools"):  # build offline with what is here, no isolated build env to fetch
        command.insert(command.index("--no-deps"), "--no-build-isolation")
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"could not install the course package from {ROOT}:\n{result.stderr[-3000:]}")
    return site


class KernelOpenedAlone(nbval.plugin.RunningKernel):
    """nbval's kernel, started in an empty folder with only the installed course package on its path."""

    def __init__(self, kernel_name, cwd=None, startup_timeout=60):
        site = str(install_course_package())
        if os.environ.get("PYTHONPATH", "").split(os.pathsep)[0] != site:  # the kernel inherits it, first in line
            os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [site, os.environ.get("PYTHONPATH")]))
        notebooks = session_folder() / "notebooks"
        notebooks.mkdir(exist_ok=True)
        alone = tempfile.mkdtemp(prefix=f"{Path(cwd or 'notebook').name}-", dir=notebooks)  # one per notebook
        super().__init__(kernel_name, cwd=alone, startup_timeout=startup_timeout)


# nbval has no option for the kernel's folder; it builds its kernels through this name.
assert hasattr(nbval.plugin, "RunningKernel"), "nbval changed: update KernelOpenedAlone in conftest.py"
nbval.plugin.RunningKernel = KernelOpenedAlone


def pytest_unconfigure(config):
    if _session_folder is not None:
        shutil.rmtree(_session_folder, ignore_errors=True)


# Where the suite's time goes, printed at the end of every run: the unit tests are meant to stay fast enough to
# run after every edit, so their total is reported on its own, apart from the notebooks and the browser test.
_seconds_by_kind: dict[str, float] = {}


def _kind_of(nodeid: str) -> str:
    path = nodeid.split("::", 1)[0]
    if path.endswith(".ipynb"):
        return "notebooks (nbval)"
    if path.endswith("test_browser.py"):
        return "browser test"
    return "unit tests"


def pytest_runtest_logreport(report):
    kind = _kind_of(report.nodeid)
    _seconds_by_kind[kind] = _seconds_by_kind.get(kind, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter):
    if _seconds_by_kind:
        parts = ", ".join(f"{kind} {seconds:.0f} s" for kind, seconds in sorted(_seconds_by_kind.items()))
        terminalreporter.write_line(f"time by kind (setup, call and teardown summed): {parts}")
