"""The pytest plugin (``snakepit_bridge.pytest_plugin``): helpers directly, hooks via pytester."""

from __future__ import annotations

import importlib.util
import threading

import pytest

from snakepit_bridge.pytest_plugin import ConcurrencyTimeoutError, run_concurrently

pytest_plugins = ["pytester"]


def test_a_thread_that_cannot_start_leaves_no_thread_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_start = threading.Thread.start
    started: list[threading.Thread] = []

    def start_at_most_three(self: threading.Thread) -> None:
        if self.name.startswith("run_concurrently-"):
            if len(started) == 3:
                raise RuntimeError("can't start new thread")
            started.append(self)
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", start_at_most_three)
    calls: list[int] = []
    with pytest.raises(RuntimeError, match="can't start new thread"):
        run_concurrently(calls.append, threads=8, with_index=True, timeout=None)
    assert len(started) == 3
    assert not any(thread.is_alive() for thread in started)  # released and joined
    assert calls == []  # nobody ran: the barrier was never complete


def test_the_plugin_re_exports_the_one_harness() -> None:
    from snakepit_bridge import concurrency, pytest_plugin

    assert pytest_plugin.run_concurrently is concurrency.run_concurrently
    assert pytest_plugin.ConcurrencyTimeoutError is concurrency.ConcurrencyTimeoutError


# Adapters shared by the pytester runs below: one with its counter under the adapter lock, one
# with the guide's pitfall 1 (``self.count += 1`` without it).
ADAPTERS = """
from snakepit_bridge import ThreadSafeAdapter, thread_safe_method


class LockedCounter(ThreadSafeAdapter):
    __thread_safe__ = True

    def __init__(self):
        super().__init__()
        self.count = 0

    @thread_safe_method
    def increment(self):
        with self.acquire_lock():
            self.count += 1
            return self.count


class RacyCounter(ThreadSafeAdapter):
    __thread_safe__ = True

    def __init__(self):
        super().__init__()
        self.count = 0

    @thread_safe_method
    def increment(self):
        self.count += 1
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester project with the adapters module; the plugin comes from its entry point."""
    pytester.makepyfile(adapters=ADAPTERS)
    pytester.syspathinsert()
    return pytester


# --------------------------------------------------------------------------------------------
# run_concurrently itself
# --------------------------------------------------------------------------------------------


def test_results_come_back_ordered_by_thread_then_iteration() -> None:
    results = run_concurrently(
        lambda i, k: (i, k), threads=4, iterations=3, args=("x",), with_index=True
    )
    assert results == [(i, "x") for i in range(4) for _ in range(3)]


def test_threads_are_released_together() -> None:
    # Every call waits until all threads are inside fn at once: only possible if they overlap.
    everyone_inside = threading.Barrier(6)
    results = run_concurrently(lambda: everyone_inside.wait(timeout=10), threads=6, timeout=30)
    assert sorted(results) == list(range(6))


def test_kwargs_are_passed_and_zero_iterations_return_nothing() -> None:
    assert run_concurrently(lambda a, b=0: a + b, threads=2, args=(1,), kwargs={"b": 2}) == [3, 3]
    assert run_concurrently(lambda: 1, threads=3, iterations=0) == []


def test_one_kind_of_failure_is_reraised_as_itself_with_the_worker_traceback() -> None:
    def fail_in_odd_threads(index: int) -> int:
        if index % 2:
            raise KeyError(index)
        return index

    with pytest.raises(KeyError) as excinfo:
        run_concurrently(fail_in_odd_threads, threads=4, with_index=True)
    assert excinfo.traceback[-1].name == "fail_in_odd_threads"
    notes = "\n".join(excinfo.value.__notes__)
    assert "raised in worker 1 of 4" in notes
    assert "workers 3" in notes


def test_different_failures_are_grouped_one_exception_each() -> None:
    def fail(index: int) -> None:
        if index == 0:
            raise ValueError("first kind")
        raise TypeError("second kind")

    with pytest.raises(ExceptionGroup) as excinfo:
        run_concurrently(fail, threads=5, iterations=2, with_index=True)
    kinds = sorted(type(e).__name__ for e in excinfo.value.exceptions)
    assert kinds == ["TypeError", "ValueError"]
    assert "5 of 5 threads" in str(excinfo.value)


