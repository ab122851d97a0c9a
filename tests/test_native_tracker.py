"""RequestTracker: exact sharded counts, history of ended threads, durations, misuse."""

from __future__ import annotations

import threading
import time

import pytest

from _threads import run_threads
from snakepit_bridge import RequestTracker, ThreadSafeAdapter, _native, thread_safe_method
from snakepit_bridge.base_adapter_threaded import OTHER_THREADS


def test_start_end_and_stats():
    tracker = RequestTracker()
    tracker.start_request()
    tracker.start_request()  # nested on the same thread: one request
    assert tracker.get_stats()["active_requests"] == 1
    tracker.end_request()
    tracker.end_request(error=True)
    stats = tracker.get_stats()
    assert stats["total_requests"] == 1 and stats["completed_requests"] == 1
    assert stats["errors"] == 1 and stats["active_requests"] == 0
    assert stats["total_active_requests"] == 0 and stats["active_threads"] == 0


def test_end_without_start_raises():
    tracker = RequestTracker()
    with pytest.raises(RuntimeError, match="without a matching start_request"):
        tracker.end_request()
    tracker.start_request()
    tracker.end_request()
    with pytest.raises(RuntimeError):
        tracker.end_request()
    with pytest.raises(TypeError):
        tracker.end_request(1, 2)


@pytest.mark.parametrize("owner", ["tracker", "adapter"])
def test_a_thread_ending_with_a_request_left_open_counts_an_error(owner: str) -> None:
    adapter = ThreadSafeAdapter()
    tracker = RequestTracker() if owner == "tracker" else adapter.tracker
    tracker.start_request()  # one finished request first: the counts must only grow by one
    tracker.end_request()

    def leave_open() -> None:
        tracker.start_request()  # and the thread ends without end_request()
        assert tracker.get_stats()["active_requests"] == 1

    thread = threading.Thread(target=leave_open)
    thread.start()
    thread.join()
    stats = tracker.get_stats()
    assert stats["total_requests"] == 2
    assert stats["completed_requests"] == 2
    assert stats["errors"] == 1
    assert stats["active_requests"] == 0 and stats["active_threads"] == 0
    assert tracker.active_requests() == 0
    assert _native._live_shards(tracker) == 1  # this thread's; the ended thread's is gone


def test_context_manager():
    tracker = RequestTracker()
    assert tracker.track_request() is not tracker.track_request()  # one object per request
    with tracker.track_request() as entered:
        assert entered is None
    with pytest.raises(OSError):
        with tracker.track_request():
            raise OSError
    stats = tracker.get_stats()
    assert stats["total_requests"] == 2 and stats["errors"] == 1


def test_active_requests_seen_from_other_threads():
    tracker = RequestTracker()
    inside = threading.Barrier(5)
    release = threading.Event()

    def work(_: int) -> None:
        with tracker.track_request():
            inside.wait(10)
            release.wait(10)

    workers = threading.Thread(target=run_threads, args=(work, 4))
    workers.start()
    inside.wait(10)
    try:
        stats = tracker.get_stats()
        assert stats["active_requests"] == 4 and stats["active_threads"] == 4
        assert stats["total_requests"] == 4 and stats["completed_requests"] == 0
        assert tracker.active_requests() == 4
        with (
            tracker.track_request()
        ):  # nested starts on one thread count once, there as in get_stats()
            with tracker.track_request():
                assert tracker.active_requests() == 5
    finally:
        release.set()
        workers.join()
    assert tracker.get_stats()["active_requests"] == 0
    assert tracker.active_requests() == 0


def test_threads_seen_is_exact_despite_ident_reuse():
    tracker = RequestTracker()

    def one_request() -> None:
        with tracker.track_request():
            pass

    for _ in range(50):  # sequential threads: CPython reuses their idents
        thread = threading.Thread(target=one_request)
        thread.start()
        thread.join()
    stats = tracker.get_stats()
    assert stats["threads_seen"] == 50
    assert stats["total_requests"] == 50
    assert _native._live_shards(tracker) == 0


