"""One tool request: decode the arguments, dispatch through the registry, encode the result.

Sync tools run here on a pool thread, start to finish: JSON decoding, the call, JSON encoding and
protobuf serialisation, so the event loop only moves bytes. ``async def`` tools and async
generators run on the event loop. Either way:

* each request runs in a fresh :class:`contextvars.Context` holding its
  :class:`~snakepit_bridge.context.RequestContext`, so nothing leaks between requests served by
  the same thread and a tool reads its own request's session with ``self.session_id`` or
  :func:`~snakepit_bridge.context.current_request`;
* dispatch goes through the registry, so only declared tools run and arguments are checked
  against the signature: ``adapter.call_tool`` for sync tools, ``adapter.acall_tool`` for async
  ones (which tool is which is the registry's ``ToolSpec.is_async``, see :mod:`.tools`);
* every request is counted by the adapter's native request tracker (when it has one). A sync
  request runs inside ``adapter.track_request()``; nested tracked calls count once per thread,
  so a ``@thread_safe_method`` tool is not counted twice, and a request that fails anywhere
  (bad JSON, unknown tool, the tool, the encoding) counts as an error. An async request runs
  in a task of its own with a fresh context, inside ``adapter.track_request()`` too: the
  tracker's requests are per context, so tasks interleaving on the loop's thread are separate
  requests, each timed from start to end, and a unary one cancelled at its deadline counts as an
  error (a stream stopped by its client or its deadline ends without one, as a sync stream does);
* ``ExecuteTool`` of a generator or async generator tool is refused before the tool is called
  (:class:`~.errors.StreamingToolError`, pointing at ``ExecuteStreamingTool``); the refused
  request is counted once, as an error, inside ``adapter.track_request()`` on the event loop's
  thread, the same way for every kind of generator tool (sync or async, ``@thread_safe_method``
  or not). A result that turns out to be a generator anyway (an adapter of one's own, a wrapper
  that hides the generator function) gets the same error, counted as that request's failure;
* any failure becomes the in-band error response (:mod:`.errors`); the server keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
)
from contextlib import AbstractContextManager
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from grpclib.const import Status
from grpclib.exceptions import GRPCError

from snakepit_bridge.base_adapter import acall
from snakepit_bridge.context import RequestContext, request_scope
from snakepit_bridge.server.codec import JSON_TYPE_URL, decode_arguments, encode_json
from snakepit_bridge.server.errors import (
    HEADER_SAFE_LIMIT,
    StreamingToolError,
    error_json,
    streaming_tool_error,
)
from snakepit_bridge.server.proto import bridge_pb2 as pb
from snakepit_bridge.server.pump import ChunkPump
from snakepit_bridge.server.tools import ToolCatalog, ToolKind

__all__ = ["CallInfo", "ToolRunner"]

log = logging.getLogger("snakepit_bridge.server")

# Requests up to this size are parsed on the event loop (tens of microseconds); larger ones in
# the pool, so a big payload never stalls Ping and Heartbeat.
INLINE_PARSE_BYTES = 64 * 1024


@dataclass(frozen=True)
class CallInfo:
    """What the transport knows about a call before its message is read."""

    correlation_header: str | None = None
    deadline: float | None = None  # time.monotonic() when the client stops waiting


class ToolRunner:
    """Runs tool requests against the one shared adapter."""

    def __init__(
        self,
        adapter: Any,
        catalog: ToolCatalog,
        loop: asyncio.AbstractEventLoop,
        max_message_bytes: int,
    ) -> None:
        self._adapter = adapter
        self._catalog = catalog
        self._loop = loop
        self._limit = max_message_bytes
        track = getattr(adapter, "track_request", None)
        self._track: Callable[[], AbstractContextManager[Any]] = (
            track if callable(track) else contextlib.nullcontext
        )

    # -- parsing --------------------------------------------------------------------------------
    @staticmethod
    def parse(raw: bytes) -> pb.ExecuteToolRequest:
        request = pb.ExecuteToolRequest()
        try:
            request.ParseFromString(raw)
        except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends
            raise GRPCError(
                Status.INVALID_ARGUMENT, f"malformed ExecuteToolRequest: {exc}"
            ) from None
        return request

    def kind(self, request: pb.ExecuteToolRequest) -> ToolKind | None:
        return self._catalog.kind(request.tool_name)

    def kind_named(self, tool_name: str) -> ToolKind | None:
        return self._catalog.kind(tool_name)

    # -- unary, generator tool: refused without calling it --------------------------------------
    def refuse_stream(self, request: pb.ExecuteToolRequest, info: CallInfo) -> bytes:
        """The reply to ``ExecuteTool`` of a tool that can only stream; the tool is not called.
        Counted once as an error, as any request that fails (cheap: done on the loop)."""
        started = time.perf_counter()
        context = _request_context(request, info)
        response: pb.ExecuteToolResponse = contextvars.Context().run(
            self._refuse_stream_scoped, context
        )
        return self._finish(response, context, started)

    def _refuse_stream_scoped(self, context: RequestContext) -> pb.ExecuteToolResponse:
        with request_scope(context):
            try:
                with self._track():
                    raise streaming_tool_error(context.tool_name)
            except StreamingToolError as exc:
                return self._failure(exc, context)

    # -- unary, sync tool: the whole request on the calling pool thread -------------------------
    def run_sync_raw(self, raw: bytes, info: CallInfo) -> bytes:
        """:meth:`run_sync` of the request serialised in ``raw``, parsed on this thread (so the
        message's objects belong to the thread that reads them, see :mod:`.wire`)."""
        return self.run_sync(self.parse(raw), info)

    def run_sync(self, request: pb.ExecuteToolRequest, info: CallInfo) -> bytes:
        started = time.perf_counter()
        context = _request_context(request, info)
        response: pb.ExecuteToolResponse = contextvars.Context().run(
            self._run_sync_scoped, request, context
        )
        return self._finish(response, context, started)

    def _run_sync_scoped(
        self, request: pb.ExecuteToolRequest, context: RequestContext
    ) -> pb.ExecuteToolResponse:
        with request_scope(context):
            try:
                with self._track():
                    arguments = decode_arguments(request.parameters, request.binary_parameters)
                    result = self._adapter.call_tool(request.tool_name, **arguments)
                    if inspect.isawaitable(result):  # an adapter of its own that returned one
                        result = self._await_on_loop(result, context)
                    return _success(result, context.tool_name)
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - any failure is a reply; sys.exit() in a tool must not stop the server
                return self._failure(exc, context)

    def _await_on_loop(self, awaitable: Awaitable[Any], context: RequestContext) -> Any:
        async def wait() -> Any:
            return await awaitable

        future = asyncio.run_coroutine_threadsafe(wait(), self._loop)
        remaining = context.time_remaining()
        try:
            return future.result(None if remaining is None else max(remaining, 0.0))
        except TimeoutError:
            future.cancel()  # past the deadline: stop the coroutine at its current await
            raise

    # -- unary, async tool: on the event loop ---------------------------------------------------
    async def run_async(self, request: pb.ExecuteToolRequest, info: CallInfo) -> bytes:
        started = time.perf_counter()
        context = _request_context(request, info)

        async def call() -> pb.ExecuteToolResponse:
            with request_scope(context):
                try:
                    with self._track():  # this task's context: its own request, timed
                        arguments = decode_arguments(request.parameters, request.binary_parameters)
                        result = await acall(self._adapter, request.tool_name, **arguments)
                        return _success(result, context.tool_name)
                except (Exception, SystemExit) as exc:  # noqa: BLE001 - as in _run_sync_scoped
                    return self._failure(exc, context)

        # A task of its own, in a fresh context: cancelling this handler (deadline, client gone)
        # cancels the tool at its current await.
        response = await asyncio.create_task(call(), context=contextvars.Context())
        return self._finish(response, context, started)

    def _finish(
        self, response: pb.ExecuteToolResponse, context: RequestContext, started: float
    ) -> bytes:
        response.execution_time_ms = _elapsed_ms(started)
        if context.correlation_id:
            response.metadata["correlation_id"] = context.correlation_id
        return self._serialize(response, "reply")

    # -- streaming, sync tool: drained on the calling pool thread -------------------------------
    def stream_sync(
        self, request: pb.ExecuteToolRequest | bytes, info: CallInfo, pump: ChunkPump[bytes]
    ) -> None:
        """Drain the tool's items into ``pump``; ``request`` may still be serialised (then it is
        parsed here, and a malformed one ends the stream with its error)."""
        if isinstance(request, bytes):
            try:
                request = self.parse(request)
            except GRPCError as exc:
                pump.finish(exc)
                return
        context = _request_context(request, info)
        contextvars.Context().run(self._stream_sync_scoped, request, context, pump)

    def _stream_sync_scoped(
        self, request: pb.ExecuteToolRequest, context: RequestContext, pump: ChunkPump[bytes]
    ) -> None:
        with request_scope(context):
            items: Iterator[Any] | None = None
            count = 0
            try:
                with self._track():
                    arguments = decode_arguments(request.parameters, request.binary_parameters)
                    result = self._adapter.call_tool(request.tool_name, **arguments)
                    items = _items(result)
                    for item in items:
                        if not pump.put(self._chunk(count, item)):
                            break  # the client went away: the finally below closes the generator
                        count += 1
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - as in _run_sync_scoped
                pump.finish(self._stream_failure(exc, context))
                return
            finally:
                _close(items)
            pump.finish()

    # -- streaming, async generator: on the event loop ------------------------------------------
    async def stream_async(
        self,
        request: pb.ExecuteToolRequest,
        info: CallInfo,
        send: Callable[[bytes], Awaitable[None]],
    ) -> int:
        context = _request_context(request, info)

        async def body() -> int:
            count = 0
            stopped = False
            with request_scope(context):
                try:
                    with self._track():
                        result: Any = None
                        try:
                            arguments = decode_arguments(
                                request.parameters, request.binary_parameters
                            )
                            result = await acall(self._adapter, request.tool_name, **arguments)
                            async for item in _async_items(result):
                                await send(self._chunk(count, item))
                                count += 1
                        except asyncio.CancelledError:
                            # The client went away or the deadline passed: the stream was
                            # stopped, as a sync one is, and the request ends without an error.
                            stopped = True
                        finally:
                            await _aclose(result)  # its finally blocks run now, not at GC
                except (Exception, SystemExit) as exc:  # noqa: BLE001 - as in _run_sync_scoped
                    raise self._stream_failure(exc, context) from None
            if stopped:
                raise asyncio.CancelledError
            return count

        return await asyncio.create_task(body(), context=contextvars.Context())

    # -- encoding -------------------------------------------------------------------------------
    def _chunk(self, index: int, item: Any) -> bytes:
        chunk = pb.ToolChunk(chunk_id=str(index), data=encode_json(item, f"chunk {index}"))
        return self._serialize(chunk, f"chunk {index}")

    def final_chunk(self, count: int) -> bytes:
        """The empty chunk that ends every successful stream (Snakepit ignores its data)."""
        return pb.ToolChunk(chunk_id=str(count), is_final=True).SerializeToString()

    def _serialize(self, message: Any, what: str) -> bytes:
        data: bytes = message.SerializeToString()
        if len(data) > self._limit:
            raise GRPCError(
                Status.RESOURCE_EXHAUSTED,
                f"the {what} is {len(data)} bytes, more than --max-message-bytes {self._limit}",
            )
        return data

    def _failure(self, exc: BaseException, context: RequestContext) -> pb.ExecuteToolResponse:
        _log_failure(exc, context)
        return pb.ExecuteToolResponse(
            success=False,
            error_message=error_json(
                exc,
                tool_name=context.tool_name,
                session_id=context.session_id,
                correlation_id=context.correlation_id,
            ),
        )

    def _stream_failure(self, exc: BaseException, context: RequestContext) -> GRPCError:
        if isinstance(exc, GRPCError):  # an oversized chunk: already a status
            return exc
        _log_failure(exc, context)
        message = error_json(
            exc,
            tool_name=context.tool_name,
            session_id=context.session_id,
            correlation_id=context.correlation_id,
            limit=HEADER_SAFE_LIMIT,
        )
        return GRPCError(Status.INTERNAL, message)


def _request_context(request: pb.ExecuteToolRequest, info: CallInfo) -> RequestContext:
    metadata: Mapping[str, str] = MappingProxyType(dict(request.metadata))
    return RequestContext(
        session_id=request.session_id,
        tool_name=request.tool_name,
        correlation_id=metadata.get("correlation_id") or info.correlation_header,
        metadata=metadata,
        deadline=info.deadline,
    )


def _success(result: Any, tool_name: str) -> pb.ExecuteToolResponse:
    if isinstance(result, (Generator, AsyncGenerator)):  # not seen by the catalog: say what it is
        if isinstance(result, Generator):
            result.close()  # never started; no request of a tracked generator left open
        kind = "an async generator" if isinstance(result, AsyncGenerator) else "a generator"
        raise streaming_tool_error(tool_name, f"it returned {kind}")
    response = pb.ExecuteToolResponse(success=True)
    if result is None:
        return response  # `result` stays unset: Snakepit reads nil
    if isinstance(result, (bytes, bytearray, memoryview)):
        response.binary_result = bytes(result)
        return response
    response.result.type_url = JSON_TYPE_URL
    response.result.value = encode_json(result)
    return response


def _items(result: Any) -> Iterator[Any]:
    """The stream items of a sync tool's result: the items of a generator, iterator or
    sequence; one item for a single value (a dict, a string, a number, a NumPy array); none for
    ``None``."""
    if result is None:
        return iter(())
    if _single_value(result):
        return iter((result,))
    if hasattr(result, "__aiter__"):
        raise TypeError(
            "the tool returned an async iterator from a sync function; declare it `async def`"
        )
    if isinstance(result, Iterable):
        return iter(result)
    return iter((result,))


async def _async_items(result: Any) -> AsyncIterator[Any]:
    if hasattr(result, "__aiter__"):
        async for item in result:
            yield item
        return
    for item in _items(result):
        yield item


def _single_value(value: Any) -> bool:
    return isinstance(value, (str, bytes, bytearray, memoryview, Mapping)) or (
        type(value).__module__ == "numpy"
    )


def _close(items: Iterator[Any] | None) -> None:
    close = getattr(items, "close", None)
    if callable(close):
        try:
            close()
        except Exception:
            log.exception("closing the tool's generator failed")


async def _aclose(result: Any) -> None:
    """Close a stream tool's generator (async or sync) that may be suspended mid-stream."""
    if inspect.isasyncgen(result):
        try:
            await result.aclose()
        except Exception:
            log.exception("closing the tool's async generator failed")
    elif inspect.isgenerator(result):
        _close(result)


def _log_failure(exc: BaseException, context: RequestContext) -> None:
    log.warning(
        "tool %r failed (session %r, correlation %r): %s: %s",
        context.tool_name,
        context.session_id,
        context.correlation_id,
        type(exc).__name__,
        exc,
        exc_info=log.isEnabledFor(logging.DEBUG),
    )


def _elapsed_ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000.0)
