"""The lockset detector: :class:`ThreadSafetyChecker`.

Per adapter and attribute it runs the state machine of the Eraser lockset algorithm (Savage et
al., "Eraser: A Dynamic Data Race Detector for Multithreaded Programs", SOSP 1997), reduced to
writes: an attribute is *exclusive* to the first thread that writes it (construction in
``__init__``, set-up before threads start); once a second thread writes it, it is *shared* and
every write must hold a guarding lock (:mod:`.locks` says which). A write without one is a race,
reported once per class and attribute (every time in strict mode).

Beside it, the concurrency bookkeeping: how many calls of each tracked method were in flight at
once, and per-thread call counts and times. Every piece of state is bounded (the ``MAX_*``
constants) and guarded by the checker's one lock; per-thread memos keep the hot paths off
shared dicts (see :mod:`.hooks`).
"""

from __future__ import annotations

import enum
import itertools
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any, Final

from snakepit_bridge import _native
from snakepit_bridge.base_adapter_threaded import OTHER_THREADS
from snakepit_bridge.checker import hooks
from snakepit_bridge.checker.errors import ThreadSafetyError, ThreadSafetyWarning
from snakepit_bridge.checker.hooks import PER_THREAD_MEMO, display_name
from snakepit_bridge.checker.libraries import (
    UNSAFE_LIBRARIES,
    library_message,
    unsafe_libraries_in,
)
from snakepit_bridge.checker.locks import user_lock_could_guard, user_lock_held
from snakepit_bridge.checker.report import recommendations, shape_report
from snakepit_bridge.declaration import declaration_problem

__all__ = [
    "MAX_ATTRIBUTES_PER_ADAPTER",
    "MAX_CLASSES_CHECKED",
    "MAX_METHODS_PER_THREAD",
    "MAX_THREAD_ENTRIES",
    "MAX_TRACKED_ADAPTERS",
    "MAX_TRACKED_ATTRIBUTES",
    "MAX_TRACKED_METHODS",
    "MAX_WARNINGS",
    "OTHER_THREADS",
    "ThreadSafetyChecker",
]

# Bounds that keep a long-running checker's memory flat. What does not fit is counted.
MAX_TRACKED_ADAPTERS: Final = 1024
MAX_ATTRIBUTES_PER_ADAPTER: Final = 256
MAX_TRACKED_ATTRIBUTES: Final = 16384  # over all adapters
MAX_TRACKED_METHODS: Final = 4096
MAX_THREAD_ENTRIES: Final = 256
MAX_METHODS_PER_THREAD: Final = 64
MAX_WARNINGS: Final = 1000
MAX_CLASSES_CHECKED: Final = 1024

_CHECKER_PACKAGE = __name__.rpartition(".")[0] + "."
_FACADE_MODULE = "snakepit_bridge.thread_safety_checker"


class _Sentinel(enum.Enum):
    MISSING = enum.auto()  # "not in this thread's memo yet" (None means: not tracked)


_MISSING: Final = _Sentinel.MISSING


class AttrState:
    """Eraser state of one attribute: exclusive to ``owner`` until a second thread writes it."""

    __slots__ = ("owner", "owner_name", "shared")

    def __init__(self, owner: int, owner_name: str) -> None:
        self.owner = owner
        self.owner_name = owner_name
        self.shared = False


class AdapterState:
    __slots__ = ("attrs", "evicted", "ref")

    def __init__(self, ref: weakref.ref[Any] | None) -> None:
        self.ref = ref
        self.evicted = False  # set when the checker forgets it; per-thread memos then refresh
        self.attrs: dict[str, AttrState] = {}


class MethodStats:
    __slots__ = ("active", "calls", "max_active", "total_time")

    def __init__(self) -> None:
        self.calls = 0
        self.active = 0
        self.max_active = 0
        self.total_time = 0.0


class ThreadStats:
    __slots__ = ("calls", "methods", "total_time", "writes")

    def __init__(self) -> None:
        self.calls = 0
        self.writes = 0
        self.total_time = 0.0
        self.methods: set[str] = set()


