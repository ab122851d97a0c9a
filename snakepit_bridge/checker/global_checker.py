"""The process-wide checker (``enable_checking`` and friends) and the checks users call.

The global checker is one object for the life of the process, disabled until
:func:`enable_checking`; :func:`validate_adapter_thread_safety` consults its strict mode.
:func:`check_thread_safe` reports calls of any function to every enabled checker.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from snakepit_bridge.checker import hooks
from snakepit_bridge.checker.lockset import ThreadSafetyChecker, checked_strict_mode
from snakepit_bridge.declaration import declaration_problem

__all__ = [
    "check_thread_safe",
    "disable_checking",
    "enable_checking",
    "get_global_checker",
    "validate_adapter_thread_safety",
]

_P = ParamSpec("_P")
_R = TypeVar("_R")

_global_checker = ThreadSafetyChecker(enabled=False)
_global_lock = threading.Lock()


def enable_checking(strict_mode: bool = False) -> ThreadSafetyChecker:
    """Reset the global checker, set its mode and enable it. Returns it.

    The global checker is one object for the life of the process, so references to it stay
    valid (upstream replaced it on every call). ``strict_mode`` must be a bool (``TypeError``
    otherwise, before anything changes).
    """
    strict_mode = checked_strict_mode(strict_mode)
    with _global_lock:
        _global_checker.reset()
        _global_checker.strict_mode = strict_mode
        _global_checker.enabled = True
    return _global_checker


def disable_checking() -> None:
    """Stop the global checker observing; its report stays readable."""
    with _global_lock:
        _global_checker.enabled = False


def get_global_checker() -> ThreadSafetyChecker:
    """The process-wide checker that :func:`enable_checking` switches on."""
    return _global_checker


def check_thread_safe(func: Callable[_P, _R]) -> Callable[_P, _R]:
    """Report each call of ``func`` to every enabled checker (for functions that are not
    ``thread_safe_method``\\ s). Calls are keyed by module and qualified name."""
    key = f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"

    @functools.wraps(func)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        checkers = hooks.live_checkers() if hooks.any_enabled() else ()
        if not checkers:
            return func(*args, **kwargs)
        for checker in checkers:
            checker._enter_call(key)
        try:
            return func(*args, **kwargs)
        finally:
            for checker in checkers:
                checker._leave_call(key)

    return wrapper


def validate_adapter_thread_safety(adapter_class: type | object) -> bool:
    """Whether the class (or an instance's class) declares itself thread-safe (the rule of
    :mod:`snakepit_bridge.declaration`). While the global checker is enabled in strict mode, a
    class that does not raises ValueError saying why."""
    problem = declaration_problem(adapter_class)
    if problem is None:
        return True
    if _global_checker.enabled and _global_checker.strict_mode:
        raise ValueError(problem)
    return False
