"""docs/guide.md runs as written, and so does every example of the user's guides.

The user's guides (Writing Thread-Safe Adapters, README_THREADING, the Phase 2 summary) are
reproduced here as tests, as close to their text as a runnable test allows. Left out: the
examples that need torch, pandas or polars (ModelAdapter, TorchAdapter/PyTorchAdapter, MLAdapter,
PandasAdapter, pitfall 3's pandas and polars parts).
"""

from __future__ import annotations

import ast
import re
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from queue import Queue
from typing import Any

import pytest

from _checking import no_global_checking
from _threads import hammer, run_threads
from snakepit_bridge.base_adapter import BaseAdapter
from snakepit_bridge.base_adapter_threaded import ThreadSafeAdapter, thread_safe_method, tool
from snakepit_bridge.thread_safety_checker import (
    ThreadSafetyChecker,
    ThreadSafetyError,
    ThreadSafetyWarning,
    validate_adapter_thread_safety,
)

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "guide.md"
_FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _guide_blocks() -> list[tuple[int, str, str | None]]:
    """(first line, code, skip reason) of each ```python block of the guide."""
    text = GUIDE.read_text(encoding="utf-8")
    blocks = []
    for match in _FENCE.finditer(text):
        line = text.count("\n", 0, match.start(1)) + 1
        before = text[: match.start()].rstrip().splitlines()[-1:]
        skip = re.match(r"<!--\s*skip:\s*(.*?)\s*-->", before[0]) if before else None
        blocks.append((line, match.group(1), skip.group(1) if skip else None))
    return blocks


BLOCKS = _guide_blocks()


@pytest.fixture(autouse=True)
def _global_checker_off() -> Iterator[None]:
    with no_global_checking():
        yield


def test_guide_has_blocks_and_skips_only_for_missing_libraries() -> None:
    assert len(BLOCKS) >= 10
    for _line, _code, reason in BLOCKS:
        assert reason is None or reason.startswith("needs ")


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[f"line{b[0]}" for b in BLOCKS])
def test_guide_block(index: int) -> None:
    """Runs the blocks before this one (they define what it uses), then this one."""
    _line, _code, reason = BLOCKS[index]
    if reason is not None:
        pytest.skip(reason)
    namespace: dict[str, object] = {"__name__": "guide"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThreadSafetyWarning)  # the guide shows a race on purpose
        for start, code, skip in BLOCKS[: index + 1]:
            if skip is None:
                exec(compile("\n" * (start - 1) + code, str(GUIDE), "exec"), namespace)


def _imported_modules(code: str) -> set[str]:
    """The names that ``import x`` / ``import x as y`` statements of ``code`` bind."""
    names = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names


def test_each_block_imports_the_modules_it_uses() -> None:
    """A block may use classes and objects of the blocks before it, but imports every module it
    uses itself: a reader who copies one block gets no NameError for `asyncio`."""
    modules = set().union(*(_imported_modules(code) for _line, code, _skip in BLOCKS))
    missing = []
    for line, code, _skip in BLOCKS:
        used = {
            node.id
            for node in ast.walk(ast.parse(code))
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
        }
        missing += [(line, name) for name in sorted((used & modules) - _imported_modules(code))]
    assert not missing, f"blocks (first line) using a module they do not import: {missing}"


