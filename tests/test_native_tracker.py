"""RequestTracker: exact sharded counts, history of ended threads, durations, misuse."""

from __future__ import annotations

import threading
import time

import pytest

from snakepit_bridge import RequestTracker, ThreadSafeAdapter, _native

from _threads import run_threads


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
    assert tracker.track_request() is tracker
    with tracker.track_request():
        pass
    with pytest.raises(OSError):
        with tracker:
            raise OSError
    stats = tracker.get_stats()
    assert stats["total_requests"] == 2 and stats["errors"] == 1


def test_active_requests_seen_from_other_threads():
    tracker = RequestTracker()
    inside = threading.Barrier(5)
    release = threading.Event()

    def work(_: int) -> None:
        with tracker:
            inside.wait(10)
            release.wait(10)

    workers = threading.Thread(target=run_threads, args=(4, work))
    workers.start()
    inside.wait(10)
    try:
        stats = tracker.get_stats()
        assert stats["active_requests"] == 4 and stats["active_threads"] == 4
        assert stats["total_requests"] == 4 and stats["completed_requests"] == 0
        assert tracker.active_requests() == 4
        with tracker:  # nested starts on one thread count once, there as in get_stats()
            with tracker:
                assert tracker.active_requests() == 5
    finally:
        release.set()
        workers.join()
    assert tracker.get_stats()["active_requests"] == 0
    assert tracker.active_requests() == 0


def test_threads_seen_is_exact_despite_ident_reuse():
    tracker = RequestTracker()

    def one_request() -> None:
        with tracker:
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
            with tracker:
                pass

    threads = [threading.Thread(target=named, args=(i,), name=f"w{i % 3}") for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    by_thread = tracker.get_stats()["requests_by_thread"]
    # w0: threads 0 and 3 (1 + 4), w1: 1 and 4 (2 + 5), w2: 2 and 5 (3 + 6)
    assert by_thread == {"w0": 5, "w1": 7, "w2": 9}


def test_history_of_names_is_bounded():
    tracker = RequestTracker()

    def one() -> None:
        with tracker:
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
    assert by_thread.get("<other ended threads>", 0) == 300 - (len(by_thread) - 1)


def test_durations_use_a_real_clock():
    tracker = RequestTracker()
    with tracker:
        time.sleep(0.02)
    with tracker:
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

    run_threads(threads, work)
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
    assert adapter.tracker is adapter._tracker is adapter.track_request()
