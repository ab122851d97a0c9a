"""Finding and building the adapter a command names: ``module:Class`` in, an instance out.

Used by the command line (``snakepit-bridge hammer`` / ``tools``) and the worker server. Failures
are one line each, for a one-line error on stderr: :class:`AdapterLoadError` when the name
cannot be resolved to an adapter class, or the constructor arguments (``--init-args``) do not
fit its signature (the user's mistake, exit status 2), and :class:`AdapterConstructionError`
when the class raises while being built (the adapter's bug, or a resource it cannot find: exit
status 1, the original exception chained as ``__cause__``).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_ADAPTER",
    "AdapterArgumentsError",
    "AdapterConstructionError",
    "AdapterFactory",
    "AdapterLoadError",
    "InitArgs",
    "adapter_factory",
    "adapter_spec",
    "construct_adapter",
    "exception_summary",
    "load_adapter_class",
    "parse_init_args",
]

# The built-in showcase: what `snakepit-bridge hammer` and `tools` run without an argument.
DEFAULT_ADAPTER = "snakepit_bridge.adapters.threaded_showcase:ThreadedShowcaseAdapter"


class AdapterLoadError(Exception):
    """The named adapter cannot be loaded: no such module or class, a module that fails (or
    exits) while being imported, or an object that is not an adapter class."""


class AdapterArgumentsError(AdapterLoadError):
    """The constructor arguments do not fit the adapter class's signature (a usage error)."""


class AdapterConstructionError(Exception):
    """The adapter class raised while being instantiated (a bug in the adapter).

    The original exception is the ``__cause__``.
    """


def load_adapter_class(spec: str) -> type:
    """Import the adapter class named by ``module:Class`` or ``module.Class``.

    Raises :class:`AdapterLoadError` with a one-line reason when the module or class cannot be
    found, the module fails to import, or the object is not an adapter class. A spec that names
    a module (``pkg.module``) is answered with the ``module:Class`` spelling and the adapter
    classes the module defines.
    """
    module_name, sep, qualname = spec.partition(":")
    names_a_module = bool(sep)  # "pkg.module:" names the module, as "pkg.module" may
    if not sep:
        module_name, _, qualname = spec.rpartition(".")
        if not module_name and qualname and _module_exists(qualname):
            # A bare module name: answered with how to name the class.
            module_name, qualname, names_a_module = qualname, "", True
    if not module_name or not (qualname or names_a_module):
        raise AdapterLoadError(f"adapter must be 'module:Class' or 'module.Class', got {spec!r}")
    module = _import_adapter_module(module_name, spec)
    if not qualname:
        raise AdapterLoadError(_name_the_class(module))
    target: Any = module
    for part in qualname.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            if not sep and target is module and _module_exists(f"{module_name}.{part}"):
                # "pkg.module": a submodule the package does not import itself.
                submodule = _import_adapter_module(f"{module_name}.{part}", spec)
                raise AdapterLoadError(_name_the_class(submodule)) from None
            raise AdapterLoadError(
                f"unknown adapter {spec!r}: module {module_name!r} has no attribute {qualname!r}"
            ) from None
    if isinstance(target, types.ModuleType):
        raise AdapterLoadError(_name_the_class(target))
    if not isinstance(target, type):
        if callable(target):
            # A factory function: the server decides how many threads may share the adapter
            # from its class before building it, so the class is what a command names.
            raise AdapterLoadError(
                f"{spec!r} is a {type(target).__name__}, not an adapter class: name the class, "
                "and give its constructor arguments with --init-args"
            )
        raise AdapterLoadError(f"{spec!r} is not a class")
    if not _is_adapter_class(target):
        raise AdapterLoadError(f"{spec!r} is not an adapter: it has no get_tools() and call_tool()")
    return target


def _is_adapter_class(cls: type) -> bool:
    return callable(getattr(cls, "get_tools", None)) and callable(getattr(cls, "call_tool", None))


