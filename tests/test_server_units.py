"""The server's pieces in process: codec, error shape, configuration, the chunk pump, readiness."""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from snakepit_bridge.server import codec
from snakepit_bridge.server.config import (
    DEFAULT_ADAPTER,
    DEFAULT_MAX_MESSAGE_BYTES,
    ConfigError,
    default_max_workers,
    parse_config,
)
from snakepit_bridge.server.errors import HEADER_SAFE_LIMIT, error_json
from snakepit_bridge.server.pump import ChunkPump, End

# -- codec ---------------------------------------------------------------------------------------


class Color(enum.IntEnum):
    RED = 3


class Name(str, enum.Enum):  # noqa: UP042 - the str mix-in, not StrEnum, is the case tested
    ADA = "ada"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (42, b"42"),
        (2**70, b"1180591620717411303424"),
        (1.5, b"1.5"),
        (True, b"true"),
        (None, b"null"),
        ("é", '"é"'.encode()),
        ((1, (2, 3)), b"[1,[2,3]]"),
        ({"a": [None]}, b'{"a":[null]}'),
        (Color.RED, b"3"),
        (Name.ADA, b'"ada"'),
    ],
)
def test_encoding_is_exact(value: Any, text: bytes) -> None:
    assert codec.encode_json(value) == text


@pytest.mark.parametrize(
    ("value", "error", "words"),
    [
        (float("nan"), ValueError, ["result", "nan"]),
        ({"a": [1, float("inf")]}, ValueError, ["result['a'][1]", "inf"]),
        (object(), TypeError, ["object"]),
        ({1: "a"}, TypeError, ["key of type int"]),
        ({1, 2}, TypeError, ["set"]),
        ([b"x"], TypeError, ["result[0]", "bytes"]),
        (1 + 2j, TypeError, ["complex"]),
        ("\ud800", ValueError, ["surrogate"]),
    ],
)
def test_what_json_cannot_carry_is_refused_with_its_type_and_place(
    value: Any, error: type[Exception], words: list[str]
) -> None:
    with pytest.raises(error) as info:
        codec.encode_json(value)
    assert all(w in str(info.value) for w in words), str(info.value)


def test_circular_and_deep_values_are_errors() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="circular"):
        codec.encode_json(loop)
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(ValueError, match="nested too deeply"):
        codec.encode_json(deep)


def test_numpy_values() -> None:
    np = pytest.importorskip("numpy")
    assert codec.encode_json(np.arange(3)) == b"[0,1,2]"
    assert codec.encode_json({"m": np.eye(2), "f": np.float32(0.5), "b": np.bool_(False)}) == (
        b'{"m":[[1.0,0.0],[0.0,1.0]],"f":0.5,"b":false}'
    )
    with pytest.raises(ValueError, match=r"result\[1\].*nan"):
        codec.encode_json(np.array([1.0, np.nan]))
    with pytest.raises(TypeError, match="complex"):
        codec.encode_json(np.array([1 + 1j]))


class FakeAny:
    def __init__(self, value: bytes) -> None:
        self.value = value


def test_arguments_decode_strictly() -> None:
    params = {"a": FakeAny(b'{"x": [1, 2.5, null]}'), "b": FakeAny(b"7")}
    assert codec.decode_arguments(params, {"blob": b"\x00\x01"}) == {
        "a": {"x": [1, 2.5, None]},
        "b": 7,
        "blob": b"\x00\x01",
    }
    for bad in (b"NaN", b"-Infinity", b"{", b"", b"\xff"):
        with pytest.raises(ValueError, match="parameter 'a'"):
            codec.decode_arguments({"a": FakeAny(bad)}, {})
    with pytest.raises(ValueError, match="both"):
        codec.decode_arguments({"a": FakeAny(b"1")}, {"a": b""})


# -- error shape ---------------------------------------------------------------------------------


def _raise(message: str) -> BaseException:
    try:
        raise ValueError(message)
    except ValueError as exc:
        return exc


def test_error_json_has_snakepits_keys() -> None:
    payload = json.loads(
        error_json(_raise("bad"), tool_name="t", session_id="s", correlation_id="c")
    )
    assert payload["type"] == "ValueError" and payload["message"] == "bad"
    assert payload["context"] == {"tool_name": "t", "session_id": "s", "correlation_id": "c"}
    assert payload["stacktrace"] and "ValueError: bad" in payload["traceback"]


def test_error_json_fits_a_header_when_asked() -> None:
    text = error_json(_raise("x" * 50_000), tool_name="t", session_id="s", limit=HEADER_SAFE_LIMIT)
    assert len(text) <= HEADER_SAFE_LIMIT
    payload = json.loads(text)
    assert payload["type"] == "ValueError" and payload["message"].startswith("xxx")


