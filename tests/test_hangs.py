"""Hangs that only show up once in many runs: fork and interpreter exit under load.

Each scenario is repeated enough times that a one-in-a-hundred hang shows up in CI, and a hung
process (or forked child) fails the test with every thread's native stack (see ``_hang``), so a
future hang explains itself in the CI log.

* fork while other threads read statistics, make adapters and slots, and end threads: the
  child must not inherit a lock (or a shared dict's per-object lock) that nobody will release;
* the interpreter exits while daemon threads are busy with the library: a daemon thread that
  can never run again must not keep a lock the exiting main thread needs.
"""

from __future__ import annotations

import concurrent.futures
import os

import pytest

from _hang import run_python

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")

# SNAKEPIT_HANG_SCALE multiplies both counts: above 1 for a longer local hunt, below 1 under
# ThreadSanitizer (scripts/tsan.sh), where each fork and interpreter start costs far more.
_SCALE = float(os.environ.get("SNAKEPIT_HANG_SCALE", "1"))
FORKS = max(10, int(300 * _SCALE))
EXITS = max(4, int(100 * _SCALE))
CHILD_TIMEOUT = 30  # seconds; a healthy child takes milliseconds


def test_fork_storm_while_threads_use_the_registry():
    """Fork repeatedly while other threads read statistics (which build dicts), create
    adapters and slots, take locks and end threads: no child deadlocks or fails."""
    proc = run_python(
        f"""
        import os, threading
        from _hang import wait_child
        from snakepit_bridge import ThreadSafeAdapter

        a = ThreadSafeAdapter()
        stop = threading.Event()

        def stats():
            while not stop.is_set():
                a.get_stats()
                a.tracker.active_requests()

        def churn(i):
            while not stop.is_set():
                b = ThreadSafeAdapter()
                b.set_thread_local("k", i)
                with b.track_request():
                    pass
                with a.acquire_lock():
                    a.set_thread_local("x", i)
                del b

        def short_lived():
            while not stop.is_set():
                t = threading.Thread(target=lambda: a.set_thread_local("y", 1))
                t.start(); t.join()

        workers = [threading.Thread(target=stats) for _ in range(2)]
        workers += [threading.Thread(target=churn, args=(i,)) for i in range(2)]
        workers.append(threading.Thread(target=short_lived))
        for t in workers:
            t.start()
        bad = []
        for k in range({FORKS}):
            pid = os.fork()
            if pid == 0:
                try:
                    a.get_stats()
                    with a.acquire_lock(timeout=10):
                        a.set_thread_local("child", 1)
                    c = ThreadSafeAdapter()
                    c.set_thread_local("z", 2)
                    with c.track_request():
                        pass
                    if c.get_stats()["tracker"]["total_requests"] != 1:
                        os._exit(3)
                except BaseException:
                    os._exit(5)
                os._exit(0)
            code = wait_child(pid, {CHILD_TIMEOUT})
            if code != 0:
                bad.append((k, code))
                break
        stop.set()
        for t in workers:
            t.join()
        for k, code in bad:
            print(f"fork {{k}}: {{code}}")
        print("FORKS OK" if not bad else "FORKS FAILED")
        """,
        timeout=FORKS * CHILD_TIMEOUT,
        env={"PYTHONWARNINGS": "ignore::DeprecationWarning"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("FORKS OK"), proc.stdout + proc.stderr


_BUSY_DAEMONS = """
import sys, threading, time
from snakepit_bridge import ThreadSafeAdapter, thread_safe_method

class Busy(ThreadSafeAdapter):
    @thread_safe_method
    def work(self, i):
        self.set_thread_local("k", i)
        return self.get_thread_local("k")

shared = Busy()

def busy(i):
    while True:
        a = Busy()
        a.work(i)
        a.set_thread_local("k", i)
        shared.work(i)
        shared.get_stats()
        shared.tracker.active_requests()
        with a.track_request():
            pass
        del a

def short_lived():
    while True:
        t = threading.Thread(target=shared.work, args=(0,), daemon=True)
        t.start(); t.join()

for i in range(6):
    threading.Thread(target=busy, args=(i,), daemon=True).start()
for _ in range(2):
    threading.Thread(target=short_lived, daemon=True).start()
time.sleep(float(sys.argv[1]))
print("MAIN EXITS")
"""


def test_interpreter_exit_with_busy_daemon_threads():
    """The main thread exits while daemon threads create adapters, store thread-local values,
    read statistics and end short threads: every run must exit promptly, with status 0."""

    def one_run(k: int) -> str | None:
        # Vary the moment of exit a little so it lands in different sections.
        proc = run_python(_BUSY_DAEMONS, timeout=60, args=[str(0.01 + (k % 7) * 0.005)])
        if proc.returncode != 0 or "MAIN EXITS" not in proc.stdout:
            return f"run {k}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return None

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        failures = [f for f in pool.map(one_run, range(EXITS)) if f is not None]
    assert not failures, "\n\n".join(failures)
