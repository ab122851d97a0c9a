"""Adapters served by the server tests (imported by the server subprocess via PYTHONPATH).

Markers: when ``SERVER_TEST_MARKER`` names a file, ``initialize()`` and ``cleanup()`` append a
line to it, so a test can see from outside that (and how often) they ran.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from snakepit_bridge.base_adapter import BaseAdapter
from snakepit_bridge.base_adapter_threaded import (
    ThreadSafeAdapter,
    thread_safe_method,
    tool,
)
from snakepit_bridge.context import current_request

WAIT_LIMIT = 30.0  # seconds: every wait in these tools is bounded


def _mark(line: str) -> None:
    path = os.environ.get("SERVER_TEST_MARKER")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")


class QuotaError(Exception):
    """A user-defined exception: its name must reach the client as the error type."""


class ServerTestAdapter(ThreadSafeAdapter):
    __thread_safe__ = True

    def __init__(self) -> None:
        super().__init__()
        self.counter = 0
        self.plain_counter = 0
        self.initialized = 0
        self.closed_streams = 0
        self.stream_bodies = 0
        self.started: set[str] = set()  # labels of tool calls that began (see wait_started)

    # -- lifecycle ------------------------------------------------------------------------------
    def initialize(self) -> None:
        with self.acquire_lock():
            self.initialized += 1
        _mark(f"initialize {self.initialized}")

    def cleanup(self) -> None:
        _mark(f"cleanup counter={self.counter}")

    def _started(self, label: str | None) -> None:
        if label:
            with self.acquire_lock():
                self.started.add(label)

    # -- JSON round trips -----------------------------------------------------------------------
    @tool
    def echo(self, value: Any = None) -> Any:
        """Return the value as decoded from JSON."""
        return value

    @tool
    def describe(self, **arguments: Any) -> dict[str, str]:
        """The Python type of each argument."""
        return {name: type(value).__name__ for name, value in arguments.items()}

    @tool
    def binary_length(self, blob: bytes) -> dict[str, Any]:
        return {"type": type(blob).__name__, "length": len(blob), "head": list(blob[:4])}

    @tool
    def binary(self, size: int) -> bytes:
        return bytes(i % 256 for i in range(size))

    @tool
    def nothing(self) -> None:
        return None

    @tool
    def nan(self) -> float:
        return float("nan")

    @tool
    def opaque(self) -> object:
        return {"fine": [1, 2], "bad": threading.Lock()}

    @tool
    def numpy_values(self) -> dict[str, Any]:
        import numpy as np

        return {
            "vector": np.arange(3),
            "matrix": np.eye(2),
            "float": np.float64(1.5),
            "int": np.int64(7),
            "flag": np.bool_(True),
        }

    @tool
    def text(self, size: int) -> str:
        return "x" * size

    @tool
    def gil(self) -> bool:
        checker = getattr(sys, "_is_gil_enabled", None)
        return True if checker is None else bool(checker())

    # -- errors ---------------------------------------------------------------------------------
    @tool
    def fail(self, message: str) -> None:
        raise ValueError(message)

    @tool
    def quota(self) -> None:
        raise QuotaError("over quota")

    @tool
    def exit_process(self) -> None:
        sys.exit(3)  # must become an error response, not stop the server

    # -- shared state ---------------------------------------------------------------------------
    @thread_safe_method
    @tool
    def increment(self) -> int:
        with self.acquire_lock():
            self.counter += 1
            return self.counter

    @tool
    def plain_increment(self) -> int:
        """Not a thread_safe_method: the server's own tracking must count it."""
        with self.acquire_lock():
            self.plain_counter += 1
            return self.plain_counter

    @tool
    def counts(self) -> dict[str, Any]:
        with self.acquire_lock():
            counter, plain = self.counter, self.plain_counter
        return {
            "counter": counter,
            "plain_counter": plain,
            "initialized": self.initialized,
            "adapter_id": id(self),
            "tracker": self.get_stats()["tracker"],
        }

    # -- time and threads -----------------------------------------------------------------------
    @tool
    def sleep(self, seconds: float, label: str | None = None) -> str:
        self._started(label)
        time.sleep(seconds)
        return threading.current_thread().name

    @tool
    def spin(self, seconds: float) -> str:
        """Busy for ``seconds`` of wall time (CPU-bound)."""
        end = time.perf_counter() + seconds
        n = 0
        while time.perf_counter() < end:
            n += 1
        return threading.current_thread().name

    @tool
    def whoami(self) -> dict[str, Any]:
        request = current_request()
        return {
            "session_id": self.session_id,
            "tool_name": request.tool_name if request else None,
            "correlation_id": request.correlation_id if request else None,
            "metadata": dict(request.metadata) if request else None,
            "has_deadline": bool(request and request.deadline is not None),
            "thread": threading.current_thread().name,
        }

    @tool
    async def wait_started(self, label: str) -> bool:
        """Wait (on the event loop) until a call with ``label`` has begun."""
        end = time.monotonic() + WAIT_LIMIT
        while time.monotonic() < end:
            with self.acquire_lock():
                if label in self.started:
                    return True
            await asyncio.sleep(0.01)
        return False

    @tool
    def was_started(self, label: str) -> bool:
        with self.acquire_lock():
            return label in self.started

    # -- async ----------------------------------------------------------------------------------
    @tool
    async def async_echo(self, value: Any = None) -> Any:
        await asyncio.sleep(0)
        return value

    @tool
    async def async_whoami(self) -> dict[str, Any]:
        await asyncio.sleep(0)
        request = current_request()
        return {
            "session_id": self.session_id,
            "tool_name": request.tool_name if request else None,
            "thread": threading.current_thread().name,
        }

    @thread_safe_method
    @tool
    async def async_tracked(self) -> str:
        """A tracked async tool: its call is counted by the decorator, not again by the server."""
        await asyncio.sleep(0)
        return threading.current_thread().name

    @tool
    async def async_fail(self) -> None:
        await asyncio.sleep(0)
        raise KeyError("missing")

    @tool
    async def async_sleep(self, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return threading.current_thread().name

    # -- streaming ------------------------------------------------------------------------------
    @tool(supports_streaming=True)
    def count_up(self, n: int, delay: float = 0.0) -> Iterator[dict[str, Any]]:
        for i in range(n):
            if delay:
                time.sleep(delay)
            yield {"i": i, "thread": threading.current_thread().name}

    @tool(supports_streaming=True)
    def endless(self, delay: float = 0.01) -> Iterator[dict[str, int]]:
        i = 0
        try:
            while True:
                time.sleep(delay)
                yield {"i": i}
                i += 1
        finally:
            with self.acquire_lock():
                self.closed_streams += 1

    @tool(supports_streaming=True)
    async def async_endless(self, delay: float = 0.01) -> AsyncIterator[dict[str, int]]:
        i = 0
        try:
            while True:
                await asyncio.sleep(delay)
                yield {"i": i}
                i += 1
        finally:
            with self.acquire_lock():
                self.closed_streams += 1

    @tool(supports_streaming=True)
    def stream_fail(self, after: int) -> Iterator[int]:
        yield from range(after)
        raise RuntimeError(f"stream broke after {after} items")

    @tool
    def streams_closed(self) -> int:
        with self.acquire_lock():
            return self.closed_streams

    @tool(supports_streaming=True)
    async def async_count(self, n: int) -> AsyncIterator[dict[str, int]]:
        for i in range(n):
            await asyncio.sleep(0)
            yield {"i": i}

    # Generator tools of every kind, tracked by @thread_safe_method or not: each counts the
    # bodies that started, so a test can tell a refused call from one that ran.
    def _stream_body_started(self) -> None:
        with self.acquire_lock():
            self.stream_bodies += 1

    @tool
    def plain_gen(self, n: int = 2) -> Iterator[int]:
        self._stream_body_started()
        yield from range(n)

    @thread_safe_method
    @tool
    def tracked_gen(self, n: int = 2) -> Iterator[int]:
        self._stream_body_started()
        yield from range(n)

    @tool
    async def plain_agen(self, n: int = 2) -> AsyncIterator[int]:
        self._stream_body_started()
        for i in range(n):
            await asyncio.sleep(0)
            yield i

    @thread_safe_method
    @tool
    async def tracked_agen(self, n: int = 2) -> AsyncIterator[int]:
        self._stream_body_started()
        for i in range(n):
            await asyncio.sleep(0)
            yield i

    @tool
    def hidden_gen(self, n: int = 2) -> Any:
        """A plain function that returns a generator: the catalog cannot know it streams."""
        return self._numbers(n)

    def _numbers(self, n: int) -> Iterator[int]:
        self._stream_body_started()
        yield from range(n)

    @tool(supports_streaming=True)
    def declared_streaming_list(self, n: int = 2) -> list[int]:
        """Declared streaming, but returns one value: served by both RPCs."""
        return list(range(n))

    @tool
    def stream_bodies_started(self) -> int:
        with self.acquire_lock():
            return self.stream_bodies


class RacyAdapter(ThreadSafeAdapter):
    """Writes shared state without the lock: the checker must report it (once)."""

    __thread_safe__ = True

    def __init__(self) -> None:
        super().__init__()
        self.value = 0

    @thread_safe_method
    @tool
    def bump(self, pause: float = 0.05) -> int:
        time.sleep(pause)  # overlap with other calls
        self.value = self.value + 1  # racy on purpose
        return self.value


class AsyncLifecycleAdapter(ThreadSafeAdapter):
    """async initialize() and cleanup()."""

    __thread_safe__ = True

    def __init__(self) -> None:
        super().__init__()
        self.ready = False

    async def initialize(self) -> None:
        await asyncio.sleep(0)
        self.ready = True
        _mark("async initialize")

    async def cleanup(self) -> None:
        await asyncio.sleep(0)
        _mark("async cleanup")

    @tool
    def is_ready(self) -> bool:
        return self.ready


class UndeclaredAdapter(BaseAdapter):
    """Declares itself not thread-safe: the server must serve it from one thread."""

    __thread_safe__ = False

    @tool
    def where(self, pause: float = 0.05) -> str:
        time.sleep(pause)
        return threading.current_thread().name


class InheritsDeclarationAdapter(RacyAdapter):
    """Declared thread-safe by its base class (the nearest class that sets it decides)."""


class NoDeclarationAdapter(ThreadSafeAdapter):
    """Derives from ThreadSafeAdapter, whose own attribute is not a declaration."""

    @tool
    def ping(self) -> str:
        return "pong"


class BrokenConstructorAdapter(ThreadSafeAdapter):
    __thread_safe__ = True

    def __init__(self) -> None:
        super().__init__()
        raise RuntimeError("cannot open the model file")


class BrokenInitializeAdapter(ThreadSafeAdapter):
    __thread_safe__ = True

    def initialize(self) -> None:
        raise OSError("the GPU is not there")
