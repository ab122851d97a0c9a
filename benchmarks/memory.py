"""Memory: per adapter, per thread-local value, and flatness over many tracked calls.

Every figure is taken twice, in separate passes: with ``tracemalloc`` (exact, but it only sees
allocations made through Python's allocators) and as the change in resident set size (sees
everything, including plain ``malloc``; page-granular, so it is measured over many objects).
"""

from __future__ import annotations

import gc
import os
import sys
import tracemalloc
from collections.abc import Callable
from typing import Any

from benchmarks import cases as C
from benchmarks.timing import UNROLL, compile_loop

# Growth allowed over the steady part of the flatness run before it counts as "not flat":
# a few pages of RSS and 1 KiB of traced memory, whatever the number of calls (0.001 B per
# call over 750,000 calls).
FLAT_RSS_BYTES = 256 * 1024
FLAT_TRACED_BYTES = 1024


def rss_bytes() -> int | None:
    """Current resident set size (Linux), or None where it cannot be read."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def _collect() -> None:
    for _ in range(3):
        gc.collect()


def _make(factory: Callable[[], Any], count: int) -> list[Any]:
    holder: list[Any] = [None] * count
    for i in range(count):
        holder[i] = factory()
    return holder


def _fill(a: Any, keys: list[str], value: Any) -> None:
    for key in keys:
        a.set_thread_local(key, value)


def _rss_delta(action: Callable[[], Any]) -> tuple[int | None, Any]:
    """RSS change over ``action()``, whose result is kept alive (returned)."""
    _collect()
    before = rss_bytes()
    kept = action()
    _collect()
    after = rss_bytes()
    return (None if before is None or after is None else after - before), kept


def _traced_delta(action: Callable[[], Any]) -> int:
    """Bytes traced by tracemalloc over ``action()``, while its result is alive."""
    _collect()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        kept = action()
        _collect()
        now, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del kept
    _collect()
    return now - base


def flatness(bench_cls: type, calls: int, warmup: int) -> dict[str, Any]:
    """Memory growth over ``calls`` tracked calls on one adapter, after a warm-up.

    The calls run in four equal segments. Growth from the end of the first segment to the
    end of the last is the per-call growth ("steady"); whatever the first segment adds once
    (an allocator or collector buffer) is reported separately and not held against it.
    """
    loop = compile_loop("a.tracked(x)", ["a", "x"], label="flat")
    seg = max(1, calls // (4 * UNROLL))
    out: dict[str, Any] = {"calls": 4 * seg * UNROLL, "warmup_calls": warmup, "segments": 4}

    def run_segments(measure: Callable[[], int | None]) -> list[int | None]:
        a = bench_cls()
        loop(max(1, warmup // UNROLL), a, 1)
        _collect()
        points = [measure()]
        for _ in range(4):
            loop(seg, a, 1)
            _collect()
            points.append(measure())
        out["tracker_total_requests"] = a.get_stats()["tracker"]["total_requests"]
        return points

    rss = run_segments(rss_bytes)
    tracemalloc.start()
    try:
        traced = run_segments(lambda: tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()

    def growth(points: list[int | None], i: int, j: int) -> int | None:
        a, b = points[i], points[j]
        return None if a is None or b is None else b - a

    steady_calls = 3 * seg * UNROLL
    traced_steady = growth(traced, 1, 4)
    rss_steady = growth(rss, 1, 4)
    assert traced_steady is not None
    out.update(
        traced_growth_bytes=growth(traced, 0, 4),
        traced_first_segment_bytes=growth(traced, 0, 1),
        traced_steady_growth_bytes=traced_steady,
        traced_bytes_per_call=traced_steady / steady_calls,
        rss_growth_bytes=growth(rss, 0, 4),
        rss_steady_growth_bytes=rss_steady,
        flat=traced_steady <= FLAT_TRACED_BYTES
        and (rss_steady is None or rss_steady <= FLAT_RSS_BYTES),
        flat_rule=(
            f"over the last {steady_calls:,} calls: traced growth <= {FLAT_TRACED_BYTES} B "
            f"and RSS growth <= {FLAT_RSS_BYTES // 1024} KiB"
        ),
    )
    return out


def run(impl: str, s: dict[str, Any], selected: set[str] | None) -> dict[str, Any]:
    base, decorator, quiet, info = C.load_impl(impl)
    bench_cls = C.make_bench_class(base, decorator, quiet)
    marker = object()
    n_obj, n_val = s["mem_objects"], s["mem_values"]
    keys = [sys.intern(f"key{i}") for i in range(n_val)]  # interned: only the storage is counted

    def used() -> Any:
        a = bench_cls()
        a.tracked(1)
        a.set_thread_local("k", marker)
        return a

    def one_adapter_with_values() -> Any:
        a = bench_cls()
        a.set_thread_local("first", marker)  # the per-thread map exists before measuring
        return a

    def want(name: str) -> bool:
        return selected is None or name in selected

    results: dict[str, Any] = {}
    # Phase 1: RSS. Everything made here stays alive until the phase ends, so no measurement
    # reuses memory freed by an earlier one; tracemalloc is off (its bookkeeping is in RSS too).
    alive: list[Any] = []
    if want("adapter"):
        rss, kept = _rss_delta(lambda: _make(bench_cls, n_obj))
        alive.append(kept)
        results["adapter"] = {
            "objects": n_obj,
            "rss_bytes_per_object": None if rss is None else rss / n_obj,
        }
    if want("adapter_used"):
        rss, kept = _rss_delta(lambda: _make(used, n_obj))
        alive.append(kept)
        results["adapter_used"] = {
            "objects": n_obj,
            "rss_bytes_per_object": None if rss is None else rss / n_obj,
        }
    if want("tl_value"):
        holder = one_adapter_with_values()
        rss, _ = _rss_delta(lambda: _fill(holder, keys, marker))
        alive.append(holder)
        results["tl_value"] = {
            "values": n_val,
            "rss_bytes_per_value": None if rss is None else rss / n_val,
        }
    del alive
    _collect()

    # Phase 2: tracemalloc.
    if want("adapter"):
        traced = _traced_delta(lambda: _make(bench_cls, n_obj))
        results["adapter"]["traced_bytes_per_object"] = traced / n_obj
        results["adapter"]["what"] = "a fresh adapter (BenchAdapter(): one int attribute)"
    if want("adapter_used"):
        traced = _traced_delta(lambda: _make(used, n_obj))
        results["adapter_used"]["traced_bytes_per_object"] = traced / n_obj
        results["adapter_used"]["what"] = (
            "an adapter after one tracked call and one thread-local value"
        )
    if want("tl_value"):
        holder = one_adapter_with_values()
        traced = _traced_delta(lambda: _fill(holder, keys, marker))
        assert holder.get_thread_local(keys[-1]) is marker
        del holder
        results["tl_value"]["traced_bytes_per_value"] = traced / n_val
        results["tl_value"]["what"] = (
            "one more thread-local value on an adapter (key and value shared)"
        )

    if want("flat_tracked_calls"):
        if impl == "native":
            calls, warmup = s["flat_calls"], s["flat_warmup"]
        else:  # the baseline is ~50x slower; its flatness is a reference only
            calls, warmup = max(UNROLL, s["flat_calls"] // 10), max(UNROLL, s["flat_warmup"] // 10)
        results["flat_tracked_calls"] = flatness(bench_cls, calls, warmup)
        results["flat_tracked_calls"]["what"] = (
            "memory growth over many tracked calls on one adapter"
        )
    return {"info": info, "cases": results}
