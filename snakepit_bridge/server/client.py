"""A client of a running worker server, and the server's tools as an adapter the hammer runs.

``snakepit-bridge hammer --target HOST:PORT`` drives a server over gRPC with the same report as an
in-process run. The pieces, each usable on its own:

* :class:`BridgeClient`: grpclib's client (pure Python, so the GIL stays off on 3.13t) for the
  calls the hammer needs: ``Ping``, ``InitializeSession`` (which lists the server's tools),
  ``ExecuteTool`` and ``ExecuteStreamingTool``. Arguments and results cross the wire as Snakepit
  sends them (raw JSON text in each ``Any``, :mod:`.codec`). One client is one HTTP/2 connection
  and belongs to the event loop it was made on.
* :class:`RemoteToolError`: a tool that failed on the server (``success`` false, or a stream
  ended with the error JSON of :mod:`.errors`), carrying the remote exception's type, message,
  raising line and traceback; the hammer groups it under the remote type.
* :class:`RemoteAdapter`: the server's tools (every one of them ``async``: a call is a network
  round trip) with ``acall_tool`` calling ``ExecuteTool``, or ``ExecuteStreamingTool`` for a
  streaming tool, whose items come back as an async iterator. Each hammer worker thread gets its
  own connection on its own event loop (:meth:`RemoteAdapter.hammer_worker_scope`), so
  ``--threads 16`` is 16 concurrent streams of requests. The served adapter's ``get_stats()``
  cannot be read over Snakepit's protocol; :meth:`RemoteAdapter.get_stats` says so.
* :func:`connect_target`: ``HOST:PORT`` to a ready :class:`RemoteAdapter` factory, checked
  before a run starts (one line, exit status 2, when the server cannot be reached).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Final

from snakepit_bridge.base_adapter import AsyncToolError, ToolSpec, UnknownToolError
from snakepit_bridge.hammer import default_mix_table
from snakepit_bridge.loading import AdapterLoadError

__all__ = [
    "DEFAULT_TIMEOUT",
    "BridgeClient",
    "RemoteAdapter",
    "RemoteTarget",
    "RemoteToolError",
    "TargetUnreachableError",
    "connect_target",
    "parse_target",
]

# Seconds any one call may take before it fails with DEADLINE_EXCEEDED: every wait is bounded.
DEFAULT_TIMEOUT: Final = 60.0
# How long connecting to the target before a run may take.
CONNECT_TIMEOUT: Final = 10.0


class TargetUnreachableError(AdapterLoadError):
    """The target server cannot be reached or does not answer like a worker server.

    An :class:`~snakepit_bridge.loading.AdapterLoadError`: the command reports it in one line and
    exits 2, as for an adapter that cannot be imported.
    """


class RemoteToolError(Exception):
    """A tool call that failed on the server, in band.

    ``remote_type`` is the exception's class name on the server (``"ValueError"``), the message
    its message; ``remote_location`` the ``file:line`` that raised it there and
    ``remote_traceback`` the server's formatted traceback (both as the server sent them, possibly
    shortened or empty). The hammer groups such errors by ``remote_type`` and location.
    """

    def __init__(
        self,
        tool_name: str,
        remote_type: str,
        message: str,
        *,
        remote_location: str = "?",
        remote_traceback: str = "",
    ) -> None:
        super().__init__(message)
        self.tool_name = tool_name
        self.remote_type = remote_type
        self.remote_location = remote_location
        self.remote_traceback = remote_traceback

    @classmethod
    def from_error_json(cls, tool_name: str, text: str) -> RemoteToolError | None:
        """The error described by the server's error JSON, ``None`` when ``text`` is not one."""
        try:
            payload = json.loads(text)
        except ValueError:
            return None
        if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
            return None
        frames = payload.get("stacktrace")
        location = "?"
        if isinstance(frames, list) and frames and isinstance(frames[-1], str):
            location = frames[-1].split(" in ", 1)[0]
        traceback_text = payload.get("traceback")
        return cls(
            tool_name,
            payload["type"],
            str(payload.get("message", "")),
            remote_location=location,
            remote_traceback=traceback_text if isinstance(traceback_text, str) else "",
        )


