"""A runtime thread-safety checker for adapters.

While at least one :class:`ThreadSafetyChecker` is enabled, the native core reports every write
(or delete) of an adapter instance attribute and every entry into and exit from a
``@thread_safe_method``. The checker uses them to find:

* **Unprotected shared writes** (warnings). Per adapter and attribute it runs the state machine
  of the Eraser lockset algorithm, reduced to writes: an attribute is *exclusive* to the first
  thread that writes it (construction in ``__init__``, set-up before threads start); once a
  second thread writes it, it is *shared* and every write must hold a guarding lock: the
  adapter's own lock (``with self.acquire_lock():``), the lock named for that attribute in the
  class's ``__guarded_by__`` mapping, or - when the attribute has no declaration - any lock
  held in one of the adapter's attributes (see :func:`_user_lock_held` for the approximation).
  A write without one is a race: a :class:`ThreadSafetyWarning` naming class, attribute, threads
  and source line, once per class and attribute; in strict mode a :class:`ThreadSafetyError` at
  every racy write.
* **Concurrent calls** (information, never a warning): how many calls of each tracked method
  were in flight at the same time.
* **Thread-unsafe libraries** in ``sys.modules`` (:meth:`ThreadSafetyChecker.check_library_safety`).
* **Undeclared adapter classes**: classes that do not declare themselves thread-safe (the rule of
  :mod:`snakepit_bridge.declaration`: the nearest class that sets ``__thread_safe__`` decides, and
  ThreadSafeAdapter's own attribute does not count).

What it cannot see: in-place mutation of a shared object (``self.items.append(x)``,
``self.totals[k] += 1``) is not an attribute write; reads are not observed, so an unlocked read of
a value written under the lock is not reported; state outside adapter instances (module globals,
class attributes) is not observed.

Observation costs nothing when no checker is enabled: the native hooks are installed only while
one is, and removed when the last one is disabled or collected.
"""

from __future__ import annotations

import ast
import functools
import inspect
import itertools
import sys
import textwrap
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, ParamSpec, TextIO, TypeVar

from snakepit_bridge import _native
from snakepit_bridge._native import ThreadSafeAdapter, thread_safe_method
from snakepit_bridge.base_adapter import BaseAdapter, _class_attributes, _find_metadata
from snakepit_bridge.declaration import declaration_problem, require_thread_safe

__all__ = [
    "ThreadSafetyChecker",
    "ThreadSafetyError",
    "ThreadSafetyWarning",
    "check_common_pitfalls",
    "check_thread_safe",
    "disable_checking",
    "enable_checking",
    "get_global_checker",
    "print_thread_safety_report",
    "require_thread_safe_adapter",
    "validate_adapter_thread_safety",
]

_P = ParamSpec("_P")
_R = TypeVar("_R")

# Bounds that keep a long-running checker's memory flat. What does not fit is counted.
MAX_TRACKED_ADAPTERS: Final = 1024
MAX_ATTRIBUTES_PER_ADAPTER: Final = 256
MAX_TRACKED_ATTRIBUTES: Final = 16384  # over all adapters
MAX_TRACKED_METHODS: Final = 4096
MAX_THREAD_ENTRIES: Final = 256
MAX_METHODS_PER_THREAD: Final = 64
MAX_WARNINGS: Final = 1000
MAX_CLASSES_CHECKED: Final = 1024
OTHER_THREADS: Final = "(other threads)"

_THIS_MODULE = __name__
_LockType = type(threading.Lock())
_RLockTypes: tuple[type, ...] = (type(threading.RLock()), threading._PyRLock, _native.RLock)  # type: ignore[attr-defined]


class ThreadSafetyWarning(RuntimeWarning):
    """Issued by a checker for each thread-safety problem it finds (once per problem)."""


class ThreadSafetyError(RuntimeError):
    """Raised by a strict-mode checker at a racy write or when an unsafe library is found."""


@dataclass(frozen=True)
class _LibraryAdvice:
    reason: str
    safe_pattern: str


_UNSAFE_LIBRARIES: Final[Mapping[str, _LibraryAdvice]] = MappingProxyType(
    {
        "pandas": _LibraryAdvice(
            reason="DataFrame and Series objects are not safe to mutate from several threads, "
            "and even reads can race with pandas' internal caches.",
            safe_pattern="build a DataFrame per request (or per thread), or hold "
            "self.acquire_lock() around every operation on a shared one; or use the process "
            "worker profile.",
        ),
        "matplotlib": _LibraryAdvice(
            reason="pyplot keeps global state (the current figure and axes) and its backends "
            "are not thread-safe.",
            safe_pattern="use the object API (matplotlib.figure.Figure with the Agg canvas), "
            "one figure per thread, and never pyplot from worker threads.",
        ),
        "sqlite3": _LibraryAdvice(
            reason="a connection may by default only be used by the thread that created it, and "
            "sharing one connection across threads needs external locking.",
            safe_pattern="open one connection per thread (keep it with set_thread_local), or "
            "guard a shared connection made with check_same_thread=False by a lock.",
        ),
        "tkinter": _LibraryAdvice(
            reason="Tk must be driven from the thread that created the interpreter.",
            safe_pattern="keep all Tk calls on one thread and hand work to it through a "
            "queue.Queue.",
        ),
        "shelve": _LibraryAdvice(
            reason="a shelf does not support concurrent access, not even concurrent reads "
            "while another thread writes.",
            safe_pattern="guard every access to a shared shelf with a lock, or use a database "
            "made for concurrent access.",
        ),
        "curses": _LibraryAdvice(
            reason="curses drives one terminal through global state.",
            safe_pattern="draw from a single thread and send it updates through a queue.Queue.",
        ),
    }
)


