"""The runtime thread-safety checker: races, concurrency, libraries, declarations, bounds."""

from __future__ import annotations

import asyncio
import gc
import inspect
import io
import sys
import threading
import warnings
from collections.abc import Iterator
from queue import Queue
from typing import ClassVar

import pytest

from _checking import live_checker_count, no_global_checking
from _threads import HANG_TIMEOUT, hammer, run_threads
from snakepit_bridge import thread_safety_checker as tsc
from snakepit_bridge.base_adapter import tool
from snakepit_bridge.base_adapter_threaded import ThreadSafeAdapter, thread_safe_method
from snakepit_bridge.checker import hooks
from snakepit_bridge.concurrency import run_concurrently
from snakepit_bridge.thread_safety_checker import (
    ThreadSafetyChecker,
    ThreadSafetyError,
    ThreadSafetyWarning,
)

THREADS = 20
CALLS = 200


@pytest.fixture(autouse=True)
def _isolated() -> Iterator[None]:
    with no_global_checking():
        yield
    gc.collect()  # drop checkers a failed test left behind


class GoodAdapter(ThreadSafeAdapter):
    __thread_safe__ = True

    def __init__(self) -> None:
        super().__init__()
        self.counter = 0
        self.log: list[int] = []

    @thread_safe_method
    def increment(self) -> int:
        with self.acquire_lock():
            self.counter += 1
            self.log.append(self.counter)
            return self.counter


class BadAdapter(ThreadSafeAdapter):
    __thread_safe__ = True

    def __init__(self) -> None:
        super().__init__()
        self.counter = 0

    @thread_safe_method
    def increment(self) -> int:
        self.counter += 1  # the racy line
        return self.counter


BAD_LINE = next(
    start + i
    for source, start in [inspect.getsourcelines(BadAdapter.increment.__wrapped__)]
    for i, line in enumerate(source)
    if "the racy line" in line
)


class MultiLockAdapter(ThreadSafeAdapter):
    __thread_safe__ = True

    def __init__(self) -> None:
        super().__init__()
        self.counter_lock = threading.Lock()
        self.log_lock = threading.Lock()
        self.counter = 0
        self.events = 0

    @thread_safe_method
    def increment(self) -> None:
        with self.counter_lock:
            self.counter += 1

    @thread_safe_method
    def log_event(self) -> None:
        with self.log_lock:
            self.events += 1


class AtomicAdapter(ThreadSafeAdapter):
    __thread_safe__ = True

    def __init__(self) -> None:
        super().__init__()
        self.counter = 0
        self._lock = threading.Lock()  # shadows the native lock property: allowed

    @thread_safe_method
    def atomic_increment(self) -> int:
        self._lock.acquire()
        try:
            self.counter += 1
            result = self.counter
        finally:
            self._lock.release()
        return result


class DeclaredAdapter(ThreadSafeAdapter):
    """Declares which lock guards which attribute."""

    __thread_safe__ = True
    __guarded_by__: ClassVar = {"hits": "hits_lock", "misses": ("misses_lock", "lock")}

    def __init__(self) -> None:
        super().__init__()
        self.hits_lock = threading.RLock()
        self.misses_lock = threading.RLock()
        self.hits = 0
        self.misses = 0

    @thread_safe_method
    def hit(self) -> None:
        with self.hits_lock:
            self.hits += 1

    @thread_safe_method
    def miss_under_adapter_lock(self) -> None:
        with self.acquire_lock():
            self.misses += 1

    @thread_safe_method
    def hit_under_the_wrong_lock(self) -> None:
        with self.misses_lock:  # held, but not the lock declared for `hits`
            self.hits += 1


def _expect_no_warnings(checker: ThreadSafetyChecker) -> dict:
    report = checker.get_report()
    assert report["warnings"] == [], report["warnings"]
    assert report["warnings_issued"] == 0
    assert report["unprotected_writes"] == []
    return report


# -- correct code: zero warnings ---------------------------------------------------------------


def test_good_adapter_under_a_20_thread_hammer_gives_zero_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", ThreadSafetyWarning)
        checker = ThreadSafetyChecker(enabled=True, strict_mode=True)
        adapter = GoodAdapter()
        total = hammer(adapter.increment, THREADS, CALLS)
    report = _expect_no_warnings(checker)
    assert adapter.counter == total == THREADS * CALLS
    assert report["total_threads_seen"] == THREADS + 1  # the workers and the constructing thread
    assert report["method_calls"]["GoodAdapter.increment"]["calls"] == total
    assert "✅ No thread safety issues detected." in report["recommendations"]


