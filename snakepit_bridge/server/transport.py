"""What this server needs from grpclib beyond its public API: a message-size cap and replies
that were already serialised on a pool thread.

grpclib (0.4) has no limit on the size of a received message: ``Stream.recv_message`` reads the
5-byte gRPC message prefix (a compressed flag and a 32-bit big-endian length, see the gRPC over
HTTP/2 protocol description, "Length-Prefixed-Message") and then buffers that many bytes. The
only safe place for a cap is between the two: :func:`read_message` reads the prefix itself and
refuses a length over the limit with ``RESOURCE_EXHAUSTED`` (the status the gRPC status-code
document gives for a message larger than the receiver accepts) before any of the body is read.
HTTP/2 flow control (grpclib's 4 MiB stream window) bounds what a client can push meanwhile.

This reads ``grpclib.server.Stream._stream`` (grpclib's HTTP/2 stream); the dependency is pinned
below grpclib 0.5 for that reason, and the tests exercise the cap end to end.
"""

from __future__ import annotations

import struct
from typing import Any

from grpclib.const import Status
from grpclib.encoding.proto import ProtoCodec
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

__all__ = ["PreEncodedProtoCodec", "read_message", "send_encoded"]

_PREFIX = struct.Struct(">?I")  # compressed flag, message length


async def read_message(stream: Stream[Any, Any], limit: int) -> bytes | None:
    """The next request message of ``stream`` as raw bytes, or ``None`` at the end of the
    stream; ``GRPCError(RESOURCE_EXHAUSTED)`` for a message longer than ``limit`` bytes."""
    h2_stream = stream._stream
    prefix = await h2_stream.recv_data(_PREFIX.size)
    if not prefix:
        return None
    if len(prefix) != _PREFIX.size:
        raise GRPCError(Status.INTERNAL, "truncated gRPC message prefix")
    compressed, length = _PREFIX.unpack(prefix)
    if compressed:
        # grpclib implements no compression, and a client must not compress unless the server
        # advertised it (gRPC compression spec); Snakepit's client does not compress.
        raise GRPCError(Status.UNIMPLEMENTED, "compressed messages are not supported")
    if length > limit:
        raise GRPCError(
            Status.RESOURCE_EXHAUSTED,
            f"request message of {length} bytes is larger than --max-message-bytes {limit}",
        )
    data: bytes = await h2_stream.recv_data(length)
    if len(data) != length:
        raise GRPCError(Status.INTERNAL, "truncated gRPC message")
    return data


async def send_encoded(stream: Stream[Any, Any], data: bytes) -> None:
    """Send a reply that is already serialised (see :class:`PreEncodedProtoCodec`)."""
    await stream.send_message(data)


class PreEncodedProtoCodec(ProtoCodec):
    """grpclib's protobuf codec, except that ``bytes`` are sent as they are.

    Tool replies are serialised on the pool thread that produced them, so the event loop does
    not spend its time in protobuf for large results; every other reply is a message object and
    is encoded as usual.
    """

    def encode(self, message: Any, message_type: Any) -> bytes:
        if isinstance(message, bytes):
            return message
        return super().encode(message, message_type)
