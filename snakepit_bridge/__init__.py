"""snakepit-bridge: native thread-safety building blocks for Snakepit Python adapters.

The core types are native (``snakepit_bridge._native``); see ``docs/api.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from snakepit_bridge._native import RequestTracker, RLock, ThreadSafeAdapter, thread_safe_method
from snakepit_bridge.base_adapter import BaseAdapter, ToolMetadata, tool

if TYPE_CHECKING:
    from snakepit_bridge.thread_safety_checker import ThreadSafetyChecker

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # The checker is imported on first use: importing the package stays cheap for the server
    # and for adapters that never check.
    if name == "ThreadSafetyChecker":
        from snakepit_bridge.thread_safety_checker import ThreadSafetyChecker

        return ThreadSafetyChecker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BaseAdapter",
    "RLock",
    "RequestTracker",
    "ThreadSafeAdapter",
    "ThreadSafetyChecker",
    "ToolMetadata",
    "__version__",
    "thread_safe_method",
    "tool",
]
