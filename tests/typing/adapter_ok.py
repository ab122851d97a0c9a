"""Must type-check under mypy --strict: decorated methods keep their signatures."""

from __future__ import annotations

import asyncio
import threading

from snakepit_bridge.base_adapter_threaded import ThreadSafeAdapter, thread_safe_method, tool


class Counter(ThreadSafeAdapter):
    __thread_safe__ = True

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    @thread_safe_method
    @tool(description="Add to the counter")
    def add(self, x: int, y: int = 1) -> int:
        with self.acquire_lock():
            self.count += x + y
            return self.count

    @tool(description="Multiply")
    @thread_safe_method
    def times(self, x: int) -> int:
        return x * 2

    @thread_safe_method
    async def fetch(self, key: str) -> str:
        await asyncio.sleep(0)
        return key


adapter = Counter()
total: int = adapter.add(1, y=2)
doubled: int = adapter.times(3)
unbound: int = Counter.add(adapter, 5)
ready = threading.Condition(adapter.lock)
with ready:
    ready.notify_all()


async def main() -> str:
    return await adapter.fetch("k")
