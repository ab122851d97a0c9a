"""What ends the server: SIGTERM or SIGINT, and optionally the end of stdin.

Snakepit stops a worker with SIGTERM (to its process group when it has one) and sends SIGKILL
6 s later. The first signal starts a graceful shutdown; a second one cuts the grace period short.
With ``--exit-on-stdin-close`` the server also shuts down when its stdin reaches end of file: a
BEAM port's stdin is a pipe from the Erlang VM, so end of file means the VM is gone and the
worker would otherwise linger as an orphan.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading

__all__ = ["ShutdownTrigger"]

log = logging.getLogger("snakepit_bridge.server")


class ShutdownTrigger:
    """Collects shutdown requests on the event loop. Create it on the loop's thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.requested = asyncio.Event()
        self.hurry = asyncio.Event()  # a second request: skip what is left of the grace period
        self.reason = ""

    def request(self, reason: str) -> None:
        """Ask for a shutdown (on the loop's thread)."""
        if self.requested.is_set():
            log.warning("%s during shutdown: not waiting for in-flight requests any longer", reason)
            self.hurry.set()
            return
        self.reason = reason
        self.requested.set()

    def request_threadsafe(self, reason: str) -> None:
        try:
            self._loop.call_soon_threadsafe(self.request, reason)
        except RuntimeError:  # the loop is already closed: the server is gone anyway
            pass

    def install_signal_handlers(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(signum, self.request, signal.Signals(signum).name)

    def remove_signal_handlers(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._loop.remove_signal_handler(signum)

    def watch_stdin(self, fd: int = 0) -> None:
        """Request a shutdown when ``fd`` reaches end of file (read on a daemon thread, so a
        pipe, a terminal and a regular file all work; input is discarded)."""
        try:
            os.fstat(fd)
        except OSError:
            log.warning("--exit-on-stdin-close: stdin is not open; not watching it")
            return
        thread = threading.Thread(
            target=self._read_until_eof, args=(fd,), name="snakepit-stdin-watch", daemon=True
        )
        thread.start()

    def _read_until_eof(self, fd: int) -> None:
        try:
            while os.read(fd, 65536):
                pass
        except OSError as exc:
            log.warning("--exit-on-stdin-close: reading stdin failed (%s); shutting down", exc)
        self.request_threadsafe("stdin closed")
