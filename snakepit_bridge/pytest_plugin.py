"""pytest plugin for adapter projects: concurrency tests in one line.

Installed with the package (entry point ``pytest11``), so it is active in any project that has
snakepit-bridge installed; disable it with ``-p no:snakepit_bridge``. It provides:

* :func:`run_concurrently` (from :mod:`snakepit_bridge.concurrency`, re-exported here; also the
  ``hammer`` fixture): call a function from N threads released together by a barrier, re-raise
  the workers' exceptions (one per type and raising line, with that worker's traceback and a
  note naming every worker that raised it), return the results in a stable order, and fail
  with the stacks of stuck threads instead of hanging;
* ``@pytest.mark.hammer(threads=N, iterations=1, timeout=None)``: run the test body itself in N
  threads at once (fixtures are set up once and shared by the threads); works under
  ``pytest -n auto``, where each xdist worker runs its hammered tests on its own. An
  ``async def`` test body runs on an event loop of each thread (see
  :func:`~snakepit_bridge.concurrency.run_concurrently`, which also runs the ``hammer`` fixture's
  coroutine functions that way);
* the ``thread_safety_checker`` fixture: an enabled ``ThreadSafetyChecker`` for the test; the test
  fails if the checker recorded warnings, unless it is marked
  ``@pytest.mark.allow_thread_safety_warnings``.

The default timeout is 60 seconds, set with the ini option ``snakepit_hammer_timeout`` and
overridden per call (``hammer(..., timeout=)``) or per marker (``timeout=``); in those three
places 0 means wait forever. See ``docs/testing.md``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import pytest

# The harness itself lives in snakepit_bridge.concurrency (importable without pytest); this
# plugin re-exports its names, which is where users have imported them from.
from snakepit_bridge.concurrency import (
    DEFAULT_THREADS,
    DEFAULT_TIMEOUT,
    ConcurrencyTimeoutError,
    run_concurrently,
)

__all__ = [
    "ConcurrencyTimeoutError",
    "Hammer",
    "run_concurrently",
]

R = TypeVar("R")

HAMMER_MARKER = "hammer"
ALLOW_WARNINGS_MARKER = "allow_thread_safety_warnings"
TIMEOUT_INI = "snakepit_hammer_timeout"

_CHECKER_KEY = pytest.StashKey[Any]()
_LATE_FINDINGS_KEY = pytest.StashKey[int]()  # findings that failed the test at teardown
RUN_PARALLEL_UNSAFE_MARKER = "thread_unsafe"
_REPORTED_KEY = pytest.StashKey[int]()  # warnings already judged by the test body


class Hammer:
    """What the ``hammer`` fixture gives: :func:`run_concurrently` with the configured timeout."""

    def __init__(self, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout

    def __call__(
        self,
        fn: Callable[..., R],
        threads: int = DEFAULT_THREADS,
        iterations: int = 1,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
        with_index: bool = False,
    ) -> list[R]:
        __tracebackhide__ = True
        return run_concurrently(
            fn,
            threads,
            iterations,
            args,
            kwargs,
            timeout=self.timeout if timeout is None else _forever_if_zero(timeout),
            with_index=with_index,
        )


# --------------------------------------------------------------------------------------------
# pytest hooks and fixtures
# --------------------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        TIMEOUT_INI,
        help="seconds before a hammer / run_concurrently run fails with the stacks of stuck "
        f"threads (default {DEFAULT_TIMEOUT:g}; 0 waits forever)",
        default=str(DEFAULT_TIMEOUT),
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{HAMMER_MARKER}(threads={DEFAULT_THREADS}, iterations=1, timeout=None): run the test "
        "body in that many threads at once (snakepit-bridge)",
    )
    config.addinivalue_line(
        "markers",
        f"{ALLOW_WARNINGS_MARKER}: do not fail the test when its thread_safety_checker recorded "
        "warnings (snakepit-bridge)",
    )
    # pytest-run-parallel's marker, registered here too so that adding it below never trips
    # --strict-markers when that plugin is not installed.
    config.addinivalue_line(
        "markers", f"{RUN_PARALLEL_UNSAFE_MARKER}: run the test in one thread (pytest-run-parallel)"
    )


# What pytest-run-parallel (--parallel-threads=N) must not multiply: tests that start their own
# threads with this plugin and check their own totals, and checker tests (one checker watches
# every thread of the process, so N copies of a test would report each other's writes).
_NOT_PARALLEL_FIXTURES = {
    "thread_safety_checker": "uses the process-wide thread_safety_checker (snakepit-bridge)",
    "hammer": "starts its own threads with the hammer fixture (snakepit-bridge)",
}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker(RUN_PARALLEL_UNSAFE_MARKER) is not None:
            continue
        reason = None
        if item.get_closest_marker(HAMMER_MARKER) is not None:
            reason = f"runs its body in threads itself (@pytest.mark.{HAMMER_MARKER})"
        else:
            used = getattr(item, "fixturenames", ())
            reason = next(
                (why for name, why in _NOT_PARALLEL_FIXTURES.items() if name in used), None
            )
        if reason is not None:
            item.add_marker(getattr(pytest.mark, RUN_PARALLEL_UNSAFE_MARKER)(reason=reason))


def _forever_if_zero(timeout: float) -> float | None:
    """The plugin's convention (ini option, fixture, marker): 0 or less waits forever."""
    return None if timeout <= 0 else timeout


def _configured_timeout(config: pytest.Config) -> float | None:
    raw = config.getini(TIMEOUT_INI)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise pytest.UsageError(f"{TIMEOUT_INI} must be a number of seconds, got {raw!r}") from None
    return _forever_if_zero(value)


