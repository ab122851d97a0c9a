"""The threading.RLock contract, for the native RLock and for every adapter's lock."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest

from _threads import run_threads
from snakepit_bridge import RLock, ThreadSafeAdapter, _native


class Plain(ThreadSafeAdapter):
    pass


@pytest.fixture(params=["standalone", "adapter"])
def lock(request):
    return RLock() if request.param == "standalone" else Plain().lock


def test_reacquire_and_release_levels(lock):
    assert lock.acquire()
    assert lock.acquire()
    assert lock._recursion_count() == 2
    lock.release()
    assert lock._is_owned()
    lock.release()
    assert not lock._is_owned()
    assert not lock.locked()


def test_release_unowned_raises(lock):
    with pytest.raises(RuntimeError, match="un-acquired"):
        lock.release()


def test_release_from_other_thread_raises(lock):
    lock.acquire()
    caught: list[BaseException] = []

    def other() -> None:
        try:
            lock.release()
        except RuntimeError as exc:
            caught.append(exc)

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert len(caught) == 1
    assert lock._is_owned()
    lock.release()


def test_recursion_count_is_per_thread(lock):
    lock.acquire()
    lock.acquire()
    try:
        assert lock._recursion_count() == 2
        # Another thread does not own it, whatever level the owner holds it at.
        assert run_threads(lambda _: (lock._recursion_count(), lock._is_owned()), 1) == [(0, False)]
    finally:
        lock.release()
        lock.release()
    assert lock._recursion_count() == 0


def test_release_from_another_thread_leaves_the_owner_holding_it(lock):
    """Independent of test_release_from_other_thread_raises: a level above one, __exit__ as
    well as release(), and the owner's view checked from a third thread and by the owner."""
    lock.acquire()
    lock.acquire()
    owner = threading.get_ident()
    try:

        def intrude(_: int) -> list[str]:
            caught = []
            for attempt in (lock.release, lambda: lock.__exit__(None, None, None)):
                try:
                    attempt()
                except RuntimeError as exc:
                    caught.append(type(exc).__name__)
            return caught

        assert run_threads(intrude, 1) == [["RuntimeError", "RuntimeError"]]
        assert _native.lock_owner(lock) == owner
        assert run_threads(lambda _: lock.acquire(blocking=False), 1) == [False]
        assert lock._recursion_count() == 2
    finally:
        lock.release()
        lock.release()
    assert not lock.locked()
    assert run_threads(lambda _: lock.acquire(blocking=False) and (lock.release() or True), 1) == [
        True
    ]


def test_locked_reports_any_holder(lock):
    held = threading.Event()
    done = threading.Event()

    def holder() -> None:
        with lock:
            held.set()
            done.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(10)
    try:
        assert lock.locked()
        assert not lock._is_owned()
        assert _native.lock_owner(lock) == thread.ident
        assert lock.acquire(blocking=False) is False
        started = time.monotonic()
        assert lock.acquire(timeout=0.05) is False
        assert time.monotonic() - started >= 0.04
    finally:
        done.set()
        thread.join()
    assert lock.acquire(timeout=1) is True
    lock.release()


class BadBool:
    def __bool__(self) -> bool:
        raise ZeroDivisionError


def test_arguments_by_position_and_name(lock):
    assert lock.acquire(False) is True
    assert lock.acquire(True, 1) is True
    assert lock.acquire(blocking=True, timeout=-1) is True
    assert lock.acquire(timeout=0.5, blocking=1) is True
    assert lock.acquire(0) is True  # any truth value; reentrant, so it succeeds
    assert lock._recursion_count() == 5
    for _ in range(5):
        lock.release()
    assert not lock.locked()


def test_bad_arguments(lock):
    with pytest.raises(ValueError, match="non-blocking"):
        lock.acquire(False, 1)
    with pytest.raises(ValueError, match="non-negative"):
        lock.acquire(timeout=-2)
    with pytest.raises(ValueError, match="NaN"):
        lock.acquire(timeout=float("nan"))
    with pytest.raises(OverflowError):
        lock.acquire(timeout=1e300)
    with pytest.raises(TypeError):
        lock.acquire(timeout="1")
    with pytest.raises(TypeError, match="at most 2 arguments"):
        lock.acquire(True, 1, 2)
    with pytest.raises(TypeError, match="unexpected keyword argument 'wait'"):
        lock.acquire(wait=True)
    with pytest.raises(TypeError, match="multiple values for argument 'blocking'"):
        lock.acquire(True, blocking=True)
    with pytest.raises(ZeroDivisionError):
        lock.acquire(BadBool())
    with pytest.raises(TypeError):
        lock._acquire_restore("nope")
    for bad in ((-1, 1), (0, 1), (1, 0)):
        with pytest.raises((ValueError, OverflowError)):
            lock._acquire_restore(bad)
    assert not lock.locked()


def test_with_releases_on_exception(lock):
    with pytest.raises(KeyError):
        with lock:
            with lock:
                raise KeyError("boom")
    assert not lock.locked()


def test_release_save_and_restore(lock):
    with pytest.raises(RuntimeError):
        lock._release_save()
    lock.acquire()
    lock.acquire()
    state = lock._release_save()
    assert not lock.locked()
    lock._acquire_restore(state)
    assert lock._recursion_count() == 2
    lock.release()
    lock.release()
    assert not lock.locked()


