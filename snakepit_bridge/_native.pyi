"""Type stubs for ``snakepit_bridge._native``, the C core of snakepit-bridge."""

import threading
from collections.abc import Callable, Hashable
from types import CodeType, TracebackType
from typing import Any, Concatenate, Generic, ParamSpec, Self, TypedDict, TypeVar, overload

from snakepit_bridge.base_adapter import BaseAdapter

_P = ParamSpec("_P")
_R = TypeVar("_R")
_R_co = TypeVar("_R_co", covariant=True)
_Self = TypeVar("_Self")

class TrackerStats(TypedDict):
    total_requests: int
    completed_requests: int
    active_requests: int
    total_active_requests: int
    active_threads: int
    threads_seen: int
    requests_by_thread: dict[str, int]
    errors: int
    total_duration: float
    mean_duration: float
    max_duration: float

class AdapterStats(TypedDict):
    adapter_class: str
    thread_safe: bool
    tracker: TrackerStats

# Declared a subclass of threading._RLock for type checkers only, so that
# threading.Condition(adapter.lock) type-checks: typeshed's Condition takes Lock | _RLock | RLock,
# all final classes, hence the ignore.  At run time it is a native type with the same contract
# (acquire, release, __enter__, __exit__ as threading.RLock's, plus the methods below).
class RLock(threading._RLock):  # type: ignore[misc]
    """Reentrant lock with the ``threading.RLock`` contract (usable by ``threading.Condition``)."""

    def __init__(self) -> None: ...
    def locked(self) -> bool: ...
    def _is_owned(self) -> bool: ...
    def _release_save(self) -> tuple[int, int]: ...
    def _acquire_restore(self, state: tuple[int, int], /) -> None: ...
    def _recursion_count(self) -> int: ...

class _Request:
    """One request (from ``track_request()``): entered once, exited once, on any thread."""

    def __enter__(self) -> None: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> bool: ...

class RequestTracker:
    """Per-thread sharded request counter; counts are exact and aggregated when read."""

    def __init__(self) -> None: ...
    def start_request(self) -> None: ...
    def end_request(self, error: bool = False) -> None: ...
    def track_request(self) -> _Request: ...
    def get_stats(self) -> TrackerStats: ...
    def active_requests(self) -> int: ...

class _LockGuard:
    """What acquire_lock() returns: one per adapter and thread, reused by every `with`."""

    def __enter__(self) -> None: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None: ...

class _TimedLockGuard:
    def __enter__(self) -> None: ...
    def __exit__(self, *exc: object) -> None: ...

class ThreadSafeAdapter(BaseAdapter):
    __thread_safe__: bool
    # Non-data descriptors: an instance attribute of the same name shadows them and
    # never affects acquire_lock(), which always uses the native lock.
    @property
    def lock(self) -> RLock: ...
    @property
    def _lock(self) -> RLock: ...
    @property
    def tracker(self) -> RequestTracker: ...
    @property
    def _tracker(self) -> RequestTracker: ...
    def __init__(self) -> None: ...
    def acquire_lock(self, timeout: float | None = None) -> _LockGuard | _TimedLockGuard:
        """ValueError for a negative or NaN timeout, OverflowError for a huge one."""
    def get_thread_local(self, key: Hashable, default: Any = None) -> Any: ...
    def set_thread_local(self, key: Hashable, value: Any, /) -> None: ...
    def clear_thread_local(self, key: Hashable | None = None, /) -> None: ...
    def track_request(self) -> _Request: ...
    def get_stats(self) -> AdapterStats: ...
    def get_stats_dict(self) -> AdapterStats: ...

class thread_safe_method(Generic[_Self, _P, _R_co]):
    """Decorator: tracks each call of an adapter method in the adapter's RequestTracker.

    Typed as a method descriptor that keeps the decorated method's signature: on an instance it
    is the bound method ``(*args: _P) -> _R_co``, on the class the function itself.
    """

    __wrapped__: Callable[Concatenate[_Self, _P], _R_co]
    __func__: Callable[Concatenate[_Self, _P], _R_co]
    __thread_safe__: bool
    __code__: CodeType
    __defaults__: tuple[Any, ...] | None
    __kwdefaults__: dict[str, Any] | None
    def __init__(self, func: Callable[Concatenate[_Self, _P], _R_co], /) -> None: ...
    def __call__(self, instance: _Self, /, *args: _P.args, **kwargs: _P.kwargs) -> _R_co: ...
    @overload
    def __get__(self, instance: None, owner: type | None = None, /) -> Self: ...
    @overload
    def __get__(self, instance: _Self, owner: type | None = None, /) -> Callable[_P, _R_co]: ...

# (adapter, name, owns_adapter_lock, deferred): deferred is None for a write through
# __setattr__ (reported before it), or the (filename, line) of a write that bypassed it. The
# name is a str, except for a non-string key stored through vars(adapter).
WriteObserver = Callable[[ThreadSafeAdapter, object, bool, tuple[str, int] | None], None]
CallObserver = Callable[[thread_safe_method[Any, ..., Any], ThreadSafeAdapter, bool], None]

def set_write_observer(observer: WriteObserver | None, /) -> None:
    """Install (or remove with None) the hook that sees every attribute write or delete on an
    adapter instance: ``observer(adapter, name, owns_adapter_lock, deferred)``.

    A write through the adapter's ``__setattr__`` is reported before it happens, with
    ``deferred=None``; an exception raised by the observer propagates out of the assignment.
    On 3.12+ (``dict_writes_observed``) a write that bypasses it (``object.__setattr__``,
    ``object.__delattr__``, ``vars(adapter)`` or ``adapter.__dict__``) is reported after it, on
    the writing thread, at its next report point (its next observed ``__setattr__`` write, a
    decorated call entering or leaving, or :func:`report_pending_writes`), with
    ``deferred=(filename, line)`` of the writing code; a change of the whole dict is reported
    as ``"__dict__"``, a non-string key as it is, and the observer's exception is unraisable."""

def report_pending_writes() -> int:
    """Deliver now the calling thread's reports of writes that bypassed ``__setattr__`` (see
    :func:`set_write_observer`); returns how many reached an observer."""

def set_call_observer(observer: CallObserver | None, /) -> None:
    """Install (or remove with None) the hook called when a decorated method is entered
    (``entering=True``) and left (``entering=False``) on an adapter."""

def declares_thread_safe(cls_or_adapter: object, /) -> bool:
    """Whether the class (of an instance) declares itself thread-safe: the nearest class of its
    MRO that sets ``__thread_safe__`` in its own body decides, only ``True`` declares, and
    ThreadSafeAdapter's own attribute does not count."""

def lock_owner(lock: RLock, /) -> int:
    """Thread ident of the lock's owner, 0 when free (a snapshot)."""

def _pending_writes() -> tuple[int, int]:
    """(recorded and not delivered yet, dropped for want of room): reports of writes that
    bypassed ``__setattr__``, over every thread (for tests)."""

def _live_shards(tracker: RequestTracker, /) -> int:
    """Number of threads currently holding a shard of the tracker (for tests)."""

__version__: str
free_threaded: bool
debug_build: bool
dict_writes_observed: bool
clock_source: str
