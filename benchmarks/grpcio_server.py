"""The reference for the server benchmarks: a minimal grpcio *sync* server hosting an adapter.

What a user would write instead of our server, on a GIL build (grpcio has no free-threaded
wheels): ``grpc.server`` over a ``ThreadPoolExecutor``, generic handlers for ``ExecuteTool`` and
``Ping`` with the generated message classes, the parameters decoded from JSON, the tool called
through the adapter's registry (``call_tool``), the result encoded as JSON::

    python -m benchmarks.grpcio_server --adapter benchmarks.server_tools.BenchToolsAdapter \\
        --max-workers 2 --ready-file /tmp/port

It binds 127.0.0.1 on a free port, writes the port to the ready file (atomically) and serves
until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import threading
from concurrent import futures
from typing import Any

SERVICE = "snakepit.bridge.BridgeService"
STRING_VALUE = "type.googleapis.com/google.protobuf.StringValue"


class Servicer:
    def __init__(self, adapter: Any, messages: Any) -> None:
        self.adapter = adapter
        self.pb = messages  # the generated bridge_pb2 module

    def execute_tool(self, request: Any, context: Any) -> Any:
        pb = self.pb
        try:
            params = {name: json.loads(value.value) for name, value in request.parameters.items()}
            result = self.adapter.call_tool(request.tool_name, **params)
            response = pb.ExecuteToolResponse(success=True)
            if result is not None:
                response.result.type_url = STRING_VALUE
                response.result.value = json.dumps(result).encode()
            return response
        except Exception as exc:  # noqa: BLE001 - in-band error, as Snakepit expects
            error = {"type": type(exc).__name__, "message": str(exc)}
            return pb.ExecuteToolResponse(success=False, error_message=json.dumps(error))

    def ping(self, request: Any, context: Any) -> Any:
        return self.pb.PingResponse(message=f"pong: {request.message}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.grpcio_server")
    parser.add_argument("--adapter", required=True, help="module.Class")
    parser.add_argument("--max-workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--ready-file", required=True)
    ns = parser.parse_args(argv)

    import grpc  # type: ignore[import-untyped]

    from snakepit_bridge.server.proto import bridge_pb2 as pb

    module, _, name = ns.adapter.replace(":", ".").rpartition(".")
    adapter = getattr(importlib.import_module(module), name)()
    servicer = Servicer(adapter, pb)
    handlers = {
        "ExecuteTool": grpc.unary_unary_rpc_method_handler(
            servicer.execute_tool,
            request_deserializer=pb.ExecuteToolRequest.FromString,
            response_serializer=pb.ExecuteToolResponse.SerializeToString,
        ),
        "Ping": grpc.unary_unary_rpc_method_handler(
            servicer.ping,
            request_deserializer=pb.PingRequest.FromString,
            response_serializer=pb.PingResponse.SerializeToString,
        ),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=ns.max_workers))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    tmp = f"{ns.ready_file}.tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(str(port))
    os.replace(tmp, ns.ready_file)
    print(f"GRPC_READY:{port}", flush=True)
    while not stop.wait(0.5):
        pass
    server.stop(grace=1.0).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
