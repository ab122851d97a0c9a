"""The showcase hammer: 16 threads, 100,000 ``compute_intensive`` requests, exact counts.

Every request uses different data, so no request is answered from the showcase's per-thread
cache and every one of them must be counted. The checks: every call returned, none raised,
and the adapter's tracker (and the showcase's own counters, where it has them) moved by
exactly the number of requests, with nothing left active.
"""

from __future__ import annotations

import inspect
import threading
import time
from typing import Any

SHOWCASE = "snakepit_bridge.adapters.threaded_showcase"
ITERATIONS = 5  # per request: keep each request short, the point is the counting


def _skip(reason: str) -> dict[str, Any]:
    return {"cases": {"hammer_compute_intensive": {"skipped": True, "reason": reason}}}


def _showcase_counts(adapter: Any) -> dict[str, int]:
    """The showcase's own request counters, where it has them (read under its lock)."""
    out: dict[str, int] = {}
    with adapter.acquire_lock():
        total = getattr(adapter, "total_requests", None)
        if not isinstance(total, int):  # upstream's layout: a global_stats dict
            stats = getattr(adapter, "global_stats", None)
            total = stats.get("total_requests") if isinstance(stats, dict) else None
        if isinstance(total, int):
            out["showcase_total_requests"] = total
        calls = getattr(adapter, "tool_calls", None)
        if isinstance(calls, dict) and isinstance(calls.get("compute_intensive"), int):
            out["showcase_compute_intensive_calls"] = calls["compute_intensive"]
    return out


def run(impl: str, s: dict[str, Any], selected: set[str] | None) -> dict[str, Any]:
    if selected is not None and "hammer_compute_intensive" not in selected:
        return {"cases": {}}
    if impl != "native":
        return _skip(
            "the showcase adapter is built on the native package; there is no baseline showcase"
        )
    try:
        import importlib

        module = importlib.import_module(SHOWCASE)
    except ModuleNotFoundError as exc:
        if exc.name and SHOWCASE.startswith(exc.name):
            return _skip(f"{SHOWCASE} does not exist yet (being written); hammer skipped")
        raise
    adapter = module.ThreadedShowcaseAdapter()
    method = adapter.compute_intensive
    params = inspect.signature(method).parameters
    kwargs = {"iterations": ITERATIONS} if "iterations" in params else {}

    n_threads = s["hammer_threads"]
    total = s["hammer_total"]
    per_thread = total // n_threads
    total = per_thread * n_threads
    returned = [0] * n_threads
    errors: list[BaseException] = []
    barrier = threading.Barrier(n_threads + 1)

    def work(i: int) -> None:
        call = adapter.compute_intensive
        try:
            barrier.wait()
            for j in range(per_thread):
                call([float(i), float(j), 0.5, 1.5], **kwargs)
                returned[i] += 1
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    before = adapter.get_stats()["tracker"]
    showcase_before = _showcase_counts(adapter)
    threads = [
        threading.Thread(target=work, args=(i,), name=f"hammer-{i}") for i in range(n_threads)
    ]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    after = adapter.get_stats()["tracker"]
    showcase_after = _showcase_counts(adapter)

    checks: dict[str, Any] = {
        "calls_returned": {"expected": total, "got": sum(returned)},
        "exceptions": {"expected": 0, "got": len(errors)},
        "tracker_total_requests": {
            "expected": total,
            "got": after["total_requests"] - before["total_requests"],
        },
    }
    for key in ("active_requests", "total_active_requests"):
        if key in after:
            checks["tracker_" + key] = {"expected": 0, "got": after[key]}
    if "errors" in after:
        checks["tracker_errors"] = {"expected": 0, "got": after["errors"] - before.get("errors", 0)}
    by_thread = after.get("requests_by_thread")
    if isinstance(by_thread, dict):
        got = [by_thread.get(f"hammer-{i}") for i in range(n_threads)]
        checks["tracker_requests_by_thread"] = {"expected": [per_thread] * n_threads, "got": got}
    for key, value in showcase_after.items():
        if key in showcase_before:
            checks[key] = {"expected": total, "got": value - showcase_before[key]}
    for check in checks.values():
        check["ok"] = check["expected"] == check["got"]
    result: dict[str, Any] = {
        "threads": n_threads,
        "requests": total,
        "kwargs": kwargs,
        "wall_s": wall,
        "requests_per_s": total / wall,
        "us_per_request_per_thread": wall * n_threads / total * 1e6,
        "checks": checks,
        "exact": all(c["ok"] for c in checks.values()),
    }
    if errors:
        result["first_error"] = f"{type(errors[0]).__name__}: {errors[0]}"
    return {"cases": {"hammer_compute_intensive": result}}
