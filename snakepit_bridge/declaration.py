"""The one rule for "this adapter class declares itself thread-safe", and what is built on it.

**The rule** (docs/api.md, "Declaring an adapter thread-safe"): the nearest class of the MRO
that sets ``__thread_safe__`` in its own class body decides, and only the bool ``True``
declares. ``ThreadSafeAdapter``'s own ``__thread_safe__ = True`` (upstream's attribute) is not a
declaration: deriving from it says nothing about the subclass's code. An instance attribute
does not count either. So a subclass of a declared class is declared until it sets
``__thread_safe__ = False`` itself.

The yes/no comes from the native core, :func:`snakepit_bridge._native.declares_thread_safe`,
which ``get_stats()["thread_safe"]`` uses too; this module only adds *why not* (for messages)
and the helpers upstream's users import: ``validate_thread_safety`` and ``require_thread_safe``
from :mod:`snakepit_bridge.base_adapter_threaded`, ``validate_adapter_thread_safety`` and
``require_thread_safe_adapter`` from :mod:`snakepit_bridge.thread_safety_checker`. The checker
and the worker server decide with it as well.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from typing import Any, Final, TypeVar

from snakepit_bridge._native import ThreadSafeAdapter, declares_thread_safe

__all__ = [
    "Declaration",
    "declaration_of",
    "declaration_problem",
    "declares_thread_safe",
    "require_thread_safe",
    "validate_thread_safety",
]

_R = TypeVar("_R")
_MISSING: Final = object()


class Declaration(enum.Enum):
    """What an adapter class says about its thread safety."""

    DECLARED = "declared"  # the deciding class sets __thread_safe__ = True
    UNDECLARED = "undeclared"  # no class of its own sets it
    REFUSED = "refused"  # the deciding class sets a false value: not thread-safe
    INVALID = "invalid"  # the deciding class sets a true value that is not the bool True


def _class_of(cls_or_adapter: object) -> type:
    return cls_or_adapter if isinstance(cls_or_adapter, type) else type(cls_or_adapter)


def declaration_of(cls_or_adapter: object) -> tuple[Declaration, Any, type | None]:
    """``(kind, value, deciding class)`` for a class or an instance's class.

    ``value`` and the deciding class are ``None`` for :attr:`Declaration.UNDECLARED`.
    """
    cls = _class_of(cls_or_adapter)
    owner: type | None = None
    value: Any = _MISSING
    for klass in cls.__mro__:  # the walk of the native rule, to say which class decided
        if klass is ThreadSafeAdapter:
            break  # upstream's attribute on the base class is not a declaration
        value = vars(klass).get("__thread_safe__", _MISSING)
        if value is not _MISSING:
            owner = klass
            break
    if declares_thread_safe(cls):  # the native core decides
        return Declaration.DECLARED, True, owner
    if value is _MISSING:
        return Declaration.UNDECLARED, None, None
    if not value:
        return Declaration.REFUSED, value, owner
    return Declaration.INVALID, value, owner


def declaration_problem(cls_or_adapter: object) -> str | None:
    """Why the class does not count as declared thread-safe, or ``None`` when it does."""
    kind, value, owner = declaration_of(cls_or_adapter)
    cls = _class_of(cls_or_adapter)
    name = cls.__name__
    where = "" if owner is None or owner is cls else f", set by {owner.__name__}"
    if kind is Declaration.DECLARED:
        return None
    if kind is Declaration.UNDECLARED:
        return (
            f"Adapter {name} does not declare thread safety: add `__thread_safe__ = True` to "
            "its class body once its shared state is locked (inheriting it from "
            "ThreadSafeAdapter is not a declaration)."
        )
    if kind is Declaration.REFUSED:
        return (
            f"Adapter {name} declares itself not thread-safe (__thread_safe__ = "
            f"{value!r}{where}): run it with the process worker profile."
        )
    return f"Adapter {name} sets __thread_safe__ = {value!r}{where}; it must be the bool True."


def validate_thread_safety(adapter_class: type | object) -> bool:
    """Whether the class (or an instance's class) declares itself thread-safe (the rule)."""
    return declares_thread_safe(adapter_class)


def require_thread_safe(func: Callable[..., _R]) -> Callable[..., _R]:
    """Decorator: refuse, with ``ValueError`` saying why, to call ``func(adapter, ...)`` unless
    the adapter's class declares itself thread-safe (the rule)."""

    @functools.wraps(func)
    def wrapper(adapter: Any, /, *args: Any, **kwargs: Any) -> _R:
        problem = declaration_problem(adapter)
        if problem is not None:
            raise ValueError(problem)
        return func(adapter, *args, **kwargs)

    return wrapper
