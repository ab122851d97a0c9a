"""Adapter base class, the ``tool`` decorator and the tool registry.

An adapter exposes *tools*: methods declared with :func:`tool`. The registry finds them on the
adapter's class, describes them (:meth:`BaseAdapter.get_tools`: among other things whether a tool
is ``async`` and whether it streams) and dispatches calls by name, refusing anything that was not
declared as a tool: :meth:`BaseAdapter.call_tool` / :meth:`BaseAdapter.execute_tool` for sync
tools, :meth:`BaseAdapter.acall_tool` / :meth:`BaseAdapter.aexecute_tool` (awaitable) for every
tool. A sync form given an async tool raises ``TypeError`` instead of returning a coroutine that
nobody would run (see :class:`AsyncToolError`).

Constraints the native core relies on: :class:`BaseAdapter` keeps ``__slots__ = ()``, the plain
``type`` metaclass and an ``__init__`` that needs no instance state, because
``snakepit_bridge._native.ThreadSafeAdapter`` is a C type that derives from it and never calls
``BaseAdapter.__init__``. So everything the registry computes is cached per *class*, and the
session context lives in a context variable (:mod:`snakepit_bridge.context`), not on the instance:
one adapter shared by many concurrent requests must not hold any one request's context.
"""

from __future__ import annotations

import copy
import inspect
import json
import threading
import types
import weakref
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Self, TypeVar, overload

from snakepit_bridge import context as _context
from snakepit_bridge._json import json_safe

__all__ = [
    "AsyncToolError",
    "BaseAdapter",
    "ParameterSpec",
    "ToolMetadata",
    "ToolSpec",
    "UnknownToolError",
    "acall",
    "is_coroutine",
    "tool",
    "tool_specs",
]

_F = TypeVar("_F", bound=Callable[..., Any])
_A = TypeVar("_A", bound="BaseAdapter")

# Name of the per-class registry cache stored in the class's own ``__dict__``.
_REGISTRY_ATTR = "_snakepit_tool_registry_"


@dataclass
class ToolMetadata:
    """What :func:`tool` attaches to a function as ``_tool_metadata``.

    ``parameters`` is kept for compatibility with upstream; the registry derives parameter
    specifications from the signature instead (see :class:`ParameterSpec`).
    """

    description: str = ""
    supports_streaming: bool = False
    parameters: list[Any] = field(default_factory=list)
    required_variables: list[str] = field(default_factory=list)


@overload
def tool(func: _F, /) -> _F: ...
@overload
def tool(
    description: str = "",
    supports_streaming: bool = False,
    required_variables: list[str] | tuple[str, ...] | None = None,
) -> Callable[[_F], _F]: ...
def tool(
    description: Any = "",
    supports_streaming: bool = False,
    required_variables: list[str] | tuple[str, ...] | None = None,
) -> Any:
    """Declare a method as a tool of its adapter.

    Use it as ``@tool`` or
    ``@tool(description=..., supports_streaming=..., required_variables=...)``. The decorated
    function itself is returned, with a :class:`ToolMetadata` attached as
    ``_tool_metadata``. Without a description the function's docstring is used. It may be
    combined with ``@thread_safe_method`` in either order, and with ``@staticmethod`` /
    ``@classmethod`` in either order. A property (or anything else that is not called) cannot
    be a tool: ``TypeError``.

    The function may be ``async def``, a generator or an async generator: the registry reads
    that from the function under any wrappers (:attr:`ToolSpec.is_async`), and a generator or
    async generator tool streams (:attr:`ToolSpec.supports_streaming`) whether or not
    ``supports_streaming=True`` is given.
    """
    if _is_declarable(description) or isinstance(description, property):
        # Bare ``@tool``: the decorated object arrives in place of the description.
        return _attach_metadata(description, "", False, [])
    if not isinstance(description, str):
        raise TypeError(f"tool(): description must be a str, not {type(description).__name__}")
    names = _checked_variables(required_variables)  # fail at the decorator line, not later

    def decorator(func: _F) -> _F:
        return _attach_metadata(func, description, supports_streaming, names)

    return decorator


def _is_declarable(obj: object) -> bool:
    # A classmethod object is not callable itself, but calling it through the class is.
    return isinstance(obj, (staticmethod, classmethod)) or (
        callable(obj) and not isinstance(obj, str)
    )