def parse_target(target: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6-address]:PORT`` too) as ``(host, port)``; ``ValueError`` else."""
    host, sep, port_text = target.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"--target must be HOST:PORT (e.g. 127.0.0.1:50051), not {target!r}")
    return host, int(port_text)


class BridgeClient:
    """One connection to a worker server, on the running event loop (made inside a coroutine).

    Use it as ``async with BridgeClient(host, port) as client:``, or call :meth:`close`. Every
    call is bounded by ``timeout`` seconds (``DEADLINE_EXCEEDED`` after it).
    """

    def __init__(self, host: str, port: int, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        from grpclib.client import Channel

        from snakepit_bridge.server.proto.bridge_grpc import BridgeServiceStub

        self.host = host
        self.port = port
        self.timeout = timeout
        self._channel = Channel(host, port)
        self._stub = BridgeServiceStub(self._channel)

    async def __aenter__(self) -> BridgeClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (calls still in flight fail)."""
        self._channel.close()

    async def ping(self, message: str = "hammer") -> str:
        from snakepit_bridge.server.proto import bridge_pb2 as pb

        reply = await self._stub.Ping(pb.PingRequest(message=message), timeout=self.timeout)
        return str(reply.message)

    async def initialize_session(self, session_id: str) -> list[ToolSpec]:
        """Open a session; the server's tools as :class:`ToolSpec`\\ s (sorted by name)."""
        from snakepit_bridge.server.proto import bridge_pb2 as pb

        reply = await self._stub.InitializeSession(
            pb.InitializeSessionRequest(session_id=session_id), timeout=self.timeout
        )
        if not reply.success:
            raise RuntimeError(f"InitializeSession failed: {reply.error_message}")
        return sorted(
            (_tool_spec(message) for message in reply.available_tools.values()),
            key=lambda spec: spec.name,
        )

    async def cleanup_session(self, session_id: str) -> None:
        from snakepit_bridge.server.proto import bridge_pb2 as pb

        await self._stub.CleanupSession(
            pb.CleanupSessionRequest(session_id=session_id), timeout=self.timeout
        )

    async def execute(
        self, tool_name: str, arguments: Mapping[str, Any], *, session_id: str = ""
    ) -> Any:
        """``ExecuteTool``: the tool's result (``bytes`` for a binary one, ``None`` for none);
        :class:`RemoteToolError` when it failed on the server."""
        request = _request(tool_name, arguments, session_id)
        reply = await self._stub.ExecuteTool(request, timeout=self.timeout)
        if not reply.success:
            raise _remote_error(tool_name, reply.error_message)
        if reply.binary_result:
            return bytes(reply.binary_result)
        if reply.HasField("result"):
            return _decode(reply.result.value, tool_name)
        return None

    async def stream(
        self, tool_name: str, arguments: Mapping[str, Any], *, session_id: str = ""
    ) -> AsyncIterator[Any]:
        """``ExecuteStreamingTool``: each chunk's item, until the final chunk;
        :class:`RemoteToolError` when the tool failed on the server, before or mid-stream."""
        from grpclib.const import Status
        from grpclib.exceptions import GRPCError

        request = _request(tool_name, arguments, session_id)
        try:
            async with self._stub.ExecuteStreamingTool.open(timeout=self.timeout) as call:
                await call.send_message(request, end=True)
                async for chunk in call:
                    if chunk.is_final:
                        break
                    yield _decode(chunk.data, tool_name)
        except GRPCError as error:
            if error.status is Status.INTERNAL and error.message:
                remote = RemoteToolError.from_error_json(tool_name, error.message)
                if remote is not None:
                    raise remote from None
            raise