# --------------------------------------------------------------------------------------------
# Installing the native hooks while at least one checker is enabled
# --------------------------------------------------------------------------------------------

# Weak references to the enabled checkers. Replaced as a whole (never mutated), so the
# dispatchers read it without a lock. A checker that is collected stops observing.
_active: tuple[weakref.ref[ThreadSafetyChecker], ...] = ()
_active_lock = threading.RLock()  # reentrant: a weakref callback may run while it is held
_hooks_installed = False


def _live_checkers() -> list[ThreadSafetyChecker]:
    return [c for c in (ref() for ref in _active) if c is not None]


def _attach(checker: ThreadSafetyChecker) -> None:
    global _active
    with _active_lock:
        live = [r for r in _active if r() is not None and r() is not checker]
        live.append(weakref.ref(checker, _on_checker_collected))
        _active = tuple(live)
        _sync_hooks()


def _detach(checker: ThreadSafetyChecker | None) -> None:
    global _active
    with _active_lock:
        _active = tuple(r for r in _active if r() is not None and r() is not checker)
        _sync_hooks()


def _on_checker_collected(_ref: weakref.ref[ThreadSafetyChecker]) -> None:
    _detach(None)


def _sync_hooks() -> None:
    global _hooks_installed
    wanted = bool(_active)
    if wanted != _hooks_installed:
        _native.set_write_observer(_dispatch_write if wanted else None)
        _native.set_call_observer(_dispatch_call if wanted else None)
        _hooks_installed = wanted


def _dispatch_write(adapter: ThreadSafeAdapter, name: str, owns_adapter_lock: bool) -> None:
    for ref in _active:
        checker = ref()
        if checker is not None:
            checker._observe_write(adapter, name, owns_adapter_lock)


# Per-thread memo of method keys. On 3.13t a lookup in a dict owned by another thread, with a key
# that is equal but not identical to the stored one, takes a slow locked path (tens of
# microseconds); dicts owned by the looking thread are always fast. So every lookup on the
# observers' hot paths goes through a dict owned by the current thread.
_dispatch_local = threading.local()
_PER_THREAD_MEMO: Final = 256


def _method_key(method: Any, cls: type) -> str:
    memo: dict[tuple[int, int], tuple[Any, type, str]] | None = getattr(
        _dispatch_local, "keys", None
    )
    if memo is None:
        memo = _dispatch_local.keys = {}
    entry = memo.get((id(method), id(cls)))
    if entry is not None and entry[0] is method and entry[1] is cls:
        return entry[2]
    key = f"{_display_name(cls)}.{getattr(method, '__name__', '?')}"
    if len(memo) >= _PER_THREAD_MEMO:
        memo.clear()
    memo[(id(method), id(cls))] = (method, cls, key)
    return key


def _dispatch_call(method: Any, adapter: ThreadSafeAdapter, entering: bool) -> None:
    key = None
    for ref in _active:
        checker = ref()
        if checker is None:
            continue
        if key is None:
            key = _method_key(method, type(adapter))
        if entering:
            checker._enter_call(key, type(adapter))
        else:
            checker._leave_call(key)


# --------------------------------------------------------------------------------------------
# Checker state
# --------------------------------------------------------------------------------------------


class _AttrState:
    """Eraser state of one attribute: exclusive to ``owner`` until a second thread writes it."""

    __slots__ = ("owner", "owner_name", "shared")

    def __init__(self, owner: int, owner_name: str) -> None:
        self.owner = owner
        self.owner_name = owner_name
        self.shared = False


class _AdapterState:
    __slots__ = ("attrs", "evicted", "ref")

    def __init__(self, ref: weakref.ref[Any] | None) -> None:
        self.ref = ref
        self.evicted = False  # set when the checker forgets it; per-thread memos then refresh
        self.attrs: dict[str, _AttrState] = {}


class _MethodStats:
    __slots__ = ("active", "calls", "max_active", "total_time")

    def __init__(self) -> None:
        self.calls = 0
        self.active = 0
        self.max_active = 0
        self.total_time = 0.0


class _ThreadStats:
    __slots__ = ("calls", "methods", "total_time", "writes")

    def __init__(self) -> None:
        self.calls = 0
        self.writes = 0
        self.total_time = 0.0
        self.methods: set[str] = set()


@dataclass
class _RaceRecord:
    class_name: str
    attribute: str
    threads: tuple[str, str]
    filename: str
    lineno: int
    count: int = 1


