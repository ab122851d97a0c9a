"""``ThreadedShowcaseAdapter``: every tool of Snakepit's threaded showcase, with the three patterns.

* Pattern 1, shared read-only: ``model_config`` and the model weights (NumPy arrays marked
  read-only) are built once in ``__init__`` and never changed.
* Pattern 2, thread-local: each thread's result cache and current batch id live in the adapter's
  thread-local storage, so they need no lock.
* Pattern 3, locked shared mutable: request counters, per-thread and per-tool usage and the
  bounded request history are only touched under ``self.acquire_lock()``.

Two tools show the other kinds a tool may be: ``async_batch_process`` is ``async def`` (its
waits hold no thread; it keeps per-request state in local variables, because tasks that
interleave on one thread share that thread's storage) and ``stream_batch`` is a generator, whose
results stream as they are made. Neither holds the adapter lock across an ``await`` or a
``yield``.

NumPy is optional: the module imports without it (``NUMPY_AVAILABLE`` is then False), and the
tools that do maths with it (``compute_intensive``, ``matrix_multiply``, ``stress_test``) raise
:class:`NumpyUnavailableError` saying how to install it.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import random
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from numbers import Real
from typing import Any, Final

from snakepit_bridge._native import ThreadSafeAdapter, thread_safe_method
from snakepit_bridge.base_adapter import BaseAdapter, tool
from snakepit_bridge.base_adapter_threaded import OTHER_THREADS

np: Any  # the numpy module, or None without it
try:
    import numpy as np
except ImportError:  # the core package must work without NumPy
    np = None

__all__ = [
    "NUMPY_AVAILABLE",
    "ModelConfig",
    "NumpyUnavailableError",
    "ThreadedShowcaseAdapter",
]

NUMPY_AVAILABLE: Final[bool] = np is not None

# Shapes of the demo network: 100 inputs -> 100 -> 50 -> 10 outputs.
LAYER_SHAPES: Final = {"layer1": (100, 100), "layer2": (100, 50), "layer3": (50, 10)}
INPUT_SIZE: Final = LAYER_SHAPES["layer1"][0]
HISTORY_LIMIT: Final = 1000  # request_history keeps the newest entries only
CACHE_LIMIT: Final = 128  # entries per thread in compute_intensive's cache
MAX_TRACKED_THREAD_NAMES: Final = 1024  # beyond this, usage is counted under OTHER_THREADS
MAX_ITERATIONS: Final = 1_000_000
MAX_DELAY_MS: Final = 10_000
MAX_DURATION_MS: Final = 60_000
MAX_COMPLEXITY: Final = 1_000_000
# Tools that do work and so count as requests in the adapter's own statistics.
WORK_TOOLS: Final = (
    "async_batch_process",
    "batch_process",
    "compute_intensive",
    "matrix_multiply",
    "stream_batch",
    "stress_test",
)


class NumpyUnavailableError(RuntimeError):
    """A showcase tool needs NumPy, which is not installed."""


@dataclass(frozen=True)
class ModelConfig:
    """Read-only description of the demo model (Pattern 1)."""

    name: str
    version: str
    complexity: int
    thread_safe: bool = True


def _require_numpy(tool_name: str) -> Any:
    if np is None:
        raise NumpyUnavailableError(
            f"{tool_name} needs NumPy, which is not installed: pip install 'snakepit-bridge[numpy]'"
        )
    return np


def _int_arg(tool_name: str, name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{tool_name}: {name} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{tool_name}: {name} must be between {low} and {high}, got {value}")
    return value


def _numbers_arg(tool_name: str, name: str, value: Any) -> tuple[float, ...]:
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{tool_name}: {name} must be a list of numbers")
    if not value:
        raise ValueError(f"{tool_name}: {name} must not be empty")
    if not all(isinstance(x, Real) and not isinstance(x, bool) for x in value):
        raise TypeError(f"{tool_name}: {name} must contain only numbers")
    return tuple(float(x) for x in value)


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 3)


class ThreadedShowcaseAdapter(ThreadSafeAdapter):
    """Demonstrates the three thread-safety patterns with NumPy work tools."""

    __thread_safe__ = True

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        # Pattern 1: shared read-only, built once.
        self.model_config = ModelConfig(name="ThreadedShowcaseModel", version="2.0", complexity=5)
        self.model_weights = self._build_weights(seed)
        # Pattern 3: shared mutable, only touched under self.acquire_lock().
        self.total_requests = 0
        self.total_compute_time = 0.0
        self.max_concurrent = 0
        self.cache_hits = 0
        self.batches_started = 0
        self.thread_usage: dict[str, int] = {}
        self.tool_calls: dict[str, int] = dict.fromkeys(WORK_TOOLS, 0)
        self.request_history: deque[dict[str, Any]] = deque(maxlen=HISTORY_LIMIT)

    @staticmethod
    def _build_weights(seed: int) -> dict[str, Any] | None:
        if np is None:
            return None
        rng = np.random.default_rng(seed)
        weights = {}
        for name, shape in LAYER_SHAPES.items():
            array = rng.standard_normal(shape) / np.sqrt(shape[0])
            array.flags.writeable = False  # Pattern 1 enforced: any write raises
            weights[name] = array
        return weights

    # -- the default load of `snakepit-bridge hammer` ---------------------------------------
    @classmethod
    def default_hammer_mix(
        cls,
    ) -> dict[str, tuple[int, Callable[[random.Random], dict[str, Any]]]]:
        """Weight and argument factory per tool, for ``snakepit-bridge hammer`` without
        ``--tool`` (subclasses inherit it; tools they add join the mix with weight 1).

        Arguments are valid and small: the default run of 10,000 requests should take seconds,
        not minutes, on a 2-core machine, while every tool (and each of the three patterns)
        gets traffic.
        """
        return {
            "ping": (2, lambda rng: {}),
            "compute_intensive": (
                3,
                lambda rng: {
                    "data": [round(rng.uniform(-1, 1), 6) for _ in range(16)],
                    "iterations": 50,
                },
            ),
            "matrix_multiply": (
                3,
                lambda rng: {
                    "input_vector": [round(rng.uniform(-1, 1), 6) for _ in range(INPUT_SIZE)]
                },
            ),
            "batch_process": (
                1,
                lambda rng: {
                    "items": [f"item-{rng.randrange(1000)}" for _ in range(3)],
                    "delay_ms": 1,
                },
            ),
            "async_batch_process": (
                1,
                lambda rng: {
                    "items": [f"item-{rng.randrange(1000)}" for _ in range(3)],
                    "delay_ms": 1,
                },
            ),
            "stream_batch": (
                1,
                lambda rng: {"items": [f"item-{rng.randrange(1000)}" for _ in range(3)]},
            ),
            "stress_test": (1, lambda rng: {"duration_ms": 2, "complexity": 100}),
            "get_adapter_stats": (1, lambda rng: {}),
            "get_history": (1, lambda rng: {"limit": 5}),
            "clear_caches": (1, lambda rng: {}),
        }

    # -- Pattern 3 helper ------------------------------------------------------------------
    def _record(
        self, tool_name: str, seconds: float, cache_hit: bool = False, **history: Any
    ) -> None:
        """Count one request of ``tool_name``; the whole update is one locked section."""
        thread = threading.current_thread().name
        active = self.tracker.active_requests()  # read before locking: no nesting
        with self.acquire_lock():
            self.total_requests += 1
            self.total_compute_time += seconds
            self.max_concurrent = max(self.max_concurrent, active)
            key = thread
            if key not in self.thread_usage and len(self.thread_usage) >= MAX_TRACKED_THREAD_NAMES:
                key = OTHER_THREADS
            self.thread_usage[key] = self.thread_usage.get(key, 0) + 1
            self.tool_calls[tool_name] += 1
            if cache_hit:
                self.cache_hits += 1
            if history:
                self.request_history.append(
                    {"tool": tool_name, "thread": thread, "timestamp": time.time(), **history}
                )

    # -- tools -----------------------------------------------------------------------------
    @thread_safe_method
    @tool(description="Reply with a message, a timestamp and the name of the serving thread")
    def ping(self, message: str = "pong") -> dict[str, Any]:
        return {
            "message": message,
            "timestamp": time.time(),
            "thread": threading.current_thread().name,
        }

    @thread_safe_method
    @tool(description="CPU-bound NumPy loop with a per-thread result cache")
    def compute_intensive(self, data: list[float], iterations: int = 1000) -> dict[str, Any]:
        numpy = _require_numpy("compute_intensive")
        started = time.perf_counter()
        values = _numbers_arg("compute_intensive", "data", data)
        iterations = _int_arg("compute_intensive", "iterations", iterations, 0, MAX_ITERATIONS)
        key = (values, iterations)  # everything the result depends on

        # Pattern 2: each thread has its own bounded LRU cache; no lock needed.
        cache: OrderedDict[tuple[tuple[float, ...], int], float] | None = self.get_thread_local(
            "compute_cache"
        )
        if cache is None:
            cache = OrderedDict()
            self.set_thread_local("compute_cache", cache)
        result = cache.get(key)
        cached = result is not None
        if cached:
            cache.move_to_end(key)
        else:
            array = numpy.asarray(values, dtype=numpy.float64)
            for _ in range(iterations):
                array = numpy.sin(array) * numpy.cos(array) + 0.1 * array
            result = float(array.mean())
            cache[key] = result
            if len(cache) > CACHE_LIMIT:
                cache.popitem(last=False)

        self._record("compute_intensive", time.perf_counter() - started, cache_hit=cached)
        return {
            "result": result,
            "iterations": iterations,
            "input_size": len(values),
            "execution_time_ms": _elapsed_ms(started),
            "thread": threading.current_thread().name,
            "cached": cached,
        }

    @thread_safe_method
    @tool(description="Run a 100-element vector through the shared read-only 3-layer model")
    def matrix_multiply(self, input_vector: list[float]) -> dict[str, Any]:
        numpy = _require_numpy("matrix_multiply")
        started = time.perf_counter()
        values = _numbers_arg("matrix_multiply", "input_vector", input_vector)
        if len(values) != INPUT_SIZE:
            raise ValueError(
                f"matrix_multiply: input_vector must have {INPUT_SIZE} elements, got {len(values)}"
            )
        weights = self.model_weights  # Pattern 1: shared, read-only, no lock
        assert weights is not None  # built whenever NumPy is there (checked above)
        hidden = numpy.maximum(numpy.asarray(values) @ weights["layer1"], 0.0)
        hidden = numpy.maximum(hidden @ weights["layer2"], 0.0)
        output = hidden @ weights["layer3"]
        self._record("matrix_multiply", time.perf_counter() - started)
        return {
            "output": output.tolist(),
            "input_size": len(values),
            "output_size": int(output.shape[0]),
            "execution_time_ms": _elapsed_ms(started),
            "thread": threading.current_thread().name,
            "model": self.model_config.name,
        }

    @thread_safe_method
    @tool(description="Hash each item of a batch, pausing delay_ms per item")
    def batch_process(self, items: list[Any], delay_ms: int = 10) -> dict[str, Any]:
        started = time.perf_counter()
        if not isinstance(items, (list, tuple)):
            raise TypeError("batch_process: items must be a list")
        delay_ms = _int_arg("batch_process", "delay_ms", delay_ms, 0, MAX_DELAY_MS)
        with self.acquire_lock():
            self.batches_started += 1
            batch_id = f"batch_{self.batches_started}"
        thread = threading.current_thread().name
        self.set_thread_local("current_batch_id", batch_id)  # Pattern 2
        try:
            results = []
            for index, item in enumerate(items):
                if delay_ms:
                    time.sleep(delay_ms / 1000.0)
                digest = hashlib.sha256(repr(item).encode()).hexdigest()[:16]
                results.append(
                    {"item_id": index, "input": item, "output": digest, "thread": thread}
                )
        finally:
            self.clear_thread_local("current_batch_id")
        seconds = time.perf_counter() - started
        self._record(
            "batch_process",
            seconds,
            batch_id=batch_id,
            items_processed=len(results),
            execution_time=seconds,
        )
        return {
            "batch_id": batch_id,
            "items_processed": len(results),
            "results": results,
            "execution_time_ms": _elapsed_ms(started),
            "thread": thread,
        }

    @thread_safe_method
    @tool(description="Async batch: wait delay_ms per item, all items at once, then hash each")
    async def async_batch_process(self, items: list[Any], delay_ms: int = 10) -> dict[str, Any]:
        started = time.perf_counter()
        if not isinstance(items, (list, tuple)):
            raise TypeError("async_batch_process: items must be a list")
        delay_ms = _int_arg("async_batch_process", "delay_ms", delay_ms, 0, MAX_DELAY_MS)
        with self.acquire_lock():  # Pattern 3, never held across an await
            self.batches_started += 1
            batch_id = f"batch_{self.batches_started}"
        thread = threading.current_thread().name

        # Per-request state in local variables, not thread-local storage: other tasks run on
        # this thread at every await, and they would see (and overwrite) it.
        async def one(index: int, item: Any) -> dict[str, Any]:
            if delay_ms:
                await asyncio.sleep(delay_ms / 1000.0)  # stands for I/O: no thread is held
            digest = hashlib.sha256(repr(item).encode()).hexdigest()[:16]
            return {"item_id": index, "input": item, "output": digest, "thread": thread}

        results = list(await asyncio.gather(*(one(i, item) for i, item in enumerate(items))))
        seconds = time.perf_counter() - started
        self._record(
            "async_batch_process",
            seconds,
            batch_id=batch_id,
            items_processed=len(results),
            execution_time=seconds,
        )
        return {
            "batch_id": batch_id,
            "items_processed": len(results),
            "results": results,
            "execution_time_ms": _elapsed_ms(started),
            "thread": thread,
        }

    @thread_safe_method
    @tool(description="Hash each item of a batch, streaming each result as soon as it is made")
    def stream_batch(self, items: list[Any], delay_ms: int = 0) -> Iterator[dict[str, Any]]:
        # A generator: this body starts at the first item asked for, so that is where bad
        # arguments raise; it may be resumed on another thread, so it keeps its state in locals.
        started = time.perf_counter()
        if not isinstance(items, (list, tuple)):
            raise TypeError("stream_batch: items must be a list")
        delay_ms = _int_arg("stream_batch", "delay_ms", delay_ms, 0, MAX_DELAY_MS)
        with self.acquire_lock():  # released before the first yield
            self.batches_started += 1
            batch_id = f"batch_{self.batches_started}"
        for index, item in enumerate(items):
            if delay_ms:
                time.sleep(delay_ms / 1000.0)
            yield {
                "batch_id": batch_id,
                "item_id": index,
                "input": item,
                "output": hashlib.sha256(repr(item).encode()).hexdigest()[:16],
                "thread": threading.current_thread().name,
            }
        seconds = time.perf_counter() - started  # counted once the whole stream was taken
        self._record(
            "stream_batch",
            seconds,
            batch_id=batch_id,
            items_processed=len(items),
            execution_time=seconds,
        )

    @thread_safe_method
    @tool(description="Busy NumPy FFT loop for duration_ms; reports operations per second")
    def stress_test(self, duration_ms: int = 100, complexity: int = 1000) -> dict[str, Any]:
        numpy = _require_numpy("stress_test")
        duration_ms = _int_arg("stress_test", "duration_ms", duration_ms, 0, MAX_DURATION_MS)
        complexity = _int_arg("stress_test", "complexity", complexity, 1, MAX_COMPLEXITY)
        rng = numpy.random.default_rng()
        started = time.perf_counter()
        deadline = started + duration_ms / 1000.0
        iterations = 0
        while True:  # at least one iteration, so the rate below is never 0/0
            numpy.fft.fft(rng.standard_normal(complexity))
            iterations += 1
            if time.perf_counter() >= deadline:
                break
        seconds = time.perf_counter() - started
        self._record("stress_test", seconds)
        return {
            "iterations": iterations,
            "target_duration_ms": duration_ms,
            "actual_duration_ms": round(seconds * 1000.0, 3),
            "complexity": complexity,
            "thread": threading.current_thread().name,
            "ops_per_second": round(iterations / seconds, 3) if seconds > 0 else None,
        }

    @thread_safe_method
    @tool(description="Adapter statistics: requests, threads, tools, tracker and model")
    def get_adapter_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = dict(self.get_stats())  # fresh from the native core
        with self.acquire_lock():  # one consistent snapshot, copied before the lock is released
            stats["global_stats"] = {
                "total_requests": self.total_requests,
                "total_compute_time": self.total_compute_time,
                "max_concurrent": self.max_concurrent,
                "cache_hits": self.cache_hits,
                "thread_usage": dict(self.thread_usage),
                "tool_calls": dict(self.tool_calls),
            }
            stats["history_entries"] = len(self.request_history)
        stats["model"] = asdict(self.model_config)
        stats["numpy_available"] = NUMPY_AVAILABLE
        return stats

    @thread_safe_method
    @tool(description="The newest request history entries (copies)")
    def get_history(self, limit: int = 10) -> dict[str, Any]:
        limit = _int_arg("get_history", "limit", limit, 1, HISTORY_LIMIT)
        with self.acquire_lock():
            total = len(self.request_history)
            newest = list(itertools.islice(reversed(self.request_history), limit))[::-1]
        entries = [dict(entry) for entry in newest]  # entries hold scalars only: a deep copy
        return {"entries": entries, "total_entries": total, "returned": len(entries)}

    @thread_safe_method
    @tool(description="Clear the calling thread's result cache")
    def clear_caches(self) -> dict[str, Any]:
        cache = self.get_thread_local("compute_cache")
        cleared = len(cache) if cache is not None else 0
        self.clear_thread_local("compute_cache")
        thread = threading.current_thread().name
        return {
            "status": "success",
            "message": f"cleared {cleared} cached result(s) of thread {thread}",
            "cleared": cleared,
            "thread": thread,
        }

    @thread_safe_method
    def execute_tool(
        self, tool_name: str, arguments: Mapping[str, Any] | None = None, context: Any = None
    ) -> Any:
        """Dispatch like BaseAdapter, tracked as one request (the tool call inside is nested)."""
        return BaseAdapter.execute_tool(self, tool_name, arguments, context)

    @thread_safe_method
    async def aexecute_tool(
        self, tool_name: str, arguments: Mapping[str, Any] | None = None, context: Any = None
    ) -> Any:
        """Dispatch any tool like BaseAdapter, awaitably, tracked as one request."""
        return await BaseAdapter.aexecute_tool(self, tool_name, arguments, context)
