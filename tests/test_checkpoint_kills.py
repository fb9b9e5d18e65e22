"""Checkpoints survive a process killed at any instant: real child processes, really killed.

A child process trains in a loop and saves after every step to one path, as a learner's run does. The test
kills it (SIGKILL: what an out-of-memory kill or Jupyter's "Restart kernel" does; SIGINT: the interrupt
button) and then loads the checkpoint. After every kill the run must resume from the newest complete save or
the one before it, with weights exactly those of that step, and at most one half-written file may be left.

Every child is a process of its own, started by a zygote: one Python per test module that imports what the
child imports (torch: seconds on a small CPU), then forks a child for each run and takes no part in its work.
A child is what `python -c CHILD` would be once its imports are done; it is killed by its process id, and its
exit status, standard output and standard error come back as subprocess.Popen's would.
"""

import os
import random
import selectors
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from shared.checkpoints import load_checkpoint

ROOT = Path(__file__).resolve().parent.parent

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


# The zygote: CHILD's imports (and the one that its first AdamW makes), then a loop that forks a child per request. The forked child leaves the loop and
# runs CHILD from its first line (the imports are done already), at the top level of its own process: an
# exception it does not catch ends it as it would end `python -c CHILD`. Requests come over a socket, with the
# child's stdout and stderr (pipe ends that the test made) attached; the answer is its process id, and a
# "wait" request answers with its exit status once it has ended (it is the zygote's child, not the test's).
ZYGOTE = """
import os, socket, sys
import torch
import torch._dynamo  # what building the first optimizer imports (a second and more); importing runs no kernels
from shared.checkpoints import load_checkpoint, save_checkpoint

control = socket.socket(fileno=int(sys.argv[1]))
while True:
    message, fds, _, _ = socket.recv_fds(control, 4096, 2)
    if not message:  # the test closed its end: no more children (and no second of tearing torch down)
        os._exit(0)
    command, *arguments = message.decode().split("\\0")
    if command == "wait":
        _, status = os.waitpid(int(arguments[0]), 0)
        control.send(str(os.waitstatus_to_exitcode(status)).encode())
        continue
    sys.stdout.flush(), sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        break
    for fd in fds:
        os.close(fd)
    control.send(str(pid).encode())

control.close()
os.dup2(fds[0], 1), os.dup2(fds[1], 2)
for fd in fds:
    os.close(fd)
sys.argv = ["-c", *arguments]
""" + CHILD


class Zygote:
    def __init__(self):
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen([sys.executable, "-c", ZYGOTE, str(theirs.fileno())], cwd=ROOT, env=env,
                                        stdin=subprocess.DEVNULL, pass_fds=[theirs.fileno()])
        theirs.close()

    def request(self, *words, fds=()):
        socket.send_fds(self.control, ["\0".join(words).encode()], list(fds))
        answer = self.control.recv(64)
        assert answer, f"the zygote ended (exit status {self.process.wait()})"
        return int(answer)

    def close(self):
        self.control.close()
        self.process.wait(timeout=60)


class Child:
    """A child the zygote forked: what these tests used of subprocess.Popen (text=True, stdout and stderr piped)."""

    def __init__(self, zygote, *arguments):
        self.zygote, self.returncode = zygote, None
        (out, out_child), (err, err_child) = os.pipe(), os.pipe()
        try:
            self.pid = zygote.request("start", *arguments, fds=[out_child, err_child])
        finally:
            os.close(out_child), os.close(err_child)
        self.stdout, self.stderr = out, err  # the read ends, as file descriptors

    def readline(self):
        """The next line the child prints; one byte at a time, so that nothing after it is taken from the pipe."""
        line = b""
        while not line.endswith(b"\n") and (byte := os.read(self.stdout, 1)):
            line += byte
        return line.decode()

    def send_signal(self, sig):
        os.kill(self.pid, sig)

    def kill(self):
        self.send_signal(signal.SIGKILL)

    def communicate(self, timeout):
        """(stdout, stderr) to their end, as text, and the exit status in .returncode, as Popen.communicate."""
        deadline, read = time.monotonic() + timeout, {self.stdout: b"", self.stderr: b""}
        with selectors.DefaultSelector() as selector:
            for pipe in read:
                selector.register(pipe, selectors.EVENT_READ)
            while selector.get_map():
                if time.monotonic() > deadline:
                    raise subprocess.TimeoutExpired(f"child {self.pid}", timeout)
                for key, _ in selector.select(timeout=max(0.0, deadline - time.monotonic())):
                    chunk = os.read(key.fd, 65536)
                    read[key.fd] += chunk
                    if not chunk:  # the end of the pipe: the child has ended
                        selector.unregister(key.fd)
        os.close(self.stdout), os.close(self.stderr)
        self.returncode = self.zygote.request("wait", str(self.pid))
        return read[self.stdout].decode(), read[self.stderr].decode()


@pytest.fixture(scope="module")
def start_child():
    """start_child(path, kill_at="none"): a new child process running CHILD on `path`."""
    zygote = Zygote()
    yield lambda path, kill_at="none": Child(zygote, str(path), kill_at)
    zygote.close()


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
