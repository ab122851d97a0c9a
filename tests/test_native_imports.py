"""The import paths users write keep working, and upstream's helper names exist."""

from __future__ import annotations

import pytest

import snakepit_bridge
from _threads import run_threads
from snakepit_bridge import _native
from snakepit_bridge.base_adapter_threaded import (
    ThreadLocalStorage,
    ThreadSafeAdapter,
    require_thread_safe,
    thread_safe_method,
    tool,
    validate_thread_safety,
)


def test_root_and_threaded_module_export_the_same_objects():
    assert snakepit_bridge.ThreadSafeAdapter is ThreadSafeAdapter is _native.ThreadSafeAdapter
    assert snakepit_bridge.thread_safe_method is thread_safe_method is _native.thread_safe_method
    assert snakepit_bridge.tool is tool
    assert snakepit_bridge.__version__ == _native.__version__


def test_thread_local_storage_helper():
    storage = ThreadLocalStorage()
    storage.set("k", 1)
    assert storage.get("k") == 1 and storage.get("x", 2) == 2
    assert run_threads(lambda _: storage.get("k"), 2) == [None, None]
    storage.delete("k")
    storage.delete("k")
    assert storage.get("k") is None
    storage.set("a", 1)
    storage.clear()
    assert storage.get("a") is None


def test_validate_and_require_thread_safe():
    """Upstream's names follow the one rule (tests/test_declaration.py has all of it)."""

    class Undeclared(ThreadSafeAdapter):
        pass

    class Safe(ThreadSafeAdapter):
        __thread_safe__ = True

    class Unsafe(ThreadSafeAdapter):
        __thread_safe__ = False

    assert validate_thread_safety(Safe) and validate_thread_safety(Safe())
    assert not validate_thread_safety(Undeclared) and not validate_thread_safety(Unsafe)
    assert not validate_thread_safety(type("One", (), {"__thread_safe__": 1}))

    @require_thread_safe
    def run(adapter):
        return "ran"

    assert run(Safe()) == "ran"
    with pytest.raises(ValueError, match="Unsafe declares itself not thread-safe"):
        run(Unsafe())
    with pytest.raises(ValueError, match="Undeclared does not declare thread safety"):
        run(Undeclared())


def test_one_spelling_for_the_bucket_of_threads_past_a_limit():
    from snakepit_bridge import base_adapter_threaded
    from snakepit_bridge import thread_safety_checker as tsc
    from snakepit_bridge.adapters import threaded_showcase

    # The native tracker's key is checked against it in test_native_tracker.py.
    assert tsc.OTHER_THREADS is base_adapter_threaded.OTHER_THREADS
    assert threaded_showcase.OTHER_THREADS is base_adapter_threaded.OTHER_THREADS


def test_the_checker_is_importable_from_the_package_root_lazily():
    """`from snakepit_bridge import ThreadSafetyChecker` works (the README lists it there), and
    importing the package alone does not load the checker."""
    import subprocess
    import sys

    probe = (
        "import sys, snakepit_bridge\n"
        "assert 'snakepit_bridge.thread_safety_checker' not in sys.modules\n"
        "from snakepit_bridge import ThreadSafetyChecker\n"
        "from snakepit_bridge.thread_safety_checker import ThreadSafetyChecker as Facade\n"
        "assert ThreadSafetyChecker is Facade\n"
        "assert 'ThreadSafetyChecker' in snakepit_bridge.__all__\n"
        "try:\n"
        "    snakepit_bridge.NoSuchName\n"
        "except AttributeError as exc:\n"
        "    assert 'NoSuchName' in str(exc)\n"
        "else:\n"
        "    raise SystemExit('no AttributeError')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
