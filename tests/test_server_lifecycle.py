"""The worker server's life: start-up failures, readiness, limits, shutdown, the checker.

Each test starts its own server (as Snakepit does) and every process group is reaped at the end.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("grpclib")
pytest.importorskip("google.protobuf")

from server_harness import (
    RpcFailure,
    ServerPool,
    ServerProcess,
    base_env,
    make_client,
    result_of,
    snakepit_args,
    tool_request,
)
from snakepit_bridge.server.proto import bridge_pb2 as pb

ADAPTER = "server_adapters.ServerTestAdapter"


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[ServerPool]:
    pool = ServerPool(tmp_path)
    try:
        yield pool
    finally:
        pool.reap_all()


def execute(address: str, tool: str, params: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    client = make_client(address)
    try:
        return client.unary(
            "ExecuteTool", tool_request(tool, params), pb.ExecuteToolResponse, **kwargs
        )
    finally:
        client.close()


def in_background(function: Any, *args: Any, **kwargs: Any) -> tuple[threading.Thread, list[Any]]:
    """Run ``function`` on a thread; the list receives its result or exception."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(function(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def wait_started(server: ServerProcess, label: str) -> None:
    assert result_of(execute(server.address, "wait_started", {"label": label})) is True


def marker_env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    marker = tmp_path / "marker.txt"
    return base_env(SERVER_TEST_MARKER=str(marker)), marker


# -- start-up -------------------------------------------------------------------------------------


def test_ready_file_stdout_process_group_and_unknown_flags(servers: ServerPool) -> None:
    server = servers.start(snakepit_args(ADAPTER, 2))
    assert server.ready_file.read_text() == str(server.port)
    assert not list(server.ready_file.parent.glob(".snakepit-ready-*"))  # no temporary left
    assert os.getpgid(server.proc.pid) == server.proc.pid  # SNAKEPIT_PROCESS_GROUP=1: setsid()
    stderr = server.stderr()
    assert "ignoring unknown argument(s): --mode threaded" in stderr
    assert f"on 127.0.0.1:{server.port}" in stderr  # loopback by default
    deadline = time.monotonic() + 10
    while f"GRPC_READY:{server.port}" not in server.stdout() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert f"GRPC_READY:{server.port}" in server.stdout()


def test_snakepit_bridge_serve_runs_the_same_server(servers: ServerPool) -> None:
    import sys

    server = servers.start(
        snakepit_args(ADAPTER, 2), command=[sys.executable, "-m", "snakepit_bridge", "serve"]
    )
    assert result_of(execute(server.address, "echo", {"value": "via cli"})) == "via cli"
    assert "snakepit-bridge serve" not in server.stderr()  # no usage error
    server.signal(signal.SIGTERM)
    assert server.wait() == 0


def test_without_the_variable_there_is_no_new_process_group(servers: ServerPool) -> None:
    env = base_env()
    del env["SNAKEPIT_PROCESS_GROUP"]
    server = servers.start(snakepit_args(ADAPTER, 1), env=env)
    assert os.getpgid(server.proc.pid) != server.proc.pid


def _args_without_mode(adapter: str) -> list[str]:
    args = snakepit_args(adapter, 2)
    index = args.index("--mode")
    return args[:index] + args[index + 2 :]


@pytest.mark.parametrize(
    ("adapter", "status", "message"),
    [
        ("no_such_module.Adapter", 2, "no module named 'no_such_module'"),
        ("server_adapters.NoSuchAdapter", 2, "has no attribute 'NoSuchAdapter'"),
        ("server_adapters:QuotaError", 2, "is not an adapter"),
        ("broken_import_module.Adapter", 2, "ZeroDivisionError"),
        ("server_adapters.BrokenConstructorAdapter", 1, "cannot open the model file"),
        (
            "server_adapters.BrokenInitializeAdapter",
            1,
            "initialize() failed: OSError: the GPU is not there",
        ),
    ],
)
def test_an_adapter_that_cannot_start_exits_with_one_line_and_no_ready_file(
    servers: ServerPool, tmp_path: Path, adapter: str, status: int, message: str
) -> None:
    (tmp_path / "broken_import_module.py").write_text("1 / 0\n")
    env = base_env()
    env["PYTHONPATH"] += os.pathsep + str(tmp_path)
    server = servers.start(_args_without_mode(adapter), env=env, wait_ready=False)
    assert server.wait() == status
    lines = server.stderr().splitlines()
    assert len(lines) == 1, lines
    assert message in lines[0] and "error:" in lines[0]
    assert not server.ready_file.exists()