@pytest.mark.parametrize(
    ("cls", "method"),
    [
        (MultiLockAdapter, "increment"),
        (MultiLockAdapter, "log_event"),
        (AtomicAdapter, "atomic_increment"),
        (DeclaredAdapter, "hit"),
        (DeclaredAdapter, "miss_under_adapter_lock"),
    ],
)
def test_writes_guarded_by_user_locks_are_not_races(cls: type, method: str) -> None:
    checker = ThreadSafetyChecker(strict_mode=True)
    adapter = cls()
    total = hammer(getattr(adapter, method), THREADS, CALLS)
    _expect_no_warnings(checker)
    counted = {
        "increment": "counter",
        "log_event": "events",
        "atomic_increment": "counter",
        "hit": "hits",
        "miss_under_adapter_lock": "misses",
    }[method]
    assert getattr(adapter, counted) == total


def test_setup_before_threads_and_per_thread_adapters_are_not_races() -> None:
    checker = ThreadSafetyChecker(strict_mode=True)
    shared = GoodAdapter()
    shared.counter = 10  # set-up by the constructing thread: still exclusive
    shared.config = {"a": 1}

    def worker(_i: int) -> int:
        own = BadAdapter()  # built and used by one thread only
        for _ in range(50):
            own.increment()
        return own.counter + shared.config["a"]  # reading shared state is fine

    assert run_threads(worker, 8) == [51] * 8
    _expect_no_warnings(checker)


def test_queue_adapter_from_the_guide_gives_zero_warnings() -> None:
    class QueueAdapter(ThreadSafeAdapter):
        __thread_safe__ = True

        def __init__(self) -> None:
            super().__init__()
            self.results: Queue[int] = Queue()

        @thread_safe_method
        def add_result(self, result: int) -> None:
            self.results.put(result)

    checker = ThreadSafetyChecker(strict_mode=True)
    adapter = QueueAdapter()
    total = hammer(lambda: adapter.add_result(1), THREADS, CALLS)
    assert adapter.results.qsize() == total
    _expect_no_warnings(checker)


# -- the pitfall: unprotected shared writes ------------------------------------------------------


def test_bad_adapter_gives_one_warning_naming_class_attribute_threads_and_line() -> None:
    checker = ThreadSafetyChecker()
    adapter = BadAdapter()
    with pytest.warns(ThreadSafetyWarning) as caught:
        total = hammer(adapter.increment, THREADS, CALLS)
    report = checker.get_report()
    assert report["warnings_issued"] == 1
    (message,) = report["warnings"]
    assert "BadAdapter.counter" in message
    assert f"{__file__}:{BAD_LINE}" in message
    assert "'MainThread'" in message and "'run_concurrently-" in message
    (race,) = report["unprotected_writes"]
    assert (race["class"], race["attribute"], race["line"]) == ("BadAdapter", "counter", BAD_LINE)
    assert race["count"] == report["racy_writes"] == total  # every write after sharing is racy
    assert next(w for w in caught if issubclass(w.category, ThreadSafetyWarning)).lineno == BAD_LINE
    assert len([w for w in caught if issubclass(w.category, ThreadSafetyWarning)]) == 1
    assert any("written by several threads" in r for r in report["recommendations"])


needs_dict_watchers = pytest.mark.skipif(
    sys.version_info < (3, 12),
    reason="dict watchers (PyDict_AddWatcher) exist from 3.12; before, writes that bypass "
    "__setattr__ are not observed",
)


class BypassingAdapter(ThreadSafeAdapter):
    """Writes its counter with object.__setattr__ (as code working around a frozen dataclass's
    or its own __setattr__ does), which the adapter's __setattr__ never sees.

    Each write stores a new list: storing the very object an attribute already holds (two racing
    threads both storing the small int 6) changes nothing and CPython does not tell the dict
    watcher, so with ints the number of observed writes would depend on the interleaving."""

    __thread_safe__ = True

    def __init__(self) -> None:
        super().__init__()
        self.counter = [0]

    @thread_safe_method
    def increment(self) -> None:
        object.__setattr__(self, "counter", [self.counter[0] + 1])  # the bypassing racy line

    @thread_safe_method
    def locked_increment(self) -> None:
        with self.acquire_lock():
            vars(self)["counter"] = [self.counter[0] + 1]


class SideLockedBypassingAdapter(ThreadSafeAdapter):
    __thread_safe__ = True

    def __init__(self) -> None:
        super().__init__()
        self.counter = [0]
        self.side_lock = threading.Lock()

    @thread_safe_method
    def increment(self) -> None:
        with self.side_lock:
            object.__setattr__(self, "counter", [self.counter[0] + 1])

    @thread_safe_method
    def unlocked_increment(self) -> None:
        object.__setattr__(self, "counter", [self.counter[0] + 1])


