"""Work the tests will wait for, started as soon as the session knows its tests, to run beside them.

pytest runs one test at a time, in one process, with one torch thread (tests/conftest.py): on a 2-core machine the
second core idles through most of a run. A few tests wait for processes of their own: two torchrun launches
(test_ddp_train.py), a fresh Python per course script (test_notebook.py), the exporter's check run as a maintainer
runs it (test_export.py), the plain BPE trainer's seconds of pure Python (test_bpe.py), the pip install that the
notebook kernels import the package from (test_packaging.py, test_opened_alone.py), and the zygote whose imports every killed child
shares (tests/warm_python.py). None of them depends on what the other tests do, so each starts when the test loop
starts, on one background lane: one job at a time, its processes at Linux's lowest priority (SCHED_IDLE: only the
CPU time that nothing else wants, so they never slow a test down, nor anything else on the machine) until a test
waits for them. The tests that wait for a job run after all the others (tests/conftest.py), by when it is done;
each then checks the result exactly as it did when it ran the process itself. They are the same commands, really
run: only the moment they start changes (and the plain BPE trainer, which ran inside the test's process, now runs
in a Python of its own; the pip install runs at the usual priority, in conftest.py's code).

A job is a session fixture made with `@early(run)`: the decorated function runs in the test process when the loop
starts (what must not race with the tests: reading os.environ, copying files that a test monkeypatches the paths of)
and returns the argument of `run`, which does the slow part on the lane; the fixture's value is what `run` returns.
Only the jobs that a selected test asks for start; one the lane has not reached yet when its test needs it runs in
the test's own thread instead, so nothing waits behind another job, and a run with no lane at all works the same.
"""

import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

JOBS = {}  # fixture name -> Job, filled as the test modules (and conftest) are imported
_lane = None
_scratch = None
_running = set()  # the Popen objects that run() is waiting for, to end them if the session ends first
_running_lock = threading.Lock()


class Job:
    def __init__(self, prepare, run):
        self.prepare, self.run = prepare, run
        self.lock, self.done = threading.Lock(), threading.Event()
        self.state, self.prepared, self.value, self.error = "new", None, None, None

    def make_ready(self):
        """The test-process half (once): before the lane may take the job. A failure is the test's, not the session's."""
        if self.state == "new":
            try:
                self.prepared, self.state = self.prepare(), "waiting"
            except Exception as error:  # noqa: BLE001 -- re-raised in the test that asks for the value
                self.error, self.state = error, "done"
                self.done.set()

    def take(self):
        """True for the one caller (the lane or the test) that gets to run the job."""
        with self.lock:
            if self.state != "waiting":
                return False
            self.state = "running"
            return True

    def execute(self):
        try:
            self.value = self.run(self.prepared)
        except BaseException as error:  # noqa: BLE001 -- re-raised in the test that asks for the value
            self.error = error
        finally:
            self.done.set()

    def result(self):
        self.make_ready()
        if self.take():
            self.execute()  # the lane has not reached it: run it here rather than wait for the jobs before it
        if not self.done.is_set():  # the lane runs it: from now on it is what the tests wait for
            with _running_lock:
                for process in _running:
                    _schedule(process.pid, "SCHED_OTHER")
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.value


def early(run, finish=None):
    """`@early(run)` on `def name(): ... return argument`: a session fixture `name` whose value is run(argument);
    finish(value), if given, when the session ends (as the code after a fixture's yield)."""

    def decorate(prepare):
        JOBS[prepare.__name__] = job = Job(prepare, run)

        @pytest.fixture(scope="session", name=prepare.__name__)
        def fixture():
            value = job.result()
            yield value
            if finish is not None:
                finish(value)

        fixture.__doc__ = prepare.__doc__
        return fixture

    return decorate


def scratch(name):
    """A new empty folder for a job (the jobs' tmp_path), removed when the session ends."""
    global _scratch
    if _scratch is None:
        _scratch = Path(tempfile.mkdtemp(prefix="llm-course-early-"))
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=_scratch))


@contextlib.contextmanager
def in_the_background(process):
    """While in the block, `process` (a Popen) and what it starts take only the CPU time nothing else wants, until a
    test waits for this job; and it is ended if the session ends first."""
    with _running_lock:
        _running.add(process)
    _schedule(process.pid, "SCHED_IDLE")
    try:
        yield process
    finally:
        with _running_lock:
            _running.discard(process)


def run(command, timeout, **popen_arguments):
    """subprocess.run(command, capture_output=True, text=True, timeout=timeout) for a job, in the background."""
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen_arguments) as process:
        with in_the_background(process):
            try:
                stdout, stderr = process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
                raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def schedule_as_usual(process):
    """The usual scheduling again for `process` and what it starts (after in_the_background)."""
    _schedule(process.pid, "SCHED_OTHER")


def _schedule(pid, policy):
    """Linux's scheduling policy `policy` for every thread of `pid` and of the processes under it (a torchrun launch's
    workers). SCHED_IDLE: a job's processes take only the CPU time that the tests (and whatever else runs on the
    machine) leave, so they never slow a test down; SCHED_OTHER, the usual policy, once a test waits for them."""
    if not hasattr(os, "SCHED_IDLE") or not os.path.isdir("/proc"):
        return
    children = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry))
    processes = [pid]
    for process in processes:
        processes.extend(children.get(process, []))
    for process in processes:
        try:
            threads = [int(thread) for thread in os.listdir(f"/proc/{process}/task")]
        except OSError:
            continue
        for thread in threads:
            try:
                os.sched_setscheduler(thread, getattr(os, policy), os.sched_param(0))
            except OSError:
                pass  # ended meanwhile, or not allowed: it keeps the policy it has


def start(names):
    """Start the lane on the jobs among `names`, in that order (the order of the first test that needs each)."""
    global _lane
    jobs = [JOBS[name] for name in dict.fromkeys(names) if name in JOBS]
    for job in jobs:
        job.make_ready()

    def lane():
        for job in jobs:
            if job.take():
                job.execute()

    if jobs:
        _lane = threading.Thread(target=lane, name="early jobs", daemon=True)
        _lane.start()


def stop():
    """End what the lane still runs (a session cut short) and remove the jobs' folders."""
    with _running_lock:
        for process in _running:
            process.kill()
    if _lane is not None:
        _lane.join(timeout=60)
    if _scratch is not None:
        shutil.rmtree(_scratch, ignore_errors=True)
