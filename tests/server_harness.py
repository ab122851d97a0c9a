"""Running the worker server as Snakepit does, and talking to it with a gRPC client of others.

* :func:`start_server` starts ``python -m snakepit_bridge.server`` (or the launcher) in a
  subprocess with Snakepit's full argument list (``--mode threaded`` included), a ready file,
  ``SNAKEPIT_PROCESS_GROUP=1`` and stdin a pipe, and waits (bounded) for the ready file.
  :class:`ServerPool` reaps every process group it started, whatever the test did.
* Clients: grpcio (GIL builds: it has no free-threaded wheels) or grpclib's own client (3.13t),
  both behind one small synchronous interface; messages come from our generated bridge_pb2.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
READY_TIMEOUT = 60.0  # seconds for a server to become ready (bounded; generous for a busy CI)
EXIT_TIMEOUT = 20.0
SERVICE = "/snakepit.bridge.BridgeService/"
RUN_ID = "t3st1d7"


def snakepit_args(
    adapter: str, max_workers: int = 8, *, extra: Sequence[str] = (), check: bool = False
) -> list[str]:
    """The arguments Snakepit's thread profile passes, in its order (with its docs' ``--mode``)."""
    args = ["--adapter", adapter, "--max-workers", str(max_workers)]
    if check:
        args.append("--thread-safety-check")
    args += ["--mode", "threaded"]  # adapter_args from Snakepit's own thread-profile docs
    args += [
        "--port",
        "0",
        "--elixir-address",
        "localhost:50051",
        "--snakepit-run-id",
        RUN_ID,
        "--snakepit-instance-name",
        "tests",
        "--snakepit-instance-token",
        "token",
    ]
    return [*args, *extra]


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SNAKEPIT_", "PYTHON"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(TESTS)])
    env["SNAKEPIT_PROCESS_GROUP"] = "1"
    env["SNAKEPIT_LOG_LEVEL"] = "info"
    env.update(extra)
    return env


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    ready_file: Path
    stdout_path: Path
    stderr_path: Path
    port: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = EXIT_TIMEOUT) -> int:
        return self.proc.wait(timeout)

    def reap(self) -> None:
        """Kill the server's process group if anything is left; always wait for the process."""
        if self.proc.poll() is None:
            try:
                if os.getpgid(self.proc.pid) == self.proc.pid:  # it did call setsid()
                    os.killpg(self.proc.pid, signal.SIGKILL)
                else:
                    self.proc.kill()
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(EXIT_TIMEOUT)
        finally:
            if self.proc.stdin is not None:
                self.proc.stdin.close()


@dataclass
class ServerPool:
    """Starts servers under one temporary directory and reaps them all at the end."""

    directory: Path
    started: list[ServerProcess] = field(default_factory=list)

    def start(
        self,
        args: Sequence[str],
        *,
        python: str = sys.executable,
        command: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        wait_ready: bool = True,
        ready_file: Path | None = None,
    ) -> ServerProcess:
        index = len(self.started)
        ready = ready_file or self.directory / f"ready-{index}"
        out = self.directory / f"server-{index}.out"
        err = self.directory / f"server-{index}.err"
        ready.unlink(missing_ok=True)
        environment = dict(base_env() if env is None else env)
        environment["SNAKEPIT_READY_FILE"] = str(ready)
        argv = list(command) if command is not None else [python, "-m", "snakepit_bridge.server"]
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            proc = subprocess.Popen(
                [*argv, *args],
                stdin=subprocess.PIPE,
                stdout=stdout,
                stderr=stderr,
                env=environment,
                cwd=cwd or self.directory,
            )
        server = ServerProcess(proc, ready, out, err)
        self.started.append(server)
        if wait_ready:
            server.port = wait_for_ready(server)
        return server

    def reap_all(self) -> None:
        for server in self.started:
            server.reap()