def test_the_async_example_fails_if_call_tool_stops_refusing_async_tools(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The guide's check that call_tool refuses an async tool must fail when nothing is raised,
    not pass silently."""
    index = next(i for i, (_l, code, _s) in enumerate(BLOCKS) if "class Prices" in code)

    refusing = BaseAdapter.call_tool  # ThreadSafeAdapter's (a native type: set it here)

    def not_refusing(self: Any, tool_name: str, /, **kwargs: Any) -> Any:
        if tool_name == "quote":  # the async tool: what a call_tool that refuses nothing does
            return None
        return refusing(self, tool_name, **kwargs)

    monkeypatch.setattr(BaseAdapter, "call_tool", not_refusing)
    namespace: dict[str, object] = {"__name__": "guide"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThreadSafetyWarning)
        for start, code, skip in BLOCKS[:index]:
            if skip is None:
                exec(compile("\n" * (start - 1) + code, str(GUIDE), "exec"), namespace)
        start, code, _skip = BLOCKS[index]
        with pytest.raises(AssertionError, match="instead of refusing it"):
            exec(compile("\n" * (start - 1) + code, str(GUIDE), "exec"), namespace)


# --------------------------------------------------------------------------------------------
# "Writing Thread-Safe Adapters for Snakepit"
# --------------------------------------------------------------------------------------------


class TinyModel:
    """Stands in for the guides' load_model(): read-only after construction."""

    def predict(self, data: object) -> str:
        return f"prediction:{data}"


def load_model() -> TinyModel:
    return TinyModel()


def test_overview_unsafe_and_safe_adapters() -> None:
    class UnsafeAdapter:
        def __init__(self):
            self.counter = 0

        def process(self, data):
            self.counter += 1  # RACE CONDITION!
            return {"count": self.counter}

    class SafeAdapter(ThreadSafeAdapter):
        def __init__(self):
            super().__init__()
            self.counter = 0

        def process(self, data):
            with self.acquire_lock():
                self.counter += 1
                return {"count": self.counter}

    assert UnsafeAdapter().process(None) == {"count": 1}  # fine on one thread
    safe = SafeAdapter()
    total = hammer(lambda: safe.process(None), 16, 500)
    assert safe.counter == total == 8000


def test_pattern_2_caching_adapter() -> None:
    class CachingAdapter(ThreadSafeAdapter):
        __thread_safe__ = True

        def __init__(self):
            super().__init__()
            self.model = load_model()  # Shared read-only

        @thread_safe_method
        def compute(self, key, data):
            cache = self.get_thread_local("cache", {})
            if key in cache:
                return cache[key]
            result = self.model.predict(data)
            cache[key] = result
            self.set_thread_local("cache", cache)
            return result

    adapter = CachingAdapter()
    results = run_threads(lambda i: [adapter.compute(k, k) for k in ("a", "b", "a")], 8)
    assert results == [["prediction:a", "prediction:b", "prediction:a"]] * 8
    assert adapter.get_thread_local("cache") is None  # this thread never computed


class CountingAdapter(ThreadSafeAdapter):
    __thread_safe__ = True

    def __init__(self):
        super().__init__()
        self.model = load_model()  # Pattern 1
        self.total_requests = 0
        self.request_log = []

    @thread_safe_method
    def process(self, data):
        result = self.model.predict(data)
        with self.acquire_lock():
            self.total_requests += 1
            self.request_log.append({"result": result, "timestamp": time.time()})
        return result

    @thread_safe_method
    def get_stats(self):
        with self.acquire_lock():
            return {"total_requests": self.total_requests, "log_size": len(self.request_log)}


def test_pattern_3_counting_adapter() -> None:
    adapter = CountingAdapter()
    checker = ThreadSafetyChecker(strict_mode=True)
    total = hammer(lambda: adapter.process("x"), 20, 100)
    assert adapter.get_stats() == {"total_requests": total, "log_size": total}
    assert total == 2000
    assert checker.get_report()["warnings"] == []


# -- the tutorial's MyAdapter (steps 1 to 4), with NumPy --------------------------------------


def _my_adapter_class() -> type:
    numpy = pytest.importorskip("numpy")

    class MyAdapter(ThreadSafeAdapter):
        """Example thread-safe adapter"""

        __thread_safe__ = True

        def __init__(self):
            super().__init__()
            self.model = self._load_model()
            self.request_count = 0

        def _load_model(self):
            return load_model()

        @thread_safe_method
        @tool(description="Compute with NumPy")
        def compute(self, data: list) -> dict:
            arr = numpy.array(data)
            result = numpy.dot(arr, arr.T)
            with self.acquire_lock():
                self.request_count += 1
                count = self.request_count
            return {"result": result.tolist(), "request_number": count}

        @thread_safe_method
        @tool(description="Compute with caching")
        def compute_cached(self, key: str, data: list) -> dict:
            cache = self.get_thread_local("cache", {})
            if key in cache:
                return {"result": cache[key], "cached": True}
            arr = numpy.array(data)
            result = numpy.dot(arr, arr.T).tolist()
            cache[key] = result
            self.set_thread_local("cache", cache)
            with self.acquire_lock():
                self.request_count += 1
            return {"result": result, "cached": False}

        @thread_safe_method
        @tool(description="Get adapter statistics")
        def get_stats(self) -> dict:
            with self.acquire_lock():
                stats = self.get_stats_dict()
                stats["total_requests"] = self.request_count
            return stats

    return MyAdapter


@pytest.fixture
def my_adapter() -> object:
    return _my_adapter_class()()


def test_tutorial_tools_and_stats(my_adapter: object) -> None:
    assert [t.name for t in my_adapter.get_tools()] == ["compute", "compute_cached", "get_stats"]
    assert my_adapter.compute([1, 2, 3]) == {"result": 14, "request_number": 1}
    assert my_adapter.compute_cached("k", [1, 2])["cached"] is False
    assert my_adapter.compute_cached("k", [1, 2]) == {"result": 5, "cached": True}
    stats = my_adapter.get_stats()
    assert stats["total_requests"] == 2
    assert stats["adapter_class"] == "MyAdapter" and stats["thread_safe"] is True
    assert stats["tracker"]["total_requests"] == 4  # this get_stats call is counted too


def test_step_5_concurrent_compute(my_adapter: object) -> None:
    results = []
    errors = []

    def make_request(i):
        try:
            result = my_adapter.compute([1, 2, 3, 4, 5])
            results.append(result)
        except Exception as e:  # noqa: BLE001 - the guide's example collects every failure
            errors.append(e)

    with ThreadPoolExecutor(max_workers=20) as executor:
        futures = [executor.submit(make_request, i) for i in range(100)]
        for future in futures:
            future.result(timeout=60)

    assert len(results) == 100
    assert len(errors) == 0
    stats = my_adapter.get_stats()
    assert stats["total_requests"] == 100
    assert sorted(r["request_number"] for r in results) == list(range(1, 101))


def test_strategy_1_concurrent_hammer(my_adapter: object) -> None:
    adapter = my_adapter
    results = []

    def worker(i):
        for _ in range(100):
            result = adapter.compute([i, i + 1, i + 2])
            results.append(result)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(results) == 1000
    stats = adapter.get_stats()
    assert stats["total_requests"] == 1000


def test_strategy_3_checker_strict_mode_reports_no_warnings(my_adapter: object) -> None:
    checker = ThreadSafetyChecker(enabled=True, strict_mode=True)
    adapter = type(my_adapter)()

    def worker():
        for _ in range(50):
            adapter.compute([1, 2, 3])

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    report = checker.get_report()
    assert len(report["warnings"]) == 0
    assert report["total_threads_seen"] == 21
    assert adapter.get_stats()["total_requests"] == 1000


def test_strategy_4_load_testing(my_adapter: object) -> None:
    adapter = my_adapter

    def single_request():
        return adapter.compute([1, 2, 3, 4, 5])

    with ThreadPoolExecutor(max_workers=16) as executor:
        start = time.time()
        futures = [executor.submit(single_request) for _ in range(1000)]
        results = [f.result() for f in futures]
        elapsed = time.time() - start
    throughput = 1000 / max(elapsed, 1e-9)
    print(f"Throughput: {throughput:.2f} req/s")  # reported, never asserted
    assert len(results) == 1000


def test_pitfall_2_compute_outside_the_lock() -> None:
    numpy = pytest.importorskip("numpy")

    class Wrong(ThreadSafeAdapter):
        def __init__(self):
            super().__init__()
            self.results = []

        @thread_safe_method
        def process(self, data):
            with self.acquire_lock():
                arr = numpy.array(data)
                result = numpy.dot(arr, arr.T)
                self.results.append(result)
            return result

    class Right(Wrong):
        @thread_safe_method
        def process(self, data):
            arr = numpy.array(data)
            result = numpy.dot(arr, arr.T)
            with self.acquire_lock():
                self.results.append(result)
            return result

    for cls in (Wrong, Right):
        adapter = cls()
        total = hammer(lambda: adapter.process([1.0, 2.0]), 8, 100)
        assert len(adapter.results) == total and adapter.process([3.0]) == 9.0


def test_pitfall_3_collect_rows_under_the_lock() -> None:
    class GoodAdapter(ThreadSafeAdapter):
        def __init__(self):
            super().__init__()
            self.rows = []

        @thread_safe_method
        def add_row(self, data):
            with self.acquire_lock():
                self.rows.append(data)

    adapter = GoodAdapter()
    total = hammer(lambda: adapter.add_row({"a": 1}), 8, 200)
    assert len(adapter.rows) == total  # get_dataframe() needs polars: not run here


def test_pitfall_4_declaration() -> None:
    class BadAdapter(ThreadSafeAdapter):
        pass  # Missing __thread_safe__ = True

    class GoodAdapter(ThreadSafeAdapter):
        __thread_safe__ = True

    assert not validate_adapter_thread_safety(BadAdapter)
    assert validate_adapter_thread_safety(GoodAdapter)


def test_pitfall_5_reentrant_lock_means_no_deadlock() -> None:
    class Nested(ThreadSafeAdapter):
        @thread_safe_method
        def method_a(self):
            with self.acquire_lock():
                return self.method_b()  # takes the same lock again

        @thread_safe_method
        def method_b(self):
            with self.acquire_lock():
                return "result"

        @thread_safe_method
        def method_c(self):
            with self.acquire_lock():
                return self._method_b_impl()

        def _method_b_impl(self):
            return "result"

    adapter = Nested()
    assert (
        run_threads(lambda _i: (adapter.method_a(), adapter.method_c()), 8)
        == [("result", "result")] * 8
    )
    assert adapter.get_stats()["tracker"]["total_requests"] == 16  # nested calls count once


def test_numpy_adapter_matrix_multiply() -> None:
    numpy = pytest.importorskip("numpy")

    class NumPyAdapter(ThreadSafeAdapter):
        __thread_safe__ = True

        @thread_safe_method
        def matrix_multiply(self, a_data, b_data):
            a = numpy.array(a_data)
            b = numpy.array(b_data)
            result = numpy.dot(a, b)
            return result.tolist()

    adapter = NumPyAdapter()
    results = run_threads(lambda i: adapter.matrix_multiply([[i, 0], [0, 1]], [[1, 2], [3, 4]]), 8)
    assert results[3] == [[3, 6], [3, 4]]


class MultiLockAdapter(ThreadSafeAdapter):
    __thread_safe__ = True

    def __init__(self):
        super().__init__()
        import threading

        self.counter_lock = threading.Lock()
        self.log_lock = threading.Lock()
        self.counter = 0
        self.log = []

    @thread_safe_method
    def increment(self):
        with self.counter_lock:  # Only locks counter
            self.counter += 1

    @thread_safe_method
    def log_event(self, event):
        with self.log_lock:  # Only locks log
            self.log.append(event)


def test_custom_locks_multi_lock_adapter() -> None:
    checker = ThreadSafetyChecker(strict_mode=True)
    adapter = MultiLockAdapter()

    def work() -> None:
        adapter.increment()
        adapter.log_event("e")

    total = hammer(work, 20, 100)
    assert adapter.counter == len(adapter.log) == total
    assert checker.get_report()["warnings"] == []


def test_lock_free_queue_adapter() -> None:
    class QueueAdapter(ThreadSafeAdapter):
        __thread_safe__ = True

        def __init__(self):
            super().__init__()
            self.results = Queue()

        @thread_safe_method
        def add_result(self, result):
            self.results.put(result)

        @thread_safe_method
        def get_results(self):
            results = []
            while not self.results.empty():
                results.append(self.results.get())
            return results

    checker = ThreadSafetyChecker(strict_mode=True)
    adapter = QueueAdapter()
    total = hammer(lambda: adapter.add_result(1), 20, 100)
    assert len(adapter.get_results()) == total
    assert checker.get_report()["warnings"] == []


def test_atomic_adapter() -> None:
    class AtomicAdapter(ThreadSafeAdapter):
        __thread_safe__ = True

        def __init__(self):
            super().__init__()
            self.counter = 0
            self._lock = threading.Lock()

        @thread_safe_method
        def atomic_increment(self):
            self._lock.acquire()
            try:
                self.counter += 1
                result = self.counter
            finally:
                self._lock.release()
            return result

    checker = ThreadSafetyChecker(strict_mode=True)
    adapter = AtomicAdapter()
    total = hammer(adapter.atomic_increment, 20, 100)
    assert adapter.counter == total
    with adapter.acquire_lock():  # the native lock is untouched by the _lock attribute
        assert adapter.lock._is_owned()
    assert checker.get_report()["warnings"] == []


def test_debug_adapter(capsys: pytest.CaptureFixture[str]) -> None:
    def do_work(data):
        return data * 2

    class DebugAdapter(ThreadSafeAdapter):
        @thread_safe_method
        def compute(self, data):
            print(f"[{threading.current_thread().name}] Acquiring lock...")
            with self.acquire_lock():
                print(f"[{threading.current_thread().name}] Lock acquired!")
                result = do_work(data)
            print(f"[{threading.current_thread().name}] Lock released")
            return result

    assert DebugAdapter().compute(21) == 42
    assert "Lock acquired!" in capsys.readouterr().out


class CounterAdapter(ThreadSafeAdapter):
    __thread_safe__ = True

    def __init__(self):
        super().__init__()
        self.count = 0

    @thread_safe_method
    @tool(description="Increment counter")
    def increment(self) -> dict:
        with self.acquire_lock():
            self.count += 1
            return {"count": self.count}

    @thread_safe_method
    @tool(description="Get current count")
    def get_count(self) -> dict:
        with self.acquire_lock():
            return {"count": self.count}


def test_example_1_counter_adapter_and_strategy_2() -> None:
    adapter = CounterAdapter()
    assert [(t.name, t.description) for t in adapter.get_tools()] == [
        ("get_count", "Get current count"),
        ("increment", "Increment counter"),
    ]

    def increment_many():
        for _ in range(1000):
            adapter.increment()

    threads = [threading.Thread(target=increment_many) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert adapter.get_count() == {"count": 10000}
    assert adapter.execute_tool("increment", {}) == {"count": 10001}
    assert adapter.get_stats()["tracker"]["total_requests"] == 10002


def test_pitfall_1_bad_adapter_is_caught_good_adapter_is_not() -> None:
    class BadAdapter(ThreadSafeAdapter):
        def __init__(self):
            super().__init__()
            self.counter = 0

        @thread_safe_method
        def increment(self):
            self.counter += 1  # NOT ATOMIC!
            return self.counter

    class GoodAdapter(ThreadSafeAdapter):
        def __init__(self):
            super().__init__()
            self.counter = 0

        @thread_safe_method
        def increment(self):
            with self.acquire_lock():
                self.counter += 1
                return self.counter

    checker = ThreadSafetyChecker()
    good = GoodAdapter()
    assert hammer(good.increment, 20, 100) == good.counter
    assert checker.get_report()["warnings"] == []
    bad = BadAdapter()
    with pytest.warns(ThreadSafetyWarning, match="BadAdapter.counter"):
        hammer(bad.increment, 20, 100)
    assert checker.get_report()["warnings_issued"] == 1
    with ThreadSafetyChecker(strict_mode=True):
        strict_bad = BadAdapter()
        with pytest.raises(ThreadSafetyError) as info:  # the worker's exception itself
            hammer(strict_bad.increment, 2, 1)
        assert any("raised in worker" in note for note in info.value.__notes__)


# --------------------------------------------------------------------------------------------
# README_THREADING and the Phase 2 summary
# --------------------------------------------------------------------------------------------


class ReadmeAdapter(ThreadSafeAdapter):
    """README_THREADING's MyAdapter, put together from its steps and patterns."""

    __thread_safe__ = True

    def __init__(self):
        super().__init__()
        self.model = load_model()
        self.config = {"timeout": 30, "batch_size": 10}
        self.request_count = 0
        self.results = []
        self.prediction_log = []
        self.total_predictions = 0

    @thread_safe_method
    @tool(description="Thread-safe prediction")
    def predict(self, input_data: str) -> dict:
        result = self.model.predict(input_data)
        with self.acquire_lock():
            self.request_count += 1
        return {"prediction": result}

    @thread_safe_method
    def cached_predict(self, input_data):
        cache = self.get_thread_local("cache", {})
        if input_data in cache:
            return cache[input_data]
        result = self.model.predict(input_data)
        cache[input_data] = result
        self.set_thread_local("cache", cache)
        return result

    @thread_safe_method
    def log_prediction(self, prediction):
        with self.acquire_lock():
            self.prediction_log.append({"prediction": prediction, "timestamp": time.time()})
            self.total_predictions += 1

    @thread_safe_method
    def get_stats(self) -> dict:
        with self.acquire_lock():
            return {"request_count": self.request_count, "results_count": len(self.results)}

    @thread_safe_method
    def get_thread_stats(self):
        return ThreadSafeAdapter.get_stats(self)


def test_readme_method_1_checker_report() -> None:
    checker = ThreadSafetyChecker(enabled=True, strict_mode=False)
    adapter = ReadmeAdapter()

    def make_request(i):
        adapter.predict(f"input_{i}")
        adapter.log_prediction(i)
        adapter.cached_predict(i % 3)

    threads = [threading.Thread(target=make_request, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    report = checker.get_report()
    assert report["warnings"] == []
    assert report["method_calls"]["ReadmeAdapter.predict"]["calls"] == 100
    assert adapter.get_stats() == {"request_count": 100, "results_count": 0}
    assert adapter.total_predictions == len(adapter.prediction_log) == 100


def test_readme_method_2_stress_test() -> None:
    adapter = ReadmeAdapter()
    with ThreadPoolExecutor(max_workers=20) as executor:
        futures = [executor.submit(adapter.predict, f"input_{i}") for i in range(1000)]
        results = [f.result() for f in futures]
    assert len(results) == 1000
    assert adapter.get_stats()["request_count"] == 1000


def test_readme_method_3_race_is_flagged_by_the_checker() -> None:
    checker = ThreadSafetyChecker()
    adapter = ReadmeAdapter()
    adapter.counter = 0

    def increment():
        for _ in range(1000):
            adapter.counter += 1  # This WILL have race conditions without locking!

    with pytest.warns(ThreadSafetyWarning, match="ReadmeAdapter.counter"):
        threads = [threading.Thread(target=increment) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert checker.get_report()["unprotected_writes"][0]["attribute"] == "counter"


def test_readme_monitoring_thread_utilization() -> None:
    adapter = ReadmeAdapter()
    adapter.predict("x")
    stats = adapter.get_thread_stats()
    assert stats["adapter_class"] == "ReadmeAdapter"
    assert stats["tracker"]["total_requests"] == 2


def test_readme_performance_snippets() -> None:
    numpy = pytest.importorskip("numpy")

    def expensive_function(key):
        return key * 3

    class PerfAdapter(ThreadSafeAdapter):
        __thread_safe__ = True

        def __init__(self):
            super().__init__()
            self.weights = numpy.ones((3, 2))
            self.weights.flags.writeable = False
            self.results = []

        @thread_safe_method
        def matrix_multiply(self, data):
            arr = numpy.array(data)
            result = numpy.dot(arr, self.weights)
            return result.tolist()

        @thread_safe_method
        def reduce_contention(self, x):
            result = expensive_function(x)
            with self.acquire_lock():
                self.results.append(result)

        @thread_safe_method
        def compute(self, key):
            cache = self.get_thread_local("cache", {})
            if key in cache:
                return cache[key]
            result = expensive_function(key)
            cache[key] = result
            self.set_thread_local("cache", cache)
            return result

    checker = ThreadSafetyChecker(strict_mode=True)
    adapter = PerfAdapter()

    def work() -> None:
        assert adapter.matrix_multiply([1, 2, 3]) == [6.0, 6.0]
        adapter.reduce_contention(2)
        assert adapter.compute(5) == 15

    total = hammer(work, 16, 50)
    assert len(adapter.results) == total
    assert checker.get_report()["warnings"] == []


def test_phase_2_summary_checker_example() -> None:
    adapter = ReadmeAdapter()

    def stress_test(adapter, requests, threads):
        with ThreadPoolExecutor(max_workers=threads) as pool:
            return list(pool.map(lambda i: adapter.predict(f"in_{i}"), range(requests)))

    with ThreadSafetyChecker(enabled=True) as checker:
        results = stress_test(adapter, requests=100, threads=16)
        report = checker.get_report()

    assert len(results) == 100
    assert report["warnings_issued"] == 0
    assert "✅ No thread safety issues detected." in report["recommendations"]
    assert set(report["concurrent_accesses"]) <= {"ReadmeAdapter.predict"}
    assert 1 <= report["total_threads_seen"] <= 16
