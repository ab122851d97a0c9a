"""Which lock guards a write, for the lockset detector.

The native core says whether the writer owns the adapter's own lock. Beyond that, a write is
guarded by the locks named for its attribute in the class's ``__guarded_by__`` (merged along the
MRO), or, for an attribute without such a declaration, by any lock held in one of the adapter's
attributes (see :func:`user_lock_held` for the approximation). A write reported after the fact
can only be judged by the adapter's lock (:func:`user_lock_could_guard`).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from snakepit_bridge import _native
from snakepit_bridge._native import ThreadSafeAdapter
from snakepit_bridge.base_adapter import BaseAdapter
from snakepit_bridge.checker.hooks import PER_THREAD_MEMO

__all__ = ["is_held", "is_lock", "user_lock_could_guard", "user_lock_held"]

_LockType = type(threading.Lock())
_RLockTypes: tuple[type, ...] = (type(threading.RLock()), threading._PyRLock, _native.RLock)  # type: ignore[attr-defined]

# This thread's memo of guard tables (see hooks.py for why lookups go through one).
_memo = threading.local()


def is_lock(value: object) -> bool:
    return isinstance(value, (_LockType, threading.Condition, *_RLockTypes))


def is_held(lock: object) -> bool:
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
        _memo, "guards", None
    )
    if memo is None:
        memo = _memo.guards = {}
    entry = memo.get(id(cls))  # this thread's memo first: see _memo
    if entry is not None and entry[0] is cls:
        return entry[1]
    cached = _guard_cache.get(cls)  # a single dict lookup: safe without the lock
    if cached is not None:
        if len(memo) >= PER_THREAD_MEMO:
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


def user_lock_held(adapter: Any, attribute: str) -> bool:
    """Whether a user lock guarding ``attribute`` is held at this write.

    With a ``__guarded_by__`` entry for the attribute, only the named locks count. Otherwise
    this is a heuristic: any lock stored in an attribute of the adapter (or of its class) that is
    held counts. Reentrant locks and conditions say which thread holds them; a plain
    ``threading.Lock`` does not, so a write made while *another* thread holds such a lock is
    taken as guarded (a missed race, never a false alarm).
    """
    return any(is_held(lock) for lock in _guards(adapter, attribute))


def user_lock_could_guard(adapter: Any, attribute: str) -> bool:
    """Whether any lock other than the adapter's own could guard ``attribute`` (by the rules of
    :func:`user_lock_held`), held or not.

    For a write reported after the fact (it bypassed ``__setattr__``): whether such a lock was
    held at the time can no longer be told, only whether the adapter's own lock was.
    """
    own = _ADAPTER_LOCK.__get__(adapter, type(adapter))
    return any(is_lock(lock) and lock is not own for lock in _guards(adapter, attribute))


_ADAPTER_LOCK = vars(ThreadSafeAdapter)["lock"]  # the native lock, even when shadowed


def _guards(adapter: Any, attribute: str) -> list[object]:
    """The objects that count as guards of ``attribute`` (see :func:`user_lock_held`)."""
    cls = type(adapter)
    declared = _guarded_by(cls).get(attribute)
    if declared is not None:
        return [getattr(adapter, name, None) for name in declared]
    try:
        candidates = list(object.__getattribute__(adapter, "__dict__").copy().values())
    except AttributeError:
        candidates = []
    for klass in cls.__mro__:
        if klass in (ThreadSafeAdapter, BaseAdapter, object):
            continue
        candidates.extend(v for v in vars(klass).copy().values() if is_lock(v))
    return [v for v in candidates if is_lock(v)]
