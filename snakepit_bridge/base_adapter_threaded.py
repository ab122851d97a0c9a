"""The thread-safe adapter API, as users import it.

``from snakepit_bridge.base_adapter_threaded import ThreadSafeAdapter, thread_safe_method, tool``

``ThreadSafeAdapter``, ``RequestTracker``, ``RLock`` and ``thread_safe_method`` are native
types from :mod:`snakepit_bridge._native`; ``tool``, ``ToolMetadata`` and ``BaseAdapter``
come from :mod:`snakepit_bridge.base_adapter`.  The helpers below keep upstream's other
names importable.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from snakepit_bridge._native import RequestTracker, RLock, ThreadSafeAdapter, thread_safe_method
from snakepit_bridge.base_adapter import BaseAdapter, ToolMetadata, tool

__all__ = [
    "BaseAdapter",
    "RLock",
    "RequestTracker",
    "ThreadLocalStorage",
    "ThreadSafeAdapter",
    "ToolMetadata",
    "require_thread_safe",
    "thread_safe_method",
    "tool",
    "validate_thread_safety",
]

_F = TypeVar("_F", bound=Callable[..., Any])


class ThreadLocalStorage:
    """Per-object, per-thread key/value storage (upstream's helper class).

    Backed by the native per-thread shards: values die with their thread or with this
    object, whichever comes first.  Keys may be any hashable.
    """

    __slots__ = ("_owner", "__weakref__")

    def __init__(self) -> None:
        self._owner = ThreadSafeAdapter()

    def get(self, key: Hashable, default: Any = None) -> Any:
        return self._owner.get_thread_local(key, default)

    def set(self, key: Hashable, value: Any) -> None:
        self._owner.set_thread_local(key, value)

    def delete(self, key: Hashable) -> None:
        self._owner.clear_thread_local(key)

    def clear(self) -> None:
        """Remove every value of the calling thread."""
        self._owner.clear_thread_local()


def validate_thread_safety(adapter_class: type) -> bool:
    """True when the class carries ``__thread_safe__ = True`` (itself or inherited)."""
    return getattr(adapter_class, "__thread_safe__", None) is True


def require_thread_safe(func: _F) -> _F:
    """Decorator: refuse to run ``func(adapter, ...)`` unless the adapter is marked thread-safe."""

    @functools.wraps(func)
    def wrapper(adapter: Any, *args: Any, **kwargs: Any) -> Any:
        if not getattr(adapter, "__thread_safe__", False):
            raise ValueError(
                f"{type(adapter).__name__} is not marked thread-safe "
                "(set __thread_safe__ = True after making it so)"
            )
        return func(adapter, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