BYPASS_LINE = next(
    start + i
    for source, start in [inspect.getsourcelines(BypassingAdapter.increment.__wrapped__)]
    for i, line in enumerate(source)
    if "the bypassing racy line" in line
)


@needs_dict_watchers
def test_a_race_written_through_object_setattr_is_reported_at_its_line() -> None:
    checker = ThreadSafetyChecker()
    adapter = BypassingAdapter()
    with pytest.warns(ThreadSafetyWarning) as caught:
        total = hammer(adapter.increment, THREADS, CALLS)
    report = checker.get_report()
    assert report["warnings_issued"] == 1
    (message,) = report["warnings"]
    assert "BypassingAdapter.counter" in message and f"{__file__}:{BYPASS_LINE}" in message
    (race,) = report["unprotected_writes"]
    assert (race["class"], race["attribute"], race["line"]) == (
        "BypassingAdapter",
        "counter",
        BYPASS_LINE,
    )
    # Every write was reported (at the end of its call), and each after sharing is racy.
    assert race["count"] == report["racy_writes"] == total
    assert next(w for w in caught if issubclass(w.category, ThreadSafetyWarning)).lineno == (
        BYPASS_LINE
    )


@needs_dict_watchers
def test_a_write_through_vars_under_the_adapter_lock_is_not_a_race() -> None:
    checker = ThreadSafetyChecker(strict_mode=True)
    adapter = BypassingAdapter()
    total = hammer(adapter.locked_increment, THREADS, CALLS)
    report = _expect_no_warnings(checker)
    assert adapter.counter == [total]
    assert report["observed_writes"] >= total  # seen, and judged guarded


@needs_dict_watchers
@pytest.mark.parametrize("method", ["increment", "unlocked_increment"])
def test_a_bypassing_write_that_another_lock_may_guard_is_not_judged(method: str) -> None:
    # Reported after the fact, such a write can only be judged by the adapter's own lock:
    # whether side_lock was held at the write is unknown by then, so no race is claimed (a
    # missed race when it was not held, never a false alarm when it was).
    checker = ThreadSafetyChecker(strict_mode=True)
    adapter = SideLockedBypassingAdapter()
    total = hammer(getattr(adapter, method), THREADS, CALLS)
    report = _expect_no_warnings(checker)
    assert report["observed_writes"] >= total
    if method == "increment":
        assert adapter.counter == [total]


@needs_dict_watchers
def test_get_report_delivers_this_threads_bypassing_writes_first() -> None:
    checker = ThreadSafetyChecker()
    adapter = BypassingAdapter()
    run_threads(lambda _i: adapter.locked_increment(), 1)  # shared now, and guarded
    object.__setattr__(adapter, "counter", [0])  # unguarded; no report point passed yet
    line = inspect.currentframe().f_lineno - 1  # type: ignore[union-attr]
    with pytest.warns(ThreadSafetyWarning, match="BypassingAdapter.counter"):
        report = checker.get_report()
    (race,) = report["unprotected_writes"]
    assert (race["line"], race["count"], report["racy_writes"]) == (line, 1, 1)


@needs_dict_watchers
def test_strict_mode_cannot_raise_at_a_bypassing_write_the_error_is_unraisable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    unraisable: list[BaseException | None] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda info: unraisable.append(info.exc_value))
    checker = ThreadSafetyChecker(strict_mode=True)
    adapter = BypassingAdapter()
    run_threads(lambda _i: adapter.locked_increment(), 1)  # shared now, and guarded
    adapter.increment()  # racy: reported as the call leaves, after the write
    assert adapter.counter == [2]
    assert [type(e) for e in unraisable] == [ThreadSafetyError]
    assert checker.get_report()["racy_writes"] == 1


def test_strict_mode_raises_at_every_racy_write() -> None:
    checker = ThreadSafetyChecker(strict_mode=True)
    adapter = BadAdapter()
    failures: list[str] = []

    def worker() -> None:
        for _ in range(25):
            try:
                adapter.increment()
            except ThreadSafetyError as exc:
                failures.append(str(exc))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert len(failures) == 25  # every time, not only the first
    assert "BadAdapter.counter" in failures[0]
    with pytest.raises(ThreadSafetyError):
        adapter.counter = 5  # the constructing thread, now that the attribute is shared
    report = checker.get_report()
    assert report["warnings_issued"] == 1
    assert report["racy_writes"] == report["unprotected_writes"][0]["count"] == 26


