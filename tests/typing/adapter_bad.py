"""Must FAIL mypy --strict, exactly on the lines marked `# error: <code>`."""

from __future__ import annotations

from snakepit_bridge.base_adapter_threaded import ThreadSafeAdapter, thread_safe_method


class Counter(ThreadSafeAdapter):
    @thread_safe_method
    def add(self, x: int, y: int = 1) -> int:
        return x + y


adapter = Counter()
adapter.add("1")  # error: arg-type
adapter.add(1, z=2)  # error: call-arg
wrong: str = adapter.add(1)  # error: assignment
adapter.add()  # error: call-arg