def test_a_worker_stops_at_its_first_exception() -> None:
    calls = []
    lock = threading.Lock()

    def record_then_fail() -> None:
        with lock:
            calls.append(1)
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        run_concurrently(record_then_fail, threads=3, iterations=10)
    assert len(calls) == 3


def test_a_stuck_worker_times_out_with_its_stack() -> None:
    release = threading.Event()

    def wait_for_release() -> None:
        release.wait()

    try:
        with pytest.raises(ConcurrencyTimeoutError) as excinfo:
            run_concurrently(wait_for_release, threads=2, timeout=0.5)
    finally:
        release.set()  # let the abandoned threads end
    message = str(excinfo.value)
    assert "2 of 2 threads" in message
    assert "in wait_for_release" in message
    assert "release.wait()" in message


def test_coroutine_functions_run_on_one_event_loop_per_thread() -> None:
    import asyncio

    async def where(index: int, step: int) -> tuple[int, int, str, int]:
        await asyncio.sleep(0)  # really suspended on the loop, and resumed
        loop = asyncio.get_running_loop()
        return index, step, threading.current_thread().name, id(loop)

    results = run_concurrently(where, threads=4, iterations=3, args=(7,), with_index=True)
    assert [(i, step) for i, step, _, _ in results] == [(i, 7) for i in range(4) for _ in range(3)]
    loops = {index: {loop for i, _, _, loop in results if i == index} for index in range(4)}
    assert all(len(ids) == 1 for ids in loops.values())  # one loop per thread, reused
    assert len({ids.pop() for ids in loops.values()}) == 4  # and not shared between threads
    assert all(name.startswith("run_concurrently-") for _, _, name, _ in results)


def test_a_returned_coroutine_is_run_and_its_failure_reraised() -> None:
    import asyncio

    ran: list[int] = []

    async def body(index: int) -> int:
        await asyncio.sleep(0)
        if index == 2:
            raise LookupError(f"async worker {index} failed")
        ran.append(index)
        return index * 10

    # A plain function that returns a coroutine (as `lambda: adapter.acall_tool(...)` does).
    assert run_concurrently(lambda i: body(i), threads=2, with_index=True) == [0, 10]
    with pytest.raises(LookupError, match="async worker 2 failed") as failure:
        run_concurrently(body, threads=3, with_index=True)
    assert "raised in worker 2 of 3" in failure.value.__notes__[0]
    assert sorted(ran) == [0, 0, 1, 1]


def test_invalid_arguments_are_rejected() -> None:
    with pytest.raises(ValueError):
        run_concurrently(lambda: None, threads=0)
    with pytest.raises(ValueError):
        run_concurrently(lambda: None, iterations=-1)


# --------------------------------------------------------------------------------------------
# The plugin inside pytest runs
# --------------------------------------------------------------------------------------------


def test_markers_are_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(
        ["@pytest.mark.hammer(threads=8*", "@pytest.mark.allow_thread_safety_warnings*"]
    )


def test_hammer_fixture_passing_and_failing(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        from adapters import LockedCounter, RacyCounter

        def test_exact_count(hammer):
            adapter = LockedCounter()
            results = hammer(adapter.increment, threads=8, iterations=250)
            assert len(results) == 2000
            assert sorted(results) == list(range(1, 2001))
            assert adapter.count == 2000

        def test_worker_assertion_fails_the_test(hammer):
            def check(index):
                assert index < 3, f"worker {index} saw a bad value"
            hammer(check, threads=4, with_index=True)
        """
    )
    result = project.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*AssertionError: worker 3 saw a bad value*", "*raised in worker 3 of 4*"]
    )


def test_hammer_marker_runs_the_body_in_n_threads(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import threading
        import pytest
        from adapters import LockedCounter

        SEEN = set()
        ADAPTER = LockedCounter()

        @pytest.fixture(scope="module")
        def adapter():
            return ADAPTER

        @pytest.mark.hammer(threads=6, iterations=5)
        def test_body(adapter):
            SEEN.add(threading.get_ident())
            assert adapter.increment() >= 1

        def test_after():
            assert ADAPTER.count == 30
            assert len(SEEN) == 6

        @pytest.mark.hammer(4)
        def test_failing_body():
            assert threading.current_thread() is threading.main_thread()
        """
    )
    result = project.runpytest()
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*test_failing_body*", "*raised in worker * of 4*"])


