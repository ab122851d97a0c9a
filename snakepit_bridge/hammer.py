"""The hammer engine: many threads calling one shared adapter at once, measured.

This is the machinery behind ``snakepit-bridge hammer`` and it is usable on its own::

    from snakepit_bridge.hammer import build_mix, run_hammer
    from snakepit_bridge.loading import load_adapter_class

    adapter_class = load_adapter_class("my_pkg.adapters:MyAdapter")
    mix = lambda adapter: build_mix(adapter, seed=1)  # the default mix of the shared instance
    result = run_hammer(adapter_class, mix, threads=16, requests=5000, seed=1)
    print(result.to_dict()["latency_ms"])

What a run does:

* one adapter instance, built once (after the thread-safety checker when one is asked for, so the
  checker observes it from its first write) and shared by every worker thread;
* the worker threads wait on a :class:`threading.Barrier` and are released together, so the first
  requests really overlap;
* each request picks a tool from the mix (a seeded, weighted schedule, drawn as requests are
  handed out so its memory does not depend on their number; ``--seed`` reproduces the same
  multiset of calls), calls it with a fresh copy of the arguments, runs it to its end and records
  its latency in a bounded log-linear histogram:

  - a sync tool with ``adapter.call_tool(name, **arguments)``;
  - an async tool (``ToolSpec.is_async``: ``async def`` or an async generator) with
    ``await adapter.acall_tool(name, **arguments)`` (``call_tool``, awaited, for an adapter that
    has no ``acall_tool``), on the worker thread's own event loop;
  - a streaming tool's generator, async generator or iterable is drained, so the request's time is
    the whole stream's;
  - a coroutine that a tool returned without being declared async is *never awaited*: it is
    closed unrun and the request counts as an error (:class:`UnawaitedCoroutineError`), never as a
    success;
* one event loop per worker thread, made when the worker starts (only when the mix has an async
  tool or the adapter asks for a worker scope) and closed when it ends. Not one loop shared by
  the workers: that would run every async request on the loop's one thread, one step at a time,
  so the adapter's async tools would never run on two threads at once (the races the hammer is
  there to find could not happen) and each request would pay a hand-off between threads. Each
  worker awaits one request at a time, so ``threads`` is the concurrency for async tools too;
* an adapter may define ``hammer_worker_scope()`` returning an async context manager: each
  worker enters it on its loop before the run starts and leaves it when the worker stops (a
  client adapter opens and closes its connection there; see :data:`WORKER_SCOPE_METHOD`);
* exceptions are grouped by tool, type and raising line, one formatted traceback kept per group;
* Ctrl-C (``KeyboardInterrupt`` in the main thread) stops the workers after their current request
  and still returns a result, marked ``interrupted``.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import threading
import time
import traceback
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from snakepit_bridge import environment
from snakepit_bridge._json import json_safe
from snakepit_bridge.base_adapter import acall, is_coroutine, tool_specs
from snakepit_bridge.checker.runs import start_checker, stop_checker
from snakepit_bridge.loading import adapter_spec, construct_adapter, exception_summary

DEFAULT_THREADS = 16
DEFAULT_REQUESTS = 10_000
REPORT_SCHEMA_VERSION = 1

# How many entries of the tool schedule are drawn at a time (see _Schedule).
_SCHEDULE_CHUNK = 1024


# The method an adapter may define to give each worker thread a scope on its event loop:
# ``hammer_worker_scope()`` returns an async context manager, entered before the run starts and
# exited when the worker stops, on the worker's own loop.
WORKER_SCOPE_METHOD = "hammer_worker_scope"


class UnawaitedCoroutineError(TypeError):
    """A tool returned a coroutine that nothing awaited: its body never ran.

    The hammer awaits the tools the adapter's tool list marks async (``ToolSpec.is_async``). A
    tool that is not marked so but returns a coroutine is called like a sync tool; its coroutine
    is closed unrun and the request is counted as this error, never as a success.
    """


class UsageError(Exception):
    """What the user asked for cannot be run (unknown tool, bad arguments, too many threads).

    The CLI turns it into a one-line message and exit status 2.
    """


# --------------------------------------------------------------------------------------------
# The request mix
# --------------------------------------------------------------------------------------------

ArgumentFactory = Callable[[random.Random], Mapping[str, Any]]
"""Makes one tool's keyword arguments from the run's seeded random generator."""

MixTable = Mapping[str, tuple[int, ArgumentFactory]]
"""Tool name -> (weight, argument factory): an adapter class's default mix."""

