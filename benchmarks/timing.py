"""Timing primitives: compiled, unrolled loops measured in interleaved rounds.

Each statement is compiled into a function whose loop body repeats the statement ``UNROLL``
times; every object the statement uses is a parameter, i.e. a fast local. The cost of the
loop itself is measured the same way (an empty body) and subtracted, so a figure is the cost
of the statement alone. Rounds are interleaved (round 1 of every case, then round 2 ...), so a
burst of load from another process lands on all cases instead of one, and the garbage
collector is off while the loops run, as in ``timeit``.

Single-thread rounds are timed with the thread's CPU time (``time.thread_time_ns``), not the
wall clock: on a machine shared with other work, time spent descheduled is not the
statement's cost. (Wall-clock figures are kept too.) Scaling runs use the wall clock, which
is the point of them.
"""

from __future__ import annotations

import builtins
import gc
import statistics
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.standalone import concurrency

UNROLL = 10
# A timed run takes well under a second: a hang fails with the stuck threads' stacks instead
# of waiting for the runner's bound on the whole worker process.
THREAD_RUN_TIMEOUT = 600.0

LoopFn = Callable[..., None]


def compile_loop(
    stmt: str, names: Sequence[str], *, label: str = "stmt", unroll: int = UNROLL
) -> LoopFn:
    """``f(n, *values)`` that runs ``stmt`` ``n * unroll`` times; ``names`` are its locals."""
    lines = stmt.strip("\n").splitlines()
    body: list[str] = []
    for _ in range(unroll):
        body.extend("        " + line for line in lines)
    params = "".join(", " + name for name in names)
    src = f"def _loop(_n{params}):\n    for _ in range(_n):\n" + "\n".join(body) + "\n"
    namespace: dict[str, Any] = {}
    exec(compile(src, f"<bench {label}>", "exec"), {"__builtins__": builtins}, namespace)
    return namespace["_loop"]


def time_loop(fn: LoopFn, args: Sequence[Any], n: int) -> int:
    """Wall-clock nanoseconds taken by ``fn(n, *args)``."""
    t0 = time.perf_counter_ns()
    fn(n, *args)
    return time.perf_counter_ns() - t0


def time_loop_cpu(fn: LoopFn, args: Sequence[Any], n: int) -> tuple[int, int]:
    """``(thread CPU ns, wall ns)`` taken by ``fn(n, *args)``."""
    w0 = time.perf_counter_ns()
    c0 = time.thread_time_ns()
    fn(n, *args)
    c1 = time.thread_time_ns()
    w1 = time.perf_counter_ns()
    return c1 - c0, w1 - w0


def calibrate(fn: LoopFn, args: Sequence[Any], target_ns: float) -> int:
    """Loop count that makes one call of ``fn`` take about ``target_ns``."""
    n = 8
    while True:
        elapsed = time_loop(fn, args, n)
        if elapsed >= target_ns / 8 or n >= 1 << 30:
            return max(1, int(n * target_ns / max(elapsed, 1)))
        n *= 4


@dataclass
class LoopCase:
    name: str
    fn: LoopFn
    args: tuple[Any, ...]
    n: int = 0
    samples: list[float] = field(default_factory=list)  # CPU ns per statement, loop included
    wall_samples: list[float] = field(default_factory=list)  # wall-clock ns per statement


def measure_interleaved(
    cases: Sequence[LoopCase],
    *,
    rounds: int,
    target_ns: float | None,
    fixed_n: int | None,
) -> None:
    """Warm up, size and time every case; fills ``case.n`` and ``case.samples``."""
    for case in cases:
        case.fn(2, *case.args)  # first-call effects (lazy set-up, caches)
        case.n = fixed_n if fixed_n is not None else calibrate(case.fn, case.args, target_ns or 1e7)
        case.fn(max(1, case.n // 10), *case.args)  # warm-up
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for _ in range(rounds):
            for case in cases:
                cpu, wall = time_loop_cpu(case.fn, case.args, case.n)
                case.samples.append(cpu / (case.n * UNROLL))
                case.wall_samples.append(wall / (case.n * UNROLL))
    finally:
        if was_enabled:
            gc.enable()


def summarize(samples: Sequence[float], loop_best: float, loop_median: float) -> dict[str, Any]:
    """Best and median, net of the loop overhead (kept raw as well)."""
    best = min(samples)
    median = statistics.median(samples)
    net_best = best - loop_best
    net_median = median - loop_median
    out: dict[str, Any] = {
        "best_ns": net_best,
        "median_ns": net_median,
        "raw_best_ns": best,
        "raw_median_ns": median,
        "rounds": len(samples),
    }
    if net_best <= 0 or net_median <= 0:  # cannot happen unless the machine is very noisy
        out["best_ns"], out["median_ns"] = best, median
        out["loop_overhead_not_subtracted"] = True
    return out


# --- threads --------------------------------------------------------------------------------


@dataclass
class ThreadRun:
    wall_ns: int  # first thread's start to last thread's end
    cpu_ns: list[int]  # CPU time of each thread's timed loop

    @property
    def parallelism(self) -> float:
        """CPU time / wall time: how many threads actually ran at once, on average."""
        return sum(self.cpu_ns) / self.wall_ns if self.wall_ns else 0.0


def run_in_threads(
    fn: LoopFn,
    make_args: Callable[[int], Sequence[Any]],
    n_threads: int,
    n: int,
) -> ThreadRun:
    """Run ``fn(n, *make_args(i))`` in ``n_threads`` threads started together.

    The threads come from ``snakepit_bridge.concurrency.run_concurrently`` (a Barrier start,
    worker exceptions re-raised, the stacks of stuck threads after THREAD_RUN_TIMEOUT). Each
    then does its set-up (``make_args``) and a short warm-up, and waits on a second barrier, so
    only the timed loops run together.
    """
    ready = threading.Barrier(n_threads)
    starts = [0] * n_threads
    ends = [0] * n_threads
    cpu = [0] * n_threads

    def work(i: int) -> None:
        try:
            args = tuple(make_args(i))
            fn(2, *args)
        except BaseException:
            ready.abort()  # the others stop waiting; this exception is the one re-raised
            raise
        try:
            ready.wait()
        except threading.BrokenBarrierError:
            return  # another thread's set-up failed
        starts[i] = time.perf_counter_ns()
        c0 = time.thread_time_ns()
        fn(n, *args)
        cpu[i] = time.thread_time_ns() - c0
        ends[i] = time.perf_counter_ns()

    concurrency.run_concurrently(work, n_threads, with_index=True, timeout=THREAD_RUN_TIMEOUT)
    return ThreadRun(max(ends) - min(starts), cpu)


def env_values(env: Mapping[str, Any], names: Sequence[str]) -> tuple[Any, ...]:
    return tuple(env[name] for name in names)
