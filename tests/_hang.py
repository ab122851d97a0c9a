"""Running code that might hang, so that a hang explains itself.

A deadlock in a subprocess (or in a child forked by one) must fail the test with every
thread's native stack, not stall the suite: a one-in-a-hundred hang is only fixable from the
stacks of the run that hung.  Native stacks come from ``gdb -p PID -batch`` (the C frames of
the library and of CPython, which faulthandler cannot show); when gdb is missing, the failure
says so and still names the process.

Importable from test code and from the scripts those tests run (the tests folder is put on
their ``PYTHONPATH`` by :func:`run_python`).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Mapping, Sequence

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def native_stacks(pid: int, timeout: float = 60.0) -> str:
    """Every thread's native stack of process ``pid``, as gdb prints them."""
    gdb = shutil.which("gdb")
    if gdb is None:
        return f"(no gdb on PATH: cannot show the native stacks of process {pid})"
    try:
        proc = subprocess.run(
            [
                gdb,
                "-p",
                str(pid),
                "-batch",
                "-nx",
                "-ex",
                "set pagination off",
                "-ex",
                "thread apply all bt",
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return f"(gdb did not finish within {timeout:g} s on process {pid})"
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(("Thread ", "#"))]
    return "\n".join(lines) if lines else f"(gdb printed no stack for {pid}: {proc.stderr.strip()})"


def wait_child(pid: int, timeout: float) -> int | str:
    """Wait for a forked child: its exit code, or its native stacks (a str) if it hung.

    A hung child is killed after its stacks are taken, so nothing is left behind.
    """
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while True:
        reaped, status = os.waitpid(pid, os.WNOHANG)
        if reaped:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            stacks = native_stacks(pid)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return f"child {pid} hung for {timeout:g} s; its threads:\n{stacks}"
        time.sleep(delay)
        delay = min(delay * 2, 0.01)


class Hung(AssertionError):
    """A subprocess did not finish in time; the message holds its stacks."""


def run_python(
    code: str,
    *,
    timeout: float,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    faulthandler: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter of this build; stdout/stderr are captured.

    If it has not exited after ``timeout`` seconds, raise :class:`Hung` with its native stacks
    and its output so far (the process is killed first).
    """
    full_env = dict(os.environ)
    full_env.pop("PYTHONWARNINGS", None)
    full_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (TESTS_DIR, full_env.get("PYTHONPATH", "")) if p
    )
    if env:
        full_env.update(env)
    command = [sys.executable]
    if faulthandler:
        command += ["-X", "faulthandler"]
    command += ["-c", textwrap.dedent(code), *args]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stacks = native_stacks(proc.pid)
        proc.kill()
        out, err = proc.communicate()
        raise Hung(
            f"process {proc.pid} did not exit within {timeout:g} s; its threads:\n{stacks}\n"
            f"--- stdout\n{out}\n--- stderr\n{err}"
        ) from None
    return subprocess.CompletedProcess(command, proc.returncode, out, err)
