"""Build-time hook, named in pyproject.toml's [tool.setuptools.cmdclass]: the wheel leaves out the maintainers' tools.

The maintainers' tools live in the package so that `python -m shared._export` and `python -m shared._run` work
from a clone, but a learner's `pip install` (Colab installs the package from git) must not get them: they need
nbformat and nbclient, which the package does not depend on, and they rewrite notebooks. setuptools ships every
.py file of a listed package and has no setting that leaves one out (exclude-package-data applies to data files
only), so build_py drops them here, and this file with them. It lives in shared/ because every build of the
package copies shared/ (conftest.py's install for the notebooks opened alone, too). setuptools loads this file
alone, not the package: standard library and setuptools only, as in pip's isolated build environment.
"""

from setuptools.command.build_py import build_py

MAINTAINER_TOOLS = {("shared", "_build"), ("shared", "_diagrams"), ("shared", "_export"), ("shared", "_run"),
                    ("shared", "_widget_snapshot")}


class BuildPyWithoutMaintainerTools(build_py):
    def find_package_modules(self, package, package_dir):
        # Entries are (package, module, file); everything the wheel and sdist builds copy comes through here.
        return [entry for entry in super().find_package_modules(package, package_dir)
                if (entry[0], entry[1]) not in MAINTAINER_TOOLS]
