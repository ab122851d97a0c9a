"""The tests' thread helpers: snakepit_bridge.concurrency.run_concurrently with the suite's bound.

Every test that needs N threads started together uses these (or ``run_concurrently`` itself):
the threads wait on a Barrier, a worker's exception is re-raised here (with a note naming the
worker), and a deadlock fails with the stuck threads' stacks instead of hanging the run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from snakepit_bridge.concurrency import run_concurrently

T = TypeVar("T")

# Generous: only there so that a deadlock fails the test instead of hanging the run.
HANG_TIMEOUT = 300.0


def run_threads(target: Callable[[int], T], threads: int) -> list[T]:
    """``target(index)`` in ``threads`` threads released together; the results in index order."""
    __tracebackhide__ = True
    return run_concurrently(target, threads, with_index=True, timeout=HANG_TIMEOUT)


def hammer(call: Callable[[], object], threads: int, per_thread: int) -> int:
    """Call ``call()`` ``per_thread`` times in each of ``threads`` threads started together.

    Returns the oracle total: each thread counts its own calls in a local variable (no sharing,
    so no race), and the counts are summed after the join.
    """

    def worker(_index: int) -> int:
        done = 0
        for _ in range(per_thread):
            call()
            done += 1
        return done

    return sum(run_threads(worker, threads))
