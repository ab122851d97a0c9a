"""thread_safe_method: binding, metadata, signature, tracking semantics, bad input."""

from __future__ import annotations

import inspect
import threading
import types

import pytest

from _threads import run_threads
from snakepit_bridge import ThreadSafeAdapter, thread_safe_method


def mark_tool(func):
    """Stand-in for a tool decorator: attaches metadata and returns the same object."""
    func._tool_metadata = {"description": "demo"}
    return func


class Service(ThreadSafeAdapter):
    __thread_safe__ = True

    def __init__(self) -> None:
        super().__init__()
        self.seen_active: list[int] = []

    @thread_safe_method
    def compute(self, x: int, *, scale: float = 1.0) -> float:
        """Scale x."""
        return x * scale

    @thread_safe_method
    def outer(self) -> int:
        self.seen_active.append(self.get_stats()["tracker"]["active_requests"])
        return self.compute(2) + self.inner()

    @thread_safe_method
    def inner(self) -> int:
        return 1

    @thread_safe_method
    def fail(self, exc: BaseException) -> None:
        raise exc

    @thread_safe_method
    @mark_tool
    def tool_inside(self) -> str:
        return "inside"

    @mark_tool
    @thread_safe_method
    def tool_outside(self) -> str:
        return "outside"


def test_binds_as_a_real_method():
    service = Service()
    bound = service.compute
    assert inspect.ismethod(bound) and isinstance(bound, types.MethodType)
    assert bound.__self__ is service
    assert bound.__func__ is Service.__dict__["compute"]
    assert Service.compute is Service.__dict__["compute"]
    assert bound(3, scale=2.0) == 6.0
    assert Service.compute(service, 3) == 3


def test_keeps_metadata_and_signature():
    method = Service.__dict__["compute"]
    assert method.__name__ == "compute"
    assert method.__qualname__ == "Service.compute"
    assert method.__doc__ == "Scale x."
    assert method.__module__ == __name__
    assert method.__annotations__ == {"x": "int", "scale": "float", "return": "float"}
    assert inspect.unwrap(method) is method.__wrapped__
    assert method.__wrapped__.__name__ == "compute"
    assert method.__thread_safe__ is True
    assert (
        str(inspect.signature(Service().compute))
        == "(x: 'int', *, scale: 'float' = 1.0) -> 'float'"
    )
    assert list(inspect.signature(Service.compute).parameters) == ["self", "x", "scale"]
    method.custom = 1
    assert method.__dict__["custom"] == 1


def test_tool_metadata_in_either_order():
    service = Service()
    for name in ("tool_inside", "tool_outside"):
        bound = getattr(service, name)
        assert inspect.ismethod(bound)
        assert bound._tool_metadata == {"description": "demo"}
    assert service.tool_inside() == "inside" and service.tool_outside() == "outside"
    members = dict(inspect.getmembers(service, inspect.ismethod))
    assert "tool_inside" in members and "tool_outside" in members


def test_each_call_is_tracked_and_nesting_counts_once():
    service = Service()
    assert service.outer() == 3
    tracker = service.get_stats()["tracker"]
    assert tracker["total_requests"] == 1
    assert tracker["completed_requests"] == 1
    assert tracker["active_requests"] == 0
    assert service.seen_active == [1]
    assert tracker["requests_by_thread"] == {threading.current_thread().name: 1}
    assert tracker["max_duration"] > 0 and tracker["total_duration"] >= tracker["max_duration"]


def test_exceptions_propagate_unchanged_and_count_as_errors():
    service = Service()
    error = KeyError("same object")
    with pytest.raises(KeyError) as caught:
        service.fail(error)
    assert caught.value is error
    with pytest.raises(KeyboardInterrupt):
        service.fail(KeyboardInterrupt())
    tracker = service.get_stats()["tracker"]
    assert tracker["total_requests"] == 2 and tracker["errors"] == 2
    assert tracker["active_requests"] == 0


def test_calls_through_on_a_non_adapter_self():
    class Plain:
        @thread_safe_method
        def hello(self, name: str) -> str:
            return f"hello {name}"

    assert Plain().hello("you") == "hello you"

    @thread_safe_method
    def free(*args):
        return args

    assert free() == ()
    assert free(1, 2) == (1, 2)


def test_missing_self_is_the_functions_own_type_error():
    with pytest.raises(TypeError):
        Service.compute()


def test_bad_decorator_input():
    with pytest.raises(TypeError, match="callable"):
        thread_safe_method(42)
    with pytest.raises(TypeError, match="staticmethod or classmethod"):
        thread_safe_method(staticmethod(lambda: None))
    with pytest.raises(TypeError, match="staticmethod or classmethod"):
        thread_safe_method(classmethod(lambda cls: None))
    with pytest.raises(TypeError):
        thread_safe_method()
    with pytest.raises(TypeError):
        thread_safe_method(len, extra=1)


def test_double_wrapping_counts_once_and_unwraps():
    class Twice(ThreadSafeAdapter):
        @thread_safe_method
        @thread_safe_method
        def work(self) -> int:
            return 5

    twice = Twice()
    assert twice.work() == 5
    assert twice.get_stats()["tracker"]["total_requests"] == 1
    assert inspect.unwrap(Twice.work).__name__ == "work"


