"""The RPC handlers of ``snakepit.bridge.BridgeService``.

Every handler is a coroutine on the one event loop; only tool work goes to the thread pool:

* ``Ping`` and ``Heartbeat`` are answered on the loop at once and never wait for a pool thread,
  so a worker whose threads are all busy still answers Snakepit's heartbeat (one missed
  heartbeat gets a worker killed);
* ``ExecuteTool`` / ``ExecuteStreamingTool`` run sync tools on the pool and ``async def`` tools
  on the loop (see :mod:`.runner`). Pool work is bounded: at most ``max_workers`` run and
  ``max_queued_requests`` wait; beyond that a request gets ``RESOURCE_EXHAUSTED`` at once;
* ``InitializeSession``, ``GetSession`` and ``CleanupSession`` keep a small session table;
* ``StreamTelemetry`` is accepted and kept open (Snakepit opens it at start and only warns when
  it fails); this worker sends no telemetry events.

While the server drains for shutdown, new tool calls get ``UNAVAILABLE``; Ping and Heartbeat are
still answered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

from google.protobuf.message import Message
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

from snakepit_bridge.server.proto import bridge_pb2 as pb
from snakepit_bridge.server.proto.bridge_grpc import BridgeServiceBase
from snakepit_bridge.server.pump import ChunkPump, End
from snakepit_bridge.server.runner import INLINE_PARSE_BYTES, CallInfo, ToolRunner
from snakepit_bridge.server.sessions import SessionStore
from snakepit_bridge.server.tools import ToolCatalog
from snakepit_bridge.server.transport import read_message, send_encoded
from snakepit_bridge.server.wire import peek_tool_name

__all__ = ["BridgeService", "PoolGateway"]

log = logging.getLogger("snakepit_bridge.server")

T = TypeVar("T")
M = TypeVar("M", bound=Message)

CORRELATION_HEADER = "x-snakepit-correlation-id"
# Chunks a streaming tool may produce ahead of what the client has received.
STREAM_BUFFER_CHUNKS = 16


class PoolGateway:
    """Runs functions on the thread pool with a bound on the work waiting for a thread.

    Used from the event loop's thread only, so its counter needs no lock: a job is counted out
    on the loop when its result arrives there (the one hand-back every job makes anyway), or,
    for a job whose caller stopped waiting while it runs on, when the job ends.
    """

    def __init__(
        self,
        pool: ThreadPoolExecutor,
        loop: asyncio.AbstractEventLoop,
        max_workers: int,
        max_queued: int,
    ) -> None:
        self._pool = pool
        self._loop = loop
        self._capacity = max_workers + max_queued
        self.in_flight = 0  # submitted and not finished (running or queued)

    def submit(self, function: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Start ``function(*args)`` on the pool; ``RESOURCE_EXHAUSTED`` when the queue is full.

        Cancelling the returned future cancels the job if no thread has taken it yet; a job that
        is running cannot be stopped (Python threads cannot be interrupted) and runs to its end.
        """
        if self.in_flight >= self._capacity:
            raise GRPCError(
                Status.RESOURCE_EXHAUSTED,
                f"all {self._capacity} request slots are taken (threads busy, queue full); "
                "try again later",
            )
        try:
            job = self._pool.submit(function, *args)
        except RuntimeError:  # the pool was shut down
            raise GRPCError(Status.UNAVAILABLE, "the worker is shutting down") from None
        self.in_flight += 1
        result = asyncio.wrap_future(job, loop=self._loop)
        result.add_done_callback(lambda _result: self._settled(job))
        return result

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        return await self.submit(function, *args)

    def _settled(self, job: Future[Any]) -> None:
        # On the loop. The result arrived, or the caller stopped waiting: a job that has not
        # started was cancelled with it (wrap_future does that), but a running one goes on and
        # still holds its thread until it ends.
        if job.done():
            self.in_flight -= 1
        else:
            job.add_done_callback(self._finished_later)

    def _finished_later(self, _job: Future[Any]) -> None:
        try:
            self._loop.call_soon_threadsafe(self._leave)
        except RuntimeError:  # the loop is closed: nothing is counted any more
            pass

    def _leave(self) -> None:
        self.in_flight -= 1


