"""The standard library's own lock tests, run against our lock.

CPython's ``test_threading`` runs the suites of ``test.lock_tests`` against each of its lock
types (``RLockTests`` for ``_PyRLock`` and ``_CRLock``, ``ConditionTests`` for ``Condition``,
``RLockTests`` again for a ``Condition`` used as a lock). The same suites run here against
``snakepit_bridge.RLock`` and against the lock of a ``ThreadSafeAdapter``: the
``threading.RLock`` contract as the standard library itself checks it, next to our own tests in
test_native_rlock.py.
"""

from __future__ import annotations

import threading
from typing import Any

from test import lock_tests

from snakepit_bridge import RLock, ThreadSafeAdapter


def adapter_lock() -> Any:
    """The lock of a fresh adapter (which may be collected: the lock must not need it)."""
    return ThreadSafeAdapter().lock


class LoadTolerantTimeouts:
    """The suites' ``assertTimeout`` also fails a wait that took ten times its timeout, which a
    busy machine produces (a 0.1 s ``wait_for`` took 1.02 s with a load average near 10). The
    contract is the lower bound, that a timed wait does not return early; an upper bound is a
    timing assertion this suite does not make. A wait that never returns is still caught, by
    the suite's per-test limit."""

    def assertTimeout(self, actual: float, expected: float) -> None:
        assert actual >= expected * 0.6, (actual, expected)


class NativeRLockTests(LoadTolerantTimeouts, lock_tests.RLockTests):
    locktype = staticmethod(RLock)


class AdapterLockTests(LoadTolerantTimeouts, lock_tests.RLockTests):
    locktype = staticmethod(adapter_lock)


class ConditionOverNativeRLockTests(LoadTolerantTimeouts, lock_tests.ConditionTests):
    @staticmethod
    def condtype(lock: Any = None) -> threading.Condition:
        return threading.Condition(RLock() if lock is None else lock)


class ConditionOverAdapterLockTests(LoadTolerantTimeouts, lock_tests.ConditionTests):
    @staticmethod
    def condtype(lock: Any = None) -> threading.Condition:
        return threading.Condition(adapter_lock() if lock is None else lock)


class ConditionAsNativeRLockTests(LoadTolerantTimeouts, lock_tests.RLockTests):
    """A Condition over our lock exports the lock's API (as test_threading checks for its own)."""

    @staticmethod
    def locktype() -> threading.Condition:
        return threading.Condition(RLock())

    def test_recursion_count(self) -> None:
        self.skipTest("Condition does not expose _recursion_count() (as in test_threading)")
