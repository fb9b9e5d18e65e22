"""Test-suite settings shared by the unit tests and by nbval's notebook kernels.

Kernels started by nbval inherit this process's environment, so what is set here reaches
every notebook as well.
"""

import os

# Fast mode shrinks epochs, data and model sizes so the suite runs on a 2-core CPU.
# `COURSE_FAST=0 pytest --nbval` re-checks the notebooks at full size instead.
os.environ.setdefault("COURSE_FAST", "1")
# With MPLBACKEND=Agg, figure cells lose the text output that their stored copy has.
os.environ.pop("MPLBACKEND", None)