def _request(tool_name: str, arguments: Mapping[str, Any], session_id: str) -> Any:
    """An ``ExecuteToolRequest`` as Snakepit builds one: JSON text in each ``Any``, bytes as
    ``binary_parameters``."""
    from snakepit_bridge.server.codec import JSON_TYPE_URL, encode_json
    from snakepit_bridge.server.proto import bridge_pb2 as pb

    request = pb.ExecuteToolRequest(session_id=session_id, tool_name=tool_name)
    for name, value in arguments.items():
        if isinstance(value, (bytes, bytearray, memoryview)):
            request.binary_parameters[name] = bytes(value)
            continue
        request.parameters[name].type_url = JSON_TYPE_URL
        request.parameters[name].value = encode_json(value, f"argument {name!r}")
    return request


def _decode(data: bytes, tool_name: str) -> Any:
    from snakepit_bridge.server.codec import decode_json

    return decode_json(data, f"the result of {tool_name!r}")


def _remote_error(tool_name: str, error_message: str) -> RemoteToolError:
    remote = RemoteToolError.from_error_json(tool_name, error_message)
    if remote is None:  # not the error JSON of this server: keep the text as it came
        remote = RemoteToolError(tool_name, "RemoteError", error_message)
    return remote


def _tool_spec(message: Any) -> ToolSpec:
    """A server's ``ToolSpec`` message as our :class:`ToolSpec` (async: a remote call is)."""
    parameters = []
    for parameter in message.parameters:
        entry: dict[str, Any] = {
            "name": parameter.name,
            "type": parameter.type,
            "required": parameter.required,
            "validation_json": parameter.validation_json,
        }
        # The server writes a kind other than positional_or_keyword as "(kind)".
        description = parameter.description
        if description.startswith("(") and description.endswith(")"):
            entry["kind"] = description[1:-1]
        parameters.append(entry)
    metadata = dict(message.metadata)
    return ToolSpec.from_mapping(
        {
            "name": message.name,
            "description": message.description,
            "supports_streaming": message.supports_streaming,
            "is_async": True,
            "parameters": parameters,
            "metadata": metadata,
        }
    )