class _ThreadLocal(threading.local):
    """Per-thread bookkeeping of one checker (released when the thread ends)."""

    generation = -1
    call_epoch = -1  # the checker's call epoch that ``stack`` belongs to
    token = 0
    name = ""
    stats: _ThreadStats | None = None

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.stack: list[tuple[str, float]] = []
        # Memos owned by this thread (see _dispatch_local for why): bounded, cleared when full.
        self.adapters: dict[int, _AdapterState] = {}
        self.methods: dict[str, _MethodStats | None] = {}
        self.races: dict[tuple[type, str], _RaceRecord] = {}


# Unique per thread registration, unlike thread idents (which are reused). Drawn under a lock.
_thread_tokens = itertools.count(1)


class ThreadSafetyChecker:
    """Observes adapters while enabled and reports thread-safety problems.

    ``ThreadSafetyChecker(enabled=True, strict_mode=False)``: an enabled checker observes every
    adapter from construction on (see the module docstring for what it detects). As a context
    manager it resets on entry and stops observing on exit; its report stays readable. Every
    piece of state is bounded and guarded by one lock.
    """

    #: The thread-unsafe libraries it knows: name -> {"reason", "safe_pattern"}.
    UNSAFE_LIBRARIES: Final[Mapping[str, Mapping[str, str]]] = MappingProxyType(
        {
            name: MappingProxyType({"reason": a.reason, "safe_pattern": a.safe_pattern})
            for name, a in _UNSAFE_LIBRARIES.items()
        }
    )

    def __init__(self, enabled: bool = True, strict_mode: bool = False) -> None:
        self._strict_mode = _checked_strict_mode(strict_mode)
        # Reentrant: a finalizer run by the garbage collector inside a locked section may write
        # an adapter attribute, which re-enters the observer on the same thread.
        self._lock = threading.RLock()
        self._local = _ThreadLocal()
        self._generation = 0
        self._call_epoch = 0  # bumped on every enable: calls entered before are forgotten
        self._enabled = False
        self._clear_state()
        self.enabled = enabled

    # -- switching -----------------------------------------------------------------------------
    @property
    def strict_mode(self) -> bool:
        """Whether a racy write (and a found library) raises :class:`ThreadSafetyError`."""
        return self._strict_mode

    @strict_mode.setter
    def strict_mode(self, value: bool) -> None:
        self._strict_mode = _checked_strict_mode(value)

    @property
    def enabled(self) -> bool:
        """Whether this checker observes adapters now. Assigning it starts or stops observing."""
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        value = bool(value)
        if value and not self._enabled:
            self._forget_calls_in_flight()
        with _active_lock:  # the flag and the hook registration change together
            if value == self._enabled:
                return
            self._enabled = value
            if value:
                _attach(self)
            else:
                _detach(self)

    def enable(self) -> None:
        """Start observing adapters."""
        self.enabled = True

    def disable(self) -> None:
        """Stop observing adapters; the collected data stays readable."""
        self.enabled = False

    def __enter__(self) -> ThreadSafetyChecker:
        self.reset()
        self.enabled = True
        return self

    def __exit__(self, *exc_info: object) -> bool:
        self.enabled = False
        return False

    def _forget_calls_in_flight(self) -> None:
        """Drop the calls that are running now from the concurrency counts.

        While disabled, the checker does not see calls leave; a call in flight at ``disable()``
        would otherwise stay "active" forever and overlap, in the report, with every later call.
        """
        with self._lock:
            self._call_epoch += 1  # each thread's stack of older calls is dropped on its next call
            for stats in self._methods.values():
                stats.active = 0

    def reset(self) -> None:
        """Forget everything observed so far and restart the runtime clock."""
        with self._lock:
            self._clear_state()

    def _clear_state(self) -> None:
        self._generation += 1  # invalidates every thread's _ThreadLocal
        self._start_time = time.monotonic()
        self._adapters: dict[int, _AdapterState] = {}
        self._attribute_count = 0  # attribute states over all adapters
        self._methods: dict[str, _MethodStats] = {}
        self._threads: dict[str, _ThreadStats] = {}
        self._threads_seen = 0
        self._races: dict[tuple[str, str], _RaceRecord] = {}
        self._warnings: list[str] = []
        self._warning_keys: set[str] = set()
        self._classes: dict[type, str | None] = {}  # class -> declaration problem, or None
        self._unsafe_libraries: list[str] = []
        self._observed_writes = 0
        self._racy_writes = 0
        self._dropped = {"adapters": 0, "attributes": 0, "methods": 0, "warnings": 0}

    # -- per-thread registration --------------------------------------------------------------
    def _thread_state(self) -> _ThreadLocal:
        local = self._local
        if local.generation != self._generation:
            name = threading.current_thread().name
            with self._lock:
                self._threads_seen += 1
                stats = self._threads.get(name)
                if stats is None:
                    room = len(self._threads) < MAX_THREAD_ENTRIES - 1  # one left for the rest
                    key = name if room else OTHER_THREADS
                    stats = self._threads.setdefault(key, _ThreadStats())
                local.generation = self._generation
                local.token = next(_thread_tokens)
            local.name = name
            local.stats = stats
            local.reset()
        return local

    # -- writes: the Eraser state machine -------------------------------------------------------
    def _observe_write(self, adapter: Any, name: str, owns_adapter_lock: bool) -> None:
        local = self._thread_state()
        key = id(adapter)
        state = local.adapters.get(key)
        with self._lock:
            if not self._enabled:
                return
            self._observed_writes += 1
            if local.stats is not None:
                local.stats.writes += 1
            if (
                state is None
                or state.evicted
                or (state.ref is not None and state.ref() is not adapter)
            ):
                state = self._adapter_state(adapter)
                if len(local.adapters) >= _PER_THREAD_MEMO:
                    local.adapters.clear()
                local.adapters[key] = state
            attr = state.attrs.get(name)
            if attr is None:
                if (
                    len(state.attrs) >= MAX_ATTRIBUTES_PER_ADAPTER
                    or self._attribute_count >= MAX_TRACKED_ATTRIBUTES
                ):
                    self._dropped["attributes"] += 1
                else:
                    state.attrs[name] = _AttrState(local.token, local.name)
                    self._attribute_count += 1
                return
            if not attr.shared:
                if attr.owner == local.token:
                    return  # still exclusive: construction or single-threaded set-up
                attr.shared = True
            if owns_adapter_lock:
                return
            first_thread = attr.owner_name
        if _user_lock_held(adapter, name):
            return
        self._report_race(local, type(adapter), name, (first_thread, local.name))

    def _adapter_state(self, adapter: Any) -> _AdapterState:
        """The state of ``adapter``, created when new (caller holds the lock)."""
        key = id(adapter)
        state = self._adapters.get(key)
        if state is not None:
            if state.ref is None or state.ref() is adapter:
                return state
            self._forget_adapter(key)  # the id was reused by a new object
        if len(self._adapters) >= MAX_TRACKED_ADAPTERS:
            self._forget_adapter(next(iter(self._adapters)))  # the oldest: O(1)
            self._dropped["adapters"] += 1
        try:
            ref: weakref.ref[Any] | None = weakref.ref(adapter)
        except TypeError:
            ref = None
        state = _AdapterState(ref)
        self._adapters[key] = state
        self._note_class(type(adapter))
        return state

    def _forget_adapter(self, key: int) -> None:
        state = self._adapters.pop(key)
        state.evicted = True
        self._attribute_count -= len(state.attrs)

    def _note_class(self, cls: type) -> None:
        if cls in self._classes or len(self._classes) >= MAX_CLASSES_CHECKED:
            return
        self._classes[cls] = declaration_problem(cls)

    def _report_race(
        self, local: _ThreadLocal, cls: type, attribute: str, threads: tuple[str, str]
    ) -> None:
        memo_key = (cls, attribute)
        record = local.races.get(memo_key)
        key = (f"{cls.__module__}.{cls.__qualname__}", attribute)
        with self._lock:
            self._racy_writes += 1
            if record is None:
                record = self._races.get(key)
                if record is not None:
                    if len(local.races) >= _PER_THREAD_MEMO:
                        local.races.clear()
                    local.races[memo_key] = record
            counted = record is not None
            if record is not None:
                record.count += 1
                if not self.strict_mode:
                    return  # already reported: keep repeated racy writes cheap
        filename, lineno, module = _user_frame()
        class_name = _display_name(cls)
        message = (
            f"THREAD SAFETY: unprotected write to {class_name}.{attribute} at "
            f"{filename}:{lineno} in thread {threads[1]!r}: the attribute is shared with "
            f"thread {threads[0]!r} and no lock guards this write. Hold self.acquire_lock() "
            f"around it, or name the lock that guards it in {class_name}.__guarded_by__."
        )
        is_new = False
        with self._lock:
            record = self._races.get(key)
            if record is not None:  # reported before (strict mode) or by another thread meanwhile
                if not counted:
                    record.count += 1
            else:
                if len(self._races) < MAX_WARNINGS:
                    self._races[key] = _RaceRecord(class_name, attribute, threads, filename, lineno)
                    is_new = True
                else:
                    self._dropped["warnings"] += 1
                self._add_warning(f"race:{key[0]}.{attribute}", message)
            strict = self.strict_mode
        if strict:
            raise ThreadSafetyError(message)
        if is_new:
            warnings.warn_explicit(message, ThreadSafetyWarning, filename, lineno, module=module)

    def _add_warning(self, key: str, message: str) -> None:
        """Record a warning message once (caller holds the lock)."""
        if key in self._warning_keys:
            return
        if len(self._warnings) >= MAX_WARNINGS:
            self._dropped["warnings"] += 1
            return
        self._warning_keys.add(key)
        self._warnings.append(message)

    # -- calls: real overlap ------------------------------------------------------------------
    def _enter_call(self, key: str, cls: type | None = None) -> None:
        local = self._thread_state()
        started = time.perf_counter()
        stats = local.methods.get(key, _MISSING)
        with self._lock:
            self._sync_call_epoch(local)
            local.stack.append((key, started))
            if stats is _MISSING:
                stats = self._methods.get(key)
                if stats is None:
                    if len(self._methods) >= MAX_TRACKED_METHODS:
                        self._dropped["methods"] += 1
                    else:
                        stats = self._methods[key] = _MethodStats()
                        if cls is not None:
                            self._note_class(cls)
                if len(local.methods) >= _PER_THREAD_MEMO:
                    local.methods.clear()
                local.methods[key] = stats
            if stats is None:
                return  # the method table is full: this one is not tracked
            stats.calls += 1
            stats.active += 1
            if stats.active > stats.max_active:
                stats.max_active = stats.active
            thread = local.stats
            if thread is not None:
                thread.calls += 1
                if len(thread.methods) < MAX_METHODS_PER_THREAD:
                    thread.methods.add(key)

    def _leave_call(self, key: str) -> None:
        local = self._thread_state()
        now = time.perf_counter()
        stats = local.methods.get(key)
        with self._lock:
            self._sync_call_epoch(local)
            stack = local.stack
            for i in range(len(stack) - 1, -1, -1):  # usually the top entry
                if stack[i][0] == key:
                    started = stack.pop(i)[1]
                    break
            else:
                return  # entered before this checker was (re-)enabled or reset
            elapsed = now - started
            if stats is not None and stats.active > 0:
                stats.active -= 1
                stats.total_time += elapsed
            if local.stats is not None and len(stack) == 0:
                local.stats.total_time += elapsed

    def _sync_call_epoch(self, local: _ThreadLocal) -> None:
        """Drop this thread's calls entered before the last enable (caller holds the lock)."""
        if local.call_epoch != self._call_epoch:
            local.stack.clear()
            local.call_epoch = self._call_epoch

    @contextmanager
    def track_execution(self, method_name: str) -> Iterator[None]:
        """Count the body as one call of ``method_name`` (for code outside ``thread_safe_method``)."""
        if not self._enabled:
            yield
            return
        self._enter_call(method_name)
        try:
            yield
        finally:
            self._leave_call(method_name)

    # -- libraries ----------------------------------------------------------------------------
    def check_library_safety(self, imported_modules: Iterable[str] | None = None) -> list[str]:
        """Messages for each known thread-unsafe library among ``imported_modules``.

        ``None`` means the modules imported now (``sys.modules``). Each library is warned about
        (and listed in the report) once per checker; in strict mode every call that finds one
        raises :class:`ThreadSafetyError`. A disabled checker returns ``[]``.
        """
        if not self._enabled:
            return []
        names = set(sys.modules) if imported_modules is None else set(imported_modules)
        found = _unsafe_libraries_in(names)
        messages = [_library_message(lib) for lib in found]
        new: list[str] = []
        with self._lock:
            for lib, message in zip(found, messages):
                if lib not in self._unsafe_libraries:
                    self._unsafe_libraries.append(lib)
                    self._add_warning(f"library:{lib}", message)
                    new.append(message)
            strict = self.strict_mode
        if strict and messages:
            raise ThreadSafetyError("\n\n".join(messages))
        for message in new:
            warnings.warn(message, ThreadSafetyWarning, stacklevel=2)
        return messages

    # -- reporting ----------------------------------------------------------------------------
    def get_report(self) -> dict[str, Any]:
        """A fresh snapshot of everything observed (see docs/api.md for every key)."""
        with self._lock:
            concurrent = {k: s.max_active for k, s in self._methods.items() if s.max_active > 1}
            methods = {
                k: {
                    "calls": s.calls,
                    "max_concurrency": s.max_active,
                    "total_time": s.total_time,
                }
                for k, s in self._methods.items()
            }
            utilization = {
                name: {
                    "calls": t.calls,
                    "writes": t.writes,
                    "total_time": t.total_time,
                    "methods": sorted(t.methods),
                    "avg_time_per_call": t.total_time / t.calls if t.calls else 0.0,
                }
                for name, t in self._threads.items()
            }
            races = [
                {
                    "class": r.class_name,
                    "attribute": r.attribute,
                    "threads": list(r.threads),
                    "file": r.filename,
                    "line": r.lineno,
                    "count": r.count,
                }
                for r in self._races.values()
            ]
            undeclared = {_display_name(c): p for c, p in self._classes.items() if p is not None}
            report: dict[str, Any] = {
                "enabled": self._enabled,
                "strict_mode": self.strict_mode,
                "total_runtime": time.monotonic() - self._start_time,
                "warnings": list(self._warnings),
                "warnings_issued": len(self._warnings),
                "concurrent_accesses": concurrent,
                "total_methods_tracked": len(self._methods),
                "total_threads_seen": self._threads_seen,
                "thread_utilization": utilization,
                "unprotected_writes": races,
                "racy_writes": self._racy_writes,
                "observed_writes": self._observed_writes,
                "method_calls": methods,
                "unsafe_libraries": list(self._unsafe_libraries),
                "undeclared_adapters": undeclared,
                "dropped": dict(self._dropped),
            }
        report["recommendations"] = _recommendations(report)
        return report

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} enabled={self._enabled} strict_mode={self.strict_mode} "
            f"warnings={len(self._warnings)}>"
        )