def test_async_test_bodies_and_fixture_coroutines_run_in_threads(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import asyncio
        import threading
        import pytest
        from adapters import LockedCounter

        ADAPTER = LockedCounter()
        LOOPS = set()

        @pytest.mark.hammer(threads=4, iterations=5)
        async def test_async_body():
            await asyncio.sleep(0)
            LOOPS.add((threading.get_ident(), id(asyncio.get_running_loop())))
            ADAPTER.increment()

        def test_after():
            assert ADAPTER.count == 20
            assert len(LOOPS) == 4 and len({loop for _, loop in LOOPS}) == 4

        def test_fixture_runs_coroutine_functions(hammer):
            adapter = LockedCounter()

            async def bump():
                await asyncio.sleep(0)
                return adapter.increment()

            results = hammer(bump, threads=8, iterations=25)
            assert sorted(results) == list(range(1, 201))

        @pytest.mark.hammer(threads=3)
        async def test_failing_async_body():
            await asyncio.sleep(0)
            assert threading.current_thread() is threading.main_thread()
        """
    )
    result = project.runpytest("-W", "error")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*test_failing_async_body*", "*raised in worker * of 3*"])


def test_hammer_marker_rejects_bad_options(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest

        @pytest.mark.hammer(threads=0)
        def test_zero_threads():
            pass

        @pytest.mark.hammer(threads=2, repeat=3)
        def test_unknown_option():
            pass

        @pytest.mark.hammer(threads=2)
        async def test_async_generator_body():
            yield

        @pytest.mark.hammer(threads=2, timeout=0)
        def test_zero_timeout_waits_forever():
            pass
        """
    )
    result = project.runpytest()
    result.assert_outcomes(failed=3, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_zero_threads _*",
            "@pytest.mark.hammer: threads must be a positive int, got 0",
            "*_ test_unknown_option _*",
            "@pytest.mark.hammer takes threads, iterations and timeout;*",
            "*_ test_async_generator_body _*",
            "@pytest.mark.hammer cannot run the async generator *",
        ]
    )


@pytest.mark.skipif(importlib.util.find_spec("xdist") is None, reason="needs pytest-xdist")
def test_hammer_marker_under_xdist(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import threading
        import pytest
        from adapters import LockedCounter

        @pytest.mark.hammer(threads=4, iterations=10)
        def test_one():
            assert threading.current_thread().name.startswith("run_concurrently-")

        @pytest.mark.hammer(threads=3)
        def test_two():
            LockedCounter().increment()

        def test_plain(hammer):
            assert hammer(lambda: 1, threads=2) == [1, 1]
        """
    )
    result = project.runpytest("-n", "2")
    result.assert_outcomes(passed=3)


def test_deadlocking_body_hits_the_timeout_with_stacks(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import threading
        import pytest

        first = threading.Lock()
        second = threading.Lock()
        both_hold_one = threading.Barrier(2)

        def take_in_order(a, b):
            with a:
                both_hold_one.wait()
                with b:
                    pass

        def test_lock_order_inversion(hammer):
            def worker(index):
                if index == 0:
                    take_in_order(first, second)
                else:
                    take_in_order(second, first)
            hammer(worker, threads=2, with_index=True, timeout=1)

        @pytest.mark.hammer(threads=2, timeout=1)
        def test_marker_body_waits_forever():
            threading.Event().wait()
        """
    )
    # A subprocess: the deadlocked threads can never be released, so they die with it.
    result = project.runpytest_subprocess(timeout=120)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*ConcurrencyTimeoutError: 2 of 2 threads running *worker did not finish within 1 s*",
            "*in take_in_order*",
            "*with b:*",
        ]
    )
    result.stdout.fnmatch_lines(["*test_marker_body_waits_forever did not finish within 1 s*"])


