"""Hammer tests of the native core: exact totals under many threads started together."""

from __future__ import annotations

import sys
import sysconfig

import pytest

from _threads import run_threads
from snakepit_bridge import ThreadSafeAdapter, thread_safe_method


class Counter(ThreadSafeAdapter):
    __thread_safe__ = True

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    @thread_safe_method
    def increment(self) -> int:
        with self.acquire_lock():
            value = self.count  # read-modify-write: exact only under the lock
            self.count = value + 1
            return self.count

    @thread_safe_method
    def increment_nested(self) -> int:
        with self.acquire_lock():
            return self.increment()


@pytest.fixture(autouse=True)
def _fast_switching():
    # On GIL builds a tiny switch interval exposes races the GIL would otherwise hide.
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(previous)


def test_16_threads_x_10000_tracked_increments():
    adapter = Counter()
    threads, iterations = 16, 10_000

    def work(_: int) -> int:
        last = 0
        for _ in range(iterations):
            value = adapter.increment()
            assert value > last  # the counter never goes backwards for a thread
            last = value
        return last

    run_threads(work, threads)
    assert adapter.count == threads * iterations == 160_000
    tracker = adapter.get_stats()["tracker"]
    assert tracker["total_requests"] == 160_000
    assert tracker["completed_requests"] == 160_000
    assert tracker["active_requests"] == 0 and tracker["errors"] == 0
    assert tracker["threads_seen"] == threads
    assert sum(tracker["requests_by_thread"].values()) == 160_000


def test_nested_locked_calls_count_once():
    adapter = Counter()

    def work(_: int) -> None:
        for _ in range(2_000):
            adapter.increment_nested()

    run_threads(work, 8)
    assert adapter.count == 16_000
    assert adapter.get_stats()["tracker"]["total_requests"] == 16_000


def test_mixed_primitives_under_load():
    adapter = Counter()

    def work(index: int) -> int:
        adapter.set_thread_local("mine", index)
        for i in range(2_000):
            adapter.increment()
            assert adapter.get_thread_local("mine") == index
            if i % 500 == 0:
                adapter.get_stats()
        return adapter.get_thread_local("mine")

    assert run_threads(work, 16) == list(range(16))
    assert adapter.count == 32_000


def test_gil_disabled_after_heavy_use():
    if not sysconfig.get_config_var("Py_GIL_DISABLED"):
        pytest.skip("GIL build")
    adapter = Counter()
    run_threads(lambda _i: [adapter.increment() for _ in range(2_000)], 16)
    assert adapter.count == 32_000
    assert adapter.get_stats()["tracker"]["total_requests"] == 32_000
    assert sys._is_gil_enabled() is False
