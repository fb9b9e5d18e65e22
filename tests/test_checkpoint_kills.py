"""Checkpoints survive a process killed at any instant: real child processes, really killed.

A child process trains in a loop and saves after every step to one path, as a learner's run does. The test
kills it (SIGKILL: what an out-of-memory kill or Jupyter's "Restart kernel" does; SIGINT: the interrupt
button) and then loads the checkpoint. After every kill the run must resume from the newest complete save or
the one before it, with weights exactly those of that step, and at most one half-written file may be left.

Every child is a process of its own, forked from a Python that has imported torch already (tests/warm_python.py:
importing torch took seconds per child on a small CPU): what `python -c CHILD` is once its imports are done. It
is killed by its process id, and its exit status, stdout and stderr come back as subprocess.Popen's would.
"""

import random
import signal
import time
import warnings

import pytest
import torch

from shared.checkpoints import load_checkpoint

# The child: weights that are a known function of the step (so the test can tell exactly which save it got
# back), a real AdamW step each time (so there is optimizer state to save), and a save to the same path.
# A few megabytes per file, so that a kill lands inside a write often. Optionally it kills itself at the
# n-th call of one file operation inside the save, to hit each instant that a random kill rarely finds.
CHILD = """
import os, signal, sys
import torch
from shared.checkpoints import load_checkpoint, save_checkpoint

# SIGINT must raise KeyboardInterrupt, as in a Jupyter kernel, even when this test runs as a background job,
# whose children start with SIGINT ignored (Python then leaves it ignored).
signal.signal(signal.SIGINT, signal.default_int_handler)
path, kill_at = sys.argv[1], sys.argv[2]
if kill_at != "none":
    operation, n, sig = kill_at.split(":")
    real, calls = getattr(os, operation), []
    def dying(*args):
        calls.append(args)
        if len(calls) == int(n):
            os.kill(os.getpid(), getattr(signal, sig))
        return real(*args)
    setattr(os, operation, dying)

torch.manual_seed(0)
model = torch.nn.Linear(512, 512)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

def weights_at(step):
    generator = torch.Generator().manual_seed(step)
    return {name: torch.randn(p.shape, generator=generator) for name, p in model.named_parameters()}

step = 0
if os.path.exists(path) or os.path.exists(path + ".prev"):
    step = load_checkpoint(path, model, optimizer)["step"]
while True:
    step += 1
    model(torch.ones(1, 512)).square().sum().backward()
    optimizer.step()
    optimizer.zero_grad()
    with torch.no_grad():
        for name, value in weights_at(step).items():
            model.get_parameter(name).copy_(value)
    save_checkpoint(path, model, optimizer, step=step)
    print(step, flush=True)
"""


def weights_at(step):
    """What the child's weights are at `step` (the same code as CHILD's)."""
    torch.manual_seed(0)
    model = torch.nn.Linear(512, 512)
    generator = torch.Generator().manual_seed(step)
    return {name: torch.randn(p.shape, generator=generator) for name, p in model.named_parameters()}


@pytest.fixture(scope="module")
def start_child(warm_python):
    """start_child(path, kill_at="none"): a new child process running CHILD on `path` (see tests/warm_python.py)."""
    return lambda path, kill_at="none": warm_python.start(CHILD, str(path), kill_at)


def resume(path):
    """(the step load_checkpoint resumed from, whether its weights are exactly that step's)."""
    model = torch.nn.Linear(512, 512)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a fallback warns; which step it chose is checked below
        step = load_checkpoint(path, model, optimizer)["step"]
    return step, all(torch.equal(model.get_parameter(name), value) for name, value in weights_at(step).items())


def half_written(folder):
    return sorted(p.name for p in folder.glob(".*part"))


def test_a_run_killed_at_random_moments_always_resumes(tmp_path, start_child):
    rng = random.Random(2026)  # the kill times are random, and the same in every test run
    path = tmp_path / "run.pt"
    kills, deadline = 0, time.monotonic() + 120  # bounded: at most two minutes of killing
    while kills < 12 and time.monotonic() < deadline:
        child = start_child(path)
        first = child.readline()  # this child has completed one save of its own
        assert first.strip().isdigit(), child.communicate(timeout=60)[1]
        time.sleep(rng.uniform(0.0, 0.4))
        child.send_signal(signal.SIGKILL if rng.random() < 0.75 else signal.SIGINT)
        rest, _ = child.communicate(timeout=60)
        last_reported = int(([first] + rest.split())[-1])
        kills += 1

        assert len(half_written(tmp_path)) <= 1, half_written(tmp_path)
        step, exact = resume(path)
        # The newest complete save is the last one the child reported, or the next if the kill came after the
        # save but before the print; the load may take it or the one before it, never anything older.
        assert last_reported - 1 <= step <= last_reported + 1, (step, last_reported)
        assert exact, f"the weights loaded for step {step} are not that step's"
    assert kills >= 10


@pytest.mark.parametrize("kill_at", [
    "fsync:1:SIGKILL",  # the new file is written but not yet on disk
    "replace:1:SIGKILL",  # before the old file becomes .prev
    "replace:2:SIGKILL",  # between the two renames: no file under the checkpoint's own name
    "replace:2:SIGINT",  # the same moment, interrupted from Jupyter
], ids=lambda kill_at: kill_at.replace(":", "-"))
def test_a_run_killed_at_each_instant_of_a_save_resumes(tmp_path, kill_at, start_child):
    path = tmp_path / "run.pt"
    first = start_child(path)
    steps = [int(first.readline()) for _ in range(3)]  # three saves, so there is a .prev
    first.kill()
    first.communicate(timeout=60)
    assert steps == [1, 2, 3]

    dying = start_child(path, kill_at)  # resumes from the checkpoint, then dies inside its first save
    out, err = dying.communicate(timeout=60)
    assert dying.returncode != 0 and out == "", err
    assert len(half_written(tmp_path)) <= 1
    step, exact = resume(path)
    assert step in (3, 4) and exact, step

    survivor = start_child(path)  # the next save removes what the killed one left behind
    next_step = int(survivor.readline())
    survivor.kill()
    survivor.communicate(timeout=60)
    assert next_step == step + 1
    assert len(half_written(tmp_path)) <= 1
