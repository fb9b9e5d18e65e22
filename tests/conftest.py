"""Fixtures for the unit tests: the one way a test builds a tiny GPT.

(The repository root's conftest.py is a different file: the notebook kernels' settings. This folder is a
package, tests/__init__.py, so that this file is imported as `tests.conftest` and does not take the name
`conftest` from the root one, which `installed_course_package` below imports.)

A test asks for `tiny_model` and calls it: `tiny_model(seed=0, **config_overrides)` returns a freshly
initialised GPTModel, the same weights for the same seed and overrides. A test file whose models all share
one shape overrides the fixture with its own sizes, the pytest way (a fixture of the same name that asks
for this one):

    @pytest.fixture(scope="module")
    def tiny_model(tiny_model):
        return functools.partial(tiny_model, vocab_size=..., context_length=...)

Many tests depend on exact sizes and seeds (token ids within the vocabulary, sequences that cross the
context length, values computed from the initial weights): a file's sizes are part of its tests.
"""

import os

import pytest
import torch

from shared.model import GPTConfig, GPTModel
from tests import early
from tests.warm_python import Zygote

# One intra-op thread for the tests in this process (the notebooks' kernels and the tests' child processes are
# other processes, with their own settings). The tensors here are tiny: a second thread costs more in hand-offs
# than it computes, and on a busy 2-core machine OpenMP's waiting threads made a tiny model's training step ~90x
# slower (0.9 s instead of 0.01 s). test_distributed.py already set 1 thread for whatever ran after it; now every
# test runs with the same setting, whatever the order.
torch.set_num_threads(1)

# Every part of the real model (several heads, more than one block), built in milliseconds.
# No dropout: most tests compare outputs, and a file that wants dropout says so.
TINY = dict(vocab_size=101, context_length=16, emb_dim=32, n_heads=2, n_layers=2, drop_rate=0.0)


def make_tiny_config(**overrides) -> GPTConfig:
    return GPTConfig(**{**TINY, **overrides})


def make_tiny_model(seed=0, **overrides) -> GPTModel:
    torch.manual_seed(seed)  # the initial weights come from the global generator
    return GPTModel(make_tiny_config(**overrides))


# Session-scoped: they are plain functions, and a module-scoped fixture (one model shared by a file's
# tests) may ask for them.
@pytest.fixture(scope="session")
def tiny_config():
    """`tiny_config(**overrides)`: the GPTConfig of TINY's sizes with the overrides."""
    return make_tiny_config


@pytest.fixture(scope="session")
def tiny_model():
    """`tiny_model(seed=0, **config_overrides)`: a seeded, freshly initialised GPTModel (training mode)."""
    return make_tiny_model


def start_zygote(environ):
    zygote = Zygote(["torch", "torch._dynamo", "shared.checkpoints", "shared.distributed", "shared.text",
                     "shared.train_step", "tests.conftest"], environ)
    if zygote.process is None:  # no fork here: each child is a new Python (tests/warm_python.py)
        return zygote
    with early.in_the_background(zygote.process):
        zygote.ready()
    early.schedule_as_usual(zygote.process)  # before its first child: the kill tests' children run as the tests do
    return zygote


@early.early(start_zygote, finish=Zygote.close)
def warm_python():
    """`warm_python.start(code, *args)`: a child process that runs `python -c code *args`, forked from a Python that
    has made these imports already (tests/warm_python.py). One for the session: its children are the kill tests'
    (test_checkpoint_kills.py), the fresh process that resumes a checkpoint (test_checkpoints.py) and the two
    processes of a data-parallel run (test_distributed.py). Started with the test loop (tests/early.py), so its
    imports are done on the idle core before the first kill test asks for a child."""
    return dict(os.environ)


def install(_):
    import conftest  # the repository root's: the notebooks' settings, and the package install their kernels import

    return conftest.install_course_package()


@early.early(install)
def installed_course_package():
    """The folder of the session's `pip install` of this clone (conftest.install_course_package, seconds): the package
    that test_packaging.py looks into and test_opened_alone.py's kernel imports. Started with the test loop."""
    return None


# Processes that tests wait for start with the test loop and run beside the tests before theirs (tests/early.py).
def pytest_collection_modifyitems(items):
    """The tests that wait for such a process run after all the others, in their own order: the processes have had the
    whole run to finish (the torchrun launches alone take longer than the tests before test_ddp_train.py)."""
    waiting = [item for item in items if any(name in early.JOBS for name in getattr(item, "fixturenames", ()))]
    if waiting:
        last = set(waiting)
        items[:] = [item for item in items if item not in last] + waiting


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session):
    if not session.config.option.collectonly:
        early.start(name for item in session.items for name in getattr(item, "fixturenames", ()))


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
    early.stop()
