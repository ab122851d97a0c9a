"""thread_safe_method on async def, generator and async generator functions.

Calling such a function only makes the coroutine or generator; the request lasts while its body
runs: it begins at the first step, ends when the body returns, is exhausted, is closed (not an
error) or raises (an error: a cancelled task is one), and calls the body makes count within it.
Two tasks interleaving on one thread are two requests.
"""

from __future__ import annotations

import asyncio
import collections.abc
import gc
import inspect
import threading
import warnings

import pytest

from _threads import run_threads
from snakepit_bridge import ThreadSafeAdapter, _native, thread_safe_method


class Kinds(ThreadSafeAdapter):
    __thread_safe__ = True

    def __init__(self) -> None:
        super().__init__()
        self.inner_calls = 0
        self.finalised: list[str] = []

    @thread_safe_method
    def sync_call(self) -> int:
        with self.acquire_lock():
            self.inner_calls += 1
        return 1

    @thread_safe_method
    async def coro(self, value: int, fail: bool = False, pause: float = 0.0) -> int:
        await asyncio.sleep(pause)
        self.sync_call()  # made by the body: counts within its request
        if fail:
            raise ValueError(value)
        return value

    @thread_safe_method
    def gen(self, n: int, fail_at: int = -1):
        try:
            for i in range(n):
                if i == fail_at:
                    raise KeyError(i)
                self.sync_call()
                yield i
            return "done"
        finally:
            self.finalised.append("gen")

    @thread_safe_method
    async def agen(self, n: int, fail_at: int = -1):
        try:
            for i in range(n):
                if i == fail_at:
                    raise KeyError(i)
                await asyncio.sleep(0)
                self.sync_call()
                yield i
        finally:
            self.finalised.append("agen")


def counts(adapter: ThreadSafeAdapter) -> tuple[int, int, int, int]:
    t = adapter.get_stats()["tracker"]
    return t["total_requests"], t["completed_requests"], t["errors"], t["active_requests"]


# --- what the decorated methods say they are ---------------------------------------------------


def test_inspect_tells_the_truth_about_each_kind() -> None:
    a = Kinds()
    for target in (Kinds, a):
        assert inspect.iscoroutinefunction(target.coro)
        assert inspect.isgeneratorfunction(target.gen)
        assert inspect.isasyncgenfunction(target.agen)
        assert not inspect.iscoroutinefunction(target.sync_call)
        assert not inspect.isgeneratorfunction(target.sync_call)
        assert not inspect.isasyncgenfunction(target.coro)
    assert list(inspect.signature(a.coro).parameters) == ["value", "fail", "pause"]
    assert Kinds.coro.__code__ is Kinds.coro.__func__.__code__
    assert Kinds.coro.__defaults__ == (False, 0.0)


def test_the_objects_follow_their_protocols() -> None:
    a = Kinds()
    coro = a.coro(1)
    assert asyncio.iscoroutine(coro) and isinstance(coro, collections.abc.Coroutine)
    assert coro.__qualname__ == "Kinds.coro" and coro.cr_frame is not None  # forwarded
    assert asyncio.run(coro) == 1
    gen = a.gen(2)
    assert isinstance(gen, collections.abc.Iterator) and iter(gen) is gen
    assert gen.gi_code.co_name == "gen"
    assert list(gen) == [0, 1]
    agen = a.agen(2)
    assert isinstance(agen, collections.abc.AsyncIterator)

    async def collect() -> list[int]:
        return [x async for x in agen]

    assert asyncio.run(collect()) == [0, 1]
    assert counts(a) == (3, 3, 0, 0)
    assert a.inner_calls == 5  # made inside those three requests: not counted again


def test_a_generator_return_value_reaches_yield_from() -> None:
    a = Kinds()

    def outer():
        result = yield from a.gen(2)
        return result

    driver = outer()
    assert list(driver) == [0, 1]
    with pytest.raises(StopIteration) as stopped:
        next(a.gen(0))
    assert stopped.value.value == "done"


# --- when the request begins and ends -----------------------------------------------------------


def test_a_coroutine_request_covers_its_body_not_its_creation() -> None:
    a = Kinds()
    coro = a.coro(1, pause=0.05)
    assert counts(a) == (0, 0, 0, 0)  # made, not started

    async def main() -> None:
        task = asyncio.ensure_future(coro)
        await asyncio.sleep(0.01)
        assert counts(a) == (1, 0, 0, 1)  # running, suspended in its sleep
        await task

    asyncio.run(main())
    assert counts(a) == (1, 1, 0, 0)
    assert a.get_stats()["tracker"]["max_duration"] >= 0.04


