"""The context of the request being served, per request rather than per adapter.

The worker server shares one adapter instance between all of its pool threads, so anything that
belongs to *one* request (its session id, metadata, correlation id, tool name, deadline) cannot
live on the adapter: two requests running at the same time would overwrite each other's. It
lives in a :class:`contextvars.ContextVar` instead. The server runs every request in a fresh
:class:`contextvars.Context`, so each request sees its own values on whatever thread serves it,
and nothing one request sets is visible to the next request served by the same thread.

A tool reads its request's context with :func:`current_request`::

    from snakepit_bridge.context import current_request

    @tool
    def whoami(self) -> dict:
        request = current_request()          # None outside the server (a plain call)
        return {"session": request.session_id if request else None}

``BaseAdapter.session_id`` and ``BaseAdapter.session_context`` read the same per-request value.

Context variables follow the code, not the thread: ``asyncio`` tasks copy the context they are
created in, but a ``threading.Thread`` started by a tool does not (pass what it needs, or run it
with ``contextvars.copy_context().run``). See the Python documentation of :mod:`contextvars`.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["RequestContext", "current_request", "request_scope"]

_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True)
class RequestContext:
    """What the server knows about the request a tool is serving.

    ``metadata`` is the request's string metadata (Snakepit sends ``correlation_id``,
    ``python_runtime_hash`` and others); ``correlation_id`` is taken from it, or from the
    ``x-snakepit-correlation-id`` header. ``deadline`` is the :func:`time.monotonic` time at
    which the client stops waiting, or ``None`` without a deadline.
    """

    session_id: str
    tool_name: str
    correlation_id: str | None = None
    metadata: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    deadline: float | None = None

    def time_remaining(self) -> float | None:
        """Seconds until the deadline (negative once it passed), or ``None`` without one."""
        return None if self.deadline is None else self.deadline - time.monotonic()


_current: ContextVar[RequestContext | None] = ContextVar("snakepit_request", default=None)


def current_request() -> RequestContext | None:
    """The context of the request being served in this execution context, or ``None``."""
    return _current.get()


@contextmanager
def request_scope(context: RequestContext) -> Iterator[RequestContext]:
    """Make ``context`` the current request inside the ``with`` block (then restore)."""
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


# --------------------------------------------------------------------------------------------
# Session contexts set through BaseAdapter.set_session_context: per execution context and per
# adapter. The variable holds an immutable tuple of (adapter reference, context) pairs,
# replaced on every change, so no lock is needed and other contexts never see the change.
# Adapters are held weakly where they allow it, so a context never keeps one alive.
# --------------------------------------------------------------------------------------------

_Ref = Any  # weakref.ref to the adapter, or the adapter itself when it cannot be weakly referenced
_sessions: ContextVar[tuple[tuple[_Ref, Any], ...]] = ContextVar("snakepit_sessions", default=())


def _referent(ref: _Ref) -> Any:
    return ref() if isinstance(ref, weakref.ref) else ref


def bind_session_context(adapter: object, context: Any) -> None:
    """Store ``context`` as ``adapter``'s session context in the current execution context."""
    kept = tuple(
        (ref, value)
        for ref, value in _sessions.get()
        if (target := _referent(ref)) is not None and target is not adapter
    )
    try:
        ref: _Ref = weakref.ref(adapter)
    except TypeError:  # __slots__ without __weakref__
        ref = adapter
    _sessions.set((*kept, (ref, context)))


def session_context_of(adapter: object) -> Any:
    """``adapter``'s session context in the current execution context.

    The context stored by :func:`bind_session_context` for this adapter, else the current
    :class:`RequestContext` (which has a ``session_id``), else ``None``.
    """
    for ref, value in _sessions.get():
        if _referent(ref) is adapter:
            return value
    return _current.get()
