"""Hand-written helpers for the notebooks (not generated from one): the setup every notebook runs first,
`expect_error` to show an error without stopping Run All, and `subprocess_env` for child processes."""

import os
import platform
import random
import site
import sys
from contextlib import contextmanager
from pathlib import Path

import torch

FAST_MODE_VARIABLE = "COURSE_FAST"
DEVICE_VARIABLE = "COURSE_DEVICE"


def fast_mode() -> bool:
    """True when COURSE_FAST=1: notebooks shrink epochs, data and model sizes so CI stays quick.

    The test suite turns it on by default (see conftest.py); a learner leaves it off.
    """
    value = os.environ.get(FAST_MODE_VARIABLE, "0").strip().lower()
    if value not in {"0", "1", "false", "true", ""}:
        raise ValueError(f"{FAST_MODE_VARIABLE} must be 0 or 1, not {value!r}")
    return value in {"1", "true"}


def pick_device(preferred: str | None = None) -> torch.device:
    """CUDA if present, else Apple's MPS where this torch supports it, else the CPU.

    `preferred` (or the COURSE_DEVICE variable) overrides the choice, e.g. "cpu" to compare.
    """
    choice = preferred or os.environ.get(DEVICE_VARIABLE)
    if choice:
        device = torch.device(choice)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"{DEVICE_VARIABLE}={choice} asks for CUDA, but torch sees no CUDA GPU.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python's and torch's generators (CPU and every GPU) so reruns give the same numbers."""
    random.seed(seed)
    torch.manual_seed(seed)


def setup_notebook(seed: int = 123) -> torch.device:
    """Seed, choose the device and print what this notebook runs on; returns the device."""
    seed_everything(seed)
    device = pick_device()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    print(f"Python {platform.python_version()} | torch {torch.__version__} | device: {device} ({name})")
    print(f"fast mode ({FAST_MODE_VARIABLE}): {'on' if fast_mode() else 'off'}")
    return device


@contextmanager
def expect_error(*kinds: type[BaseException]):
    """Run a block that must fail with one of `kinds`, and show the error instead of stopping.

    Notebooks demonstrate the errors a learner will meet. A cell that raised would stop "Run
    All" in JupyterLab and Colab, so the block's error is caught and printed the way Python
    names it (``KeyError: 'Hello'``), and the notebook carries on. A block that does *not*
    raise is a bug in the demonstration, so that raises AssertionError (and fails the tests).
    """
    if not kinds or not all(isinstance(k, type) and issubclass(k, BaseException) for k in kinds):
        raise TypeError("expect_error needs one or more exception classes, e.g. expect_error(ValueError)")
    try:
        yield
    except kinds as error:
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
    else:
        names = " or ".join(k.__name__ for k in kinds)
        raise AssertionError(f"this demonstration expected {names}, but the code ran without one")


def subprocess_env(**overrides: str) -> dict[str, str]:
    """The environment for a child Python (e.g. torchrun) that must import this same `shared` package.

    A subprocess does not inherit the notebook's ``sys.path``: in a clone the setup cell only adds the
    repository to it, so the child would fail with ``ModuleNotFoundError: No module named 'shared'``.
    This returns ``os.environ`` with the folder that holds ``shared/`` first on ``PYTHONPATH``, plus
    `overrides` (e.g. ``OMP_NUM_THREADS="1"``). An installed package in a site-packages folder needs
    nothing: putting that folder on PYTHONPATH would place it ahead of the standard library.
    """
    env = dict(os.environ)
    package_parent = str(Path(__file__).resolve().parent.parent)
    site_folders = {str(Path(p).resolve()) for p in [*site.getsitepackages(), site.getusersitepackages()]}
    if package_parent not in site_folders:
        others = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != package_parent]
        env["PYTHONPATH"] = os.pathsep.join([package_parent, *others])
    env.update(overrides)
    return env
