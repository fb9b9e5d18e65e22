"""Child Python processes that start warm: forked from a zygote that has made their imports already.

A test that needs a process of its own (one to kill, or a fresh one to resume a checkpoint in) used to start
`python -c CODE`, and each such Python spent seconds importing torch (and torch._dynamo, which the first AdamW
imports). A zygote makes those imports once and runs nothing else; `zygote.start(CODE, *args)` forks it, and
the child runs CODE as `python -c CODE *args` would: as __main__, with those arguments in sys.argv, its stdout
and stderr piped to the test, and an exception it does not catch ending it as it would end that Python. It is a
process of its own, killed by its process id; what it did is gone with it.
"""

import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The zygote's loop: a request comes over a socket with the child's stdout and stderr (the write ends of two
# pipes that the test made) attached, and is answered with the child's process id; a "wait" request is answered
# with a child's exit status once it has ended (the child is the zygote's, so only the zygote can wait for it).
# The forked child leaves the loop and runs its code at the top level of its own process.
ZYGOTE = """
import gc, importlib, os, socket, sys

for module in sys.argv[2:]:
    importlib.import_module(module)  # imports only: no kernel runs before a fork

control = socket.socket(fileno=int(sys.argv[1]))
while True:
    message, fds, _, _ = socket.recv_fds(control, 1 << 16, 2)
    if not message:  # the test closed its end: no more children (and no second spent tearing torch down)
        os._exit(0)
    command, *arguments = message.decode().split("\\0")
    if command == "ready":  # the imports above are done
        control.send(b"0")
        continue
    if command == "wait":
        _, status = os.waitpid(int(arguments[0]), 0)
        control.send(str(os.waitstatus_to_exitcode(status)).encode())
        continue
    sys.stdout.flush(), sys.stderr.flush()
    # What the zygote holds is left out of every garbage collection from now on (Python's advice before a fork
    # without exec): a child's collections, and those at its exit, no longer walk (and so copy) every object the
    # imports made, which took a child ~1 s to end. The price: a reference cycle among those objects is never freed.
    gc.freeze()
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
code, *arguments = arguments
sys.argv = ["-c", *arguments]
exec(compile(code, "<string>", "exec"), {"__name__": "__main__"})
"""


# Forking a warm Python needs fork() and file descriptors passed over a packet socket: Linux has both. Elsewhere
# (Windows, macOS) each child is a new `python -c`, as slow as before the zygote, and the tests are the same.
CAN_FORK = sys.platform.startswith("linux") and hasattr(os, "fork") and hasattr(socket, "send_fds")
CHILD_ENV = {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


class Zygote:
    """A Python that has imported `modules` (with OMP_NUM_THREADS=1 and the repository on its path), in an environment
    of `environ` (this process's by default) with those settings."""

    def __init__(self, modules, environ=None):
        self.process = None
        if not CAN_FORK:
            return
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.process = subprocess.Popen([sys.executable, "-c", ZYGOTE, str(theirs.fileno()), *modules], cwd=ROOT,
                                        env={**(os.environ if environ is None else environ), **CHILD_ENV},
                                        stdin=subprocess.DEVNULL, pass_fds=[theirs.fileno()])
        theirs.close()

    def request(self, *words, fds=()):
        socket.send_fds(self.control, ["\0".join(words).encode()], list(fds))
        answer = self.control.recv(64)
        assert answer, f"the zygote ended (exit status {self.process.wait()})"
        return int(answer)

    def ready(self):
        """Wait until the zygote has made its imports (the first child would wait for them anyway)."""
        if self.process is not None:
            self.request("ready")

    def start(self, code, *arguments):
        """A child running `python -c code *arguments`, from the repository's folder."""
        return Child(self, code, *arguments) if self.process is not None else ColdChild(code, *arguments)

    def close(self):
        if self.process is not None:
            self.control.close()
            self.process.wait(timeout=60)


class ColdChild:
    """Where a zygote cannot fork: a new `python -c code *arguments`, with the same interface as Child."""

    def __init__(self, code, *arguments):
        self.process = subprocess.Popen([sys.executable, "-c", code, *arguments], cwd=ROOT,
                                        env={**os.environ, **CHILD_ENV}, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.pid, self.returncode = self.process.pid, None

    def readline(self):
        return self.process.stdout.readline()

    def send_signal(self, sig):
        self.process.send_signal(sig)

    def kill(self):
        self.process.kill()

    def communicate(self, timeout):
        out, err = self.process.communicate(timeout=timeout)
        self.returncode = self.process.returncode
        return out, err


class Child:
    """A child the zygote forked: what the tests use of subprocess.Popen (text=True, stdout and stderr piped)."""

    def __init__(self, zygote, code, *arguments):
        self.zygote, self.returncode = zygote, None
        (out, out_child), (err, err_child) = os.pipe(), os.pipe()
        try:
            self.pid = zygote.request("start", code, *arguments, fds=[out_child, err_child])
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
