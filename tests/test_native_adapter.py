"""ThreadSafeAdapter: construction, the lock as users reach it, thread-local storage, stats."""

from __future__ import annotations

import gc
import sys
import sysconfig
import threading
import weakref

import pytest

import snakepit_bridge
from _threads import run_threads
from snakepit_bridge import (
    BaseAdapter,
    RequestTracker,
    RLock,
    ThreadSafeAdapter,
    _native,
    thread_safe_method,
)
from snakepit_bridge.base_adapter_threaded import ThreadSafeAdapter as ThreadedImport


class Counter(ThreadSafeAdapter):
    __thread_safe__ = True

    def __init__(self) -> None:
        super().__init__()
        self.count = 0


class ForgetsSuper(ThreadSafeAdapter):
    def __init__(self, start: int) -> None:
        self.count = start  # no super().__init__()


class Token:
    """A weak-referenceable value, to prove when storage releases it."""


def test_gil_stays_disabled_after_import():
    if not sysconfig.get_config_var("Py_GIL_DISABLED"):
        pytest.skip("GIL build")
    assert sys._is_gil_enabled() is False


def test_public_names_are_the_native_types():
    assert ThreadedImport is ThreadSafeAdapter is snakepit_bridge._native.ThreadSafeAdapter
    assert ThreadSafeAdapter.__mro__[1] is BaseAdapter
    assert ThreadSafeAdapter.__thread_safe__ is True
    assert isinstance(Counter(), BaseAdapter)


def test_instances_have_dict_weakrefs_and_gc():
    adapter = Counter()
    assert vars(adapter) == {"count": 0}
    ref = weakref.ref(adapter)
    adapter.self_ref = adapter  # a cycle through __dict__
    del adapter
    gc.collect()
    assert ref() is None


def test_works_without_super_init():
    adapter = ForgetsSuper(5)
    with adapter.acquire_lock():
        adapter.count += 1
    adapter.set_thread_local("k", 1)
    assert adapter.get_thread_local("k") == 1
    assert adapter.get_stats()["adapter_class"] == "ForgetsSuper"
    assert isinstance(adapter.lock, RLock) and isinstance(adapter.tracker, RequestTracker)


def test_base_init_rejects_arguments():
    with pytest.raises(TypeError, match="takes no arguments"):
        ThreadSafeAdapter(1)


def test_subclass_owns_lock_names():
    adapter = Counter()
    native = adapter.lock
    assert adapter._lock is native
    adapter._lock = threading.Lock()  # the guide's AtomicAdapter
    adapter.lock = "mine"
    adapter.tracker = None
    assert adapter.lock == "mine" and isinstance(adapter._lock, type(threading.Lock()))
    with adapter.acquire_lock():
        assert native._is_owned()  # acquire_lock() still uses the native lock
        with adapter.acquire_lock():  # and it is still reentrant
            pass
    assert not native.locked()
    del adapter.lock
    assert adapter.lock is native


def test_acquire_lock_is_reentrant_and_releases_on_exception():
    adapter = Counter()
    with pytest.raises(ZeroDivisionError):
        with adapter.acquire_lock():
            with adapter.acquire_lock():
                1 / 0  # noqa: B018 - raises ZeroDivisionError inside the nested locks
    assert not adapter.lock.locked()
    with adapter.acquire_lock() as entered:
        assert entered is None
        assert adapter.lock._recursion_count() == 1


def test_acquire_lock_guard_is_reused_per_thread():
    adapter = Counter()
    assert adapter.acquire_lock() is adapter.acquire_lock()
    other = run_threads(lambda _: adapter.acquire_lock(), 1)[0]
    assert other is not adapter.acquire_lock()


def test_acquire_lock_guard_protocol():
    import contextlib

    adapter = Counter()
    guard = adapter.acquire_lock()
    with contextlib.ExitStack() as stack:
        stack.enter_context(guard)
        assert adapter.lock._is_owned()
    assert not adapter.lock.locked()
    guard.__enter__()
    guard.__exit__(None, None, None)
    with pytest.raises(TypeError):
        guard(1)  # the guard itself is not callable
    with pytest.raises(RuntimeError):
        guard.__exit__(None, None, None)  # not held
    # The class-level descriptors take the guard first (contextlib does this).
    type(guard).__enter__(guard)
    assert adapter.lock._recursion_count() == 1
    type(guard).__exit__(guard, None, None, None)
    assert not adapter.lock.locked()
    with pytest.raises(TypeError):
        type(guard).__enter__(object())


def test_acquire_lock_guard_enter_and_exit_each_do_only_their_own_job():
    """__exit__ with the wrong arguments never acquires, __enter__ with arguments never
    releases: each checks its own arguments instead of dispatching on their count."""
    adapter = Counter()
    guard = adapter.acquire_lock()
    for bad_exit in [(), (None,), (None, None), (None, None, None, None)]:
        with pytest.raises(TypeError, match=r"__exit__\(\) takes 3 positional arguments"):
            guard.__exit__(*bad_exit)
        assert not adapter.lock.locked()
    with adapter.acquire_lock():
        for bad_enter in [(None,), (None, None, None)]:
            with pytest.raises(TypeError, match=r"__enter__\(\) takes 0 positional arguments"):
                guard.__enter__(*bad_enter)
            assert adapter.lock._recursion_count() == 1
        with pytest.raises(TypeError):
            guard.__enter__(blocking=False)
        with pytest.raises(TypeError):
            guard.__exit__(exc_type=None, exc=None, tb=None)
        assert adapter.lock._recursion_count() == 1
    assert not adapter.lock.locked()
    assert guard.__enter__ is guard.__enter__ and guard.__exit__ is guard.__exit__  # made once