def _attach_metadata(
    func: _F,
    description: str,
    supports_streaming: bool,
    names: list[str],
) -> _F:
    if isinstance(func, property):
        raise TypeError(
            "tool() cannot declare a property: a tool is called with arguments, a property is "
            "read; make it a method (put @tool on a method that returns the value)"
        )
    if not _is_declarable(func):
        raise TypeError(
            "tool() must decorate a function or method (or a staticmethod, classmethod or "
            f"thread_safe_method), not {type(func).__name__}"
        )
    target = getattr(func, "__func__", func)  # staticmethod/classmethod: describe the function
    doc = inspect.getdoc(target) or ""
    metadata = ToolMetadata(
        description=description or doc,
        supports_streaming=bool(supports_streaming),
        required_variables=names,
    )
    func._tool_metadata = metadata  # type: ignore[attr-defined]
    return func


def _checked_variables(required_variables: object) -> list[str]:
    if required_variables is None:
        return []
    if isinstance(required_variables, str):
        # Upstream silently split such a string into characters.
        raise TypeError(
            "tool(): required_variables must be a list of names, not a single string; "
            f"did you mean [{required_variables!r}]?"
        )
    if not isinstance(required_variables, (list, tuple)):
        raise TypeError("tool(): required_variables must be a list of str names")
    for name in required_variables:
        if not isinstance(name, str):
            raise TypeError(f"tool(): required_variables must hold str names, got {name!r}")
    return list(required_variables)


_VARIADIC_KINDS = ("var_positional", "var_keyword")


@dataclass(frozen=True)
class ParameterSpec:
    """One parameter of a tool, derived from its signature.

    ``type`` is a short lower-case name taken from the annotation (``"int"``, ``"str"``,
    ``"list"``; ``"any"`` when unannotated). ``kind`` is ``"positional_or_keyword"``,
    ``"keyword_only"``, ``"positional_only"``, ``"var_positional"`` (``*args``) or
    ``"var_keyword"`` (``**kwargs``); the two variadic kinds are never required.
    """

    name: str
    type: str
    required: bool
    default: Any = None
    kind: str = "positional_or_keyword"

    @property
    def is_variadic(self) -> bool:
        """``*args`` or ``**kwargs``."""
        return self.kind in _VARIADIC_KINDS

    @property
    def has_default(self) -> bool:
        """Whether the parameter may be left out and ``default`` is what it then gets."""
        return not self.required and not self.is_variadic

    def to_dict(self) -> dict[str, Any]:
        """A fresh JSON-friendly dict (the default made JSON-safe, see ``_json.json_safe``)."""
        data: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "required": self.required,
            "kind": self.kind,
        }
        if self.has_default:
            data["default"] = json_safe(self.default)
        return data

    @classmethod
    def from_mapping(cls, entry: Any) -> ParameterSpec:
        """The parameter described by one entry of a tool's ``parameters``.

        Accepts a :class:`ParameterSpec`, a mapping such as :meth:`to_dict` gives, or an object
        with those attributes; upstream's entries are understood too (``required`` true for
        ``*args`` and ``**kwargs``, the default inside ``validation_json`` as
        ``{"default": ...}``). A variadic parameter is never required.
        """
        if isinstance(entry, ParameterSpec):
            return entry
        fields = _entry_fields(entry, "parameter")
        kind = str(fields.get("kind") or "positional_or_keyword")
        required = bool(fields.get("required", False)) and kind not in _VARIADIC_KINDS
        default: Any = None
        if not required:
            if "default" in fields:
                default = fields["default"]
            else:
                default = _validation_default(fields.get("validation_json"))
        return cls(
            name=_entry_name(fields, "parameter"),
            type=str(fields.get("type") or "any"),
            required=required,
            default=default,
            kind=kind,
        )


