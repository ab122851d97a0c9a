"""Hand-off between a lock taken without its handle and threads that wait for it.

On GIL builds an uncontended acquire only records the owner (see src/lock.h); a thread that
must wait takes the handle on the owner's behalf and the owner's last release frees it. These
tests drive that hand-off from both sides: waiters parked while the owner releases, waiters
that give up, a storm of short sections with the GIL switching inside them, a signal handler
that takes the lock while its thread waits for it, and fork with waiters (the child forgets
them). They hold on free-threaded builds as well, where every owner takes the handle.

Every wait is bounded; no test asserts on timings (a sleep only makes the interesting
interleaving likely, and the test holds whichever interleaving happens).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from _threads import HANG_TIMEOUT, run_threads
from snakepit_bridge import RLock, ThreadSafeAdapter

SUBPROCESS_TIMEOUT = 120  # seconds; only a hang reaches it


class Plain(ThreadSafeAdapter):
    pass


@pytest.fixture(params=["standalone", "adapter"])
def lock(request: pytest.FixtureRequest) -> Any:
    return RLock() if request.param == "standalone" else Plain().lock


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Make the GIL change hands every microsecond or so (GIL builds), so that owners are
    interrupted inside their sections and the other threads pile up waiting."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def hold_while(lock: Any, levels: int = 1) -> tuple[threading.Thread, threading.Event]:
    """A thread that takes `lock` (uncontended: on GIL builds without the handle) `levels`
    times and holds it until the returned event is set, then releases every level."""
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        for _ in range(levels):
            assert lock.acquire()
        held.set()
        release.wait(HANG_TIMEOUT)
        for _ in range(levels):
            lock.release()

    thread = threading.Thread(target=holder)
    thread.start()
    assert held.wait(HANG_TIMEOUT)
    return thread, release


@pytest.mark.parametrize("levels", [1, 3])
def test_parked_waiters_are_woken_by_an_owner_that_took_the_lock_uncontended(lock, levels):
    for _round in range(5):
        holder, release = hold_while(lock, levels)
        waiting = threading.Barrier(4)

        def waiter(_: int) -> bool:
            waiting.wait(HANG_TIMEOUT)
            got = lock.acquire(timeout=HANG_TIMEOUT)
            if got:
                lock.release()
            return got

        def release_later() -> None:
            waiting.wait(HANG_TIMEOUT)
            time.sleep(0.05)  # let the waiters park
            release.set()

        releaser = threading.Thread(target=release_later)
        releaser.start()
        assert run_threads(waiter, 3) == [True, True, True]
        releaser.join(HANG_TIMEOUT)
        holder.join(HANG_TIMEOUT)
        assert not lock.locked()
    # Uncontended again, and still contended correctly afterwards.
    assert lock.acquire(blocking=False)
    lock.release()


def test_waiters_that_give_up_leave_the_hand_off_working(lock):
    holder, release = hold_while(lock)
    # They time out while the holder keeps it: the handle stays taken for the holder.
    assert run_threads(lambda _: lock.acquire(timeout=0.02), 2) == [False, False]
    assert lock.acquire(blocking=False) is False
    release.set()
    holder.join(HANG_TIMEOUT)
    assert not lock.locked()
    # Its release freed the handle: an uncontended owner, then a parked waiter, hand off again.
    holder, release = hold_while(lock)
    started = threading.Event()

    def waiter() -> bool:
        started.set()
        got = lock.acquire(timeout=HANG_TIMEOUT)
        if got:
            lock.release()
        return got

    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.append(waiter()))
    thread.start()
    assert started.wait(HANG_TIMEOUT)
    time.sleep(0.05)  # let it park
    release.set()
    thread.join(HANG_TIMEOUT)
    holder.join(HANG_TIMEOUT)
    assert results == [True]
    assert not lock.locked()


@pytest.mark.usefixtures("fast_switching")
def test_storm_of_short_sections_is_exclusive_and_exact(lock):
    """Barrier-started threads take the lock every way there is (with, acquire with and
    without a timeout, non-blocking retries, reentrantly, through a Condition), often giving
    up the GIL inside: every section is alone and every count exact."""
    threads, rounds = 6, 600
    inside: list[int | None] = [None]
    counter = [0]
    overlaps = [0]
    condition = threading.Condition(lock)

    def section(me: int) -> None:
        if inside[0] is not None:
            overlaps[0] += 1
        inside[0] = me
        value = counter[0]
        if value % 3 == 0:
            time.sleep(0)  # give up the GIL while holding the lock
        counter[0] = value + 1
        if inside[0] != me:
            overlaps[0] += 1
        inside[0] = None

    def worker(index: int) -> int:
        me = threading.get_ident()
        done = 0
        for i in range(rounds):
            how = (i + index) % 6
            if how == 0:
                with lock:
                    section(me)
            elif how == 1:
                assert lock.acquire(timeout=HANG_TIMEOUT)
                section(me)
                lock.release()
            elif how == 2:
                for _attempt in range(100):
                    if lock.acquire(blocking=False):
                        break
                    time.sleep(0)
                else:
                    assert lock.acquire(timeout=HANG_TIMEOUT)
                section(me)
                lock.release()
            elif how == 3:
                with lock:
                    with lock:
                        section(me)
                    assert lock._recursion_count() == 1
            elif how == 4:
                with condition:
                    condition.wait(0)  # releases and takes it back
                    section(me)
            else:
                assert lock.acquire()
                section(me)
                lock.release()
            done += 1
        return done

    assert sum(run_threads(worker, threads)) == threads * rounds
    assert counter[0] == threads * rounds
    assert overlaps[0] == 0
    assert not lock.locked()
    assert lock.acquire(blocking=False)
    lock.release()


def run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_signal_handler_takes_the_lock_while_its_thread_waits_for_it():
    out = run(
        """
        import os, signal, threading, time
        from snakepit_bridge import RLock
        lock = RLock()
        held, release = threading.Event(), threading.Event()
        in_handler = []
        def handler(signum, frame):
            release.set()  # the holder may let go now
            with lock:  # waits inside the main thread's own wait
                in_handler.append(lock._recursion_count())
        signal.signal(signal.SIGUSR1, handler)
        def holder():
            with lock:
                held.set()
                time.sleep(0.2)  # the main thread parks meanwhile
                os.kill(os.getpid(), signal.SIGUSR1)
                release.wait(60)
                time.sleep(0.1)  # the handler parks too
        thread = threading.Thread(target=holder)
        thread.start()
        held.wait(60)
        got = lock.acquire(timeout=60)
        print("ACQUIRED", got, lock._recursion_count(), in_handler)
        lock.release()
        thread.join(60)
        print("FREE", not lock.locked(), lock.acquire(blocking=False))
        """
    )
    assert out.split() == ["ACQUIRED", "True", "1", "[1]", "FREE", "True", "True"]


FORK_WITH_A_WAITER = """
    import os, threading, time
    from snakepit_bridge import RLock, ThreadSafeAdapter
    lock = RLock() if {kind!r} == "standalone" else ThreadSafeAdapter().lock
    assert lock.acquire()  # uncontended
    waiting = threading.Event()
    got = []
    def waiter():
        waiting.set()
        got.append(lock.acquire(timeout=60))
        lock.release()
    thread = threading.Thread(target=waiter)
    thread.start()
    waiting.wait(60)
    time.sleep(0.1)  # let it park
    pid = os.fork()
    if pid == 0:
        # The waiter does not exist here: the lock is ours, and once released it is taken
        # and handed off as usual.
        ok = lock._recursion_count() == 1
        lock.release()
        ok = ok and not lock.locked()
        assert lock.acquire(blocking=False)
        child_got = []
        started = threading.Event()
        def child_waiter():
            started.set()
            child_got.append(lock.acquire(timeout=60))
            lock.release()
        t = threading.Thread(target=child_waiter)
        t.start()
        started.wait(60)
        time.sleep(0.05)
        lock.release()
        t.join(60)
        ok = ok and child_got == [True] and not lock.locked()
        os._exit(0 if ok else 1)
    lock.release()
    thread.join(60)
    _, status = os.waitpid(pid, 0)
    print("parent", got, "child", os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
@pytest.mark.parametrize("kind", ["standalone", "adapter"])
def test_fork_while_a_thread_waits_for_the_forking_owner(kind):
    out = run(FORK_WITH_A_WAITER.format(kind=kind))
    assert out.split() == ["parent", "[True]", "child", "0"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_fork_from_a_signal_handler_of_a_waiting_thread():
    """The waiting thread itself forks (from a signal handler its wait runs). In the child
    its wait goes on, forgotten by the lock, while a new thread takes the lock: the wait must
    end owning the lock only after that thread released it."""
    out = run(
        """
        import os, signal, threading, time
        from snakepit_bridge import RLock
        lock = RLock()
        held = threading.Event()
        state = {}
        def handler(signum, frame):
            pid = os.fork()
            if pid:
                state["pid"] = pid
                return
            # Child: the holder is gone, so the lock is free; a new thread takes it.
            taken = threading.Event()
            def taker():
                with lock:
                    taken.set()
                    time.sleep(0.2)  # the main thread's wait resumes meanwhile
                    state["taker_done"] = lock._recursion_count() == 1
            state["taker"] = threading.Thread(target=taker)
            state["taker"].start()
            taken.wait(60)
        signal.signal(signal.SIGUSR1, handler)
        def holder():
            with lock:
                held.set()
                time.sleep(0.2)  # the main thread parks meanwhile
                os.kill(os.getpid(), signal.SIGUSR1)
                time.sleep(0.2)
        thread = threading.Thread(target=holder)
        thread.start()
        held.wait(60)
        got = lock.acquire(timeout=60)
        if "taker" in state:  # the child
            # Owned only once the taker's section was over.
            ok = got and lock._recursion_count() == 1 and state.get("taker_done") is True
            lock.release()
            state["taker"].join(60)
            ok = ok and not lock.locked()
            ok = ok and lock.acquire(blocking=False)
            os._exit(0 if ok else 1)
        lock.release()
        thread.join(60)
        _, status = os.waitpid(state["pid"], 0)
        print("parent", got, "child", os.waitstatus_to_exitcode(status))
        """
    )
    assert out.split() == ["parent", "True", "child", "0"]
