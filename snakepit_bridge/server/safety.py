"""``--thread-safety-check``: one :class:`ThreadSafetyChecker` for the whole process, its findings
logged once each through :mod:`logging`.

The checker is enabled before the adapter is constructed, so it observes the adapter from its
first attribute write. At start-up the adapter gets the static review
(:func:`check_common_pitfalls`: the class declaration, unlocked read-modify-writes, untracked
tools, thread-unsafe libraries); while serving, every race the checker reports (it issues a
:class:`ThreadSafetyWarning` once per class and attribute) is logged as a warning instead of
being printed by :mod:`warnings`; at shutdown a one-line summary of its report is logged.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable
from typing import Any, TextIO

from snakepit_bridge.thread_safety_checker import (
    ThreadSafetyChecker,
    ThreadSafetyWarning,
    check_common_pitfalls,
)

__all__ = ["SafetyMonitor"]

log = logging.getLogger("snakepit_bridge.server.thread_safety")

_MAX_REMEMBERED = 1000  # findings remembered for de-duplication; later ones are still logged

_ShowWarning = Callable[..., None]


class SafetyMonitor:
    """Owns the process's checker while the server runs."""

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        # Checker warnings are routed to logging: "always", because the checker reports each
        # finding once by itself, and so that `-W error` cannot turn a finding into an exception
        # raised inside a tool. The filter is inserted first, so it wins over earlier ones.
        warnings.filterwarnings("always", category=ThreadSafetyWarning)
        self._previous: _ShowWarning = warnings.showwarning
        warnings.showwarning = self._show_warning  # the documented hook of the warnings module
        self.checker = ThreadSafetyChecker(enabled=True)

    def review(self, adapter: Any) -> None:
        """Log the static findings about ``adapter`` (once each)."""
        for finding in check_common_pitfalls(adapter):
            self.report(finding)

    def report(self, message: str) -> None:
        with self._lock:
            if message in self._seen:
                return
            if len(self._seen) < _MAX_REMEMBERED:
                self._seen.add(message)
        log.warning("%s", message)

    def close(self) -> None:
        """Stop checking, log a summary, restore the warnings hook."""
        self.checker.disable()
        if warnings.showwarning == self._show_warning:
            warnings.showwarning = self._previous
        report = self.checker.get_report()
        concurrent = report.get("concurrent_accesses") or {}
        log.info(
            "thread-safety check: %d warning(s), %d thread(s) seen, %d method(s) ran "
            "concurrently (peak %d calls at once)",
            report.get("warnings_issued", 0),
            report.get("total_threads_seen", 0),
            len(concurrent),
            max(concurrent.values(), default=0),
        )

    def _show_warning(
        self,
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        if issubclass(category, ThreadSafetyWarning):
            self.report(str(message))
        else:
            self._previous(message, category, filename, lineno, file, line)
