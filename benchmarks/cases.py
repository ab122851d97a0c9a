"""What is measured: the implementations, the adapter used by every case, the case lists.

Both implementations are measured with the same statements on the same adapter class body
(``make_bench_class``), so the only difference between their figures is the library.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from benchmarks import peers as _peers
from benchmarks import server as _server

IMPLS = ("native", "baseline")
GROUPS = ("single", "scaling", "memory", "hammer", "peers", "server")
# Groups that only measure the native package (against other libraries and servers, in the
# same process or run); the baseline implementation has no figures there.
NATIVE_ONLY_GROUPS = ("peers", "server")


def group_applies(impl: str, group: str) -> bool:
    return impl == "native" or group not in NATIVE_ONLY_GROUPS


@dataclass(frozen=True)
class Case:
    name: str
    stmt: str
    title: str


# Single-thread cases, measured for each implementation. ``a`` is an adapter (BenchAdapter),
# ``x`` a small int, ``k`` a key set on the calling thread, ``m`` a missing key, ``dflt`` a
# default, ``s`` the key written by tl_set and ``v`` its value.
SINGLE_CASES: tuple[Case, ...] = (
    Case("tracked_call", "a.tracked(x)", "tracked call a.tracked(x)"),
    Case("tracked_call_quiet", "a.tracked_quiet(x)", "tracked call, baseline without logging"),
    Case("acquire_lock", "with a.acquire_lock():\n    pass", "with a.acquire_lock(): pass"),
    Case("tl_hit", "a.get_thread_local(k)", "get_thread_local hit"),
    Case("tl_miss_default", "a.get_thread_local(m, dflt)", "get_thread_local miss, default"),
    Case("tl_set", "a.set_thread_local(s, v)", "set_thread_local"),
    Case("get_stats", "a.get_stats()", "get_stats()"),
    Case("locked_increment", "a.increment()", "tracked increment under the lock"),
    Case("track_request", "with a.track_request():\n    pass", "with a.track_request(): pass"),
)

# Interpreter floors and stdlib references, measured in the same process as each
# implementation's cases. "c_with" gets its statement at run time (see c_context_floor).
FLOORS: tuple[Case, ...] = (
    Case("loop", "pass", "empty loop (subtracted from every figure)"),
    Case("bare_call", "a.bare(x)", "bare method call a.bare(x), same adapter"),
    Case("c_with", "", "with over a do-nothing C context manager from a C method"),
    Case("dict_get", "d.get(k)", "d.get(k) on a small dict"),
    Case("dict_get_obj", "o.get(k)", "o.get(k), o a dict subclass instance with a __dict__"),
    Case("local_getattr", "getattr(tl, k, None)", "getattr(tl, k, None), tl = threading.local()"),
    Case("with_rlock", "with rl:\n    pass", "with rl: pass, rl = threading.RLock()"),
    Case("with_lock", "with lk:\n    pass", "with lk: pass, lk = threading.Lock()"),
)


@dataclass(frozen=True)
class ScalingCase:
    name: str
    stmt: str
    title: str
    shared: bool  # one adapter for all threads, or one per thread
    ceiling: str | None  # the bare-call case this one is judged against (run just before it)
    own_class: bool = False  # each thread also makes its own adapter class (own decorator objects)
    native_only: bool = False  # measures the native module's own machinery; no baseline figure


# Statement names: ``a`` the adapter, ``x`` a small int, ``k`` a key set on the calling thread,
# ``q`` a non-adapter object shared like ``a`` whose class holds the same decorator (forward_call),
# ``g`` the calling thread's bound method ``a.get_thread_local`` (tl_hit_bound).
SCALING_NAMES: tuple[str, ...] = ("a", "x", "k", "q", "g")

SCALING_CASES: tuple[ScalingCase, ...] = (
    ScalingCase("bare_call", "a.bare(x)", "bare call, shared adapter (ceiling)", True, None),
    ScalingCase("tracked_call", "a.tracked(x)", "tracked call, shared adapter", True, "bare_call"),
    ScalingCase(
        "tl_hit", "a.get_thread_local(k)", "thread-local read, shared adapter", True, "bare_call"
    ),
    ScalingCase(
        "locked_increment",
        "a.increment()",
        "tracked increment under the lock, shared",
        True,
        "bare_call",
    ),
    # References for the shared-adapter figures: what the interpreter itself allows when a
    # call goes through C. a.__sizeof__() is object's own C method (METH_NOARGS, returns a
    # cached small int): any C method called on the shared adapter, with nothing of ours in
    # it. forward_call is the decorator object on an object that is not an adapter: it then
    # only forwards the call to the same Python function (the C-to-Python call every C
    # wrapper makes), with no tracking at all.
    ScalingCase(
        "c_method",
        "a.__sizeof__()",
        "stdlib C method a.__sizeof__(), shared adapter",
        True,
        "bare_call",
    ),
    ScalingCase(
        "forward_call",
        "q.fwd(x)",
        "C wrapper forwarding to the function, no tracking, shared",
        True,
        "bare_call",
        native_only=True,
    ),
    # What lifts the ceiling: a bound method made once per thread. Calling it neither looks the
    # name up on the instance nor passes the adapter as an argument, so the shared adapter's
    # reference count is not touched per call (the usual hot-loop idiom, ``get = self.get_...``).
    ScalingCase(
        "tl_hit_bound",
        "g(k)",
        "thread-local read via g = a.get_thread_local, shared",
        True,
        "bare_call",
    ),
    ScalingCase("bare_call_per_thread", "a.bare(x)", "bare call, adapter per thread", False, None),
    ScalingCase(
        "tracked_call_per_thread",
        "a.tracked(x)",
        "tracked call, adapter per thread",
        False,
        "bare_call_per_thread",
    ),
    ScalingCase(
        "tl_hit_per_thread",
        "a.get_thread_local(k)",
        "thread-local read, adapter per thread",
        False,
        "bare_call_per_thread",
    ),
    # Nothing shared at all, not even the decorator object in the class: the difference from
    # tracked_call_per_thread is what sharing the decorator object costs.
    ScalingCase(
        "tracked_call_own_class",
        "a.tracked(x)",
        "tracked call, adapter and class per thread",
        False,
        "bare_call_per_thread",
        own_class=True,
    ),
)

MEMORY_CASES: tuple[str, ...] = ("adapter", "adapter_used", "tl_value", "flat_tracked_calls")
HAMMER_CASES: tuple[str, ...] = ("hammer_compute_intensive",)
PEER_CASES: tuple[str, ...] = tuple(c.name for c in _peers.CASES)
SERVER_CASES: tuple[str, ...] = tuple(_server.TOOLS)

CASES_BY_GROUP: dict[str, tuple[str, ...]] = {
    "single": tuple(c.name for c in SINGLE_CASES) + tuple("floor:" + c.name for c in FLOORS),
    "scaling": tuple(c.name for c in SCALING_CASES),
    "memory": MEMORY_CASES,
    "hammer": HAMMER_CASES,
    "peers": PEER_CASES,
    "server": SERVER_CASES,
}


def load_impl(impl: str) -> tuple[type, Any, Any, dict[str, Any]]:
    """``(ThreadSafeAdapter, thread_safe_method, quiet decorator, info)`` of an implementation.

    The quiet decorator is used for ``tracked_quiet``: the baseline's variant without DEBUG
    logging, and the ordinary decorator for the native core (which does not log per call).
    """
    if impl == "native":
        from snakepit_bridge import _native
        from snakepit_bridge.base_adapter_threaded import ThreadSafeAdapter, thread_safe_method

        info = {
            "module": _native.__name__,
            "file": getattr(_native, "__file__", None),
            "version": getattr(_native, "__version__", None),
            "clock_source": getattr(_native, "clock_source", None),
            "free_threaded": getattr(_native, "free_threaded", None),
        }
        return ThreadSafeAdapter, thread_safe_method, thread_safe_method, info
    if impl == "baseline":
        from benchmarks.baseline import (
            ThreadSafeAdapter,
            quiet_thread_safe_method,
            thread_safe_method,
        )

        return (
            ThreadSafeAdapter,
            thread_safe_method,
            quiet_thread_safe_method,
            {"module": "benchmarks.baseline"},
        )
    raise ValueError(f"unknown implementation {impl!r}; expected one of {IMPLS}")


# The adapter class every case uses, as users write it: a module-level class. It is compiled
# from source at "module level" of a fresh namespace rather than defined inside a function,
# because on 3.13t only functions that are not nested in another function get deferred
# reference counting (and are immortalised once a second thread starts); nested methods would
# make every call on them contend on their reference counts, which user code does not do.
BENCH_ADAPTER_SOURCE = """
class BenchAdapter(ThreadSafeAdapter):
    def __init__(self):
        super().__init__()
        self.counter = 0

    def bare(self, x):
        return x

    @thread_safe_method
    def tracked(self, x):
        return x

    @quiet_thread_safe_method
    def tracked_quiet(self, x):
        return x

    @thread_safe_method
    def increment(self):
        with self.acquire_lock():
            self.counter += 1
