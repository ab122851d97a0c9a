"""The thread-safe adapter API, as users import it.

``from snakepit_bridge.base_adapter_threaded import ThreadSafeAdapter, thread_safe_method, tool``

``ThreadSafeAdapter``, ``RequestTracker``, ``RLock`` and ``thread_safe_method`` are native
types from :mod:`snakepit_bridge._native`; ``tool``, ``ToolMetadata`` and ``BaseAdapter``
come from :mod:`snakepit_bridge.base_adapter`; ``validate_thread_safety`` and
``require_thread_safe`` from :mod:`snakepit_bridge.declaration` (the one rule for "declared
thread-safe", see docs/api.md). ``ThreadLocalStorage`` keeps upstream's helper class, and
``OTHER_THREADS`` names the bucket of threads past a table's limit.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Final

from snakepit_bridge._native import RequestTracker, RLock, ThreadSafeAdapter, thread_safe_method
from snakepit_bridge.base_adapter import BaseAdapter, ToolMetadata, tool
from snakepit_bridge.declaration import require_thread_safe, validate_thread_safety

__all__ = [
    "OTHER_THREADS",
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

#: The key that per-thread-name tables use for the threads past their limit: the native
#: tracker's ``requests_by_thread``, the checker's ``thread_utilization`` and the showcase's
#: ``thread_usage``. One spelling, so the three can be read together.
OTHER_THREADS: Final = "(other threads)"


class ThreadLocalStorage:
    """Per-object, per-thread key/value storage (upstream's helper class).

    Backed by the native per-thread shards: values die with their thread or with this
    object, whichever comes first.  Keys may be any hashable.
    """

    __slots__ = ("__weakref__", "_owner")

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
