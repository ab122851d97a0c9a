"""The loop's look at a request's bytes (``peek_tool_name``) and the pool-side parse it enables."""

from __future__ import annotations

import asyncio
import random

import pytest

pytest.importorskip("google.protobuf")
pytest.importorskip("grpclib")

from google.protobuf.message import DecodeError
from grpclib.exceptions import GRPCError

from snakepit_bridge.base_adapter_threaded import ThreadSafeAdapter, tool
from snakepit_bridge.server.codec import JSON_TYPE_URL
from snakepit_bridge.server.proto import bridge_pb2 as pb
from snakepit_bridge.server.pump import ChunkPump, End
from snakepit_bridge.server.runner import CallInfo, ToolRunner
from snakepit_bridge.server.tools import build_catalog
from snakepit_bridge.server.wire import peek_tool_name


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, wire_type: int, payload: bytes) -> bytes:
    key = _varint((number << 3) | wire_type)
    if wire_type == 2:
        return key + _varint(len(payload)) + payload
    return key + payload


def _random_request(rng: random.Random) -> bytes:
    names = ["echo", "", "stream_items", "ünïcode-tööl", "名前", "x" * 300]
    request = pb.ExecuteToolRequest(
        session_id=rng.choice(["", "s-1", "session ☃"]),
        tool_name=rng.choice(names),
        stream=rng.random() < 0.5,
    )
    for i in range(rng.randrange(4)):
        request.parameters[f"p{i}"].type_url = JSON_TYPE_URL
        request.parameters[f"p{i}"].value = str(rng.randrange(-(10**20), 10**20)).encode()
    for i in range(rng.randrange(3)):
        request.metadata[f"m{i}"] = "v" * rng.randrange(200)
    for i in range(rng.randrange(3)):
        request.binary_parameters[f"b{i}"] = bytes(rng.randrange(256) for _ in range(40))
    raw = request.SerializeToString()
    # Unknown fields of every wire type a parser must skip, in any order.
    extras = [
        _field(90, 0, _varint(rng.randrange(2**64))),
        _field(91, 1, bytes(8)),
        _field(92, 5, bytes(4)),
        _field(93, 2, bytes(rng.randrange(300))),
    ]
    rng.shuffle(extras)
    cut = rng.randrange(len(extras) + 1)
    return b"".join(extras[:cut]) + raw + b"".join(extras[cut:])


def test_the_peek_agrees_with_protobuf_on_well_formed_requests() -> None:
    rng = random.Random(20261208)
    for _ in range(400):
        raw = _random_request(rng)
        parsed = pb.ExecuteToolRequest.FromString(raw)
        assert peek_tool_name(raw) == parsed.tool_name


def test_a_repeated_name_is_the_last_one_as_protobuf_decides() -> None:
    raw = (
        pb.ExecuteToolRequest(tool_name="first").SerializeToString()
        + pb.ExecuteToolRequest(tool_name="second", session_id="s").SerializeToString()
    )
    assert pb.ExecuteToolRequest.FromString(raw).tool_name == "second"
    assert peek_tool_name(raw) == "second"
    assert peek_tool_name(b"") == ""  # an empty message: every field at its default


@pytest.mark.parametrize(
    "raw",
    [
        b"\x12",  # the name's length is missing
        b"\x12\x05ech",  # shorter than its length
        b"\x12\x02\xff\xfe",  # not UTF-8
        b"\x08",  # a varint field without its value
        b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # an eleven-byte varint
        b"\x09\x00\x00",  # a 64-bit field cut short
        b"\x0d\x00",  # a 32-bit field cut short
        b"\x0e",  # wire type 6 does not exist
        b"\x00\x00",  # field number 0 does not exist
    ],
)
def test_what_the_peek_does_not_understand_is_none(raw: bytes) -> None:
    assert peek_tool_name(raw) is None
    # protobuf refuses it too (DecodeError, or UnicodeDecodeError from the pure-Python
    # implementation), so the caller's ordinary parse reports it.
    with pytest.raises((DecodeError, UnicodeDecodeError)):
        pb.ExecuteToolRequest.FromString(raw)


def test_a_group_is_left_to_protobuf() -> None:
    """A well-formed message the peek does not walk (an unknown empty group, which protobuf
    skips): None, so the caller parses it the ordinary way, where it is fine."""
    raw = b"\x0b\x0c" + pb.ExecuteToolRequest(tool_name="echo").SerializeToString()
    assert peek_tool_name(raw) is None
    assert pb.ExecuteToolRequest.FromString(raw).tool_name == "echo"


def test_random_bytes_never_raise() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        raw = bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
        name = peek_tool_name(raw)
        assert name is None or isinstance(name, str)


class _StreamingAdapter(ThreadSafeAdapter):
    @tool(supports_streaming=True)
    def items(self, n: int) -> list[int]:
        return list(range(n))


def test_a_request_malformed_past_its_name_ends_the_stream_with_its_error() -> None:
    """The peek reads a good name, the pool's parse then fails inside a parameter: the stream
    must end with that error (a producer that raised instead would leave the loop waiting)."""
    broken_entry = _field(3, 2, b"\x0a\x05ab")  # a parameters entry whose key runs past it
    raw = pb.ExecuteToolRequest(tool_name="items").SerializeToString() + broken_entry
    assert peek_tool_name(raw) == "items"
    with pytest.raises(DecodeError):
        pb.ExecuteToolRequest.FromString(raw)

    async def scenario() -> End:
        adapter = _StreamingAdapter()
        loop = asyncio.get_running_loop()
        runner = ToolRunner(adapter, build_catalog(adapter), loop, 1 << 20)
        pump: ChunkPump[bytes] = ChunkPump(loop, capacity=2)
        await loop.run_in_executor(None, runner.stream_sync, raw, CallInfo(), pump)
        item = await asyncio.wait_for(pump.get(), 10)
        assert isinstance(item, End)
        return item

    end = asyncio.run(scenario())
    assert isinstance(end.error, GRPCError)
    assert "malformed ExecuteToolRequest" in str(end.error.message)


def test_the_unary_pool_parse_gives_the_same_reply_as_a_loop_parse() -> None:
    adapter = _StreamingAdapter()
    runner = ToolRunner(adapter, build_catalog(adapter), asyncio.new_event_loop(), 1 << 20)
    request = pb.ExecuteToolRequest(tool_name="items", session_id="s")
    request.parameters["n"].type_url = JSON_TYPE_URL
    request.parameters["n"].value = b"3"
    raw = request.SerializeToString()
    from_raw = pb.ExecuteToolResponse.FromString(runner.run_sync_raw(raw, CallInfo()))
    from_message = pb.ExecuteToolResponse.FromString(runner.run_sync(request, CallInfo()))
    assert from_raw.success and from_raw.result.value == b"[0,1,2]"
    assert (from_raw.result.type_url, from_raw.result.value) == (
        from_message.result.type_url,
        from_message.result.value,
    )
    with pytest.raises(GRPCError, match="malformed ExecuteToolRequest"):
        runner.run_sync_raw(b"\x12\x05ech", CallInfo())
