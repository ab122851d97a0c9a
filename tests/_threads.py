"""Thread helpers for the native-core tests: start together, re-raise worker failures."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def run_threads(count: int, target: Callable[[int], Any], timeout: float = 120.0) -> list[Any]:
    """Run ``target(index)`` in ``count`` threads released together by a Barrier.

    Returns the results in index order; the first worker exception is re-raised here.
    """
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            barrier.wait()
            results[index] = target(index)
        except BaseException as exc:  # re-raised in the test thread
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(i,), name=f"hammer-{i}") for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
        if thread.is_alive():
            raise TimeoutError(f"{thread.name} did not finish within {timeout} s")
    real = [e for e in errors if not isinstance(e, threading.BrokenBarrierError)]
    if real or errors:
        raise (real or errors)[0]
    return results
