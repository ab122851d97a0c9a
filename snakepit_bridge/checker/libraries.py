"""The thread-unsafe libraries the checker knows: why each one is unsafe, and the safe pattern.

Read by :meth:`ThreadSafetyChecker.check_library_safety` (at run time) and by
:func:`check_common_pitfalls` (the static review); published read-only as
``ThreadSafetyChecker.UNSAFE_LIBRARIES``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

__all__ = ["LIBRARY_ADVICE", "UNSAFE_LIBRARIES", "library_message", "unsafe_libraries_in"]


@dataclass(frozen=True)
class _LibraryAdvice:
    reason: str
    safe_pattern: str


LIBRARY_ADVICE: Final[Mapping[str, _LibraryAdvice]] = MappingProxyType(
    {
        "pandas": _LibraryAdvice(
            reason="DataFrame and Series objects are not safe to mutate from several threads, "
            "and even reads can race with pandas' internal caches.",
            safe_pattern="build a DataFrame per request (or per thread), or hold "
            "self.acquire_lock() around every operation on a shared one; or use the process "
            "worker profile.",
        ),
        "matplotlib": _LibraryAdvice(
            reason="pyplot keeps global state (the current figure and axes) and its backends "
            "are not thread-safe.",
            safe_pattern="use the object API (matplotlib.figure.Figure with the Agg canvas), "
            "one figure per thread, and never pyplot from worker threads.",
        ),
        "sqlite3": _LibraryAdvice(
            reason="a connection may by default only be used by the thread that created it, and "
            "sharing one connection across threads needs external locking.",
            safe_pattern="open one connection per thread (keep it with set_thread_local), or "
            "guard a shared connection made with check_same_thread=False by a lock.",
        ),
        "tkinter": _LibraryAdvice(
            reason="Tk must be driven from the thread that created the interpreter.",
            safe_pattern="keep all Tk calls on one thread and hand work to it through a "
            "queue.Queue.",
        ),
        "shelve": _LibraryAdvice(
            reason="a shelf does not support concurrent access, not even concurrent reads "
            "while another thread writes.",
            safe_pattern="guard every access to a shared shelf with a lock, or use a database "
            "made for concurrent access.",
        ),
        "curses": _LibraryAdvice(
            reason="curses drives one terminal through global state.",
            safe_pattern="draw from a single thread and send it updates through a queue.Queue.",
        ),
    }
)

#: The same table as plain read-only mappings: name -> {"reason", "safe_pattern"}.
UNSAFE_LIBRARIES: Final[Mapping[str, Mapping[str, str]]] = MappingProxyType(
    {
        name: MappingProxyType({"reason": a.reason, "safe_pattern": a.safe_pattern})
        for name, a in LIBRARY_ADVICE.items()
    }
)


def unsafe_libraries_in(module_names: Iterable[str]) -> list[str]:
    top_level = {name.partition(".")[0] for name in module_names if isinstance(name, str)}
    return [lib for lib in LIBRARY_ADVICE if lib in top_level]


def library_message(lib: str) -> str:
    advice = LIBRARY_ADVICE[lib]
    return (
        f"THREAD SAFETY: unsafe library {lib!r} detected: {advice.reason} "
        f"Safe pattern: {advice.safe_pattern}"
    )
