"""The tool name of an ``ExecuteToolRequest``, read from its bytes without parsing the message.

The event loop must know a request's tool before anything else: an ``async def`` tool runs on
the loop, a sync tool on the pool. Parsing the whole message on the loop to learn that costs the
loop tens of microseconds per request on 3.13t (protobuf's pure-Python implementation) and, worse,
leaves a message whose every field belongs to the loop's thread for a pool thread to read: on
free-threaded 3.13 a thread reading objects another thread owns, through dictionaries and type
attribute lookups that cannot take a reference without a lock, falls back to per-object and
interpreter-wide locks (several times the single-threaded cost of the pool's work was measured
in the server). So the loop only walks the message's top-level fields (the protobuf wire format:
https://protobuf.dev/programming-guides/encoding/) to find field 2, ``tool_name``, and the pool
thread that runs a sync tool parses the message itself.

Anything this walk does not understand returns ``None``: the caller then parses the message the
ordinary way, which reports the malformed message properly.
"""

from __future__ import annotations

__all__ = ["peek_tool_name"]

_TOOL_NAME_KEY = (2 << 3) | 2  # field 2, wire type 2 (length-delimited)
_MAX_FIELD = (1 << 29) - 1  # the largest field number protobuf allows


def peek_tool_name(raw: bytes) -> str | None:
    """``ExecuteToolRequest.tool_name`` of the serialised request ``raw`` ("" when absent, the
    last one when repeated, as protobuf's parser decides), or ``None`` when ``raw`` is not a
    well-formed message or the name is not valid UTF-8."""
    end = len(raw)
    position = 0
    name: bytes | None = None
    while position < end:
        key, position = _varint(raw, position, end)
        if key < 0:
            return None
        field, wire_type = key >> 3, key & 7
        if field == 0 or field > _MAX_FIELD:
            return None
        if wire_type == 0:  # varint
            value, position = _varint(raw, position, end)
            if value < 0:
                return None
        elif wire_type == 2:  # length-delimited
            length, position = _varint(raw, position, end)
            if length < 0 or position + length > end:
                return None
            if key == _TOOL_NAME_KEY:
                name = raw[position : position + length]
            position += length
        elif wire_type == 1:  # 64-bit
            position += 8
        elif wire_type == 5:  # 32-bit
            position += 4
        else:  # groups (3, 4) are not in this message; 6 and 7 do not exist
            return None
    if position != end:
        return None
    if name is None:
        return ""
    try:
        return name.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _varint(raw: bytes, position: int, end: int) -> tuple[int, int]:
    """The base-128 varint at ``position`` and the position after it; ``(-1, position)`` when
    it runs past ``end`` or over ten bytes."""
    value = 0
    shift = 0
    while position < end and shift < 70:
        byte = raw[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7
    return -1, position
