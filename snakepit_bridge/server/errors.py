"""The error shape Snakepit expects: in band, as JSON, never as a crashed server.

A failed tool call is still an ``ExecuteToolResponse``: ``success=false`` and ``error_message``
holding a JSON object::

    {"type": "ValueError",                 # the exception class name
     "message": "bad value",
     "stacktrace": ["file.py:12 in tool", ...],
     "traceback": "Traceback (most recent call last): ...",
     "context": {"tool_name": "...", "session_id": "...", "correlation_id": "..."}}

Snakepit turns the builtin exception names it knows (``ValueError``, ``KeyError``, ``TypeError``,
...) into its own error structs and anything else into a generic Python exception. A streaming
call reports the same JSON as the message of an ``INTERNAL`` status; that message travels in an
HTTP/2 header, so it is kept short there (``limit``).
"""

from __future__ import annotations

import json
import traceback
from typing import Any

__all__ = ["HEADER_SAFE_LIMIT", "StreamingToolError", "error_json", "streaming_tool_error"]

# Keep the parts of an error bounded: a traceback of a deep recursion, or an exception whose
# message embeds a huge value, must not make an error response larger than a message may be.
_MAX_MESSAGE_CHARS = 16 * 1024
_MAX_TRACEBACK_CHARS = 64 * 1024
_MAX_FRAMES = 100
# gRPC clients commonly cap the header block at 8 KiB (grpcio's default); the status message of a
# streaming error is one header, percent-encoded, so its JSON stays well below that.
HEADER_SAFE_LIMIT = 2048


class StreamingToolError(TypeError):
    """``ExecuteTool`` was asked to run a tool that streams (a generator or async generator):
    such a tool answers ``ExecuteStreamingTool``, which sends its items as chunks."""


def streaming_tool_error(tool_name: str, what: str = "a generator function") -> StreamingToolError:
    return StreamingToolError(
        f"tool {tool_name!r} streams ({what}): call it with ExecuteStreamingTool, which sends "
        "its items as chunks; ExecuteTool returns one result"
    )


def error_json(
    exc: BaseException,
    *,
    tool_name: str,
    session_id: str,
    correlation_id: str | None = None,
    limit: int | None = None,
) -> str:
    """The JSON error object for ``exc``; at most ``limit`` characters when given (the
    traceback, then the frames, then the message are shortened until it fits)."""
    frames = traceback.extract_tb(exc.__traceback__)[-_MAX_FRAMES:]
    payload: dict[str, Any] = {
        "type": type(exc).__name__,
        "message": _clip(_safe_str(exc), _MAX_MESSAGE_CHARS),
        "stacktrace": [f"{f.filename}:{f.lineno} in {f.name}" for f in frames],
        "traceback": _clip_tail(_format(exc), _MAX_TRACEBACK_CHARS),
        "context": {"tool_name": tool_name, "session_id": session_id},
    }
    if correlation_id:
        payload["context"]["correlation_id"] = correlation_id
    text = _dumps(payload)
    if limit is None or len(text) <= limit:
        return text
    payload["traceback"] = ""
    payload["stacktrace"] = payload["stacktrace"][-3:]
    text = _dumps(payload)
    if len(text) > limit:
        payload["stacktrace"] = []
        room = max(0, limit - len(_dumps({**payload, "message": ""})) - 16)
        payload["message"] = _clip(payload["message"], room)
        text = _dumps(payload)
    return text


def _dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=True, separators=(",", ":"))


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not lose the error itself
        return f"<{type(exc).__name__}: str() failed>"


def _format(exc: BaseException) -> str:
    try:
        return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except Exception:  # noqa: BLE001 - as above
        return f"{type(exc).__name__}: <traceback could not be formatted>"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 3)] + "..."


def _clip_tail(text: str, limit: int) -> str:
    """The end of a traceback is the informative part: keep that."""
    return text if len(text) <= limit else "..." + text[-(limit - 3) :]
