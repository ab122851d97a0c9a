"""Shared helpers for the Python-layer tests: barrier-started thread hammers and checkers."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from snakepit_bridge import thread_safety_checker as tsc
from snakepit_bridge.checker import hooks

T = TypeVar("T")

# Generous: only there so a deadlock fails the test instead of hanging the run.
HANG_TIMEOUT = 300.0


def run_threads(worker: Callable[[int], T], n_threads: int) -> list[T]:
    """Run ``worker(index)`` in ``n_threads`` threads released together by a Barrier.

    Returns the results in thread order. The first exception raised in a worker is re-raised
    here (with the count of failed workers), so a failure inside a thread fails the test.
    """
    barrier = threading.Barrier(n_threads)
    results: list[T | None] = [None] * n_threads
    errors: list[tuple[int, BaseException]] = []
    errors_lock = threading.Lock()

    def target(index: int) -> None:
        try:
            barrier.wait()
            results[index] = worker(index)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            with errors_lock:
                errors.append((index, exc))
            barrier.abort()

    threads = [
        threading.Thread(target=target, args=(i,), name=f"hammer-{i}") for i in range(n_threads)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HANG_TIMEOUT)
    if any(thread.is_alive() for thread in threads):
        raise AssertionError("hammer threads did not finish (deadlock?)")
    # A BrokenBarrierError is only an echo of another worker's failure, unless it is all
    # there is (the code under test broke a barrier of its own): then it is the failure.
    real = [(i, e) for i, e in errors if not isinstance(e, threading.BrokenBarrierError)] or errors
    if real:
        index, first = real[0]
        raise AssertionError(
            f"{len(real)} worker(s) failed; worker {index} raised {first!r}"
        ) from first
    return results  # type: ignore[return-value]


def hammer(call: Callable[[], object], n_threads: int, per_thread: int) -> int:
    """Call ``call()`` ``per_thread`` times in each of ``n_threads`` barrier-started threads.

    Returns the oracle total: each thread counts its own calls in a local variable (no sharing,
    so no race), and the counts are summed after the join.
    """

    def worker(_index: int) -> int:
        done = 0
        for _ in range(per_thread):
            call()
            done += 1
        return done

    return sum(run_threads(worker, n_threads))


@contextmanager
def no_global_checking() -> Iterator[None]:
    """Make sure a test leaves the global checker disabled, whatever it did."""
    try:
        yield
    finally:
        tsc.disable_checking()
        tsc.get_global_checker().strict_mode = False


def live_checker_count() -> int:
    """How many checkers currently observe adapters."""
    return len(hooks.live_checkers())