def test_user_lock_declared_for_another_attribute_does_not_guard() -> None:
    checker = ThreadSafetyChecker()
    adapter = DeclaredAdapter()
    with pytest.warns(ThreadSafetyWarning, match="DeclaredAdapter.hits"):
        run_threads(lambda _i: adapter.hit_under_the_wrong_lock(), 4)
    assert checker.get_report()["unprotected_writes"][0]["attribute"] == "hits"


def test_heuristic_ignores_a_reentrant_lock_held_by_another_thread() -> None:
    class Undeclared(ThreadSafeAdapter):
        __thread_safe__ = True

        def __init__(self) -> None:
            super().__init__()
            self.side_lock = threading.RLock()
            self.value = 0

    checker = ThreadSafetyChecker(strict_mode=True)
    adapter = Undeclared()
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with adapter.side_lock:
            held.set()
            release.wait()

    other = threading.Thread(target=holder)
    other.start()
    held.wait()
    try:
        outcome: list[BaseException] = []

        def writer() -> None:
            try:
                adapter.value = 1
            except ThreadSafetyError as exc:
                outcome.append(exc)

        thread = threading.Thread(target=writer)
        thread.start()
        thread.join()
    finally:
        release.set()
        other.join()
    assert len(outcome) == 1  # the RLock is owned by another thread: not a guard
    assert checker.get_report()["unprotected_writes"][0]["attribute"] == "value"


def test_invalid_guarded_by_is_reported_at_the_write() -> None:
    class Broken(ThreadSafeAdapter):
        __thread_safe__ = True
        __guarded_by__: ClassVar = ["counter"]

        def __init__(self) -> None:
            super().__init__()
            self.counter = 0

    checker = ThreadSafetyChecker()
    adapter = Broken()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            adapter.counter = 1
        except TypeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=write)
    thread.start()
    thread.join()
    assert checker.enabled
    assert len(errors) == 1 and "__guarded_by__ must map" in str(errors[0])


def test_in_place_mutation_is_not_seen_as_documented() -> None:
    class Appender(ThreadSafeAdapter):
        __thread_safe__ = True

        def __init__(self) -> None:
            super().__init__()
            self.items: list[int] = []

        @thread_safe_method
        def add(self) -> None:
            self.items.append(1)  # unlocked, but not an attribute write

    checker = ThreadSafetyChecker(strict_mode=True)
    adapter = Appender()
    hammer(adapter.add, 4, 50)
    assert checker.get_report()["unprotected_writes"] == []
    assert "in-place mutation" in tsc.__doc__


def test_readme_method_3_race_from_outside_the_adapter_is_reported() -> None:
    checker = ThreadSafetyChecker()
    adapter = GoodAdapter()

    def increment() -> None:
        adapter.counter += 1  # README_THREADING "Method 3": deliberately unlocked

    with pytest.warns(ThreadSafetyWarning, match="GoodAdapter.counter"):
        hammer(increment, 10, 100)
    assert checker.get_report()["warnings_issued"] == 1


# -- concurrency as real overlap ----------------------------------------------------------------


def test_concurrent_calls_are_measured_as_overlap_and_are_not_warnings() -> None:
    class Meeting(ThreadSafeAdapter):
        __thread_safe__ = True

        def __init__(self, parties: int) -> None:
            super().__init__()
            self.barrier = threading.Barrier(parties)

        @thread_safe_method
        def meet(self) -> None:
            self.barrier.wait()  # every party is inside meet() at the same time

    checker = ThreadSafetyChecker()
    adapter = Meeting(6)
    run_threads(lambda _i: adapter.meet(), 6)
    report = _expect_no_warnings(checker)
    assert report["concurrent_accesses"] == {"Meeting.meet": 6}
    assert report["method_calls"]["Meeting.meet"]["max_concurrency"] == 6


def test_sequential_calls_from_many_threads_are_not_concurrent() -> None:
    checker = ThreadSafetyChecker()
    adapter = GoodAdapter()
    for _ in range(10):  # ten pool-like threads, one after the other
        thread = threading.Thread(target=adapter.increment)
        thread.start()
        thread.join()
    report = _expect_no_warnings(checker)
    assert report["concurrent_accesses"] == {}
    assert report["total_threads_seen"] == 11  # idents are reused, threads are still counted


class InFlight(ThreadSafeAdapter):
    """A method that runs a callback in the middle of a call (while it is in flight)."""

    __thread_safe__ = True

    @thread_safe_method
    def work(self, during: object = None) -> None:
        if callable(during):
            during()


