"""A bounded hand-off from the pool thread draining a generator to the event loop sending it.

The producer (a pool thread) blocks once ``capacity`` items wait unsent, so a fast generator
cannot fill memory ahead of a slow client. The consumer (the event loop) never blocks a thread:
items arrive through ``call_soon_threadsafe`` into an :class:`asyncio.Queue`. When the consumer
stops early (the client went away, the deadline passed, the server is shutting down) it calls
:meth:`ChunkPump.stop`, which wakes a blocked producer; :meth:`ChunkPump.put` then returns False
and the producer closes the generator, on its own thread (a generator can only be closed by the
thread that runs it).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["ChunkPump", "End"]

T = TypeVar("T")


@dataclass(frozen=True)
class End:
    """The producer is done: ``error`` is what ended it, or ``None`` when the stream completed."""

    error: BaseException | None = None


class ChunkPump(Generic[T]):
    """One producer thread, one consumer coroutine, at most ``capacity`` items in between.

    Create it on the event loop's thread.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._loop = loop
        self._capacity = capacity
        self._slots = threading.Semaphore(capacity)
        self._queue: asyncio.Queue[T | End] = asyncio.Queue()
        self._stopped = threading.Event()

    # -- producer side (any thread) --------------------------------------------------------
    def put(self, item: T) -> bool:
        """Hand ``item`` over, waiting for room; False once the consumer stopped listening."""
        self._slots.acquire()
        if self._stopped.is_set():
            return False
        return self._deliver(item)

    def finish(self, error: BaseException | None = None) -> None:
        """No more items: the stream completed (``error`` None) or failed with ``error``."""
        self._deliver(End(error))

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def _deliver(self, item: T | End) -> bool:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody will ever read it
            self._stopped.set()
            return False
        return True

    # -- consumer side (the event loop) ------------------------------------------------------
    async def get(self) -> T | End:
        """The next item, or :class:`End`. Call :meth:`consumed` once an item is sent."""
        return await self._queue.get()

    def consumed(self) -> None:
        """One item left the buffer: the producer may hand over another."""
        self._slots.release()

    def stop(self) -> None:
        """Stop listening: a producer blocked in :meth:`put` wakes up and is told so."""
        self._stopped.set()
        self._slots.release(self._capacity + 1)
