"""The thread-safe adapter API, as users import it.

``ThreadSafeAdapter``, ``RequestTracker`` and ``thread_safe_method`` are native types from
``snakepit_bridge._native``; ``tool`` and ``BaseAdapter`` come from ``base_adapter``.
"""

from __future__ import annotations

from snakepit_bridge._native import RequestTracker, RLock, ThreadSafeAdapter, thread_safe_method
from snakepit_bridge.base_adapter import BaseAdapter

try:  # the registry lands with issue 5
    from snakepit_bridge.base_adapter import ToolMetadata, tool
except ImportError:  # pragma: no cover
    pass

__all__ = [
    "BaseAdapter",
    "RLock",
    "RequestTracker",
    "ThreadSafeAdapter",
    "ToolMetadata",
    "thread_safe_method",
    "tool",
]
