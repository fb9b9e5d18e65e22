"""Work the tests will wait for, started as soon as the session knows its tests, to run beside them.

pytest runs one test at a time, in one process, with one torch thread (tests/conftest.py): on a 2-core machine the
second core idles through most of a run. A few tests wait for processes of their own: two torchrun launches
(test_ddp_train.py), a fresh Python per course script (test_notebook.py), the exporter's check run as a maintainer
runs it (test_export.py), the plain BPE trainer's seconds of pure Python (test_bpe.py), the pip install that the
notebook kernels import the package from (test_opened_alone.py), and the zygote whose imports every killed child
shares (tests/warm_python.py). None of them depends on what the other tests do, so each starts when the test loop
starts, on one background lane (one job at a time, so the tests keep a core to themselves), and the tests that wait
for one run after all the others (tests/conftest.py), by when it is done; each then checks the result exactly as it
did when it ran the process itself. They are the same commands, really run: only the moment they start changes (and
the plain BPE trainer, which ran inside the test's process, now runs in a Python of its own).

A job is a session fixture made with `@early(run)`: the decorated function runs in the test process when the loop
starts (what must not race with the tests: reading os.environ, copying files that a test monkeypatches the paths of)
and returns the argument of `run`, which does the slow part on the lane; the fixture's value is what `run` returns.
Only the jobs that a selected test asks for start; one the lane has not reached yet when its test needs it runs in
the test's own thread instead, so nothing waits behind another job, and a run with no lane at all works the same.
"""

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
        """The test-process half (once): before the lane may take the job."""
        if self.state == "new":
            self.prepared, self.state = self.prepare(), "waiting"

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


def run(command, timeout, **popen_arguments):
    """subprocess.run(command, capture_output=True, text=True, timeout=timeout): a job's process, ended with the session."""
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen_arguments) as process:
        with _running_lock:
            _running.add(process)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise
        finally:
            with _running_lock:
                _running.discard(process)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


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