def test_acquire_lock_timeout_names_class_and_holder():
    adapter = Counter()
    held, done = threading.Event(), threading.Event()

    def holder() -> None:
        with adapter.acquire_lock():
            held.set()
            done.wait(10)

    thread = threading.Thread(target=holder, name="the-holder")
    thread.start()
    held.wait(10)
    try:
        with pytest.raises(TimeoutError, match=r"Counter.*'the-holder'"):
            with adapter.acquire_lock(timeout=0.02):
                pass
        with pytest.raises(TimeoutError):
            with adapter.acquire_lock(0):
                pass
    finally:
        done.set()
        thread.join()
    with adapter.acquire_lock(timeout=5):
        assert adapter.lock._is_owned()
    assert not adapter.lock.locked()


def test_acquire_lock_timeout_says_the_holder_has_ended():
    """A lock taken by a thread that then ended without releasing it: the TimeoutError says so
    (the thread is gone; nobody will ever release it)."""
    adapter = Counter()
    thread = threading.Thread(target=lambda: adapter.lock.acquire(), name="the-leaver")
    thread.start()
    thread.join()
    assert adapter.lock.locked()
    with pytest.raises(
        TimeoutError,
        match=r"Counter.*held by thread ident \d+, which has ended without releasing it",
    ):
        with adapter.acquire_lock(timeout=0.01):
            pass


@pytest.mark.parametrize(
    ("timeout", "error"),
    [
        (-1, ValueError),
        (-0.5, ValueError),
        (float("nan"), ValueError),
        ("1", TypeError),
        (1e300, OverflowError),
    ],
)
def test_acquire_lock_bad_timeouts(timeout, error):
    with pytest.raises(error):
        Counter().acquire_lock(timeout=timeout)


def test_acquire_lock_bad_arguments():
    adapter = Counter()
    with pytest.raises(TypeError):
        adapter.acquire_lock(1, 2)
    with pytest.raises(TypeError):
        adapter.acquire_lock(wait=1)


# ---------------------------------------------------------------- thread-local storage


def test_thread_local_basic_api():
    adapter = Counter()
    assert adapter.get_thread_local("missing") is None
    assert adapter.get_thread_local("missing", 7) == 7
    assert adapter.get_thread_local(key="missing", default=8) == 8
    default: dict = {}
    assert adapter.get_thread_local("cache", default) is default
    assert adapter.get_thread_local("cache") is None  # the default is not stored
    adapter.set_thread_local("cache", {"a": 1})
    adapter.set_thread_local(("tuple", 1), "t")
    adapter.set_thread_local(3, "three")
    assert adapter.get_thread_local("cache") == {"a": 1}
    assert adapter.get_thread_local(("tuple", 1)) == "t"
    assert adapter.get_thread_local(3) == "three"
    adapter.clear_thread_local("cache")
    adapter.clear_thread_local("never-set")
    assert adapter.get_thread_local("cache") is None
    assert adapter.get_thread_local(3) == "three"
    adapter.clear_thread_local()
    assert adapter.get_thread_local(3) is None


def test_none_is_a_value_like_any_other():
    adapter = Counter()
    missing = object()
    adapter.set_thread_local("k", None)
    assert adapter.get_thread_local("k", missing) is None  # stored: not the default
    assert adapter.get_thread_local(key="k", default=missing) is None
    assert run_threads(lambda _: adapter.get_thread_local("k", missing), 1)[0] is missing
    adapter.set_thread_local("k", 0)
    assert adapter.get_thread_local("k", missing) == 0
    adapter.set_thread_local("k", None)  # replacing a value with None keeps the key
    assert adapter.get_thread_local("k", missing) is None
    adapter.clear_thread_local("k")
    assert adapter.get_thread_local("k", missing) is missing


def test_thread_local_no_dunder_leak():
    adapter = Counter()
    for key in ("__class__", "__dict__", "__init__", ""):
        assert adapter.get_thread_local(key, "default") == "default"
    adapter.set_thread_local("__dict__", 1)
    assert adapter.get_thread_local("__dict__") == 1


@pytest.mark.parametrize("call", ["get", "set", "clear"])
def test_thread_local_unhashable_keys_raise_type_error(call):
    adapter = Counter()
    for _ in range(2):  # before and after the thread has storage
        with pytest.raises(TypeError, match="unhashable"):
            if call == "get":
                adapter.get_thread_local([1])
            elif call == "set":
                adapter.set_thread_local({}, 1)
            else:
                adapter.clear_thread_local([1])
        adapter.set_thread_local("ok", 1)


def test_thread_local_wrong_argument_counts():
    adapter = Counter()
    with pytest.raises(TypeError):
        adapter.get_thread_local()
    with pytest.raises(TypeError):
        adapter.get_thread_local("a", 1, 2)
    with pytest.raises(TypeError):
        adapter.get_thread_local("a", nope=1)
    with pytest.raises(TypeError):
        adapter.set_thread_local("a")
    with pytest.raises(TypeError):
        adapter.clear_thread_local("a", "b")


def test_thread_local_isolated_per_thread_and_per_adapter():
    first, second = Counter(), Counter()
    first.set_thread_local("who", "main")

    def worker(index: int) -> tuple:
        seen_before = first.get_thread_local("who")
        first.set_thread_local("who", index)
        second.set_thread_local("who", -index)
        for _ in range(1000):
            assert first.get_thread_local("who") == index
            assert second.get_thread_local("who") == -index
        return seen_before, first.get_thread_local("who")

    results = run_threads(worker, 16)
    assert results == [(None, i) for i in range(16)]
    assert first.get_thread_local("who") == "main"
    assert second.get_thread_local("who") is None