def test_failing_after_initialize_cleans_up(servers: ServerPool, tmp_path: Path) -> None:
    import socket

    env, marker = marker_env(tmp_path)
    unwritable = servers.start(
        _args_without_mode(ADAPTER),
        env=env,
        wait_ready=False,
        ready_file=tmp_path / "no-such-dir" / "ready",
    )
    assert unwritable.wait() == 1
    # initialize() and cleanup() are logged at info level; the error is the last line, alone.
    assert "cannot write the ready file" in unwritable.stderr().splitlines()[-1]
    assert "Traceback" not in unwritable.stderr()
    with socket.create_server(("127.0.0.1", 0)) as taken:
        args = _args_without_mode(ADAPTER)
        args[args.index("--port") + 1] = str(taken.getsockname()[1])
        busy = servers.start(args, env=env, wait_ready=False)
        assert busy.wait() == 1
    assert "cannot listen on 127.0.0.1" in busy.stderr().splitlines()[-1]
    assert "Traceback" not in busy.stderr()
    assert not busy.ready_file.exists()
    assert marker.read_text().splitlines() == ["initialize 1", "cleanup counter=0"] * 2


def test_bad_options_are_a_usage_error(servers: ServerPool) -> None:
    server = servers.start(["--max-workers", "0"], wait_ready=False)
    assert server.wait() == 2
    assert server.stderr().count("\n") == 1 and "--max-workers" in server.stderr()


def test_async_initialize_and_cleanup_run_once(servers: ServerPool, tmp_path: Path) -> None:
    env, marker = marker_env(tmp_path)
    server = servers.start(snakepit_args("server_adapters.AsyncLifecycleAdapter", 2), env=env)
    assert result_of(execute(server.address, "is_ready")) is True
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
    assert marker.read_text().splitlines() == ["async initialize", "async cleanup"]


def test_an_adapter_declared_not_thread_safe_is_served_from_one_thread(servers: ServerPool) -> None:
    server = servers.start(snakepit_args("server_adapters.UndeclaredAdapter", 4))
    client = make_client(server.address)
    try:
        replies = client.unary_many(
            "ExecuteTool", [tool_request("where")] * 4, pb.ExecuteToolResponse
        )
    finally:
        client.close()
    assert len({result_of(r) for r in replies}) == 1
    assert "serving it from one thread" in server.stderr()


# -- limits -------------------------------------------------------------------------------------


def test_a_full_queue_gives_resource_exhausted(servers: ServerPool) -> None:
    server = servers.start(snakepit_args(ADAPTER, 1, extra=["--max-queued-requests", "1"]))
    blocker, blocked = in_background(
        execute, server.address, "sleep", {"seconds": 1.5, "label": "A"}
    )
    wait_started(server, "A")  # an async tool: served on the loop, not queued behind A
    client = make_client(server.address)
    try:
        replies = client.unary_many(
            "ExecuteTool", [tool_request("sleep", {"seconds": 0.01})] * 2, pb.ExecuteToolResponse
        )
    finally:
        client.close()
    failures = [r for r in replies if isinstance(r, RpcFailure)]
    assert len(failures) == 1 and failures[0].code == "RESOURCE_EXHAUSTED", replies
    blocker.join(30)
    assert blocked and not isinstance(blocked[0], BaseException)


def test_a_queued_call_past_its_deadline_never_runs(servers: ServerPool) -> None:
    server = servers.start(snakepit_args(ADAPTER, 1))
    blocker, _ = in_background(execute, server.address, "sleep", {"seconds": 1.0, "label": "A"})
    wait_started(server, "A")
    with pytest.raises(RpcFailure) as info:
        execute(server.address, "sleep", {"seconds": 0.01, "label": "B"}, timeout=0.3)
    assert info.value.code == "DEADLINE_EXCEEDED"
    blocker.join(30)
    # FIFO pool: had B not been cancelled while queued, it would have run before this call.
    assert result_of(execute(server.address, "was_started", {"label": "B"})) is False


def test_messages_over_the_size_cap_are_refused_and_the_server_keeps_serving(
    servers: ServerPool,
) -> None:
    server = servers.start(snakepit_args(ADAPTER, 2, extra=["--max-message-bytes", "4096"]))
    with pytest.raises(RpcFailure) as request_too_big:
        execute(server.address, "echo", {"value": "x" * 8000})
    assert request_too_big.value.code == "RESOURCE_EXHAUSTED"
    with pytest.raises(RpcFailure) as reply_too_big:
        execute(server.address, "text", {"size": 8000})
    assert reply_too_big.value.code == "RESOURCE_EXHAUSTED"
    assert result_of(execute(server.address, "text", {"size": 100})) == "x" * 100


