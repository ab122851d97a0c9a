"""The tests' checker helpers: leave the global checker as found, count live checkers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from snakepit_bridge import thread_safety_checker as tsc
from snakepit_bridge.checker import hooks


@contextmanager
def no_global_checking() -> Iterator[None]:
    """Make sure a test leaves the global checker disabled, whatever it did."""
    try:
        yield
    finally:
        tsc.disable_checking()
        tsc.get_global_checker().strict_mode = False


def live_checker_count() -> int:
    """How many checkers currently observe adapters."""
    return len(hooks.live_checkers())
