"""What the server needs to know about each declared tool, computed once at start-up.

The adapter's registry (``BaseAdapter.get_tools`` / ``call_tool`` / ``acall_tool``) decides
*which* tools exist, whether each is async and whether it streams (``ToolSpec.is_async``,
``ToolSpec.supports_streaming``: read with :func:`~snakepit_bridge.base_adapter.tool_specs`, so
adapters that are not BaseAdapters are classified the same way), and dispatches every call. This
module only adds:

* where each one runs: async tools (``async def`` and async generators) on the event loop,
  sync tools in the pool;
* whether the tool is already tracked by the adapter's native request tracker
  (``@thread_safe_method`` anywhere in its wrapper chain).

It also renders the registry's specifications as the ``ToolSpec`` messages of
``InitializeSessionResponse.available_tools``.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from snakepit_bridge import _native
from snakepit_bridge.base_adapter import ToolSpec, _wrapper_chain, tool_specs
from snakepit_bridge.server.codec import JSON_TYPE_URL
from snakepit_bridge.server.proto import bridge_pb2 as pb

__all__ = ["ToolCatalog", "ToolKind", "build_catalog"]


@dataclass(frozen=True)
class ToolKind:
    """How one declared tool runs."""

    spec: ToolSpec
    tracked: bool  # a @thread_safe_method: each call is already counted by the adapter's tracker

    @property
    def on_loop(self) -> bool:
        """An async tool (the registry's ``is_async``): run on the event loop."""
        return self.spec.is_async


@dataclass(frozen=True)
class ToolCatalog:
    """The declared tools of one adapter instance, by name (read-only)."""

    tools: Mapping[str, ToolKind]

    def kind(self, name: str) -> ToolKind | None:
        return self.tools.get(name)

    def proto_specs(self) -> dict[str, pb.ToolSpec]:
        return {name: _proto_spec(kind.spec) for name, kind in self.tools.items()}


def build_catalog(adapter: Any) -> ToolCatalog:
    """Every tool ``adapter.get_tools()`` lists (any entry ``ToolSpec.from_mapping``
    understands, so adapters that are not BaseAdapters are served too)."""
    cls = type(adapter)
    tools: dict[str, ToolKind] = {}
    for spec in tool_specs(adapter):
        try:
            raw = inspect.getattr_static(cls, spec.name)
        except AttributeError:  # listed by an overridden get_tools(): run it as a plain call
            raw = None
        tools[spec.name] = ToolKind(
            spec=spec,
            tracked=raw is not None
            and any(isinstance(obj, _native.thread_safe_method) for obj in _wrapper_chain(raw)),
        )
    return ToolCatalog(MappingProxyType(tools))


def _proto_spec(spec: ToolSpec) -> pb.ToolSpec:
    message = pb.ToolSpec(
        name=spec.name,
        description=spec.description,
        supports_streaming=spec.supports_streaming,
        metadata={"adapter_class": spec.adapter_class, "module": spec.module},
    )
    if spec.required_variables:
        message.metadata["required_variables"] = ",".join(spec.required_variables)
    for parameter in spec.parameters:
        entry = message.parameters.add(
            name=parameter.name, type=parameter.type, required=parameter.required
        )
        described = parameter.to_dict()  # the default made JSON-safe (no NaN, no objects)
        if "default" in described:
            default = json.dumps(described["default"], allow_nan=False, separators=(",", ":"))
            entry.default_value.type_url = JSON_TYPE_URL
            entry.default_value.value = default.encode("utf-8")
            entry.validation_json = '{"default":' + default + "}"
        if parameter.kind != "positional_or_keyword":
            entry.description = f"({parameter.kind})"
    return message
