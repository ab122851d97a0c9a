"""snakepit-bridge: native thread-safety building blocks for Snakepit Python adapters.

The core types are native (``snakepit_bridge._native``); see ``docs/api.md``.
"""

from __future__ import annotations

from snakepit_bridge._native import RequestTracker, RLock, ThreadSafeAdapter, thread_safe_method
from snakepit_bridge.base_adapter import BaseAdapter, ToolMetadata, tool

__version__ = "0.1.0"

__all__ = [
    "BaseAdapter",
    "RLock",
    "RequestTracker",
    "ThreadSafeAdapter",
    "ToolMetadata",
    "__version__",
    "thread_safe_method",
    "tool",
]
