"""``snakepit-bridge hammer --target HOST:PORT`` against a real worker server, and ``make demo``.

Every server is a subprocess on the loopback interface, started with a ready file and reaped by
the fixture whatever the test did; every wait is bounded (the harness's timeouts, ``RUN_TIMEOUT``
for a command).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from server_harness import ROOT, ServerPool, ServerProcess, base_env, snakepit_args

pytest.importorskip("grpclib")

ADAPTER = "server_adapters.ServerTestAdapter"
RUN_TIMEOUT = 600.0  # seconds for one command; only there so that a hang fails the test


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    pool = ServerPool(tmp_path_factory.mktemp("remote"))
    try:
        yield pool.start(snakepit_args(ADAPTER, 4))
    finally:
        pool.reap_all()


def hammer(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "snakepit_bridge", "hammer", *args],
        capture_output=True,
        text=True,
        env=base_env(),
        timeout=RUN_TIMEOUT,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def hammer_json(*args: str) -> tuple[int, dict[str, Any]]:
    proc = hammer(*args, "--quiet", "--json")
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def call(server: ServerProcess, tool: str, **arguments: Any) -> Any:
    from snakepit_bridge.server.client import BridgeClient

    async def main() -> Any:
        async with BridgeClient("127.0.0.1", server.port, timeout=30.0) as client:
            return await client.execute(tool, arguments)

    return asyncio.run(main())


def test_exact_counts_on_the_server(server: ServerProcess) -> None:
    before = call(server, "counts")["counter"]
    code, report = hammer_json(
        "--target", server.address, "--tool", "increment", "--threads", "8", "--requests", "400"
    )
    assert code == 0 and report["exit_code"] == 0
    assert report["adapter"] == f"grpc://{server.address}"
    assert report["requests"] == {"completed": 400, "succeeded": 400, "failed": 0}
    assert report["per_tool"]["increment"]["requests"] == 400
    assert sum(report["threads"]["requests_per_thread"]) == 400
    assert report["threads"]["count"] == 8
    # Every request ran once on the server: its own counter moved by exactly that much.
    assert call(server, "counts")["counter"] - before == 400
    stats = report["adapter_stats"]
    assert stats["remote"] is True and stats["target"] == server.address
    assert stats["adapter_class"] == "ServerTestAdapter"
    assert "cannot be read over gRPC" in stats["note"]


def test_an_in_band_error_counts_as_an_error_with_its_type_and_message(
    server: ServerProcess,
) -> None:
    code, report = hammer_json(
        "--target", server.address, "--tool", "fail", "--tool", "echo",
        "--args", '{"fail": {"message": "bad input"}, "echo": {"value": 1}}',
        "--threads", "4", "--requests", "300", "--seed", "7",
    )  # fmt: skip
    assert code == 1 and report["exit_code"] == 1
    failed = report["per_tool"]["fail"]["requests"]
    echoed = report["per_tool"]["echo"]["requests"]
    assert failed + echoed == 300 and failed > 0 and echoed > 0
    assert report["requests"] == {"completed": 300, "succeeded": echoed, "failed": failed}
    assert report["per_tool"]["fail"]["errors"] == failed
    assert report["per_tool"]["echo"]["errors"] == 0
    (group,) = report["errors"]
    assert (group["tool"], group["type"], group["message"], group["count"]) == (
        "fail",
        "ValueError",
        "bad input",
        failed,
    )
    assert re.fullmatch(r".*server_adapters\.py:\d+", group["location"]), group["location"]
    assert "raise ValueError(message)" in group["traceback"]  # the server's own traceback


def test_streaming_and_async_tools_over_grpc(server: ServerProcess) -> None:
    code, report = hammer_json(
        "--target", server.address,
        "--tool", "count_up", "--tool", "async_count", "--tool", "async_echo",
        "--args", '{"count_up": {"n": 3}, "async_count": {"n": 4}, "async_echo": {"value": "x"}}',
        "--threads", "6", "--requests", "240",
    )  # fmt: skip
    assert code == 0, report["errors"]
    assert report["requests"] == {"completed": 240, "succeeded": 240, "failed": 0}
    assert sum(t["requests"] for t in report["per_tool"].values()) == 240
    assert set(report["per_tool"]) == {"count_up", "async_count", "async_echo"}


def test_an_error_mid_stream_counts_once(server: ServerProcess) -> None:
    code, report = hammer_json(
        "--target", server.address, "--tool", "stream_fail",
        "--args", '{"stream_fail": {"after": 2}}', "--threads", "4", "--requests", "80",
    )  # fmt: skip
    assert code == 1
    assert report["requests"] == {"completed": 80, "succeeded": 0, "failed": 80}
    (group,) = report["errors"]
    assert (group["type"], group["message"], group["count"]) == (
        "RuntimeError",
        "stream broke after 2 items",
        80,
    )


def test_the_text_report_says_the_served_adapters_stats_cannot_be_read(
    server: ServerProcess,
) -> None:
    proc = hammer("--target", server.address, "--tool", "echo", "--requests", "20", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert f"adapter     grpc://{server.address}" in proc.stdout
    assert "20 completed, 20 succeeded, 0 failed" in proc.stdout
    assert "cannot be read over gRPC" in proc.stdout


def test_target_usage_errors_are_one_line() -> None:
    unreachable = hammer("--target", "127.0.0.1:1", "--requests", "5", "--quiet")
    assert unreachable.returncode == 2
    assert "cannot reach the worker server at 127.0.0.1:1" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr
    malformed = hammer("--target", "localhost", "--quiet")
    assert malformed.returncode == 2 and "--target must be HOST:PORT" in malformed.stderr
    checked = hammer("--target", "127.0.0.1:1", "--thread-safety-check", "--quiet")
    assert checked.returncode == 2 and "start the server with --thread-safety-check" in (
        checked.stderr
    )


def test_the_showcase_default_mix_is_borrowed_over_grpc(tmp_path: Path) -> None:
    """ADAPTER (the showcase by default) lends its default mix: tools with required arguments
    (matrix_multiply's 100 inputs) run on the server with valid arguments."""
    pytest.importorskip("numpy")
    pool = ServerPool(tmp_path)
    try:
        showcase = pool.start(["--port", "0", "--max-workers", "2"])
        code, report = hammer_json(
            "--target", showcase.address, "--requests", "300", "--threads", "4", "--seed", "3"
        )
    finally:
        pool.reap_all()
    assert code == 0, report["errors"]
    assert report["requests"] == {"completed": 300, "succeeded": 300, "failed": 0}
    mix = {entry["tool"]: entry for entry in report["config"]["mix"]}
    assert mix["matrix_multiply"]["weight"] == 3
    assert len(mix["matrix_multiply"]["args"]["input_vector"]) == 100
    assert {"async_batch_process", "stream_batch"} <= set(report["per_tool"])


# --------------------------------------------------------------------------------------------
# make demo
# --------------------------------------------------------------------------------------------


def test_the_demo_serves_the_showcase_hammers_it_over_grpc_and_reaps_the_server() -> None:
    pytest.importorskip("numpy")
    env = base_env()
    env.pop("SNAKEPIT_PROCESS_GROUP")  # the demo sets it for its own server
    env["SNAKEPIT_DEMO_REQUESTS"] = "320"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--json", "--seed", "5"],
        capture_output=True,
        text=True,
        env=env,
        timeout=RUN_TIMEOUT,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["requests"] == {"completed": 320, "succeeded": 320, "failed": 0}
    assert report["config"]["threads"] == 16 and report["threads"]["count"] == 16
    assert report["adapter"].startswith("grpc://127.0.0.1:")
    assert {"async_batch_process", "stream_batch", "matrix_multiply"} <= set(report["per_tool"])
    stopped = re.search(r"server \(pid (\d+)\) stopped with SIGTERM, exit status 0", proc.stderr)
    assert stopped is not None, proc.stderr
    with pytest.raises(ProcessLookupError):  # reaped: no such process any more
        os.kill(int(stopped.group(1)), 0)


def test_the_demo_reaps_the_server_when_the_hammer_fails() -> None:
    env = base_env()
    env.pop("SNAKEPIT_PROCESS_GROUP")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--requests", "0", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=RUN_TIMEOUT,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr  # the hammer's usage error, passed on
    stopped = re.search(r"server \(pid (\d+)\) stopped with SIGTERM", proc.stderr)
    assert stopped is not None, proc.stderr
    with pytest.raises(ProcessLookupError):
        os.kill(int(stopped.group(1)), 0)


# --------------------------------------------------------------------------------------------
# The client's pieces, without a server
# --------------------------------------------------------------------------------------------


def test_targets_are_parsed_strictly() -> None:
    from snakepit_bridge.server.client import parse_target

    assert parse_target("127.0.0.1:50051") == ("127.0.0.1", 50051)
    assert parse_target("[::1]:8080") == ("::1", 8080)
    for bad in ("localhost", ":80", "host:", "host:0", "host:65536", "host:http"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_target(bad)


def test_the_servers_tool_specs_come_back_as_they_were_apart_from_being_async() -> None:
    """What InitializeSession sends (server/tools.py) read back by the client: the same
    ToolSpec, parameter kinds and defaults included, marked async (a remote call is)."""
    import dataclasses

    from server_adapters import ServerTestAdapter
    from snakepit_bridge.server.client import _tool_spec
    from snakepit_bridge.server.tools import build_catalog

    adapter = ServerTestAdapter()
    messages = build_catalog(adapter).proto_specs()
    for spec in adapter.get_tools():
        back = _tool_spec(messages[spec.name])
        assert back == dataclasses.replace(spec, is_async=True), spec.name


def test_error_json_that_is_not_the_servers_is_kept_as_text() -> None:
    from snakepit_bridge.server.client import RemoteToolError, _remote_error

    assert RemoteToolError.from_error_json("t", "not json") is None
    assert RemoteToolError.from_error_json("t", '{"message": "no type"}') is None
    kept = _remote_error("t", "plain failure text")
    assert (kept.remote_type, str(kept), kept.remote_location) == (
        "RemoteError",
        "plain failure text",
        "?",
    )
    parsed = RemoteToolError.from_error_json(
        "t", json.dumps({"type": "KeyError", "message": "'k'", "stacktrace": ["/a.py:3 in f"]})
    )
    assert parsed is not None
    assert (parsed.remote_type, str(parsed), parsed.remote_location) == (
        "KeyError",
        "'k'",
        "/a.py:3",
    )