@dataclass(frozen=True)
class ToolSpec:
    """A declared tool as :meth:`BaseAdapter.get_tools` lists it.

    ``is_async``: the tool is an ``async def`` function or an async generator function (read
    from the function under any wrappers: ``@thread_safe_method`` in either order,
    ``staticmethod``, ``classmethod``, ``functools.wraps`` chains). Such a tool is called with
    :meth:`BaseAdapter.acall_tool`; :meth:`BaseAdapter.call_tool` refuses it.
    ``supports_streaming``: declared with ``@tool(supports_streaming=True)``, or the tool is a
    generator or async generator function (then true even when not declared).
    """

    name: str
    description: str
    supports_streaming: bool
    parameters: tuple[ParameterSpec, ...]
    required_variables: tuple[str, ...]
    adapter_class: str
    module: str
    is_async: bool = False

    @property
    def required_parameters(self) -> tuple[ParameterSpec, ...]:
        """The parameters a call must give."""
        return tuple(p for p in self.parameters if p.required)

    @property
    def keyword_names(self) -> frozenset[str]:
        """The names a caller may pass as keyword arguments (``**kwargs`` aside)."""
        return frozenset(
            p.name for p in self.parameters if not p.is_variadic and p.kind != "positional_only"
        )

    @property
    def accepts_any_keyword(self) -> bool:
        """Whether the tool takes ``**kwargs``."""
        return any(p.kind == "var_keyword" for p in self.parameters)

    def to_dict(self) -> dict[str, Any]:
        """A fresh JSON-friendly dict of this specification."""
        return {
            "name": self.name,
            "description": self.description,
            "supports_streaming": self.supports_streaming,
            "is_async": self.is_async,
            "parameters": [p.to_dict() for p in self.parameters],
            "required_variables": list(self.required_variables),
            "adapter_class": self.adapter_class,
            "module": self.module,
        }

    @classmethod
    def from_mapping(cls, entry: Any) -> ToolSpec:
        """The tool described by one entry of an adapter's ``get_tools()``.

        For adapters that are not :class:`BaseAdapter`\\ s (which may list their tools any way
        they like): accepts a :class:`ToolSpec`, a mapping such as :meth:`to_dict` gives, an
        object with a ``to_dict()`` method or with those attributes, and upstream's tool
        registrations (``adapter_class``, ``module`` and a comma-joined
        ``required_variables`` inside ``metadata``). Only ``name`` is required; ``TypeError``
        when an entry has none.
        """
        if isinstance(entry, ToolSpec):
            return entry
        fields = _entry_fields(entry, "tool")
        metadata = _mapping_of(fields.get("metadata"))
        variables: Any = fields.get("required_variables", metadata.get("required_variables"))
        if isinstance(variables, str):  # upstream's metadata: "a,b"
            variables = [v for v in variables.split(",") if v]
        return cls(
            name=_entry_name(fields, "tool"),
            description=str(fields.get("description") or ""),
            supports_streaming=bool(fields.get("supports_streaming", False)),
            parameters=tuple(ParameterSpec.from_mapping(p) for p in fields.get("parameters") or ()),
            required_variables=tuple(str(v) for v in variables or ()),
            adapter_class=str(fields.get("adapter_class", metadata.get("adapter_class", ""))),
            module=str(fields.get("module", metadata.get("module", ""))),
            is_async=bool(fields.get("is_async", False)),
        )


def tool_specs(adapter: Any) -> list[ToolSpec]:
    """The tools of any adapter, from its ``get_tools()``, as :class:`ToolSpec`\\ s (see
    :meth:`ToolSpec.from_mapping` for what an adapter that is not a BaseAdapter may list).

    The registry's specifications come back as they are. An entry of another shape (a mapping,
    an object) says whether the tool is async or streams if it likes; when the adapter's class
    has an attribute of the tool's name, what its function is (``async def``, generator, async
    generator: see :attr:`ToolSpec.is_async`) is added to what the entry says.
    """
    cls = type(adapter)
    specs = []
    for entry in adapter.get_tools():
        spec = ToolSpec.from_mapping(entry)
        if not isinstance(entry, ToolSpec):
            try:
                raw = inspect.getattr_static(cls, spec.name)
            except AttributeError:
                raw = None
            if raw is not None:
                is_async, generates = _function_kind(raw)
                if (is_async and not spec.is_async) or (generates and not spec.supports_streaming):
                    spec = replace(
                        spec,
                        is_async=spec.is_async or is_async,
                        supports_streaming=spec.supports_streaming or generates,
                    )
        specs.append(spec)
    return specs


_ENTRY_FIELDS = (
    "name",
    "description",
    "supports_streaming",
    "is_async",
    "parameters",
    "required_variables",
    "adapter_class",
    "module",
    "metadata",
    "type",
    "required",
    "default",
    "kind",
    "validation_json",
)