def _checked_strict_mode(value: object) -> bool:
    # Only a real bool: any non-empty string is truthy, so strict_mode="no" would turn it on.
    if not isinstance(value, bool):
        raise TypeError(
            f"strict_mode must be a bool (True or False), not {type(value).__name__} {value!r}"
        )
    return value


def _recommendations(report: Mapping[str, Any]) -> list[str]:
    tips: list[str] = []
    races = report["unprotected_writes"]
    if races:
        names = ", ".join(f"{r['class']}.{r['attribute']}" for r in races[:5])
        tips.append(
            f"⚠️  {len(races)} attribute(s) written by several threads without a lock ({names}): "
            "update them inside `with self.acquire_lock():`, or declare the guarding lock in "
            "__guarded_by__."
        )
    if report["unsafe_libraries"]:
        tips.append(
            "⚠️  Thread-unsafe libraries imported ("
            + ", ".join(report["unsafe_libraries"])
            + "): follow the safe pattern in each warning, or use the process worker profile."
        )
    if report["undeclared_adapters"]:
        tips.append(
            "⚠️  Adapter classes that do not declare `__thread_safe__ = True`: "
            + ", ".join(sorted(report["undeclared_adapters"]))
            + "."
        )
    if report["concurrent_accesses"]:
        peak = max(report["concurrent_accesses"].values())
        tips.append(
            f"ℹ️  {len(report['concurrent_accesses'])} method(s) ran concurrently (up to {peak} "
            "calls at once). That is expected in a thread pool; it is only safe because shared "
            "state is updated under a lock."
        )
    if report["total_threads_seen"] == 1:
        tips.append(
            "ℹ️  Only one thread was observed: run the adapter from several threads to exercise "
            "its thread safety."
        )
    if not report["warnings"] and not report["undeclared_adapters"]:
        tips.append("✅ No thread safety issues detected.")
    return tips