def test_ended_threads_keep_their_counts_by_name():
    tracker = RequestTracker()

    def named(index: int) -> None:
        for _ in range(index + 1):
            with tracker.track_request():
                pass

    threads = [threading.Thread(target=named, args=(i,), name=f"w{i % 3}") for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    by_thread = tracker.get_stats()["requests_by_thread"]
    # w0: threads 0 and 3 (1 + 4), w1: 1 and 4 (2 + 5), w2: 2 and 5 (3 + 6)
    assert by_thread == {"w0": 5, "w1": 7, "w2": 9}


def _by_thread_while_alive(tracker: RequestTracker, names: list[str]) -> dict[str, int]:
    """requests_by_thread while threads named ``names`` are alive, each after one request."""
    done = threading.Barrier(len(names) + 1)
    release = threading.Event()

    def one_request() -> None:
        with tracker.track_request():
            pass
        done.wait(10)
        release.wait(10)

    threads = [threading.Thread(target=one_request, name=name) for name in names]
    for thread, name in zip(threads, names, strict=True):
        if type(name) is not str:  # Thread() keeps a str copy; Thread.name hands out _name as is
            thread._name = name
        thread.start()
    try:
        done.wait(10)
        stats = tracker.get_stats()
        assert stats["threads_seen"] >= len(names)
        by_thread: dict[str, int] = stats["requests_by_thread"]
        return by_thread
    finally:
        release.set()
        for thread in threads:
            thread.join()


@pytest.mark.parametrize("live", [4, 40])  # within and past the snapshot's inline entries
def test_live_threads_sharing_a_name_count_under_it_once(live: int) -> None:
    tracker = RequestTracker()

    def two_requests() -> None:
        for _ in range(2):
            with tracker.track_request():
                pass

    ended = threading.Thread(target=two_requests, name="w0")
    ended.start()
    ended.join()
    # Equal names that are distinct str objects: merged by value, not by identity.
    names = ["".join(("w", str(i % 3))) for i in range(live)]
    by_thread = _by_thread_while_alive(tracker, names)
    expected = {f"w{k}": names.count(f"w{k}") for k in range(3)}
    expected["w0"] += 2
    assert by_thread == expected
    assert next(iter(by_thread)) == "w0"  # the ended thread's name keeps its place


def test_a_str_subclass_thread_name_merges_with_an_equal_str():
    class Label(str):
        pass

    by_thread = _by_thread_while_alive(RequestTracker(), [Label("w"), "w"])
    assert by_thread == {"w": 2}


def test_history_of_names_is_bounded():
    tracker = RequestTracker()

    def one() -> None:
        with tracker.track_request():
            pass

    for batch in range(6):
        threads = [threading.Thread(target=one, name=f"t{batch}-{i}") for i in range(50)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    stats = tracker.get_stats()
    assert stats["total_requests"] == 300 and stats["threads_seen"] == 300
    by_thread = stats["requests_by_thread"]
    assert len(by_thread) <= 257
    assert sum(by_thread.values()) == 300
    assert by_thread.get(OTHER_THREADS, 0) == 300 - (len(by_thread) - 1)


def test_durations_use_a_real_clock():
    tracker = RequestTracker()
    with tracker.track_request():
        time.sleep(0.02)
    with tracker.track_request():
        pass
    stats = tracker.get_stats()
    assert stats["max_duration"] >= 0.015
    assert stats["total_duration"] >= stats["max_duration"]
    assert stats["mean_duration"] == pytest.approx(stats["total_duration"] / 2)
    assert _native.clock_source in ("tsc", "clock_gettime(CLOCK_MONOTONIC)")


def test_exact_counts_under_16_threads():
    tracker = RequestTracker()
    threads, iterations = 16, 5_000

    def work(index: int) -> None:
        for i in range(iterations):
            tracker.start_request()
            tracker.end_request(error=(i % 10 == 0))

    run_threads(work, threads)
    stats = tracker.get_stats()
    assert stats["total_requests"] == threads * iterations
    assert stats["errors"] == threads * iterations // 10
    assert stats["threads_seen"] == threads


def test_tracker_rejects_arguments_and_subclassing():
    with pytest.raises(TypeError):
        RequestTracker(1)
    with pytest.raises(TypeError):
        type("Sub", (RequestTracker,), {})


def test_adapter_tracker_is_the_adapters():
    adapter = ThreadSafeAdapter()
    assert adapter.tracker is adapter._tracker
    with adapter.track_request():
        assert adapter.tracker.active_requests() == 1
    assert adapter.tracker.get_stats()["total_requests"] == 1


# --- request objects: ended anywhere, interleaved on one thread --------------------------------


class Tracked(ThreadSafeAdapter):
    @thread_safe_method
    def work(self, fail: bool = False) -> int:
        if fail:
            raise ValueError("planned")
        return 1


def _counts(adapter_or_tracker) -> tuple[int, int, int, int]:
    t = adapter_or_tracker.get_stats()
    t = t.get("tracker", t)
    return t["total_requests"], t["completed_requests"], t["errors"], t["active_requests"]


def test_a_request_entered_on_one_thread_may_end_on_another():
    """It counts once, and the thread that entered it keeps counting its own calls (it used to
    raise on the second thread and leave the first one's nesting depth at 1 forever)."""
    adapter = Tracked()
    request = adapter.track_request()
    request.__enter__()
    assert _counts(adapter) == (1, 0, 0, 1)
    run_threads(lambda _: request.__exit__(None, None, None), 1)
    assert _counts(adapter) == (1, 1, 0, 0)
    assert adapter.work() == 1  # counted: this thread is not stuck "inside" a request
    assert _counts(adapter) == (2, 2, 0, 0)
    stats = adapter.get_stats()["tracker"]
    assert stats["active_threads"] == 0 and stats["requests_by_thread"] == {"MainThread": 2}


def test_a_request_ended_on_another_thread_after_its_thread_ended():
    adapter = Tracked()
    box = []

    def start() -> None:
        request = adapter.track_request()
        request.__enter__()
        box.append(request)

    thread = threading.Thread(target=start, name="starter")
    thread.start()
    thread.join()
    assert _counts(adapter) == (1, 0, 0, 1)
    box[0].__exit__(ValueError, ValueError(), None)
    assert _counts(adapter) == (1, 1, 1, 0)
    assert adapter.get_stats()["tracker"]["requests_by_thread"] == {"starter": 1}


def test_interleaved_requests_of_asyncio_tasks_on_one_thread_count_separately():
    """Ten handlers on one event loop thread, each inside `with track_request():` across an
    await, five of them failing: ten requests, five errors (it used to merge into one)."""
    import asyncio

    adapter = Tracked()
    peak = []

    async def handler(i: int) -> None:
        with adapter.track_request():
            await asyncio.sleep(0)  # every handler is inside its request at once
            peak.append(adapter.tracker.active_requests())
            adapter.work()  # inside this task's request: counts once
            await asyncio.sleep(0)
            if i % 2:
                raise ValueError(i)

    async def main() -> None:
        results = await asyncio.gather(*(handler(i) for i in range(10)), return_exceptions=True)
        assert sum(isinstance(r, ValueError) for r in results) == 5

    asyncio.run(main())
    assert _counts(adapter) == (10, 10, 5, 0)
    assert max(peak) == 10
    assert adapter.get_stats()["tracker"]["threads_seen"] == 1


def test_overlapping_requests_of_one_thread_are_one_active_thread():
    import asyncio

    adapter = Tracked()
    seen = {}

    async def handler(gate: asyncio.Event) -> None:
        with adapter.track_request():
            await gate.wait()

    async def main() -> None:
        gate = asyncio.Event()
        tasks = [asyncio.create_task(handler(gate)) for _ in range(3)]
        await asyncio.sleep(0.01)
        seen.update(adapter.get_stats()["tracker"])
        gate.set()
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert seen["active_requests"] == 3 and seen["active_threads"] == 1
    assert _counts(adapter) == (3, 3, 0, 0)


def test_nesting_by_context_counts_once():
    """A request made inside another of the same adapter counts once: a decorated call in a
    request, a request in a decorated call, a request in a request, a task started inside a
    request, and a call run by asyncio.to_thread (which copies the context) inside one."""
    import asyncio

    adapter = Tracked()
    with adapter.track_request():
        adapter.work()
        with adapter.track_request():
            adapter.work()
    assert _counts(adapter) == (1, 1, 0, 0)

    class Calls(ThreadSafeAdapter):
        @thread_safe_method
        def outer(self) -> None:
            with self.track_request():
                pass

    calls = Calls()
    calls.outer()
    assert _counts(calls) == (1, 1, 0, 0)

    async def main() -> None:
        with adapter.track_request():
            await asyncio.create_task(_child(adapter))
            await asyncio.to_thread(adapter.work)

    async def _child(a: Tracked) -> None:
        with a.track_request():
            a.work()

    asyncio.run(main())
    assert _counts(adapter) == (2, 2, 0, 0)


def test_another_adapters_request_does_not_nest():
    a, b = Tracked(), Tracked()
    with a.track_request():
        b.work()
        with b.track_request():
            b.work()
    assert _counts(a) == (1, 1, 0, 0)
    assert _counts(b) == (2, 2, 0, 0)


def test_a_request_abandoned_in_a_finished_context_ends_as_an_error():
    import contextvars
    import gc

    adapter = Tracked()

    def start_and_abandon() -> None:
        adapter.track_request().__enter__()

    contextvars.Context().run(start_and_abandon)  # the context and the request become garbage
    gc.collect()
    assert _counts(adapter) == (1, 1, 1, 0)


def test_request_object_misuse_is_a_clear_error():
    adapter = Tracked()
    request = adapter.track_request()
    with pytest.raises(RuntimeError, match="never entered"):
        request.__exit__(None, None, None)
    with request:
        with pytest.raises(RuntimeError, match="already entered"):
            request.__enter__()
        with pytest.raises(TypeError, match="takes 3 positional arguments"):
            request.__exit__()
    with pytest.raises(RuntimeError, match="already ended"):
        request.__exit__(None, None, None)
    with pytest.raises(RuntimeError, match="already entered"):
        request.__enter__()
    assert _counts(adapter) == (1, 1, 0, 0)
    assert "ended" in repr(request)


def test_request_objects_ended_by_many_threads_count_exactly():
    """16 threads each start requests and hand them to the next thread to end."""
    adapter = Tracked()
    rounds = 200
    handoff = [[] for _ in range(16)]
    barrier = threading.Barrier(16)

    def worker(i: int) -> None:
        for r in range(rounds):
            request = adapter.track_request()
            request.__enter__()
            handoff[(i + 1) % 16].append(request)
            barrier.wait()
            mine = handoff[i].pop()
            mine.__exit__(ValueError if r % 4 == 0 else None, None, None)
            barrier.wait()

    run_threads(worker, 16)
    assert _counts(adapter) == (16 * rounds, 16 * rounds, 16 * rounds // 4, 0)
    assert adapter.get_stats()["tracker"]["active_threads"] == 0