def _entry_fields(entry: Any, what: str) -> Mapping[str, Any]:
    """The fields of a tool or parameter entry as a mapping (see the from_mapping methods)."""
    if isinstance(entry, Mapping):
        return entry
    to_dict = getattr(entry, "to_dict", None)
    if callable(to_dict):
        data = to_dict()
        if isinstance(data, Mapping):
            return data
    # An object with attributes (a namespace, a dataclass, a protobuf message): read the names
    # we know, leaving out what it does not have.
    missing = object()
    fields = {name: getattr(entry, name, missing) for name in _ENTRY_FIELDS}
    found = {name: value for name, value in fields.items() if value is not missing}
    if "name" not in found:
        raise TypeError(f"a {what} entry must be a mapping or have a name, not {entry!r}")
    return found


def _entry_name(fields: Mapping[str, Any], what: str) -> str:
    name = fields.get("name")
    if not isinstance(name, str) or not name:
        raise TypeError(f"a {what} entry needs a non-empty str 'name', got {name!r}")
    return name


def _mapping_of(value: Any) -> Mapping[str, Any]:
    if isinstance(value, Mapping):
        return value
    items = getattr(value, "items", None)  # protobuf's map fields
    return dict(items()) if callable(items) else {}


def _validation_default(validation_json: Any) -> Any:
    """Upstream's default: ``validation_json`` holds ``{"default": <value>}``."""
    if not isinstance(validation_json, str) or not validation_json:
        return None
    try:
        decoded = json.loads(validation_json)
    except ValueError:
        return None
    return decoded.get("default") if isinstance(decoded, dict) else None


class UnknownToolError(AttributeError):
    """Raised when a name given to ``call_tool``/``execute_tool`` is not a declared tool.

    It derives from ``AttributeError`` because upstream raised that for unknown names.
    ``available`` lists the tools that do exist.
    """

    def __init__(self, message: str, *, tool_name: str, available: tuple[str, ...]) -> None:
        super().__init__(message)
        self.tool_name = tool_name
        self.available = available


class AsyncToolError(TypeError):
    """A sync form (``call_tool``, ``execute_tool``) was asked to run an async tool.

    Raised before anything runs when the tool is async (:attr:`ToolSpec.is_async`), and after
    the call when a tool the registry sees as sync returned a coroutine anyway (a wrapper that
    hides an ``async def`` without ``functools.wraps``): that coroutine is closed unrun. Either
    way the caller never holds a coroutine that nothing awaits. The message points at
    :meth:`BaseAdapter.acall_tool`. It is a ``TypeError``: the call was of the wrong kind.
    """

    def __init__(self, message: str, *, tool_name: str) -> None:
        super().__init__(message)
        self.tool_name = tool_name


# Result types seen by call_tool that are not coroutines, so the check costs one set lookup
# (an isinstance against collections.abc.Coroutine costs a few hundred nanoseconds). Bounded:
# past the limit, new types are checked with isinstance every time.
_NOT_COROUTINE_LIMIT = 1024
_not_coroutine_types: set[type] = {type(None), int, float, str, bytes, dict, list, tuple, bool}


def is_coroutine(result: Any) -> bool:
    """Whether ``result`` is a coroutine (the interpreter's, or the native core's tracked one,
    which registers as ``collections.abc.Coroutine``): a tool's result that must be awaited."""
    if type(result) in _not_coroutine_types:
        return False
    if isinstance(result, Coroutine):
        return True
    if len(_not_coroutine_types) < _NOT_COROUTINE_LIMIT:
        _not_coroutine_types.add(type(result))
    return False


def _function_kind(raw: Any) -> tuple[bool, bool]:
    """``(is_async, generates)`` of a tool's class attribute.

    Every layer of its wrapper chain is asked (:func:`_wrapper_chain`): ``is_async`` when one of
    them is an ``async def`` or async generator function (or is marked with
    ``inspect.markcoroutinefunction``), ``generates`` when one of them is a generator or async
    generator function. ``thread_safe_method`` objects answer for the function they decorate.
    """
    is_async = generates = False
    for obj in _wrapper_chain(raw):
        try:
            coroutine = inspect.iscoroutinefunction(obj)
            async_generator = inspect.isasyncgenfunction(obj)
            generator = inspect.isgeneratorfunction(obj)
        except Exception:  # noqa: BLE001 - an object whose attributes fail to read is no function
            continue
        is_async = is_async or coroutine or async_generator
        generates = generates or generator or async_generator
    return is_async, generates


