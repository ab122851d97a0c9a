"""Exact counts under load: 16 threads make 100,000 ``compute_intensive`` requests on one showcase.

Every request uses different data, so no request is answered from the showcase's per-thread
cache and every one of them must be counted. The checks: every call returned, none raised, and
the adapter's tracker and the showcase's own locked counters moved by exactly the number of
requests, with nothing left active. The threads come from
``snakepit_bridge.concurrency.run_concurrently`` (a Barrier start; stuck threads fail the run
with their stacks); the wall time is from the first thread's start to the last one's end.
"""

from __future__ import annotations

import threading
import time
from typing import Any

CASE = "hammer_compute_intensive"
ITERATIONS = 5  # per request: keep each request short, the point is the counting
# Seconds before stuck threads fail the run with their stacks (a full run takes seconds).
HANG_TIMEOUT = 600.0


def _skip(reason: str) -> dict[str, Any]:
    return {"cases": {CASE: {"skipped": True, "reason": reason}}}


def _showcase_counts(adapter: Any) -> dict[str, int]:
    """The showcase's own request counters, read in one locked section."""
    with adapter.acquire_lock():
        return {
            "showcase_total_requests": adapter.total_requests,
            "showcase_compute_intensive_calls": adapter.tool_calls["compute_intensive"],
        }


def run(impl: str, s: dict[str, Any], selected: set[str] | None) -> dict[str, Any]:
    if selected is not None and CASE not in selected:
        return {"cases": {}}
    if impl != "native":
        return _skip("the showcase adapter is built on the native package; the baseline has none")
    # The native implementation is the package itself: import it the ordinary way.
    from snakepit_bridge.adapters.threaded_showcase import ThreadedShowcaseAdapter
    from snakepit_bridge.concurrency import run_concurrently

    adapter = ThreadedShowcaseAdapter()
    kwargs = {"iterations": ITERATIONS}
    n_threads = s["hammer_threads"]
    per_thread = s["hammer_total"] // n_threads
    total = per_thread * n_threads
    returned = [0] * n_threads
    names = [""] * n_threads
    spans = [(0.0, 0.0)] * n_threads
    errors: list[BaseException] = []  # one per failing thread, which stops at its first

    def work(i: int) -> None:
        names[i] = threading.current_thread().name
        call = adapter.compute_intensive
        started = time.perf_counter()
        try:
            for j in range(per_thread):
                call([float(i), float(j), 0.5, 1.5], **kwargs)
                returned[i] += 1
        except Exception as exc:  # noqa: BLE001 - counted in the checks, not a crash
            errors.append(exc)
        spans[i] = (started, time.perf_counter())

    before = adapter.get_stats()["tracker"]
    showcase_before = _showcase_counts(adapter)
    run_concurrently(work, n_threads, with_index=True, timeout=HANG_TIMEOUT)
    wall = max(end for _, end in spans) - min(start for start, _ in spans)
    after = adapter.get_stats()["tracker"]
    showcase_after = _showcase_counts(adapter)

    checks: dict[str, Any] = {
        "calls_returned": {"expected": total, "got": sum(returned)},
        "exceptions": {"expected": 0, "got": len(errors)},
        "tracker_total_requests": {
            "expected": total,
            "got": after["total_requests"] - before["total_requests"],
        },
        "tracker_active_requests": {"expected": 0, "got": after["active_requests"]},
        "tracker_total_active_requests": {"expected": 0, "got": after["total_active_requests"]},
        "tracker_errors": {"expected": 0, "got": after["errors"] - before["errors"]},
        "tracker_requests_by_thread": {
            "expected": [per_thread] * n_threads,
            "got": [after["requests_by_thread"].get(name) for name in names],
        },
    }
    for key, value in showcase_after.items():
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
    return {"cases": {CASE: result}}