"""


def make_bench_class(base: type, decorator: Any, quiet: Any) -> type:
    """The adapter every case uses: the same class body on either implementation."""
    namespace: dict[str, Any] = {
        "__name__": "benchmarks.bench_adapter",
        "ThreadSafeAdapter": base,
        "thread_safe_method": decorator,
        "quiet_thread_safe_method": quiet,
    }
    exec(compile(BENCH_ADAPTER_SOURCE, "<benchmarks BenchAdapter>", "exec"), namespace)
    return namespace["BenchAdapter"]


FORWARD_SOURCE = """
class NotAnAdapter:
    def __init__(self):
        self.counter = 0

    def bare(self, x):
        return x
"""


def make_forward_object(bench_cls: type) -> Any:
    """An object shared like the adapter, whose class holds BenchAdapter's decorator object
    for ``tracked`` as ``fwd``: the native decorator tracks adapters only, so on this object
    it just forwards the call to the same function (see the forward_call scaling case)."""
    namespace: dict[str, Any] = {"__name__": "benchmarks.bench_adapter"}
    exec(compile(FORWARD_SOURCE, "<benchmarks NotAnAdapter>", "exec"), namespace)
    cls = namespace["NotAnAdapter"]
    cls.fwd = bench_cls.__dict__["tracked"]
    return cls()


class _DictWithDict(dict):
    """A dict whose instances have a ``__dict__``, as adapters do (see floor dict_get_obj)."""


def c_context_floor() -> tuple[dict[str, Any], str, str]:
    """The `with` floor: a do-nothing context manager written in C, returned by a C method.

    No stdlib type is a pure no-op context manager written in C (``contextlib.nullcontext`` is
    Python; ``memoryview``, ``mmap`` and the ``io`` objects close themselves in ``__exit__``;
    the locks do real work in ``__enter__``). The closest is an in-memory ``sqlite3``
    connection with no open transaction: ``Connection.__enter__`` is a METH_NOARGS C method that
    returns the connection itself, and ``Connection.__exit__`` only checks that no transaction
    is open. So ``with cm.__enter__(): pass`` is one zero-argument C method call returning a C
    context manager, then a `with` over it whose enter and exit do (almost) nothing: the shape
    of ``with adapter.acquire_lock(): pass`` minus the lock. Without sqlite3 the fallback is a
    ``threading.Lock`` fetched with ``dict.get`` (an upper bound: it also locks).
    """
    try:
        import sqlite3

        conn = sqlite3.connect(":memory:", check_same_thread=False)
        with conn.__enter__():  # proves the statement works here
            pass
        return (
            {"cm": conn},
            "with cm.__enter__():\n    pass",
            "with conn.__enter__(): pass, conn = sqlite3.connect(':memory:') "
            "(C method returning a C context manager whose enter/exit do nothing)",
        )
    except Exception:  # noqa: BLE001 - any failure: use the fallback
        return (
            {"cm": {"lock": threading.Lock()}, "cmk": "lock"},
            "with cm.get(cmk):\n    pass",
            "with d.get('lock'): pass over a threading.Lock (fallback: no sqlite3; also locks)",
        )


def single_env(bench_cls: type) -> dict[str, Any]:
    """Objects the single-thread statements use, set up on the calling thread."""
    a = bench_cls()
    a.set_thread_local("hit", 1)
    a.tracked(0)
    tl = threading.local()
    tl.hit = 1
    o = _DictWithDict(hit=1, b=2, c=3, d=4)
    o.counter = 0  # like the adapter: a method call must first miss in the instance __dict__
    return {
        "o": o,
        "a": a,
        "x": 1,
        "k": "hit",
        "m": "missing",
        "dflt": 0,
        "s": "written",
        "v": 2,
        "d": {"hit": 1, "b": 2, "c": 3, "d": 4},
        "tl": tl,
        "rl": threading.RLock(),
        "lk": threading.Lock(),
    }