# --------------------------------------------------------------------------------------------
# Helpers of the write observer
# --------------------------------------------------------------------------------------------


def _display_name(cls: type) -> str:
    """``cls.__qualname__`` without the ``<locals>`` of enclosing functions."""
    return cls.__qualname__.rsplit(".<locals>.", 1)[-1]


def _user_frame() -> tuple[str, int, str]:
    """File, line and module of the user code that made the write being observed.

    Called from inside the observer: the first frame outside this module and the native
    module is the code doing the assignment. The frame itself is never kept.
    """
    frame = sys._getframe(1)
    try:
        while frame is not None and frame.f_globals.get("__name__") in (
            _THIS_MODULE,
            _native.__name__,
        ):
            frame = frame.f_back  # type: ignore[assignment]
        if frame is None:
            return "<unknown>", 0, "<unknown>"
        return frame.f_code.co_filename, frame.f_lineno, str(frame.f_globals.get("__name__"))
    finally:
        del frame


def _is_lock(value: object) -> bool:
    return isinstance(value, (_LockType, threading.Condition, *_RLockTypes))


def _is_held(lock: object) -> bool:
    """Whether ``lock`` is held: by this thread for reentrant locks and conditions, by *any*
    thread for a plain ``threading.Lock`` (which does not know its owner)."""
    try:
        is_owned = getattr(lock, "_is_owned", None)
        if is_owned is not None:
            return bool(is_owned())
        if isinstance(lock, _LockType):
            return lock.locked()
    except Exception:  # noqa: BLE001 - a broken lock object guards nothing
        return False
    return False


