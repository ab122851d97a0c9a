"""One thread harness: call a function from many threads released together, and say what failed.

:func:`run_concurrently` is what the pytest plugin's ``hammer`` fixture and ``@pytest.mark.hammer``
run, and what the project's own tests, stress runner and benchmarks start their threads with. It
needs nothing but the standard library (importable without pytest):

* the threads wait on a :class:`threading.Barrier` and are released together, so the calls
  really overlap;
* worker exceptions are re-raised in the calling thread, one per type and raising line, each
  with its worker's traceback and a note naming the workers that raised it (PEP 678 notes; an
  ``ExceptionGroup`` when there are several different ones, PEP 654);
* workers still running at the timeout are reported with their current stacks
  (:class:`ConcurrencyTimeoutError`) instead of hanging the caller;
* a coroutine function (``async def``), or any function that returns a coroutine (such as
  ``lambda: adapter.acall_tool("name")``), is run to its end on an event loop of the calling
  worker thread: each thread has its own loop, made on first use and closed when the thread is
  done, so the coroutines of different threads really run at once and a result is never a
  coroutine that nothing ran.
"""

from __future__ import annotations

import asyncio
import functools
import sys
import threading
import time
import traceback
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any, TypeVar

__all__ = [
    "DEFAULT_THREADS",
    "DEFAULT_TIMEOUT",
    "ConcurrencyTimeoutError",
    "format_thread_stacks",
    "run_concurrently",
]

R = TypeVar("R")

DEFAULT_TIMEOUT = 60.0
DEFAULT_THREADS = 8


class ConcurrencyTimeoutError(TimeoutError):
    """Workers of :func:`run_concurrently` did not finish in time; the message has their stacks."""


def run_concurrently(
    fn: Callable[..., R],
    threads: int = DEFAULT_THREADS,
    iterations: int = 1,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    timeout: float | None = DEFAULT_TIMEOUT,
    with_index: bool = False,
) -> list[R]:
    """Call ``fn(*args, **kwargs)`` ``iterations`` times in each of ``threads`` threads at once.

    The threads wait on a barrier and start together. The results come back as one list ordered
    by thread, then iteration (``threads * iterations`` items). With ``with_index=True`` the
    thread's index (0 to ``threads - 1``) is passed as the first positional argument. When
    ``fn`` is a coroutine function, or returns a coroutine, each call's coroutine is run to its
    end on the worker thread's own event loop (one per thread, reused by its iterations) and its
    value is the result.

    A worker stops at its first exception; the others carry on. Exceptions are then grouped by
    type and raising line: one group is re-raised as the exception itself, several as an
    ``ExceptionGroup`` of one exception per group. Each carries its worker's traceback and a note
    saying which workers raised it.

    When a thread cannot be started, the threads already started are released and joined, and
    the error is raised. If the workers have not finished after ``timeout`` seconds (``None``:
    wait forever), they are asked to stop after their current call and
    :class:`ConcurrencyTimeoutError` is raised with the stacks of the threads still running;
    threads stuck for good are left behind as daemons.
    """
    __tracebackhide__ = True  # pytest: show the test and the workers, not this machinery
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    if iterations < 0:
        raise ValueError(f"iterations must not be negative, got {iterations}")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be positive seconds or None, got {timeout}")
    call_kwargs = dict(kwargs or {})
    results: list[list[R]] = [[] for _ in range(threads)]
    failures: list[tuple[int, BaseException] | None] = [None] * threads
    stop = threading.Event()
    barrier = threading.Barrier(threads)

    def work(index: int) -> None:
        try:
            barrier.wait(timeout)
        except threading.BrokenBarrierError:
            return  # another worker never arrived; the timeout below reports it
        call_args = (index, *args) if with_index else tuple(args)
        out = results[index]
        runner: asyncio.Runner | None = None  # this thread's event loop, made on first use
        iteration = 0
        try:
            for iteration in range(iterations):  # noqa: B007 - read in the handler below
                if stop.is_set():
                    return
                result = fn(*call_args, **call_kwargs)
                if isinstance(result, Coroutine):
                    if runner is None:
                        runner = asyncio.Runner()
                    result = runner.run(result)
                out.append(result)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
            failures[index] = (iteration, exc)
        finally:
            if runner is not None:
                try:
                    runner.close()
                except BaseException as exc:  # noqa: BLE001 - as above
                    if failures[index] is None:
                        failures[index] = (iteration, exc)

    name = _describe(fn)
    workers = [
        threading.Thread(target=work, args=(i,), name=f"run_concurrently-{i} ({name})", daemon=True)
        for i in range(threads)
    ]
    started: list[threading.Thread] = []
    try:
        for worker in workers:
            worker.start()
            started.append(worker)
    except BaseException:  # "can't start new thread": release the started ones, then report
        stop.set()
        barrier.abort()  # they leave the barrier at once and end
        for worker in started:
            worker.join()
        raise
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        for worker in workers:
            worker.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
    except BaseException:  # Ctrl-C while waiting: let the workers wind down
        stop.set()
        barrier.abort()
        raise
    stuck = [worker for worker in workers if worker.is_alive()]
    if stuck:
        stacks = format_thread_stacks(stuck)  # before stopping: where they are stuck now
        stop.set()
        barrier.abort()
        raise ConcurrencyTimeoutError(
            f"{len(stuck)} of {threads} threads running {name} did not finish within "
            f"{timeout:g} s (deadlock, or too slow for the timeout?). Their stacks:\n\n{stacks}"
        )
    _raise_failures(failures, threads, name)
    return [item for per_thread in results for item in per_thread]


def _describe(fn: Callable[..., Any]) -> str:
    """A short name for messages: the qualified name, through ``functools.partial`` layers."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return getattr(fn, "__qualname__", None) or repr(fn)


def _raise_failures(
    failures: Sequence[tuple[int, BaseException] | None], threads: int, name: str
) -> None:
    __tracebackhide__ = True
    groups: dict[tuple[type[BaseException], str], list[tuple[int, int, BaseException]]] = {}
    for index, failure in enumerate(failures):
        if failure is not None:
            iteration, exc = failure
            groups.setdefault((type(exc), _raise_site(exc)), []).append((index, iteration, exc))
    if not groups:
        return
    representatives = []
    for members in groups.values():
        index, iteration, exc = members[0]
        note = f"raised in worker {index} of {threads} (iteration {iteration}) running {name}"
        if len(members) > 1:
            others = ", ".join(str(m[0]) for m in members[1:])
            note += f"; the same exception at the same line was raised by workers {others}"
        exc.add_note(note)
        representatives.append(exc)
    if len(representatives) == 1:
        raise representatives[0]
    raising = sum(len(members) for members in groups.values())
    raise BaseExceptionGroup(
        f"{raising} of {threads} threads running {name} raised ({len(groups)} different failures)",
        representatives,
    )


def _raise_site(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"


def format_thread_stacks(threads: Iterable[threading.Thread]) -> str:
    """The current stack of each given live thread, for "what is it stuck on" messages.

    The thread-start frames of the ``threading`` module are left out: they are the same for
    every thread and say nothing about where it is stuck.
    """
    frames = sys._current_frames()
    parts = []
    for thread in threads:
        frame = frames.get(thread.ident) if thread.ident is not None else None
        if frame is None:
            continue
        stack = traceback.extract_stack(frame)
        while len(stack) > 1 and stack[0].filename == threading.__file__:
            del stack[0]
        text = "".join(traceback.format_list(stack))
        parts.append(
            f'Thread "{thread.name}" (ident {thread.ident}), most recent call last:\n{text}'
        )
    return "\n".join(parts)