def test_timeout_comes_from_the_ini_option(project: pytest.Pytester) -> None:
    project.makeini("[pytest]\nsnakepit_hammer_timeout = 0.5\n")
    project.makepyfile(
        """
        import threading

        RELEASE = threading.Event()

        def test_stuck(hammer):
            try:
                hammer(RELEASE.wait, threads=2)
            finally:
                RELEASE.set()
        """
    )
    result = project.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*did not finish within 0.5 s*"])


def test_checker_fixture_fails_a_racy_test_and_passes_a_locked_one(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(
        """
        import pytest
        from adapters import LockedCounter, RacyCounter

        def test_locked(thread_safety_checker, hammer):
            adapter = LockedCounter()
            hammer(adapter.increment, threads=8, iterations=50)
            assert thread_safety_checker.get_report()["warnings"] == []

        def test_racy(thread_safety_checker, hammer):
            hammer(RacyCounter().increment, threads=8, iterations=50)

        USED = []

        @pytest.mark.allow_thread_safety_warnings
        def test_racy_but_allowed(thread_safety_checker, hammer):
            USED.append(thread_safety_checker)
            hammer(RacyCounter().increment, threads=8, iterations=50)
            report = thread_safety_checker.get_report()
            assert any("RacyCounter.count" in w for w in report["warnings"])

        def test_checker_is_off_after_its_test():
            assert USED and not USED[0].enabled
        """
    )
    result = project.runpytest("-W", "ignore::RuntimeWarning")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_racy*",
            "*the thread-safety checker recorded 1 warning(s) while the test ran:*",
            "*unprotected write to RacyCounter.count*",
        ]
    )


def test_checker_fixture_fails_at_teardown_on_later_warnings(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest
        from snakepit_bridge.pytest_plugin import run_concurrently
        from adapters import RacyCounter

        @pytest.fixture
        def racy_on_teardown():
            adapter = RacyCounter()
            yield adapter
            run_concurrently(adapter.increment, threads=4, iterations=20)

        def test_body_is_clean(thread_safety_checker, racy_on_teardown):
            racy_on_teardown.increment()  # one thread only: not a race yet
        """
    )
    result = project.runpytest("-W", "ignore::RuntimeWarning", "-ra")
    # A failure of the test (not an error of its set-up), with the finding where pytest lists
    # the results.
    result.assert_outcomes(passed=1, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*the thread-safety checker recorded 1 warning(s) during teardown: *RacyCounter.count*",
            "*short test summary*",
            "FAILED *test_body_is_clean*",
        ]
    )


# --------------------------------------------------------------------------------------------
# With pytest-run-parallel
# --------------------------------------------------------------------------------------------


def test_with_pytest_run_parallel_our_threaded_tests_run_once(project: pytest.Pytester) -> None:
    """pytest --parallel-threads=4 multiplies every test by 4; a hammer-marked test, a test using
    the hammer fixture and a checker test would then check totals (or findings) of 4 copies at
    once. They are marked thread_unsafe for pytest-run-parallel, and keep their exact counts."""
    pytest.importorskip("pytest_run_parallel")
    project.makepyfile(
        """
        import pytest
        from adapters import LockedCounter

        shared = LockedCounter()
        fixture_counter = LockedCounter()

        @pytest.mark.hammer(threads=16, iterations=10)
        def test_marked():
            shared.increment()

        def test_marked_total():
            assert shared.count == 160

        def test_fixture(hammer):
            hammer(fixture_counter.increment, threads=8, iterations=10)
            assert fixture_counter.count == 80

        def test_checker(thread_safety_checker, hammer):
            c = LockedCounter()
            hammer(c.increment, threads=4, iterations=10)
            assert c.count == 40

        def test_plain_runs_in_parallel(num_parallel_threads):
            assert num_parallel_threads == 4
        """
    )
    result = project.runpytest("-p", "run-parallel", "--parallel-threads=4", "-v")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(
        [
            "*pytest-run-parallel report*",
            "*::test_marked was not run in parallel: runs its body in threads itself*",
            "*::test_fixture was not run in parallel: starts its own threads with the hammer*",
            "*::test_checker was not run in parallel: uses the process-wide thread_safety_checker*",
        ]
    )
    assert "test_plain_runs_in_parallel was not run in parallel" not in result.stdout.str()