_guard_cache: weakref.WeakKeyDictionary[type, Mapping[str, tuple[str, ...]]] = (
    weakref.WeakKeyDictionary()
)
_guard_cache_lock = threading.RLock()  # reentrant for the same reason as the checker's lock


def _guarded_by(cls: type) -> Mapping[str, tuple[str, ...]]:
    """The merged ``__guarded_by__`` declarations of ``cls`` and its bases (cached per class)."""
    memo: dict[int, tuple[type, Mapping[str, tuple[str, ...]]]] | None = getattr(
        _dispatch_local, "guards", None
    )
    if memo is None:
        memo = _dispatch_local.guards = {}
    entry = memo.get(id(cls))  # this thread's memo first: see _dispatch_local
    if entry is not None and entry[0] is cls:
        return entry[1]
    cached = _guard_cache.get(cls)  # a single dict lookup: safe without the lock
    if cached is not None:
        if len(memo) >= _PER_THREAD_MEMO:
            memo.clear()
        memo[id(cls)] = (cls, cached)
        return cached
    merged: dict[str, tuple[str, ...]] = {}
    for klass in reversed(cls.__mro__):
        declared = vars(klass).get("__guarded_by__")
        if declared is None:
            continue
        if not isinstance(declared, Mapping):
            raise TypeError(
                f"{klass.__qualname__}.__guarded_by__ must map attribute names to lock "
                f"attribute names, not {type(declared).__name__}"
            )
        for attribute, locks in declared.items():
            names = (locks,) if isinstance(locks, str) else tuple(locks)
            if not all(isinstance(n, str) for n in names) or not names:
                raise TypeError(
                    f"{klass.__qualname__}.__guarded_by__[{attribute!r}] must be a lock "
                    "attribute name or a tuple of them"
                )
            merged[attribute] = names
    frozen = MappingProxyType(merged)
    with _guard_cache_lock:
        _guard_cache[cls] = frozen
    return frozen


