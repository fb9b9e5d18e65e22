"""Hand-written helpers that every notebook's setup cell calls (not generated from a notebook)."""

import os
import platform
import random

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
