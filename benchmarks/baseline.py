"""The pure-Python baseline: the thread-safe adapter API built the way users build it today.

This is a benchmark fixture, not part of the package. It implements the same API as
``snakepit_bridge._native`` the way the user guides and the upstream pure-Python bridge do
(see docs/performance.md), so the benchmarks can say what the native core saves:

* the adapter lock is a ``threading.RLock`` behind a ``contextlib.contextmanager`` generator,
  so every ``with adapter.acquire_lock():`` builds a fresh single-use context manager;
* thread-local storage is one ``threading.local`` per adapter, read with ``getattr`` and
  written with ``setattr`` (so keys must be ``str``, as upstream);
* the request tracker is a set of dicts and an int under one ``threading.Lock``;
* ``thread_safe_method`` is a ``functools.wraps`` closure that reads the thread's ident and
  name, starts a request on the tracker, times the call with ``time.time()``, logs at DEBUG
  (and at ERROR with the traceback on failure) and ends the request in ``finally``.

It is written to be a fair, even charitable, baseline: log messages use lazy ``%``
formatting, so a disabled DEBUG logger costs only its level check, and nothing is done
that upstream does not do. ``quiet_thread_safe_method`` (the same without the DEBUG log
calls) is measured as a reference, because that level check is expensive on some releases.
Nothing here imports ``snakepit_bridge``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

__all__ = [
    "RequestTracker",
    "ThreadLocalStorage",
    "ThreadSafeAdapter",
    "quiet_thread_safe_method",
    "thread_safe_method",
]

logger = logging.getLogger("benchmarks.baseline")


class ThreadLocalStorage:
    """Per-object, per-thread values on top of one ``threading.local``."""

    __slots__ = ("_local",)

    def __init__(self) -> None:
        self._local = threading.local()

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self._local, key, default)

    def set(self, key: str, value: Any) -> None:
        setattr(self._local, key, value)

    def delete(self, key: str) -> None:
        try:
            delattr(self._local, key)
        except AttributeError:
            pass

    def clear(self) -> None:
        self._local.__dict__.clear()


class RequestTracker:
    """Request counts by thread ident, all under one non-reentrant lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.total_requests = 0
        self.requests_by_thread: defaultdict[int, int] = defaultdict(int)
        self.active_requests: defaultdict[int, int] = defaultdict(int)

    def start_request(self, thread_id: int | None = None) -> int:
        if thread_id is None:
            thread_id = threading.get_ident()
        with self.lock:
            self.total_requests += 1
            self.requests_by_thread[thread_id] += 1
            self.active_requests[thread_id] += 1
            return self.total_requests

    def end_request(self, thread_id: int | None = None) -> None:
        if thread_id is None:
            thread_id = threading.get_ident()
        with self.lock:
            if self.active_requests[thread_id] > 0:
                self.active_requests[thread_id] -= 1

    def get_stats(self) -> dict[str, int]:
        with self.lock:
            return {
                "total_requests": self.total_requests,
                "active_threads": sum(1 for n in self.active_requests.values() if n > 0),
                "total_active_requests": sum(self.active_requests.values()),
                "threads_seen": len(self.requests_by_thread),
            }


def _tracking_wrapper(func: Callable[..., Any], log: bool) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(self, ThreadSafeAdapter):
            return func(self, *args, **kwargs)
        ident = threading.get_ident()
        thread_name = threading.current_thread().name
        tracker = self._tracker
        request_no = tracker.start_request(ident)
        started = time.time()
        if log:
            logger.debug("[%s] request #%d: %s", thread_name, request_no, func.__name__)
        try:
            result = func(self, *args, **kwargs)
            if log:
                logger.debug(
                    "[%s] request #%d: %s completed in %.3fs",
                    thread_name,
                    request_no,
                    func.__name__,
                    time.time() - started,
                )
            return result
        except Exception:
            logger.error(
                "[%s] request #%d: %s failed after %.3fs",
                thread_name,
                request_no,
                func.__name__,
                time.time() - started,
                exc_info=True,
            )
            raise
        finally:
            tracker.end_request(ident)

    wrapper.__thread_safe__ = True  # type: ignore[attr-defined]
    return wrapper


def thread_safe_method(func: Callable[..., Any]) -> Callable[..., Any]:
    """Track every call of an adapter method, and log it at DEBUG (as users' code does)."""
    return _tracking_wrapper(func, log=True)


def quiet_thread_safe_method(func: Callable[..., Any]) -> Callable[..., Any]:
    """The same without the two DEBUG log calls of a successful call (a reference only).

    In recent CPython releases (3.13.5 has it, 3.13.0 and 3.11 do not) a *disabled*
    ``logger.debug`` is not free: logging's recursion guard reads an attribute of a
    ``threading.local`` that is normally missing, which raises and swallows an AttributeError
    on every call. This variant shows what the rest of the baseline costs.
    """
    return _tracking_wrapper(func, log=False)


class ThreadSafeAdapter:
    """Adapter base: a reentrant lock, thread-local storage and a request tracker."""

    __thread_safe__ = True

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._thread_local = ThreadLocalStorage()
        self._tracker = RequestTracker()
        logger.debug("initialised %s", type(self).__name__)

    @contextlib.contextmanager
    def acquire_lock(self) -> Iterator[None]:
        self._lock.acquire()
        try:
            yield
        finally:
            self._lock.release()

    def get_thread_local(self, key: str, default: Any = None) -> Any:
        return self._thread_local.get(key, default)

    def set_thread_local(self, key: str, value: Any) -> None:
        self._thread_local.set(key, value)

    def clear_thread_local(self, key: str | None = None) -> None:
        if key is None:
            self._thread_local.clear()
        else:
            self._thread_local.delete(key)

    @contextlib.contextmanager
    def track_request(self) -> Iterator[int]:
        request_no = self._tracker.start_request()
        try:
            yield request_no
        finally:
            self._tracker.end_request()

    def get_stats(self) -> dict[str, Any]:
        return {
            "adapter_class": type(self).__name__,
            "thread_safe": self.__thread_safe__,
            "tracker": self._tracker.get_stats(),
        }

    def get_stats_dict(self) -> dict[str, Any]:
        return self.get_stats()
