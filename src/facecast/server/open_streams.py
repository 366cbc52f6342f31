"""The long-lived responses open now (audio WebSockets, event streams), for a graceful shutdown.

Each handler registers a `goodbye` while it runs. On shutdown (SIGTERM, Ctrl-C, runner.cleanup) the
app calls every goodbye at once, before the sessions close: each sends its client a last event and
closes (WebSocket 1001 going away; the event stream ends), so a client learns why rather than
waiting on a dead socket, and the server never waits out its handlers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

from aiohttp import web

Goodbye = Callable[[], Awaitable[None]]

SHUTDOWN_GRACE_S = 1.0  # for every goodbye together: a client that never answers a close is dropped
SHUTDOWN_CODE = "server_shutdown"  # the `error` event's code sent before closing
SHUTDOWN_MESSAGE = "the server is shutting down"


class OpenStreams:
    def __init__(self) -> None:
        self._goodbyes: set[Goodbye] = set()

    def __len__(self) -> int:
        return len(self._goodbyes)

    @contextmanager
    def open(self, goodbye: Goodbye) -> Iterator[None]:
        """Registers `goodbye` for the duration of the block (the life of one response)."""
        self._goodbyes.add(goodbye)
        try:
            yield
        finally:
            self._goodbyes.discard(goodbye)

    async def close_all(self, grace_s: float = SHUTDOWN_GRACE_S) -> None:
        """Every goodbye at once; those not done within `grace_s` are cancelled (their sockets drop)."""
        tasks = [asyncio.ensure_future(goodbye()) for goodbye in list(self._goodbyes)]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace_s)
        for task in pending:
            task.cancel()
        # Collects every outcome: a client gone mid-goodbye is nothing to report.
        await asyncio.gather(*tasks, return_exceptions=True)


OPEN_STREAMS = web.AppKey("open_streams", OpenStreams)