def test_errors_are_counted_once_and_interleaved_tasks_separately() -> None:
    """Ten tasks on one thread, five failing: ten requests, five errors; the calls their bodies
    make count within them."""
    a = Kinds()

    async def main() -> list[object]:
        return await asyncio.gather(
            *(a.coro(i, fail=bool(i % 2), pause=0.01) for i in range(10)), return_exceptions=True
        )

    results = asyncio.run(main())
    assert [isinstance(r, ValueError) for r in results] == [bool(i % 2) for i in range(10)]
    assert counts(a) == (10, 10, 5, 0)
    assert a.inner_calls == 10


def test_a_cancelled_task_ends_its_request_as_an_error() -> None:
    a = Kinds()

    async def main() -> None:
        task = asyncio.ensure_future(a.coro(1, pause=10))
        await asyncio.sleep(0.01)
        assert counts(a) == (1, 0, 0, 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert counts(a) == (1, 1, 1, 0)


def test_a_coroutine_never_awaited_is_no_request() -> None:
    a = Kinds()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        coro = a.coro(1)
        del coro
        gc.collect()
    assert counts(a) == (0, 0, 0, 0)
    assert any("was never awaited" in str(w.message) for w in caught)


def test_throw_and_close_before_the_first_step() -> None:
    a = Kinds()
    a.gen(3).close()  # never started: nothing ran, no request
    assert counts(a) == (0, 0, 0, 0)
    with pytest.raises(OSError):
        a.gen(3).throw(OSError("at the start"))  # the body starts by raising
    assert counts(a) == (1, 1, 1, 0)


def test_generators_end_when_exhausted_closed_or_raising() -> None:
    a = Kinds()
    assert list(a.gen(3)) == [0, 1, 2]
    assert counts(a) == (1, 1, 0, 0)
    g = a.gen(10)
    next(g)
    assert counts(a) == (2, 1, 0, 1)  # suspended between items: still running
    g.close()  # closed early: ended, not an error
    assert counts(a) == (2, 2, 0, 0)
    with pytest.raises(KeyError):
        list(a.gen(5, fail_at=2))  # an error mid-stream: counted once
    assert counts(a) == (3, 3, 1, 0)
    g = a.gen(10)
    next(g)
    del g  # dropped mid-stream: closed early
    gc.collect()
    assert counts(a) == (4, 4, 1, 0)
    assert a.finalised == ["gen"] * 4


def test_async_generators_end_when_exhausted_closed_or_raising() -> None:
    a = Kinds()

    async def main() -> None:
        assert [x async for x in a.agen(3)] == [0, 1, 2]
        assert counts(a) == (1, 1, 0, 0)
        agen = a.agen(10)
        assert await agen.__anext__() == 0
        assert counts(a) == (2, 1, 0, 1)
        await agen.aclose()  # closed early: not an error
        assert counts(a) == (2, 2, 0, 0)
        with pytest.raises(KeyError):
            async for _ in a.agen(5, fail_at=2):
                pass
        assert counts(a) == (3, 3, 1, 0)
        agen = a.agen(3)
        assert await agen.asend(None) == 0
        with pytest.raises(OSError):
            await agen.athrow(OSError("thrown in"))
        assert counts(a) == (4, 4, 2, 0)
        async for _ in a.agen(10):
            break  # left early (`async for` does not close it), then dropped: not an error
        agen = a.agen(10)
        assert await agen.__anext__() == 0
        del agen  # dropped mid-stream
        gc.collect()
        assert counts(a) == (6, 6, 2, 0)

    asyncio.run(main())


def test_a_generator_started_on_one_thread_may_finish_on_another() -> None:
    a = Kinds()
    g = a.gen(4)
    assert next(g) == 0
    rest = run_threads(lambda _: list(g), 1)[0]
    assert rest == [1, 2, 3]
    assert counts(a) == (1, 1, 0, 0)
    assert a.get_stats()["tracker"]["requests_by_thread"] == {"MainThread": 1}


def test_between_items_the_callers_own_calls_count_separately() -> None:
    """The generator's request is current only while its body runs, not in the loop that
    consumes it."""
    a = Kinds()
    for _ in a.gen(3):
        a.sync_call()
    assert counts(a) == (4, 4, 0, 0)


def test_one_generator_cannot_be_resumed_by_two_threads_at_once() -> None:
    a = Kinds()
    inside, release = threading.Event(), threading.Event()

    class Blocking(ThreadSafeAdapter):
        @thread_safe_method
        def gen(self):
            inside.set()
            release.wait(10)
            yield 1

    b = Blocking()
    g = b.gen()
    first = threading.Thread(target=lambda: next(g))
    first.start()
    inside.wait(10)
    try:
        with pytest.raises(ValueError, match="already executing"):
            next(g)
    finally:
        release.set()
        first.join()
    assert counts(b) == (1, 0, 0, 1)
    g.close()
    assert counts(b) == (1, 1, 0, 0)
    del a


# --- many threads -------------------------------------------------------------------------------


def test_sixteen_threads_each_with_an_event_loop_count_exactly() -> None:
    a = Kinds()
    per_thread = 50

    def worker(index: int) -> None:
        async def main() -> None:
            results = await asyncio.gather(
                *(a.coro(i, fail=i % 5 == 0) for i in range(per_thread)), return_exceptions=True
            )
            assert sum(isinstance(r, ValueError) for r in results) == per_thread // 5
            assert [x async for x in a.agen(3)] == [0, 1, 2]

        asyncio.run(main())
        assert list(a.gen(3)) == [0, 1, 2]

    run_threads(worker, 16)
    total = 16 * (per_thread + 2)
    assert counts(a) == (total, total, 16 * per_thread // 5, 0)
    assert a.inner_calls == 16 * (per_thread + 6)
    assert a.get_stats()["tracker"]["active_threads"] == 0


def test_the_call_observer_sees_the_body_start_and_end() -> None:
    a = Kinds()
    seen: list[tuple[str, bool]] = []
    _native.set_call_observer(
        lambda method, adapter, entering: seen.append((method.__name__, entering))
    )
    try:
        asyncio.run(a.coro(1))
        list(a.gen(1))
    finally:
        _native.set_call_observer(None)
    assert seen == [
        ("coro", True),
        ("sync_call", True),
        ("sync_call", False),
        ("coro", False),
        ("gen", True),
        ("sync_call", True),
        ("sync_call", False),
        ("gen", False),
    ]


def test_on_something_not_an_adapter_they_call_through() -> None:
    class NotAnAdapter:
        @thread_safe_method
        async def coro(self) -> int:
            return 7

    coro = NotAnAdapter().coro()
    assert inspect.iscoroutine(coro)  # the plain coroutine, untracked
    assert asyncio.run(coro) == 7


_FIRST_SLOT_SCRIPTS = {
    "generator left early and dropped": """
import gc
from snakepit_bridge import ThreadSafeAdapter, thread_safe_method

class A(ThreadSafeAdapter):
    __thread_safe__ = True

    @thread_safe_method
    def gen(self):
        yield 1
        yield 2

a = A()                      # its tracker's first slot is the process's first slot
for _ in a.gen():
    break                    # left early, then dropped
g = a.gen(); next(g); del g  # dropped mid-way
gc.collect()
s = a.get_stats()["tracker"]
print(s["total_requests"], s["completed_requests"], s["active_requests"])
""",
    "track_request ended on another thread": """
import threading
from snakepit_bridge import RequestTracker

t = RequestTracker()
r = t.track_request()
r.__enter__()
other = threading.Thread(target=r.__exit__, args=(None, None, None))
other.start()
other.join()
s = t.get_stats()
print(s["total_requests"], s["completed_requests"], s["active_requests"])
""",
}


@pytest.mark.parametrize("case", sorted(_FIRST_SLOT_SCRIPTS))
def test_requests_on_the_first_slot_of_a_process_end_when_dropped_or_moved(case):
    """The first per-thread slot a process makes carries serial 1, not 0 (0 means "started on
    no slot" to a request): a request started there and ended by the drop or other-thread path
    must still leave active_requests at 0. Earlier tests of a suite have always used that first
    slot already, so each case runs in a fresh interpreter where nothing else did."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _FIRST_SLOT_SCRIPTS[case]],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    total, completed, active = out.split()
    assert total == completed != "0"
    assert active == "0"