def test_a_call_in_flight_across_disable_and_enable_is_not_concurrency() -> None:
    checker = ThreadSafetyChecker()
    adapter = InFlight()
    adapter.work(during=checker.disable)  # entered while enabled, left while disabled
    checker.enable()
    adapter.work()  # one call after the other, on one thread
    adapter.work()
    report = _expect_no_warnings(checker)
    assert report["concurrent_accesses"] == {}
    assert report["method_calls"]["InFlight.work"]["calls"] == 3
    assert report["method_calls"]["InFlight.work"]["max_concurrency"] == 1
    assert report["thread_utilization"]["MainThread"]["calls"] == 3


def test_another_threads_call_in_flight_at_disable_is_forgotten_on_enable() -> None:
    checker = ThreadSafetyChecker()
    adapter = InFlight()
    inside, leave = threading.Event(), threading.Event()

    def hold() -> None:
        inside.set()
        assert leave.wait(60)

    holder = threading.Thread(target=adapter.work, kwargs={"during": hold})
    holder.start()
    try:
        assert inside.wait(60)
        checker.disable()
    finally:
        leave.set()
        holder.join()
    checker.enable()
    run_threads(lambda _i: adapter.work(), 1)  # a later call on another thread
    adapter.work()
    report = _expect_no_warnings(checker)
    assert report["concurrent_accesses"] == {}
    assert report["method_calls"]["InFlight.work"]["max_concurrency"] == 1


def test_a_call_left_after_disable_and_enable_is_forgotten() -> None:
    checker = ThreadSafetyChecker()
    adapter = InFlight()

    def toggle() -> None:
        checker.disable()
        checker.enable()  # this call is still running: it must not count after this

    adapter.work(during=toggle)
    run_threads(lambda _i: adapter.work(), 1)
    adapter.work()
    report = _expect_no_warnings(checker)
    assert report["concurrent_accesses"] == {}
    assert report["method_calls"]["InFlight.work"]["max_concurrency"] == 1


def test_check_thread_safe_decorator_reports_to_enabled_checkers() -> None:
    entered = threading.Barrier(4)

    @tsc.check_thread_safe
    def work(x: int) -> int:
        entered.wait()
        return x * 2

    assert work.__name__ == "work"
    checker = ThreadSafetyChecker()
    global_checker = tsc.enable_checking()
    results = run_threads(lambda i: work(i), 4)
    assert results == [0, 2, 4, 6]  # the first cross-thread call runs (upstream's frame bug)
    key = f"{__name__}.{work.__qualname__}"
    for c in (checker, global_checker):
        report = c.get_report()
        assert report["concurrent_accesses"] == {key: 4}
        assert report["method_calls"][key]["calls"] == 4


def test_track_execution_counts_a_block() -> None:
    checker = ThreadSafetyChecker()
    with checker.track_execution("job"):
        pass
    assert checker.get_report()["method_calls"]["job"]["calls"] == 1


# -- libraries -------------------------------------------------------------------------------


def test_library_check_warns_once_per_library_and_strict_raises_every_time() -> None:
    checker = ThreadSafetyChecker()
    modules = {"numpy", "pandas", "matplotlib.pyplot", "os"}
    with pytest.warns(ThreadSafetyWarning) as caught:
        messages = checker.check_library_safety(modules)
    assert len(messages) == 2 and len(caught) == 2
    assert any("'pandas'" in m for m in messages) and any("'matplotlib'" in m for m in messages)
    assert all("Safe pattern:" in m for m in messages)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ThreadSafetyWarning)
        assert len(checker.check_library_safety(modules)) == 2  # found again, not re-warned
    report = checker.get_report()
    assert report["unsafe_libraries"] == ["pandas", "matplotlib"]
    assert report["warnings_issued"] == 2
    checker.strict_mode = True
    for _ in range(3):
        with pytest.raises(ThreadSafetyError, match="sqlite3"):
            checker.check_library_safety({"sqlite3"})
    checker.disable()
    assert checker.check_library_safety({"pandas"}) == []


def test_unsafe_library_table_has_a_reason_and_safe_pattern() -> None:
    table = ThreadSafetyChecker.UNSAFE_LIBRARIES
    assert {"pandas", "matplotlib", "sqlite3"} <= set(table)
    assert all(entry["reason"] and entry["safe_pattern"] for entry in table.values())


# -- declarations -----------------------------------------------------------------------------


class Undeclared(ThreadSafeAdapter):
    pass


class DeclaredFalse(ThreadSafeAdapter):
    __thread_safe__ = False


class InheritsGood(GoodAdapter):
    pass