def wait_for_ready(server: ServerProcess, timeout: float = READY_TIMEOUT) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.ready_file.exists():
            text = server.ready_file.read_text()
            if text:
                return int(text)
        if server.proc.poll() is not None:
            raise AssertionError(
                f"server exited with {server.proc.returncode} before it was ready:\n"
                + server.stderr()
            )
        time.sleep(0.02)
    raise AssertionError(f"server not ready within {timeout} s:\n" + server.stderr())


# --------------------------------------------------------------------------------------------
# Interpreters
# --------------------------------------------------------------------------------------------


@cache
def free_threaded_python() -> str | None:
    """A free-threaded interpreter that can run the server: this one, $SNAKEPIT_FT_PYTHON, the
    repository's .venv, or the .venv of the main worktree of this repository's git checkout."""
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        return sys.executable
    candidates = [os.environ.get("SNAKEPIT_FT_PYTHON"), str(ROOT / ".venv" / "bin" / "python")]
    main = _main_worktree()
    if main is not None:
        candidates.append(str(main / ".venv" / "bin" / "python"))
    probe = (
        "import sys, sysconfig, grpclib, google.protobuf; "
        "sys.exit(0 if sysconfig.get_config_var('Py_GIL_DISABLED') else 1)"
    )
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            result = subprocess.run(
                [candidate, "-c", probe], capture_output=True, timeout=60, check=False
            )
            if result.returncode == 0:
                return candidate
    return None


def _main_worktree() -> Path | None:
    try:
        result = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--path-format=absolute", "--git-common-dir"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    return Path(result.stdout.strip()).parent


def server_pythons() -> list[tuple[str, str]]:
    """(id, interpreter) pairs the end-to-end tests run the server on."""
    here = "ft-server" if sysconfig.get_config_var("Py_GIL_DISABLED") else "gil-server"
    pythons = [(here, sys.executable)]
    other = free_threaded_python()
    if other is not None and other != sys.executable:
        pythons.append(("ft-server", other))
    return pythons


# --------------------------------------------------------------------------------------------
# Clients
# --------------------------------------------------------------------------------------------


class RpcFailure(Exception):
    """A call ended with a non-OK gRPC status (normalised across client libraries)."""

    def __init__(self, code: str, details: str) -> None:
        super().__init__(f"{code}: {details}")
        self.code = code
        self.details = details


def tool_request(
    tool: str,
    params: Mapping[str, Any] | None = None,
    *,
    raw: Mapping[str, bytes] | None = None,
    binary: Mapping[str, bytes] | None = None,
    session: str = "session-1",
    metadata: Mapping[str, str] | None = None,
) -> Any:
    """An ExecuteToolRequest exactly as Snakepit builds one: JSON text in each Any."""
    from snakepit_bridge.server.proto import bridge_pb2 as pb

    request = pb.ExecuteToolRequest(session_id=session, tool_name=tool)
    for name, value in (params or {}).items():
        request.parameters[name].type_url = "type.googleapis.com/google.protobuf.StringValue"
        request.parameters[name].value = json.dumps(value).encode()
    for name, value in (raw or {}).items():
        request.parameters[name].type_url = "type.googleapis.com/google.protobuf.StringValue"
        request.parameters[name].value = value
    for name, blob in (binary or {}).items():
        request.binary_parameters[name] = blob
    for key, value in (metadata or {}).items():
        request.metadata[key] = value
    return request


Call = tuple[str, Mapping[str, Any]]