def test_condition_wait_and_notify(lock):
    condition = threading.Condition(lock)
    items: list[int] = []

    def consumer(_: int) -> int:
        with condition:
            with condition:  # reentrant: wait() must release every level
                assert condition.wait_for(lambda: items, timeout=10)
                return items[0]

    def producer() -> None:
        time.sleep(0.05)
        with condition:
            items.append(42)
            condition.notify_all()

    thread = threading.Thread(target=producer)
    thread.start()
    assert run_threads(consumer, 4) == [42, 42, 42, 42]
    thread.join()
    assert not lock.locked()


def test_condition_wait_timeout(lock):
    condition = threading.Condition(lock)
    with condition:
        assert condition.wait(0.01) is False
        assert lock._is_owned()
    assert not lock.locked()


def test_mutual_exclusion_oracle(lock):
    # An unlocked read-modify-write counter is exact only if the lock excludes.
    counter = [0]
    threads, iterations = 8, 5_000

    def work(_: int) -> None:
        for _ in range(iterations):
            with lock:
                value = counter[0]
                counter[0] = value + 1

    run_threads(work, threads)
    assert counter[0] == threads * iterations


def test_with_statement_and_its_methods(lock):
    with lock as entered:
        assert entered is True  # as threading.RLock's __enter__
        assert lock._recursion_count() == 1
    assert lock.__enter__() is True
    assert lock.__exit__(None, None, None) is None
    assert lock.__enter__() is True
    assert lock.__exit__() is None  # any arguments, as threading.RLock's C __exit__
    # Unbound, as contextlib.ExitStack calls them.
    assert type(lock).__enter__(lock) is True
    assert type(lock).__exit__(lock, None, None, None) is None
    assert not lock.locked()
    with contextlib.ExitStack() as stack:
        assert stack.enter_context(lock) is True
        assert stack.enter_context(lock) is True
        assert lock._recursion_count() == 2
    assert not lock.locked()
    with pytest.raises(RuntimeError, match="un-acquired"):
        lock.__exit__(None, None, None)
    with pytest.raises(TypeError, match="takes 0 positional arguments"):
        lock.__enter__(1)
    with pytest.raises(TypeError, match="keyword"):
        lock.__enter__(blocking=False)
    with pytest.raises(TypeError, match="keyword"):
        lock.__exit__(exc_type=None)
    with pytest.raises(TypeError, match="needs an RLock"):
        type(lock).__enter__(object())
    with pytest.raises(TypeError, match="needs an RLock"):
        type(lock).__exit__(object(), None, None, None)
    with pytest.raises(TypeError, match="needs an RLock"):
        type(lock).__exit__()
    with pytest.raises(TypeError, match="needs an RLock"):
        type(lock).__dict__["__enter__"].__get__(object())
    assert not lock.locked()  # no failed call acquired or released
    assert lock.__enter__.__name__ == "__enter__" and lock.__exit__.__name__ == "__exit__"
    assert "RLock object" in repr(lock.__enter__)


def test_bound_methods_keep_the_lock_alive():
    import gc
    import weakref

    lock = RLock()
    ref = weakref.ref(lock)
    enter, exit_ = lock.__enter__, lock.__exit__
    others = [lock.__enter__ for _ in range(3)]  # more alive than the lock keeps spare
    del lock
    gc.collect()
    assert ref() is not None
    assert enter() is True
    assert others[0]() is True
    assert exit_(None, None, None) is None
    assert exit_(None, None, None) is None
    del enter, exit_, others
    gc.collect()
    assert ref() is None


def test_with_a_temporary_lock():
    # `with` keeps only the bound __exit__: it alone keeps the lock alive during the body.
    with RLock() as entered:
        assert entered is True
    for _ in range(3):
        with RLock():
            pass


def test_repr_shows_state(lock):
    assert "unlocked" in repr(lock)
    with lock:
        assert repr(lock).startswith("<locked ") and "count=1" in repr(lock)


def test_rlock_takes_no_arguments_and_is_final():
    with pytest.raises(TypeError):
        RLock(1)
    with pytest.raises(TypeError):
        type("Sub", (RLock,), {})


def test_blocked_waiter_does_not_stop_gc_or_other_threads(lock):
    import gc

    held, done = threading.Event(), threading.Event()
    waiting = threading.Event()
    result: list[bool] = []

    def holder() -> None:
        with lock:
            held.set()
            done.wait(20)

    def waiter() -> None:
        waiting.set()
        result.append(lock.acquire(timeout=20))
        lock.release()

    threads = [threading.Thread(target=holder), threading.Thread(target=waiter)]
    threads[0].start()
    held.wait(10)
    threads[1].start()
    waiting.wait(10)
    time.sleep(0.05)  # let the waiter block inside acquire()
    assert result == []  # still blocked behind the holder
    # A collection needs every thread to reach a safe point (stop-the-world on 3.13t).
    gc.collect()
    counter = run_threads(lambda i: sum(range(1000)), 4)
    assert counter == [499500] * 4
    done.set()
    for thread in threads:
        thread.join(20)
    assert result == [True]