def test_different_adapters_count_separately_when_nested():
    class Caller(ThreadSafeAdapter):
        def __init__(self, other: Service) -> None:
            super().__init__()
            self.other = other

        @thread_safe_method
        def call(self) -> int:
            return self.other.inner()

    service = Service()
    caller = Caller(service)
    assert caller.call() == 1
    assert caller.get_stats()["tracker"]["total_requests"] == 1
    assert service.get_stats()["tracker"]["total_requests"] == 1


def test_tracked_calls_exact_under_threads():
    service = Service()
    threads, calls = 16, 2_000

    def work(_: int) -> None:
        for i in range(calls):
            assert service.compute(i) == i

    run_threads(work, threads)
    tracker = service.get_stats()["tracker"]
    assert tracker["total_requests"] == threads * calls
    assert tracker["completed_requests"] == threads * calls
    assert tracker["active_requests"] == 0 and tracker["active_threads"] == 0
    assert tracker["threads_seen"] == threads
    assert sorted(tracker["requests_by_thread"].values()) == [calls] * threads


class _ObserverFailure(Exception):
    pass


def test_call_observer_failing_on_exit_is_the_callers_error_and_counted_as_one() -> None:
    """An observer that raises when the call leaves: the caller sees its exception and the
    tracker counts an error, not a success."""
    from snakepit_bridge import _native

    class A(ThreadSafeAdapter):
        @thread_safe_method
        def work(self) -> int:
            return 1

    def observer(method: object, adapter: object, entering: bool) -> None:
        if not entering:
            raise _ObserverFailure("on the way out")

    a = A()
    _native.set_call_observer(observer)
    try:
        with pytest.raises(_ObserverFailure):
            a.work()
    finally:
        _native.set_call_observer(None)
    t = a.get_stats()["tracker"]
    assert (t["total_requests"], t["completed_requests"], t["errors"], t["active_requests"]) == (
        1,
        1,
        1,
        0,
    )
    assert a.work() == 1
    assert a.get_stats()["tracker"]["errors"] == 1


def test_call_observer_failing_on_entry_runs_nothing_and_counts_nothing() -> None:
    from snakepit_bridge import _native

    calls = []

    class A(ThreadSafeAdapter):
        @thread_safe_method
        def work(self) -> int:
            calls.append(1)
            return 1

    def observer(method: object, adapter: object, entering: bool) -> None:
        if entering:
            raise _ObserverFailure("on the way in")

    a = A()
    _native.set_call_observer(observer)
    try:
        with pytest.raises(_ObserverFailure):
            a.work()
    finally:
        _native.set_call_observer(None)
    assert calls == []
    assert a.get_stats()["tracker"]["total_requests"] == 0


def test_call_observer_failing_on_exit_of_a_failing_call_keeps_the_calls_exception() -> None:
    import sys

    from snakepit_bridge import _native

    class A(ThreadSafeAdapter):
        @thread_safe_method
        def work(self) -> int:
            raise KeyError("the call's own")

    def observer(method: object, adapter: object, entering: bool) -> None:
        if not entering:
            raise _ObserverFailure("on the way out")

    unraisable = []
    old_hook = sys.unraisablehook
    sys.unraisablehook = lambda info: unraisable.append(info.exc_type)
    a = A()
    _native.set_call_observer(observer)
    try:
        with pytest.raises(KeyError, match="the call's own"):
            a.work()
    finally:
        _native.set_call_observer(None)
        sys.unraisablehook = old_hook
    assert unraisable == [_ObserverFailure]
    t = a.get_stats()["tracker"]
    assert (t["total_requests"], t["errors"]) == (1, 1)


class _Captured:
    """Something a closure captures, to see whether it is freed."""


def _make_decorated_closure(captured: _Captured) -> object:
    def method(self: object) -> _Captured:
        return captured

    return thread_safe_method(method)


def test_decorated_closures_and_their_captures_are_freed() -> None:
    """A thread_safe_method made inside a function (a closure) must be freed with everything it
    captures; 3.13t makes only module-level functions immortal, and so must we (each leaked one
    here would keep its capture alive forever).  (A class built inside a function is another
    matter: 3.13t itself makes every class immortal once a thread has started.)"""
    import gc
    import weakref

    refs = []
    for _ in range(2000):
        captured = _Captured()
        refs.append(weakref.ref(captured))
        decorated = _make_decorated_closure(captured)
        assert decorated(object()) is captured
        del captured, decorated

    # A thread has run, as in any server: 3.13t then makes module-level functions (and
    # classes) immortal, but never a closure.
    run_threads(lambda i: i, 2)
    for _ in range(2000):
        captured = _Captured()
        refs.append(weakref.ref(captured))
        decorated = _make_decorated_closure(captured)
        assert decorated(object()) is captured
        del captured, decorated
    gc.collect()
    assert sum(r() is not None for r in refs) == 0


@pytest.mark.skipif(
    not __import__("sysconfig").get_config_var("Py_GIL_DISABLED")
    or __import__("sys").version_info >= (3, 14),
    reason="3.13t only: immortal like a module-level function "
    "(3.14 uses deferred reference counting)",
)
def test_module_level_decorated_method_is_immortal_on_313t() -> None:
    import sys

    class AtClassLevel(ThreadSafeAdapter):
        @thread_safe_method
        def work(self) -> int:
            return 1

    # This class is built inside a test function, so its method is nested: not immortal.
    assert sys.getrefcount(vars(AtClassLevel)["work"]) < 2**20
    assert sys.getrefcount(vars(_ModuleLevel)["work"]) > 2**30


class _ModuleLevel(ThreadSafeAdapter):
    @thread_safe_method
    def work(self) -> int:
        return 1