def test_ping_latency_with_the_pool_saturated(servers: ServerPool) -> None:
    server = servers.start(snakepit_args(ADAPTER, 2))
    client = make_client(server.address)
    try:
        requests = [tool_request("spin", {"seconds": 1.5}) for _ in range(4)]
        latencies, replies = client.ping_while(
            "ExecuteTool", requests, pb.ExecuteToolResponse, pings=30, warmup=0.2
        )
    finally:
        client.close()
    assert all(r.success for r in replies)
    ordered = sorted(latencies)
    p50, worst = ordered[len(ordered) // 2], ordered[-1]
    print(f"Ping, 2 threads spinning + 2 queued: p50 {p50 * 1e3:.1f} ms, max {worst * 1e3:.1f} ms")
    # Loose bounds; on a GIL build the Ping also waits for the GIL (see test_server_e2e).
    assert p50 < 0.25 and worst < (1.0 if "GIL off" in server.stderr() else 3.0), latencies


# -- shutdown ---------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_lets_in_flight_calls_finish_then_cleans_up_once(
    servers: ServerPool, tmp_path: Path, signum: int
) -> None:
    env, marker = marker_env(tmp_path)
    server = servers.start(snakepit_args(ADAPTER, 2), env=env)
    call, result = in_background(execute, server.address, "sleep", {"seconds": 1.5, "label": "in"})
    wait_started(server, "in")
    server.signal(signum)
    # New connections are refused while the in-flight call finishes.
    deadline = time.monotonic() + 10
    while True:
        try:
            execute(server.address, "echo", {"value": 1}, timeout=2)
        except RpcFailure as failure:
            assert failure.code == "UNAVAILABLE"
            break
        assert time.monotonic() < deadline, "the server kept accepting calls after the signal"
        time.sleep(0.02)
    call.join(30)
    assert result and result[0].success, result
    assert server.wait() == 0
    assert marker.read_text().splitlines() == ["initialize 1", "cleanup counter=0"]
    assert "shutting down" in server.stderr() and "cleanup() done" in server.stderr()


def test_a_call_still_running_after_the_grace_period_does_not_hold_the_exit(
    servers: ServerPool, tmp_path: Path
) -> None:
    env, marker = marker_env(tmp_path)
    server = servers.start(snakepit_args(ADAPTER, 2, extra=["--grace-period", "0.5"]), env=env)
    call, result = in_background(
        execute, server.address, "sleep", {"seconds": 30, "label": "stuck"}
    )
    wait_started(server, "stuck")
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
    assert time.monotonic() - started < 10
    assert marker.read_text().splitlines()[-1] == "cleanup counter=0"
    assert "still running on pool threads" in server.stderr()
    call.join(30)
    assert result and isinstance(result[0], RpcFailure)


def test_exit_on_stdin_close(servers: ServerPool, tmp_path: Path) -> None:
    env, marker = marker_env(tmp_path)
    server = servers.start(snakepit_args(ADAPTER, 1, extra=["--exit-on-stdin-close"]), env=env)
    assert server.proc.stdin is not None
    server.proc.stdin.close()
    assert server.wait() == 0
    assert "stdin closed" in server.stderr() and "cleanup counter=0" in marker.read_text()


def test_stdin_closing_is_ignored_without_the_flag(servers: ServerPool) -> None:
    server = servers.start(snakepit_args(ADAPTER, 1))
    assert server.proc.stdin is not None
    server.proc.stdin.close()
    time.sleep(0.3)
    assert server.proc.poll() is None
    assert result_of(execute(server.address, "echo", {"value": "still here"})) == "still here"


# -- the thread-safety checker ---------------------------------------------------------------------


def test_thread_safety_check_logs_each_finding_once(servers: ServerPool) -> None:
    server = servers.start(snakepit_args("server_adapters.RacyAdapter", 4, check=True))
    client = make_client(server.address)
    try:
        for _ in range(3):
            replies = client.unary_many(
                "ExecuteTool", [tool_request("bump")] * 8, pb.ExecuteToolResponse
            )
            assert all(r.success for r in replies)
    finally:
        client.close()
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
    stderr = server.stderr()
    assert stderr.count("unprotected write to RacyAdapter.value") == 1, stderr
    assert "thread-safety check: 1 warning(s)" in stderr


# -- Python's own warnings ------------------------------------------------------------------------


def test_the_server_runs_with_warnings_as_errors(servers: ServerPool) -> None:
    import sys

    server = servers.start(
        snakepit_args(ADAPTER, 2),
        command=[sys.executable, "-W", "error", "-m", "snakepit_bridge.server"],
    )
    assert result_of(execute(server.address, "echo", {"value": [1, 2]})) == [1, 2]
    client = make_client(server.address)
    try:
        chunks = client.stream(tool_request("count_up", {"n": 2}))
    finally:
        client.close()
    assert [json.loads(c.data)["i"] for c in chunks[:-1]] == [0, 1]
    server.signal(signal.SIGTERM)
    assert server.wait() == 0, server.stderr()
    assert "Traceback" not in server.stderr(), server.stderr()
