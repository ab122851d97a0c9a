"""The sessions Snakepit opened on this worker, for GetSession and CleanupSession.

Snakepit calls ``InitializeSession`` once per worker and nothing depends on the worker keeping
session state: a tool gets its session id with every request. This is bookkeeping only, bounded
(the oldest sessions are forgotten first) and used from the event loop's thread alone.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["Session", "SessionStore"]

MAX_SESSIONS = 1024


@dataclass(frozen=True)
class Session:
    session_id: str
    metadata: Mapping[str, str]
    created_at: float  # time.time()


class SessionStore:
    def __init__(self, capacity: int = MAX_SESSIONS) -> None:
        self._capacity = capacity
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def open(self, session_id: str, metadata: Mapping[str, str]) -> Session:
        """Record a session (again: its metadata and creation time are replaced)."""
        self._sessions.pop(session_id, None)
        session = Session(session_id, MappingProxyType(dict(metadata)), time.time())
        self._sessions[session_id] = session
        while len(self._sessions) > self._capacity:
            self._sessions.popitem(last=False)
        return session

    def get(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def close(self, session_id: str) -> bool:
        return self._sessions.pop(session_id, None) is not None

    def __len__(self) -> int:
        return len(self._sessions)