def test_thread_local_released_when_thread_ends():
    adapter = Counter()
    refs = []

    def worker(_: int) -> None:
        token = Token()
        refs.append(weakref.ref(token))
        adapter.set_thread_local("token", token)

    run_threads(worker, 8)
    gc.collect()
    assert [r() for r in refs] == [None] * 8


def test_thread_local_released_when_adapter_dies_first():
    adapter = Counter()
    released = threading.Event()
    stored, stop = threading.Event(), threading.Event()

    def worker() -> None:
        token = Token()
        weakref.finalize(token, released.set)
        # pyflakes takes the `del adapter` below for an unbinding of the closure's `adapter`.
        adapter.set_thread_local("token", token)  # noqa: F821
        del token
        stored.set()
        stop.wait(10)  # the thread outlives the adapter

    thread = threading.Thread(target=worker)
    thread.start()
    stored.wait(10)
    try:
        assert not released.is_set()
        del adapter
        # 3.13t may hand the token's final free to its owning thread: allow a moment.
        for _ in range(100):
            gc.collect()
            if released.wait(0.05):
                break
        assert released.is_set()
    finally:
        stop.set()
        thread.join()


def test_thread_local_cycle_back_to_adapter_is_collected():
    adapter = Counter()
    adapter.set_thread_local("self", adapter)
    adapter.set_thread_local("holder", {"adapter": adapter})
    ref = weakref.ref(adapter)
    del adapter
    gc.collect()
    assert ref() is None


