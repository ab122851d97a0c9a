"""The human-readable hammer report: its verdict and advice agree with its findings.

Mostly in process, on results built here, so each combination is checked exactly; one run of the
real command shows the pieces together.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from snakepit_bridge import hammer
from snakepit_bridge.checker.report import advice, recommendations
from snakepit_bridge.cli import render_report, verdict

RUN_TIMEOUT = 120  # seconds

# The phrase that contradicted a race finding: it must never follow one.
REASSURANCE = "no shared attribute was written without a lock"


def checker_report(
    *,
    races: int = 0,
    undeclared: int = 0,
    concurrent: bool = True,
    threads: int = 4,
) -> dict[str, Any]:
    """A ``get_report()``-shaped dict with the given findings."""
    writes = [
        {"class": "Racy", "attribute": f"a{i}", "threads": ["t1", "t2"], "file": "x.py",
         "line": i, "count": 1}
        for i in range(races)
    ]  # fmt: skip
    return {
        "enabled": True,
        "strict_mode": False,
        "total_runtime": 0.1,
        "warnings": [f"THREAD SAFETY: unprotected write to Racy.a{i}" for i in range(races)],
        "warnings_issued": races,
        "concurrent_accesses": {"Racy.increment": 3} if concurrent else {},
        "total_methods_tracked": 1,
        "total_threads_seen": threads,
        "thread_utilization": {},
        "unprotected_writes": writes,
        "racy_writes": races,
        "observed_writes": 10,
        "method_calls": {},
        "unsafe_libraries": [],
        "undeclared_adapters": {
            f"Quiet{i}": f"Adapter Quiet{i} does not declare thread safety"
            for i in range(undeclared)
        },
        "dropped": {},
    }


def make_result(
    *,
    failed: int = 0,
    thread_safety: dict[str, Any] | None = None,
    strict: bool = False,
    interrupted: bool = False,
    adapter_stats: Any = None,
    environment: dict[str, Any] | None = None,
) -> hammer.HammerResult:
    groups = (
        [hammer.ErrorGroup("t", "ValueError", "x.py:1", "bad", "Traceback ...\n", failed)]
        if failed
        else []
    )
    latency = hammer.LatencyHistogram()
    for ns in (1000, 2000, 3000):
        latency.record(ns)
    return hammer.HammerResult(
        adapter="m:A",
        mix=[hammer.ToolCall("t", {})],
        threads=2,
        target_requests=10,
        target_duration=None,
        seed=1,
        elapsed=0.5,
        latency=latency,
        per_tool={},
        requests_per_thread=[5, 5],
        error_groups=groups,
        interrupted=interrupted,
        unfinished_workers=0,
        adapter_stats=adapter_stats,
        thread_safety=thread_safety,
        strict=strict,
        environment=environment
        or {
            "package_version": "0",
            "python": "3.13.5",
            "implementation": "CPython",
            "executable": "python",
            "free_threaded_build": True,
            "gil_enabled": False,
            "cpu_count": 2,
        },
    )


# --------------------------------------------------------------------------------------------
# Advice
# --------------------------------------------------------------------------------------------


def test_the_concurrency_note_never_reassures_after_a_race() -> None:
    racy = dict(advice(checker_report(races=1)))
    assert racy["note"] == (
        "1 method(s) ran concurrently (up to 3 calls at once): that concurrency is what makes "
        "the unlocked writes above races."
    )
    assert not any(REASSURANCE in text for _, text in advice(checker_report(races=1)))
    assert "ok" not in racy

    clean = dict(advice(checker_report()))
    assert REASSURANCE in clean["note"]
    assert clean["ok"] == "No thread safety issues detected."


def test_recommendations_are_the_advice_after_its_emoji() -> None:
    report = checker_report(races=2, undeclared=1)
    assert recommendations(report) == [
        {"warning": "⚠️  ", "note": "ℹ️  ", "ok": "✅ "}[level] + text
        for level, text in advice(report)
    ]


# --------------------------------------------------------------------------------------------
# The verdict
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (make_result(), "OK"),
        (make_result(thread_safety=checker_report()), "OK"),
        (
            make_result(thread_safety=checker_report(races=1)),
            "WARNING: 1 checker warning(s) (exit status 0; --strict fails on them)",
        ),
        (
            make_result(thread_safety=checker_report(undeclared=2)),
            "WARNING: 2 adapter class(es) not declared thread-safe (exit status 0)",
        ),
        (
            make_result(thread_safety=checker_report(undeclared=1), strict=True),
            "WARNING: 1 adapter class(es) not declared thread-safe (exit status 0)",
        ),
        (
            make_result(thread_safety=checker_report(races=2), strict=True),
            "FAILED: 2 checker warning(s) with --strict",
        ),
        (make_result(failed=3), "FAILED: 3 request(s) raised"),
        (
            make_result(failed=3, thread_safety=checker_report(races=1)),
            "FAILED: 3 request(s) raised; 1 checker warning(s)",
        ),
        (make_result(interrupted=True), "INTERRUPTED"),
        (
            make_result(interrupted=True, thread_safety=checker_report(races=1)),
            "INTERRUPTED: 1 checker warning(s)",
        ),
    ],
    ids=[
        "nothing", "clean-checker", "race", "undeclared", "undeclared-strict", "race-strict",
        "errors", "errors-and-race", "interrupted", "interrupted-race",
    ],
)  # fmt: skip
def test_the_verdict_names_every_finding_and_matches_the_exit_status(
    result: hammer.HammerResult, expected: str
) -> None:
    assert verdict(result) == expected
    heads = {0: ("OK", "WARNING"), 1: ("FAILED",), 130: ("INTERRUPTED",)}[result.exit_code]
    assert verdict(result).startswith(heads)


def test_the_report_lists_findings_then_advice_then_the_verdict() -> None:
    text = render_report(make_result(thread_safety=checker_report(races=1, undeclared=1)))
    section = text[text.index("thread-safety checker:") :]
    assert section.splitlines() == [
        "thread-safety checker: 1 warning(s), 1 adapter class(es) not declared thread-safe",
        "  - THREAD SAFETY: unprotected write to Racy.a0",
        "  - Adapter Quiet0 does not declare thread safety",
        "  warning: 1 attribute(s) written by several threads without a lock (Racy.a0): update "
        "them inside `with self.acquire_lock():`, or declare the guarding lock in __guarded_by__.",
        "  warning: Adapter classes that do not declare `__thread_safe__ = True`: Quiet0.",
        "  note: 1 method(s) ran concurrently (up to 3 calls at once): that concurrency is what "
        "makes the unlocked writes above races.",
        "",
        "result: WARNING: 1 checker warning(s); 1 adapter class(es) not declared thread-safe "
        "(exit status 0; --strict fails on them)",
    ]


# --------------------------------------------------------------------------------------------
# The real command
# --------------------------------------------------------------------------------------------

RACY = textwrap.dedent("""
    from snakepit_bridge.base_adapter_threaded import ThreadSafeAdapter, thread_safe_method, tool


    class Racy(ThreadSafeAdapter):
        __thread_safe__ = True

        def __init__(self):
            super().__init__()
            self.counter = 0

        @thread_safe_method
        @tool
        def increment(self) -> int:
            self.counter += 1
            return self.counter