@dataclass
class RaceRecord:
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
    stats: ThreadStats | None = None

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.stack: list[tuple[str, float]] = []
        # Memos owned by this thread (see hooks.py for why): bounded, cleared when full.
        self.adapters: dict[int, AdapterState] = {}
        self.methods: dict[str, MethodStats | None] = {}
        self.races: dict[tuple[type, str], RaceRecord] = {}


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
    UNSAFE_LIBRARIES: Final[Mapping[str, Mapping[str, str]]] = UNSAFE_LIBRARIES

    def __init__(self, enabled: bool = True, strict_mode: bool = False) -> None:
        self._strict_mode = checked_strict_mode(strict_mode)
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
        self._strict_mode = checked_strict_mode(value)

    @property
    def enabled(self) -> bool:
        """Whether this checker observes adapters now. Assigning it starts or stops observing."""
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        value = bool(value)
        if value and not self._enabled:
            self._forget_calls_in_flight()
        if not value and self._enabled:
            _native.report_pending_writes()  # this thread's writes reported after the fact
        with hooks.active_lock:  # the flag and the hook registration change together
            if value == self._enabled:
                return
            self._enabled = value
            if value:
                hooks.attach(self)
            else:
                hooks.detach(self)

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

    def __exit__(self, *exc_info: object) -> None:
        self.enabled = False

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
        self._adapters: dict[int, AdapterState] = {}
        self._attribute_count = 0  # attribute states over all adapters
        self._methods: dict[str, MethodStats] = {}
        self._threads: dict[str, ThreadStats] = {}
        self._threads_seen = 0
        self._races: dict[tuple[str, str], RaceRecord] = {}
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
                    stats = self._threads.setdefault(key, ThreadStats())
                local.generation = self._generation
                local.token = next(_thread_tokens)
            local.name = name
            local.stats = stats
            local.reset()
        return local

    # -- writes: the Eraser state machine -------------------------------------------------------
    def _observe_write(
        self,
        adapter: Any,
        name: object,
        owns_adapter_lock: bool,
        deferred: tuple[str, int] | None = None,
    ) -> None:
        """One write (see ``_native.set_write_observer``): ``deferred`` is None for a write
        about to happen through ``__setattr__``, or, for one that bypassed it and is reported
        after the fact, the (file, line) that made it."""
        if not isinstance(name, str):
            return  # a key stored through vars(adapter): no attribute
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
                if len(local.adapters) >= PER_THREAD_MEMO:
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
                    state.attrs[name] = AttrState(local.token, local.name)
                    self._attribute_count += 1
                return
            if not attr.shared:
                if attr.owner == local.token:
                    return  # still exclusive: construction or single-threaded set-up
                attr.shared = True
            if owns_adapter_lock:
                return
            first_thread = attr.owner_name
        if deferred is not None:
            # Which other locks were held then is unknown now: judge only what is certain.
            if user_lock_could_guard(adapter, name):
                return
        elif user_lock_held(adapter, name):
            return
        self._report_race(local, type(adapter), name, (first_thread, local.name), deferred)

    def _adapter_state(self, adapter: Any) -> AdapterState:
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
        state = AdapterState(ref)
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
        self,
        local: _ThreadLocal,
        cls: type,
        attribute: str,
        threads: tuple[str, str],
        where: tuple[str, int] | None = None,
    ) -> None:
        memo_key = (cls, attribute)
        record = local.races.get(memo_key)
        key = (f"{cls.__module__}.{cls.__qualname__}", attribute)
        with self._lock:
            self._racy_writes += 1
            if record is None:
                record = self._races.get(key)
                if record is not None:
                    if len(local.races) >= PER_THREAD_MEMO:
                        local.races.clear()
                    local.races[memo_key] = record
            counted = record is not None
            if record is not None:
                record.count += 1
                if not self.strict_mode:
                    return  # already reported: keep repeated racy writes cheap
        if where is None:
            filename, lineno, module = _user_frame()
        else:
            (filename, lineno), module = where, _module_of(where[0])
        class_name = display_name(cls)
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
                    self._races[key] = RaceRecord(class_name, attribute, threads, filename, lineno)
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
                        stats = self._methods[key] = MethodStats()
                        if cls is not None:
                            self._note_class(cls)
                if len(local.methods) >= PER_THREAD_MEMO:
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
        """Count the body as one call of ``method_name`` (for code that is not a
        ``thread_safe_method``)."""
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
        found = unsafe_libraries_in(names)
        messages = [library_message(lib) for lib in found]
        new: list[str] = []
        with self._lock:
            for lib, message in zip(found, messages, strict=True):
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
        _native.report_pending_writes()  # this thread's writes reported after the fact
        with self._lock:
            report = shape_report(
                enabled=self._enabled,
                strict_mode=self.strict_mode,
                runtime=time.monotonic() - self._start_time,
                warnings=self._warnings,
                methods=self._methods,
                threads=self._threads,
                threads_seen=self._threads_seen,
                races=self._races.values(),
                racy_writes=self._racy_writes,
                observed_writes=self._observed_writes,
                unsafe_libraries=self._unsafe_libraries,
                classes=self._classes,
                dropped=self._dropped,
            )
        report["recommendations"] = recommendations(report)
        return report

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} enabled={self._enabled} strict_mode={self.strict_mode} "
            f"warnings={len(self._warnings)}>"
        )


def checked_strict_mode(value: object) -> bool:
    # Only a real bool: any non-empty string is truthy, so strict_mode="no" would turn it on.
    if not isinstance(value, bool):
        raise TypeError(
            f"strict_mode must be a bool (True or False), not {type(value).__name__} {value!r}"
        )
    return value


def _user_frame() -> tuple[str, int, str]:
    """File, line and module of the user code that made the write being observed.

    Called from inside the observer: the first frame outside the checker package (and the
    native module) is the code doing the assignment. The frame itself is never kept.
    """
    frame: FrameType | None = sys._getframe(1)
    try:
        while frame is not None and _is_checker_module(frame.f_globals.get("__name__")):
            frame = frame.f_back
        if frame is None:
            return "<unknown>", 0, "<unknown>"
        return frame.f_code.co_filename, frame.f_lineno, str(frame.f_globals.get("__name__"))
    finally:
        del frame


def _module_of(filename: str) -> str:
    """The module name ``warnings`` derives from a file name when it is not given (a write
    reported after the fact has no frame left to read it from)."""
    return filename[:-3] if filename.lower().endswith(".py") else filename or "<unknown>"


def _is_checker_module(name: object) -> bool:
    return isinstance(name, str) and (
        name.startswith(_CHECKER_PACKAGE) or name in (_FACADE_MODULE, _native.__name__)
    )
