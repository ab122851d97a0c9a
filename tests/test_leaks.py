"""Leak checks: a million runs of each primitive leave memory flat.

Each primitive runs a warm-up, then ``N`` (1,000,000) times; the test then compares
* the process's resident set (``/proc/self/statm``) and
* the number of objects the garbage collector tracks
before and after, with a small fixed tolerance (a leak of one small object per call would
be tens of MB). A shorter ``tracemalloc`` pass per primitive catches smaller per-call leaks
of Python-allocator memory. ``SNAKEPIT_LEAK_ITERATIONS`` scales N down (scripts/valgrind.sh
runs this file under memcheck with a few thousand).
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import threading
import tracemalloc

import pytest

from snakepit_bridge import (
    RequestTracker,
    RLock,
    ThreadSafeAdapter,
    _native,
    thread_safe_method,
    tool,
)

N = int(os.environ.get("SNAKEPIT_LEAK_ITERATIONS", "1000000"))
WARMUP = max(N // 20, 1000)
TRACE_N = max(N // 10, 1000)
RSS_TOLERANCE = 4 << 20  # bytes over N calls: < 5 bytes per call on a million
TRACE_TOLERANCE = 64 << 10  # bytes over TRACE_N calls
GC_OBJECTS_TOLERANCE = 64
# scripts/valgrind.sh turns the tracemalloc pass off (tracemalloc's own bookkeeping is noise there).
TRACEMALLOC = os.environ.get("SNAKEPIT_LEAK_TRACEMALLOC", "1") != "0"
PAGE = os.sysconf("SC_PAGESIZE") if hasattr(os, "sysconf") else 4096


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class LeakAdapter(ThreadSafeAdapter):
    def __init__(self):
        super().__init__()
        self.n = 0

    @thread_safe_method
    def call(self, x):
        return x

    @thread_safe_method
    def call_nested(self, x):
        return self.call(x)

    @thread_safe_method
    def call_fail(self, x):
        raise ValueError(x)

    @thread_safe_method
    async def call_async(self, x):
        return self.call(x)

    @thread_safe_method
    async def call_async_fail(self, x):
        raise ValueError(x)

    @thread_safe_method
    def stream(self, n):
        for i in range(n):
            yield self.call(i)

    @thread_safe_method
    async def stream_async(self, n):
        for i in range(n):
            yield i


class Held:
    """Another thread holds the adapter lock for the duration of the block."""

    def __init__(self, adapter):
        self.adapter = adapter
        self.held = threading.Event()
        self.release = threading.Event()

    def _hold(self):
        with self.adapter.acquire_lock():
            self.held.set()
            self.release.wait()

    def __enter__(self):
        self.t = threading.Thread(target=self._hold)
        self.t.start()
        self.held.wait()
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.t.join()


# Each primitive: fn(adapter, n) runs it n times in a tight loop.


def p_with_lock(a, n):
    for _ in range(n):
        with a.acquire_lock():
            pass


def p_with_lock_nested(a, n):
    for _ in range(n):
        with a.acquire_lock():
            with a.acquire_lock():
                pass


def p_with_lock_timeout(a, n):
    for _ in range(n):
        with a.acquire_lock(timeout=1.0):
            pass


def p_lock_acquire_release(a, n):
    lock = a.lock
    for _ in range(n):
        lock.acquire()
        lock.release()


def p_lock_acquire_timeout(a, n):
    lock = a.lock
    for _ in range(n):
        lock.acquire(True, 1.0)
        lock.release()


def p_lock_queries(a, n):
    lock = a.lock
    with lock:
        for _ in range(n):
            lock.locked()
            lock._is_owned()
            lock._recursion_count()


def p_with_rlock(a, n):
    lock = a.lock
    for _ in range(n):
        with lock:
            with lock:
                pass


def p_rlock_bound_methods(a, n):
    # More bound __enter__/__exit__ alive at once than the one spare each the lock keeps.
    lock = a.lock
    for _ in range(n):
        enter, exit_, enter_again = lock.__enter__, lock.__exit__, lock.__enter__
        enter()
        enter_again()
        exit_(None, None, None)
        lock.__exit__(None, None, None)


def p_rlock_lifecycle(a, n):
    # A lock freed with spare bound-method memory frees that memory too.
    for _ in range(n // 10 or 1):
        with RLock():
            pass


def p_release_save_restore(a, n):
    lock = a.lock
    for _ in range(n):
        lock.acquire()
        state = lock._release_save()
        lock._acquire_restore(state)
        lock.release()


def p_lock_contended_nonblocking(a, n):
    with Held(a):
        lock = a.lock
        for _ in range(n):
            assert not lock.acquire(blocking=False)  # held by another thread


def p_lock_contended_timeout_error(a, n):
    # The TimeoutError path (message naming the class and the holder); 0-second timeouts.
    # It costs tens of microseconds (message building), so a twentieth of N.
    with Held(a):
        for _ in range(n // 20 or 1):
            try:
                with a.acquire_lock(timeout=0):
                    raise AssertionError("acquired a lock another thread holds")
            except TimeoutError:
                pass


def p_release_unowned_error(a, n):
    lock = a.lock
    for _ in range(n):
        try:
            lock.release()
        except RuntimeError:
            pass
        else:
            raise AssertionError("released a lock this thread does not own")


def p_thread_local_set_get(a, n):
    for i in range(n):
        a.set_thread_local("k", i)
        a.get_thread_local("k")


def p_thread_local_new_keys_cleared(a, n):
    # Fresh keys and values every time, cleared one by one and all at once.
    for i in range(n):
        a.set_thread_local(("key", i), [i])
        a.get_thread_local(("key", i))
        if i & 1:
            a.clear_thread_local(("key", i))
        else:
            a.clear_thread_local()


def p_thread_local_missing_default(a, n):
    d = object()
    for i in range(n):
        a.get_thread_local(i, d)


def p_thread_local_unhashable_error(a, n):
    for _ in range(n):
        try:
            a.set_thread_local([], 1)
        except TypeError:
            pass
        else:
            raise AssertionError("stored a value under an unhashable key")


def p_tracked_call(a, n):
    call = a.call
    for i in range(n):
        call(i)


def p_tracked_call_bound_each_time(a, n):
    for i in range(n):
        a.call(i)  # descriptor __get__ + call


def p_tracked_call_nested(a, n):
    for i in range(n):
        a.call_nested(i)


def p_tracked_call_kwargs(a, n):
    for i in range(n):
        a.call(x=i)


def p_tracked_call_error(a, n):
    f = a.call_fail
    for i in range(n):
        try:
            f(i)
        except ValueError:
            pass


def p_tracked_coroutine(a, n):
    # Driven by hand, as an event loop would (the body never suspends).
    for i in range(n):
        try:
            a.call_async(i).send(None)
        except StopIteration:
            pass


def p_tracked_coroutine_error(a, n):
    for i in range(n):
        try:
            a.call_async_fail(i).send(None)
        except ValueError:
            pass


def p_tracked_generator(a, n):
    for _ in range(n // 2 or 1):
        for _ in a.stream(2):
            pass


def p_tracked_generator_closed_early(a, n):
    for _ in range(n // 2 or 1):
        g = a.stream(5)
        next(g)
        g.close()


def p_tracked_async_generator(a, n):
    for _ in range(n // 4 or 1):
        agen = a.stream_async(2)
        while True:
            try:
                agen.__anext__().send(None)
            except StopIteration:
                continue  # a value
            except StopAsyncIteration:
                break


def p_track_request(a, n):
    for _ in range(n):
        with a.track_request():
            pass


def p_track_request_error(a, n):
    for _ in range(n):
        try:
            with a.track_request():
                raise KeyError
        except KeyError:
            pass


def p_tracker_start_end(a, n):
    tr = a.tracker
    for i in range(n):
        tr.start_request()
        tr.end_request(error=bool(i & 1))


def p_active_requests(a, n):
    tracker = a.tracker
    with tracker.track_request():
        for _ in range(n):
            assert tracker.active_requests() == 1


def p_get_stats(a, n):
    a.call(1)
    for _ in range(n // 4 or 1):  # ~4 small dict builds each: a quarter of N is as telling
        a.get_stats()
        a.get_stats_dict()


def p_adapter_lifecycle(a, n):
    # Create, use every part, drop: lock, thread-local storage (with a cycle), tracker.
    # Cycles wait for the collector; collect often so that garbage awaiting collection
    # (and, on free-threaded builds, memory whose free is delayed until a quiescent state)
    # stays small next to the tolerances.
    for i in range(n // 20 or 1):
        b = LeakAdapter()
        with b.acquire_lock():
            b.set_thread_local("self", b if i & 1 else i)
        b.call(i)
        del b
        if i % 200 == 0:
            gc.collect()


def _count_report(adapter, name, owns, deferred):
    pass


def p_observed_bypassing_writes(a, n):
    # Writes that bypass __setattr__ while a write observer is installed (3.12+: recorded by
    # the dict watcher, delivered at a report point): adapters made, written every way, dropped.
    _native.set_write_observer(_count_report)
    try:
        for i in range(n // 20 or 1):
            b = LeakAdapter()
            object.__setattr__(b, "x", i)
            vars(b)["y"] = [i]
            b.__dict__ = {"z": i}
            vars(b).clear()
            object.__setattr__(a, "k", i)
            b.n = i  # a report point
            del b
        _native.report_pending_writes()
    finally:
        _native.set_write_observer(None)


def p_tracker_lifecycle(a, n):
    for _ in range(n // 10 or 1):
        tr = RequestTracker()
        tr.start_request()
        tr.end_request()
        tr.get_stats()


PRIMITIVES = [
    p_with_lock,
    p_with_lock_nested,
    p_with_lock_timeout,
    p_lock_acquire_release,
    p_lock_acquire_timeout,
    p_lock_queries,
    p_with_rlock,
    p_rlock_bound_methods,
    p_rlock_lifecycle,
    p_release_save_restore,
    p_lock_contended_nonblocking,
    p_lock_contended_timeout_error,
    p_release_unowned_error,
    p_thread_local_set_get,
    p_thread_local_new_keys_cleared,
    p_thread_local_missing_default,
    p_thread_local_unhashable_error,
    p_tracked_call,
    p_tracked_call_bound_each_time,
    p_tracked_call_nested,
    p_tracked_call_kwargs,
    p_tracked_call_error,
    p_tracked_coroutine,
    p_tracked_coroutine_error,
    p_tracked_generator,
    p_tracked_generator_closed_early,
    p_tracked_async_generator,
    p_track_request,
    p_track_request_error,
    p_tracker_start_end,
    p_get_stats,
    p_active_requests,
    p_adapter_lifecycle,
    p_observed_bypassing_writes,
    p_tracker_lifecycle,
]


def gc_count() -> int:
    gc.collect()
    gc.collect()
    return len(gc.get_objects())


@pytest.mark.parametrize("prim", PRIMITIVES, ids=[p.__name__[2:] for p in PRIMITIVES])
def test_memory_flat(prim):
    a = LeakAdapter()
    prim(a, WARMUP)
    objs0 = gc_count()
    rss0 = rss()
    prim(a, N)
    objs1 = gc_count()
    rss1 = rss()
    assert objs1 - objs0 <= GC_OBJECTS_TOLERANCE, (
        f"{objs1 - objs0} more GC-tracked objects after {N} runs"
    )
    assert rss1 - rss0 <= RSS_TOLERANCE, f"RSS grew by {(rss1 - rss0) >> 10} KiB over {N} runs"
    # Finer: Python-allocator bytes still allocated after a shorter traced run.
    if TRACEMALLOC:
        # On 3.13t some frees wait for every thread to pass a quiescent state, which a
        # loaded machine can delay past one measurement; a leak grows in every attempt.
        growth = []
        for _ in range(3):
            tracemalloc.start()
            try:
                prim(a, WARMUP // 4 or 1)
                gc.collect()
                before = tracemalloc.get_traced_memory()[0]
                prim(a, TRACE_N)
                gc.collect()
                after = tracemalloc.get_traced_memory()[0]
            finally:
                tracemalloc.stop()
            growth.append(after - before)
            if growth[-1] <= TRACE_TOLERANCE:
                break
        assert min(growth) <= TRACE_TOLERANCE, f"{growth} traced bytes kept after {TRACE_N} runs"
    # The adapter is still sane and collectable.
    assert not a.lock.locked()
    t = a.get_stats()["tracker"]
    assert t["active_requests"] == 0


def test_many_short_lived_threads_leave_adapter_flat():
    """Thread-local storage and tracker shards of ended threads do not accumulate."""
    a = LeakAdapter()

    def body():
        a.set_thread_local("k", [1, 2, 3])
        a.call(1)

    def wave(k):
        for _ in range(k):
            t = threading.Thread(target=body)
            t.start()
            t.join()

    n = max(N // 500, 200)  # 2,000 threads by default
    wave(n // 4)
    objs0 = gc_count()
    rss0 = rss()
    wave(n)
    objs1 = gc_count()
    rss1 = rss()
    assert objs1 - objs0 <= GC_OBJECTS_TOLERANCE, (
        f"{objs1 - objs0} more GC-tracked objects after {n} threads"
    )
    assert rss1 - rss0 <= RSS_TOLERANCE, f"RSS grew by {(rss1 - rss0) >> 10} KiB over {n} threads"
    t = a.get_stats()["tracker"]
    assert t["total_requests"] == n // 4 + n
    assert t["active_threads"] == 0


@pytest.mark.skipif(sys.version_info < (3, 12), reason="dict watchers exist from 3.12")
def test_reports_left_by_ended_threads_are_released_with_the_observer():
    """A thread that writes around __setattr__ and ends before a report point leaves its
    report behind (no other thread may deliver it); removing the observer releases them all."""
    a = LeakAdapter()

    def body():
        object.__setattr__(a, "x", [1])

    def wave(k):
        _native.set_write_observer(_count_report)
        try:
            before = _native._pending_writes()[0]
            for _ in range(k):
                t = threading.Thread(target=body)
                t.start()
                t.join()
            assert _native._pending_writes()[0] == before + k  # one left by each thread
        finally:
            _native.set_write_observer(None)
        assert _native._pending_writes()[0] == 0

    n = max(N // 1000, 200)  # 1,000 threads by default
    wave(n // 4)
    objs0 = gc_count()
    rss0 = rss()
    wave(n)
    objs1 = gc_count()
    rss1 = rss()
    assert objs1 - objs0 <= GC_OBJECTS_TOLERANCE, f"{objs1 - objs0} more GC-tracked objects"
    assert rss1 - rss0 <= RSS_TOLERANCE, f"RSS grew by {(rss1 - rss0) >> 10} KiB over {n} threads"


def test_adapters_handed_to_another_thread_leave_memory_flat():
    """A long-lived worker uses adapters that another thread creates and drops: the
    worker's slots of dead adapters are reclaimed (no growth in the worker's records)."""
    import queue

    todo: queue.Queue = queue.Queue(maxsize=1)
    done: queue.Queue = queue.Queue(maxsize=1)
    errors = []

    def worker():
        try:
            while True:
                a = todo.get()
                if a is None:
                    return
                a.set_thread_local("k", [1])
                a.call(1)
                with a.acquire_lock():
                    pass
                del a
                done.put(1)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)
            done.put(1)

    def run(n):
        for _ in range(n):
            todo.put(LeakAdapter())
            done.get()

    t = threading.Thread(target=worker)
    t.start()
    try:
        n = max(N // 50, 200)  # 20,000 handed-over adapters by default
        run(n // 2)
        objs0 = gc_count()
        rss0 = rss()
        run(n)
        objs1 = gc_count()
        rss1 = rss()
    finally:
        todo.put(None)
        t.join()
    if errors:
        raise errors[0]
    assert objs1 - objs0 <= GC_OBJECTS_TOLERANCE, f"{objs1 - objs0} more GC-tracked objects"
    assert rss1 - rss0 <= RSS_TOLERANCE, f"RSS grew by {(rss1 - rss0) >> 10} KiB over {n} adapters"


class AsyncToolAdapter(ThreadSafeAdapter):
    __thread_safe__ = True

    @thread_safe_method
    @tool
    async def fetch(self, x):
        await asyncio.sleep(0)  # really suspended and resumed by the event loop
        return x


ACALL_N = max(N // 10, 1000)  # 100,000 awaited calls by default


def test_acall_tool_leaves_memory_flat():
    """``await adapter.acall_tool(...)`` on a tracked async tool: registry dispatch, the tracked
    coroutine, its request and the awaiting coroutine are all freed."""
    a = AsyncToolAdapter()

    async def calls(n):
        for i in range(n):
            if await a.acall_tool("fetch", x=i) != i:
                raise AssertionError(f"call {i} returned the wrong value")

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(calls(WARMUP // 10 or 100))
        objs0 = gc_count()
        rss0 = rss()
        loop.run_until_complete(calls(ACALL_N))
        objs1 = gc_count()
        rss1 = rss()
        assert objs1 - objs0 <= GC_OBJECTS_TOLERANCE, (
            f"{objs1 - objs0} more GC-tracked objects after {ACALL_N} acall_tool calls"
        )
        assert rss1 - rss0 <= RSS_TOLERANCE, (
            f"RSS grew by {(rss1 - rss0) >> 10} KiB over {ACALL_N} acall_tool calls"
        )
        if TRACEMALLOC:
            growth = []
            for _ in range(3):  # see test_memory_flat: delayed frees on 3.13t
                tracemalloc.start()
                try:
                    loop.run_until_complete(calls(1000))
                    gc.collect()
                    before = tracemalloc.get_traced_memory()[0]
                    loop.run_until_complete(calls(ACALL_N // 10))
                    gc.collect()
                    after = tracemalloc.get_traced_memory()[0]
                finally:
                    tracemalloc.stop()
                growth.append(after - before)
                if growth[-1] <= TRACE_TOLERANCE:
                    break
            assert min(growth) <= TRACE_TOLERANCE, f"{growth} traced bytes kept"
    finally:
        loop.close()
    t = a.get_stats()["tracker"]
    assert t["active_requests"] == 0 and t["errors"] == 0
    assert t["total_requests"] >= ACALL_N