def _user_lock_held(adapter: Any, attribute: str) -> bool:
    """Whether a user lock guarding ``attribute`` is held at this write.

    With a ``__guarded_by__`` entry for the attribute, only the named locks count. Otherwise
    this is a heuristic: any lock stored in an attribute of the adapter (or of its class) that is
    held counts. Reentrant locks and conditions say which thread holds them; a plain
    ``threading.Lock`` does not, so a write made while *another* thread holds such a lock is
    taken as guarded (a missed race, never a false alarm).
    """
    cls = type(adapter)
    declared = _guarded_by(cls).get(attribute)
    if declared is not None:
        return any(_is_held(getattr(adapter, name, None)) for name in declared)
    try:
        candidates = list(object.__getattribute__(adapter, "__dict__").copy().values())
    except AttributeError:
        candidates = []
    for klass in cls.__mro__:
        if klass in (ThreadSafeAdapter, BaseAdapter, object):
            continue
        candidates.extend(v for v in vars(klass).copy().values() if _is_lock(v))
    return any(_is_held(v) for v in candidates if _is_lock(v))


# --------------------------------------------------------------------------------------------
# Declarations and libraries
# --------------------------------------------------------------------------------------------

_MISSING: Final = object()


def _unsafe_libraries_in(module_names: Iterable[str]) -> list[str]:
    top_level = {name.partition(".")[0] for name in module_names if isinstance(name, str)}
    return [lib for lib in _UNSAFE_LIBRARIES if lib in top_level]


def _library_message(lib: str) -> str:
    advice = _UNSAFE_LIBRARIES[lib]
    return (
        f"THREAD SAFETY: unsafe library {lib!r} detected: {advice.reason} "
        f"Safe pattern: {advice.safe_pattern}"
    )


# --------------------------------------------------------------------------------------------
# The global checker and the decorators
# --------------------------------------------------------------------------------------------

_global_checker = ThreadSafetyChecker(enabled=False)
_global_lock = threading.Lock()


def enable_checking(strict_mode: bool = False) -> ThreadSafetyChecker:
    """Reset the global checker, set its mode and enable it. Returns it.

    The global checker is one object for the life of the process, so references to it stay
    valid (upstream replaced it on every call). ``strict_mode`` must be a bool (``TypeError``
    otherwise, before anything changes).
    """
    strict_mode = _checked_strict_mode(strict_mode)
    with _global_lock:
        _global_checker.reset()
        _global_checker.strict_mode = strict_mode
        _global_checker.enabled = True
    return _global_checker


def disable_checking() -> None:
    """Stop the global checker observing; its report stays readable."""
    with _global_lock:
        _global_checker.enabled = False


def get_global_checker() -> ThreadSafetyChecker:
    """The process-wide checker that :func:`enable_checking` switches on."""
    return _global_checker


def check_thread_safe(func: Callable[_P, _R]) -> Callable[_P, _R]:
    """Report each call of ``func`` to every enabled checker (for functions that are not
    ``thread_safe_method``\\ s). Calls are keyed by module and qualified name."""
    key = f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"

    @functools.wraps(func)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        checkers = _live_checkers() if _active else ()
        if not checkers:
            return func(*args, **kwargs)
        for checker in checkers:
            checker._enter_call(key)
        try:
            return func(*args, **kwargs)
        finally:
            for checker in checkers:
                checker._leave_call(key)

    return wrapper


# Upstream's name for the one decorator (snakepit_bridge.declaration.require_thread_safe).
require_thread_safe_adapter = require_thread_safe


def validate_adapter_thread_safety(adapter_class: type | object) -> bool:
    """Whether the class (or an instance's class) declares itself thread-safe (the rule of
    :mod:`snakepit_bridge.declaration`). While the global checker is enabled in strict mode, a
    class that does not raises ValueError saying why."""
    problem = declaration_problem(adapter_class)
    if problem is None:
        return True
    if _global_checker.enabled and _global_checker.strict_mode:
        raise ValueError(problem)
    return False


def check_common_pitfalls(
    adapter: object, *, imported_modules: Iterable[str] | None = None
) -> list[str]:
    """Static review of an adapter instance; one readable finding per problem.

    * the class does not declare itself thread-safe (see :mod:`snakepit_bridge.declaration`);
    * a method other than ``__init__`` does ``self.x op= ...`` (read-modify-write) outside a
      ``with ...lock...:`` block or an ``.acquire()``/``.release()`` section (needs source);
    * a tool of a ThreadSafeAdapter is not a ``thread_safe_method`` (its calls are not tracked);
    * an adapter that is not a ThreadSafeAdapter holds public lists, dicts or sets and no lock;
    * a thread-unsafe library is imported (``imported_modules`` defaults to ``sys.modules``).
    """
    cls = type(adapter)
    findings: list[str] = []
    problem = declaration_problem(cls)
    if problem is not None:
        findings.append(problem)
    findings.extend(_unlocked_read_modify_writes(cls))
    if isinstance(adapter, ThreadSafeAdapter):
        for name, raw in _own_tools(cls):
            if not isinstance(raw, thread_safe_method):
                findings.append(
                    f"Tool {cls.__name__}.{name} is not decorated with @thread_safe_method, so "
                    "its calls are not tracked."
                )
    else:
        namespace = getattr(adapter, "__dict__", {})
        containers = [
            k
            for k, v in namespace.items()
            if not k.startswith("_") and isinstance(v, (list, dict, set, bytearray))
        ]
        has_lock = any(_is_lock(v) for v in namespace.values())
        if containers and not has_lock:
            findings.append(
                f"{cls.__name__} holds shared mutable containers ({', '.join(containers)}) and no "
                "lock: derive from ThreadSafeAdapter and update them under acquire_lock()."
            )
    names = set(sys.modules) if imported_modules is None else set(imported_modules)
    findings.extend(_library_message(lib) for lib in _unsafe_libraries_in(names))
    return findings


