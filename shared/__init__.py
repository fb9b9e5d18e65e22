"""The course's importable package.

Most modules here are *generated*: each chapter notebook marks its finished cells with
``#| export: <module>`` and ``python -m shared._export`` writes them into ``shared/<module>.py``.
Edit the notebook, never the generated file. The hand-written modules are this file,
``notebook.py`` (the setup every notebook runs first) and the tools ``_export.py`` and ``_run.py``.
"""

# Where the course is published. Colab badges, the Colab install line in every notebook's
# setup cell, and the README's chapter table are stamped from these two values by
# `python -m shared._export`; change them here to publish the course somewhere else.
REPOSITORY = "llm-from-scratch-course/llm-from-scratch"
BRANCH = "main"