# How call_tool invokes a tool's class attribute (``_Entry.target``).
_CALL_WITH_SELF = 0  # a function or thread_safe_method: target(adapter, **kwargs), no bound method
_CALL_THROUGH_DESCRIPTOR = 1  # staticmethod, classmethod, other descriptors: bind, then call
_CALL_AS_IS = 2  # a callable class attribute that is no descriptor: target(**kwargs)


@dataclass(frozen=True)
class _Entry:
    spec: ToolSpec
    # The tool object the class declares, dispatched to directly: an instance attribute of the
    # same name must not be called instead (attribute lookup would find that first).
    target: Any
    binding: int
    signature: inspect.Signature  # without self/cls; binds the arguments on the slow path
    # Precomputed for the fast argument check: Signature.bind costs tens of microseconds.
    accepted: frozenset[str]
    required: frozenset[str]
    open_keywords: bool  # has **kwargs
    simple: bool  # no positional-only parameters: the fast check is exact

    def check_arguments(self, kwargs: Mapping[str, Any]) -> None:
        """Raise TypeError (Signature.bind's message) when ``kwargs`` do not fit."""
        if (
            self.simple
            and self.required.issubset(kwargs)
            and (self.open_keywords or self.accepted.issuperset(kwargs))
        ):
            return
        self.signature.bind(**kwargs)


class _Registry:
    """The tools of one adapter class, computed once and never mutated afterwards."""

    def __init__(self, cls: type) -> None:
        entries: dict[str, _Entry] = {}
        for name, raw in _class_attributes(cls):
            metadata = _find_metadata(raw)
            if metadata is None:
                continue
            entries[name] = _build_entry(cls, name, raw, metadata)
        self.entries: dict[str, _Entry] = dict(sorted(entries.items()))
        self.specs: tuple[ToolSpec, ...] = tuple(e.spec for e in self.entries.values())
        self.names: tuple[str, ...] = tuple(self.entries)


def _class_attributes(cls: type) -> Iterator[tuple[str, Any]]:
    """Each attribute name once, with the object the most derived class defines for it."""
    seen: set[str] = set()
    for klass in cls.__mro__:
        for name, raw in vars(klass).copy().items():  # snapshot: the dict may change
            if name not in seen:
                seen.add(name)
                yield name, raw


def _find_metadata(raw: Any) -> ToolMetadata | None:
    """The ``ToolMetadata`` attached to a class attribute, through any layer of wrapping.

    ``thread_safe_method`` objects carry it in their own ``__dict__`` (outer ``@tool``) or on the
    wrapped function (inner ``@tool``); staticmethod/classmethod objects on themselves or on
    ``__func__``.
    """
    for obj in _wrapper_chain(raw):
        try:
            metadata = inspect.getattr_static(obj, "_tool_metadata", None)
        except Exception:  # noqa: BLE001 - exotic descriptors: treat as "not a tool"
            metadata = None
        if isinstance(metadata, ToolMetadata):
            return metadata
    return None


def _wrapper_chain(raw: Any) -> Iterator[Any]:
    """``raw``, then what it wraps (``__func__`` of static/class methods, else ``__wrapped__``),
    and so on; wrapping chains are short, and the bound guards against cycles."""
    obj = raw
    yield obj
    for _ in range(8):
        try:
            inner = getattr(obj, "__func__", None) or getattr(obj, "__wrapped__", None)
        except Exception:  # noqa: BLE001 - an attribute whose lookup fails wraps nothing
            return
        if inner is None or inner is obj:
            return
        obj = inner
        yield obj


def _underlying_function(raw: Any) -> Any:
    *_, innermost = _wrapper_chain(raw)
    return innermost


def _binding(raw: Any) -> int:
    # Imported here: the native module imports this one while it initialises.
    from snakepit_bridge._native import thread_safe_method

    if isinstance(raw, (types.FunctionType, thread_safe_method)):
        return _CALL_WITH_SELF
    if hasattr(type(raw), "__get__"):
        return _CALL_THROUGH_DESCRIPTOR
    return _CALL_AS_IS