def _module_exists(name: str) -> bool:
    """Whether ``name`` can be imported as a module (its parent packages are imported to tell,
    the module itself is not)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (Exception, SystemExit):  # noqa: BLE001 - not a module name, or a broken parent
        return False


def _import_adapter_module(module_name: str, spec: str) -> types.ModuleType:
    try:
        return importlib.import_module(module_name)
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


def _name_the_class(module: types.ModuleType) -> str:
    """The answer to a spec naming a module: how to name a class, and the candidates."""
    name = module.__name__
    candidates = sorted(
        f"{name}:{obj.__qualname__}"
        for obj in vars(module).values()
        if isinstance(obj, type) and obj.__module__ == name and _is_adapter_class(obj)
    )
    found = (
        f"adapter classes in it: {', '.join(candidates)}"
        if candidates
        else "it defines no adapter class"
    )
    return f"{name} is a module; name the adapter class: {name}:ClassName ({found})"


@dataclass(frozen=True)
class InitArgs:
    """The adapter's constructor arguments: ``adapter_class(*args, **kwargs)``."""

    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.args or self.kwargs)

    def __str__(self) -> str:
        """The arguments as the JSON they were given in (an array or an object)."""
        value: Any = list(self.args) if self.args else dict(self.kwargs)
        return json.dumps(value, default=repr)


_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}


def parse_init_args(text: str) -> InitArgs:
    """``--init-args``: a JSON object of keyword arguments, or a JSON array of positional ones.

    Raises ``ValueError`` with a one-line reason for anything else.
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    if isinstance(value, dict):
        return InitArgs(kwargs=value)
    if isinstance(value, list):
        return InitArgs(args=tuple(value))
    kind = "null" if value is None else _JSON_TYPES.get(type(value), "a number")
    raise ValueError(
        'must be a JSON object of keyword arguments, e.g. \'{"model_path": "model.bin"}\', '
        f"or a JSON array of positional arguments, not {kind}"
    )


class AdapterFactory:
    """An adapter class bound to its constructor arguments; calling it builds one adapter.

    Made by :func:`adapter_factory`, which has checked the arguments against the class's
    signature. It passes for the class where a callable building the adapter is expected
    (:func:`construct_adapter`, ``hammer.run_hammer``): its ``__qualname__`` is the class's and its
    ``repr`` the class's ``module:Class`` name, as reports name the adapter.
    """

    def __init__(self, adapter_class: type, init_args: InitArgs) -> None:
        self.adapter_class = adapter_class
        self.init_args = init_args
        self.__qualname__ = adapter_class.__qualname__

    def __call__(self) -> Any:
        return self.adapter_class(*self.init_args.args, **self.init_args.kwargs)

    def __repr__(self) -> str:
        return adapter_spec(self.adapter_class)


def adapter_factory(
    adapter_class: type, init_args: InitArgs | None = None
) -> type | AdapterFactory:
    """What builds the adapter: the class itself without arguments, else an
    :class:`AdapterFactory`.

    Raises :class:`AdapterArgumentsError` when the arguments do not fit the constructor's
    signature, or when it needs arguments and none were given (one line naming the signature
    and ``--init-args``). A constructor without a readable signature is not checked: its own
    call decides.
    """
    init_args = init_args or InitArgs()
    name = adapter_class.__qualname__
    try:
        signature = inspect.signature(adapter_class)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        try:
            signature.bind(*init_args.args, **init_args.kwargs)
        except TypeError as exc:
            if init_args:
                raise AdapterArgumentsError(
                    f"--init-args do not fit {name}{signature}: {exc}"
                ) from None
            required = [
                p
                for p in signature.parameters.values()
                if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            ]
            if any(p.kind is p.POSITIONAL_ONLY for p in required):
                example = json.dumps(["..."] * len(required))
            else:
                example = json.dumps(dict.fromkeys((p.name for p in required), "..."))
            raise AdapterArgumentsError(
                f"{name}{signature} needs constructor arguments ({exc}): give them with "
                f"--init-args '{example}'"
            ) from None
    return AdapterFactory(adapter_class, init_args) if init_args else adapter_class


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