def test_a_broken_str_does_not_lose_the_error() -> None:
    class Weird(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert json.loads(error_json(Weird(), tool_name="t", session_id="s"))["type"] == "Weird"


# -- configuration --------------------------------------------------------------------------------

SNAKEPIT = [
    "--adapter",
    "pkg.mod.Adapter",
    "--max-workers",
    "16",
    "--thread-safety-check",
    "--mode",
    "threaded",
    "--port",
    "0",
    "--elixir-address",
    "localhost:50051",
    "--snakepit-run-id",
    "abc1234",
    "--snakepit-instance-name",
    "n",
    "--snakepit-instance-token",
    "t",
]


def test_snakepits_command_line_parses_with_unknown_flags_kept_aside() -> None:
    config = parse_config(
        SNAKEPIT, {"SNAKEPIT_READY_FILE": "/tmp/r", "SNAKEPIT_PROCESS_GROUP": "1"}
    )
    assert config.adapter == "pkg.mod.Adapter" and config.max_workers == 16
    assert config.thread_safety_check and config.port == 0 and config.host == "127.0.0.1"
    assert config.elixir_address == "localhost:50051" and config.snakepit_run_id == "abc1234"
    assert config.unknown_args == ("--mode", "threaded")
    assert config.ready_file == "/tmp/r" and config.process_group
    assert config.max_message_bytes == DEFAULT_MAX_MESSAGE_BYTES and config.grace_period == 4.0


def test_no_abbreviations_an_unknown_prefix_is_only_unknown() -> None:
    config = parse_config(["--max", "3"], {})
    assert config.unknown_args == ("--max", "3")
    assert config.max_workers == default_max_workers()


def test_defaults() -> None:
    config = parse_config([], {})
    assert config.adapter == DEFAULT_ADAPTER and config.max_workers >= 1
    assert config.log_level == "info" and not config.process_group and config.ready_file is None


def test_log_level_flag_wins_and_a_bad_variable_is_only_a_warning() -> None:
    assert parse_config([], {"SNAKEPIT_LOG_LEVEL": "debug"}).log_level == "debug"
    assert (
        parse_config(["--log-level", "error"], {"SNAKEPIT_LOG_LEVEL": "debug"}).log_level == "error"
    )
    config = parse_config([], {"SNAKEPIT_LOG_LEVEL": "loud"})
    assert (
        config.log_level == "info"
        and config.log_level_warning
        and "loud" in config.log_level_warning
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--max-workers", "0"],
        ["--port", "70000"],
        ["--grace-period", "-1"],
        ["--grace-period", "nan"],
        ["--log-level", "loud"],
        ["--max-message-bytes", "x"],
        ["--worker-nice", "20"],
    ],
)
def test_impossible_values_are_config_errors(argv: list[str]) -> None:
    with pytest.raises(ConfigError):
        parse_config(argv, {})


# -- the chunk pump ------------------------------------------------------------------------------


def test_the_pump_is_bounded_and_stop_wakes_the_producer() -> None:
    async def main() -> tuple[list[Any], list[bool]]:
        pump: ChunkPump[int] = ChunkPump(asyncio.get_running_loop(), capacity=2)
        accepted: list[bool] = []

        def produce() -> None:
            for i in range(10):
                ok = pump.put(i)
                accepted.append(ok)
                if not ok:
                    break
            pump.finish()

        producer = threading.Thread(target=produce)
        producer.start()
        received = [await pump.get(), await pump.get()]
        await asyncio.sleep(0.2)
        assert len(accepted) == 2  # the third put waits: nothing was consumed
        pump.consumed()
        received.append(await pump.get())  # the third item now arrives
        pump.stop()
        await asyncio.get_running_loop().run_in_executor(None, producer.join, 30)
        assert not producer.is_alive()
        return received, accepted

    received, accepted = asyncio.run(main())
    assert received == [0, 1, 2]
    assert accepted[:3] == [True, True, True] and accepted[-1] is False and len(accepted) <= 4


def test_the_pump_reports_the_end_and_its_error() -> None:
    async def main() -> list[Any]:
        pump: ChunkPump[int] = ChunkPump(asyncio.get_running_loop(), capacity=4)
        error = RuntimeError("x")
        pump.put(1)
        pump.finish(error)
        return [await pump.get(), await pump.get()]

    first, end = asyncio.run(main())
    assert first == 1 and isinstance(end, End) and isinstance(end.error, RuntimeError)


# -- the pool gateway --------------------------------------------------------------------------