class RemoteAdapter:
    """The tools of a running worker server, as an adapter (see the module's docstring).

    Not a :class:`~snakepit_bridge.base_adapter.BaseAdapter`: its tools are the server's,
    listed by :meth:`get_tools` from what ``InitializeSession`` returned, and all of them are
    ``async``. ``mix_table`` is the default hammer mix to use (borrowed from a local adapter
    class, see :func:`connect_target`).
    """

    def __init__(
        self,
        host: str,
        port: int,
        specs: list[ToolSpec],
        *,
        session_id: str,
        timeout: float = DEFAULT_TIMEOUT,
        mix_table: Mapping[str, Any] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.session_id = session_id
        self.timeout = timeout
        self._specs = {spec.name: spec for spec in specs}
        self._mix_table = dict(mix_table or {})
        self._local = threading.local()  # .client: this thread's connection, in a worker scope

    @property
    def target(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def get_tools(self) -> list[ToolSpec]:
        return list(self._specs.values())

    def default_hammer_mix(self) -> Mapping[str, Any]:
        return self._mix_table

    def get_stats(self) -> dict[str, Any]:
        """What the report shows in place of the served adapter's ``get_stats()``."""
        served = {spec.adapter_class for spec in self._specs.values()} - {""}
        return {
            "remote": True,
            "target": self.target,
            "adapter_class": ", ".join(sorted(served)) or None,
            "note": "the served adapter's get_stats() cannot be read over gRPC (Snakepit's "
            "BridgeService has no call for it); the server logs its own statistics",
        }

    def call_tool(self, tool_name: str, /, **kwargs: Any) -> Any:
        raise AsyncToolError(
            f"tool {tool_name!r} runs on {self.target}: call it with "
            f"`await adapter.acall_tool({tool_name!r}, ...)`",
            tool_name=tool_name,
        )

    async def acall_tool(self, tool_name: str, /, **kwargs: Any) -> Any:
        """The tool's result, from ``ExecuteTool``; for a streaming tool an async iterator of
        its items, from ``ExecuteStreamingTool``. Uses the calling thread's connection inside a
        worker scope, else one connection for this call."""
        spec = self._specs.get(tool_name)
        if spec is None:
            available = tuple(self._specs)
            raise UnknownToolError(
                f"{self.target} has no tool {tool_name!r}; available tools: "
                + (", ".join(available) or "(none)"),
                tool_name=tool_name,
                available=available,
            )
        client: BridgeClient | None = getattr(self._local, "client", None)
        if spec.supports_streaming:
            return self._stream(client, tool_name, kwargs)
        if client is not None:
            return await client.execute(tool_name, kwargs, session_id=self.session_id)
        async with self._connection() as own:
            return await own.execute(tool_name, kwargs, session_id=self.session_id)

    async def _stream(
        self, client: BridgeClient | None, tool_name: str, arguments: Mapping[str, Any]
    ) -> AsyncIterator[Any]:
        if client is not None:
            async for item in client.stream(tool_name, arguments, session_id=self.session_id):
                yield item
            return
        async with self._connection() as own:
            async for item in own.stream(tool_name, arguments, session_id=self.session_id):
                yield item

    def _connection(self) -> BridgeClient:
        return BridgeClient(self.host, self.port, timeout=self.timeout)

    @asynccontextmanager
    async def hammer_worker_scope(self) -> AsyncIterator[None]:
        """One connection for the calling thread, on its event loop, for the whole run: opened
        (and checked with a Ping) before the run starts, closed when the worker stops."""
        client = self._connection()
        try:
            try:
                await client.ping()
            except Exception as exc:  # noqa: BLE001 - any failure to reach it, one line
                raise _unreachable(self.target, exc) from None
            self._local.client = client
            yield
        finally:
            self._local.client = None
            client.close()


class RemoteTarget:
    """Builds the :class:`RemoteAdapter` of a target (what ``run_hammer`` calls); its ``repr``
    names the target, as the report names the adapter."""

    def __init__(self, adapter: RemoteAdapter) -> None:
        self.adapter = adapter
        self.__qualname__ = f"grpc://{adapter.target}"

    def __call__(self) -> RemoteAdapter:
        return self.adapter

    def __repr__(self) -> str:
        return f"grpc://{self.adapter.target}"


def connect_target(
    target: str,
    *,
    mix_from: type | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    connect_timeout: float = CONNECT_TIMEOUT,
) -> RemoteTarget:
    """Reach the server at ``target`` (``HOST:PORT``), list its tools, and return what builds
    the adapter of a hammer run.

    ``mix_from``: a local adapter class whose ``default_hammer_mix()`` gives the default mix
    (only imported, never constructed: the tools run on the server). Raises
    :class:`TargetUnreachableError` (one line) when the target is malformed, cannot be reached
    within ``connect_timeout`` seconds or answers unlike a worker server.
    """
    try:
        host, port = parse_target(target)
    except ValueError as exc:
        raise TargetUnreachableError(str(exc)) from None
    session_id = f"hammer-{os.getpid()}"

    async def listing() -> list[ToolSpec]:
        async with BridgeClient(host, port, timeout=connect_timeout) as client:
            specs = await client.initialize_session(session_id)
            await client.cleanup_session(session_id)
            return specs

    try:
        specs = asyncio.run(listing())
    except Exception as exc:  # noqa: BLE001 - any failure to reach it, one line
        raise _unreachable(target, exc) from None
    table = default_mix_table(mix_from) if mix_from is not None else {}
    adapter = RemoteAdapter(
        host, port, specs, session_id=session_id, timeout=timeout, mix_table=table
    )
    return RemoteTarget(adapter)


def _unreachable(target: str, exc: BaseException) -> TargetUnreachableError:
    from snakepit_bridge.loading import exception_summary

    return TargetUnreachableError(
        f"cannot reach the worker server at {target}: {exception_summary(exc)}"
    )
