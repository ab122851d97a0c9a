"""Regressions from the C review: fork while another thread holds a Python-level lock and
needs the registry; Condition.wait() interrupted while it takes the lock back."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX fork and signals")


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )


def test_fork_while_a_thread_holds_the_logging_lock_and_needs_the_registry():
    # logging's before-fork hook runs after ours; if ours held the registry mutex across the
    # fork, this thread (holding logging's lock, creating a lock) and the forker would deadlock.
    result = run(
        """
        import logging, os, threading, time
        from snakepit_bridge import _native, ThreadSafeAdapter
        ready = threading.Event()
        def worker():
            logging._acquireLock() if hasattr(logging, "_acquireLock") else logging._lock.acquire()
            try:
                ready.set()
                time.sleep(0.3)
                _native.RLock()
                ThreadSafeAdapter().set_thread_local("k", 1)
            finally:
                if hasattr(logging, "_releaseLock"):
                    logging._releaseLock()
                else:
                    logging._lock.release()
        thread = threading.Thread(target=worker)
        thread.start()
        ready.wait()
        time.sleep(0.05)
        pid = os.fork()
        if pid == 0:
            a = ThreadSafeAdapter()
            with a.acquire_lock():
                a.set_thread_local("k", 2)
            os._exit(0 if a.get_thread_local("k") == 2 else 3)
        _, status = os.waitpid(pid, 0)
        thread.join()
        print("child", os.waitstatus_to_exitcode(status))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "child 0"


@pytest.mark.parametrize("kind", ["native", "adapter"])
def test_condition_wait_interrupted_keeps_the_lock(kind):
    result = run(
        f"""
        import os, signal, threading, time
        from snakepit_bridge import RLock, ThreadSafeAdapter
        lock = RLock() if {kind!r} == "native" else ThreadSafeAdapter().lock
        cond = threading.Condition(lock)
        def holder():
            with cond:
                cond.notify()
                threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
                time.sleep(0.6)  # keep the lock while the waiter takes it back
        with cond:
            threading.Thread(target=holder).start()
            try:
                cond.wait(10)
            except KeyboardInterrupt:
                print("interrupted, owned:", lock._is_owned())
        print("released:", not lock.locked())
        """
    )
    assert result.returncode == 0, result.stderr
    # The signal lands while the waiter takes the lock back: it must surface holding it.
    assert result.stdout.splitlines() == ["interrupted, owned: True", "released: True"]