# The classmethod an adapter class may define to give its default mix (see default_mix_table).
DEFAULT_MIX_METHOD = "default_hammer_mix"


@dataclass(frozen=True)
class ToolCall:
    """One entry of the request mix: a tool, its keyword arguments and its relative weight."""

    tool: str
    arguments: Mapping[str, Any]
    weight: int = 1
    streaming: bool = False
    is_async: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"tool": self.tool, "args": json_safe(dict(self.arguments)), "weight": self.weight}


def default_mix_table(adapter_class: type) -> MixTable:
    """The default mix an adapter class declares, or an empty table.

    A class declares one with a classmethod ``default_hammer_mix()`` returning a
    :data:`MixTable`; subclasses inherit it. The engine itself names no tool.
    """
    declare = getattr(adapter_class, DEFAULT_MIX_METHOD, None)
    if declare is None:
        return {}
    table = declare()
    if not isinstance(table, Mapping):
        raise TypeError(
            f"{adapter_class.__qualname__}.{DEFAULT_MIX_METHOD}() must return a mapping of tool "
            f"name to (weight, argument factory), not {type(table).__name__}"
        )
    for name, entry in table.items():
        weight, factory = entry
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
            raise TypeError(f"{DEFAULT_MIX_METHOD}(): the weight of {name!r} must be an int >= 1")
        if not callable(factory):
            raise TypeError(
                f"{DEFAULT_MIX_METHOD}(): the argument factory of {name!r} is not callable"
            )
    return table


def build_mix(
    adapter: Any,
    tools: Sequence[str] = (),
    arguments: Mapping[str, Mapping[str, Any]] | None = None,
    seed: int = 0,
) -> list[ToolCall]:
    """The request mix for ``adapter``.

    ``tools`` selects tools by name (a repeated name counts once more in the weighting); when
    empty, the default mix is used: the tools of the class's :func:`default_mix_table` with
    their weights and arguments, plus every other tool whose parameters all have defaults (or
    that ``arguments`` names), with weight 1. ``arguments`` maps a tool name to keyword
    arguments, merged over the default ones. Raises :class:`UsageError` for unknown tools, unknown
    parameters, missing required arguments, or an empty mix.
    """
    specs = {spec.name: spec for spec in tool_specs(adapter)}
    if not specs:
        raise UsageError(
            f"{type(adapter).__qualname__} declares no tools (decorate methods with @tool)"
        )
    available = ", ".join(sorted(specs))
    arguments = dict(arguments or {})
    for name in arguments:
        if name not in specs:
            raise UsageError(f"--args names unknown tool {name!r}; available: {available}")
    for name in tools:
        if name not in specs:
            raise UsageError(
                f"unknown tool {name!r} for {type(adapter).__qualname__}; available: {available}"
            )
    if tools:
        not_selected = sorted(set(arguments) - set(tools))
        if not_selected:
            raise UsageError(f"--args names tool {not_selected[0]!r}, which no --tool selects")

    rng = random.Random(seed)
    table = default_mix_table(type(adapter))
    weights: dict[str, int] = {}
    if tools:
        for name in tools:
            weights[name] = weights.get(name, 0) + 1
    else:
        # The adapter's table where it has an entry; otherwise every tool that can be called
        # with the arguments at hand (so tools a subclass adds join the mix too).
        for name, spec in specs.items():
            if name in table:
                weights[name] = table[name][0]
            elif not spec.required_parameters or name in arguments:
                weights[name] = 1
    if not weights:
        needs = "; ".join(
            f"{name} needs {', '.join(p.name for p in spec.required_parameters)}"
            for name, spec in specs.items()
        )
        raise UsageError(
            f"no tool of {type(adapter).__qualname__} can be called without arguments ({needs}); "
            "choose tools with --tool and give their arguments with --args"
        )

    mix = []
    for name, weight in weights.items():
        spec = specs[name]
        args: dict[str, Any] = {}
        if name in table:
            args.update(table[name][1](rng))
        args.update(arguments.get(name, {}))
        known = spec.keyword_names
        for key in args:
            if key not in known and not spec.accepts_any_keyword:
                raise UsageError(
                    f"tool {name!r} has no parameter {key!r}; parameters: "
                    + (", ".join(sorted(known)) or "(none)")
                )
        missing = [p.name for p in spec.required_parameters if p.name not in args]
        if missing:
            raise UsageError(
                f"tool {name!r} needs argument(s) {', '.join(missing)}; give them with "
                f"--args '{{\"{name}\": {{...}}}}'"
            )
        mix.append(ToolCall(name, args, weight, spec.supports_streaming, spec.is_async))
    return mix


