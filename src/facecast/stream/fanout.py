"""Per-viewer bounded queues (frames) and per-listener event queues, all on the event loop.

A slow or vanished viewer only loses its own oldest frames: the session never waits on it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Closed(Exception):
    """The subscription ended (session closed or viewer left)."""


class Subscriber(Generic[T]):
    """A bounded queue dropping its oldest item when full; `maxlen=None` keeps everything."""

    def __init__(self, maxlen: int | None) -> None:
        self._items: deque[T] = deque()
        self._maxlen = maxlen
        self._wake = asyncio.Event()
        self.closed = False
        self.dropped = 0

    def put(self, item: T) -> None:
        if self.closed:
            return
        self._items.append(item)
        if self._maxlen is not None and len(self._items) > self._maxlen:
            self._items.popleft()
            self.dropped += 1
        self._wake.set()

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    def __len__(self) -> int:
        return len(self._items)

    async def get(self) -> T:
        while not self._items:
            if self.closed:
                raise Closed
            self._wake.clear()
            await self._wake.wait()
        return self._items.popleft()


class EventHub:
    """Session events (speaking_started, ...) fanned out to every WebSocket / SSE listener."""

    def __init__(self) -> None:
        self._listeners: set[Subscriber[dict[str, Any]]] = set()
        self.counts: dict[str, int] = {}

    def listen(self) -> Subscriber[dict[str, Any]]:
        sub: Subscriber[dict[str, Any]] = Subscriber(maxlen=1000)
        self._listeners.add(sub)
        return sub

    def unlisten(self, sub: Subscriber[dict[str, Any]]) -> None:
        self._listeners.discard(sub)
        sub.close()

    def publish(self, event: dict[str, Any]) -> None:
        self.counts[event["type"]] = self.counts.get(event["type"], 0) + 1
        for sub in list(self._listeners):
            sub.put(event)

    def close(self) -> None:
        for sub in list(self._listeners):
            sub.close()
        self._listeners.clear()