""")


def test_a_race_without_strict_is_a_warning_verdict_in_the_real_report(tmp_path: Path) -> None:
    (tmp_path / "report_racy.py").write_text(RACY)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [
            sys.executable, "-m", "snakepit_bridge", "hammer", "report_racy:Racy",
            "--requests", "400", "--threads", "4", "--thread-safety-check", "--quiet",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=RUN_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "unprotected write to Racy.counter" in proc.stdout
    assert REASSURANCE not in proc.stdout
    assert proc.stdout.splitlines()[-1] == (
        "result: WARNING: 1 checker warning(s) (exit status 0; --strict fails on them)"
    )


# --------------------------------------------------------------------------------------------
# The adapter's get_stats(), readable
# --------------------------------------------------------------------------------------------

STATS = {
    "adapter_class": "ShowAdapter",
    "thread_safe": True,
    "tracker": {
        "total_requests": 21,
        "requests_by_thread": {
            "worker-10": 1,
            "(other threads)": 3,
            "worker-2": 15,
            "worker-1": 2,
        },
        "total_duration": 0.24539055170908,
        "mean_duration": 8.60466142698981e-05,
        "max_duration": 12.3456,
        "slowest": 1234.5678,
    },
    "empty": {},
    "label": "",
    "model": None,
    "shape": [3, 4.56789],
    "runs": [{"a": 1, "b": 0.0}],
}


def test_stats_are_readable_sorted_naturally_and_rounded() -> None:
    from snakepit_bridge.cli import render_stats

    assert render_stats(STATS, "  ") == [
        "  adapter_class: ShowAdapter",
        "  thread_safe:   true",
        "  tracker:",
        "    total_requests: 21",
        "    requests_by_thread:",
        "      worker-1:         2",
        "      worker-2:        15",
        "      worker-10:        1",
        "      (other threads):  3",
        "    total_duration: 0.245",
        "    mean_duration:  0.000086",
        "    max_duration:   12.3",
        "    slowest:        1235",
        "  empty:         {}",
        '  label:         ""',
        "  model:         null",
        "  shape:         [3, 4.57]",
        "  runs:",
        "    - a: 1",
        "      b: 0",
    ]


def test_the_text_report_rounds_while_json_keeps_every_digit() -> None:
    result = make_result(adapter_stats=STATS)
    text = render_report(result)
    stats_section = text[text.index("adapter get_stats()") :]
    assert "    total_duration: 0.245\n" in stats_section
    assert stats_section.index("worker-2:") < stats_section.index("worker-10:")
    assert result.to_dict()["adapter_stats"]["tracker"]["total_duration"] == 0.24539055170908


# --------------------------------------------------------------------------------------------
# The GIL on a free-threaded build
# --------------------------------------------------------------------------------------------

FREE_THREADED_WITH_GIL = {
    "package_version": "0",
    "python": "3.13.5",
    "implementation": "CPython",
    "executable": "python",
    "free_threaded_build": True,
    "gil_enabled": True,
    "cpu_count": 2,
}


def test_a_free_threaded_build_running_with_the_gil_is_warned_about(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYTHON_GIL", "1")
    lines = render_report(make_result(environment=FREE_THREADED_WITH_GIL)).splitlines()
    assert lines[4] == (
        "warning     the GIL is enabled on this free-threaded build (PYTHON_GIL=1): the threads "
        "took turns, so this run measures nothing about free threading"
    )
    monkeypatch.delenv("PYTHON_GIL")
    assert "(an imported extension module does not declare free-threading support)" in (
        render_report(make_result(environment=FREE_THREADED_WITH_GIL))
    )
    gil_build = {**FREE_THREADED_WITH_GIL, "free_threaded_build": False}
    no_gil = {**FREE_THREADED_WITH_GIL, "gil_enabled": False}
    for environment in (gil_build, no_gil):
        assert "warning     " not in render_report(make_result(environment=environment))


def test_python_gil_1_is_warned_about_in_the_real_report() -> None:
    import sysconfig

    env = {**os.environ, "PYTHON_GIL": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "snakepit_bridge", "hammer", "--tool", "ping", "--requests", "50",
         "--threads", "2", "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=RUN_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    warned = "warning     the GIL is enabled on this free-threaded build (PYTHON_GIL=1)"
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        assert warned in proc.stdout
    else:  # a GIL build ignores PYTHON_GIL and has nothing to warn about
        assert "warning     " not in proc.stdout