@pytest.fixture
def hammer(request: pytest.FixtureRequest) -> Hammer:
    """Call a function from many threads at once: :func:`run_concurrently` as a fixture.

    ``hammer(fn, threads=8, iterations=1, args=(), kwargs=None, *, timeout=None,
    with_index=False)``; ``timeout=None`` means the ``snakepit_hammer_timeout`` ini value and
    ``timeout=0`` waits forever.
    """
    return Hammer(_configured_timeout(request.config))


@pytest.fixture
def thread_safety_checker(request: pytest.FixtureRequest) -> Iterator[Any]:
    """An enabled ``ThreadSafetyChecker`` observing adapters for the duration of the test.

    The test fails if the checker recorded warnings, unless it is marked
    ``@pytest.mark.allow_thread_safety_warnings`` (then read ``checker.get_report()`` yourself).
    Warnings recorded by the body fail the test itself; warnings recorded later, by the teardown
    of fixtures set up after this one, fail it at teardown.
    """
    from snakepit_bridge.checker.runs import start_checker, stop_checker

    checker = start_checker()
    request.node.stash[_CHECKER_KEY] = checker
    try:
        yield checker
    finally:
        del request.node.stash[_CHECKER_KEY]
        stop_checker(checker)
    reported = request.node.stash.get(_REPORTED_KEY, None)
    if reported is not None:  # the body passed its own check; look for later findings only
        late = _checker_warnings(checker)[reported:]
        if late:
            request.node.stash[_LATE_FINDINGS_KEY] = len(late)
            _fail_on_warnings(late, "during teardown")


def _checker_warnings(checker: Any) -> list[str]:
    return [str(w) for w in checker.get_report().get("warnings", [])]


def _fail_on_warnings(warnings: Sequence[str], when: str) -> None:
    __tracebackhide__ = True
    listed = "\n".join(f"  - {w}" for w in warnings)
    # The first finding on the first line too: it is the line pytest's summary shows.
    pytest.fail(
        f"the thread-safety checker recorded {len(warnings)} warning(s) {when}: {warnings[0]}\n"
        f"{listed}\n"
        f"(mark the test @pytest.mark.{ALLOW_WARNINGS_MARKER} if they are expected)",
        pytrace=False,
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    late = item.stash.get(_LATE_FINDINGS_KEY, None)
    if late is not None and report.when == "teardown" and report.failed:
        # Findings of fixtures torn down after the body are the test's failure, not an error of
        # the test set-up machinery: say so where pytest lists results (see teststatus below).
        report.user_properties.append(("thread_safety_findings", late))
    return report


def pytest_report_teststatus(report: pytest.TestReport) -> tuple[str, str, str] | None:
    if (
        report.when == "teardown"
        and report.failed
        and any(name == "thread_safety_findings" for name, _ in report.user_properties)
    ):
        return "failed", "F", "FAILED"
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    # After the body passed, a test that uses the checker fails on its warnings: the test itself
    # fails, with the warnings as the reason (a fixture teardown could only add an error).
    outcome = yield
    checker = item.stash.get(_CHECKER_KEY, None)
    if checker is not None and item.get_closest_marker(ALLOW_WARNINGS_MARKER) is None:
        warnings = _checker_warnings(checker)
        item.stash[_REPORTED_KEY] = len(warnings)
        if warnings:
            _fail_on_warnings(warnings, "while the test ran")
    return outcome


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, object, object]:
    marker = pyfuncitem.get_closest_marker(HAMMER_MARKER)
    if marker is None:
        return (yield)
    original = pyfuncitem.obj
    if inspect.isasyncgenfunction(original):
        pytest.fail(
            f"@pytest.mark.{HAMMER_MARKER} cannot run the async generator {pyfuncitem.nodeid} "
            "as a test body (a test yields nothing)",
            pytrace=False,
        )
    options = _marker_options(marker, pyfuncitem.config)

    # A plain function even for an `async def` body (which pytest alone refuses as "not natively
    # supported"): each thread runs the body's coroutine on its own event loop.
    @functools.wraps(original)
    def in_threads(**funcargs: Any) -> None:
        __tracebackhide__ = True
        run_concurrently(functools.partial(original, **funcargs), **options)

    # pytest's own pytest_pyfunc_call calls ``pyfuncitem.obj`` with the fixture values; swap in
    # the threaded runner for that one call.
    pyfuncitem.obj = in_threads
    try:
        return (yield)
    finally:
        pyfuncitem.obj = original


def _marker_options(marker: pytest.Mark, config: pytest.Config) -> dict[str, Any]:
    allowed = {"threads", "iterations", "timeout"}
    unknown = set(marker.kwargs) - allowed
    if unknown or len(marker.args) > 1:
        pytest.fail(
            f"@pytest.mark.{HAMMER_MARKER} takes threads, iterations and timeout; "
            f"got args {marker.args!r} and kwargs {sorted(marker.kwargs)!r}",
            pytrace=False,
        )
    options: dict[str, Any] = {
        "threads": marker.args[0] if marker.args else marker.kwargs.get("threads", DEFAULT_THREADS),
        "iterations": marker.kwargs.get("iterations", 1),
        "timeout": _configured_timeout(config)
        if marker.kwargs.get("timeout") is None
        else _forever_if_zero(marker.kwargs["timeout"]),
    }
    for key in ("threads", "iterations"):
        if not isinstance(options[key], int) or options[key] < 1:
            pytest.fail(
                f"@pytest.mark.{HAMMER_MARKER}: {key} must be a positive int, got {options[key]!r}",
                pytrace=False,
            )
    return options
