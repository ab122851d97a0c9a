"""Finding and building the adapter a command names: ``module:Class`` in, an instance out.

Used by the command line (``snakepit-bridge hammer`` / ``tools``) and the worker server. Failures
are one line each, for a one-line error on stderr: :class:`AdapterLoadError` when the name
cannot be resolved to an adapter class (the user's mistake, exit status 2), and
:class:`AdapterConstructionError` when the class raises while being built (the adapter's bug,
exit status 1, the original exception chained as ``__cause__``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = [
    "DEFAULT_ADAPTER",
    "AdapterConstructionError",
    "AdapterLoadError",
    "adapter_spec",
    "construct_adapter",
    "exception_summary",
    "load_adapter_class",
]

# The built-in showcase: what `snakepit-bridge hammer` and `tools` run without an argument.
DEFAULT_ADAPTER = "snakepit_bridge.adapters.threaded_showcase:ThreadedShowcaseAdapter"


class AdapterLoadError(Exception):
    """The named adapter cannot be loaded: no such module or class, a module that fails (or
    exits) while being imported, or an object that is not an adapter class."""


class AdapterConstructionError(Exception):
    """The adapter class raised while being instantiated (a bug in the adapter).

    The original exception is the ``__cause__``.
    """


def load_adapter_class(spec: str) -> type:
    """Import the adapter class named by ``module:Class`` or ``module.Class``.

    Raises :class:`AdapterLoadError` with a one-line reason when the module or class cannot be
    found, the module fails to import, or the object is not an adapter class.
    """
    module_name, sep, qualname = spec.partition(":")
    if not sep:
        module_name, _, qualname = spec.rpartition(".")
    if not module_name or not qualname:
        raise AdapterLoadError(f"adapter must be 'module:Class' or 'module.Class', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise AdapterLoadError(
                f"unknown adapter {spec!r}: no module named {missing!r}"
            ) from None
        raise AdapterLoadError(
            f"cannot import adapter module {module_name!r}: {exception_summary(exc)}"
        ) from None
    except (Exception, SystemExit) as exc:  # noqa: BLE001
        # The user's module is broken (or calls sys.exit() on import): one line, no traceback.
        raise AdapterLoadError(
            f"cannot import adapter module {module_name!r}: {exception_summary(exc)}"
        ) from None
    target: Any = module
    for part in qualname.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise AdapterLoadError(
                f"unknown adapter {spec!r}: module {module_name!r} has no attribute {qualname!r}"
            ) from None
    if not isinstance(target, type):
        raise AdapterLoadError(f"{spec!r} is not a class")
    if not callable(getattr(target, "get_tools", None)) or not callable(
        getattr(target, "call_tool", None)
    ):
        raise AdapterLoadError(f"{spec!r} is not an adapter: it has no get_tools() and call_tool()")
    return target


def construct_adapter(adapter_class: Callable[[], Any]) -> Any:
    """``adapter_class()``, with a failure wrapped in :class:`AdapterConstructionError`.

    ``SystemExit`` counts as a failure too: an adapter calling ``sys.exit()`` in ``__init__``
    must not end the command silently.
    """
    try:
        return adapter_class()
    except (Exception, SystemExit) as exc:
        name = getattr(adapter_class, "__qualname__", repr(adapter_class))
        raise AdapterConstructionError(
            f"constructing {name} failed: {exception_summary(exc)}"
        ) from exc


def adapter_spec(adapter_class: type) -> str:
    """The ``module:Class`` name of a class, as :func:`load_adapter_class` accepts it."""
    return f"{adapter_class.__module__}:{adapter_class.__qualname__}"


def exception_summary(exc: BaseException) -> str:
    """``Type: first line of the message`` (just ``Type`` without a message)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