def test_declaration_follows_the_one_rule() -> None:
    assert tsc.validate_adapter_thread_safety(InheritsGood)  # the nearest class that sets it
    assert tsc.validate_adapter_thread_safety(GoodAdapter)
    assert tsc.validate_adapter_thread_safety(GoodAdapter())
    assert not tsc.validate_adapter_thread_safety(Undeclared)
    assert not tsc.validate_adapter_thread_safety(DeclaredFalse())
    tsc.enable_checking(strict_mode=True)
    with pytest.raises(ValueError, match="Undeclared does not declare"):
        tsc.validate_adapter_thread_safety(Undeclared())
    tsc.disable_checking()
    assert not tsc.validate_adapter_thread_safety(Undeclared)  # strict applies only when enabled


def test_require_thread_safe_adapter() -> None:
    @tsc.require_thread_safe_adapter
    def serve(adapter: object, value: int) -> int:
        return value

    assert serve(GoodAdapter(), 3) == 3
    with pytest.raises(ValueError, match="does not declare thread safety"):
        serve(Undeclared(), 1)
    with pytest.raises(ValueError, match="declares itself not thread-safe"):
        serve(DeclaredFalse(), 1)


def test_runtime_checker_lists_undeclared_adapter_classes() -> None:
    checker = ThreadSafetyChecker()

    class Quiet(ThreadSafeAdapter):
        def __init__(self) -> None:
            super().__init__()
            self.x = 1

    Quiet()
    report = checker.get_report()
    assert "does not declare" in report["undeclared_adapters"]["Quiet"]
    assert not any(r.startswith("✅") for r in report["recommendations"])


def test_check_common_pitfalls() -> None:
    assert tsc.check_common_pitfalls(GoodAdapter(), imported_modules=()) == []
    assert tsc.check_common_pitfalls(AtomicAdapter(), imported_modules=()) == []
    findings = tsc.check_common_pitfalls(BadAdapter(), imported_modules={"pandas"})
    assert any(f"line {BAD_LINE}" in f and "self.counter op=" in f for f in findings)
    assert any("'pandas'" in f for f in findings)
    assert any(
        "does not declare" in f
        for f in tsc.check_common_pitfalls(Undeclared(), imported_modules=())
    )

    class Untracked(ThreadSafeAdapter):
        __thread_safe__ = True

        @tool
        def plain_tool(self) -> None:
            """not tracked"""

    assert any(
        "plain_tool" in f for f in tsc.check_common_pitfalls(Untracked(), imported_modules=())
    )

    class NotThreadSafe:
        __thread_safe__ = True

        def __init__(self) -> None:
            self.rows: list[int] = []

    assert any("rows" in f for f in tsc.check_common_pitfalls(NotThreadSafe(), imported_modules=()))


# -- lifecycle, global checker, report ------------------------------------------------------


def test_observation_stops_when_disabled_exited_or_collected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[str] = []
    original = ThreadSafetyChecker._observe_write
    baseline = live_checker_count()
    ours = {id(c) for c in ()}  # the checkers made here (others may linger from other tests)

    def spy(
        self: ThreadSafetyChecker,
        adapter: object,
        name: str,
        owns: bool,
        deferred: tuple[str, int] | None = None,
    ) -> None:
        if id(self) in ours:
            seen.append(name)
        original(self, adapter, name, owns, deferred)

    def make(**kwargs: bool) -> ThreadSafetyChecker:
        checker = ThreadSafetyChecker(**kwargs)
        ours.add(id(checker))
        return checker

    monkeypatch.setattr(ThreadSafetyChecker, "_observe_write", spy)
    adapter = GoodAdapter()
    checker = make()
    adapter.a = 1
    checker.disable()
    adapter.b = 1
    with make(enabled=False) as scoped:
        adapter.c = 1
    adapter.d = 1
    assert scoped.get_report()["observed_writes"] == 1 and not scoped.enabled
    make()  # dropped at once: a weakly held checker stops observing
    gc.collect()
    adapter.e = 1
    assert seen == ["a", "c"]
    assert live_checker_count() <= baseline
    if baseline == 0:
        assert hooks.hooks_installed() is False


def test_global_checker_is_one_object_reset_by_enable_checking() -> None:
    checker = tsc.get_global_checker()
    assert not checker.enabled
    assert tsc.enable_checking(strict_mode=True) is checker
    assert checker.enabled and checker.strict_mode
    checker.check_library_safety({"numpy"})
    GoodAdapter().increment()
    assert checker.get_report()["total_methods_tracked"] == 1
    assert tsc.enable_checking() is checker
    report = checker.get_report()
    assert report["total_methods_tracked"] == 0 and not report["strict_mode"]
    tsc.disable_checking()
    assert tsc.get_global_checker() is checker and not checker.enabled


