"""ThreadedShowcaseAdapter: every tool, exact counts under a hammer, the three patterns."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest

from _threads import run_threads
from snakepit_bridge.adapters import threaded_showcase as showcase
from snakepit_bridge.adapters.threaded_showcase import (
    HISTORY_LIMIT,
    NumpyUnavailableError,
    ThreadedShowcaseAdapter,
)
from snakepit_bridge.base_adapter import AsyncToolError
from snakepit_bridge.thread_safety_checker import ThreadSafetyChecker, check_common_pitfalls

needs_numpy = pytest.mark.skipif(not showcase.NUMPY_AVAILABLE, reason="NumPy is not installed")

THREADS = 16
PER_THREAD = 5
VECTOR = [float(i % 7) / 7.0 for i in range(showcase.INPUT_SIZE)]


def test_lists_the_phase_2_tools() -> None:
    names = [t.name for t in ThreadedShowcaseAdapter().get_tools()]
    assert names == [
        "async_batch_process",
        "batch_process",
        "clear_caches",
        "compute_intensive",
        "get_adapter_stats",
        "get_history",
        "matrix_multiply",
        "ping",
        "stream_batch",
        "stress_test",
    ]
    assert vars(ThreadedShowcaseAdapter)["__thread_safe__"] is True
    assert check_common_pitfalls(ThreadedShowcaseAdapter(), imported_modules=()) == []


@needs_numpy
def test_every_tool_under_a_16_thread_hammer_gives_exact_counts() -> None:
    checker = ThreadSafetyChecker(strict_mode=True)  # and no unprotected write anywhere
    adapter = ThreadedShowcaseAdapter()
    calls: list[tuple[str, Callable[[int, int], dict[str, Any]]]] = [
        ("compute_intensive", lambda t, i: adapter.compute_intensive([t, i, 1.5], iterations=3)),
        ("matrix_multiply", lambda t, i: adapter.matrix_multiply(VECTOR)),
        ("batch_process", lambda t, i: adapter.batch_process([t, i], delay_ms=0)),
        ("stress_test", lambda t, i: adapter.stress_test(duration_ms=0, complexity=16)),
        ("ping", lambda t, i: adapter.ping(f"{t}-{i}")),
        ("get_history", lambda t, i: adapter.get_history(limit=3)),
        ("get_adapter_stats", lambda t, i: adapter.get_adapter_stats()),
        ("clear_caches", lambda t, i: adapter.clear_caches()),
        ("execute_tool", lambda t, i: adapter.execute_tool("ping", {"message": "x"})),
        (
            "async_batch_process",
            lambda t, i: asyncio.run(adapter.async_batch_process([t, i], delay_ms=0)),
        ),
        ("stream_batch", lambda t, i: {"items": list(adapter.stream_batch([t, i, "x"]))}),
        (
            "aexecute_tool",
            lambda t, i: asyncio.run(adapter.aexecute_tool("ping", {"message": "x"})),
        ),
    ]

    def worker(thread_index: int) -> tuple[str, dict[str, int]]:
        done = dict.fromkeys((name for name, _ in calls), 0)  # the unlocked oracle
        for i in range(PER_THREAD):
            for name, call in calls:
                assert isinstance(call(thread_index, i), dict)
                done[name] += 1
        return threading.current_thread().name, done

    results = run_threads(worker, THREADS)
    thread_names = {name for name, _ in results}
    assert len(thread_names) == THREADS
    per_thread = [done for _, done in results]
    oracle = {name: sum(d[name] for d in per_thread) for name, _ in calls}
    stats = adapter.get_adapter_stats()
    work = stats["global_stats"]
    assert work["tool_calls"] == {name: oracle[name] for name in showcase.WORK_TOOLS}
    assert work["total_requests"] == sum(oracle[name] for name in showcase.WORK_TOOLS)
    assert sum(work["thread_usage"].values()) == work["total_requests"]
    assert set(work["thread_usage"]) == thread_names
    batches = oracle["batch_process"] + oracle["async_batch_process"] + oracle["stream_batch"]
    assert stats["history_entries"] == batches
    assert 1 <= work["max_concurrent"] <= THREADS
    tracker = stats["tracker"]
    # Every decorated call counts once (the ping nested in execute_tool and aexecute_tool is not
    # counted twice), plus the get_adapter_stats call in flight right now.
    assert tracker["total_requests"] == sum(oracle.values()) + 1
    assert tracker["active_requests"] == 1 and tracker["errors"] == 0
    assert checker.get_report()["warnings"] == []


@needs_numpy
def test_compute_intensive_cache_is_keyed_by_everything_and_flags_hits() -> None:
    adapter = ThreadedShowcaseAdapter()
    first = adapter.compute_intensive([1, 2, 3], iterations=5)
    again = adapter.compute_intensive([1, 2, 3], iterations=5)
    other = adapter.compute_intensive([1, 2, 3], iterations=6)
    assert (first["cached"], again["cached"], other["cached"]) == (False, True, False)
    assert again["result"] == first["result"] != other["result"]
    np = showcase.np
    expected = np.asarray([1.0, 2.0, 3.0])
    for _ in range(5):
        expected = np.sin(expected) * np.cos(expected) + 0.1 * expected
    assert first["result"] == pytest.approx(float(expected.mean()))
    first["result"] = "mutated by the caller"
    assert adapter.compute_intensive([1, 2, 3], iterations=5)["result"] == again["result"]
    assert adapter.get_adapter_stats()["global_stats"]["cache_hits"] == 2


@needs_numpy
def test_cache_is_per_thread_and_bounded() -> None:
    adapter = ThreadedShowcaseAdapter()
    adapter.compute_intensive([1.0], iterations=1)
    other = run_threads(lambda _i: adapter.compute_intensive([1.0], iterations=1)["cached"], 1)
    assert other == [False]  # another thread has its own cache
    for n in range(showcase.CACHE_LIMIT + 10):
        adapter.compute_intensive([float(n)], iterations=0)
    assert len(adapter.get_thread_local("compute_cache")) == showcase.CACHE_LIMIT
    cleared = adapter.clear_caches()
    assert cleared["status"] == "success" and cleared["cleared"] == showcase.CACHE_LIMIT
    assert adapter.compute_intensive([1.0], iterations=1)["cached"] is False


@needs_numpy
def test_compute_intensive_validates_its_input() -> None:
    adapter = ThreadedShowcaseAdapter()
    with pytest.raises(ValueError, match="must not be empty"):
        adapter.compute_intensive([])
    with pytest.raises(TypeError, match="only numbers"):
        adapter.compute_intensive([1, "x"])
    with pytest.raises(ValueError, match="iterations"):
        adapter.compute_intensive([1], iterations=-1)
    with pytest.raises(TypeError, match="iterations must be an int"):
        adapter.compute_intensive([1], iterations=True)


@needs_numpy
def test_matrix_multiply_uses_the_shared_read_only_weights() -> None:
    adapter = ThreadedShowcaseAdapter(seed=7)
    np = showcase.np
    w = adapter.model_weights
    expected = (
        np.maximum(np.maximum(np.asarray(VECTOR) @ w["layer1"], 0) @ w["layer2"], 0) @ w["layer3"]
    )
    result = adapter.matrix_multiply(VECTOR)
    assert result["output"] == pytest.approx(expected.tolist())
    assert (result["input_size"], result["output_size"]) == (100, 10)
    assert ThreadedShowcaseAdapter(seed=7).matrix_multiply(VECTOR)["output"] == result["output"]
    with pytest.raises(ValueError, match="read-only"):
        w["layer1"][0, 0] = 1.0
    with pytest.raises(ValueError, match="100 elements"):
        adapter.matrix_multiply([1.0, 2.0])


def test_batch_process_and_bounded_history() -> None:
    adapter = ThreadedShowcaseAdapter()
    result = adapter.batch_process(["a", 1], delay_ms=0)
    assert result["items_processed"] == 2
    assert [r["item_id"] for r in result["results"]] == [0, 1]
    assert result["results"][0]["output"] != result["results"][1]["output"]
    assert adapter.get_thread_local("current_batch_id") is None  # cleaned up after the batch
    with pytest.raises(ValueError, match="delay_ms"):
        adapter.batch_process([1], delay_ms=-1)
    for _ in range(HISTORY_LIMIT + 5):
        adapter.batch_process([], delay_ms=0)
    stats = adapter.get_adapter_stats()
    assert stats["history_entries"] == HISTORY_LIMIT
    assert stats["global_stats"]["tool_calls"]["batch_process"] == HISTORY_LIMIT + 6


def test_async_batch_process_runs_its_tasks_on_one_loop_without_mixing_them() -> None:
    adapter = ThreadedShowcaseAdapter()
    expected = adapter.batch_process(["a", 1], delay_ms=0)["results"]
    with pytest.raises(AsyncToolError, match="acall_tool"):
        adapter.call_tool("async_batch_process", items=["a"])

    async def many() -> list[dict[str, Any]]:
        # Twenty requests interleave on this thread's loop: each keeps its own batch.
        return list(
            await asyncio.gather(
                *(adapter.acall_tool("async_batch_process", items=["a", 1], delay_ms=1)
                  for _ in range(20))
            )
        )  # fmt: skip

    replies = asyncio.run(many())
    assert len({reply["batch_id"] for reply in replies}) == 20
    for reply in replies:
        assert reply["items_processed"] == 2
        assert [(r["input"], r["output"]) for r in reply["results"]] == [
            (r["input"], r["output"]) for r in expected
        ]
        assert reply["thread"] == threading.current_thread().name
    with pytest.raises(ValueError, match="async_batch_process: delay_ms"):
        asyncio.run(adapter.async_batch_process([1], delay_ms=-1))
    with pytest.raises(TypeError, match="items must be a list"):
        asyncio.run(adapter.async_batch_process("ab"))  # type: ignore[arg-type]
    stats = adapter.get_adapter_stats()
    assert stats["global_stats"]["tool_calls"]["async_batch_process"] == 20
    assert stats["history_entries"] == 21
    tracker = stats["tracker"]
    assert tracker["errors"] == 2 and tracker["active_requests"] == 1  # this very call


def test_stream_batch_streams_each_result_and_counts_a_whole_stream_once() -> None:
    adapter = ThreadedShowcaseAdapter()
    items = list(adapter.call_tool("stream_batch", items=["a", 1, None]))
    assert [item["item_id"] for item in items] == [0, 1, 2]
    assert len({item["batch_id"] for item in items}) == 1
    expected = adapter.batch_process(["a", 1, None], delay_ms=0)["results"]
    assert [item["output"] for item in items] == [r["output"] for r in expected]
    stream = adapter.stream_batch(["x", "y"])
    assert next(stream)["input"] == "x"
    stream.close()  # closed early: its request ends, and it is not a whole batch
    with pytest.raises(ValueError, match="stream_batch: delay_ms"):
        next(adapter.stream_batch([1], delay_ms=-1))  # checked when the stream starts
    stats = adapter.get_adapter_stats()
    assert stats["global_stats"]["tool_calls"]["stream_batch"] == 1
    tracker = stats["tracker"]
    assert (tracker["total_requests"], tracker["errors"], tracker["active_requests"]) == (5, 1, 1)


@needs_numpy
def test_the_default_hammer_mix_runs_every_tool_without_an_error() -> None:
    from snakepit_bridge.hammer import build_mix, run_hammer

    adapter = ThreadedShowcaseAdapter()
    checker = ThreadSafetyChecker(strict_mode=True)
    result = run_hammer(lambda: adapter, lambda a: build_mix(a, seed=5), threads=16, requests=800)
    assert result.failed == 0 and result.completed == 800, result.error_groups
    assert set(result.per_tool) == {t.name for t in adapter.get_tools()}  # each drawn at seed 5
    mix = {call.tool: call for call in result.mix}
    assert mix["async_batch_process"].is_async and mix["stream_batch"].streaming
    work = adapter.get_adapter_stats()["global_stats"]["tool_calls"]
    assert work == {name: result.per_tool[name].requests for name in showcase.WORK_TOOLS}
    assert checker.get_report()["warnings"] == []


def test_get_history_validates_limit_and_returns_copies() -> None:
    adapter = ThreadedShowcaseAdapter()
    for n in range(5):
        adapter.batch_process([n], delay_ms=0)
    history = adapter.get_history(limit=3)
    assert (history["returned"], history["total_entries"]) == (3, 5)
    assert [e["batch_id"] for e in history["entries"]] == ["batch_3", "batch_4", "batch_5"]
    history["entries"][0]["batch_id"] = "changed"
    assert adapter.get_history(limit=3)["entries"][0]["batch_id"] == "batch_3"
    for bad in (0, -1, HISTORY_LIMIT + 1):
        with pytest.raises(ValueError, match="limit"):
            adapter.get_history(limit=bad)
    with pytest.raises(TypeError):
        adapter.get_history(limit=2.5)  # type: ignore[arg-type]


@needs_numpy
def test_stress_test_with_zero_duration_never_divides_by_zero() -> None:
    result = ThreadedShowcaseAdapter().stress_test(duration_ms=0, complexity=1)
    assert result["iterations"] >= 1
    assert result["ops_per_second"] is None or result["ops_per_second"] > 0
    with pytest.raises(ValueError, match="complexity"):
        ThreadedShowcaseAdapter().stress_test(complexity=0)


def test_stats_are_snapshots_not_live_state() -> None:
    adapter = ThreadedShowcaseAdapter()
    adapter.batch_process([1], delay_ms=0)
    stats = adapter.get_adapter_stats()
    stats["global_stats"]["thread_usage"]["MainThread"] = 999
    stats["global_stats"]["tool_calls"].clear()
    stats["tracker"]["total_requests"] = -1
    fresh = adapter.get_adapter_stats()
    assert fresh["global_stats"]["thread_usage"]["MainThread"] == 1
    assert fresh["global_stats"]["tool_calls"]["batch_process"] == 1
    assert fresh["tracker"]["total_requests"] == 3
    assert fresh["model"] == {
        "name": "ThreadedShowcaseModel",
        "version": "2.0",
        "complexity": 5,
        "thread_safe": True,
    }
    assert fresh["numpy_available"] is showcase.NUMPY_AVAILABLE


def test_ping_and_execute_tool() -> None:
    adapter = ThreadedShowcaseAdapter()
    assert adapter.ping()["message"] == "pong"
    reply = adapter.execute_tool("ping", {"message": "hi"})
    assert reply["message"] == "hi" and reply["thread"] == threading.current_thread().name
    assert adapter.get_stats()["tracker"]["total_requests"] == 2  # nested call counted once
    with pytest.raises(AttributeError, match="available tools"):
        adapter.execute_tool("_record", {})


def test_aexecute_tool_is_one_request() -> None:
    adapter = ThreadedShowcaseAdapter()
    reply = asyncio.run(adapter.aexecute_tool("ping", {"message": "hi"}))
    assert reply["message"] == "hi"
    reply = asyncio.run(adapter.aexecute_tool("async_batch_process", {"items": [1]}))
    assert reply["items_processed"] == 1
    assert adapter.get_stats()["tracker"]["total_requests"] == 2  # nested calls counted once


def test_tools_that_need_numpy_say_so_when_it_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(showcase, "np", None)
    adapter = ThreadedShowcaseAdapter()
    assert adapter.model_weights is None
    for call in (
        lambda: adapter.compute_intensive([1.0]),
        lambda: adapter.matrix_multiply(VECTOR),
        lambda: adapter.stress_test(duration_ms=0),
    ):
        with pytest.raises(NumpyUnavailableError, match="needs NumPy"):
            call()
    assert adapter.ping()["message"] == "pong"  # the rest keeps working
    assert adapter.batch_process([1], delay_ms=0)["items_processed"] == 1


def test_package_and_showcase_import_without_numpy() -> None:
    code = (
        "import sys; sys.modules['numpy'] = None\n"  # makes `import numpy` fail
        "import snakepit_bridge, snakepit_bridge.thread_safety_checker\n"
        "from snakepit_bridge.adapters import threaded_showcase as s\n"
        "assert not s.NUMPY_AVAILABLE\n"
        "a = s.ThreadedShowcaseAdapter()\n"
        "assert a.get_adapter_stats()['numpy_available'] is False\n"
        "try:\n    a.compute_intensive([1.0])\nexcept s.NumpyUnavailableError as e:\n    print(e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "compute_intensive needs NumPy" in done.stdout
