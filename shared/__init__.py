"""The course's importable package.

Most modules here are *generated*: each chapter notebook marks its finished cells with
``#| export: <module>`` and ``python -m shared._export`` writes them into ``shared/<module>.py``.
Edit the notebook, never the generated file. The hand-written modules are this file,
``notebook.py`` (the setup every notebook runs first), the tools ``_export.py`` and ``_run.py`` (with
``_widget_snapshot.py``, which stores widgets as static copies), and
two scripts that chapter 5's companions run: ``benchmark.py`` (``python -m shared.benchmark``) and
``ddp_train.py`` (``torchrun --standalone --nproc_per_node=2 -m shared.ddp_train``). ``assets/`` holds
data files the notebooks read through ``importlib.resources`` (declared as package data in pyproject.toml).
"""

# Where the course is published. Colab badges, the Colab install line in every notebook's
# setup cell, and the README's chapter table are stamped from these two values by
# `python -m shared._export`; change them here to publish the course somewhere else.
REPOSITORY = "llm-from-scratch-course/llm-from-scratch"
BRANCH = "main"