def test_many_short_lived_threads_leave_no_slots():
    adapter = Counter()

    def touch() -> None:
        adapter.set_thread_local("k", object())
        adapter.get_thread_local("k")

    for _ in range(100):  # 100 x 100 = 10,000 threads
        threads = [threading.Thread(target=touch) for _ in range(100)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    stats = adapter.get_stats()["tracker"]
    # No thread made a request, so none is reported, and no shard outlives its thread.
    assert stats["threads_seen"] == 0 and stats["requests_by_thread"] == {}
    assert _native._live_shards(adapter.tracker) == 0


def test_clear_from_a_value_destructor_is_safe():
    adapter = Counter()

    class ClearsOnDelete:
        def __del__(self) -> None:
            adapter.clear_thread_local()

    adapter.set_thread_local("a", ClearsOnDelete())
    adapter.set_thread_local("a", 1)  # replacing runs __del__, which clears everything
    assert adapter.get_thread_local("a") in (None, 1)
    adapter.set_thread_local("b", ClearsOnDelete())
    adapter.clear_thread_local()
    assert adapter.get_thread_local("b") is None


class ClearsOnCompare:
    """A key equal in hash to a str, whose __eq__ clears the adapter's storage for this thread."""

    def __init__(self, adapter: ThreadSafeAdapter, twin: str) -> None:
        self.adapter = adapter
        self.twin = twin
        self.compared = 0

    def __hash__(self) -> int:
        return hash(self.twin)

    def __eq__(self, other: object) -> bool:
        self.compared += 1
        self.adapter.clear_thread_local()
        for i in range(50):  # reuse the freed memory if it was freed too early
            self.adapter.set_thread_local(f"filler{i}", [i])
        return False


def test_lookup_with_a_key_whose_eq_clears_the_storage_is_safe():
    adapter = Counter()
    adapter.set_thread_local("hit", 1)
    key = ClearsOnCompare(adapter, "hit")
    assert adapter.get_thread_local(key, "dflt") == "dflt"
    assert key.compared >= 1  # the stored "hit" was compared with it
    assert adapter.get_thread_local("hit") is None  # cleared by __eq__
    assert adapter.get_thread_local("filler3") == [3]


def test_str_lookup_that_meets_a_stored_key_whose_eq_clears_the_storage_is_safe():
    # The stored key runs Python code when compared with the str being looked up.
    adapter = Counter()
    key = ClearsOnCompare(adapter, "probe")
    adapter.set_thread_local(key, "value")
    assert key.compared == 0
    assert adapter.get_thread_local("probe", "dflt") == "dflt"
    assert key.compared >= 1
    assert adapter.get_thread_local(key) is None  # the storage was cleared and refilled
    assert adapter.get_thread_local("filler7") == [7]


def _values_dict_holding(adapter: ThreadSafeAdapter, key: object) -> dict:
    """This thread's values dict of the adapter: the GC sees it among the adapter's referents."""
    found = [
        d
        for d in gc.get_referents(adapter)
        if isinstance(d, dict) and key in d and d is not adapter.__dict__
    ]
    assert len(found) == 1
    return found[0]


def test_lookup_holds_the_values_dict_even_when_keys_were_put_there_behind_its_back():
    # gc.get_referents() hands out the values dict itself, so a key can reach it without
    # set_thread_local(). A lookup must hold the dict however the keys got there: here a
    # stored key's __eq__ clears the storage mid-lookup, and the dict must survive it.
    adapter = Counter()
    adapter.set_thread_local("probe-other", 0)
    values = _values_dict_holding(adapter, "probe-other")
    refs_at_rest = sys.getrefcount(values)
    refs_seen: list[int] = []

    class Sneaky(ClearsOnCompare):
        __hash__ = ClearsOnCompare.__hash__

        def __eq__(self, other: object) -> bool:
            refs_seen.append(sys.getrefcount(values))
            return super().__eq__(other)

    sneaky = Sneaky(adapter, "probe")
    values[sneaky] = "value"  # behind set_thread_local's back
    assert adapter.get_thread_local("probe", "dflt") == "dflt"
    assert sneaky.compared >= 1
    # During the comparison the lookup held one more reference than the storage alone.
    assert refs_seen[0] == refs_at_rest + 1
    assert adapter.get_thread_local("filler2") == [2]
    assert "probe-other" not in adapter.__dict__


def test_str_subclass_keys_are_found_by_equal_str_keys():
    class Name(str):
        pass

    adapter = Counter()
    adapter.set_thread_local(Name("k"), 1)
    adapter.set_thread_local("j", 2)
    assert adapter.get_thread_local("k") == 1
    assert adapter.get_thread_local(Name("j")) == 2


# ---------------------------------------------------------------- stats


def test_get_stats_shape_and_freshness():
    adapter = Counter()
    stats = adapter.get_stats()
    assert set(stats) == {"adapter_class", "thread_safe", "tracker"}
    assert stats["adapter_class"] == "Counter" and stats["thread_safe"] is True
    tracker = stats["tracker"]
    for key in (
        "total_requests",
        "completed_requests",
        "active_requests",
        "total_active_requests",
        "active_threads",
        "threads_seen",
        "requests_by_thread",
        "errors",
        "total_duration",
        "mean_duration",
        "max_duration",
    ):
        assert key in tracker
    stats["tracker"]["total_requests"] = 99
    assert adapter.get_stats()["tracker"]["total_requests"] == 0
    assert adapter.get_stats() is not adapter.get_stats()
    assert adapter.get_stats_dict() == adapter.get_stats()


def test_thread_safe_reflects_the_class_marker():
    class Unsafe(ThreadSafeAdapter):
        __thread_safe__ = False

    assert Unsafe().get_stats()["thread_safe"] is False


def test_one_rule_for_declared_thread_safe():
    """The nearest class that sets __thread_safe__ decides, only True declares, and
    ThreadSafeAdapter's own attribute (upstream's) is not a declaration."""

    class Undeclared(ThreadSafeAdapter):
        pass

    class Declared(ThreadSafeAdapter):
        __thread_safe__ = True

    class Inherits(Declared):
        pass

    class Revokes(Declared):
        __thread_safe__ = False

    class Truthy(ThreadSafeAdapter):
        __thread_safe__ = 1

    class PlainAdapter(BaseAdapter):
        __thread_safe__ = True

    expected = {
        Undeclared: False,
        Declared: True,
        Inherits: True,
        Revokes: False,
        Truthy: False,
        ThreadSafeAdapter: False,
        PlainAdapter: True,
        object: False,
    }
    assert {cls: _native.declares_thread_safe(cls) for cls in expected} == expected
    for cls in (Undeclared, Declared, Inherits, Revokes, Truthy):
        instance = cls()
        assert _native.declares_thread_safe(instance) is expected[cls]
        assert instance.get_stats()["thread_safe"] is expected[cls]
    instance = Undeclared()
    instance.__thread_safe__ = True  # an instance attribute is not the class's declaration
    assert instance.get_stats()["thread_safe"] is False


def test_overridden_get_stats_calling_get_stats_dict_does_not_recurse():
    class Guide(Counter):
        def get_stats(self) -> dict:
            with self.acquire_lock():
                stats = self.get_stats_dict()
                stats["total_requests"] = self.count
            return stats

    stats = Guide().get_stats()
    assert stats["total_requests"] == 0 and stats["adapter_class"] == "Guide"


def test_track_request_counts_like_a_call():
    adapter = Counter()
    with adapter.track_request():
        with adapter.track_request():  # nested: still one request
            assert adapter.get_stats()["tracker"]["active_requests"] == 1
    with pytest.raises(ValueError):
        with adapter.track_request():
            raise ValueError
    tracker = adapter.get_stats()["tracker"]
    assert tracker["total_requests"] == 2 and tracker["errors"] == 1
    assert tracker["active_requests"] == 0


def test_values_stored_while_a_thread_ends_are_released():
    adapter = Counter()
    made: list[weakref.ref] = []

    class Value:
        def __init__(self, store_again: bool) -> None:
            self.store_again = store_again
            made.append(weakref.ref(self))

        def __del__(self) -> None:
            if self.store_again:  # runs while the thread's storage is being released
                adapter.set_thread_local("again", Value(False))

    def body() -> None:
        adapter.set_thread_local("x", Value(True))

    for _ in range(50):
        thread = threading.Thread(target=body)
        thread.start()
        thread.join()
    gc.collect()
    assert sum(ref() is not None for ref in made) == 0
    assert _native._live_shards(adapter.tracker) == 0


def test_first_use_inside_name_lookup_reuses_the_record():
    adapter = Counter()
    seen: list[object] = []

    class NamedThread(threading.Thread):
        @property
        def name(self):  # threading asks for it; the library does too, on first use
            seen.append(adapter.get_thread_local("k", "unset"))
            adapter.set_thread_local("from-name", 1)
            return "named"

        @name.setter
        def name(self, value):
            pass

    errors: list[BaseException] = []
    results: list[object] = []

    def body() -> None:
        try:
            adapter.set_thread_local("k", "v")
            results.append(adapter.get_thread_local("k"))
            results.append(adapter.get_thread_local("from-name"))  # stored during the lookup
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    thread = NamedThread(target=body)
    thread.start()
    thread.join()
    assert errors == []
    assert results == ["v", 1]
    assert seen and seen[0] == "unset"
    assert _native._live_shards(adapter.tracker) == 0


def test_first_use_inside_the_name_conversion_keeps_what_it_made():
    """The record re-check, a second time and by another route than the test above: the
    thread's name is not a str, so creating the thread record converts it with str(); the
    conversion uses the library (a thread-local value and a whole tracked request), and the
    thread's first use is a decorated call rather than set_thread_local. The slot made during
    the conversion must be the one the decorated call then uses."""

    class Worker(ThreadSafeAdapter):
        @snakepit_bridge.thread_safe_method
        def work(self) -> tuple[object, int]:
            return self.get_thread_local("from-str"), _native._live_shards(self.tracker)

    adapter = Worker()
    conversions: list[object] = []

    class Name:
        def __str__(self) -> str:
            conversions.append(adapter.get_thread_local("from-str", "unset"))
            adapter.set_thread_local("from-str", "stored while converting")
            with adapter.track_request():
                pass
            return "converted"

    results: list[object] = []
    errors: list[BaseException] = []

    def body() -> None:
        try:
            results.append(adapter.work())
        except BaseException as exc:  # noqa: BLE001 - checked below
            errors.append(exc)

    thread = threading.Thread(target=body)
    thread._name = Name()  # type: ignore[assignment] # Thread.name hands it out as it is
    thread.start()
    thread.join()
    assert errors == []
    assert conversions == ["unset"]  # converted once: while the record was being created
    assert results == [("stored while converting", 1)]  # one slot, holding the value
    stats = adapter.get_stats()["tracker"]
    assert stats["total_requests"] == 2 and stats["requests_by_thread"] == {"converted": 2}
    assert _native._live_shards(adapter.tracker) == 0


def test_many_adapters_on_one_thread_keep_their_values_while_others_die():
    import random

    rng = random.Random(7)
    alive: dict[int, Counter] = {}
    for step in range(3_000):
        if alive and rng.random() < 0.45:
            del alive[rng.choice(list(alive))]  # freed at once: same thread
        else:
            adapter = Counter()
            adapter.set_thread_local("id", step)
            alive[step] = adapter
        if step % 97 == 0:
            for key, adapter in alive.items():
                assert adapter.get_thread_local("id") == key
    for key, adapter in alive.items():
        assert adapter.get_thread_local("id") == key
        assert _native._live_shards(adapter.tracker) == 1


def test_object_setattr_and_frozen_dataclass_subclasses_work():
    """object.__setattr__ on an adapter (what a frozen dataclass's __init__ uses) works on every
    version; 3.11 used to refuse it ("can't apply this __setattr__")."""
    import dataclasses

    class Plain(ThreadSafeAdapter):
        pass

    a = Plain()
    object.__setattr__(a, "x", 1)
    object.__delattr__(a, "x")
    assert not hasattr(a, "x")

    @dataclasses.dataclass(frozen=True)
    class Frozen(ThreadSafeAdapter):
        size: int = 0

    f = Frozen(3)
    assert f.size == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.size = 4  # type: ignore[misc]
    with f.acquire_lock():
        assert f.lock._is_owned()


def test_write_observer_sees_sets_and_deletes_through_every_ordinary_path():
    from snakepit_bridge import _native

    class Observed(ThreadSafeAdapter):
        def __init__(self) -> None:
            super().__init__()
            self.made = 1

    seen: list[tuple[str, bool]] = []

    def observer(adapter: object, name: str, owns: bool, deferred: object) -> None:
        assert deferred is None  # reported before the write, through __setattr__
        seen.append((name, owns))

    _native.set_write_observer(observer)
    try:
        a = Observed()
        a.x = 1
        a.y = 2
        with a.acquire_lock():
            a.x = 3
        del a.x
        delattr(a, "y")
        assert _native.report_pending_writes() == 0  # the watcher does not report them again
    finally:
        _native.set_write_observer(None)
    assert seen == [
        ("made", False),
        ("x", False),
        ("y", False),
        ("x", True),
        ("x", False),
        ("y", False),
    ]


# ---------------------------------------------------------------- writes that bypass __setattr__

needs_dict_watchers = pytest.mark.skipif(
    sys.version_info < (3, 12),
    reason="dict watchers (PyDict_AddWatcher) exist from 3.12; before, writes that bypass "
    "__setattr__ are not observed",
)

Report = tuple[object, object, bool, object]  # (adapter, name, owns_adapter_lock, deferred)


class Recorder:
    """A write observer that records every report (thread-safe), installed while in a with."""

    def __init__(self) -> None:
        self.reports: list[Report] = []
        self.threads: list[int] = []
        self._lock = threading.Lock()

    def __call__(self, adapter: object, name: object, owns: bool, deferred: object) -> None:
        with self._lock:
            self.reports.append((adapter, name, owns, deferred))
            self.threads.append(threading.get_ident())

    def names(self) -> list[object]:
        return [r[1] for r in self.reports]

    def __enter__(self) -> Recorder:
        _native.set_write_observer(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _native.set_write_observer(None)


def _line(marker: str) -> int:
    """The line of this file that holds `marker` in a comment."""
    with open(__file__) as source:
        return next(i for i, text in enumerate(source, 1) if f"# {marker}" in text)


def test_dict_writes_observed_says_whether_the_version_has_dict_watchers():
    assert _native.dict_writes_observed is (sys.version_info >= (3, 12))


class Plain(ThreadSafeAdapter):
    def __init__(self) -> None:
        super().__init__()
        self.made = 0


def _set(a: Plain) -> None:
    object.__setattr__(a, "x", 1)


def _delete(a: Plain) -> None:
    object.__delattr__(a, "made")


def _vars_set(a: Plain) -> None:
    vars(a)["x"] = 1


def _vars_delete(a: Plain) -> None:
    del vars(a)["made"]


def _vars_clear(a: Plain) -> None:
    vars(a).clear()


def _vars_update(a: Plain) -> None:
    vars(a).update(x=1, y=2)


def _vars_setdefault_pop(a: Plain) -> None:
    vars(a).setdefault("x", 1)
    vars(a).pop("made")


def _non_string_key(a: Plain) -> None:
    vars(a)[7] = "seven"


def _replaced_dict(a: Plain) -> None:
    a.__dict__ = {}  # through __setattr__: reported at once
    object.__setattr__(a, "x", 1)  # the new dict is watched
    vars(a)["y"] = 2


BYPASSING = {
    _set: ["x"],
    _delete: ["made"],
    _vars_set: ["x"],
    _vars_delete: ["made"],
    _vars_clear: ["__dict__"],
    _vars_update: ["x", "y"],
    _vars_setdefault_pop: ["x", "made"],
    _non_string_key: [7],
    _replaced_dict: ["__dict__", "x", "y"],
}


@needs_dict_watchers
@pytest.mark.parametrize("write", BYPASSING, ids=[f.__name__[1:] for f in BYPASSING])
def test_a_write_that_bypasses_setattr_is_reported_once_on_the_next_report_point(write):
    a = Plain()
    with Recorder() as seen:
        write(a)
        synchronous = [r for r in seen.reports if r[3] is None]  # only a.__dict__ = {}
        assert [r[1] for r in synchronous] == (["__dict__"] if write is _replaced_dict else [])
        delivered = _native.report_pending_writes()
        assert delivered == len(BYPASSING[write]) - len(synchronous)
        assert _native.report_pending_writes() == 0  # exactly once
    assert seen.names() == BYPASSING[write]
    assert all(r[0] is a and r[2] is False for r in seen.reports)
    assert all(r[3] == (__file__, r[3][1]) for r in seen.reports if r[3] is not None)


@needs_dict_watchers
def test_a_deferred_report_says_where_the_write_was_made_and_whether_the_lock_was_held():
    a = Plain()
    with Recorder() as seen:
        with a.acquire_lock():
            object.__setattr__(a, "held", 1)  # held-write
        object.__setattr__(a, "free", 1)  # free-write
        assert seen.reports == []  # nothing yet: no report point passed
        assert _native.report_pending_writes() == 2
    assert seen.reports == [
        (a, "held", True, (__file__, _line("held-write"))),
        (a, "free", False, (__file__, _line("free-write"))),
    ]


@needs_dict_watchers
def test_frozen_dataclass_init_writes_are_reported():
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class Frozen(ThreadSafeAdapter):
        size: int = 0
        name: str = ""

    with Recorder() as seen:
        f = Frozen(3, "three")
        _native.report_pending_writes()
    assert seen.names() == ["size", "name"]
    assert all(r[0] is f and r[3] is not None for r in seen.reports)
    assert (f.size, f.name) == (3, "three")


@needs_dict_watchers
def test_update_of_an_empty_instance_dict_is_reported_by_key_or_as_the_whole_dict():
    a = ThreadSafeAdapter()
    with Recorder() as seen:
        vars(a).update({"x": 1, "y": 2})
        _native.report_pending_writes()
    # CPython may clone a dict into an empty one, notifying once for the whole dict.
    assert seen.names() in (["x", "y"], ["__dict__"])
    assert vars(a) == {"x": 1, "y": 2}


class Dropper:
    """A value whose __del__ runs `action`: writes made while another store is in progress."""

    def __init__(self, action):
        self.action = action

    def __del__(self):
        self.action()


@needs_dict_watchers
def test_only_the_store_setattr_reported_is_left_out_not_the_writes_its_del_makes():
    a, b = Plain(), Plain()
    a.x = Dropper(lambda: (object.__setattr__(b, "y", 1), setattr(b, "z", 1)))
    a.w = Dropper(lambda: object.__setattr__(a, "w", 3))  # the same name, bypassing
    with Recorder() as seen:
        a.x = 2  # its old value's __del__ writes b twice, one of them bypassing
        a.w = 2  # its old value's __del__ writes w again, bypassing
        _native.report_pending_writes()
    assert [(r[0], r[1], r[3] is None) for r in seen.reports] == [
        (a, "x", True),
        (b, "y", False),  # delivered at b.z's report point
        (b, "z", True),
        (a, "w", True),
        (a, "w", False),  # the __del__'s own write of the same name is not left out
    ]
    assert a.w == 3


@needs_dict_watchers
def test_the_next_observed_write_and_decorated_calls_are_report_points():
    class Worker(ThreadSafeAdapter):
        @thread_safe_method
        def work(self) -> None:
            object.__setattr__(self, "inside", 1)

    calls: list[bool] = []
    a = Worker()
    with Recorder() as seen:
        object.__setattr__(a, "first", 1)
        a.second = 2  # delivers "first" before reporting itself
        assert seen.names() == ["first", "second"]
        _native.set_call_observer(lambda method, adapter, entering: calls.append(entering))
        try:
            a.work()  # "inside" is delivered when the call leaves, before the leave event
        finally:
            _native.set_call_observer(None)
        assert seen.names() == ["first", "second", "inside"]
    assert calls == [True, False]


@needs_dict_watchers
def test_an_observer_that_raises_on_a_deferred_report_is_unraisable_and_the_write_stands(
    monkeypatch,
):
    unraisable: list[BaseException | None] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda info: unraisable.append(info.exc_value))

    def failing(adapter: object, name: object, owns: bool, deferred: object) -> None:
        if deferred is not None:
            raise LookupError(name)

    a = Plain()
    _native.set_write_observer(failing)
    try:
        object.__setattr__(a, "x", 1)
        a.y = 2  # its report point: the deferred report fails, this write does not
        assert _native.report_pending_writes() == 0
    finally:
        _native.set_write_observer(None)
    assert [type(e) for e in unraisable] == [LookupError]
    assert unraisable[0].args == ("x",)
    assert (a.x, a.y) == (1, 2)


@needs_dict_watchers
def test_a_pending_exception_survives_a_report_point():
    a = Plain()
    with Recorder() as seen:
        object.__setattr__(a, "x", 1)
        try:
            raise KeyError("kept")
        except KeyError:
            # A report point inside an except block: the exception being handled is kept.
            a.y = 2
            assert sys.exc_info()[1].args == ("kept",)
    assert seen.names() == ["x", "y"]


def test_nothing_is_recorded_without_an_observer():
    a = Plain()
    before = _native._pending_writes()
    object.__setattr__(a, "x", 1)
    vars(a).clear()
    assert _native._pending_writes() == before
    assert _native.report_pending_writes() == 0


@needs_dict_watchers
def test_adapters_made_before_the_observer_are_observed():
    early = [Plain() for _ in range(3)]
    with Recorder() as seen:
        for i, a in enumerate(early):
            object.__setattr__(a, "n", i)
        _native.report_pending_writes()
    assert [(r[0], r[1]) for r in seen.reports] == [(a, "n") for a in early]


@needs_dict_watchers
def test_removing_or_replacing_the_observer_drops_what_was_recorded_for_it():
    a = Plain()
    first = Recorder()
    _native.set_write_observer(first)
    object.__setattr__(a, "x", 1)
    second = Recorder()
    _native.set_write_observer(second)  # replaced: "x" was recorded for the first one
    object.__setattr__(a, "y", 1)
    _native.set_write_observer(None)  # removed: "y" goes too
    assert _native._pending_writes()[0] == 0
    object.__setattr__(a, "z", 1)  # no observer: not recorded
    _native.set_write_observer(first)
    try:
        assert _native.report_pending_writes() == 0
    finally:
        _native.set_write_observer(None)
    assert first.reports == [] and second.reports == []


@needs_dict_watchers
def test_a_report_of_an_adapter_that_died_first_is_dropped():
    a = Plain()
    with Recorder() as seen:
        object.__setattr__(a, "x", 1)
        ref = weakref.ref(a)
        del a
        gc.collect()
        assert ref() is None
        assert _native.report_pending_writes() == 0
    assert seen.reports == []


@needs_dict_watchers
def test_reports_are_delivered_on_the_writing_thread_only():
    a = Plain()
    with Recorder() as seen:
        before = _native._pending_writes()[0]
        thread = threading.Thread(target=object.__setattr__, args=(a, "x", 1))
        thread.start()
        thread.join()
        assert _native.report_pending_writes() == 0  # not this thread's
        assert _native._pending_writes()[0] == before + 1  # its thread ended before a report point

        def writes_and_reports() -> None:
            object.__setattr__(a, "y", 1)
            assert _native.report_pending_writes() == 1

        thread = threading.Thread(target=writes_and_reports)
        thread.start()
        thread.join()
        assert seen.names() == ["y"] and seen.threads == [thread.ident]
    assert _native._pending_writes()[0] == 0  # dropped with the observer


@needs_dict_watchers
def test_a_dict_watched_for_a_dead_adapter_or_given_away_reports_nothing_for_it():
    a, b = Plain(), Plain()
    kept = vars(a)
    b.__dict__ = {}
    old_b = vars(b)  # replaced below: no longer b's
    b.__dict__ = {"fresh": 1}
    del a
    gc.collect()
    with Recorder() as seen:
        kept["x"] = 1
        old_b["y"] = 1
        vars(b)["z"] = 1
        _native.report_pending_writes()
    assert seen.names() == ["z"]


@needs_dict_watchers
def test_many_adapters_made_and_written_in_threads_are_reported_exactly():
    threads, rounds = 8, 300
    seen = Recorder()
    shared = Plain()
    dropped = _native._pending_writes()[1]  # over the process's life: other tests count too

    def worker(index: int) -> int:
        for i in range(rounds):
            a = Plain()
            object.__setattr__(a, "x", i)
            vars(a)["y"] = i
            a.__dict__ = {"replaced": i}
            # Racing bypass writes on one dict.  Fresh values: storing the very object a key
            # already holds changes nothing, and CPython does not notify it.
            object.__setattr__(shared, f"t{index}", [i])
            vars(shared)["common"] = [index, i]
            a.z = i  # a report point: delivers this round's bypass writes first
            del a
        return _native.report_pending_writes()

    with seen:
        left = run_threads(worker, threads)
    assert left == [0] * threads
    names = seen.names()
    for name, per_thread in [("x", 1), ("y", 1), ("__dict__", 1), ("z", 1), ("common", 1)]:
        assert names.count(name) == threads * rounds * per_thread, name
    for index in range(threads):
        assert names.count(f"t{index}") == rounds
    assert len(names) == threads * rounds * 7  # made: 1 more per adapter
    assert _native._pending_writes() == (0, dropped)


@needs_dict_watchers
def test_no_report_outlives_its_observer_while_threads_write_and_it_comes_and_goes():
    a = Plain()
    _native.set_write_observer(None)
    before = _native._pending_writes()[0]
    cycles, writers = 600, 3
    barrier = threading.Barrier(writers + 1)
    removed = [False] * cycles
    left_behind: list[int] = []

    def worker(index: int) -> None:
        for cycle in range(cycles):
            barrier.wait()  # the observer is installed
            if index == 0:
                for _ in range(2_000):  # let the writers write, then take it away under them
                    pass
                _native.set_write_observer(None)
                removed[cycle] = True
            else:
                while not removed[cycle]:
                    object.__setattr__(a, f"w{index}", [cycle])
            barrier.wait()  # every writer is out of its writes
            if index == 0:
                left_behind.append(_native._pending_writes()[0] - before)
                _native.set_write_observer(_ignore_report)  # for the next cycle

    _native.set_write_observer(_ignore_report)
    try:
        run_threads(worker, writers + 1)
    finally:
        _native.set_write_observer(None)
    # Every report recorded while a cycle's observer was installed went with it, even those
    # its writer was still recording when it was removed: none is left for the next observer.
    assert left_behind == [0] * cycles


def _ignore_report(adapter: object, name: object, owns: bool, deferred: object) -> None:
    pass


@needs_dict_watchers
def test_reports_beyond_the_bound_are_counted_and_dropped():
    a = Plain()
    with Recorder():
        pending, dropped = _native._pending_writes()
        for i in range(65536 + 10 - pending):
            vars(a)["k"] = i
        assert _native._pending_writes() == (65536, dropped + 10)
        assert _native.report_pending_writes() == 65536
    assert _native._pending_writes()[0] == 0


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.12+ observes these writes")
def test_before_3_12_writes_that_bypass_setattr_are_not_observed():
    a = Plain()
    with Recorder() as seen:
        object.__setattr__(a, "x", 1)
        vars(a)["y"] = 2
        assert _native.report_pending_writes() == 0
        a.__dict__ = {}
    assert seen.names() == ["__dict__"]


def _run(code: str) -> str:
    import subprocess
    import textwrap

    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@needs_dict_watchers
def test_without_a_dict_watcher_id_left_an_instance_warns_and_observes_setattr_only():
    out = _run(
        """
        import importlib, sys, warnings
        import snakepit_bridge
        for attempt in range(8):  # CPython has 8 ids; each instance takes one
            sys.modules.pop("snakepit_bridge._native", None)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                native = importlib.import_module("snakepit_bridge._native")
            if not native.dict_writes_observed:
                break
        print([(w.category.__name__, "no dict watcher id is left" in str(w.message))
               for w in caught])
        class A(native.ThreadSafeAdapter):
            pass
        seen = []
        native.set_write_observer(lambda a, name, owns, deferred: seen.append(name))
        a = A()
        a.x = 1
        object.__setattr__(a, "y", 2)
        a.__dict__ = {"z": 3}
        print(native.report_pending_writes(), seen, vars(a))
        """
    )
    assert out.splitlines() == [
        "[('RuntimeWarning', True)]",
        "0 ['x', '__dict__'] {'z': 3}",
    ]


@needs_dict_watchers
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX fork")
def test_a_forked_child_keeps_only_its_own_threads_reports():
    out = _run(
        """
        import os, threading
        from snakepit_bridge import _native, ThreadSafeAdapter
        a = ThreadSafeAdapter()
        seen = []
        _native.set_write_observer(lambda a, name, owns, deferred: seen.append(name))
        thread = threading.Thread(target=object.__setattr__, args=(a, "theirs", 1))
        thread.start()
        thread.join()
        object.__setattr__(a, "mine", 1)
        pid = os.fork()
        if pid == 0:
            ok = _native._pending_writes()[0] == 1 and _native.report_pending_writes() == 1
            os._exit(0 if ok and seen == ["mine"] else 3)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), _native._pending_writes()[0])
        """
    )
    assert out.split() == ["0", "2"]


def test_a_class_with_its_own_setattr_is_not_taken_for_an_adapter():
    """The decorator's fast adapter test must not accept other classes (on 3.11 every class with
    a Python-level __setattr__ shares one slot function)."""

    class NotAnAdapter:
        def __setattr__(self, name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        @thread_safe_method
        def work(self) -> str:
            return "called through"

    assert NotAnAdapter().work() == "called through"


# ---------------------------------------------------------------- copying


class Model(ThreadSafeAdapter):
    __thread_safe__ = True

    def __init__(self, size: int) -> None:  # needs an argument: copies must not call it
        super().__init__()
        self.size = size
        self.items = [1, 2]

    @snakepit_bridge.thread_safe_method
    def work(self) -> int:
        return self.size


class SlottedModel(ThreadSafeAdapter):
    __slots__ = ("weights",)


def test_copy_is_shallow_with_its_own_lock_tracker_and_thread_locals():
    import copy

    original = Model(3)
    original.set_thread_local("k", "mine")
    original.work()
    with original.acquire_lock():
        clone = copy.copy(original)
        assert not clone.lock.locked()  # a fresh lock: the original's holder does not hold it
        assert clone.lock.acquire(blocking=False)
        clone.lock.release()
    assert type(clone) is Model and clone is not original
    assert clone.size == 3 and clone.items is original.items  # attributes: the same objects
    assert clone.lock is not original.lock and clone.tracker is not original.tracker
    assert clone.get_thread_local("k", "none") == "none"  # thread-local storage starts empty
    assert clone.get_stats()["tracker"]["total_requests"] == 0
    assert clone.work() == 3
    assert original.get_stats()["tracker"]["total_requests"] == 1
    assert clone.get_stats()["tracker"]["total_requests"] == 1
    clone.size = 4
    assert original.size == 3


def test_deepcopy_copies_attributes_deeply_and_keeps_cycles():
    import copy

    original = Model(2)
    original.me = original
    original.set_thread_local("k", "mine")
    clone = copy.deepcopy(original)
    assert clone.items == [1, 2] and clone.items is not original.items
    assert clone.me is clone
    assert clone.lock is not original.lock and clone.get_thread_local("k") is None
    clone.items.append(3)
    assert original.items == [1, 2]


def test_copy_keeps_slots_but_not_the_session_context():
    """Slot attributes are copied.  The session context belongs to the request being served
    (it is stored per execution context and adapter, see snakepit_bridge.context), not to the
    adapter's state, so a copy starts without one."""
    import copy

    class Context:
        session_id = "s-9"

    original = SlottedModel()
    original.weights = [0.5]
    original.set_session_context(Context())
    for clone in (copy.copy(original), copy.deepcopy(original)):
        assert clone.weights == [0.5] and clone.session_id is None
    assert original.session_id == "s-9"
    assert copy.copy(original).weights is original.weights