@pytest.mark.parametrize("bad", ["no", "False", 0, 1, None, [True]])
def test_strict_mode_must_be_a_bool(bad: object) -> None:
    checker = tsc.get_global_checker()
    with pytest.raises(TypeError, match=r"strict_mode must be a bool \(True or False\), not "):
        tsc.enable_checking(strict_mode=bad)  # type: ignore[arg-type]
    assert not checker.enabled and checker.strict_mode is False  # nothing was changed
    with pytest.raises(TypeError, match="strict_mode must be a bool"):
        ThreadSafetyChecker(strict_mode=bad)  # type: ignore[arg-type]
    scoped = ThreadSafetyChecker(enabled=False)
    with pytest.raises(TypeError, match="strict_mode must be a bool"):
        scoped.strict_mode = bad  # type: ignore[assignment]
    assert scoped.strict_mode is False
    scoped.strict_mode = True
    assert scoped.strict_mode is True


def test_report_has_the_documented_keys_and_reset_clears_it() -> None:
    checker = ThreadSafetyChecker()
    adapter = GoodAdapter()
    adapter.increment()
    report = checker.get_report()
    for key in (
        "enabled",
        "strict_mode",
        "total_runtime",
        "warnings",
        "warnings_issued",
        "concurrent_accesses",
        "total_methods_tracked",
        "total_threads_seen",
        "thread_utilization",
        "recommendations",
    ):
        assert key in report
    assert report["thread_utilization"]["MainThread"]["calls"] == 1
    assert report["total_runtime"] >= 0
    checker.reset()
    report = checker.get_report()
    assert report["total_methods_tracked"] == 0 and report["total_threads_seen"] == 0
    assert report["observed_writes"] == 0


def test_print_thread_safety_report(capsys: pytest.CaptureFixture[str]) -> None:
    checker = ThreadSafetyChecker()
    adapter = BadAdapter()
    with pytest.warns(ThreadSafetyWarning):
        run_threads(lambda _i: adapter.increment(), 2)
    buffer = io.StringIO()
    tsc.print_thread_safety_report(checker, file=buffer)
    text = buffer.getvalue()
    assert "Thread Safety Analysis Report" in text
    assert "Warnings Issued: 1" in text and "BadAdapter.counter" in text
    tsc.enable_checking()
    tsc.print_thread_safety_report()
    assert "Warnings Issued: 0" in capsys.readouterr().out


# -- bounded state ------------------------------------------------------------------------------


