"""The checker's report: the dict ``get_report()`` returns, its recommendations, the printout.

``shape_report`` turns the checker's bookkeeping into fresh plain data (the checker calls it
under its lock, so the snapshot is consistent); the keys are listed in docs/api.md.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, TextIO

from snakepit_bridge.checker.hooks import display_name

if TYPE_CHECKING:
    from snakepit_bridge.checker.lockset import (
        MethodStats,
        RaceRecord,
        ThreadSafetyChecker,
        ThreadStats,
    )

__all__ = ["advice", "print_thread_safety_report", "recommendations", "shape_report"]


def shape_report(
    *,
    enabled: bool,
    strict_mode: bool,
    runtime: float,
    warnings: list[str],
    methods: Mapping[str, MethodStats],
    threads: Mapping[str, ThreadStats],
    threads_seen: int,
    races: Iterable[RaceRecord],
    racy_writes: int,
    observed_writes: int,
    unsafe_libraries: list[str],
    classes: Mapping[type, str | None],
    dropped: Mapping[str, int],
) -> dict[str, Any]:
    """The report without its recommendations (see :func:`recommendations`)."""
    concurrent = {k: s.max_active for k, s in methods.items() if s.max_active > 1}
    method_calls = {
        k: {
            "calls": s.calls,
            "max_concurrency": s.max_active,
            "total_time": s.total_time,
        }
        for k, s in methods.items()
    }
    utilization = {
        name: {
            "calls": t.calls,
            "writes": t.writes,
            "total_time": t.total_time,
            "methods": sorted(t.methods),
            "avg_time_per_call": t.total_time / t.calls if t.calls else 0.0,
        }
        for name, t in threads.items()
    }
    unprotected = [
        {
            "class": r.class_name,
            "attribute": r.attribute,
            "threads": list(r.threads),
            "file": r.filename,
            "line": r.lineno,
            "count": r.count,
        }
        for r in races
    ]
    undeclared = {display_name(c): p for c, p in classes.items() if p is not None}
    return {
        "enabled": enabled,
        "strict_mode": strict_mode,
        "total_runtime": runtime,
        "warnings": list(warnings),
        "warnings_issued": len(warnings),
        "concurrent_accesses": concurrent,
        "total_methods_tracked": len(methods),
        "total_threads_seen": threads_seen,
        "thread_utilization": utilization,
        "unprotected_writes": unprotected,
        "racy_writes": racy_writes,
        "observed_writes": observed_writes,
        "method_calls": method_calls,
        "unsafe_libraries": list(unsafe_libraries),
        "undeclared_adapters": undeclared,
        "dropped": dict(dropped),
    }


# How each level of advice starts in ``recommendations`` (as upstream's report writes it).
ADVICE_ICONS = {"warning": "⚠️ ", "note": "ℹ️ ", "ok": "✅"}


def advice(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The recommendations as ``(level, text)``, level ``warning``, ``note`` or ``ok``: for
    printing without emoji (``snakepit-bridge hammer`` writes the level as a word)."""
    tips: list[tuple[str, str]] = []
    races = report["unprotected_writes"]
    if races:
        names = ", ".join(f"{r['class']}.{r['attribute']}" for r in races[:5])
        tips.append(
            (
                "warning",
                f"{len(races)} attribute(s) written by several threads without a lock ({names}): "
                "update them inside `with self.acquire_lock():`, or declare the guarding lock in "
                "__guarded_by__.",
            )
        )
    if report["unsafe_libraries"]:
        tips.append(
            (
                "warning",
                "Thread-unsafe libraries imported ("
                + ", ".join(report["unsafe_libraries"])
                + "): follow the safe pattern in each warning, or use the process worker profile.",
            )
        )
    if report["undeclared_adapters"]:
        tips.append(
            (
                "warning",
                "Adapter classes that do not declare `__thread_safe__ = True`: "
                + ", ".join(sorted(report["undeclared_adapters"]))
                + ".",
            )
        )
    if report["concurrent_accesses"]:
        peak = max(report["concurrent_accesses"].values())
        ran = (
            f"{len(report['concurrent_accesses'])} method(s) ran concurrently (up to {peak} "
            "calls at once)"
        )
        # The note must not contradict the findings: concurrency is only reassuring when no
        # write raced.
        if races:
            tip = f"{ran}: that concurrency is what makes the unlocked writes above races."
        else:
            tip = (
                f"{ran}. That is expected in a thread pool; no shared attribute was written "
                "without a lock while it happened."
            )
        tips.append(("note", tip))
    if report["total_threads_seen"] == 1:
        tips.append(
            (
                "note",
                "Only one thread was observed: run the adapter from several threads to exercise "
                "its thread safety.",
            )
        )
    if not report["warnings"] and not report["undeclared_adapters"]:
        tips.append(("ok", "No thread safety issues detected."))
    return tips


def recommendations(report: Mapping[str, Any]) -> list[str]:
    """Readable advice drawn from a report (the ``recommendations`` key): :func:`advice`, each
    text after its level's emoji."""
    return [f"{ADVICE_ICONS[level]} {text}" for level, text in advice(report)]


def print_thread_safety_report(
    checker: ThreadSafetyChecker | None = None, file: TextIO | None = None
) -> None:
    """Print a checker's report (the global checker's by default) to ``file`` (stdout)."""
    if checker is None:
        # Imported here: the global checker's module imports the checker class, which uses
        # this module.
        from snakepit_bridge.checker.global_checker import get_global_checker

        checker = get_global_checker()
    report = checker.get_report()
    out = sys.stdout if file is None else file
    rule = "=" * 70
    lines = [
        rule,
        "Thread Safety Analysis Report",
        rule,
        "",
        "Execution Summary:",
        f"  Total Runtime: {report['total_runtime']:.2f}s",
        f"  Threads Detected: {report['total_threads_seen']}",
        f"  Methods Tracked: {report['total_methods_tracked']}",
        f"  Warnings Issued: {report['warnings_issued']}",
    ]
    if report["concurrent_accesses"]:
        lines += ["", "Concurrent Accesses Detected:"]
        lines += [f"  - {m}: {n} calls at once" for m, n in report["concurrent_accesses"].items()]
    if report["warnings"]:
        lines += ["", "Warnings:"]
        lines += [f"  - {w}" for w in report["warnings"]]
    if report["recommendations"]:
        lines += ["", "Recommendations:"]
        lines += [f"  {r}" for r in report["recommendations"]]
    lines += ["", rule]
    print("\n".join(lines), file=out)