def _build_entry(cls: type, name: str, raw: Any, metadata: ToolMetadata) -> _Entry:
    func = _underlying_function(raw)
    try:
        signature = inspect.signature(func, eval_str=True)
    except (NameError, TypeError, SyntaxError):  # forward references that cannot be resolved
        signature = inspect.signature(func)
    params = list(signature.parameters.values())
    binding = _binding(raw)
    if binding != _CALL_AS_IS and not isinstance(raw, staticmethod) and params:
        params = params[1:]  # self (or cls), supplied by binding
    signature = signature.replace(parameters=params)
    is_async, generates = _function_kind(raw)
    spec = ToolSpec(
        name=name,
        description=metadata.description,
        supports_streaming=metadata.supports_streaming or generates,
        parameters=tuple(_parameter_spec(p) for p in params),
        required_variables=tuple(metadata.required_variables),
        adapter_class=cls.__name__,
        module=cls.__module__,
        is_async=is_async,
    )
    keyword_kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return _Entry(
        spec=spec,
        target=raw,
        binding=binding,
        signature=signature,
        accepted=frozenset(p.name for p in params if p.kind in keyword_kinds),
        required=frozenset(
            p.name for p in params if p.kind in keyword_kinds and p.default is p.empty
        ),
        open_keywords=any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params),
        simple=not any(p.kind is inspect.Parameter.POSITIONAL_ONLY for p in params),
    )


def _parameter_spec(param: inspect.Parameter) -> ParameterSpec:
    variadic = param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD)
    has_default = param.default is not param.empty
    return ParameterSpec(
        name=param.name,
        type=_type_name(param.annotation),
        required=not variadic and not has_default,
        default=param.default if has_default else None,
        kind=param.kind.name.lower(),
    )


