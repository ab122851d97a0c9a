"""The load client of the server benchmarks: closed-loop streams of unary calls, one process.

``python -m benchmarks.server_load --plan PLAN.json`` runs the phases of the plan, each against
the server at its ``address``, and prints one JSON object (the results of every phase) as the
last line of stdout.

A phase with ``streams`` N runs N concurrent streams on one channel (one HTTP/2 connection,
as Snakepit's one connection per worker), each sending its next ``ExecuteTool`` request as
soon as the previous reply arrived. After ``warmup_s`` seconds, the requests that complete
within the next ``duration_s`` seconds are counted: throughput is their number over that
window, p50/p99 their latencies (the streams are in a steady state by then); with
``min_requests`` the window is extended until that many completed. A phase with
``pings`` also sends that many Pings one after another, on the same channel, while its
streams keep the server busy.

The client is grpcio's asyncio API (``grpc.aio``: the C core does the HTTP/2 work) where
grpcio is importable, else grpclib's client (pure Python, slower: the run says which). The
process's own CPU time per phase is reported, so a reader can see when the client, not the
server, was the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

SERVICE = "/snakepit.bridge.BridgeService/"
STRING_VALUE = "type.googleapis.com/google.protobuf.StringValue"

Caller = Callable[[str, Any, Any, float], Awaitable[Any]]


def tool_request(tool: str, params: dict[str, Any]) -> Any:
    from snakepit_bridge.server.proto import bridge_pb2 as pb

    request = pb.ExecuteToolRequest(session_id="bench", tool_name=tool)
    for name, value in params.items():
        request.parameters[name].type_url = STRING_VALUE
        request.parameters[name].value = json.dumps(value).encode()
    return request


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100), nearest-rank on the sorted values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


class Client:
    """One channel; ``call(method, request, response_type, timeout)`` -> the response."""

    name = "?"

    async def call(self, method: str, request: Any, response_type: Any, timeout: float) -> Any:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class GrpcioClient(Client):
    name = "grpcio (grpc.aio)"

    def __init__(self, address: str) -> None:
        import grpc  # type: ignore[import-untyped]

        self._channel = grpc.aio.insecure_channel(address)
        self._stubs: dict[str, Any] = {}

    async def call(self, method: str, request: Any, response_type: Any, timeout: float) -> Any:
        stub = self._stubs.get(method)
        if stub is None:
            stub = self._stubs[method] = self._channel.unary_unary(
                SERVICE + method,
                request_serializer=type(request).SerializeToString,
                response_deserializer=response_type.FromString,
            )
        return await stub(request, timeout=timeout)

    async def close(self) -> None:
        await self._channel.close()


class GrpclibClient(Client):
    name = "grpclib"

    def __init__(self, address: str) -> None:
        from grpclib.client import Channel

        host, _, port = address.rpartition(":")
        self._channel = Channel(host, int(port))
        self._methods: dict[str, Any] = {}

    async def call(self, method: str, request: Any, response_type: Any, timeout: float) -> Any:
        from grpclib.client import UnaryUnaryMethod

        call = self._methods.get(method)
        if call is None:
            call = self._methods[method] = UnaryUnaryMethod(
                self._channel, SERVICE + method, type(request), response_type
            )
        return await call(request, timeout=timeout)

    async def close(self) -> None:
        self._channel.close()


def make_client(address: str, kind: str) -> Client:
    if kind == "grpcio":
        return GrpcioClient(address)
    if kind == "grpclib":
        return GrpclibClient(address)
    raise ValueError(f"unknown client {kind!r}")


async def run_phase(client: Client, phase: dict[str, Any]) -> dict[str, Any]:
    """One phase on one server (the client's channel to its address)."""
    from snakepit_bridge.server.proto import bridge_pb2 as pb

    request = tool_request(phase["tool"], phase["params"])
    timeout = float(phase.get("timeout_s", 60.0))
    warmup, duration = float(phase["warmup_s"]), float(phase["duration_s"])
    latencies: list[float] = []
    failures: list[str] = []
    stop = asyncio.Event()
    begin = time.perf_counter()
    window_start = begin + warmup
    window_end = window_start + duration
    # The window is extended until at least this many requests completed in it (a slow
    # moment of a shared machine must not leave a point without a figure), up to a bound.
    min_requests = int(phase.get("min_requests", 0))
    max_window_end = window_start + max(duration, float(phase.get("max_window_s", 60.0)))
    completed = 0

    async def stream() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                response = await client.call(
                    "ExecuteTool", request, pb.ExecuteToolResponse, timeout
                )
            except Exception as exc:  # noqa: BLE001 - counted and reported
                failures.append(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(0.01)
                continue
            ended = time.perf_counter()
            if not response.success:
                failures.append(response.error_message[:200])
            elif window_start <= ended and not stop.is_set():
                latencies.append(ended - started)

    cpu0 = time.process_time()
    tasks = [asyncio.ensure_future(stream()) for _ in range(phase["streams"])]
    pings: list[float] = []
    try:
        await asyncio.sleep(max(0.0, window_start - time.perf_counter()))
        cpu_start = time.process_time()
        for _ in range(phase.get("pings", 0)):
            started = time.perf_counter()
            await client.call("Ping", pb.PingRequest(message="load"), pb.PingResponse, timeout)
            pings.append(time.perf_counter() - started)
        await asyncio.sleep(max(0.0, window_end - time.perf_counter()))
        while len(latencies) < min_requests and time.perf_counter() < max_window_end:
            await asyncio.sleep(0.01)
        stop.set()  # from here on, completions are not counted
        window_end = time.perf_counter()
        completed = len(latencies)
        cpu_window = time.process_time() - cpu_start
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    del latencies[completed:]
    elapsed = window_end - window_start
    out: dict[str, Any] = {
        "tool": phase["tool"],
        "streams": phase["streams"],
        "window_s": elapsed,
        "requests": len(latencies),
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": None if not latencies else statistics.median(latencies) * 1e3,
        "p99_ms": None if not latencies else percentile(latencies, 99) * 1e3,  # type: ignore[operator]
        "mean_ms": None if not latencies else statistics.fmean(latencies) * 1e3,
        "failures": len(failures),
        "failure_examples": failures[:3],
        "client_cpu_share": cpu_window / elapsed,  # of one core, over the window
        "client_cpu_s_total": time.process_time() - cpu0,
        "latencies_ms": [round(x * 1e3, 4) for x in latencies],
    }
    if pings:
        out["pings"] = len(pings)
        out["ping_p50_ms"] = statistics.median(pings) * 1e3
        out["ping_p99_ms"] = percentile(pings, 99) * 1e3  # type: ignore[operator]
        out["ping_max_ms"] = max(pings) * 1e3
    return out


async def run_plan(kind: str, phases: list[dict[str, Any]]) -> dict[str, Any]:
    """Every phase in order; one client (one channel) per server address, kept open."""
    clients: dict[str, Client] = {}
    try:
        results = []
        for phase in phases:
            client = clients.get(phase["address"])
            if client is None:
                client = clients[phase["address"]] = make_client(phase["address"], kind)
            results.append(await run_phase(client, phase))
    finally:
        for client in clients.values():
            await client.close()
    name = GrpcioClient.name if kind == "grpcio" else GrpclibClient.name
    return {"client": name, "phases": results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.server_load")
    parser.add_argument("--plan", required=True, help="JSON file: a list of phases")
    parser.add_argument("--client", choices=("grpcio", "grpclib"), default="grpcio")
    ns = parser.parse_args(argv)
    with open(ns.plan, encoding="utf-8") as f:
        phases = json.load(f)
    result = asyncio.run(run_plan(ns.client, phases))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
