"""A runtime thread-safety checker for adapters.

While at least one :class:`ThreadSafetyChecker` is enabled, the native core reports every write
(or delete) of an adapter instance attribute and every entry into and exit from a
``@thread_safe_method``. The checker uses them to find:

* **Unprotected shared writes** (warnings). Per adapter and attribute it runs the state machine
  of the Eraser lockset algorithm, reduced to writes: an attribute is *exclusive* to the first
  thread that writes it (construction in ``__init__``, set-up before threads start); once a
  second thread writes it, it is *shared* and every write must hold a guarding lock: the
  adapter's own lock (``with self.acquire_lock():``), the lock named for that attribute in the
  class's ``__guarded_by__`` mapping, or - when the attribute has no declaration - any lock
  held in one of the adapter's attributes (an approximation: see
  :func:`snakepit_bridge.checker.locks.user_lock_held`).
  A write without one is a race: a :class:`ThreadSafetyWarning` naming class, attribute, threads
  and source line, once per class and attribute; in strict mode a :class:`ThreadSafetyError` at
  every racy write.
* **Concurrent calls** (information, never a warning): how many calls of each tracked method
  were in flight at the same time.
* **Thread-unsafe libraries** in ``sys.modules`` (:meth:`ThreadSafetyChecker.check_library_safety`).
* **Undeclared adapter classes**: classes that do not declare themselves thread-safe (the rule of
  :mod:`snakepit_bridge.declaration`: the nearest class that sets ``__thread_safe__`` decides, and
  ThreadSafeAdapter's own attribute does not count).

What it cannot see: in-place mutation of a shared object (``self.items.append(x)``,
``self.totals[k] += 1``) is not an attribute write; reads are not observed, so an unlocked read of
a value written under the lock is not reported; state outside adapter instances (module globals,
class attributes) is not observed.

Observation costs nothing when no checker is enabled: the native hooks are installed only while
one is, and removed when the last one is disabled or collected.

This module is the façade users import; the implementation is the :mod:`snakepit_bridge.checker`
package, one module per concern (its docstring lists them).
"""

from __future__ import annotations

from snakepit_bridge.checker.errors import ThreadSafetyError, ThreadSafetyWarning
from snakepit_bridge.checker.global_checker import (
    _global_checker,
    check_thread_safe,
    disable_checking,
    enable_checking,
    get_global_checker,
    validate_adapter_thread_safety,
)
from snakepit_bridge.checker.lockset import (
    MAX_ATTRIBUTES_PER_ADAPTER,
    MAX_CLASSES_CHECKED,
    MAX_METHODS_PER_THREAD,
    MAX_THREAD_ENTRIES,
    MAX_TRACKED_ADAPTERS,
    MAX_TRACKED_ATTRIBUTES,
    MAX_TRACKED_METHODS,
    MAX_WARNINGS,
    OTHER_THREADS,
    ThreadSafetyChecker,
)
from snakepit_bridge.checker.pitfalls import check_common_pitfalls
from snakepit_bridge.checker.report import print_thread_safety_report
from snakepit_bridge.declaration import require_thread_safe

# Upstream's name for the one decorator (snakepit_bridge.declaration.require_thread_safe, also
# importable as base_adapter_threaded.require_thread_safe).
require_thread_safe_adapter = require_thread_safe

__all__ = [
    "MAX_ATTRIBUTES_PER_ADAPTER",
    "MAX_CLASSES_CHECKED",
    "MAX_METHODS_PER_THREAD",
    "MAX_THREAD_ENTRIES",
    "MAX_TRACKED_ADAPTERS",
    "MAX_TRACKED_ATTRIBUTES",
    "MAX_TRACKED_METHODS",
    "MAX_WARNINGS",
    "OTHER_THREADS",
    "ThreadSafetyChecker",
    "ThreadSafetyError",
    "ThreadSafetyWarning",
    "_global_checker",
    "check_common_pitfalls",
    "check_thread_safe",
    "disable_checking",
    "enable_checking",
    "get_global_checker",
    "print_thread_safety_report",
    "require_thread_safe_adapter",
    "validate_adapter_thread_safety",
]