def _type_name(annotation: Any) -> str:
    """A short lower-case type name: ``list[float]`` -> ``list``, ``int | None`` -> ``int``."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return "any"
    if annotation is None or annotation is type(None):
        return "none"
    if isinstance(annotation, str):  # unresolved forward reference
        text = annotation.split("[", 1)[0].split("|", 1)[0].strip()
        return (text.rsplit(".", 1)[-1] or "any").lower()
    args = getattr(annotation, "__args__", None)
    origin = getattr(annotation, "__origin__", None)
    if isinstance(annotation, types.UnionType) or (
        origin is not None and str(origin) == "typing.Union"
    ):
        members = [a for a in (args or ()) if a is not type(None)]
        return _type_name(members[0]) if len(members) == 1 else "any"
    if origin is not None:
        return _type_name(origin)
    name = getattr(annotation, "__name__", None)
    return name.lower() if isinstance(name, str) else "any"


# Fallback cache for classes whose own __dict__ cannot take the registry (immutable types).
_fallback_registries: weakref.WeakKeyDictionary[type, _Registry] = weakref.WeakKeyDictionary()
_fallback_lock = threading.Lock()


def _registry_for(cls: type) -> _Registry:
    registry = vars(cls).get(_REGISTRY_ATTR)
    if isinstance(registry, _Registry):
        return registry
    with _fallback_lock:
        registry = _fallback_registries.get(cls)
    if registry is not None:
        return registry
    registry = _Registry(cls)  # built outside any lock; a concurrent duplicate is harmless
    try:
        type.__setattr__(cls, _REGISTRY_ATTR, registry)
    except (TypeError, AttributeError):
        with _fallback_lock:
            registry = _fallback_registries.setdefault(cls, registry)
    return registry


class BaseAdapter:
    """Base class of every adapter: tool discovery, dispatch and the session context.

    Tools are discovered on the class, once per class, so instances carry no registry state.
    """

    __slots__ = ()

    # -- tools -------------------------------------------------------------------------------
    def get_tools(self) -> list[ToolSpec]:
        """The declared tools of this adapter's class, sorted by name.

        The specifications are immutable and computed once per class; the list is fresh.
        """
        return list(_registry_for(type(self)).specs)

    def call_tool(self, tool_name: str, /, **kwargs: Any) -> Any:
        """Call the declared sync tool ``tool_name`` with keyword arguments.

        Raises :class:`UnknownToolError` (an ``AttributeError``) for a name that is not a declared
        tool, listing the tools that exist, and ``TypeError`` naming the tool when the arguments
        do not fit its signature. Exceptions raised by the tool itself propagate unchanged.
        The tool the class declares is called, never an instance attribute of the same name.
        A generator tool returns its generator (the caller drains it).

        An async tool (:attr:`ToolSpec.is_async`) is refused with :class:`AsyncToolError` (a
        ``TypeError``) before anything runs: use :meth:`acall_tool`. A tool the registry sees as
        sync that returns a coroutine anyway has it closed unrun, and the same error is raised.
        """
        entry = _entry_for_call(self, tool_name, kwargs)
        if entry.spec.is_async:
            raise AsyncToolError(
                f"tool {tool_name!r} of {type(self).__name__} is async (an async def function "
                f"or async generator): call it with `await adapter.acall_tool({tool_name!r}, "
                "...)` or `aexecute_tool`, which await a coroutine and return an async "
                "generator to iterate; call_tool would return a coroutine that nothing runs",
                tool_name=tool_name,
            )
        result = _invoke(self, entry, kwargs)
        if type(result) not in _not_coroutine_types and is_coroutine(result):
            result.close()  # never run, and no "never awaited" warning later
            raise AsyncToolError(
                f"tool {tool_name!r} of {type(self).__name__} returned a coroutine, but the "
                "registry sees a sync function (a wrapper that hides an async def: give it "
                "functools.wraps, or mark it with inspect.markcoroutinefunction); the coroutine "
                f"was closed unrun. Call it with `await adapter.acall_tool({tool_name!r}, ...)`, "
                "which awaits what a tool returns",
                tool_name=tool_name,
            )
        return result

    async def acall_tool(self, tool_name: str, /, **kwargs: Any) -> Any:
        """Call any declared tool ``tool_name`` with keyword arguments, awaitably.

        The same checks as :meth:`call_tool` (:class:`UnknownToolError`, ``TypeError`` for
        arguments that do not fit), raised when awaited. What the tool returns is awaited when it
        is awaitable (an ``async def`` tool's coroutine), so the result is the tool's value; an
        async generator tool gives its async generator, to iterate with ``async for``, and a
        generator tool its generator. A sync tool runs in the calling thread, on the event loop:
        it holds the loop up for as long as it runs (offload long sync work with
        ``asyncio.to_thread``).
        """
        entry = _entry_for_call(self, tool_name, kwargs)
        result = _invoke(self, entry, kwargs)
        if inspect.isawaitable(result):
            return await result
        return result

    def execute_tool(
        self, tool_name: str, arguments: Mapping[str, Any] | None = None, context: Any = None
    ) -> Any:
        """Run a declared sync tool the way the bridge server does.

        ``arguments`` maps parameter names to values (``None`` means no arguments). A non-None
        ``context`` becomes the session context (see :meth:`set_session_context`). An async tool
        is refused as :meth:`call_tool` refuses it: use :meth:`aexecute_tool`.
        """
        arguments = _checked_arguments(tool_name, arguments)
        if context is not None:
            self.set_session_context(context)
        return self.call_tool(tool_name, **arguments)

    async def aexecute_tool(
        self, tool_name: str, arguments: Mapping[str, Any] | None = None, context: Any = None
    ) -> Any:
        """:meth:`execute_tool` for any tool, awaitably (dispatched with :meth:`acall_tool`).

        A non-None ``context`` becomes the session context of the calling task's context.
        """
        arguments = _checked_arguments(tool_name, arguments)
        if context is not None:
            self.set_session_context(context)
        return await self.acall_tool(tool_name, **arguments)

    # -- session -----------------------------------------------------------------------------
    def set_session_context(self, context: Any) -> None:
        """Store the session context of the request being served (see ``session_context``).

        It is stored per execution context (a :class:`contextvars.ContextVar`), not on the
        instance: requests served at the same time by one shared adapter each see their own,
        and it is not adapter state, so the thread-safety checker does not observe it. A plain
        thread has its own execution context, so a context set on one thread is not seen on
        another; the worker server runs each request in a fresh one.
        """
        _context.bind_session_context(self, context)

    @property
    def session_context(self) -> Any:
        """The context set by :meth:`set_session_context` in this execution context, else the
        server's :class:`~snakepit_bridge.context.RequestContext` of the current request, else
        ``None``. Assigning it is the same as calling :meth:`set_session_context`."""
        return _context.session_context_of(self)

    @session_context.setter
    def session_context(self, context: Any) -> None:
        _context.bind_session_context(self, context)

    # The name upstream's adapters read (and upstream's BaseAdapter.__init__ assigned).
    _session_context = session_context

    @property
    def session_id(self) -> str | None:
        """``session_id`` of :attr:`session_context`, or ``None`` when there is none."""
        context = _context.session_context_of(self)
        return getattr(context, "session_id", None) if context is not None else None

    # -- copying -----------------------------------------------------------------------------
    def __copy__(self) -> Self:
        """A new adapter of the same class holding the same attribute values.

        Made with ``cls.__new__`` (``__init__`` is not called) and given this adapter's state
        (``__getstate__``, applied with ``__setstate__`` when the class has one). What the
        native core keeps per instance is the new adapter's own: a ThreadSafeAdapter copy has
        a free lock, a tracker with zero counts and empty thread-local storage. Without this,
        copying a ThreadSafeAdapter failed with "cannot pickle".
        """
        return _copy_adapter(self, None)

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        """Like :meth:`__copy__`, with the attribute values deep-copied."""
        return _copy_adapter(self, memo)


def _entry_for_call(adapter: BaseAdapter, tool_name: str, kwargs: Mapping[str, Any]) -> _Entry:
    """The registry entry of ``tool_name``, with ``kwargs`` checked against its signature."""
    registry = _registry_for(type(adapter))
    entry = registry.entries.get(tool_name) if isinstance(tool_name, str) else None
    if entry is None:
        available = ", ".join(registry.names) or "(none)"
        raise UnknownToolError(
            f"{type(adapter).__name__} has no tool {tool_name!r}; available tools: {available}",
            tool_name=str(tool_name),
            available=registry.names,
        )
    try:
        entry.check_arguments(kwargs)
    except TypeError as exc:
        raise TypeError(
            f"bad arguments for tool {tool_name!r} of {type(adapter).__name__}: {exc} "
            f"(expected {entry.signature})"
        ) from None
    return entry


def _invoke(adapter: BaseAdapter, entry: _Entry, kwargs: Mapping[str, Any]) -> Any:
    """Call the tool, bound the way attribute lookup on the class would bind it."""
    target = entry.target
    if entry.binding == _CALL_WITH_SELF:
        return target(adapter, **kwargs)
    if entry.binding == _CALL_THROUGH_DESCRIPTOR:
        return type(target).__get__(target, adapter, type(adapter))(**kwargs)
    return target(**kwargs)


def _checked_arguments(tool_name: str, arguments: Any) -> Mapping[str, Any]:
    if arguments is None:
        return {}
    if not isinstance(arguments, Mapping):
        raise TypeError(
            f"execute_tool({tool_name!r}): arguments must be a mapping, "
            f"not {type(arguments).__name__}"
        )
    bad_keys = [k for k in arguments if not isinstance(k, str)]
    if bad_keys:
        raise TypeError(
            f"execute_tool({tool_name!r}): argument names must be str, got {bad_keys!r}"
        )
    return arguments


async def acall(adapter: Any, tool_name: str, /, **kwargs: Any) -> Any:
    """Await a tool of any adapter: its ``acall_tool`` when it has one (every
    :class:`BaseAdapter`), else its ``call_tool``, whose result is awaited when awaitable.

    What the server and the hammer run async tools with, so adapters that are not BaseAdapters
    (and implement only ``call_tool``) are served too.
    """
    acall_tool = getattr(adapter, "acall_tool", None)
    if acall_tool is not None:
        return await acall_tool(tool_name, **kwargs)
    result = adapter.call_tool(tool_name, **kwargs)
    if inspect.isawaitable(result):
        return await result
    return result


def _copy_adapter(adapter: _A, memo: dict[int, Any] | None) -> _A:
    cls = type(adapter)
    clone = cls.__new__(cls)
    if memo is not None:
        memo[id(adapter)] = clone  # an attribute referring back to the adapter gets the clone
    state: Any = adapter.__getstate__()
    if memo is not None:
        state = copy.deepcopy(state, memo)
    setstate = getattr(clone, "__setstate__", None)
    if setstate is not None:
        setstate(state)
        return clone
    slots: Mapping[str, Any] | None = None
    if isinstance(state, tuple) and len(state) == 2:
        state, slots = state  # the default state of a class with __slots__
    if state:
        _instance_dict(clone).update(state)
    for name, value in (slots or {}).items():
        setattr(clone, name, value)
    return clone


def _instance_dict(adapter: BaseAdapter) -> dict[str, Any]:
    try:
        return object.__getattribute__(adapter, "__dict__")  # type: ignore[no-any-return]
    except AttributeError:
        raise TypeError(
            f"{type(adapter).__name__} instances have no __dict__ (all of its classes declare "
            "__slots__); its state cannot be copied"
        ) from None