def test_the_gateway_counts_a_job_until_its_thread_is_free() -> None:
    """A finished job leaves the count when its result arrives; a queued job whose caller stops
    waiting leaves it at once (it never runs); a running one only when it really ends, since it
    holds its thread until then. Beyond threads + queue, a request is refused at once."""
    from concurrent.futures import ThreadPoolExecutor

    from grpclib.exceptions import GRPCError

    from snakepit_bridge.server.service import PoolGateway

    async def main() -> None:
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(max_workers=1) as pool:
            gateway = PoolGateway(pool, loop, max_workers=1, max_queued=1)
            assert await gateway.run(lambda: 7) == 7
            assert gateway.in_flight == 0

            started, release = threading.Event(), threading.Event()

            def hold_the_thread() -> None:
                started.set()
                release.wait(30)

            running = gateway.submit(hold_the_thread)
            queued = gateway.submit(lambda: "never")
            assert await loop.run_in_executor(None, started.wait, 30)
            assert gateway.in_flight == 2
            with pytest.raises(GRPCError) as refused:
                gateway.submit(lambda: None)
            assert refused.value.status.name == "RESOURCE_EXHAUSTED"

            queued.cancel()
            running.cancel()
            for _ in range(3):
                await asyncio.sleep(0)  # the done callbacks run on the loop
            assert gateway.in_flight == 1  # the queued job is gone; the running one holds on
            release.set()
            deadline = loop.time() + 30
            while gateway.in_flight and loop.time() < deadline:
                await asyncio.sleep(0.01)
            assert gateway.in_flight == 0

    asyncio.run(main())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
@pytest.mark.parametrize("nice", [0, 3])
def test_the_pool_threads_run_at_the_nice_value_asked(nice: int) -> None:
    """Default 0: the tool threads keep the process's priority; N puts them N levels lower."""
    import os

    from snakepit_bridge.server.config import DEFAULT_WORKER_NICE
    from snakepit_bridge.server.runtime import _start_pool

    assert DEFAULT_WORKER_NICE == 0
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    pool = _start_pool(2, nice)
    try:
        seen = {
            pool.submit(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())).result(
                30
            )
            for _ in range(8)
        }
    finally:
        pool.shutdown(wait=True)
    assert seen == {min(base + nice, 19)}
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base  # the caller's


# -- readiness ---------------------------------------------------------------------------------


def test_the_ready_file_is_written_atomically(tmp_path: Path) -> None:
    pytest.importorskip("grpclib")
    from snakepit_bridge.server.runtime import write_ready_file

    target = tmp_path / "ready"
    write_ready_file(str(target), 50123)
    assert target.read_text() == "50123"
    assert [p.name for p in tmp_path.iterdir()] == ["ready"]
    with pytest.raises(OSError):
        write_ready_file(str(tmp_path / "missing" / "ready"), 1)


@pytest.mark.parametrize(
    ("adapter", "workers", "warning"),
    [
        (
            "server_adapters.UndeclaredAdapter",
            1,
            "sets __thread_safe__ = False: serving it from one",
        ),
        ("server_adapters.NoDeclarationAdapter", 4, "does not declare __thread_safe__ = True"),
        ("server_adapters.InheritsDeclarationAdapter", 4, None),
        ("server_adapters.RacyAdapter", 4, None),
    ],
)
def test_the_pool_follows_the_declaration_rule(
    adapter: str, workers: int, warning: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("grpclib")
    from snakepit_bridge.server import runtime

    config = parse_config(["--adapter", adapter, "--max-workers", "4"], {})
    with caplog.at_level(logging.WARNING, logger="snakepit_bridge.server"):
        _, config = runtime._load_adapter(config)
    assert config.max_workers == workers
    messages = [r.getMessage() for r in caplog.records]
    if warning is None:
        assert messages == []
    else:
        assert len(messages) == 1 and warning in messages[0], messages


def test_the_deadline_helper() -> None:
    from snakepit_bridge.context import RequestContext

    assert RequestContext("s", "t", deadline=time.monotonic() - 1).time_remaining() < 0  # type: ignore[operator]


# -- docs/server.md stays true ---------------------------------------------------------------------

DOC = Path(__file__).resolve().parent.parent / "docs" / "server.md"


def test_every_option_is_documented_and_every_documented_option_exists() -> None:
    from snakepit_bridge.server.config import build_parser

    text = DOC.read_text()
    table = text[text.index("## Command line") : text.index("## Environment")]
    first_cells = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `--")]
    documented = {option for cell in first_cells for option in re.findall(r"`(--[a-z-]+)", cell)}
    parser = build_parser("serve")
    actual = {o for action in parser._actions for o in action.option_strings if o.startswith("--")}
    assert documented == actual - {"--help"}


def test_the_request_context_example_runs() -> None:
    from snakepit_bridge.context import RequestContext, request_scope

    text = DOC.read_text()
    section = text[text.index("## Request context") :]
    code = section[section.index("```python") + len("```python") : section.index("```\n", 10)]
    namespace: dict[str, Any] = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    adapter = namespace["MyAdapter"]()
    assert adapter.call_tool("whoami") == {
        "session": None,
        "correlation": None,
        "seconds_left": None,
    }
    with request_scope(RequestContext("s-1", "whoami", correlation_id="c-1")):
        assert adapter.call_tool("whoami") == {
            "session": "s-1",
            "correlation": "c-1",
            "seconds_left": None,
        }