class GrpcioClient:
    """grpcio (the reference gRPC implementation), generic calls with our message classes."""

    name = "grpcio"

    def __init__(self, address: str) -> None:
        import grpc  # type: ignore[import-untyped]

        self._grpc = grpc
        self._channel = grpc.insecure_channel(address)
        self._pool = ThreadPoolExecutor(32, thread_name_prefix="client")

    def close(self) -> None:
        self._channel.close()
        self._pool.shutdown(wait=True)

    def _unary(self, method: str, response_type: Any) -> Any:
        return self._channel.unary_unary(
            SERVICE + method,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_type.FromString,
        )

    def _failure(self, error: Any) -> RpcFailure:
        return RpcFailure(error.code().name, error.details() or "")

    def unary(
        self,
        method: str,
        request: Any,
        response_type: Any,
        *,
        timeout: float = 30.0,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> Any:
        try:
            return self._unary(method, response_type)(request, timeout=timeout, metadata=metadata)
        except self._grpc.RpcError as error:
            raise self._failure(error) from None

    def unary_many(
        self, method: str, requests: Iterable[Any], response_type: Any, *, timeout: float = 30.0
    ) -> list[Any]:
        stub = self._unary(method, response_type)
        futures = [stub.future(r, timeout=timeout) for r in requests]
        results: list[Any] = []
        for future in futures:
            try:
                results.append(future.result())
            except self._grpc.RpcError as error:
                results.append(self._failure(error))
        return results

    def stream(
        self,
        request: Any,
        *,
        timeout: float = 30.0,
        cancel_after: int | None = None,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> list[Any]:
        from snakepit_bridge.server.proto import bridge_pb2 as pb

        call = self._channel.unary_stream(
            SERVICE + "ExecuteStreamingTool",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=pb.ToolChunk.FromString,
        )(request, timeout=timeout, metadata=metadata)
        chunks: list[Any] = []
        try:
            for chunk in call:
                chunks.append(chunk)
                if cancel_after is not None and len(chunks) >= cancel_after:
                    call.cancel()
                    break
        except self._grpc.RpcError as error:
            raise self._failure(error) from None
        return chunks

    def telemetry(self, controls: Sequence[Any], *, timeout: float = 10.0) -> list[Any]:
        from snakepit_bridge.server.proto import bridge_pb2 as pb

        call = self._channel.stream_stream(
            SERVICE + "StreamTelemetry",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=pb.TelemetryEvent.FromString,
        )(iter(controls), timeout=timeout)
        try:
            return list(call)
        except self._grpc.RpcError as error:
            raise self._failure(error) from None

    def ping_while(
        self,
        method: str,
        requests: Sequence[Any],
        response_type: Any,
        pings: int,
        *,
        warmup: float,
        timeout: float = 60.0,
    ) -> tuple[list[float], list[Any]]:
        """Latencies of ``pings`` sequential Pings sent while ``requests`` run."""
        from snakepit_bridge.server.proto import bridge_pb2 as pb

        stub = self._unary(method, response_type)
        futures = [stub.future(r, timeout=timeout) for r in requests]
        time.sleep(warmup)
        latencies = []
        ping = self._unary("Ping", pb.PingResponse)
        for _ in range(pings):
            started = time.perf_counter()
            ping(pb.PingRequest(message="load"), timeout=timeout)
            latencies.append(time.perf_counter() - started)
        return latencies, [f.result() for f in futures]


class GrpclibClient:
    """grpclib's client (pure Python: the one that runs on 3.13t), through its generated stub."""

    name = "grpclib"

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self._host, self._port = host, int(port)

    def close(self) -> None:
        pass

    def _run(self, body: Any) -> Any:
        from grpclib.client import Channel
        from grpclib.exceptions import GRPCError, StreamTerminatedError

        from snakepit_bridge.server.proto.bridge_grpc import BridgeServiceStub

        async def main() -> Any:
            channel = Channel(self._host, self._port)
            try:
                return await body(BridgeServiceStub(channel))
            finally:
                channel.close()

        try:
            return asyncio.run(main())
        except GRPCError as error:
            raise RpcFailure(error.status.name, error.message or "") from None
        except TimeoutError:
            raise RpcFailure("DEADLINE_EXCEEDED", "client-side deadline") from None
        except (OSError, StreamTerminatedError) as error:  # what grpcio reports as UNAVAILABLE
            raise RpcFailure("UNAVAILABLE", str(error)) from None

    @staticmethod
    async def _call(
        stub: Any,
        method: str,
        request: Any,
        timeout: float,
        metadata: Sequence[tuple[str, str]] = (),
        response_type: Any = None,
    ) -> Any:
        from grpclib.client import UnaryUnaryMethod
        from grpclib.exceptions import GRPCError, StreamTerminatedError

        call = getattr(stub, method, None)
        if call is None:  # a method the service does not declare
            call = UnaryUnaryMethod(
                stub.Ping.channel, SERVICE + method, type(request), response_type
            )
        try:
            return await call(request, timeout=timeout, metadata=metadata)
        except GRPCError as error:
            return RpcFailure(error.status.name, error.message or "")
        except TimeoutError:
            return RpcFailure("DEADLINE_EXCEEDED", "client-side deadline")
        except (OSError, StreamTerminatedError) as error:
            return RpcFailure("UNAVAILABLE", str(error))
        except AttributeError as error:
            # grpclib's client (0.4) drops its Connection's _transport when the server closes
            # the connection (protocol.Connection.close); a stream created after that raises
            # AttributeError instead of a connection error. The server closed it: UNAVAILABLE.
            if "_transport" not in str(error):
                raise
            return RpcFailure("UNAVAILABLE", f"the server closed the connection ({error})")

    def unary(
        self,
        method: str,
        request: Any,
        response_type: Any,
        *,
        timeout: float = 30.0,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> Any:
        result = self._run(
            lambda stub: self._call(stub, method, request, timeout, metadata, response_type)
        )
        if isinstance(result, RpcFailure):
            raise result
        return result

    def unary_many(
        self, method: str, requests: Iterable[Any], response_type: Any, *, timeout: float = 30.0
    ) -> list[Any]:
        async def body(stub: Any) -> list[Any]:
            return list(
                await asyncio.gather(*(self._call(stub, method, r, timeout) for r in requests))
            )

        return self._run(body)  # type: ignore[no-any-return]

    def stream(
        self,
        request: Any,
        *,
        timeout: float = 30.0,
        cancel_after: int | None = None,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> list[Any]:
        async def body(stub: Any) -> list[Any]:
            chunks: list[Any] = []
            async with stub.ExecuteStreamingTool.open(timeout=timeout, metadata=metadata) as call:
                await call.send_message(request, end=True)
                async for chunk in call:
                    chunks.append(chunk)
                    if cancel_after is not None and len(chunks) >= cancel_after:
                        await call.cancel()
                        break
            return chunks

        return self._run(body)  # type: ignore[no-any-return]

    def telemetry(self, controls: Sequence[Any], *, timeout: float = 10.0) -> list[Any]:
        async def body(stub: Any) -> list[Any]:
            async with stub.StreamTelemetry.open(timeout=timeout) as call:
                for control in controls:
                    await call.send_message(control)
                await call.end()
                return [event async for event in call]

        return self._run(body)  # type: ignore[no-any-return]

    def ping_while(
        self,
        method: str,
        requests: Sequence[Any],
        response_type: Any,
        pings: int,
        *,
        warmup: float,
        timeout: float = 60.0,
    ) -> tuple[list[float], list[Any]]:
        from snakepit_bridge.server.proto import bridge_pb2 as pb

        async def body(stub: Any) -> tuple[list[float], list[Any]]:
            calls = [asyncio.ensure_future(self._call(stub, method, r, timeout)) for r in requests]
            await asyncio.sleep(warmup)
            latencies = []
            for _ in range(pings):
                started = time.perf_counter()
                await stub.Ping(pb.PingRequest(message="load"), timeout=timeout)
                latencies.append(time.perf_counter() - started)
            return latencies, list(await asyncio.gather(*calls))

        return self._run(body)  # type: ignore[no-any-return]


def make_client(address: str) -> GrpcioClient | GrpclibClient:
    """grpcio where it is installed (GIL builds), grpclib's client otherwise (3.13t)."""
    try:
        import grpc  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        return GrpclibClient(address)
    return GrpcioClient(address)


def error_of(response: Any) -> dict[str, Any]:
    """The decoded error JSON of a failed ExecuteToolResponse."""
    assert not response.success, response
    payload: dict[str, Any] = json.loads(response.error_message)
    return payload


def result_of(response: Any) -> Any:
    assert response.success, response.error_message
    assert response.HasField("result"), "result is unset"
    return json.loads(response.result.value)
