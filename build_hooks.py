"""Build-time hook (pyproject.toml's [tool.setuptools.cmdclass]): what the wheel leaves out of `shared`.

The maintainers' tools live in the package so that `python -m shared._export` and `python -m shared._run` work
from a clone, but a learner's `pip install` (Colab installs the package from git) must not get them: they need
nbformat and nbclient, which the package does not depend on, and they rewrite notebooks. setuptools ships every
.py file of a listed package and has no setting that leaves one out (exclude-package-data applies to data files
only), so build_py drops them here. Standard library and setuptools only: this runs in pip's isolated build
environment, where nothing else is installed.
"""

from setuptools.command.build_py import build_py

MAINTAINER_TOOLS = {("shared", "_export"), ("shared", "_run"), ("shared", "_widget_snapshot")}


class BuildPyWithoutMaintainerTools(build_py):
    def find_package_modules(self, package, package_dir):
        # Entries are (package, module, file); everything the wheel and sdist builds copy comes through here.
        return [entry for entry in super().find_package_modules(package, package_dir)
                if (entry[0], entry[1]) not in MAINTAINER_TOOLS]
