"""Hook dispatch: the native observers, installed while at least one checker is enabled.

The native core calls one write observer (every attribute write or delete on an adapter; on 3.12+
the writes that bypass ``__setattr__`` are reported after the fact, see ``_native``) and one
call observer (entry into and exit from a ``@thread_safe_method``). This module installs them
when the first checker is enabled and removes them when the last one is disabled or collected,
so observation costs nothing otherwise, and hands each event to every enabled checker. Checkers
are held weakly: one that is garbage-collected stops observing.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any, Final

from snakepit_bridge import _native
from snakepit_bridge._native import ThreadSafeAdapter

if TYPE_CHECKING:
    from snakepit_bridge.checker.lockset import ThreadSafetyChecker

__all__ = [
    "PER_THREAD_MEMO",
    "active_lock",
    "any_enabled",
    "attach",
    "detach",
    "display_name",
    "hooks_installed",
    "live_checkers",
    "method_key",
]

# Weak references to the enabled checkers. Replaced as a whole (never mutated), so the
# dispatchers read it without a lock. A checker that is collected stops observing.
_active: tuple[weakref.ref[ThreadSafetyChecker], ...] = ()
active_lock = threading.RLock()  # reentrant: a weakref callback may run while it is held
_hooks_installed = False


def live_checkers() -> list[ThreadSafetyChecker]:
    """The enabled checkers that are still alive."""
    return [c for c in (ref() for ref in _active) if c is not None]


def attach(checker: ThreadSafetyChecker) -> None:
    """Let ``checker`` observe (installs the observers for the first one)."""
    global _active
    with active_lock:
        live = [r for r in _active if r() is not None and r() is not checker]
        live.append(weakref.ref(checker, _on_checker_collected))
        _active = tuple(live)
        _sync_hooks()


def detach(checker: ThreadSafetyChecker | None) -> None:
    """Stop ``checker`` observing (``None``: only drop collected ones); removes the observers
    after the last one."""
    global _active
    with active_lock:
        _active = tuple(r for r in _active if r() is not None and r() is not checker)
        _sync_hooks()


def _on_checker_collected(_ref: weakref.ref[ThreadSafetyChecker]) -> None:
    detach(None)


def _sync_hooks() -> None:
    global _hooks_installed
    wanted = bool(_active)
    if wanted != _hooks_installed:
        _native.set_write_observer(_dispatch_write if wanted else None)
        _native.set_call_observer(_dispatch_call if wanted else None)
        _hooks_installed = wanted


def _dispatch_write(
    adapter: ThreadSafeAdapter,
    name: object,
    owns_adapter_lock: bool,
    deferred: tuple[str, int] | None,
) -> None:
    for ref in _active:
        checker = ref()
        if checker is not None:
            checker._observe_write(adapter, name, owns_adapter_lock, deferred)


def any_enabled() -> bool:
    """Whether any checker is enabled now (a lock-free read, for fast paths)."""
    return bool(_active)


def hooks_installed() -> bool:
    """Whether the native observers are installed now."""
    return _hooks_installed


# Per-thread memos (method keys here, ``__guarded_by__`` tables in locks.py, per-checker ones in
# lockset.py). On 3.13t a lookup in a dict owned by another thread, with a key
# that is equal but not identical to the stored one, takes a slow locked path (tens of
# microseconds); dicts owned by the looking thread are always fast. So every lookup on the
# observers' hot paths goes through a dict owned by the current thread.
_dispatch_local = threading.local()
PER_THREAD_MEMO: Final = 256


def display_name(cls: type) -> str:
    """``cls.__qualname__`` without the ``<locals>`` of enclosing functions."""
    return cls.__qualname__.rsplit(".<locals>.", 1)[-1]


def method_key(method: Any, cls: type) -> str:
    """``Class.method``: the key a decorated method's calls are counted under."""
    memo: dict[tuple[int, int], tuple[Any, type, str]] | None = getattr(
        _dispatch_local, "keys", None
    )
    if memo is None:
        memo = _dispatch_local.keys = {}
    entry = memo.get((id(method), id(cls)))
    if entry is not None and entry[0] is method and entry[1] is cls:
        return entry[2]
    key = f"{display_name(cls)}.{getattr(method, '__name__', '?')}"
    if len(memo) >= PER_THREAD_MEMO:
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
            key = method_key(method, type(adapter))
        if entering:
            checker._enter_call(key, type(adapter))
        else:
            checker._leave_call(key)