class BridgeService(BridgeServiceBase):
    """The worker's implementation of ``snakepit.bridge.BridgeService``."""

    def __init__(
        self,
        runner: ToolRunner,
        gateway: PoolGateway,
        catalog: ToolCatalog,
        max_message_bytes: int,
    ) -> None:
        self._runner = runner
        self._gateway = gateway
        self._catalog = catalog
        self._tool_specs = catalog.proto_specs()
        self._limit = max_message_bytes
        self._sessions = SessionStore()
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._draining = False

    # -- shutdown support -----------------------------------------------------------------------
    @property
    def active_requests(self) -> int:
        """Tool calls being served now (on the loop or in the pool)."""
        return self._active

    def begin_drain(self) -> None:
        """Refuse new tool calls from now on (``UNAVAILABLE``)."""
        self._draining = True

    async def wait_idle(self) -> None:
        """Return once no tool call is being served."""
        await self._idle.wait()

    @contextmanager
    def _tool_call(self) -> Iterator[None]:
        if self._draining:
            raise GRPCError(Status.UNAVAILABLE, "the worker is shutting down")
        self._active += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._active -= 1
            if not self._active:
                self._idle.set()

    # -- health: on the loop, never behind tools ------------------------------------------------
    async def Ping(self, stream: Stream[pb.PingRequest, pb.PingResponse]) -> None:
        request = await self._read(stream, pb.PingRequest)
        reply = pb.PingResponse(message=f"pong: {request.message}")
        reply.server_time.GetCurrentTime()
        await stream.send_message(reply)

    async def Heartbeat(self, stream: Stream[pb.HeartbeatRequest, pb.HeartbeatResponse]) -> None:
        await self._read(stream, pb.HeartbeatRequest)
        reply = pb.HeartbeatResponse(session_valid=True)
        reply.server_time.GetCurrentTime()
        await stream.send_message(reply)

    # -- sessions ---------------------------------------------------------------------------------
    async def InitializeSession(
        self, stream: Stream[pb.InitializeSessionRequest, pb.InitializeSessionResponse]
    ) -> None:
        request = await self._read(stream, pb.InitializeSessionRequest)
        self._sessions.open(request.session_id, request.metadata)
        reply = pb.InitializeSessionResponse(success=True)
        for name, spec in self._tool_specs.items():
            reply.available_tools[name].CopyFrom(spec)
        log.info("session %r initialised (%d tools)", request.session_id, len(self._tool_specs))
        await stream.send_message(reply)

    async def CleanupSession(
        self, stream: Stream[pb.CleanupSessionRequest, pb.CleanupSessionResponse]
    ) -> None:
        request = await self._read(stream, pb.CleanupSessionRequest)
        removed = self._sessions.close(request.session_id)
        await stream.send_message(
            pb.CleanupSessionResponse(success=True, resources_cleaned=int(removed))
        )

    async def GetSession(self, stream: Stream[pb.GetSessionRequest, pb.GetSessionResponse]) -> None:
        request = await self._read(stream, pb.GetSessionRequest)
        session = self._sessions.get(request.session_id)
        if session is None:
            raise GRPCError(Status.NOT_FOUND, f"no session {request.session_id!r}")
        reply = pb.GetSessionResponse(
            session_id=session.session_id,
            metadata=dict(session.metadata),
            tool_count=len(self._tool_specs),
        )
        reply.created_at.FromNanoseconds(int(session.created_at * 1e9))
        await stream.send_message(reply)

    # -- tools ------------------------------------------------------------------------------------
    async def ExecuteTool(
        self, stream: Stream[pb.ExecuteToolRequest, pb.ExecuteToolResponse]
    ) -> None:
        with self._tool_call():
            info = _call_info(stream)
            raw = await self._read_raw_tool_request(stream)
            if self._runs_in_pool(raw):
                data = await self._gateway.run(self._runner.run_sync_raw, raw, info)
            else:
                request = await self._parse_tool_request(raw)
                kind = self._runner.kind(request)
                if kind is not None and kind.generates:
                    data = self._runner.refuse_stream(request, info)  # never called: it streams
                elif kind is not None and kind.on_loop:
                    data = await self._runner.run_async(request, info)
                else:
                    data = await self._gateway.run(self._runner.run_sync, request, info)
            await send_encoded(stream, data)

    async def ExecuteStreamingTool(
        self, stream: Stream[pb.ExecuteToolRequest, pb.ToolChunk]
    ) -> None:
        with self._tool_call():
            info = _call_info(stream)
            raw = await self._read_raw_tool_request(stream)
            if self._runs_in_pool(raw, streaming=True):
                count = await self._pump_stream(stream, raw, info)
            else:
                request = await self._parse_tool_request(raw)
                kind = self._runner.kind(request)
                if kind is not None and kind.on_loop:

                    async def send(data: bytes) -> None:
                        await send_encoded(stream, data)

                    count = await self._runner.stream_async(request, info, send)
                else:
                    count = await self._pump_stream(stream, request, info)
            await send_encoded(stream, self._runner.final_chunk(count))

    def _runs_in_pool(self, raw: bytes, streaming: bool = False) -> bool:
        """Whether the request can go to the pool as bytes, to be parsed there: its tool name
        reads cleanly and names no async tool (nor, for ``ExecuteTool``, a generator tool,
        which is refused on the loop). An unknown name goes too: the registry refuses it there,
        counted like any failed request. See :mod:`.wire` for why the loop does not parse."""
        name = peek_tool_name(raw)
        if name is None:
            return False  # malformed: parsed the ordinary way, which reports it
        kind = self._runner.kind_named(name)
        return kind is None or not (kind.on_loop or (kind.generates and not streaming))

    async def _pump_stream(
        self, stream: Stream[Any, Any], request: pb.ExecuteToolRequest | bytes, info: CallInfo
    ) -> int:
        """Stream a sync tool's items, produced on a pool thread (``request`` parsed there when
        it is still bytes)."""
        pump: ChunkPump[bytes] = ChunkPump(asyncio.get_running_loop(), STREAM_BUFFER_CHUNKS)
        job = self._gateway.submit(self._runner.stream_sync, request, info, pump)
        count = 0
        try:
            while True:
                item = await pump.get()
                if isinstance(item, End):
                    if item.error is not None:
                        raise item.error
                    break
                await send_encoded(stream, item)
                pump.consumed()
                count += 1
        except BaseException:
            # The client went away, the deadline passed or the tool failed: the producer must
            # stop (it closes the tool's generator on its own thread), and a job still queued
            # must never start. Only here: on the normal path the job is finishing by itself,
            # and cancelling its future then would cancel this handler's reply.
            pump.stop()
            job.cancel()
            raise
        await job
        return count

    # -- telemetry ------------------------------------------------------------------------------
    async def StreamTelemetry(self, stream: Stream[pb.TelemetryControl, pb.TelemetryEvent]) -> None:
        # Accept control messages until the client closes its side; this worker emits no events.
        while (raw := await read_message(stream, self._limit)) is not None:
            control = _parse(pb.TelemetryControl, raw)
            log.debug("telemetry control ignored: %s", control.WhichOneof("control"))

    # -- helpers --------------------------------------------------------------------------------
    async def _read(self, stream: Stream[Any, Any], message_type: type[M]) -> M:
        raw = await read_message(stream, self._limit)
        return _parse(message_type, raw or b"")

    async def _read_raw_tool_request(self, stream: Stream[Any, Any]) -> bytes:
        raw = await read_message(stream, self._limit)
        if raw is None:
            raise GRPCError(Status.INVALID_ARGUMENT, "the request message is missing")
        return raw

    async def _parse_tool_request(self, raw: bytes) -> pb.ExecuteToolRequest:
        if len(raw) <= INLINE_PARSE_BYTES:
            return self._runner.parse(raw)
        return await self._gateway.run(self._runner.parse, raw)


def _parse(message_type: type[M], raw: bytes) -> M:
    message = message_type()
    try:
        message.ParseFromString(raw)
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise GRPCError(
            Status.INVALID_ARGUMENT, f"malformed {message_type.__name__}: {exc}"
        ) from None
    return message


def _call_info(stream: Stream[Any, Any]) -> CallInfo:
    deadline = None
    if stream.deadline is not None:
        deadline = time.monotonic() + stream.deadline.time_remaining()
    correlation = None
    if stream.metadata is not None:
        value = stream.metadata.get(CORRELATION_HEADER)
        correlation = value if isinstance(value, str) else None
    return CallInfo(correlation_header=correlation, deadline=deadline)