@pytest.mark.slow
def test_no_growth_after_a_million_observed_calls() -> None:
    checker = ThreadSafetyChecker()
    hot = GoodAdapter()
    adapters = [GoodAdapter() for _ in range(tsc.MAX_TRACKED_ADAPTERS + 50)]
    names = ["a", "b", "c", "d"]
    keys = [f"method{i}" for i in range(tsc.MAX_TRACKED_METHODS + 10)]
    constructed = checker.get_report()["observed_writes"]  # the writes of the __init__s

    def observe(rounds: int, offset: int = 0) -> None:  # four observed events per round
        for i in range(offset, offset + rounds):
            checker._observe_write(adapters[(i // 8) % len(adapters)], names[i % len(names)], True)
            key = keys[i % len(keys)]
            checker._enter_call(key)
            checker._leave_call(key)
            checker._observe_write(hot, "counter", True)

    # Warm up, on this thread and on short-lived ones: every bounded table is full now.
    observe(100_000)
    run_threads(lambda i: observe(25_000, 100_000 + 25_000 * i), 4)
    gc.collect()
    before = sys.getallocatedblocks()
    run_threads(lambda i: observe(12_500, 200_000 + 12_500 * i), 4)  # 1,000,000 events in all
    gc.collect()
    grown = sys.getallocatedblocks() - before
    assert grown < 2_000, f"{grown} memory blocks more after 200,000 observed events"
    assert len(checker._adapters) <= tsc.MAX_TRACKED_ADAPTERS
    assert len(checker._methods) <= tsc.MAX_TRACKED_METHODS
    report = checker.get_report()
    assert report["observed_writes"] - constructed == 2 * 250_000
    assert sum(m["calls"] for m in report["method_calls"].values()) < 250_000  # some dropped
    assert report["dropped"]["adapters"] > 0 and report["dropped"]["methods"] > 0
    assert report["warnings"] == []  # every write claimed to hold the adapter lock


def test_attribute_tables_are_bounded() -> None:
    checker = ThreadSafetyChecker()
    wide = GoodAdapter()
    for i in range(tsc.MAX_ATTRIBUTES_PER_ADAPTER + 10):
        setattr(wide, f"a{i}", i)
    per_adapter = tsc.MAX_ATTRIBUTES_PER_ADAPTER // 2
    adapters = [GoodAdapter() for _ in range(tsc.MAX_TRACKED_ATTRIBUTES // per_adapter + 5)]
    for adapter in adapters:
        for i in range(per_adapter):
            setattr(adapter, f"a{i}", i)
    states = checker._adapters.values()
    assert all(len(s.attrs) <= tsc.MAX_ATTRIBUTES_PER_ADAPTER for s in states)
    assert sum(len(s.attrs) for s in states) <= tsc.MAX_TRACKED_ATTRIBUTES
    assert checker.get_report()["dropped"]["attributes"] > 0


def test_thread_table_is_bounded() -> None:
    checker = ThreadSafetyChecker()
    adapter = GoodAdapter()
    for _ in range(tsc.MAX_THREAD_ENTRIES + 20):
        thread = threading.Thread(target=adapter.increment)
        thread.start()
        thread.join()
    report = checker.get_report()
    assert report["total_threads_seen"] == tsc.MAX_THREAD_ENTRIES + 20 + 1  # and the main thread
    assert len(report["thread_utilization"]) <= tsc.MAX_THREAD_ENTRIES
    assert report["thread_utilization"][tsc.OTHER_THREADS]["calls"] >= 20


# --------------------------------------------------------------------------------------------
# Async tools: writes are observed on the thread that runs the task
# --------------------------------------------------------------------------------------------


class AsyncCounter(ThreadSafeAdapter):
    """An async tool with an unlocked read-modify-write across an await."""

    __thread_safe__ = True

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    @thread_safe_method
    @tool
    async def bump(self) -> int:
        value = self.count
        await asyncio.sleep(0)  # other tasks of this thread run here
        self.count = value + 1  # the async racy line
        return self.count

    @thread_safe_method
    @tool
    async def locked_bump(self) -> int:
        await asyncio.sleep(0)
        with self.acquire_lock():  # never held across an await
            self.count += 1
            return self.count


ASYNC_BAD_LINE = next(
    start + i
    for source, start in [inspect.getsourcelines(AsyncCounter.bump.__wrapped__)]
    for i, line in enumerate(source)
    if "the async racy line" in line
)
TASKS = 10


async def _tasks_of_one_thread(adapter: AsyncCounter, tool_name: str) -> list[int]:
    return list(await asyncio.gather(*(adapter.acall_tool(tool_name) for _ in range(TASKS))))


def test_tasks_of_one_thread_are_not_a_cross_thread_race() -> None:
    checker = ThreadSafetyChecker(strict_mode=True)  # a race would raise inside the tool
    adapter = AsyncCounter()
    writes_before = checker.get_report()["observed_writes"]
    results = asyncio.run(_tasks_of_one_thread(adapter, "bump"))
    report = checker.get_report()
    # The writes were observed (one per task), all on this thread: no race between threads,
    # although the interleaved tasks lost updates (that is a race between tasks, which locks
    # for threads do not address).
    assert report["observed_writes"] - writes_before == TASKS
    assert report["warnings"] == [] and report["unprotected_writes"] == []
    assert results == [1] * TASKS and adapter.count == 1
    assert report["method_calls"]["AsyncCounter.bump"]["calls"] == TASKS


def test_an_async_tools_unlocked_write_from_two_threads_is_reported() -> None:
    checker = ThreadSafetyChecker()
    adapter = AsyncCounter()

    async def in_thread() -> list[int]:
        return await _tasks_of_one_thread(adapter, "bump")

    with pytest.warns(ThreadSafetyWarning):
        run_concurrently(in_thread, threads=4, timeout=HANG_TIMEOUT)
    report = checker.get_report()
    (race,) = report["unprotected_writes"]
    assert (race["class"], race["attribute"], race["line"]) == (
        "AsyncCounter",
        "count",
        ASYNC_BAD_LINE,
    )
    assert report["warnings_issued"] == 1
    assert f"{__file__}:{ASYNC_BAD_LINE}" in report["warnings"][0]


def test_an_async_tool_writing_under_the_lock_from_many_threads_is_clean() -> None:
    checker = ThreadSafetyChecker(strict_mode=True)
    adapter = AsyncCounter()

    async def in_thread() -> list[int]:
        return await _tasks_of_one_thread(adapter, "locked_bump")

    results = run_concurrently(in_thread, threads=4, timeout=HANG_TIMEOUT)
    assert sorted(n for per_thread in results for n in per_thread) == list(range(1, 4 * TASKS + 1))
    assert checker.get_report()["warnings"] == []