def _own_tools(cls: type) -> Iterator[tuple[str, Any]]:
    """The declared tools of ``cls`` (the base classes declare none)."""
    return ((name, raw) for name, raw in _class_attributes(cls) if _find_metadata(raw) is not None)


def _unlocked_read_modify_writes(cls: type) -> list[str]:
    findings: list[str] = []
    for klass in cls.__mro__:
        if klass in (ThreadSafeAdapter, BaseAdapter, object):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
            _, first_line = inspect.getsourcelines(klass)
        except (OSError, TypeError):
            continue  # defined in a REPL or exec'd string: nothing to read
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        class_def = tree.body[0] if tree.body else None
        if not isinstance(class_def, ast.ClassDef):
            continue
        for node in class_def.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name not in (
                "__init__",
                "__new__",
                "__init_subclass__",
            ):
                for target, lineno in _unguarded_aug_assigns(node.body, guarded=False):
                    findings.append(
                        f"{klass.__name__}.{node.name} (line {first_line + lineno - 1}): "
                        f"`self.{target} op= ...` reads and writes shared state outside any "
                        "lock; do it inside `with self.acquire_lock():`."
                    )
    return findings


def _mentions_lock(node: ast.AST) -> bool:
    return "lock" in ast.unparse(node).lower()


def _unguarded_aug_assigns(body: list[ast.stmt], guarded: bool) -> Iterator[tuple[str, int]]:
    for stmt in body:
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
            func = stmt.value.func
            if isinstance(func, ast.Attribute) and func.attr == "acquire":
                guarded = True  # the rest of this block runs with the lock held
            elif isinstance(func, ast.Attribute) and func.attr == "release":
                guarded = False
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        if (
            not guarded
            and isinstance(stmt, ast.AugAssign)
            and isinstance(stmt.target, ast.Attribute)
            and isinstance(stmt.target.value, ast.Name)
            and stmt.target.value.id == "self"
        ):
            yield stmt.target.attr, stmt.lineno
        inner_guarded = guarded
        if isinstance(stmt, (ast.With, ast.AsyncWith)):
            inner_guarded = guarded or any(_mentions_lock(i.context_expr) for i in stmt.items)
        if isinstance(stmt, ast.If) and isinstance(stmt.test, ast.Call):
            func = stmt.test.func
            if isinstance(func, ast.Attribute) and func.attr == "acquire":
                yield from _unguarded_aug_assigns(stmt.body, True)
                yield from _unguarded_aug_assigns(stmt.orelse, guarded)
                continue
        for field_name in ("body", "orelse", "finalbody", "handlers"):
            children = getattr(stmt, field_name, None)
            if isinstance(children, list):
                stmts = [c for c in children if isinstance(c, ast.stmt)]
                for handler in (c for c in children if isinstance(c, ast.ExceptHandler)):
                    stmts.extend(handler.body)
                yield from _unguarded_aug_assigns(stmts, inner_guarded)


def print_thread_safety_report(
    checker: ThreadSafetyChecker | None = None, file: TextIO | None = None
) -> None:
    """Print a checker's report (the global checker's by default) to ``file`` (stdout)."""
    report = (checker or _global_checker).get_report()
    out = sys.stdout if file is None else file
    rule = "=" * 70
    lines = [
        rule,
        "Thread Safety Analysis Report",
        rule,
        "",
        "Execution Summary:",
        f"  Total Runtime: {report['total_runtime']:.2f}s",
        f"  Threads Detected: {report['total_threads_seen']}",
        f"  Methods Tracked: {report['total_methods_tracked']}",
        f"  Warnings Issued: {report['warnings_issued']}",
    ]
    if report["concurrent_accesses"]:
        lines += ["", "Concurrent Accesses Detected:"]
        lines += [f"  - {m}: {n} calls at once" for m, n in report["concurrent_accesses"].items()]
    if report["warnings"]:
        lines += ["", "Warnings:"]
        lines += [f"  - {w}" for w in report["warnings"]]
    if report["recommendations"]:
        lines += ["", "Recommendations:"]
        lines += [f"  {r}" for r in report["recommendations"]]
    lines += ["", rule]
    print("\n".join(lines), file=out)