def _fresh_copy(value: Any) -> Any:
    """A private copy of JSON-like arguments, as a server decoding a request would produce.

    Each request gets its own lists and dicts, so a tool that mutates its input cannot create a
    race that belongs to the harness rather than to the adapter.
    """
    if isinstance(value, list):
        return [_fresh_copy(v) for v in value]
    if isinstance(value, dict):
        return {k: _fresh_copy(v) for k, v in value.items()}
    return value


# --------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------


class LatencyHistogram:
    """Log-linear histogram of latencies in nanoseconds: bounded memory, mergeable.

    Each bucket keeps the 7 most significant bits of the value, so a percentile read from it is
    within 1/128 (under 0.8 %) of the exact one; ``min`` and ``max`` are exact. A run of any
    length costs a few thousand dict entries per thread instead of one float per request.
    """

    _MANTISSA_BITS = 7

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.total_ns = 0
        self.min_ns = 0
        self.max_ns = 0

    def record(self, ns: int) -> None:
        shift = max(0, ns.bit_length() - self._MANTISSA_BITS)
        index = (shift << self._MANTISSA_BITS) | (ns >> shift)
        self.buckets[index] = self.buckets.get(index, 0) + 1
        if self.count == 0 or ns < self.min_ns:
            self.min_ns = ns
        if ns > self.max_ns:
            self.max_ns = ns
        self.count += 1
        self.total_ns += ns

    def merge(self, other: LatencyHistogram) -> None:
        for index, n in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + n
        if other.count and (self.count == 0 or other.min_ns < self.min_ns):
            self.min_ns = other.min_ns
        self.max_ns = max(self.max_ns, other.max_ns)
        self.count += other.count
        self.total_ns += other.total_ns

    def percentile(self, p: float) -> int:
        """The nearest-rank ``p``-th percentile in ns (0 when empty)."""
        if self.count == 0:
            return 0
        rank = max(1, math.ceil(p / 100.0 * self.count))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                shift = index >> self._MANTISSA_BITS
                mantissa = index & ((1 << self._MANTISSA_BITS) - 1)
                low = mantissa << shift
                high = ((mantissa + 1) << shift) - 1
                return min(max((low + high) // 2, self.min_ns), self.max_ns)
        return self.max_ns

    def summary_ms(self) -> dict[str, float]:
        """p50, p90, p99, max, min and mean in milliseconds."""

        def ms(ns: float) -> float:
            return round(ns / 1e6, 4)

        return {
            "p50": ms(self.percentile(50)),
            "p90": ms(self.percentile(90)),
            "p99": ms(self.percentile(99)),
            "max": ms(self.max_ns),
            "min": ms(self.min_ns),
            "mean": ms(self.total_ns / self.count) if self.count else 0.0,
        }


@dataclass
class ToolStats:
    """Requests, errors and latencies of one tool (per worker, then merged)."""

    requests: int = 0
    errors: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    def merge(self, other: ToolStats) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.latency.merge(other.latency)


@dataclass
class ErrorGroup:
    """Requests that failed the same way: same tool, exception type and raising line."""

    tool: str
    type: str
    location: str
    message: str
    traceback: str
    count: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "type": self.type,
            "location": self.location,
            "message": self.message,
            "count": self.count,
            "traceback": self.traceback,
        }


def _error_key(tool: str, exc: BaseException) -> tuple[str, str, str]:
    """Group key: the tool, the exception's qualified type and where it was raised."""
    tb = exc.__traceback__
    location = "?"
    while tb is not None:
        location = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"
        tb = tb.tb_next
    kind = type(exc)
    return tool, f"{kind.__module__}.{kind.__qualname__}".removeprefix("builtins."), location


def _format_traceback(exc: BaseException) -> str:
    # Drop the worker frame of this module: the traceback starts at the adapter's call_tool.
    tb = exc.__traceback__
    if tb is not None and tb.tb_frame.f_code.co_filename == __file__ and tb.tb_next is not None:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


class _Worker:
    """State of one worker thread; only that thread writes it while the run is going."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.requests = 0
        self.errors = 0
        self.per_tool: dict[str, ToolStats] = {}
        self.error_groups: dict[tuple[str, str, str], ErrorGroup] = {}
        self.finished = False
        self.thread: threading.Thread | None = None

    def record(self, tool: str, ns: int, exc: BaseException | None) -> None:
        stats = self.per_tool.get(tool)
        if stats is None:
            stats = self.per_tool[tool] = ToolStats()
        stats.requests += 1
        stats.latency.record(ns)
        if exc is not None:
            stats.errors += 1
            self.errors += 1
            key = _error_key(tool, exc)
            group = self.error_groups.get(key)
            if group is None:
                # Formatting is the costly part: done once per group per worker.
                group = self.error_groups[key] = ErrorGroup(
                    tool, key[1], key[2], str(exc), _format_traceback(exc)
                )
            group.count += 1
        # Last, so a progress reader never sees a request counted before it is recorded.
        self.requests += 1


class _Schedule:
    """Hands out requests: the mix index of the next one, ``None`` once ``limit`` were taken.

    The indices are drawn with ``random.Random(seed).choices`` over the mix weights, a chunk at a
    time as requests are taken, so memory does not depend on ``limit`` and the sequence is
    exactly the one a single up-front draw of ``limit`` entries gives (``choices`` uses one
    random number per entry): the per-tool counts of a ``--requests`` run are fixed by the seed.
    """

    def __init__(self, weights: Sequence[int], seed: int, limit: int | None) -> None:
        self._indices = range(len(weights))
        self._cum_weights = list(itertools.accumulate(weights))
        self._rng = random.Random(seed)
        self._limit = limit
        self._taken = 0
        self._chunk: list[int] = []
        self._position = 0
        self._lock = threading.Lock()

    @property
    def limit(self) -> int | None:
        return self._limit

    def take(self) -> int | None:
        with self._lock:
            if self._limit is not None and self._taken >= self._limit:
                return None
            if self._position == len(self._chunk):
                self._chunk = self._rng.choices(
                    self._indices, cum_weights=self._cum_weights, k=_SCHEDULE_CHUNK
                )
                self._position = 0
            index = self._chunk[self._position]
            self._position += 1
            self._taken += 1
            return index


@dataclass(frozen=True)
class Progress:
    """A snapshot for progress displays."""

    completed: int
    errors: int
    elapsed: float
    target_requests: int | None
    target_duration: float | None

    @property
    def fraction(self) -> float:
        if self.target_requests:
            return min(1.0, self.completed / self.target_requests)
        if self.target_duration:
            return min(1.0, self.elapsed / self.target_duration)
        return 0.0

    @property
    def rate(self) -> float:
        return self.completed / self.elapsed if self.elapsed > 0 else 0.0


@dataclass
class HammerResult:
    """Everything a run measured; :meth:`to_dict` is the JSON report (``--json``)."""

    adapter: str
    mix: list[ToolCall]
    threads: int
    target_requests: int | None
    target_duration: float | None
    seed: int
    elapsed: float
    latency: LatencyHistogram
    per_tool: dict[str, ToolStats]
    requests_per_thread: list[int]
    error_groups: list[ErrorGroup]
    interrupted: bool
    unfinished_workers: int
    adapter_stats: Any
    thread_safety: dict[str, Any] | None
    strict: bool
    environment: dict[str, Any]

    @property
    def completed(self) -> int:
        return sum(self.requests_per_thread)

    @property
    def failed(self) -> int:
        return sum(group.count for group in self.error_groups)

    @property
    def checker_warnings(self) -> list[str]:
        if not self.thread_safety:
            return []
        return [str(w) for w in self.thread_safety.get("warnings", [])]

    @property
    def exit_code(self) -> int:
        """130 if interrupted, 1 on errors or (strict) checker warnings, else 0."""
        if self.interrupted:
            return 130
        if self.failed or (self.strict and self.checker_warnings):
            return 1
        return 0

    def thread_spread(self) -> dict[str, Any]:
        counts = self.requests_per_thread
        mean = sum(counts) / len(counts) if counts else 0.0
        variance = sum((c - mean) ** 2 for c in counts) / len(counts) if counts else 0.0
        return {
            "count": len(counts),
            "requests_per_thread": list(counts),
            "min": min(counts, default=0),
            "max": max(counts, default=0),
            "mean": round(mean, 2),
            "stdev": round(math.sqrt(variance), 2),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": REPORT_SCHEMA_VERSION,
            "adapter": self.adapter,
            "interrupted": self.interrupted,
            "unfinished_workers": self.unfinished_workers,
            "config": {
                "threads": self.threads,
                "requests": self.target_requests,
                "duration": self.target_duration,
                "seed": self.seed,
                "mix": [call.to_dict() for call in self.mix],
                "thread_safety_check": self.thread_safety is not None,
                "strict": self.strict,
            },
            "environment": self.environment,
            "requests": {
                "completed": self.completed,
                "succeeded": self.completed - self.failed,
                "failed": self.failed,
            },
            "elapsed_seconds": round(self.elapsed, 6),
            "throughput_per_second": round(self.completed / self.elapsed, 2)
            if self.elapsed > 0
            else 0.0,
            "latency_ms": self.latency.summary_ms(),
            "per_tool": {
                name: {
                    "requests": stats.requests,
                    "errors": stats.errors,
                    "latency_ms": stats.latency.summary_ms(),
                }
                for name, stats in sorted(self.per_tool.items())
            },
            "threads": self.thread_spread(),
            "errors": [group.to_dict() for group in self.error_groups],
            "adapter_stats": self.adapter_stats,
            "thread_safety": self.thread_safety,
            "exit_code": self.exit_code,
        }


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


def _drain(value: Any) -> None:
    """Consume a streaming tool's items so its whole work is inside the measured request: a
    generator or iterator, or an iterable other than a single value (a string, bytes, a
    mapping)."""
    if isinstance(value, (str, bytes, bytearray, memoryview, Mapping)):
        return
    if isinstance(value, Iterator) or hasattr(value, "__iter__"):
        for _ in value:
            pass


async def _drain_async(items: AsyncIterator[Any]) -> None:
    async for _ in items:
        pass


async def _async_request(adapter: Any, call: ToolCall, arguments: Mapping[str, Any]) -> None:
    """One request of an async tool, on the worker's loop: awaited, then drained."""
    result = await acall(adapter, call.tool, **arguments)
    if hasattr(result, "__aiter__"):
        await _drain_async(result)
    elif call.streaming or isinstance(result, Iterator):
        _drain(result)


def _unawaited(tool: str, result: Coroutine[Any, Any, Any]) -> UnawaitedCoroutineError:
    result.close()  # never run, and no "never awaited" warning when it is collected
    return UnawaitedCoroutineError(
        f"tool {tool!r} returned a coroutine that nothing awaited (its body never ran): the "
        "adapter's tool list does not mark the tool async (is_async), so it was called like a "
        "sync tool. Declare it `async def` (give any wrapper functools.wraps) or list it with "
        "is_async true"
    )


def run_hammer(
    adapter_class: type | Callable[[], Any],
    mix: Sequence[ToolCall] | Callable[[Any], Sequence[ToolCall]],
    *,
    threads: int = DEFAULT_THREADS,
    requests: int | None = DEFAULT_REQUESTS,
    duration: float | None = None,
    seed: int = 0,
    thread_safety_check: bool = False,
    strict: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
    progress_interval: float = 1.0,
    on_started: Callable[[Any, Sequence[ToolCall]], None] | None = None,
) -> HammerResult:
    """Hammer one shared adapter from ``threads`` threads and measure it.

    ``adapter_class`` is called once to build the shared adapter (after the checker starts, when
    ``thread_safety_check`` or ``strict`` is set). ``mix`` is a list of :class:`ToolCall` or a
    function of the adapter returning one (use it when the mix depends on the instance; it may
    raise :class:`UsageError`). The run ends after ``requests`` requests, or after ``duration``
    seconds when given. ``on_progress`` is called from the calling thread every
    ``progress_interval`` seconds. A ``KeyboardInterrupt`` in the calling thread stops the run and
    returns a result with ``interrupted=True``; a second one abandons workers stuck in a request.
    :class:`UsageError` when the process cannot start ``threads`` threads (the ones started are
    stopped and joined first).
    """
    if threads < 1:
        raise UsageError("--threads must be at least 1")
    if duration is not None:
        if duration <= 0:
            raise UsageError("--duration must be positive")
        requests = None
    elif requests is None or requests < 1:
        raise UsageError("--requests must be at least 1")

    checker = start_checker() if (thread_safety_check or strict) else None
    try:
        adapter = construct_adapter(adapter_class)
        calls = list(mix(adapter) if callable(mix) else mix)
        if not calls:
            raise UsageError("the request mix is empty")
        if on_started is not None:
            on_started(adapter, calls)
        schedule = _Schedule([call.weight for call in calls], seed, requests)
        workers: list[_Worker] = []
        interrupted, elapsed = _run_workers(
            adapter, calls, schedule, threads, workers, duration, on_progress, progress_interval
        )
    except BaseException:
        if checker is not None:
            stop_checker(checker)
        raise

    finished = [w for w in workers if w.finished]
    latency = LatencyHistogram()
    per_tool: dict[str, ToolStats] = {}
    groups: dict[tuple[str, str, str], ErrorGroup] = {}
    for worker in finished:
        for name, stats in worker.per_tool.items():
            per_tool.setdefault(name, ToolStats()).merge(stats)
            latency.merge(stats.latency)
        for key, group in worker.error_groups.items():
            if key in groups:
                groups[key].count += group.count
            else:
                groups[key] = replace(group)  # a copy: workers' groups stay as they were
    try:
        adapter_stats = json_safe(adapter.get_stats()) if hasattr(adapter, "get_stats") else None
    except Exception as exc:  # noqa: BLE001 - a broken get_stats() is a finding, not a crash
        adapter_stats = {"error": exception_summary(exc)}
    thread_safety = json_safe(stop_checker(checker)) if checker is not None else None

    return HammerResult(
        adapter=adapter_spec(adapter_class)
        if isinstance(adapter_class, type)
        else repr(adapter_class),
        mix=calls,
        threads=threads,
        target_requests=requests,
        target_duration=duration,
        seed=seed,
        elapsed=elapsed,
        latency=latency,
        per_tool=per_tool,
        requests_per_thread=[w.requests for w in finished],
        error_groups=sorted(groups.values(), key=lambda g: (-g.count, g.tool, g.type)),
        interrupted=interrupted,
        unfinished_workers=len(workers) - len(finished),
        adapter_stats=adapter_stats,
        thread_safety=thread_safety,
        strict=strict,
        environment=environment.environment(),
    )


def _run_workers(
    adapter: Any,
    calls: Sequence[ToolCall],
    schedule: _Schedule,
    threads: int,
    workers: list[_Worker],
    duration: float | None,
    on_progress: Callable[[Progress], None] | None,
    progress_interval: float,
) -> tuple[bool, float]:
    """Start ``threads`` workers (appended to ``workers``), wait for them (reporting progress),
    return (interrupted, elapsed). :class:`UsageError` when not all of them can be started."""
    stop = threading.Event()
    requests = schedule.limit
    # The calling thread is a party too: the clock starts when everybody is released.
    barrier = threading.Barrier(threads + 1)
    # Written by the calling thread before it reaches the barrier, read by workers after it.
    deadline_box: list[float] = []
    scope_factory = getattr(adapter, WORKER_SCOPE_METHOD, None)
    loop_at_start = scope_factory is not None or any(call.is_async for call in calls)
    scope_errors: list[BaseException] = []  # of entering or leaving a worker scope

    def work(worker: _Worker) -> None:
        loop = _WorkerLoop(scope_factory)
        try:
            if loop_at_start:
                loop.start()  # before the barrier: setting up is not part of the run
        except BaseException as exc:  # noqa: BLE001 - raised by run_hammer once all are joined
            scope_errors.append(exc)
            barrier.abort()  # every other worker, and the calling thread, stop waiting
            loop.close()
            worker.finished = True
            return
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            _close_loop(loop, scope_errors)
            worker.finished = True
            return
        deadline = deadline_box[0] if deadline_box else None
        try:
            while not stop.is_set():
                index = schedule.take()
                if index is None or (deadline is not None and time.perf_counter() >= deadline):
                    break
                call = calls[index]
                arguments = _fresh_copy(call.arguments)
                error: BaseException | None = None
                started = time.perf_counter_ns()
                try:
                    if call.is_async:
                        loop.run(_async_request(adapter, call, arguments))
                    else:
                        result = adapter.call_tool(call.tool, **arguments)
                        if is_coroutine(result):
                            raise _unawaited(call.tool, result)
                        if hasattr(result, "__aiter__"):
                            loop.run(_drain_async(result))
                        elif call.streaming or isinstance(result, Iterator):
                            _drain(result)
                except BaseException as exc:  # noqa: BLE001 - every failure of a request is data
                    error = exc
                worker.record(call.tool, time.perf_counter_ns() - started, error)
                del error
        finally:
            _close_loop(loop, scope_errors)
            worker.finished = True

    for index in range(threads):
        worker = _Worker(index)
        worker.thread = threading.Thread(
            target=work, args=(worker,), name=f"hammer-{index}", daemon=True
        )
        try:
            worker.thread.start()
        except (RuntimeError, MemoryError) as exc:  # "can't start new thread"
            barrier.abort()  # releases the started workers, which then end at once
            for running in workers:
                assert running.thread is not None
                running.thread.join()
            raise UsageError(
                f"could start only {len(workers)} of {threads} worker threads "
                f"({exception_summary(exc)}); use fewer --threads"
            ) from None
        workers.append(worker)

    started = time.perf_counter()
    interrupted = False
    try:
        if duration is not None:
            deadline_box.append(time.perf_counter() + duration)
        try:
            barrier.wait()
        except threading.BrokenBarrierError:  # a worker could not enter its scope
            for worker in workers:
                assert worker.thread is not None
                worker.thread.join()
            _raise_scope_errors(scope_errors, threads)
            raise
        started = time.perf_counter()
        next_report = started + progress_interval
        for worker in workers:
            assert worker.thread is not None
            while worker.thread.is_alive():
                worker.thread.join(timeout=min(progress_interval, 0.1))
                now = time.perf_counter()
                if on_progress is not None and now >= next_report:
                    next_report = now + progress_interval
                    on_progress(_progress(workers, now - started, requests, duration))
    except KeyboardInterrupt:
        interrupted = True
        stop.set()
        barrier.abort()
        try:
            for worker in workers:
                assert worker.thread is not None
                while worker.thread.is_alive():
                    worker.thread.join(timeout=0.1)
        except KeyboardInterrupt:
            pass  # a second Ctrl-C: report without the workers still inside a request
    elapsed = time.perf_counter() - started
    if not interrupted:
        _raise_scope_errors(scope_errors, threads)
    if on_progress is not None and not interrupted:
        on_progress(_progress(workers, elapsed, requests, duration))
    return interrupted, elapsed


class _WorkerLoop:
    """The event loop of one worker thread (an :class:`asyncio.Runner`, made on first use) and
    the adapter's worker scope, entered on it by :meth:`start`."""

    def __init__(self, scope_factory: Callable[[], Any] | None) -> None:
        self._scope_factory = scope_factory
        self._runner: asyncio.Runner | None = None
        self._scope: Any = None

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        if self._runner is None:
            self._runner = asyncio.Runner()
        return self._runner.run(coroutine)

    def start(self) -> None:
        """Make the loop now, and enter the worker scope when the adapter has one."""
        if self._runner is None:
            self._runner = asyncio.Runner()
        self._runner.get_loop()
        if self._scope_factory is not None:
            scope = self._scope_factory()
            self.run(_awaited(scope.__aenter__()))
            self._scope = scope

    def close(self) -> None:
        """Leave the worker scope (if entered), then close the loop, whatever fails."""
        try:
            if self._scope is not None:
                scope, self._scope = self._scope, None
                self.run(_awaited(scope.__aexit__(None, None, None)))
        finally:
            if self._runner is not None:
                self._runner.close()


def _close_loop(loop: _WorkerLoop, errors: list[BaseException]) -> None:
    try:
        loop.close()
    except BaseException as exc:  # noqa: BLE001 - raised by run_hammer once all are joined
        errors.append(exc)


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _raise_scope_errors(errors: Sequence[BaseException], threads: int) -> None:
    if errors:
        first = errors[0]
        first.add_note(
            f"raised by the adapter's {WORKER_SCOPE_METHOD}() in {len(errors)} of {threads} "
            "worker threads"
        )
        raise first


def _progress(
    workers: Sequence[_Worker], elapsed: float, requests: int | None, duration: float | None
) -> Progress:
    return Progress(
        completed=sum(w.requests for w in workers),
        errors=sum(w.errors for w in workers),
        elapsed=elapsed,
        target_requests=requests,
        target_duration=duration,
    )
