"""Bounded queues on the event loop: a slow or vanished consumer only loses its own oldest items.

`DropOldestQueue` serves frames (each viewer track has one) and session events (each WebSocket / SSE
listener has one); `QueueOutput` is the plainest output: the session's frames, queued for whoever awaits
them (tests, benchmarks, simple consumers).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Generic, TypeVar

from facecast.frames import OutputFrame
from facecast.outputs.base import Output

T = TypeVar("T")


class Closed(Exception):
    """The queue ended (session closed or consumer left)."""


class DropOldestQueue(Generic[T]):
    """A bounded queue dropping its oldest item when full; `maxlen=None` keeps everything."""

    def __init__(self, maxlen: int | None) -> None:
        self._items: deque[T] = deque()
        self.maxlen = maxlen
        self._wake = asyncio.Event()
        self.closed = False
        self.dropped = 0

    def put(self, item: T) -> None:
        if self.closed:
            return
        self._items.append(item)
        if self.maxlen is not None and len(self._items) > self.maxlen:
            self._items.popleft()
            self.dropped += 1
        self._wake.set()

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    def keep_newest(self) -> None:
        """Drops every item but the newest (a consumer starting late wants now, not a backlog)."""
        while len(self._items) > 1:
            self._items.popleft()
            self.dropped += 1

    def __len__(self) -> int:
        return len(self._items)

    async def get(self) -> T:
        while not self._items:
            if self.closed:
                raise Closed
            self._wake.clear()
            await self._wake.wait()
        return self._items.popleft()


class QueueOutput(Output):
    """The session's frames in a DropOldestQueue (maxlen None: every frame); `await get()` takes the next."""

    kind = "queue"

    def __init__(self, maxlen: int | None = None) -> None:
        super().__init__()
        self.queue: DropOldestQueue[OutputFrame] = DropOldestQueue(maxlen)

    def on_frame(self, frame: OutputFrame) -> None:
        self.queue.put(frame)

    def stop(self) -> None:
        self.queue.close()
        super().stop()

    async def get(self) -> OutputFrame:
        return await self.queue.get()

    def __len__(self) -> int:
        return len(self.queue)

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "queued": len(self.queue), "dropped": self.queue.dropped}
